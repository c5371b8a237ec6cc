//! The read-only view of rule evaluation that the HTTP layer serves (`/api/v1/rules`,
//! `/api/v1/alerts`): plain snapshots taken after each evaluation, so that a request never
//! waits for a group being evaluated and the web layer never sees the evaluator's types.

use super::alerting::{ActiveAlert, AlertState, AlertingRule};
use super::group::{Group, Rule};
use super::recording::RuleStatus;
use crate::labels::Labels;

/// A group as `/api/v1/rules` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupStatus {
    pub name: String,
    pub file: String,
    pub interval_ms: i64,
    pub limit: usize,
    pub evaluation_seconds: f64,
    pub last_evaluation_ms: Option<i64>,
    pub rules: Vec<RuleView>,
}

/// A rule as `/api/v1/rules` shows it.
#[derive(Clone, Debug, PartialEq)]
pub enum RuleView {
    Recording {
        name: String,
        query: String,
        labels: Labels,
        status: RuleStatus,
    },
    Alerting(AlertingView),
}

/// An alerting rule with its alerts.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertingView {
    pub name: String,
    pub query: String,
    pub hold_ms: i64,
    pub keep_firing_for_ms: i64,
    pub labels: Labels,
    pub annotations: Labels,
    /// The highest state of its alerts.
    pub state: AlertState,
    /// Pending and firing alerts (resolved ones are not listed), in label order.
    pub alerts: Vec<ActiveAlert>,
    pub status: RuleStatus,
}

impl AlertingView {
    fn of(r: &AlertingRule) -> AlertingView {
        AlertingView {
            name: r.name().to_string(),
            query: r.query().to_string(),
            hold_ms: r.hold_duration_ms(),
            keep_firing_for_ms: r.keep_firing_for_ms(),
            labels: r.labels().clone(),
            annotations: r.annotations().clone(),
            state: r.state(),
            alerts: r.active_alerts().cloned().collect(),
            status: r.status().clone(),
        }
    }
}

impl GroupStatus {
    /// A snapshot of `g`.
    pub fn of(g: &Group) -> GroupStatus {
        GroupStatus {
            name: g.name().to_string(),
            file: g.file().to_string(),
            interval_ms: g.interval_ms(),
            limit: g.limit(),
            evaluation_seconds: g.evaluation_seconds(),
            last_evaluation_ms: g.last_evaluation_ms(),
            rules: g
                .rules()
                .iter()
                .map(|r| match r {
                    Rule::Recording(r) => RuleView::Recording {
                        name: r.name().to_string(),
                        query: r.query().to_string(),
                        labels: r.labels().clone(),
                        status: r.status().clone(),
                    },
                    Rule::Alerting(r) => RuleView::Alerting(AlertingView::of(r)),
                })
                .collect(),
        }
    }
}

/// Read access to the rule manager's state for the web layer.
pub trait RulesView: Send + Sync {
    /// Every group, sorted by file then name (Prometheus' `RuleGroups`).
    fn rule_groups(&self) -> Vec<GroupStatus>;
}

/// No rules: what the web layer serves when no manager runs.
pub struct NoRules;

impl RulesView for NoRules {
    fn rule_groups(&self) -> Vec<GroupStatus> {
        Vec::new()
    }
}
