//! Scraping as Prometheus 2.42 does it (`scrape/manager.go`, `scrape/scrape.go`,
//! `scrape/target.go`, `discovery/file/file.go`): one scrape pool per `scrape_configs` job,
//! one loop (a tokio task) per target, samples appended to the [`Db`] one transaction per scrape.
//!
//! Why it exists: `tsdbctl serve` must collect what Prometheus would collect from the same
//! `prometheus.yml` — same series, same labels, same staleness markers, same synthetic series —
//! so that queries and dashboards give the same answers.
//!
//! - Targets come from `static_configs` and `file_sd_configs` ([`discovery`]), get the job's
//!   defaults and relabeling ([`target`]); a target is identified by the hash of its labels and
//!   URL, and its first scrape waits for its offset (that hash modulo the interval, relative to
//!   Unix time), which spreads targets over the interval.
//! - A loop fetches with the headers Prometheus sends ([`client`]); a dead or slow target only
//!   delays itself (its timeout bounds it). The parse, relabel, append and commit run on a
//!   blocking thread ([`append`]); a known series costs a hash lookup of its raw text in the
//!   target's cache ([`cache`]) and an append by id.
//! - On a configuration reload, unchanged pools are untouched; a pool whose discovery alone
//!   changed keeps its running targets; a pool whose other settings changed is restarted, the
//!   new loops taking over the old ones' caches when the series they produce cannot differ.
//!   Targets that go away get staleness markers two intervals later; a shutdown writes none (as
//!   Prometheus: the data resumes after a restart).
//!
//! Must never: block the runtime on disk I/O in a task, or let one target's failure touch
//! another's samples.

pub mod append;
pub mod cache;
pub mod client;
pub mod discovery;
pub mod metrics;
pub mod scrape_loop;
pub mod target;
pub mod workers;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::db::Db;
use crate::labels::Labels;
use crate::server::{DroppedTarget, MetricMetadata, ScrapeView, TargetInfo};

use crate::relabel::{self, Rule};
use append::AppendSpec;
use cache::ScrapeCache;
use client::{ClientError, ScrapeClient};
use discovery::{FileSd, POLL_INTERVAL};
use metrics::{l1, Metrics};
use scrape_loop::{Command, Loop, Status, TargetShared};
use target::{Group, PoolConfig, Target};
use workers::{AppendWorkers, BodyBuffers};

/// Why a configuration was not applied. Nothing of it is applied then: the pools keep running
/// with the previous configuration.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("scrape config {job:?}: relabel_configs: {message}")]
    Relabel { job: String, message: String },
    #[error("scrape config {job:?}: metric_relabel_configs: {message}")]
    MetricRelabel { job: String, message: String },
    #[error("scrape config {job:?}: {error}")]
    Client { job: String, error: ClientError },
    #[error("scrape config {job:?}: duplicate job name")]
    DuplicateJob { job: String },
    #[error("the scrape manager is stopped")]
    Stopped,
}

/// Scrapes the targets of a configuration into a database. See the module doc.
pub struct ScrapeManager {
    core: Arc<Core>,
}

struct Core {
    db: Arc<Db>,
    metrics: Metrics,
    shutdown: watch::Sender<bool>,
    /// The threads every loop appends its scrapes on, and the loops' body buffers.
    workers: AppendWorkers,
    buffers: BodyBuffers,
    pools: tokio::sync::Mutex<Pools>,
    /// What the API reads, updated at each sync.
    view: Mutex<View>,
}

#[derive(Default)]
struct Pools {
    pools: BTreeMap<String, Pool>,
    /// Loops told to stop (writing their end-of-run markers) and finished discovery tasks.
    retired: Vec<JoinHandle<()>>,
    stopped: bool,
    jitter_seed: u64,
}

#[derive(Default)]
struct View {
    active: BTreeMap<String, Vec<Arc<TargetShared>>>,
    dropped: BTreeMap<String, Vec<DroppedTarget>>,
}

struct Pool {
    cfg: PoolConfig,
    client: ScrapeClient,
    target_rules: Arc<Vec<Rule>>,
    spec_rules: Arc<Vec<Rule>>,
    static_groups: Vec<Group>,
    /// The groups file SD gave last (all files of all `file_sd_configs`).
    file_groups: Vec<Group>,
    loops: HashMap<u64, LoopHandle>,
    sd_task: Option<JoinHandle<()>>,
}

struct LoopHandle {
    shared: Arc<TargetShared>,
    cmd: watch::Sender<Command>,
    join: JoinHandle<()>,
    /// Receives the loop's cache when it is stopped with [`Command::StopHandover`].
    cache_rx: Option<oneshot::Receiver<ScrapeCache>>,
}

/// A validated pool configuration, ready to start.
struct Prepared {
    cfg: PoolConfig,
    client: ScrapeClient,
    target_rules: Arc<Vec<Rule>>,
    spec_rules: Arc<Vec<Rule>>,
}

impl ScrapeManager {
    /// A manager with no pools; its metrics are registered in `registry`.
    pub fn new(db: Arc<Db>, registry: &mut prometheus_client::registry::Registry) -> ScrapeManager {
        let (shutdown, _) = watch::channel(false);
        ScrapeManager {
            core: Arc::new(Core {
                db,
                metrics: Metrics::new(registry),
                shutdown,
                workers: AppendWorkers::start(0),
                buffers: BodyBuffers::new(),
                pools: tokio::sync::Mutex::new(Pools::default()),
                view: Mutex::new(View::default()),
            }),
        }
    }

    /// Starts, updates and stops pools to match `cfg` (see the module doc). Must be called from
    /// within a tokio runtime.
    pub async fn apply_config(&self, cfg: &Config) -> Result<(), ScrapeError> {
        let core = &self.core;
        let mut prepared: BTreeMap<String, Prepared> = BTreeMap::new();
        for sc in &cfg.scrape_configs {
            let job = sc.job_name.clone();
            if prepared.contains_key(&job) {
                return Err(ScrapeError::DuplicateJob { job });
            }
            let pcfg = PoolConfig::resolve(sc, &cfg.global);
            let target_rules =
                relabel::compile(&sc.relabel_configs).map_err(|e| ScrapeError::Relabel {
                    job: job.clone(),
                    message: e.to_string(),
                })?;
            let spec_rules = relabel::compile(&sc.metric_relabel_configs).map_err(|e| {
                ScrapeError::MetricRelabel {
                    job: job.clone(),
                    message: e.to_string(),
                }
            })?;
            let client = ScrapeClient::new(&sc.http).map_err(|error| {
                core.metrics.pools_failed.inc();
                ScrapeError::Client {
                    job: job.clone(),
                    error,
                }
            })?;
            prepared.insert(
                job,
                Prepared {
                    cfg: pcfg,
                    client,
                    target_rules: Arc::new(target_rules),
                    spec_rules: Arc::new(spec_rules),
                },
            );
        }
        let mut pools = core.pools.lock().await;
        if pools.stopped {
            return Err(ScrapeError::Stopped);
        }
        pools.jitter_seed = jitter_seed(&cfg.global.external_labels);
        // Pools gone from the configuration.
        let gone: Vec<String> = pools
            .pools
            .keys()
            .filter(|k| !prepared.contains_key(*k))
            .cloned()
            .collect();
        for job in gone {
            if let Some(mut pool) = pools.pools.remove(&job) {
                if let Some(t) = pool.sd_task.take() {
                    t.abort();
                }
                for (_, h) in pool.loops.drain() {
                    let _ = h.cmd.send(Command::StopStale);
                    pools.retired.push(h.join);
                }
                core.metrics.pool_targets.remove(&l1("scrape_job", &job));
            }
        }
        for (job, p) in prepared {
            let old = pools.pools.remove(&job);
            let seed = pools.jitter_seed;
            let pool = match old {
                Some(old) if old.cfg == p.cfg => old,
                Some(mut old) if same_except_discovery(&old.cfg, &p.cfg) => {
                    if let Some(t) = old.sd_task.take() {
                        t.abort();
                    }
                    old.cfg = p.cfg;
                    self.start_discovery(&mut old, &job);
                    let groups = all_groups(&old);
                    core.sync(&job, &mut old, groups, seed, &mut pools.retired);
                    old
                }
                Some(mut old) => {
                    core.metrics.pool_reloads.inc();
                    if let Some(t) = old.sd_task.take() {
                        t.abort();
                    }
                    let reusable = old.cfg.cache_reusable(&p.cfg);
                    let mut pool = Pool::new(p);
                    self.start_discovery(&mut pool, &job);
                    // Old loops stop; a target that stays gets its old cache when reusable.
                    let mut caches: HashMap<u64, oneshot::Receiver<ScrapeCache>> = HashMap::new();
                    for (hash, mut h) in old.loops.drain() {
                        if reusable {
                            let _ = h.cmd.send(Command::StopHandover);
                            if let Some(rx) = h.cache_rx.take() {
                                caches.insert(hash, rx);
                            }
                        } else {
                            let _ = h.cmd.send(Command::StopStale);
                        }
                        pools.retired.push(h.join);
                    }
                    let groups = all_groups(&pool);
                    core.sync_with(&job, &mut pool, groups, seed, &mut pools.retired, caches);
                    pool
                }
                None => {
                    core.metrics.pools.inc();
                    let mut pool = Pool::new(p);
                    self.start_discovery(&mut pool, &job);
                    let groups = all_groups(&pool);
                    core.sync(&job, &mut pool, groups, seed, &mut pools.retired);
                    pool
                }
            };
            pools.pools.insert(job, pool);
        }
        pools.retired.retain(|j| !j.is_finished());
        core.publish(&pools);
        Ok(())
    }

    /// Reads the pool's files once now, then polls them in a task.
    fn start_discovery(&self, pool: &mut Pool, job: &str) {
        pool.static_groups = discovery::static_groups(job, &pool.cfg.job.static_configs);
        if pool.cfg.job.file_sd_configs.is_empty() {
            pool.file_groups.clear();
            return;
        }
        let mut sds: Vec<FileSd> = pool
            .cfg
            .job
            .file_sd_configs
            .iter()
            .cloned()
            .map(FileSd::new)
            .collect();
        for sd in &mut sds {
            sd.refresh(&self.core.metrics);
        }
        pool.file_groups = sds.iter().flat_map(|s| s.groups()).collect();
        let core = Arc::downgrade(&self.core);
        let job = job.to_string();
        let mut shutdown = self.core.shutdown.subscribe();
        pool.sd_task = Some(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(POLL_INTERVAL) => {}
                    _ = shutdown.wait_for(|s| *s) => return,
                }
                let Some(core) = core.upgrade() else { return };
                let metrics = core.metrics.clone();
                let (sds2, changed) = tokio::task::spawn_blocking(move || {
                    let mut changed = false;
                    for sd in &mut sds {
                        changed |= sd.refresh(&metrics).is_some();
                    }
                    (sds, changed)
                })
                .await
                .unwrap_or_else(|_| (Vec::new(), false));
                if sds2.is_empty() {
                    return;
                }
                sds = sds2;
                if changed {
                    let groups: Vec<Group> = sds.iter().flat_map(|s| s.groups()).collect();
                    core.file_groups_changed(&job, groups).await;
                }
            }
        }));
    }

    /// Graceful stop: loops stop scheduling, scrapes in flight finish (at most
    /// [`scrape_loop::SHUTDOWN_GRACE`] more) and are committed; no staleness markers are
    /// written. Later `apply_config` calls fail.
    pub async fn stop(&self) {
        let core = &self.core;
        let _ = core.shutdown.send(true);
        let mut joins = Vec::new();
        {
            let mut pools = core.pools.lock().await;
            pools.stopped = true;
            for pool in pools.pools.values_mut() {
                if let Some(t) = pool.sd_task.take() {
                    t.abort();
                }
                for (_, h) in pool.loops.drain() {
                    joins.push(h.join);
                }
            }
            joins.append(&mut pools.retired);
            pools.pools.clear();
        }
        for j in joins {
            let _ = j.await;
        }
        let mut v = core.view.lock().unwrap_or_else(|e| e.into_inner());
        v.active.clear();
        v.dropped.clear();
    }
}

impl Drop for ScrapeManager {
    fn drop(&mut self) {
        // Without a graceful stop, loops end at their next step.
        let _ = self.core.shutdown.send(true);
    }
}

fn all_groups(pool: &Pool) -> Vec<Group> {
    let mut g = pool.static_groups.clone();
    g.extend(pool.file_groups.iter().cloned());
    g
}

/// The configurations differ at most in their target discovery.
fn same_except_discovery(a: &PoolConfig, b: &PoolConfig) -> bool {
    let strip = |c: &PoolConfig| {
        let mut c = c.clone();
        c.job.static_configs.clear();
        c.job.file_sd_configs.clear();
        c
    };
    strip(a) == strip(b)
}

/// Prometheus' jitter seed: FNV-1a of the host name and the external labels, so that two
/// servers with different external labels scrape a target at different offsets.
fn jitter_seed(external: &BTreeMap<String, String>) -> u64 {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let labels = Labels::new(
        external
            .iter()
            .map(|(k, v)| crate::labels::Label::new(k.clone(), v.clone()))
            .collect(),
    );
    let mut h = target::Fnv64a::new();
    h.write(host.as_bytes());
    h.write(labels.to_string().as_bytes());
    h.finish()
}

impl Pool {
    fn new(p: Prepared) -> Pool {
        Pool {
            cfg: p.cfg,
            client: p.client,
            target_rules: p.target_rules,
            spec_rules: p.spec_rules,
            static_groups: Vec::new(),
            file_groups: Vec::new(),
            loops: HashMap::new(),
            sd_task: None,
        }
    }
}

impl Core {
    async fn file_groups_changed(self: &Arc<Self>, job: &str, groups: Vec<Group>) {
        let mut pools = self.pools.lock().await;
        if pools.stopped {
            return;
        }
        let seed = pools.jitter_seed;
        let Pools {
            pools: map,
            retired,
            ..
        } = &mut *pools;
        let Some(pool) = map.get_mut(job) else { return };
        pool.file_groups = groups;
        let all = all_groups(pool);
        self.sync(job, pool, all, seed, retired);
        retired.retain(|j| !j.is_finished());
        self.publish(&pools);
    }

    fn sync(
        self: &Arc<Self>,
        job: &str,
        pool: &mut Pool,
        groups: Vec<Group>,
        seed: u64,
        retired: &mut Vec<JoinHandle<()>>,
    ) {
        self.sync_with(job, pool, groups, seed, retired, HashMap::new());
    }

    /// Prometheus' `scrapePool.sync`: builds the targets of `groups`, starts loops for new
    /// ones (with a handed-over cache when `caches` has one for the target), stops those gone.
    fn sync_with(
        self: &Arc<Self>,
        job: &str,
        pool: &mut Pool,
        groups: Vec<Group>,
        seed: u64,
        retired: &mut Vec<JoinHandle<()>>,
        mut caches: HashMap<u64, oneshot::Receiver<ScrapeCache>>,
    ) {
        let started = Instant::now();
        let mut built = target::Built::default();
        for g in &groups {
            target::targets_from_group(g, &pool.cfg, &pool.target_rules, &mut built);
        }
        let mut uniq: BTreeMap<u64, Target> = BTreeMap::new();
        for t in built.active {
            uniq.entry(t.hash()).or_insert(t);
        }
        let forced =
            (pool.cfg.target_limit > 0 && uniq.len() as u64 > pool.cfg.target_limit).then(|| {
                self.metrics.exceeded_target_limit.inc();
                format!(
                    "target_limit exceeded (number of targets: {}, limit: {})",
                    uniq.len(),
                    pool.cfg.target_limit
                )
            });
        let gone: Vec<u64> = pool
            .loops
            .keys()
            .filter(|h| !uniq.contains_key(h))
            .copied()
            .collect();
        for h in gone {
            if let Some(l) = pool.loops.remove(&h) {
                let _ = l.cmd.send(Command::StopStale);
                retired.push(l.join);
            }
        }
        for (hash, t) in uniq {
            if let Some(l) = pool.loops.get(&hash) {
                *l.shared
                    .discovered
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = t.discovered;
                continue;
            }
            let handle = self.start_loop(job, pool, t, seed, caches.remove(&hash));
            pool.loops.insert(hash, handle);
        }
        for l in pool.loops.values() {
            *l.shared
                .forced_error
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = forced.clone();
        }
        let dropped: Vec<DroppedTarget> = built
            .dropped
            .into_iter()
            .map(|discovered_labels| DroppedTarget { discovered_labels })
            .collect();
        let mut v = self.view.lock().unwrap_or_else(|e| e.into_inner());
        v.dropped.insert(job.to_string(), dropped);
        drop(v);
        let jl = l1("scrape_job", job);
        self.metrics
            .pool_targets
            .get_or_create(&jl)
            .set(pool.loops.len() as i64);
        self.metrics.pool_sync.get_or_create(&jl).inc();
        self.metrics
            .sync_length
            .get_or_create(&jl)
            .observe(started.elapsed().as_secs_f64());
        let n: usize = groups.iter().map(|g| g.targets.len()).sum();
        self.metrics
            .sd_discovered_targets
            .get_or_create(&vec![
                ("config", job.to_string()),
                ("name", "scrape".to_string()),
            ])
            .set(n as i64);
    }

    fn start_loop(
        self: &Arc<Self>,
        job: &str,
        pool: &Pool,
        t: Target,
        seed: u64,
        handover: Option<oneshot::Receiver<ScrapeCache>>,
    ) -> LoopHandle {
        let (interval, timeout) = t.interval_timeout();
        let url = t.url();
        let target_labels = t.public_labels();
        let shared = Arc::new(TargetShared {
            pool: job.to_string(),
            discovered: Mutex::new(t.discovered.clone()),
            target: t,
            url,
            interval,
            timeout,
            status: Mutex::new(Status::default()),
            metadata: Mutex::new(Arc::new(Vec::new())),
            forced_error: Mutex::new(None),
        });
        let c = &pool.cfg;
        let spec = Arc::new(AppendSpec {
            target_labels,
            honor_labels: c.job.honor_labels,
            honor_timestamps: c.job.honor_timestamps,
            metric_rules: Arc::clone(&pool.spec_rules),
            sample_limit: c.sample_limit,
            label_limit: c.label_limit,
            label_name_length_limit: c.label_name_length_limit,
            label_value_length_limit: c.label_value_length_limit,
        });
        let (cmd_tx, cmd_rx) = watch::channel(Command::Run);
        let (give_tx, give_rx) = oneshot::channel();
        let lp = Loop {
            shared: Arc::clone(&shared),
            spec,
            db: Arc::clone(&self.db),
            client: pool.client.clone(),
            metrics: self.metrics.clone(),
            workers: self.workers.clone(),
            buffers: self.buffers.clone(),
            body_size_limit: c.body_size_limit,
            jitter_seed: seed,
            cmd: cmd_rx,
            shutdown: self.shutdown.subscribe(),
            handover,
            give: Some(give_tx),
            meta_reported: 0,
            reported: None,
        };
        LoopHandle {
            shared,
            cmd: cmd_tx,
            join: tokio::spawn(lp.run()),
            cache_rx: Some(give_rx),
        }
    }

    /// Publishes the active targets for the API.
    fn publish(&self, pools: &Pools) {
        let mut v = self.view.lock().unwrap_or_else(|e| e.into_inner());
        v.active.clear();
        for (job, p) in &pools.pools {
            let mut ts: Vec<Arc<TargetShared>> =
                p.loops.values().map(|l| Arc::clone(&l.shared)).collect();
            ts.sort_by(|a, b| a.target.labels.cmp(&b.target.labels));
            v.active.insert(job.clone(), ts);
        }
        v.dropped.retain(|k, _| pools.pools.contains_key(k));
    }
}

impl ScrapeView for ScrapeManager {
    fn targets(&self) -> (Vec<TargetInfo>, Vec<DroppedTarget>) {
        let v = self.core.view.lock().unwrap_or_else(|e| e.into_inner());
        let mut active = Vec::new();
        for ts in v.active.values() {
            for t in ts {
                let s = t.status.lock().unwrap_or_else(|e| e.into_inner()).clone();
                active.push(TargetInfo {
                    discovered_labels: t
                        .discovered
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone(),
                    labels: t.target.public_labels(),
                    scrape_pool: t.pool.clone(),
                    scrape_url: t.url.clone(),
                    global_url: global_url(&t.url),
                    last_error: s.last_error,
                    last_scrape_ms: s.last_scrape_ms,
                    last_scrape_duration_s: s.last_duration_s,
                    health: s.health,
                    scrape_interval: t.interval,
                    scrape_timeout: t.timeout,
                    metadata: Arc::clone(&t.metadata.lock().unwrap_or_else(|e| e.into_inner())),
                });
            }
        }
        let dropped = v.dropped.values().flat_map(|d| d.iter().cloned()).collect();
        (active, dropped)
    }

    fn metadata(&self) -> Vec<(String, MetricMetadata)> {
        let v = self.core.view.lock().unwrap_or_else(|e| e.into_inner());
        let mut seen: std::collections::HashSet<(String, MetricMetadata)> = Default::default();
        for ts in v.active.values() {
            for t in ts {
                let m = Arc::clone(&t.metadata.lock().unwrap_or_else(|e| e.into_inner()));
                for e in m.iter() {
                    if !seen.contains(e) {
                        seen.insert(e.clone());
                    }
                }
            }
        }
        let mut out: Vec<(String, MetricMetadata)> = seen.into_iter().collect();
        out.sort_by(|a, b| {
            (&a.0, &a.1.kind, &a.1.help, &a.1.unit).cmp(&(&b.0, &b.1.kind, &b.1.help, &b.1.unit))
        });
        out
    }
}

/// Prometheus' `globalURL`: a loopback host replaced by this machine's name, so that the URL
/// means something elsewhere.
fn global_url(url: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    if host.is_empty() {
        return url.to_string();
    }
    for lo in ["://localhost:", "://127.0.0.1:", "://[::1]:"] {
        if let Some(i) = url.find(lo) {
            return format!("{}://{host}:{}", &url[..i], &url[i + lo.len()..]);
        }
    }
    url.to_string()
}

// The manager is shared with the web layer: checked at compile time.
const _: fn() = || {
    fn is<T: Send + Sync>() {}
    is::<ScrapeManager>();
};
