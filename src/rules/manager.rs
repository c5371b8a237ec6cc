//! Scheduling of rule groups (Prometheus 2.42's `rules.Manager` and `Group.run`).
//!
//! Each group runs on its own tokio task. Its evaluation timestamps are the slots of
//! [`Group::eval_timestamp_ns`]: `interval` apart, offset by the group's hash, the first one an
//! interval after start-up. An evaluation runs on a blocking thread (the engine is synchronous);
//! groups run concurrently. When an evaluation overruns its interval, the slots it overran are
//! counted as missed (`prometheus_rule_group_iterations_missed_total`) and skipped: the next
//! evaluation takes the latest slot, never a backlog.
//!
//! At start-up, the `for` state of alerts is restored from `ALERTS_FOR_STATE` after the second
//! evaluation (recording rules the alerts depend on have run by then), as Prometheus does.
//!
//! [`Manager::apply_config`] loads the configuration's rule files (a broken file changes
//! nothing). A group whose configuration is unchanged keeps running untouched; a changed group is
//! stopped and its replacement takes over the state of rules with the same name and labels
//! ([`Group::copy_state`]: alerts keep their `active_at`); a removed group is stopped and, two
//! intervals later (time for a renamed rule to take its series over), its series are
//! stale-marked.
//!
//! `prometheus_client` has no summary: Prometheus' two summaries
//! (`prometheus_rule_evaluation_duration_seconds`, `prometheus_rule_group_duration_seconds`) are
//! histograms here, under the same names.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::group::{
    now_ms, write_stale_markers, Group, RuleError, RuleOptions, DEFAULT_FOR_GRACE_PERIOD_MS,
    DEFAULT_OUTAGE_TOLERANCE_MS, DEFAULT_RESEND_DELAY_MS,
};
use super::status::{GroupStatus, RulesView};
use super::AlertSink;
use crate::config::{Config, ConfigError};
use crate::db::Db;
use crate::labels::{Label, Labels};
use crate::promql::QueryOptions;

/// Settings of the manager that do not come from `prometheus.yml`.
#[derive(Clone, Debug)]
pub struct ManagerOptions {
    /// `--web.external-url`, without a trailing slash.
    pub external_url: String,
    /// The engine's limits: the same as for queries (`--query.max-samples`, `--query.timeout`,
    /// lookback). Its `cancel` is ignored (each group has its own).
    pub query: QueryOptions,
    pub resend_delay_ms: i64,
    pub outage_tolerance_ms: i64,
    pub for_grace_period_ms: i64,
}

impl Default for ManagerOptions {
    fn default() -> ManagerOptions {
        ManagerOptions {
            external_url: String::new(),
            query: QueryOptions::default(),
            resend_delay_ms: DEFAULT_RESEND_DELAY_MS,
            outage_tolerance_ms: DEFAULT_OUTAGE_TOLERANCE_MS,
            for_grace_period_ms: DEFAULT_FOR_GRACE_PERIOD_MS,
        }
    }
}

/// Errors of [`Manager::apply_config`]; the previous rules keep running.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error("loading rule files: {0}")]
    Load(#[from] ConfigError),
    #[error("loading rule groups: {0}")]
    Group(#[from] RuleError),
}

type GroupLabel = Vec<(&'static str, String)>;

fn seconds_buckets() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0,
    ])
}

/// Prometheus' rule metrics (`rules.Metrics`), by `rule_group` = `file;name`.
#[derive(Clone)]
struct RuleMetrics {
    eval_duration: Histogram,
    iteration_duration: Histogram,
    iterations_missed: Family<GroupLabel, Counter>,
    iterations_scheduled: Family<GroupLabel, Counter>,
    eval_total: Family<GroupLabel, Counter>,
    eval_failures: Family<GroupLabel, Counter>,
    group_interval: Family<GroupLabel, Gauge<f64, AtomicU64>>,
    group_last_eval_time: Family<GroupLabel, Gauge<f64, AtomicU64>>,
    group_last_duration: Family<GroupLabel, Gauge<f64, AtomicU64>>,
    group_rules: Family<GroupLabel, Gauge>,
    group_samples: Family<GroupLabel, Gauge>,
}

impl RuleMetrics {
    fn new(r: &mut Registry) -> RuleMetrics {
        let m = RuleMetrics {
            eval_duration: seconds_buckets(),
            iteration_duration: seconds_buckets(),
            iterations_missed: Family::default(),
            iterations_scheduled: Family::default(),
            eval_total: Family::default(),
            eval_failures: Family::default(),
            group_interval: Family::default(),
            group_last_eval_time: Family::default(),
            group_last_duration: Family::default(),
            group_rules: Family::default(),
            group_samples: Family::default(),
        };
        // Counter names lose `_total` here: the client appends it.
        r.register(
            "prometheus_rule_evaluation_duration_seconds",
            "The duration for a rule to execute.",
            m.eval_duration.clone(),
        );
        r.register(
            "prometheus_rule_group_duration_seconds",
            "The duration of rule group evaluations.",
            m.iteration_duration.clone(),
        );
        r.register(
            "prometheus_rule_group_iterations_missed",
            "The total number of rule group evaluations missed due to slow rule group evaluation.",
            m.iterations_missed.clone(),
        );
        r.register(
            "prometheus_rule_group_iterations",
            "The total number of scheduled rule group evaluations, whether executed or missed.",
            m.iterations_scheduled.clone(),
        );
        r.register(
            "prometheus_rule_evaluations",
            "The total number of rule evaluations.",
            m.eval_total.clone(),
        );
        r.register(
            "prometheus_rule_evaluation_failures",
            "The total number of rule evaluation failures.",
            m.eval_failures.clone(),
        );
        r.register(
            "prometheus_rule_group_interval_seconds",
            "The interval of a rule group.",
            m.group_interval.clone(),
        );
        r.register(
            "prometheus_rule_group_last_evaluation_timestamp_seconds",
            "The timestamp of the last rule group evaluation in seconds.",
            m.group_last_eval_time.clone(),
        );
        r.register(
            "prometheus_rule_group_last_duration_seconds",
            "The duration of the last rule group evaluation.",
            m.group_last_duration.clone(),
        );
        r.register(
            "prometheus_rule_group_rules",
            "The number of rules.",
            m.group_rules.clone(),
        );
        r.register(
            "prometheus_rule_group_last_evaluation_samples",
            "The number of samples returned during the last rule group evaluation.",
            m.group_samples.clone(),
        );
        m
    }

    /// Creates a group's series (Prometheus shows them at zero before the first evaluation).
    fn init(&self, key: &GroupLabel, g: &Group) {
        let _ = self.iterations_missed.get_or_create(key);
        let _ = self.iterations_scheduled.get_or_create(key);
        let _ = self.eval_total.get_or_create(key);
        let _ = self.eval_failures.get_or_create(key);
        let _ = self.group_last_eval_time.get_or_create(key);
        let _ = self.group_last_duration.get_or_create(key);
        let _ = self.group_samples.get_or_create(key);
        self.group_rules
            .get_or_create(key)
            .set(g.rules().len() as i64);
        self.group_interval
            .get_or_create(key)
            .set(g.interval_ms() as f64 / 1000.0);
    }

    fn remove(&self, key: &GroupLabel) {
        self.iterations_missed.remove(key);
        self.iterations_scheduled.remove(key);
        self.eval_total.remove(key);
        self.eval_failures.remove(key);
        self.group_interval.remove(key);
        self.group_last_eval_time.remove(key);
        self.group_last_duration.remove(key);
        self.group_rules.remove(key);
        self.group_samples.remove(key);
    }
}

/// A group's identity: file, then name (Prometheus' `GroupKey` is `file;name`).
type Key = (String, String);

struct Running {
    group: Arc<Mutex<Group>>,
    status: Arc<RwLock<GroupStatus>>,
    stop: watch::Sender<bool>,
    /// Stops the group's evaluation between rules.
    halt: Arc<AtomicBool>,
    /// Also cancels its running query (shutdown).
    cancel: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Running {
    /// Stops the task after its current rule; returns the group with its state.
    async fn stop(self, cancel_query: bool) -> Arc<Mutex<Group>> {
        let _ = self.stop.send(true);
        self.halt.store(true, Ordering::Relaxed);
        if cancel_query {
            self.cancel.store(true, Ordering::Relaxed);
        }
        let _ = self.task.await;
        self.group
    }
}

#[derive(Default)]
struct State {
    groups: BTreeMap<Key, Running>,
    /// A configuration has been applied: later groups need no `for`-state restoration.
    restored: bool,
    stopped: bool,
}

struct Core {
    db: Arc<Db>,
    sink: Arc<dyn AlertSink>,
    opts: ManagerOptions,
    metrics: RuleMetrics,
    state: tokio::sync::Mutex<State>,
    views: RwLock<BTreeMap<Key, Arc<RwLock<GroupStatus>>>>,
    /// Set at shutdown: removed groups waiting to stale-mark their series give up.
    done: watch::Sender<bool>,
}

/// Runs the rule groups of the configuration; read by the web layer through [`RulesView`].
#[derive(Clone)]
pub struct Manager {
    core: Arc<Core>,
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos().min(i64::MAX as u128) as i64)
        .unwrap_or(0)
}

fn group_label(k: &Key) -> GroupLabel {
    vec![("rule_group", format!("{};{}", k.0, k.1))]
}

impl Manager {
    /// A manager without groups; [`Manager::apply_config`] starts them.
    pub fn new(
        db: Arc<Db>,
        sink: Arc<dyn AlertSink>,
        opts: ManagerOptions,
        registry: &mut Registry,
    ) -> Manager {
        let (done, _) = watch::channel(false);
        Manager {
            core: Arc::new(Core {
                db,
                sink,
                opts,
                metrics: RuleMetrics::new(registry),
                state: tokio::sync::Mutex::new(State::default()),
                views: RwLock::new(BTreeMap::new()),
                done,
            }),
        }
    }

    /// Loads the rule files of `cfg` and applies them (see the module doc). On error nothing
    /// changes.
    pub async fn apply_config(&self, cfg: &Config) -> Result<(), ManagerError> {
        let core = &self.core;
        let files = cfg.load_rule_files()?;
        let external_labels = Labels::new(
            cfg.global
                .external_labels
                .iter()
                .map(|(k, v)| Label::new(k.clone(), v.clone()))
                .collect(),
        );
        let mut state = core.state.lock().await;
        if state.stopped {
            return Ok(());
        }
        let mut fresh: BTreeMap<Key, (Group, Arc<AtomicBool>)> = BTreeMap::new();
        for f in &files {
            for spec in &f.groups {
                let cancel = Arc::new(AtomicBool::new(false));
                let mut query = core.opts.query.clone();
                query.cancel = Some(cancel.clone());
                let opts = RuleOptions {
                    evaluation_interval_ms: cfg.global.evaluation_interval.0,
                    external_labels: external_labels.clone(),
                    external_url: core.opts.external_url.clone(),
                    query,
                    resend_delay_ms: core.opts.resend_delay_ms,
                    outage_tolerance_ms: core.opts.outage_tolerance_ms,
                    for_grace_period_ms: core.opts.for_grace_period_ms,
                };
                let mut g = Group::new(&f.path, spec, &opts)?;
                if state.restored {
                    g.set_restored();
                }
                fresh.insert((g.file().to_string(), g.name().to_string()), (g, cancel));
            }
        }
        state.restored = true;

        let mut old = std::mem::take(&mut state.groups);
        let mut running = BTreeMap::new();
        for (key, (mut g, cancel)) in fresh {
            if let Some(prev) = old.remove(&key) {
                let same = prev
                    .group
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .same_config(&g);
                if same {
                    running.insert(key, prev);
                    continue;
                }
                let prev = prev.stop(false).await;
                let mut prev = prev.lock().unwrap_or_else(PoisonError::into_inner);
                g.copy_state(&mut prev);
            }
            core.metrics.init(&group_label(&key), &g);
            running.insert(key, self.start(g, cancel));
        }
        for (key, prev) in old {
            core.metrics.remove(&group_label(&key));
            let interval = {
                let g = prev.group.lock().unwrap_or_else(PoisonError::into_inner);
                g.interval_ms()
            };
            let group = prev.stop(false).await;
            let stopped_at = now_ms();
            let series = group
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take_all_series();
            if !series.is_empty() {
                let db = core.db.clone();
                let mut done = core.done.subscribe();
                tokio::spawn(async move {
                    // Two intervals for a renamed rule to write the series first (its newer
                    // samples then make these markers out of order, hence dropped).
                    tokio::select! {
                        _ = async { drop(done.wait_for(|d| *d).await) } => {}
                        _ = tokio::time::sleep(Duration::from_millis(2 * interval as u64)) => {
                            let _ = tokio::task::spawn_blocking(move || {
                                write_stale_markers(&db, &series, stopped_at)
                            })
                            .await;
                        }
                    }
                });
            }
        }
        {
            let mut views = core.views.write().unwrap_or_else(PoisonError::into_inner);
            *views = running
                .iter()
                .map(|(k, r)| (k.clone(), r.status.clone()))
                .collect();
        }
        state.groups = running;
        Ok(())
    }

    fn start(&self, mut g: Group, cancel: Arc<AtomicBool>) -> Running {
        let halt = Arc::new(AtomicBool::new(false));
        g.set_halt_flag(halt.clone());
        let status = Arc::new(RwLock::new(GroupStatus::of(&g)));
        let group = Arc::new(Mutex::new(g));
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run_group(
            self.core.clone(),
            group.clone(),
            status.clone(),
            stop_rx,
        ));
        Running {
            group,
            status,
            stop,
            halt,
            cancel,
            task,
        }
    }

    /// Stops every group (running queries are cancelled) and waits for them; removed groups
    /// waiting to stale-mark their series give up. Later [`Manager::apply_config`] calls do
    /// nothing.
    pub async fn stop(&self) {
        let core = &self.core;
        let _ = core.done.send(true);
        let mut state = core.state.lock().await;
        state.stopped = true;
        let groups = std::mem::take(&mut state.groups);
        let stops: Vec<_> = groups.into_values().map(|r| r.stop(true)).collect();
        for s in stops {
            s.await;
        }
    }
}

impl RulesView for Manager {
    fn rule_groups(&self) -> Vec<GroupStatus> {
        let views = self
            .core
            .views
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        views
            .values()
            .map(|s| s.read().unwrap_or_else(PoisonError::into_inner).clone())
            .collect()
    }
}

/// Waits until wall-clock `at_ns`; false when told to stop first.
async fn sleep_until_ns(at_ns: i64, stop: &mut watch::Receiver<bool>) -> bool {
    let wait = Duration::from_nanos(at_ns.saturating_sub(now_ns()).max(0) as u64);
    let stopped = tokio::select! {
        _ = async { drop(stop.wait_for(|s| *s).await) } => true,
        _ = tokio::time::sleep(wait) => false,
    };
    !stopped && !*stop.borrow()
}

/// The slot to evaluate once a tick after `prev` arrives at `now`, and how many slots were
/// missed on the way: the latest slot not after `now`, so an overrun skips slots instead of
/// queueing them (Prometheus' `missed := (time.Since(evalTimestamp) / g.interval) - 1`).
fn next_slot(prev: i64, now: i64, interval: i64) -> (u64, i64) {
    let missed = ((now - prev) / interval - 1).max(0);
    (missed as u64, prev + (missed + 1) * interval)
}

/// One group's task (Prometheus' `Group.run`).
async fn run_group(
    core: Arc<Core>,
    group: Arc<Mutex<Group>>,
    status: Arc<RwLock<GroupStatus>>,
    mut stop: watch::Receiver<bool>,
) {
    let (key, interval_ns, first, should_restore) = {
        let g = group.lock().unwrap_or_else(PoisonError::into_inner);
        let interval_ns = g.interval_ms().saturating_mul(1_000_000);
        (
            group_label(&(g.file().to_string(), g.name().to_string())),
            interval_ns,
            g.eval_timestamp_ns(now_ns()) + interval_ns,
            g.should_restore(),
        )
    };
    let mut eval_ts = first;
    if !sleep_until_ns(eval_ts, &mut stop).await {
        return;
    }
    iteration(&core, &group, &status, &key, eval_ts).await;
    let mut restore = should_restore;
    loop {
        if !sleep_until_ns(eval_ts + interval_ns, &mut stop).await {
            return;
        }
        let (missed, next) = next_slot(eval_ts, now_ns(), interval_ns);
        if missed > 0 {
            core.metrics
                .iterations_missed
                .get_or_create(&key)
                .inc_by(missed);
            core.metrics
                .iterations_scheduled
                .get_or_create(&key)
                .inc_by(missed);
        }
        eval_ts = next;
        iteration(&core, &group, &status, &key, eval_ts).await;
        if restore {
            // After the second evaluation: recording rules the alerts read have run.
            restore = false;
            let (g, db) = (group.clone(), core.db.clone());
            let status_now = tokio::task::spawn_blocking(move || {
                let mut g = g.lock().unwrap_or_else(PoisonError::into_inner);
                g.restore_for_state(&db, now_ms());
                GroupStatus::of(&g)
            })
            .await;
            if let Ok(s) = status_now {
                *status.write().unwrap_or_else(PoisonError::into_inner) = s;
            }
        }
    }
}

/// One evaluation at `eval_ts_ns` on a blocking thread, then metrics, status and delivery.
async fn iteration(
    core: &Arc<Core>,
    group: &Arc<Mutex<Group>>,
    status: &Arc<RwLock<GroupStatus>>,
    key: &GroupLabel,
    eval_ts_ns: i64,
) {
    let m = &core.metrics;
    m.iterations_scheduled.get_or_create(key).inc();
    let (g, db) = (group.clone(), core.db.clone());
    let joined = tokio::task::spawn_blocking(move || {
        let mut g = g.lock().unwrap_or_else(PoisonError::into_inner);
        let start_ms = now_ms();
        let started = Instant::now();
        let res = g.eval(&db, eval_ts_ns.div_euclid(1_000_000));
        let secs = started.elapsed().as_secs_f64();
        g.set_last_evaluation(start_ms, secs);
        let rule_secs: Vec<f64> = g
            .rules()
            .iter()
            .take(res.evaluated)
            .map(|r| r.status().evaluation_seconds)
            .collect();
        (res, GroupStatus::of(&g), secs, start_ms, rule_secs)
    })
    .await;
    let Ok((res, snapshot, secs, start_ms, rule_secs)) = joined else {
        return;
    };
    for s in rule_secs {
        m.eval_duration.observe(s);
    }
    m.iteration_duration.observe(secs);
    m.eval_total.get_or_create(key).inc_by(res.evaluated as u64);
    m.eval_failures
        .get_or_create(key)
        .inc_by(res.failures as u64);
    m.group_samples.get_or_create(key).set(res.samples as i64);
    m.group_last_duration.get_or_create(key).set(secs);
    m.group_last_eval_time
        .get_or_create(key)
        .set(start_ms as f64 / 1000.0);
    *status.write().unwrap_or_else(PoisonError::into_inner) = snapshot;
    if !res.alerts.is_empty() {
        core.sink.send(res.alerts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Matcher;
    use crate::rules::Alert;
    use crate::Options;

    #[test]
    fn overruns_skip_slots_instead_of_queueing_them() {
        // On time (the tick comes just after the next slot).
        assert_eq!(next_slot(1_000, 2_001, 1_000), (0, 2_000));
        // Evaluation took 2.5 intervals: two slots missed, the latest slot taken.
        assert_eq!(next_slot(1_000, 4_500, 1_000), (2, 4_000));
        // An early tick never goes back nor repeats a slot.
        assert_eq!(next_slot(1_000, 1_500, 1_000), (0, 2_000));
    }

    struct Collect(Mutex<Vec<Alert>>);

    impl AlertSink for Collect {
        fn send(&self, alerts: Vec<Alert>) {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(alerts);
        }
    }

    fn last_sample(db: &Db, name: &str) -> Option<(i64, f64)> {
        let q = db.querier(0, i64::MAX / 2);
        q.select(&[Matcher::equal("__name__", name)])
            .ok()?
            .first()
            .and_then(|s| s.samples().last())
    }

    async fn wait(what: &str, mut ok: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("timed out waiting for {what}");
    }

    fn status_ptr(m: &Manager, name: &str) -> *const RwLock<GroupStatus> {
        let views = m.core.views.read().unwrap();
        let (_, s) = views.iter().find(|(k, _)| k.1 == name).unwrap();
        Arc::as_ptr(s)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn groups_run_are_kept_replaced_and_removed_with_stale_markers() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(
            Db::open(
                dir.path().join("data"),
                Options::default().background_compaction(false),
            )
            .unwrap(),
        );
        let rules = dir.path().join("rules.yml");
        let cfg_path = dir.path().join("prometheus.yml");
        std::fs::write(
            &cfg_path,
            "global:\n  evaluation_interval: 100ms\nrule_files: [rules.yml]\n",
        )
        .unwrap();
        let both = "groups:\n- name: fast\n  rules:\n  - record: one\n    expr: vector(1)\n  - alert: Always\n    expr: vector(1)\n- name: other\n  rules:\n  - record: two\n    expr: vector(2)\n";
        std::fs::write(&rules, both).unwrap();
        let cfg = Config::load(&cfg_path).unwrap();
        let sink = Arc::new(Collect(Mutex::new(Vec::new())));
        let mut reg = Registry::default();
        let m = Manager::new(
            db.clone(),
            sink.clone(),
            ManagerOptions {
                external_url: "http://x".into(),
                ..ManagerOptions::default()
            },
            &mut reg,
        );
        m.apply_config(&cfg).await.unwrap();
        wait("both groups evaluated", || {
            last_sample(&db, "one").is_some() && last_sample(&db, "two").is_some()
        })
        .await;
        wait("the alert delivered", || !sink.0.lock().unwrap().is_empty()).await;
        let sent = sink.0.lock().unwrap()[0].clone();
        assert_eq!(sent.labels.get("alertname"), Some("Always"));
        assert_eq!(
            sent.generator_url,
            "http://x/graph?g0.expr=vector%281%29&g0.tab=1"
        );
        let groups = m.rule_groups();
        assert_eq!(
            groups.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(),
            ["fast", "other"]
        );
        assert_eq!(groups[0].interval_ms, 100);

        // The same configuration again: both groups keep running untouched.
        let (fast, other) = (status_ptr(&m, "fast"), status_ptr(&m, "other"));
        m.apply_config(&cfg).await.unwrap();
        assert_eq!(status_ptr(&m, "fast"), fast);
        assert_eq!(status_ptr(&m, "other"), other);

        // `other` removed, `fast` changed: `fast` is replaced, `two` goes stale two intervals
        // after its group stopped.
        std::fs::write(
            &rules,
            "groups:\n- name: fast\n  rules:\n  - record: one\n    expr: vector(1)\n  - alert: Always\n    expr: vector(1)\n    labels:\n      new: label\n",
        )
        .unwrap();
        let cfg = Config::load(&cfg_path).unwrap();
        m.apply_config(&cfg).await.unwrap();
        assert_ne!(status_ptr(&m, "fast"), fast);
        assert_eq!(m.rule_groups().len(), 1);
        wait("the removed group's series stale", || {
            last_sample(&db, "two")
                .is_some_and(|(_, v)| v.to_bits() == crate::chunk::STALE_NAN_BITS)
        })
        .await;
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        let key = format!("{};fast", rules.display());
        assert!(
            text.contains(&format!(
                "prometheus_rule_group_iterations_total{{rule_group=\"{key}\"}}"
            )),
            "{text}"
        );
        assert!(text.contains(&format!(
            "prometheus_rule_group_rules{{rule_group=\"{key}\"}} 2"
        )));
        assert!(!text.contains(";other\""), "{text}");

        m.stop().await;
        let before = last_sample(&db, "one");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(last_sample(&db, "one"), before, "evaluation after stop");
        m.apply_config(&cfg).await.unwrap();
        assert_eq!(m.rule_groups().len(), 1);
    }
}
