//! A rule group evaluated synchronously (Prometheus 2.42's `rules.Group` without its goroutine):
//! what the scheduler ([`super::manager`]) runs at each interval and what `tsdbctl test rules`
//! drives step by step.
//!
//! One [`Group::eval`] evaluates the rules in order at one timestamp. Each rule's samples are
//! committed before the next rule runs, so a rule sees what an earlier rule of the group recorded
//! at the same timestamp. Series a rule returned at the previous evaluation but not at this one
//! get a stale marker; so do the series of rules that a reload removed (handed over by
//! [`Group::copy_state`]). Alerting rules return the alerts due for delivery.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::alerting::{AlertingRule, EvalContext};
use super::recording::{RecordingRule, RuleHealth};
use super::Alert;
use crate::config::rules::{RuleGroup, RuleKind};
use crate::db::Db;
use crate::head::{AppendError, Reject};
use crate::labels::{Label, Labels, Matcher};
use crate::promql::QueryOptions;

/// Prometheus' stale marker, appended when a recorded series disappears.
pub const STALE_NAN: f64 = f64::from_bits(crate::chunk::STALE_NAN_BITS);
/// Prometheus' `--rules.alert.resend-delay` default.
pub const DEFAULT_RESEND_DELAY_MS: i64 = 60_000;
/// Prometheus' `--rules.alert.for-outage-tolerance` default: an `ALERTS_FOR_STATE` sample older
/// than this at start-up is not restored.
pub const DEFAULT_OUTAGE_TOLERANCE_MS: i64 = 3_600_000;
/// Prometheus' `--rules.alert.for-grace-period` default: a restored alert never fires sooner
/// than this after start-up (and rules with a shorter `for` are not restored).
pub const DEFAULT_FOR_GRACE_PERIOD_MS: i64 = 600_000;
/// Prometheus' default `evaluation_interval`.
pub const DEFAULT_EVALUATION_INTERVAL_MS: i64 = 60_000;

/// Settings shared by the groups of a configuration.
#[derive(Clone, Debug)]
pub struct RuleOptions {
    /// `global.evaluation_interval`: the interval of groups without their own.
    pub evaluation_interval_ms: i64,
    /// `global.external_labels`, for `$externalLabels` in templates.
    pub external_labels: Labels,
    /// `--web.external-url` (no trailing slash), for `$externalURL` and generator URLs.
    pub external_url: String,
    /// The engine's limits (as for queries); its `cancel` flag also stops a group between rules.
    pub query: QueryOptions,
    pub resend_delay_ms: i64,
    pub outage_tolerance_ms: i64,
    pub for_grace_period_ms: i64,
}

impl Default for RuleOptions {
    fn default() -> RuleOptions {
        RuleOptions {
            evaluation_interval_ms: DEFAULT_EVALUATION_INTERVAL_MS,
            external_labels: Labels::default(),
            external_url: String::new(),
            query: QueryOptions::default(),
            resend_delay_ms: DEFAULT_RESEND_DELAY_MS,
            outage_tolerance_ms: DEFAULT_OUTAGE_TOLERANCE_MS,
            for_grace_period_ms: DEFAULT_FOR_GRACE_PERIOD_MS,
        }
    }
}

/// Errors building a group.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("{file}: group {group:?}, rule {rule:?}: {message}")]
    Expr {
        file: String,
        group: String,
        rule: String,
        message: String,
    },
}

/// A recording or alerting rule.
#[derive(Debug)]
pub enum Rule {
    Recording(RecordingRule),
    Alerting(AlertingRule),
}

impl Rule {
    pub fn name(&self) -> &str {
        match self {
            Rule::Recording(r) => r.name(),
            Rule::Alerting(r) => r.name(),
        }
    }

    pub fn query(&self) -> &str {
        match self {
            Rule::Recording(r) => r.query(),
            Rule::Alerting(r) => r.query(),
        }
    }

    pub fn labels(&self) -> &Labels {
        match self {
            Rule::Recording(r) => r.labels(),
            Rule::Alerting(r) => r.labels(),
        }
    }

    pub fn status(&self) -> &super::recording::RuleStatus {
        match self {
            Rule::Recording(r) => r.status(),
            Rule::Alerting(r) => r.status(),
        }
    }

    fn status_mut(&mut self) -> &mut super::recording::RuleStatus {
        match self {
            Rule::Recording(r) => &mut r.status,
            Rule::Alerting(r) => &mut r.status,
        }
    }

    pub fn as_alerting(&self) -> Option<&AlertingRule> {
        match self {
            Rule::Alerting(r) => Some(r),
            Rule::Recording(_) => None,
        }
    }

    pub fn as_alerting_mut(&mut self) -> Option<&mut AlertingRule> {
        match self {
            Rule::Alerting(r) => Some(r),
            Rule::Recording(_) => None,
        }
    }

    /// The identity under which a reloaded rule takes over state (Prometheus' `nameAndLabels`).
    fn identity(&self) -> (String, Labels) {
        (self.name().to_string(), self.labels().clone())
    }
}

/// What one [`Group::eval`] did.
#[derive(Debug, Default)]
pub struct EvalResult {
    /// Alerts due for delivery (firing ones on their resend schedule, resolved ones).
    pub alerts: Vec<Alert>,
    /// Rules evaluated (all of them unless the group was cancelled).
    pub evaluated: usize,
    /// Rules whose evaluation or append failed.
    pub failures: usize,
    /// Samples the rules returned.
    pub samples: usize,
}

/// A group of rules with the state carried between evaluations.
#[derive(Debug)]
pub struct Group {
    name: String,
    file: String,
    interval_ms: i64,
    limit: usize,
    spec: RuleGroup,
    rules: Vec<Rule>,
    /// Per rule: the series it appended at its last successful evaluation, sorted.
    series_in_previous_eval: Vec<Vec<Labels>>,
    /// Series of rules removed by a reload, stale-marked at the next evaluation.
    stale_series: Vec<Labels>,
    opts: RuleOptions,
    /// Set by the scheduler to stop an evaluation between rules (a reload replacing the group).
    halt: Option<Arc<AtomicBool>>,
    evaluation_seconds: f64,
    last_evaluation_ms: Option<i64>,
    should_restore: bool,
}

impl Group {
    /// Builds a group of `file` as a first load does: alerting rules write `ALERTS` only after
    /// [`Group::restore_for_state`] (or [`Group::set_restored`]).
    pub fn new(file: &Path, spec: &RuleGroup, opts: &RuleOptions) -> Result<Group, RuleError> {
        let file = file.display().to_string();
        let mut rules = Vec::with_capacity(spec.rules.len());
        for r in &spec.rules {
            // Prometheus evaluates and shows the expression as its parser prints it.
            let expr = crate::promql::parse_expr(&r.expr)
                .map_err(|message| RuleError::Expr {
                    file: file.clone(),
                    group: spec.name.clone(),
                    rule: r.name().to_string(),
                    message,
                })?
                .to_string();
            let labels = to_labels(&r.labels);
            rules.push(match &r.kind {
                RuleKind::Record(name) => {
                    Rule::Recording(RecordingRule::new(name.clone(), expr, labels))
                }
                RuleKind::Alert(name) => Rule::Alerting(AlertingRule::new(
                    name.clone(),
                    expr,
                    r.for_duration.0,
                    r.keep_firing_for.0,
                    labels,
                    // Annotations keep empty values (Prometheus shows them); a BTreeMap is sorted.
                    Labels::from_sorted_unchecked(
                        r.annotations
                            .iter()
                            .map(|(k, v)| Label::new(k.clone(), v.clone()))
                            .collect(),
                    ),
                    false,
                )),
            });
        }
        let interval_ms = spec
            .interval
            .map(|d| d.0)
            .unwrap_or(opts.evaluation_interval_ms)
            .max(1);
        Ok(Group {
            name: spec.name.clone(),
            file,
            interval_ms,
            limit: usize::try_from(spec.limit).unwrap_or(0),
            spec: spec.clone(),
            series_in_previous_eval: vec![Vec::new(); rules.len()],
            rules,
            stale_series: Vec::new(),
            opts: opts.clone(),
            halt: None,
            evaluation_seconds: 0.0,
            last_evaluation_ms: None,
            should_restore: true,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn file(&self) -> &str {
        &self.file
    }

    pub fn interval_ms(&self) -> i64 {
        self.interval_ms
    }

    /// `limit` (0: none).
    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn rules_mut(&mut self) -> &mut [Rule] {
        &mut self.rules
    }

    pub fn options(&self) -> &RuleOptions {
        &self.opts
    }

    /// Wall-clock duration of the last evaluation, seconds.
    pub fn evaluation_seconds(&self) -> f64 {
        self.evaluation_seconds
    }

    /// Wall-clock start of the last evaluation, Unix milliseconds.
    pub fn last_evaluation_ms(&self) -> Option<i64> {
        self.last_evaluation_ms
    }

    /// Records an evaluation's wall-clock start and duration (the scheduler measures them
    /// around [`Group::eval`], as Prometheus' `run` does).
    pub fn set_last_evaluation(&mut self, start_ms: i64, seconds: f64) {
        self.last_evaluation_ms = Some(start_ms);
        self.evaluation_seconds = seconds;
    }

    /// A flag that, once set, stops [`Group::eval`] before its next rule (Prometheus' `done`
    /// channel, checked between rules).
    pub fn set_halt_flag(&mut self, halt: Arc<AtomicBool>) {
        self.halt = Some(halt);
    }

    /// Whether the `for` state still has to be restored from `ALERTS_FOR_STATE`.
    pub fn should_restore(&self) -> bool {
        self.should_restore
    }

    /// Marks every alerting rule as restored: they write `ALERTS` from the next evaluation on
    /// (a group loaded by a reload, or a test that starts from nothing).
    pub fn set_restored(&mut self) {
        self.should_restore = false;
        for r in &mut self.rules {
            if let Some(a) = r.as_alerting_mut() {
                a.set_restored(true);
            }
        }
    }

    /// Whether `other` is the same group as configured (Prometheus' `Equals`, plus the external
    /// labels and URL that templates see, so that a change to them reaches the templates).
    pub fn same_config(&self, other: &Group) -> bool {
        self.file == other.file
            && self.interval_ms == other.interval_ms
            && self.spec == other.spec
            && self.opts.external_labels == other.opts.external_labels
            && self.opts.external_url == other.opts.external_url
    }

    /// Prometheus' group hash: of the label set `{file, name}`.
    pub fn hash(&self) -> u64 {
        let mut h = xxhash_rust::xxh64::Xxh64::new(0);
        for (n, v) in [("file", self.file.as_str()), ("name", self.name.as_str())] {
            h.update(n.as_bytes());
            h.update(b"\xff");
            h.update(v.as_bytes());
            h.update(b"\xff");
        }
        h.digest()
    }

    /// The evaluation slot at or before `now_ns` (Prometheus' `EvalTimestamp`): slots are
    /// `interval` apart, shifted by the group's hash modulo the interval, so that groups spread
    /// over the interval and a group keeps its slot across restarts.
    pub fn eval_timestamp_ns(&self, now_ns: i64) -> i64 {
        let interval = (self.interval_ms as u128 * 1_000_000).min(i64::MAX as u128) as i64;
        let offset = (self.hash() % interval as u64) as i64;
        let adj = now_ns - offset;
        adj - adj.rem_euclid(interval) + offset
    }

    /// Takes over the state of the group a reload replaces (Prometheus' `CopyState`): rules are
    /// matched by name and labels, the n-th duplicate with the n-th; a matched rule inherits the
    /// series of its last evaluation (for stale markers) and its alerts. Series of unmatched old
    /// rules are stale-marked at this group's next evaluation.
    pub fn copy_state(&mut self, from: &mut Group) {
        self.evaluation_seconds = from.evaluation_seconds;
        self.last_evaluation_ms = from.last_evaluation_ms;
        let mut used = vec![false; from.rules.len()];
        for i in 0..self.rules.len() {
            let id = self.rules[i].identity();
            let Some(fi) =
                (0..from.rules.len()).find(|&fi| !used[fi] && from.rules[fi].identity() == id)
            else {
                continue;
            };
            used[fi] = true;
            self.series_in_previous_eval[i] = std::mem::take(&mut from.series_in_previous_eval[fi]);
            if let (Some(to), Some(old)) = (
                self.rules[i].as_alerting_mut(),
                from.rules[fi].as_alerting_mut(),
            ) {
                to.take_alerts_from(old);
            }
        }
        self.stale_series = std::mem::take(&mut from.stale_series);
        for (fi, u) in used.iter().enumerate() {
            if !u {
                self.stale_series
                    .append(&mut from.series_in_previous_eval[fi]);
            }
        }
    }

    /// Everything the group's rules last wrote, for stale markers when the group is removed.
    pub fn take_all_series(&mut self) -> Vec<Labels> {
        let mut all = std::mem::take(&mut self.stale_series);
        for s in &mut self.series_in_previous_eval {
            all.append(s);
        }
        all
    }

    /// Evaluates every rule in order at `ts` (ms), appends their results, updates the alerts.
    pub fn eval(&mut self, db: &Db, ts: i64) -> EvalResult {
        let mut res = EvalResult::default();
        for i in 0..self.rules.len() {
            if self.cancelled()
                || self
                    .halt
                    .as_ref()
                    .is_some_and(|h| h.load(Ordering::Relaxed))
            {
                return res;
            }
            let started = Instant::now();
            let wall = now_ms();
            res.evaluated += 1;
            let outcome = match &mut self.rules[i] {
                Rule::Recording(r) => r.eval(db, ts, &self.opts.query, self.limit),
                Rule::Alerting(r) => r.eval(&EvalContext {
                    db,
                    ts,
                    query: &self.opts.query,
                    external_labels: &self.opts.external_labels,
                    external_url: &self.opts.external_url,
                    limit: self.limit,
                }),
            };
            match outcome {
                // A cancelled query is the group being stopped, not the rule failing.
                Err(_) if self.cancelled() => return res,
                Err(e) => {
                    res.failures += 1;
                    let st = self.rules[i].status_mut();
                    st.health = RuleHealth::Bad;
                    st.last_error = Some(e);
                }
                Ok(samples) => {
                    {
                        let st = self.rules[i].status_mut();
                        st.health = RuleHealth::Good;
                        st.last_error = None;
                    }
                    res.samples += samples.len();
                    if let Rule::Alerting(r) = &mut self.rules[i] {
                        res.alerts.extend(r.alerts_to_send(
                            ts,
                            self.opts.resend_delay_ms,
                            self.interval_ms,
                            &self.opts.external_url,
                        ));
                    }
                    if !self.append(db, i, ts, samples) {
                        res.failures += 1;
                    }
                }
            }
            let st = self.rules[i].status_mut();
            st.evaluation_seconds = started.elapsed().as_secs_f64();
            st.last_evaluation_ms = Some(wall);
        }
        self.cleanup_stale_series(db, ts);
        res
    }

    fn cancelled(&self) -> bool {
        self.opts
            .query
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    }

    /// Appends rule `i`'s samples and stale markers for its vanished series, commits. False when
    /// the commit failed (the rule is then unhealthy and its previous series are kept).
    fn append(&mut self, db: &Db, i: usize, ts: i64, samples: Vec<crate::promql::Sample>) -> bool {
        let mut app = db.appender();
        let mut returned: Vec<Labels> = Vec::with_capacity(samples.len());
        let mut first_err = None;
        for s in samples {
            match app.append(&s.labels, s.t, s.v) {
                Ok(_) => returned.push(s.labels),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        returned.sort_unstable();
        for old in &self.series_in_previous_eval[i] {
            if returned.binary_search(old).is_err() {
                // Rejections are expected when another rule now writes the series.
                let _ = app.append(old, ts, STALE_NAN);
            }
        }
        if let Some(e) = first_err {
            let st = self.rules[i].status_mut();
            st.health = RuleHealth::Bad;
            st.last_error = Some(append_error(&e));
        }
        match app.commit() {
            Ok(_) => {
                self.series_in_previous_eval[i] = returned;
                true
            }
            Err(e) => {
                let st = self.rules[i].status_mut();
                st.health = RuleHealth::Bad;
                st.last_error = Some(e.to_string());
                false
            }
        }
    }

    fn cleanup_stale_series(&mut self, db: &Db, ts: i64) {
        if self.stale_series.is_empty() {
            return;
        }
        if write_stale_markers(db, &self.stale_series, ts).is_ok() {
            self.stale_series.clear();
        }
    }

    /// Restores the `active_at` of the alerts found by the first evaluations from
    /// `ALERTS_FOR_STATE` (Prometheus' `RestoreForState`), then marks the rules restored.
    ///
    /// Only samples within the outage tolerance before `ts` count. An alert that was firing
    /// keeps its time; one that was pending continues its `for` as if the server had not been
    /// down (its `active_at` moves by the downtime), but fires no sooner than the grace period
    /// after `ts`. Rules whose `for` is shorter than the grace period are not restored.
    pub fn restore_for_state(&mut self, db: &Db, ts: i64) {
        let mint = ts - self.opts.outage_tolerance_ms;
        let querier = db.querier(mint, ts);
        let grace = self.opts.for_grace_period_ms;
        for rule in &mut self.rules {
            let Some(rule) = rule.as_alerting_mut() else {
                continue;
            };
            let hold = rule.hold_duration_ms();
            if hold < grace {
                rule.set_restored(true);
                continue;
            }
            let wanted: Vec<Labels> = rule
                .current_alerts()
                .map(|a| rule.for_state_labels(a))
                .collect();
            let mut restored_at = Vec::with_capacity(wanted.len());
            for want in &wanted {
                let matchers: Vec<Matcher> = want
                    .iter()
                    .map(|l| Matcher::equal(l.name.clone(), l.value.clone()))
                    .collect();
                let Ok(series) = querier.select(&matchers) else {
                    restored_at.push(None);
                    continue;
                };
                let last = series
                    .iter()
                    .find(|s| s.labels() == want)
                    .and_then(|s| s.samples().last());
                restored_at.push(last);
            }
            for (a, last) in rule.alerts_mut().zip(restored_at) {
                let Some((t, v)) = last else { continue };
                if v.to_bits() == crate::chunk::STALE_NAN_BITS {
                    continue;
                }
                // Prometheus works in whole seconds here.
                let down_at = t.div_euclid(1000) * 1000;
                let mut active_at = (v as i64).saturating_mul(1000);
                let remaining = hold - (down_at - active_at);
                if remaining <= 0 {
                    // Was firing: the next evaluation finds it firing again if it still holds.
                } else if remaining < grace {
                    active_at = ts + grace - hold;
                } else {
                    active_at += ts - down_at;
                }
                a.active_at_ms = active_at;
            }
            rule.set_restored(true);
        }
        self.should_restore = false;
    }
}

/// Appends a stale marker at `ts` to each series and commits; rejected markers (the series has
/// a newer sample: another rule writes it now) are not errors.
pub fn write_stale_markers(db: &Db, series: &[Labels], ts: i64) -> Result<(), crate::db::DbError> {
    let mut app = db.appender();
    for s in series {
        let _ = app.append(s, ts, STALE_NAN);
    }
    app.commit().map(|_| ())
}

/// Prometheus' wording of a rejected sample.
fn append_error(e: &AppendError) -> String {
    match e {
        AppendError::Rejected(Reject::OutOfOrder) => "out of order sample".into(),
        AppendError::Rejected(Reject::Duplicate) => "duplicate sample for timestamp".into(),
        AppendError::Rejected(Reject::OutOfBounds) => "out of bounds".into(),
        e => e.to_string(),
    }
}

fn to_labels(m: &std::collections::BTreeMap<String, String>) -> Labels {
    Labels::new(
        m.iter()
            .map(|(k, v)| Label::new(k.clone(), v.clone()))
            .collect(),
    )
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
