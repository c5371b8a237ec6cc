//! Recording and alerting rules: the `rule_files` of `prometheus.yml` evaluated as Prometheus
//! 2.42's `rules` package does (groups on their own schedule, rules in order, the alert state
//! machine with `for` and `keep_firing_for`, the `ALERTS` and `ALERTS_FOR_STATE` series), alert
//! annotations and labels expanded as Go templates, and `promtool test rules`' unit-test format.
//!
//! Behind the cargo feature `server` (rule files are YAML, read by [`crate::config::rules`]).
//! It depends on storage ([`crate::Db`]) and query ([`crate::promql`]); the server's notifier
//! depends on it through [`AlertSink`], never the reverse.

pub mod alerting;
pub mod group;
pub mod manager;
pub mod recording;
pub mod status;
pub mod template;

pub use alerting::{ActiveAlert, AlertState, AlertingRule};
pub use group::{EvalResult, Group, Rule, RuleError, RuleOptions};
pub use manager::{Manager, ManagerError, ManagerOptions};
pub use recording::{RecordingRule, RuleHealth, RuleStatus};
pub use status::{AlertingView, GroupStatus, NoRules, RuleView, RulesView};

use crate::labels::Labels;

/// An alert handed to Alertmanager delivery: Prometheus' `notifier.Alert`, built by an alerting
/// rule each time it sends (while pending alerts are not sent; firing ones are re-sent; a
/// resolved one is sent with `ends_at_ms` at its resolution time).
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    /// The alert's labels: `alertname`, the rule's labels and the series' labels. External labels
    /// are not included: the notifier adds them (as Prometheus' notifier does).
    pub labels: Labels,
    /// Expanded annotations.
    pub annotations: Labels,
    /// When the alert became active (Unix milliseconds).
    pub starts_at_ms: i64,
    /// For a resolved alert its resolution time; for a firing one the time after which
    /// Alertmanager may consider it resolved if not re-sent (Prometheus: eval time + 4 × the
    /// resend delay).
    pub ends_at_ms: i64,
    /// A link to the expression in the UI (`<external URL>/graph?g0.expr=...&g0.tab=1`).
    pub generator_url: String,
}

/// Where rule evaluation hands alerts for delivery. `send` must not block on the network: an
/// Alertmanager that is down or slow never delays evaluation.
pub trait AlertSink: Send + Sync {
    fn send(&self, alerts: Vec<Alert>);
}

#[cfg(test)]
mod tests;
