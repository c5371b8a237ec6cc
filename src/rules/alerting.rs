//! Alerting rules: Prometheus 2.42's `rules/alerting.go` state machine.
//!
//! Each evaluation turns the expression's result into alerts (the series' labels without
//! `__name__`, the rule's labels expanded as templates, `alertname`), keyed by label set:
//! - a new label set becomes **pending** with `active_at` = the evaluation time;
//! - a pending alert that has been active for at least `for` becomes **firing** (`fired_at`);
//! - a label set missing from the result: a pending alert is dropped; a firing one becomes
//!   **inactive** (`resolved_at`) — unless `keep_firing_for` keeps it firing for that long after
//!   it first went missing — and is kept for 15 minutes (`RESOLVED_RETENTION`) so that its
//!   resolution reaches Alertmanager even if a send is lost.
//!
//! Every evaluation writes `ALERTS{alertstate=...} 1` and `ALERTS_FOR_STATE` = `active_at` in
//! seconds for each pending or firing alert, once the rule's `for` state has been restored
//! ([`AlertingRule::set_restored`]; see `Group::restore_for_state`). Alerts are handed for
//! delivery when firing or resolved, again every resend delay, and at once after a resolution.

use std::collections::BTreeMap;

use super::recording::{query_vector, query_vector_prepared, RuleStatus};
use super::template::{QueryFn, QuerySample, Template, TemplateData};
use super::Alert;
use crate::db::Db;
use crate::labels::{Label, Labels, METRIC_NAME};
use crate::promql::{PreparedQuery, QueryOptions, Sample};

/// The series of an alert's state (`alertstate` label), value 1.
pub const ALERTS_METRIC: &str = "ALERTS";
/// The series of an alert's `active_at` (seconds), read back at start-up.
pub const ALERTS_FOR_STATE_METRIC: &str = "ALERTS_FOR_STATE";
/// The label of `ALERTS` that holds the state.
pub const ALERT_STATE_LABEL: &str = "alertstate";
/// The label that holds the alert's name.
pub const ALERT_NAME_LABEL: &str = "alertname";
/// How long a resolved alert stays in memory (and is re-sent as resolved).
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

/// State of an alert; ordered as Prometheus orders them (firing > pending > inactive).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlertState {
    Inactive,
    Pending,
    Firing,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One alert of a rule (Prometheus' `rules.Alert`). Times are Unix milliseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct ActiveAlert {
    pub state: AlertState,
    /// `alertname`, the rule's labels (expanded) and the series' labels; no `__name__`.
    pub labels: Labels,
    /// Expanded annotations.
    pub annotations: Labels,
    /// The expression's value at the last evaluation that returned this alert.
    pub value: f64,
    pub active_at_ms: i64,
    pub fired_at_ms: Option<i64>,
    /// Set once the alert is inactive again (it stays listed for 15 minutes).
    pub resolved_at_ms: Option<i64>,
    pub last_sent_at_ms: Option<i64>,
    pub valid_until_ms: Option<i64>,
    /// When the condition stopped holding while `keep_firing_for` keeps the alert firing.
    pub keep_firing_since_ms: Option<i64>,
}

impl ActiveAlert {
    /// Prometheus' `needsSending`: never while pending; at once after a resolution not yet
    /// sent; otherwise when the last send is older than the resend delay.
    fn needs_sending(&self, ts: i64, resend_delay_ms: i64) -> bool {
        if self.state == AlertState::Pending {
            return false;
        }
        match (self.resolved_at_ms, self.last_sent_at_ms) {
            (Some(_), None) => return true,
            (Some(r), Some(s)) if r > s => return true,
            _ => {}
        }
        match self.last_sent_at_ms {
            None => true,
            Some(s) => s + resend_delay_ms < ts,
        }
    }
}

/// An alerting rule with its alerts.
#[derive(Debug)]
pub struct AlertingRule {
    name: String,
    /// The expression as Prometheus prints it (what is evaluated and shown), parsed once.
    expr: PreparedQuery,
    hold_ms: i64,
    keep_firing_for_ms: i64,
    /// As written (templates unexpanded), sorted.
    labels: Labels,
    annotations: Labels,
    /// The labels' and annotations' templates, parsed once (Prometheus parses at each
    /// expansion; a parse error is reported in the expanded text all the same).
    label_templates: Vec<Templated>,
    annotation_templates: Vec<Templated>,
    /// Alerts by label set.
    active: BTreeMap<Labels, ActiveAlert>,
    /// Whether the `for` state has been restored: `ALERTS`/`ALERTS_FOR_STATE` are written only
    /// after that, so a restart does not overwrite the state it is about to read back.
    restored: bool,
    pub(crate) status: RuleStatus,
}

/// A label or annotation value as a template.
#[derive(Debug)]
struct Templated {
    name: String,
    template: Result<Template, String>,
}

impl Templated {
    fn all(rule: &str, set: &Labels) -> Vec<Templated> {
        let tmpl_name = format!("__alert_{rule}");
        set.iter()
            .map(|l| Templated {
                name: l.name.clone(),
                template: Template::parse(&tmpl_name, &l.value).map_err(|e| e.to_string()),
            })
            .collect()
    }

    /// The expanded text, or Prometheus' `<error expanding template: ...>`.
    fn expand(&self, data: &TemplateData<'_>, query: &dyn QueryFn) -> Label {
        let value = match &self.template {
            Ok(t) => t
                .expand(data, query)
                .unwrap_or_else(|e| format!("<error expanding template: {e}>")),
            Err(e) => format!("<error expanding template: {e}>"),
        };
        Label::new(self.name.clone(), value)
    }
}

/// The context an evaluation needs besides the database.
pub(crate) struct EvalContext<'a> {
    pub db: &'a Db,
    pub ts: i64,
    pub query: &'a QueryOptions,
    pub external_labels: &'a Labels,
    pub external_url: &'a str,
    pub limit: usize,
}

/// The template `query` function: the rule's engine at the evaluation time.
struct TemplateQuery<'a> {
    db: &'a Db,
    ts: i64,
    opts: &'a QueryOptions,
}

impl QueryFn for TemplateQuery<'_> {
    fn query(&self, expr: &str) -> Result<Vec<QuerySample>, String> {
        Ok(query_vector(self.db, expr, self.ts, self.opts)?
            .into_iter()
            .map(|s| QuerySample {
                labels: s.labels,
                value: s.v,
            })
            .collect())
    }
}

impl AlertingRule {
    pub fn new(
        name: String,
        expr: String,
        hold_ms: i64,
        keep_firing_for_ms: i64,
        labels: Labels,
        annotations: Labels,
        restored: bool,
    ) -> AlertingRule {
        AlertingRule {
            label_templates: Templated::all(&name, &labels),
            annotation_templates: Templated::all(&name, &annotations),
            name,
            expr: PreparedQuery::new(&expr),
            hold_ms,
            keep_firing_for_ms,
            labels,
            annotations,
            active: BTreeMap::new(),
            restored,
            status: RuleStatus::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn query(&self) -> &str {
        self.expr.expr()
    }

    /// `for`, in milliseconds.
    pub fn hold_duration_ms(&self) -> i64 {
        self.hold_ms
    }

    pub fn keep_firing_for_ms(&self) -> i64 {
        self.keep_firing_for_ms
    }

    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    pub fn annotations(&self) -> &Labels {
        &self.annotations
    }

    pub fn restored(&self) -> bool {
        self.restored
    }

    /// Marks the `for` state as restored (or as needing no restoration): from now on each
    /// evaluation writes `ALERTS` and `ALERTS_FOR_STATE`.
    pub fn set_restored(&mut self, restored: bool) {
        self.restored = restored;
    }

    pub fn status(&self) -> &RuleStatus {
        &self.status
    }

    /// The highest state of the rule's alerts (Prometheus' `State`).
    pub fn state(&self) -> AlertState {
        self.active
            .values()
            .map(|a| a.state)
            .max()
            .unwrap_or(AlertState::Inactive)
    }

    /// Pending and firing alerts (Prometheus' `ActiveAlerts`: not resolved), in label order.
    pub fn active_alerts(&self) -> impl Iterator<Item = &ActiveAlert> {
        self.active.values().filter(|a| a.resolved_at_ms.is_none())
    }

    /// All alerts kept, resolved ones included (Prometheus' `currentAlerts`).
    pub fn current_alerts(&self) -> impl Iterator<Item = &ActiveAlert> {
        self.active.values()
    }

    pub(crate) fn alerts_mut(&mut self) -> impl Iterator<Item = &mut ActiveAlert> {
        self.active.values_mut()
    }

    /// Takes over another rule's alerts (a reloaded group's rule with the same name and labels).
    pub(crate) fn take_alerts_from(&mut self, from: &mut AlertingRule) {
        let alerts = std::mem::take(&mut from.active);
        self.active.extend(alerts);
    }

    /// The `ALERTS_FOR_STATE` series of an alert (what restoration looks up).
    pub fn for_state_labels(&self, alert: &ActiveAlert) -> Labels {
        series_labels(
            &self.labels,
            &self.name,
            &alert.labels,
            ALERTS_FOR_STATE_METRIC,
            None,
        )
    }

    /// One evaluation at `cx.ts`: updates the alerts and returns the `ALERTS` and
    /// `ALERTS_FOR_STATE` samples to append.
    pub(crate) fn eval(&mut self, cx: &EvalContext<'_>) -> Result<Vec<Sample>, String> {
        let ts = cx.ts;
        let result = query_vector_prepared(cx.db, &self.expr, ts, cx.query)?;
        let tq = TemplateQuery {
            db: cx.db,
            ts,
            opts: cx.query,
        };
        let mut fresh: BTreeMap<Labels, ActiveAlert> = BTreeMap::new();
        for s in result {
            let data = TemplateData {
                labels: &s.labels,
                external_labels: cx.external_labels,
                external_url: cx.external_url,
                value: s.v,
            };
            let mut l: Vec<Label> = s
                .labels
                .iter()
                .filter(|l| l.name != METRIC_NAME)
                .cloned()
                .collect();
            l.extend(self.label_templates.iter().map(|t| t.expand(&data, &tq)));
            l.push(Label::new(ALERT_NAME_LABEL, self.name.clone()));
            let labels = Labels::new(l);
            // Sorted and unique as the rule's annotations are; an annotation that expands to
            // nothing stays, with an empty value, as in Prometheus (unlike a label).
            let annotations = Labels::from_sorted_unchecked(
                self.annotation_templates
                    .iter()
                    .map(|t| t.expand(&data, &tq))
                    .collect(),
            );
            if fresh.contains_key(&labels) {
                return Err(
                    "vector contains metrics with the same labelset after applying alert labels"
                        .into(),
                );
            }
            fresh.insert(
                labels.clone(),
                ActiveAlert {
                    state: AlertState::Pending,
                    labels,
                    annotations,
                    value: s.v,
                    active_at_ms: ts,
                    fired_at_ms: None,
                    resolved_at_ms: None,
                    last_sent_at_ms: None,
                    valid_until_ms: None,
                    keep_firing_since_ms: None,
                },
            );
        }

        let mut returned: Vec<Labels> = Vec::with_capacity(fresh.len());
        for (k, a) in fresh {
            returned.push(k.clone());
            match self.active.get_mut(&k) {
                Some(old) if old.state != AlertState::Inactive => {
                    old.value = a.value;
                    old.annotations = a.annotations;
                }
                _ => {
                    self.active.insert(k, a);
                }
            }
        }

        let mut out = Vec::new();
        let mut num_active = 0usize;
        let mut remove = Vec::new();
        let (hold, keep_for) = (self.hold_ms, self.keep_firing_for_ms);
        for (k, a) in self.active.iter_mut() {
            if returned.binary_search(k).is_err() {
                let mut keep_firing = false;
                if a.state == AlertState::Firing && keep_for > 0 {
                    let since = *a.keep_firing_since_ms.get_or_insert(ts);
                    keep_firing = ts - since < keep_for;
                }
                // A pending alert that vanished is forgotten; a resolved one once its
                // resolution has been announced long enough.
                if a.state == AlertState::Pending
                    || a.resolved_at_ms
                        .is_some_and(|r| ts - r > RESOLVED_RETENTION_MS)
                {
                    remove.push(k.clone());
                }
                if a.state != AlertState::Inactive && !keep_firing {
                    a.state = AlertState::Inactive;
                    a.resolved_at_ms = Some(ts);
                }
                if !keep_firing {
                    continue;
                }
            } else {
                a.keep_firing_since_ms = None;
            }
            num_active += 1;
            if a.state == AlertState::Pending && ts - a.active_at_ms >= hold {
                a.state = AlertState::Firing;
                a.fired_at_ms = Some(ts);
            }
            if self.restored {
                out.push(Sample {
                    labels: series_labels(
                        &self.labels,
                        &self.name,
                        &a.labels,
                        ALERTS_METRIC,
                        Some(a.state),
                    ),
                    t: ts,
                    v: 1.0,
                });
                out.push(Sample {
                    labels: series_labels(
                        &self.labels,
                        &self.name,
                        &a.labels,
                        ALERTS_FOR_STATE_METRIC,
                        None,
                    ),
                    t: ts,
                    v: a.active_at_ms.div_euclid(1000) as f64,
                });
            }
        }
        for k in remove {
            self.active.remove(&k);
        }
        if cx.limit > 0 && num_active > cx.limit {
            self.active.clear();
            return Err(format!(
                "exceeded limit of {} with {num_active} alerts",
                cx.limit
            ));
        }
        Ok(out)
    }

    /// The alerts due for delivery at `ts` (Prometheus' `sendAlerts`): marks them sent and
    /// valid until `ts + 4 × max(resend delay, group interval)`, so that Alertmanager resolves
    /// them by itself only after two lost evaluations or sends.
    pub(crate) fn alerts_to_send(
        &mut self,
        ts: i64,
        resend_delay_ms: i64,
        interval_ms: i64,
        external_url: &str,
    ) -> Vec<Alert> {
        let delta = resend_delay_ms.max(interval_ms);
        let mut out = Vec::new();
        let mut url = None;
        for a in self.active.values_mut() {
            if !a.needs_sending(ts, resend_delay_ms) {
                continue;
            }
            a.last_sent_at_ms = Some(ts);
            let valid_until = ts + 4 * delta;
            a.valid_until_ms = Some(valid_until);
            let generator_url = url
                .get_or_insert_with(|| generator_url(external_url, self.expr.expr()))
                .clone();
            out.push(Alert {
                labels: a.labels.clone(),
                annotations: a.annotations.clone(),
                // Prometheus announces the firing time, not the pending one.
                starts_at_ms: a.fired_at_ms.unwrap_or(a.active_at_ms),
                ends_at_ms: a.resolved_at_ms.unwrap_or(valid_until),
                generator_url,
            });
        }
        out
    }
}

/// Labels shared by `ALERTS` and `ALERTS_FOR_STATE`: the rule's labels as written, then the
/// alert's, then the name (Prometheus builds them in this order, so an alert label whose template
/// expanded to nothing still appears with its raw text).
fn series_labels(
    rule_labels: &Labels,
    name: &str,
    alert_labels: &Labels,
    metric: &str,
    state: Option<AlertState>,
) -> Labels {
    let mut l: Vec<Label> = Vec::with_capacity(rule_labels.len() + alert_labels.len() + 3);
    l.extend(rule_labels.iter().cloned());
    l.extend(alert_labels.iter().cloned());
    l.push(Label::new(METRIC_NAME, metric));
    l.push(Label::new(ALERT_NAME_LABEL, name));
    if let Some(s) = state {
        l.push(Label::new(ALERT_STATE_LABEL, s.as_str()));
    }
    Labels::new(l)
}

/// `<external URL>/graph?g0.expr=<expr>&g0.tab=1` (Prometheus' `TableLinkForExpression`).
pub fn generator_url(external_url: &str, expr: &str) -> String {
    format!(
        "{external_url}/graph?g0.expr={}&g0.tab=1",
        query_escape(expr)
    )
}

/// Go's `url.QueryEscape`: unreserved bytes as they are, space as `+`, the rest `%XX`.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 15) as usize] as char);
            }
        }
    }
    out
}
