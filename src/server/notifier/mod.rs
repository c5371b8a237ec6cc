//! Alertmanager delivery: the `alerting` section of `prometheus.yml` and what Prometheus 2.42's
//! `notifier` package does with the alerts that rule evaluation hands over (issue 6, point 4).
//!
//! Why it exists: alerting rules decide *that* an alert fires; users route, group, silence and
//! deliver alerts with the Alertmanager they already run. This module is the
//! [`crate::rules::AlertSink`] that rule evaluation sends to, and it must never make evaluation
//! wait on the network.
//!
//! What it does, as Prometheus does it:
//! - [`Notifier::send`] (the sink) adds the external labels an alert lacks, applies
//!   `alert_relabel_configs` (an alert they drop is not sent), and appends to a queue of
//!   `--alertmanager.notification-queue-capacity` alerts (default 10,000); when full the oldest
//!   alerts are dropped and counted (`prometheus_notifications_dropped_total`). It only takes a
//!   lock: no I/O, no await.
//! - A dispatcher task takes batches of at most [`MAX_BATCH_SIZE`] (64) alerts, encodes each once
//!   ([`payload`]: the `POST /api/v2/alerts` body) and hands it to every discovered Alertmanager.
//!   A batch that no Alertmanager accepted is counted as dropped.
//! - Alertmanagers come from each `alertmanagers` entry's `static_configs` and
//!   `file_sd_configs` through its `relabel_configs` ([`discovery`]); file SD files are polled
//!   every second, as the scrape manager's are.
//!
//! One deliberate difference: Prometheus 2.42 posts a batch to all Alertmanagers and waits for all
//! of them before the next batch, so a slow Alertmanager delays the others by up to its timeout.
//! Here each Alertmanager has its own sender task and a bounded outbox of batches
//! (capacity / 64 batches, oldest dropped when full): a slow or down Alertmanager delays only
//! itself. Batches still reach each Alertmanager in order.
//!
//! Metrics are Prometheus' names: `prometheus_notifications_latency_seconds` (a histogram here,
//! a summary there: `prometheus_client` has no summary), `_errors_total`, `_sent_total` (per
//! `alertmanager` URL; as in Prometheus, `sent` counts alerts of failed posts too),
//! `_dropped_total`, `_queue_length`, `_queue_capacity`, and
//! `prometheus_notifications_alertmanagers_discovered`.
//!
//! Only the Alertmanager API v2 is spoken (configuration validation refuses `api_version: v1`).

mod client;
pub mod discovery;
pub mod payload;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

pub use client::{AmClient, ClientError, SendError, USER_AGENT};

use super::scrape::discovery::{static_groups, FileSd, POLL_INTERVAL};
use super::scrape::target::Group;
use super::{log, AlertmanagerView, Level};
use crate::config::{AlertmanagerConfig, Config, ALERTMANAGER_API_VERSION};
use crate::labels::{Label, Labels};
use crate::relabel::{self, Rule};
use crate::rules::{Alert, AlertSink};

/// Prometheus' default `--alertmanager.notification-queue-capacity`.
pub const DEFAULT_QUEUE_CAPACITY: usize = 10_000;
/// Alerts per post (Prometheus' `maxBatchSize`).
pub const MAX_BATCH_SIZE: usize = 64;
/// How long [`Notifier::stop`] tries to deliver what is still queued.
pub const DEFAULT_FLUSH_DEADLINE: Duration = Duration::from_secs(5);

/// Settings from the command line.
#[derive(Clone, Debug)]
pub struct NotifierOptions {
    /// Alerts the queue holds before the oldest are dropped.
    pub queue_capacity: usize,
    /// The bound on [`Notifier::stop`]'s last deliveries.
    pub flush_deadline: Duration,
}

impl Default for NotifierOptions {
    fn default() -> NotifierOptions {
        NotifierOptions {
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            flush_deadline: DEFAULT_FLUSH_DEADLINE,
        }
    }
}

/// Why a configuration could not be applied (nothing of it is then: the previous one stays).
#[derive(Debug, thiserror::Error)]
pub enum NotifierError {
    #[error("alerting.alert_relabel_configs: {0}")]
    AlertRelabel(String),
    #[error("alerting.alertmanagers[{index}].relabel_configs: {message}")]
    Relabel { index: usize, message: String },
    #[error("alerting.alertmanagers[{index}]: api_version {version:?} is not supported: tsdbctl speaks only v2")]
    ApiVersion { index: usize, version: String },
    #[error("alerting.alertmanagers[{index}]: {error}")]
    Client { index: usize, error: ClientError },
    #[error("the notifier is stopped")]
    Stopped,
}

type AmLabel = Vec<(&'static str, String)>;

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

#[derive(Clone)]
struct Metrics {
    latency: Family<AmLabel, Histogram, fn() -> Histogram>,
    errors: Family<AmLabel, Counter>,
    sent: Family<AmLabel, Counter>,
    dropped: Counter,
    queue_length: Gauge,
    queue_capacity: Gauge,
    discovered: Gauge,
}

impl Metrics {
    fn new(r: &mut Registry, capacity: usize) -> Metrics {
        let m = Metrics {
            latency: Family::new_with_constructor(latency_histogram),
            errors: Family::default(),
            sent: Family::default(),
            dropped: Counter::default(),
            queue_length: Gauge::default(),
            queue_capacity: Gauge::default(),
            discovered: Gauge::default(),
        };
        m.queue_capacity
            .set(i64::try_from(capacity).unwrap_or(i64::MAX));
        r.register(
            "prometheus_notifications_latency_seconds",
            "Latency quantiles for sending alert notifications.",
            m.latency.clone(),
        );
        r.register(
            "prometheus_notifications_errors",
            "Total number of errors sending alert notifications.",
            m.errors.clone(),
        );
        r.register(
            "prometheus_notifications_sent",
            "Total number of alerts sent.",
            m.sent.clone(),
        );
        r.register(
            "prometheus_notifications_dropped",
            "Total number of alerts dropped due to errors when sending to Alertmanager.",
            m.dropped.clone(),
        );
        r.register(
            "prometheus_notifications_queue_length",
            "The number of alert notifications in the queue.",
            m.queue_length.clone(),
        );
        r.register(
            "prometheus_notifications_queue_capacity",
            "The capacity of the alert notifications queue.",
            m.queue_capacity.clone(),
        );
        r.register(
            "prometheus_notifications_alertmanagers_discovered",
            "The number of alertmanagers discovered and active.",
            m.discovered.clone(),
        );
        m
    }
}

fn am_label(url: &str) -> AmLabel {
    vec![("alertmanager", url.to_string())]
}

/// A poisoned lock only means another thread panicked while holding it; the data (queues,
/// lists) stays usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One encoded batch on its way to every Alertmanager.
struct Batch {
    body: bytes::Bytes,
    count: usize,
    /// Alertmanagers that have not finished with it yet.
    pending: AtomicUsize,
    delivered: AtomicBool,
}

impl Batch {
    /// One Alertmanager is done with the batch; the last one counts it as dropped when none
    /// accepted it (Prometheus: `sendAll` returned false).
    fn finish(&self, ok: bool, metrics: &Metrics) {
        if ok {
            self.delivered.store(true, Ordering::SeqCst);
        }
        if self.pending.fetch_sub(1, Ordering::SeqCst) == 1
            && !self.delivered.load(Ordering::SeqCst)
        {
            metrics.dropped.inc_by(self.count as u64);
        }
    }
}

/// The batches waiting for one Alertmanager.
struct Outbox {
    batches: Mutex<VecDeque<Arc<Batch>>>,
    more: Notify,
    closed: AtomicBool,
    capacity: usize,
}

impl Outbox {
    fn push(&self, b: Arc<Batch>, url: &str, metrics: &Metrics) {
        if self.closed.load(Ordering::SeqCst) {
            b.finish(false, metrics);
            return;
        }
        let evicted = {
            let mut q = lock(&self.batches);
            let evicted = if q.len() >= self.capacity {
                q.pop_front()
            } else {
                None
            };
            q.push_back(b);
            evicted
        };
        if let Some(old) = evicted {
            log(
                Level::Warn,
                &format!(
                    "Alertmanager {url} is behind: {} alerts not sent to it",
                    old.count
                ),
            );
            old.finish(false, metrics);
        }
        self.more.notify_one();
    }

    /// No more batches; with `discard`, those waiting are given up (an Alertmanager gone from
    /// discovery), else the sender delivers them first (shutdown).
    fn close(&self, discard: bool, metrics: &Metrics) {
        self.closed.store(true, Ordering::SeqCst);
        if discard {
            let left: Vec<Arc<Batch>> = lock(&self.batches).drain(..).collect();
            for b in left {
                b.finish(false, metrics);
            }
        }
        self.more.notify_one();
    }
}

struct Worker {
    url: String,
    outbox: Arc<Outbox>,
    join: JoinHandle<()>,
}

/// One `alertmanagers` entry, running.
struct AmSet {
    cfg: AlertmanagerConfig,
    client: AmClient,
    rules: Vec<Rule>,
    static_groups: Vec<Group>,
    file_groups: Vec<Group>,
    workers: Vec<Worker>,
    dropped: Vec<String>,
}

#[derive(Default)]
struct Sets {
    sets: Vec<AmSet>,
    /// Bumped by each applied configuration, so a file SD task of an older one changes nothing.
    generation: u64,
    stopped: bool,
}

#[derive(Default)]
struct Queue {
    alerts: VecDeque<Alert>,
    stopped: bool,
}

#[derive(Default)]
struct Labeling {
    external: Labels,
    rules: Vec<Rule>,
}

#[derive(Default)]
struct Tasks {
    dispatcher: Option<JoinHandle<()>>,
    discovery: Option<JoinHandle<()>>,
}

struct Core {
    capacity: usize,
    flush_deadline: Duration,
    queue: Mutex<Queue>,
    more: Notify,
    labeling: RwLock<Labeling>,
    sets: Mutex<Sets>,
    tasks: Mutex<Tasks>,
    metrics: Metrics,
    shutdown: watch::Sender<bool>,
}

/// Delivers alerts to Alertmanagers. See the module doc.
#[derive(Clone)]
pub struct Notifier {
    core: Arc<Core>,
}

/// An `alertmanagers` entry checked and with its client built, not yet running.
struct Prepared {
    cfg: AlertmanagerConfig,
    client: AmClient,
    rules: Vec<Rule>,
    static_groups: Vec<Group>,
    file_sd: Vec<FileSd>,
}

impl Notifier {
    /// A notifier with no Alertmanagers (alerts sent before the first
    /// [`Notifier::apply_config`] wait in the queue); its metrics are registered in `registry`.
    pub fn new(opts: NotifierOptions, registry: &mut Registry) -> Notifier {
        let capacity = opts.queue_capacity.max(1);
        let (shutdown, _) = watch::channel(false);
        Notifier {
            core: Arc::new(Core {
                capacity,
                flush_deadline: opts.flush_deadline,
                queue: Mutex::new(Queue::default()),
                more: Notify::new(),
                labeling: RwLock::new(Labeling::default()),
                sets: Mutex::new(Sets::default()),
                tasks: Mutex::new(Tasks::default()),
                metrics: Metrics::new(registry, capacity),
                shutdown,
            }),
        }
    }

    /// Takes the `alerting` section and external labels of `cfg`: Alertmanagers of unchanged
    /// entries keep their sender (and what waits for it), others are started or stopped. A
    /// configuration that fails changes nothing. Must be called within a tokio runtime.
    pub async fn apply_config(&self, cfg: &Config) -> Result<(), NotifierError> {
        let core = &self.core;
        let alert_rules = relabel::compile(&cfg.alerting.alert_relabel_configs)
            .map_err(|e| NotifierError::AlertRelabel(e.to_string()))?;
        let mut prepared = Vec::new();
        for (index, am) in cfg.alerting.alertmanagers.iter().enumerate() {
            if am.api_version != ALERTMANAGER_API_VERSION {
                return Err(NotifierError::ApiVersion {
                    index,
                    version: am.api_version.clone(),
                });
            }
            let rules =
                relabel::compile(&am.relabel_configs).map_err(|e| NotifierError::Relabel {
                    index,
                    message: e.to_string(),
                })?;
            let client =
                AmClient::new(&am.http).map_err(|error| NotifierError::Client { index, error })?;
            prepared.push(Prepared {
                cfg: am.clone(),
                client,
                rules,
                // Prometheus names an entry's discovery `config-<index>`.
                static_groups: static_groups(&format!("config-{index}"), &am.static_configs),
                file_sd: am
                    .file_sd_configs
                    .iter()
                    .cloned()
                    .map(FileSd::new)
                    .collect(),
            });
        }
        // The first read of the files, so that their Alertmanagers are there from the start.
        let sd_metrics = super::scrape::metrics::Metrics::unregistered();
        let mut file_groups = Vec::with_capacity(prepared.len());
        for p in &mut prepared {
            let mut groups = Vec::new();
            for sd in &mut p.file_sd {
                sd.refresh(&sd_metrics);
                groups.extend(sd.groups());
            }
            file_groups.push(groups);
        }

        if let Ok(mut l) = core.labeling.write() {
            l.external = external_labels(cfg);
            l.rules = alert_rules;
        }
        let mut watched = Vec::new();
        let generation = {
            let mut sets = lock(&core.sets);
            if sets.stopped {
                return Err(NotifierError::Stopped);
            }
            sets.generation += 1;
            let mut old: Vec<Option<AmSet>> = std::mem::take(&mut sets.sets)
                .into_iter()
                .map(Some)
                .collect();
            for (i, (p, files)) in prepared.into_iter().zip(file_groups).enumerate() {
                // An unchanged entry keeps its senders and their outboxes.
                let kept = old
                    .get_mut(i)
                    .and_then(|o| o.take_if(|s| s.cfg == p.cfg))
                    .map(|s| s.workers)
                    .unwrap_or_default();
                let mut set = AmSet {
                    cfg: p.cfg,
                    client: p.client,
                    rules: p.rules,
                    static_groups: p.static_groups,
                    file_groups: files,
                    workers: kept,
                    dropped: Vec::new(),
                };
                sync_set(core, &mut set);
                if !p.file_sd.is_empty() {
                    watched.push((i, p.file_sd));
                }
                sets.sets.push(set);
            }
            for s in old.into_iter().flatten() {
                for w in s.workers {
                    w.outbox.close(true, &core.metrics);
                }
            }
            update_discovered(core, &sets);
            sets.generation
        };

        let mut tasks = lock(&core.tasks);
        if tasks.dispatcher.is_none() {
            tasks.dispatcher = Some(tokio::spawn(dispatch(
                core.clone(),
                core.shutdown.subscribe(),
            )));
        }
        if let Some(old) = tasks.discovery.take() {
            old.abort();
        }
        if !watched.is_empty() {
            tasks.discovery = Some(tokio::spawn(watch_files(
                core.clone(),
                generation,
                watched,
                sd_metrics,
            )));
        }
        Ok(())
    }

    /// Stops delivery: alerts still queued are posted for at most the flush deadline, then the
    /// senders are cancelled. Alerts sent afterwards are dropped (and counted).
    pub async fn stop(&self) {
        let core = &self.core;
        let deadline = Instant::now() + core.flush_deadline;
        lock(&core.queue).stopped = true;
        let _ = core.shutdown.send(true);
        core.more.notify_one();
        let (dispatcher, discovery) = {
            let mut t = lock(&core.tasks);
            (t.dispatcher.take(), t.discovery.take())
        };
        if let Some(d) = discovery {
            d.abort();
        }
        if let Some(d) = dispatcher {
            // The dispatcher only hands batches out (no I/O): it ends once the queue is empty.
            let _ = tokio::time::timeout_at(deadline.into(), d).await;
        }
        let workers: Vec<Worker> = {
            let mut sets = lock(&core.sets);
            sets.stopped = true;
            sets.sets
                .iter_mut()
                .flat_map(|s| s.workers.drain(..))
                .collect()
        };
        for w in &workers {
            w.outbox.close(false, &core.metrics);
        }
        for w in workers {
            let abort = w.join.abort_handle();
            if tokio::time::timeout_at(deadline.into(), w.join)
                .await
                .is_err()
            {
                abort.abort();
                // What this Alertmanager never got.
                w.outbox.close(true, &core.metrics);
                log(
                    Level::Warn,
                    &format!("Alertmanager {}: not flushed before the deadline", w.url),
                );
            }
        }
        update_queue_length(core, &lock(&core.queue));
        log(Level::Info, "notification manager stopped");
    }

    /// Alerts waiting in the queue (not yet handed to the Alertmanagers' senders).
    pub fn queue_len(&self) -> usize {
        lock(&self.core.queue).alerts.len()
    }

    /// Alerts dropped so far: queue overflow, batches no Alertmanager accepted, alerts sent
    /// after stop.
    pub fn dropped_total(&self) -> u64 {
        self.core.metrics.dropped.get()
    }

    /// External labels where absent, then `alert_relabel_configs`.
    fn prepare(&self, alerts: Vec<Alert>) -> Vec<Alert> {
        let labeling = self.core.labeling.read().unwrap_or_else(|e| e.into_inner());
        let mut kept = Vec::with_capacity(alerts.len());
        for mut a in alerts {
            if !labeling.external.is_empty() {
                let missing: Vec<Label> = labeling
                    .external
                    .iter()
                    .filter(|l| a.labels.get(&l.name).is_none())
                    .cloned()
                    .collect();
                if !missing.is_empty() {
                    let mut v = std::mem::take(&mut a.labels).into_vec();
                    v.extend(missing);
                    a.labels = Labels::new(v);
                }
            }
            if !labeling.rules.is_empty() {
                match relabel::process(&labeling.rules, &a.labels) {
                    Some(ls) => a.labels = ls,
                    None => continue,
                }
            }
            kept.push(a);
        }
        kept
    }

    /// Appends to the queue, dropping the oldest alerts beyond its capacity (Prometheus' `Send`).
    fn enqueue(&self, mut alerts: Vec<Alert>) {
        let core = &self.core;
        let mut q = lock(&core.queue);
        if q.stopped {
            core.metrics.dropped.inc_by(alerts.len() as u64);
            return;
        }
        if alerts.len() > core.capacity {
            let d = alerts.len() - core.capacity;
            alerts.drain(..d);
            core.metrics.dropped.inc_by(d as u64);
            log(
                Level::Warn,
                &format!("Alert batch larger than queue capacity, dropping {d} alerts"),
            );
        }
        let over = (q.alerts.len() + alerts.len()).saturating_sub(core.capacity);
        if over > 0 {
            q.alerts.drain(..over);
            core.metrics.dropped.inc_by(over as u64);
            log(
                Level::Warn,
                &format!("Alert notification queue full, dropping {over} alerts"),
            );
        }
        q.alerts.extend(alerts);
        update_queue_length(core, &q);
        drop(q);
        core.more.notify_one();
    }
}

impl AlertSink for Notifier {
    /// Never waits on the network: labels, relabels and queues.
    fn send(&self, alerts: Vec<Alert>) {
        let alerts = self.prepare(alerts);
        if !alerts.is_empty() {
            self.enqueue(alerts);
        }
    }
}

impl AlertmanagerView for Notifier {
    fn alertmanagers(&self) -> (Vec<String>, Vec<String>) {
        let sets = lock(&self.core.sets);
        let active = sets
            .sets
            .iter()
            .flat_map(|s| s.workers.iter().map(|w| w.url.clone()))
            .collect();
        let dropped = sets
            .sets
            .iter()
            .flat_map(|s| s.dropped.iter().cloned())
            .collect();
        (active, dropped)
    }
}

fn external_labels(cfg: &Config) -> Labels {
    Labels::new(
        cfg.global
            .external_labels
            .iter()
            .map(|(k, v)| Label::new(k.clone(), v.clone()))
            .collect(),
    )
}

fn update_queue_length(core: &Core, q: &Queue) {
    core.metrics
        .queue_length
        .set(i64::try_from(q.alerts.len()).unwrap_or(i64::MAX));
}

fn update_discovered(core: &Core, sets: &Sets) {
    let n: usize = sets.sets.iter().map(|s| s.workers.len()).sum();
    core.metrics
        .discovered
        .set(i64::try_from(n).unwrap_or(i64::MAX));
}

/// Brings a set's senders in line with what its groups give now (`alertmanagerSet.sync`).
fn sync_set(core: &Arc<Core>, set: &mut AmSet) {
    let mut groups = set.static_groups.clone();
    groups.extend(set.file_groups.iter().cloned());
    let found = discovery::alertmanagers(&set.cfg, &set.rules, &groups);
    for f in &found.failures {
        log(
            Level::Error,
            &format!("Creating discovered Alertmanagers failed: {f}"),
        );
    }
    let mut old: HashMap<String, Worker> =
        set.workers.drain(..).map(|w| (w.url.clone(), w)).collect();
    for url in found.active {
        // Counters start at zero for every Alertmanager, as in Prometheus.
        let l = am_label(&url);
        let _ = core.metrics.sent.get_or_create(&l);
        let _ = core.metrics.errors.get_or_create(&l);
        let w = match old.remove(&url) {
            Some(w) => w,
            None => start_worker(core, set, url),
        };
        set.workers.push(w);
    }
    for w in old.into_values() {
        w.outbox.close(true, &core.metrics);
    }
    set.dropped = found.dropped;
}

fn start_worker(core: &Arc<Core>, set: &AmSet, url: String) -> Worker {
    let outbox = Arc::new(Outbox {
        batches: Mutex::new(VecDeque::new()),
        more: Notify::new(),
        closed: AtomicBool::new(false),
        capacity: core.capacity.div_ceil(MAX_BATCH_SIZE).max(1),
    });
    let join = tokio::spawn(send_loop(
        core.clone(),
        set.client.clone(),
        set.cfg.timeout.to_std(),
        url.clone(),
        outbox.clone(),
    ));
    Worker { url, outbox, join }
}

/// One Alertmanager's sender: its batches in order, one post at a time.
async fn send_loop(
    core: Arc<Core>,
    client: AmClient,
    timeout: Duration,
    url: String,
    outbox: Arc<Outbox>,
) {
    let label = am_label(&url);
    loop {
        let next = lock(&outbox.batches).pop_front();
        let Some(batch) = next else {
            if outbox.closed.load(Ordering::SeqCst) {
                return;
            }
            outbox.more.notified().await;
            continue;
        };
        let started = Instant::now();
        let result = client.post(&url, batch.body.clone(), timeout).await;
        let m = &core.metrics;
        m.latency
            .get_or_create(&label)
            .observe(started.elapsed().as_secs_f64());
        m.sent.get_or_create(&label).inc_by(batch.count as u64);
        if let Err(e) = &result {
            m.errors.get_or_create(&label).inc();
            log(
                Level::Error,
                &format!(
                    "Error sending alert: alertmanager={url} count={}: {e}",
                    batch.count
                ),
            );
        }
        batch.finish(result.is_ok(), m);
    }
}

/// Hands the queue out in batches until shutdown, then until the queue is empty.
async fn dispatch(core: Arc<Core>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let batch: Vec<Alert> = {
            let mut q = lock(&core.queue);
            let n = q.alerts.len().min(MAX_BATCH_SIZE);
            let b = q.alerts.drain(..n).collect();
            update_queue_length(&core, &q);
            b
        };
        if batch.is_empty() {
            if *shutdown.borrow() {
                return;
            }
            tokio::select! {
                _ = core.more.notified() => {}
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
            continue;
        }
        hand_out(&core, &batch);
    }
}

fn hand_out(core: &Core, alerts: &[Alert]) {
    let outboxes: Vec<(String, Arc<Outbox>)> = {
        let sets = lock(&core.sets);
        sets.sets
            .iter()
            .flat_map(|s| s.workers.iter().map(|w| (w.url.clone(), w.outbox.clone())))
            .collect()
    };
    if outboxes.is_empty() {
        // Prometheus: no Alertmanager took the batch.
        core.metrics.dropped.inc_by(alerts.len() as u64);
        return;
    }
    let batch = Arc::new(Batch {
        body: bytes::Bytes::from(payload::encode_alerts(alerts)),
        count: alerts.len(),
        pending: AtomicUsize::new(outboxes.len()),
        delivered: AtomicBool::new(false),
    });
    for (url, o) in outboxes {
        o.push(batch.clone(), &url, &core.metrics);
    }
}

/// Polls the `file_sd_configs` files of the entries that have some; a change re-syncs that
/// entry's Alertmanagers.
async fn watch_files(
    core: Arc<Core>,
    generation: u64,
    mut watched: Vec<(usize, Vec<FileSd>)>,
    sd_metrics: super::scrape::metrics::Metrics,
) {
    loop {
        tokio::time::sleep(POLL_INTERVAL).await;
        for (i, sds) in &mut watched {
            let mut changed = false;
            for sd in sds.iter_mut() {
                changed |= sd.refresh(&sd_metrics).is_some();
            }
            if !changed {
                continue;
            }
            let groups: Vec<Group> = sds.iter().flat_map(|sd| sd.groups()).collect();
            let mut sets = lock(&core.sets);
            if sets.generation != generation || sets.stopped {
                return;
            }
            if let Some(set) = sets.sets.get_mut(*i) {
                set.file_groups = groups;
                sync_set(&core, set);
            }
            update_discovered(&core, &sets);
        }
    }
}

#[cfg(test)]
mod tests;
