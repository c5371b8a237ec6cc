//! The rule groups of a rule unit test, evaluated at the test's evaluation times through the
//! rule layer's synchronous group API ([`crate::rules::Group`]), as promtool drives Prometheus'
//! `rules.Group.Eval`.

use std::collections::HashMap;

use super::{AlertView, Failure};
use crate::config::{Duration, RuleFile};
use crate::labels::Labels;
use crate::promql::QueryOptions;
use crate::rules::{AlertState, Group, RuleOptions};
use crate::Db;

/// The groups of the test's rule files, in evaluation order.
pub(super) struct RuleSet {
    groups: Vec<Group>,
}

impl RuleSet {
    /// Builds every group of `files` as promtool's `LoadGroups` does for a test group: groups
    /// without their own `interval` take the test group's `interval`; templates see the test
    /// group's external labels and URL. Alerting rules count as restored, so that they write
    /// `ALERTS` from the first evaluation. Ordered by `group_eval_order` (unlisted groups first,
    /// in file order).
    pub(super) fn new(
        files: &[RuleFile],
        default_interval: Duration,
        external_labels: &Labels,
        external_url: &str,
        order: &HashMap<&str, usize>,
        query: &QueryOptions,
    ) -> Result<RuleSet, Vec<String>> {
        let opts = RuleOptions {
            evaluation_interval_ms: default_interval.as_millis(),
            external_labels: external_labels.clone(),
            external_url: external_url.to_string(),
            query: query.clone(),
            ..RuleOptions::default()
        };
        let mut groups = Vec::new();
        for f in files {
            for spec in &f.groups {
                let mut g = Group::new(&f.path, spec, &opts).map_err(|e| vec![e.to_string()])?;
                g.set_restored();
                groups.push(g);
            }
        }
        // Stable: groups of equal rank keep their file order.
        groups.sort_by_key(|g| order.get(g.name()).copied().unwrap_or(0));
        Ok(RuleSet { groups })
    }

    /// Evaluates every group at `ts`; the rules whose evaluation failed.
    pub(super) fn eval(&mut self, db: &Db, ts: i64) -> Vec<Failure> {
        let mut failures = Vec::new();
        for g in &mut self.groups {
            g.eval(db, ts);
            for r in g.rules() {
                if let Some(e) = &r.status().last_error {
                    failures.push(Failure::RuleEval {
                        rule: r.name().to_string(),
                        time_ms: ts,
                        error: e.clone(),
                    });
                }
            }
        }
        failures
    }

    /// The firing alerts of every alerting rule named `alertname`, in every group.
    pub(super) fn firing(&self, alertname: &str) -> Vec<AlertView> {
        let mut out = Vec::new();
        for g in &self.groups {
            for r in g.rules() {
                let Some(a) = r.as_alerting() else { continue };
                if a.name() != alertname {
                    continue;
                }
                for al in a.active_alerts() {
                    if al.state == AlertState::Firing {
                        out.push(AlertView {
                            labels: al.labels.clone(),
                            annotations: al
                                .annotations
                                .iter()
                                .map(|l| (l.name.clone(), l.value.clone()))
                                .collect(),
                        });
                    }
                }
            }
        }
        out
    }
}
