//! One remote-write queue: Prometheus 2.42's `QueueManager` (`storage/remote/queue_manager.go`)
//! fed by a WAL watcher (`tsdb/wlog/watcher.go`), with one difference that matters: the queue
//! records how far it has sent, so a restart resumes instead of starting from "now".
//!
//! Data flow. A watcher thread tails the WAL segments ([`super::tail`]); series records fill a
//! ref → labels map (external labels added, `write_relabel_configs` applied, then encoded once
//! as protobuf label fields); samples records are split by series ref over the shards' bounded
//! channels (when they are full the watcher waits: the WAL is the buffer). Each shard is a tokio
//! task that sends a batch when it has `max_samples_per_send` samples or `batch_send_deadline`
//! passed, retrying recoverable failures (5xx, 429, network errors, timeouts) with exponential
//! backoff from `min_backoff` to `max_backoff` (or `Retry-After`) until they succeed; other 4xx
//! drop the batch and count it failed.
//!
//! Position. Series refs map to [`LANES`] lanes (`ref % 256`) and a lane to one shard
//! (`lane % shards`), so a lane's samples travel one FIFO and are acknowledged in WAL order. The
//! [`Tracker`] keeps, per lane, the records it still has samples in flight from (start offset,
//! samples, acknowledged so far). Saved to `position` (atomically, once a second and at stop):
//! the read position, and for each lane with samples in flight its oldest record's start and how
//! many of that record's lane samples were acknowledged. After a restart the queue reads series
//! records from the checkpoint up to the lowest saved position, then sends exactly the samples
//! that were not acknowledged — no duplicates after a graceful stop, even with a receiver that
//! was down. That matters beyond tidiness: Prometheus as a receiver answers 400 to a batch with
//! one sample older than its series' newest, dropping the new samples in it too. After a crash,
//! what was acknowledged in the last second is sent again (same timestamps and values). The
//! lowest saved position's segment is the first WAL segment the database must keep.
//!
//! A new queue (no saved position) sends what is appended after it has read the WAL to its end
//! once, as Prometheus' watcher starts at "now".

use super::log;
use super::proto;
use super::tail::{SegmentTail, Stall};
use super::RemoteError;
use crate::config::{MetadataConfig, QueueConfig, RemoteWriteConfig};
use crate::labels::Label;
use crate::relabel::{self, Rule};
use crate::server::{MetricMetadata, ScrapeView};
use crate::wal::record::{self, RecordType, RefSample};
use crate::wal::{self, WalReader};
use crate::Db;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// A WAL position: (segment, offset of a record boundary).
pub(crate) type Pos = (u64, u64);

/// How often the watcher looks for new WAL bytes when it has read everything.
const POLL: Duration = Duration::from_millis(50);
/// How long a watcher that failed (an I/O error reading the WAL) waits before starting over.
const RESTART_AFTER: Duration = Duration::from_secs(5);
/// How often the position is saved and the hold updated.
const SAVE_EVERY: Duration = Duration::from_secs(1);
/// Prometheus' `shardUpdateDuration`: how often the desired shard count is computed.
const SHARD_UPDATE: Duration = Duration::from_secs(10);
/// Prometheus' `ewmaWeight`.
const EWMA_WEIGHT: f64 = 0.2;
/// Prometheus' `shardToleranceFraction`: 30% off the current count before resharding.
const SHARD_TOLERANCE: f64 = 0.3;
/// At most this much of an error response's body goes into the log (Prometheus: 1 KiB).
const MAX_ERR_MSG: usize = 1024;
/// Prometheus' User-Agent for remote write is `Prometheus/<version>`; ours names the crate.
const USER_AGENT: &str = concat!("tsdb/", env!("CARGO_PKG_VERSION"));

/// A queue's metrics, children of the writer's families for this queue's labels.
#[derive(Clone)]
pub(crate) struct QueueMetrics {
    pub samples: Counter,
    pub samples_in: Counter,
    pub failed: Counter,
    pub retried: Counter,
    pub dropped: Counter,
    pub enqueue_retries: Counter,
    pub bytes: Counter,
    pub pending: Gauge,
    pub shards: Gauge,
    pub shards_desired: Gauge<f64, AtomicU64>,
    pub highest_sent: Gauge<f64, AtomicU64>,
    pub sent_batch_duration: Histogram,
    pub current_segment: Gauge,
    pub metadata: Counter,
    pub metadata_failed: Counter,
    pub metadata_retried: Counter,
    pub metadata_bytes: Counter,
}

/// An exponentially weighted moving average of a rate (Prometheus' `ewmaRate`).
#[derive(Default)]
struct Ewma {
    events: AtomicI64,
    state: Mutex<(f64, bool)>,
}

impl Ewma {
    fn incr(&self, n: i64) {
        self.events.fetch_add(n, Ordering::Relaxed);
    }
    fn tick(&self, interval: Duration) {
        let n = self.events.swap(0, Ordering::Relaxed);
        let instant = n as f64 / interval.as_secs_f64();
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.1 {
            s.0 += EWMA_WEIGHT * (instant - s.0);
        } else if n > 0 {
            *s = (instant, true);
        }
    }
    fn rate(&self) -> f64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0
    }
}

/// Series lanes: each is acknowledged in order (see the module doc). More lanes than the default
/// `max_shards` (200), so that every shard can have one.
pub(crate) const LANES: usize = 256;

/// A record with samples of one lane in flight: its start, its samples in the lane, how many of
/// them were acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct InFlight {
    start: Pos,
    total: u32,
    acked: u32,
}

/// Samples in flight per lane, and the read position.
struct Tracker {
    lanes: Vec<VecDeque<InFlight>>,
    /// End of the last record fully handed to the shards; `None` before a new queue has caught up.
    read: Option<Pos>,
    /// After a restart, the position loaded, kept as what is saved until the watcher has read
    /// past it (until then the samples it owes are not all in `lanes` again).
    floor: Option<Saved>,
}

impl Default for Tracker {
    fn default() -> Tracker {
        Tracker {
            lanes: vec![VecDeque::new(); LANES],
            read: None,
            floor: None,
        }
    }
}

impl Tracker {
    /// What to save: `None` until there is a read position.
    fn saved(&self) -> Option<Saved> {
        if let Some(f) = &self.floor {
            return Some(f.clone());
        }
        let read = self.read?;
        let lanes = self
            .lanes
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.front().map(|f| (i, (f.start, f.acked))))
            .collect();
        Some(Saved { read, lanes })
    }

    fn ack(&mut self, lane: usize) {
        if let Some(l) = self.lanes.get_mut(lane) {
            if let Some(f) = l.front_mut() {
                f.acked += 1;
                if f.acked >= f.total {
                    l.pop_front();
                }
            }
        }
    }
}

/// A queue's saved position: the read position, and per lane with samples in flight the start
/// of its oldest such record and how many of that record's lane samples were acknowledged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Saved {
    pub read: Pos,
    pub lanes: BTreeMap<usize, (Pos, u32)>,
}

impl Saved {
    /// Where reading must resume: the lowest position anything is owed from.
    pub(crate) fn lowest(&self) -> Pos {
        self.lanes
            .values()
            .map(|&(p, _)| p)
            .min()
            .map_or(self.read, |m| m.min(self.read))
    }

    /// Whether the `index`-th sample of `lane` in the record starting at `start` was
    /// acknowledged before the restart.
    fn acked(&self, lane: usize, start: Pos, index: u32) -> bool {
        match self.lanes.get(&lane) {
            Some(&(p, n)) => start < p || (start == p && index < n),
            None => start < self.read,
        }
    }
}

/// Everything the watcher, the shards and the control task share.
pub(crate) struct Shared {
    pub name: String,
    pub url: String,
    db: Arc<Db>,
    wal_dir: PathBuf,
    pos_path: PathBuf,
    hold: String,
    cfg: QueueConfig,
    client: reqwest::Client,
    headers: reqwest::header::HeaderMap,
    timeout: Duration,
    rules: Vec<Rule>,
    external: Vec<(String, String)>,
    pub m: QueueMetrics,
    quit: AtomicBool,
    tracker: Mutex<Tracker>,
    data_in: Ewma,
    data_out: Ewma,
    data_out_duration: Ewma,
    data_dropped: Ewma,
    last_send_secs: AtomicI64,
    highest_sent_ms: AtomicI64,
    /// Highest sample timestamp read from the WAL by any queue (ms).
    highest_recv_ms: Arc<AtomicI64>,
    gauge_highest_recv: Gauge<f64, AtomicU64>,
    num_shards: AtomicUsize,
    desired_shards: AtomicUsize,
    flush_deadline: Duration,
    meta_cfg: MetadataConfig,
    metadata_source: Option<Arc<dyn ScrapeView>>,
}

/// What a queue needs to start.
pub(crate) struct QueueSpec {
    /// The `remote_name` metric label: `name:` or a hash of the entry.
    pub name: String,
    /// Directory under `<data_dir>/remote/` and the WAL hold's name.
    pub key: String,
    pub cfg: RemoteWriteConfig,
    /// `global.external_labels`, sorted by name.
    pub external: Vec<(String, String)>,
    /// Where the metadata to send comes from (none: no metadata is sent).
    pub metadata_source: Option<Arc<dyn ScrapeView>>,
}

/// A running queue.
pub(crate) struct Queue {
    pub shared: Arc<Shared>,
    watcher: Option<std::thread::JoinHandle<()>>,
    control: tokio::task::JoinHandle<()>,
    metadata: Option<tokio::task::JoinHandle<()>>,
}

/// One sample on its way to a shard: the series' encoded labels and its lane.
struct QueuedSample {
    labels: Arc<[u8]>,
    t: i64,
    v: f64,
    lane: u16,
}

impl Queue {
    /// Starts the queue: its watcher thread, its shards, its control task (on the current tokio
    /// runtime).
    pub(crate) fn start(
        spec: QueueSpec,
        db: Arc<Db>,
        data_dir: &Path,
        m: QueueMetrics,
        highest_recv_ms: Arc<AtomicI64>,
        gauge_highest_recv: Gauge<f64, AtomicU64>,
        flush_deadline: Duration,
    ) -> Result<Queue, RemoteError> {
        let cfg = &spec.cfg;
        let q = &cfg.queue_config;
        if q.max_samples_per_send == 0 || q.capacity == 0 || q.max_shards == 0 {
            return Err(RemoteError::Config(format!(
                "{}: capacity, max_shards and max_samples_per_send must be positive",
                cfg.url
            )));
        }
        let rules = relabel::compile(&cfg.write_relabel_configs)
            .map_err(|e| RemoteError::Config(format!("{}: write_relabel_configs: {e}", cfg.url)))?;
        let (client, headers) = build_client(cfg)?;
        let min = q.min_shards.clamp(1, q.max_shards);
        let dir = data_dir.join("remote").join(&spec.key);
        std::fs::create_dir_all(&dir).map_err(|source| RemoteError::Io {
            path: dir.clone(),
            source,
        })?;
        let shared = Arc::new(Shared {
            name: spec.name.clone(),
            url: cfg.url.clone(),
            db,
            wal_dir: data_dir.join("wal"),
            pos_path: dir.join("position"),
            hold: format!("remote_write/{}", spec.key),
            cfg: q.clone(),
            client,
            headers,
            timeout: cfg.remote_timeout.to_std(),
            rules,
            external: spec.external,
            m,
            quit: AtomicBool::new(false),
            tracker: Mutex::new(Tracker::default()),
            data_in: Ewma::default(),
            data_out: Ewma::default(),
            data_out_duration: Ewma::default(),
            data_dropped: Ewma::default(),
            last_send_secs: AtomicI64::new(unix_secs()),
            highest_sent_ms: AtomicI64::new(0),
            highest_recv_ms,
            gauge_highest_recv,
            num_shards: AtomicUsize::new(min),
            desired_shards: AtomicUsize::new(min),
            flush_deadline,
            meta_cfg: cfg.metadata_config.clone(),
            metadata_source: spec.metadata_source,
        });
        let saved = read_position(&shared.pos_path)?;
        let rt = tokio::runtime::Handle::current();
        let s = shared.clone();
        let watcher = std::thread::Builder::new()
            .name(format!("remote-write-{}", spec.name))
            .spawn(move || watch(s, rt, saved))
            .map_err(|source| RemoteError::Io {
                path: dir.clone(),
                source,
            })?;
        let control = tokio::spawn(control(shared.clone()));
        let metadata = (shared.meta_cfg.send
            && shared.metadata_source.is_some()
            && shared.meta_cfg.max_samples_per_send > 0)
            .then(|| tokio::spawn(send_metadata_loop(shared.clone())));
        Ok(Queue {
            shared,
            watcher: Some(watcher),
            control,
            metadata,
        })
    }

    /// Shards running now.
    pub(crate) fn shards(&self) -> usize {
        self.shared.num_shards.load(Ordering::SeqCst)
    }

    /// Stops reading, flushes what the shards hold within the flush deadline, saves the
    /// position. The WAL hold stays (a restarted queue continues from it); `release` drops it.
    pub(crate) async fn stop(mut self) {
        self.shared.quit.store(true, Ordering::SeqCst);
        if let Some(w) = self.watcher.take() {
            let _ = tokio::task::spawn_blocking(move || w.join()).await;
        }
        self.control.abort();
        if let Some(m) = self.metadata.take() {
            m.abort();
        }
        let s = self.shared.clone();
        let _ = tokio::task::spawn_blocking(move || save(&s)).await;
    }
}

fn unix_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn read_file_trim(path: &str) -> Result<String, RemoteError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|source| RemoteError::Io {
            path: PathBuf::from(path),
            source,
        })
}

/// The HTTP client of one `remote_write` entry: TLS (rustls), proxy, redirects, and the headers
/// every request carries (the entry's `headers`, then its credentials).
pub(crate) fn build_client(
    cfg: &RemoteWriteConfig,
) -> Result<(reqwest::Client, reqwest::header::HeaderMap), RemoteError> {
    use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
    let bad = |what: String| RemoteError::Config(format!("{}: {what}", cfg.url));
    let h = &cfg.http;
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .user_agent(USER_AGENT)
        .redirect(if h.follow_redirects {
            reqwest::redirect::Policy::limited(10)
        } else {
            reqwest::redirect::Policy::none()
        });
    let tls = &h.tls_config;
    if let Some(ca) = &tls.ca_file {
        let pem = std::fs::read(ca).map_err(|source| RemoteError::Io {
            path: PathBuf::from(ca),
            source,
        })?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| bad(format!("tls_config.ca_file {ca}: {e}")))?
        {
            b = b.add_root_certificate(cert);
        }
    }
    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
        let mut pem = std::fs::read(cert).map_err(|source| RemoteError::Io {
            path: PathBuf::from(cert),
            source,
        })?;
        pem.extend(std::fs::read(key).map_err(|source| RemoteError::Io {
            path: PathBuf::from(key),
            source,
        })?);
        let id = reqwest::Identity::from_pem(&pem)
            .map_err(|e| bad(format!("tls_config cert_file/key_file: {e}")))?;
        b = b.identity(id);
    }
    if tls.insecure_skip_verify {
        b = b.danger_accept_invalid_certs(true);
    }
    match tls.min_version.as_deref() {
        None => {}
        Some("TLS12") => b = b.min_tls_version(reqwest::tls::Version::TLS_1_2),
        Some("TLS13") => b = b.min_tls_version(reqwest::tls::Version::TLS_1_3),
        // rustls speaks TLS 1.2 and 1.3 only: a lower minimum changes nothing.
        Some("TLS10") | Some("TLS11") => {}
        Some(v) => {
            return Err(bad(format!(
                "tls_config.min_version: unknown TLS version {v}"
            )))
        }
    }
    if let Some(name) = &tls.server_name {
        // reqwest verifies against the URL's host; it has no separate SNI/verification name.
        log!(
            "warn",
            cfg.url,
            "tls_config.server_name {name:?} is not supported; the URL's host is verified"
        );
    }
    if let Some(p) = &h.proxy_url {
        b = b.proxy(reqwest::Proxy::all(p).map_err(|e| bad(format!("proxy_url: {e}")))?);
    }
    let client = b.build().map_err(|e| bad(format!("HTTP client: {e}")))?;

    let mut headers = HeaderMap::new();
    for (k, v) in &cfg.headers {
        let name =
            HeaderName::from_bytes(k.as_bytes()).map_err(|e| bad(format!("header {k:?}: {e}")))?;
        let value = HeaderValue::from_str(v).map_err(|e| bad(format!("header {k:?}: {e}")))?;
        headers.insert(name, value);
    }
    let auth = if let Some(ba) = &h.basic_auth {
        let password = match (&ba.password, &ba.password_file) {
            (Some(p), _) => p.clone(),
            (None, Some(f)) => read_file_trim(f)?,
            (None, None) => String::new(),
        };
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", ba.username, password));
        Some(format!("Basic {token}"))
    } else if let Some(a) = &h.authorization {
        let cred = match (&a.credentials, &a.credentials_file) {
            (Some(c), _) => c.clone(),
            (None, Some(f)) => read_file_trim(f)?,
            (None, None) => String::new(),
        };
        Some(format!("{} {cred}", a.kind))
    } else if let Some(t) = &h.bearer_token {
        Some(format!("Bearer {t}"))
    } else if let Some(f) = &h.bearer_token_file {
        Some(format!("Bearer {}", read_file_trim(f)?))
    } else {
        None
    };
    if let Some(a) = auth {
        let mut v = HeaderValue::from_str(&a).map_err(|e| bad(format!("credentials: {e}")))?;
        v.set_sensitive(true);
        headers.insert(AUTHORIZATION, v);
    }
    Ok((client, headers))
}

// ---------------------------------------------------------------------------------------------
// Position file

/// Reads the position file (`read SEG OFF`, then `lane L SEG OFF ACKED` lines); `None` when
/// there is none.
pub(crate) fn read_position(path: &Path) -> Result<Option<Saved>, RemoteError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(RemoteError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let bad = |line: usize, what: &str| RemoteError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("line {line}: {what}"),
        ),
    };
    let mut saved = Saved::default();
    let mut has_read = false;
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let num = |k: usize| -> Result<u64, RemoteError> {
            f.get(k)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| bad(i + 1, "expected a number"))
        };
        match f.first().copied() {
            None => {}
            Some("read") if f.len() == 3 => {
                saved.read = (num(1)?, num(2)?);
                has_read = true;
            }
            Some("lane") if f.len() == 5 => {
                let lane = num(1)? as usize;
                if lane >= LANES {
                    return Err(bad(i + 1, "lane out of range"));
                }
                let acked = u32::try_from(num(4)?).map_err(|_| bad(i + 1, "acked count"))?;
                saved.lanes.insert(lane, ((num(2)?, num(3)?), acked));
            }
            Some(_) => return Err(bad(i + 1, "expected `read SEG OFF` or `lane L SEG OFF N`")),
        }
    }
    if !has_read {
        return Err(bad(1, "no `read` line"));
    }
    Ok(Some(saved))
}

/// Writes the position file atomically: a temporary file, fsynced, renamed over the old one.
pub(crate) fn write_position(path: &Path, pos: &Saved) -> std::io::Result<()> {
    use std::io::Write;
    let mut text = format!("read {} {}\n", pos.read.0, pos.read.1);
    for (lane, (p, n)) in &pos.lanes {
        text.push_str(&format!("lane {lane} {} {} {n}\n", p.0, p.1));
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Saves the position (if there is one) and moves the WAL hold to its lowest segment.
fn save(s: &Shared) -> Option<Saved> {
    let saved = s
        .tracker
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .saved()?;
    if let Err(e) = write_position(&s.pos_path, &saved) {
        log!(
            "error",
            s.name,
            "saving position to {}: {e}",
            s.pos_path.display()
        );
    }
    s.db.hold_wal_segments(&s.hold, saved.lowest().0);
    Some(saved)
}

/// Releases the queue's WAL hold (its entry left the configuration).
pub(crate) fn release(db: &Db, key: &str) {
    db.release_wal_segments(&format!("remote_write/{key}"));
}

/// Holds the WAL for a queue from its saved position before it starts (so that a compaction
/// between opening the database and applying the configuration cannot delete what it needs).
pub(crate) fn hold_saved(db: &Db, data_dir: &Path, key: &str) {
    if let Ok(Some(p)) = read_position(&data_dir.join("remote").join(key).join("position")) {
        db.hold_wal_segments(&format!("remote_write/{key}"), p.lowest().0);
    }
}

// ---------------------------------------------------------------------------------------------
// Control: position saving and shard calculation

async fn control(s: Arc<Shared>) {
    let mut last_saved = None;
    let mut last_update = Instant::now();
    loop {
        tokio::time::sleep(SAVE_EVERY).await;
        let s2 = s.clone();
        let current = s2.tracker.lock().unwrap_or_else(|e| e.into_inner()).saved();
        if current.is_some() && current != last_saved {
            last_saved = tokio::task::spawn_blocking(move || save(&s2))
                .await
                .ok()
                .flatten();
        }
        if last_update.elapsed() >= SHARD_UPDATE {
            let elapsed = last_update.elapsed();
            last_update = Instant::now();
            let desired = desired_shards(&s, elapsed);
            if should_reshard(&s, desired) {
                s.desired_shards.store(desired, Ordering::SeqCst);
            }
        }
    }
}

/// Ticks the rates and computes the desired shard count (see [`shards_for`]).
fn desired_shards(s: &Shared, interval: Duration) -> usize {
    s.data_out.tick(interval);
    s.data_dropped.tick(interval);
    s.data_out_duration.tick(interval);
    s.data_in.tick(interval);
    let highest_sent = s.highest_sent_ms.load(Ordering::Relaxed) as f64 / 1000.0;
    let highest_recv = s.highest_recv_ms.load(Ordering::Relaxed) as f64 / 1000.0;
    let (raw, n) = shards_for(ShardInputs {
        current: s.num_shards.load(Ordering::SeqCst),
        min: s.cfg.min_shards,
        max: s.cfg.max_shards,
        data_in: s.data_in.rate(),
        data_out: s.data_out.rate(),
        data_dropped: s.data_dropped.rate(),
        out_duration: s.data_out_duration.rate() / 1e9,
        delay: highest_recv - highest_sent,
    });
    if let Some(raw) = raw {
        s.m.shards_desired.set(raw);
    }
    n
}

/// The rates [`shards_for`] works from (per second; `out_duration` in seconds of sending per
/// second, `delay` the seconds between the newest sample read and the newest sent).
#[derive(Clone, Copy, Debug)]
struct ShardInputs {
    current: usize,
    min: usize,
    max: usize,
    data_in: f64,
    data_out: f64,
    data_dropped: f64,
    out_duration: f64,
    delay: f64,
}

/// Prometheus' `calculateDesiredShards`: enough shards to send the incoming rate plus 5% of the
/// backlog per second at the measured time per sample; unchanged within 30% of the current
/// count, or when shrinking while more than 10 s behind; clamped to `min..=max`. Returns the
/// raw estimate (for `shards_desired`) and the count to run.
fn shards_for(i: ShardInputs) -> (Option<f64>, usize) {
    if i.data_out <= 0.0 {
        return (None, i.current);
    }
    let kept = i.data_out / (i.data_dropped + i.data_out);
    let pending = i.delay * i.data_in * kept;
    let time_per_sample = i.out_duration / i.data_out;
    let raw = time_per_sample * (i.data_in * kept + 0.05 * pending);
    let lower = i.current as f64 * (1.0 - SHARD_TOLERANCE);
    let upper = i.current as f64 * (1.0 + SHARD_TOLERANCE);
    let desired = raw.ceil();
    if lower <= desired && desired <= upper {
        return (Some(raw), i.current);
    }
    let n = desired.max(0.0) as usize;
    if n < i.current && i.delay > 10.0 {
        return (Some(raw), i.current);
    }
    let min = i.min.clamp(1, i.max.max(1));
    (Some(raw), n.clamp(min, i.max.max(min)))
}

/// Prometheus' `shouldReshard`: not while sends are failing (the last success older than two
/// batch deadlines), which would only add shards that wait too.
fn should_reshard(s: &Shared, desired: usize) -> bool {
    if desired == s.num_shards.load(Ordering::SeqCst) {
        return false;
    }
    let min = unix_secs() - 2 * s.cfg.batch_send_deadline.to_std().as_secs() as i64;
    if s.last_send_secs.load(Ordering::Relaxed) < min {
        log!(
            "warn",
            s.name,
            "skipping resharding, last successful send was beyond threshold"
        );
        return false;
    }
    true
}

// ---------------------------------------------------------------------------------------------
// Watcher

/// Where the watcher is in its start-up.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Reading series only, until the end of the WAL (a new queue).
    UntilCaughtUp,
    /// Reading series only, up to the saved position.
    UntilPos(Pos),
    Send,
}

struct SeriesEntry {
    /// Encoded label fields; `None` when relabeling dropped the series.
    labels: Option<Arc<[u8]>>,
    /// Last segment (or checkpoint index) the series record was seen in.
    seg: u64,
}

struct Watcher {
    s: Arc<Shared>,
    rt: tokio::runtime::Handle,
    series: HashMap<u64, SeriesEntry>,
    senders: Vec<mpsc::Sender<QueuedSample>>,
    shards: Vec<tokio::task::JoinHandle<()>>,
    /// The position loaded at start, while records before its read position are re-read: says
    /// which samples were acknowledged already.
    resume: Option<Saved>,
    mode: Mode,
    checkpoint_seen: Option<u64>,
    samples_buf: Vec<RefSample>,
    scratch: Vec<u8>,
    /// Per lane, for the record being enqueued: samples of known series, and of those the ones
    /// acknowledged before a restart.
    lane_total: Vec<u32>,
    lane_skip: Vec<u32>,
}

fn watch(s: Arc<Shared>, rt: tokio::runtime::Handle, saved: Option<Saved>) {
    let mut w = Watcher {
        s: s.clone(),
        rt,
        series: HashMap::new(),
        senders: Vec::new(),
        shards: Vec::new(),
        resume: None,
        mode: Mode::UntilCaughtUp,
        checkpoint_seen: None,
        samples_buf: Vec::new(),
        scratch: Vec::new(),
        lane_total: vec![0; LANES],
        lane_skip: vec![0; LANES],
    };
    let mut saved = saved;
    loop {
        w.start_shards(s.num_shards.load(Ordering::SeqCst));
        let r = w.run(saved);
        // Everything handed to the shards is sent (or, when stopping, given up) first, so the
        // tracker's position is exact whether the queue stops or starts over.
        w.stop_shards();
        let Err(e) = r else { break };
        if w.quitting() {
            break;
        }
        // As Prometheus' watcher: log, wait, start over from the position reached.
        log!(
            "error",
            s.name,
            "WAL watcher failed, restarting in {RESTART_AFTER:?}: {e}"
        );
        let until = Instant::now() + RESTART_AFTER;
        while Instant::now() < until && !w.quitting() {
            std::thread::sleep(POLL);
        }
        if w.quitting() {
            break;
        }
        saved = s.tracker.lock().unwrap_or_else(|e| e.into_inner()).saved();
        w.series.clear();
        w.checkpoint_seen = None;
        w.resume = None;
    }
    save(&s);
}

impl Watcher {
    fn start_shards(&mut self, n: usize) {
        let per_shard = (self.s.cfg.capacity).max(1);
        for _ in 0..n {
            let (tx, rx) = mpsc::channel(per_shard);
            self.senders.push(tx);
            self.shards
                .push(self.rt.spawn(run_shard(self.s.clone(), rx)));
        }
        self.s.num_shards.store(n, Ordering::SeqCst);
        self.s.desired_shards.store(n, Ordering::SeqCst);
        self.s.m.shards.set(n as i64);
    }

    /// Closes the shards' channels and waits for them to send what they hold. Resharding waits
    /// as long as that takes (samples are only dropped by a 4xx); once the queue is stopping, at
    /// most the flush deadline, then the shards are cancelled — their samples stay
    /// unacknowledged, so the saved position keeps them for the next start.
    fn stop_shards(&mut self) {
        self.senders.clear();
        let shards = std::mem::take(&mut self.shards);
        let aborts: Vec<_> = shards.iter().map(|h| h.abort_handle()).collect();
        let s = self.s.clone();
        let done = self.rt.block_on(async move {
            let mut all = Box::pin(async move {
                for h in shards {
                    let _ = h.await;
                }
            });
            let mut quit_at: Option<Instant> = None;
            loop {
                if tokio::time::timeout(Duration::from_millis(100), all.as_mut())
                    .await
                    .is_ok()
                {
                    return true;
                }
                if s.quit.load(Ordering::SeqCst) {
                    let q = *quit_at.get_or_insert_with(Instant::now);
                    if q.elapsed() >= s.flush_deadline {
                        return false;
                    }
                }
            }
        });
        if !done {
            for a in aborts {
                a.abort();
            }
            log!(
                "warn",
                self.s.name,
                "failed to flush all samples within {:?}; they are sent after the next start, from the saved position",
                self.s.flush_deadline
            );
        }
    }

    fn quitting(&self) -> bool {
        self.s.quit.load(Ordering::SeqCst)
    }

    fn run(&mut self, saved: Option<Saved>) -> Result<(), RemoteError> {
        let wal_dir = self.s.wal_dir.clone();
        // Series from the latest checkpoint first.
        let first = loop {
            if self.quitting() {
                return Ok(());
            }
            let cp = wal::last_checkpoint(&wal_dir).map_err(wal_err)?;
            if let Some((dir, idx)) = &cp {
                self.read_checkpoint(dir, *idx)?;
            }
            let segs = wal::segments(&wal_dir).map_err(wal_err)?;
            let after = cp.map_or(0, |c| c.1 + 1);
            if let Some(&f) = segs.iter().find(|&&s| s >= after) {
                break f;
            }
            std::thread::sleep(POLL);
        };
        let lowest = saved.as_ref().map(Saved::lowest);
        self.mode = match (lowest, saved) {
            (None, _) | (_, None) => Mode::UntilCaughtUp,
            (Some(p), Some(_)) if p.0 < first => {
                log!(
                    "warn",
                    self.s.name,
                    "saved position segment {} offset {} was truncated from the WAL (held longer than the cap?); resuming at segment {first}: samples in between are not sent",
                    p.0,
                    p.1
                );
                self.set_read((first, 0));
                Mode::Send
            }
            (Some(p), Some(saved)) => {
                {
                    let mut t = self.s.tracker.lock().unwrap_or_else(|e| e.into_inner());
                    t.read = Some(saved.read);
                    t.floor = Some(saved.clone());
                }
                self.resume = Some(saved);
                Mode::UntilPos(p)
            }
        };
        // Series records are read from `first` on; the control task moves the hold up to the
        // saved position's segment as sends are acknowledged.
        self.s.db.hold_wal_segments(&self.s.hold, first);
        let mut tail =
            SegmentTail::open(&wal::segment_path(&wal_dir, first), first, 0).map_err(wal_err)?;
        self.s.m.current_segment.set(first as i64);
        let mut damaged_once = false;
        loop {
            if self.quitting() {
                return Ok(());
            }
            let want = self.s.desired_shards.load(Ordering::SeqCst);
            if want != self.s.num_shards.load(Ordering::SeqCst) {
                log!("info", self.s.name, "resharding to {want} shards");
                self.stop_shards();
                self.start_shards(want);
            }
            let start = (tail.segment(), tail.offset());
            match tail.next_record() {
                Ok(rec) => {
                    damaged_once = false;
                    let rec = rec.to_vec();
                    let end = (tail.segment(), tail.offset());
                    self.process(&rec, start, end)?;
                }
                Err(stall) => {
                    if tail.fill().map_err(wal_err)? > 0 {
                        continue;
                    }
                    let seg = tail.segment();
                    let next = next_segment(&wal_dir, seg)?;
                    match (next, &stall) {
                        (None, Stall::NeedMore) | (None, Stall::Damage { .. }) => {
                            if self.mode == Mode::UntilCaughtUp {
                                self.mode = Mode::Send;
                                self.set_read(start);
                            }
                            self.resume_done(start);
                            std::thread::sleep(POLL);
                        }
                        (Some(n), _) => {
                            // The segment is finished: its last bytes were written before the next
                            // one was created. Read it once more to its end before leaving.
                            if !damaged_once {
                                damaged_once = true;
                                continue;
                            }
                            damaged_once = false;
                            if let Stall::Damage { offset, reason } = &stall {
                                log!(
                                    "error",
                                    self.s.name,
                                    "WAL segment {seg} damaged at offset {offset}: {reason}; skipping the rest of it"
                                );
                            } else if !tail.at_clean_end() {
                                log!(
                                    "error",
                                    self.s.name,
                                    "WAL segment {seg} ends inside a record at offset {}; skipping the rest of it",
                                    tail.offset()
                                );
                            }
                            if n != seg + 1 {
                                log!(
                                    "warn",
                                    self.s.name,
                                    "WAL segments {} to {} are gone (truncated while held past the cap?); their samples are not sent",
                                    seg + 1,
                                    n - 1
                                );
                            }
                            tail = SegmentTail::open(&wal::segment_path(&wal_dir, n), n, 0)
                                .map_err(wal_err)?;
                            self.s.m.current_segment.set(n as i64);
                            if self.mode == Mode::Send {
                                self.set_read((n, 0));
                            }
                            self.gc_series(n)?;
                        }
                    }
                }
            }
        }
    }

    fn set_read(&self, p: Pos) {
        let mut t = self.s.tracker.lock().unwrap_or_else(|e| e.into_inner());
        if t.read.is_none_or(|r| r < p) {
            t.read = Some(p);
        }
    }

    fn read_checkpoint(&mut self, dir: &Path, idx: u64) -> Result<(), RemoteError> {
        if self.checkpoint_seen.is_some_and(|c| c >= idx) {
            return Ok(());
        }
        let mut r = WalReader::open(dir).map_err(wal_err)?;
        while let Some(rec) = r.next_record().map_err(wal_err)? {
            if record::record_type(rec) == RecordType::Series {
                let rec = rec.to_vec();
                self.store_series(&rec, idx);
            }
        }
        self.checkpoint_seen = Some(idx);
        Ok(())
    }

    /// Prometheus' `SeriesReset`: once a newer checkpoint exists behind the read position, series
    /// last seen before it are gone from the head (the checkpoint kept those still alive).
    fn gc_series(&mut self, reading: u64) -> Result<(), RemoteError> {
        let Some((dir, idx)) = wal::last_checkpoint(&self.s.wal_dir).map_err(wal_err)? else {
            return Ok(());
        };
        if idx >= reading || self.checkpoint_seen.is_some_and(|c| c >= idx) {
            return Ok(());
        }
        // The checkpoint directory may vanish under a newer truncation; try again next segment.
        if self.read_checkpoint(&dir, idx).is_err() {
            return Ok(());
        }
        self.series.retain(|_, e| e.seg >= idx);
        Ok(())
    }

    fn store_series(&mut self, rec: &[u8], seg: u64) {
        let mut scratch = Vec::new();
        let mut found: Vec<(u64, Vec<Label>)> = Vec::new();
        let r = record::for_each_series(rec, &mut scratch, |id, labels| {
            found.push((id, labels.iter().map(|(n, v)| Label::new(*n, *v)).collect()));
        });
        if let Err(e) = r {
            log!("warn", self.s.name, "undecodable series record: {e}");
        }
        for (id, mut labels) in found {
            // External labels first, series labels win (Prometheus' `processExternalLabels`).
            for (n, v) in &self.s.external {
                if !labels.iter().any(|l| &l.name == n) {
                    labels.push(Label::new(n.as_str(), v.as_str()));
                }
            }
            let keep = relabel::process_vec(&self.s.rules, &mut labels) && !labels.is_empty();
            let enc = keep.then(|| {
                self.scratch.clear();
                proto::encode_label_fields(
                    labels.iter().map(|l| (l.name.as_str(), l.value.as_str())),
                    &mut self.scratch,
                );
                Arc::<[u8]>::from(self.scratch.as_slice())
            });
            self.series.insert(id, SeriesEntry { labels: enc, seg });
        }
    }

    fn process(&mut self, rec: &[u8], start: Pos, end: Pos) -> Result<(), RemoteError> {
        match record::record_type(rec) {
            RecordType::Series => {
                self.store_series(rec, end.0);
            }
            RecordType::Samples => {
                let send = match self.mode {
                    Mode::Send => true,
                    Mode::UntilCaughtUp => false,
                    Mode::UntilPos(p) => {
                        if end > p {
                            self.mode = Mode::Send;
                            true
                        } else {
                            false
                        }
                    }
                };
                if send {
                    self.enqueue(rec, start)?;
                }
            }
            _ => {}
        }
        if self.mode == Mode::Send {
            self.set_read(end);
        }
        self.resume_done(end);
        Ok(())
    }

    /// Ends the resume phase once reading reached the loaded read position: every sample owed
    /// since then is in the tracker's lanes again.
    fn resume_done(&mut self, at: Pos) {
        if self.resume.as_ref().is_some_and(|r| at >= r.read) {
            self.resume = None;
            if let Mode::UntilPos(_) = self.mode {
                self.mode = Mode::Send;
            }
            let mut t = self.s.tracker.lock().unwrap_or_else(|e| e.into_inner());
            t.floor = None;
        }
    }

    fn enqueue(&mut self, rec: &[u8], start: Pos) -> Result<(), RemoteError> {
        let mut samples = std::mem::take(&mut self.samples_buf);
        samples.clear();
        if let Err(e) = record::decode_samples(rec, &mut samples) {
            log!(
                "warn",
                self.s.name,
                "undecodable samples record at segment {} offset {}: {e}",
                start.0,
                start.1
            );
        }
        let mut highest = i64::MIN;
        let mut kept = 0usize;
        for smp in &samples {
            highest = highest.max(smp.t);
            if matches!(
                self.series.get(&smp.series),
                Some(SeriesEntry {
                    labels: Some(_),
                    ..
                })
            ) {
                kept += 1;
            }
        }
        let dropped = samples.len() - kept;
        if dropped > 0 {
            self.s.m.dropped.inc_by(dropped as u64);
            self.s.data_dropped.incr(dropped as i64);
        }
        self.s.m.samples_in.inc_by(samples.len() as u64);
        self.s.data_in.incr(samples.len() as i64);
        if highest > i64::MIN {
            let prev = self.s.highest_recv_ms.fetch_max(highest, Ordering::Relaxed);
            if highest > prev {
                self.s.gauge_highest_recv.set(highest as f64 / 1000.0);
            }
        }
        if kept > 0 {
            self.lane_total.iter_mut().for_each(|c| *c = 0);
            self.lane_skip.iter_mut().for_each(|c| *c = 0);
            for smp in &samples {
                if let Some(SeriesEntry {
                    labels: Some(_), ..
                }) = self.series.get(&smp.series)
                {
                    let lane = (smp.series % LANES as u64) as usize;
                    let index = self.lane_total[lane];
                    self.lane_total[lane] += 1;
                    if self
                        .resume
                        .as_ref()
                        .is_some_and(|r| r.acked(lane, start, index))
                    {
                        self.lane_skip[lane] += 1;
                    }
                }
            }
            let mut to_send = 0i64;
            {
                let mut t = self.s.tracker.lock().unwrap_or_else(|e| e.into_inner());
                for lane in 0..LANES {
                    let (total, acked) = (self.lane_total[lane], self.lane_skip[lane]);
                    if total > acked {
                        to_send += i64::from(total - acked);
                        t.lanes[lane].push_back(InFlight {
                            start,
                            total,
                            acked,
                        });
                    }
                }
            }
            self.s.m.pending.inc_by(to_send);
            self.lane_skip
                .iter_mut()
                .for_each(|c| *c = c.wrapping_neg());
            let n = self.senders.len();
            for smp in &samples {
                let Some(SeriesEntry {
                    labels: Some(labels),
                    ..
                }) = self.series.get(&smp.series)
                else {
                    continue;
                };
                let lane = (smp.series % LANES as u64) as usize;
                // `lane_skip` counts up from minus the acknowledged prefix: skip while negative.
                if self.lane_skip[lane] != 0 {
                    self.lane_skip[lane] = self.lane_skip[lane].wrapping_add(1);
                    continue;
                }
                let mut item = QueuedSample {
                    labels: labels.clone(),
                    t: smp.t,
                    v: smp.v,
                    lane: lane as u16,
                };
                let shard = lane % n;
                let mut backoff = Duration::from_millis(5);
                loop {
                    match self.senders[shard].try_send(item) {
                        Ok(()) => break,
                        Err(mpsc::error::TrySendError::Full(back)) => {
                            item = back;
                            if self.quitting() {
                                // Unsent: stays in flight, so the saved position keeps it.
                                self.samples_buf = samples;
                                return Ok(());
                            }
                            self.s.m.enqueue_retries.inc();
                            std::thread::sleep(backoff);
                            backoff = (backoff * 2).min(
                                self.s
                                    .cfg
                                    .max_backoff
                                    .to_std()
                                    .max(Duration::from_millis(5)),
                            );
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => {
                            self.samples_buf = samples;
                            return Err(RemoteError::Config(format!(
                                "{}: shard {shard} stopped unexpectedly",
                                self.s.url
                            )));
                        }
                    }
                }
            }
        }
        self.samples_buf = samples;
        Ok(())
    }
}

fn wal_err(e: wal::WalError) -> RemoteError {
    RemoteError::Wal(e)
}

/// The first segment after `seg`, if any exists (normally `seg + 1`).
fn next_segment(wal_dir: &Path, seg: u64) -> Result<Option<u64>, RemoteError> {
    if wal::segment_path(wal_dir, seg + 1).exists() {
        return Ok(Some(seg + 1));
    }
    let segs = wal::segments(wal_dir).map_err(wal_err)?;
    Ok(segs.into_iter().find(|&s| s > seg))
}

// ---------------------------------------------------------------------------------------------
// Shards

async fn run_shard(s: Arc<Shared>, mut rx: mpsc::Receiver<QueuedSample>) {
    let max = s.cfg.max_samples_per_send;
    let deadline = s
        .cfg
        .batch_send_deadline
        .to_std()
        .max(Duration::from_millis(1));
    let mut batch: Vec<QueuedSample> = Vec::with_capacity(max);
    let mut raw = Vec::new();
    let mut timer = Box::pin(tokio::time::sleep(deadline));
    loop {
        let room = max - batch.len();
        tokio::select! {
            n = rx.recv_many(&mut batch, room) => {
                if n == 0 {
                    if !batch.is_empty() {
                        send_batch(&s, &mut batch, &mut raw).await;
                    }
                    return;
                }
                if batch.len() >= max {
                    send_batch(&s, &mut batch, &mut raw).await;
                    timer.as_mut().reset(tokio::time::Instant::now() + deadline);
                }
            }
            _ = timer.as_mut() => {
                if !batch.is_empty() {
                    send_batch(&s, &mut batch, &mut raw).await;
                }
                timer.as_mut().reset(tokio::time::Instant::now() + deadline);
            }
        }
    }
}

/// How a send attempt ended.
enum Outcome {
    Ok,
    /// Retry after this long (`None`: the backoff).
    Retry(Option<Duration>, String),
    Fail(String),
}

async fn attempt(s: &Shared, body: &bytes::Bytes) -> Outcome {
    use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE};
    let r = s
        .client
        .post(&s.url)
        .headers(s.headers.clone())
        .header(CONTENT_ENCODING, "snappy")
        .header(CONTENT_TYPE, "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .timeout(s.timeout)
        .body(body.clone())
        .send()
        .await;
    let resp = match r {
        Ok(r) => r,
        Err(e) => return Outcome::Retry(None, e.to_string()),
    };
    let status = resp.status();
    if status.is_success() {
        return Outcome::Ok;
    }
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let text = resp.text().await.unwrap_or_default();
    let line = text.lines().next().unwrap_or("");
    let line: String = line.chars().take(MAX_ERR_MSG).collect();
    let msg = format!("server returned HTTP status {status}: {line}");
    if status.is_server_error() {
        Outcome::Retry(None, msg)
    } else if status.as_u16() == 429 {
        Outcome::Retry(retry_after, msg)
    } else {
        Outcome::Fail(msg)
    }
}

async fn send_batch(s: &Shared, batch: &mut Vec<QueuedSample>, raw: &mut Vec<u8>) {
    let n = batch.len() as u64;
    raw.clear();
    let mut highest = i64::MIN;
    for q in batch.iter() {
        proto::put_sample_series(raw, &q.labels, q.t, q.v);
        highest = highest.max(q.t);
    }
    let mut body = Vec::with_capacity(snap::raw::max_compress_len(raw.len()));
    proto::snappy_append(raw, &mut body);
    let body = bytes::Bytes::from(body);
    let began = Instant::now();
    let mut backoff = s.cfg.min_backoff.to_std();
    let max_backoff = s.cfg.max_backoff.to_std();
    loop {
        s.m.samples.inc_by(n);
        let t0 = Instant::now();
        let out = attempt(s, &body).await;
        s.m.sent_batch_duration.observe(t0.elapsed().as_secs_f64());
        match out {
            Outcome::Ok => break,
            Outcome::Fail(msg) => {
                log!(
                    "error",
                    s.name,
                    "non-recoverable error, dropping {n} samples: {msg}"
                );
                s.m.failed.inc_by(n);
                break;
            }
            Outcome::Retry(after, msg) => {
                let sleep = after.unwrap_or(backoff);
                log!(
                    "warn",
                    s.name,
                    "failed to send batch, retrying in {sleep:?}: {msg}"
                );
                tokio::time::sleep(sleep).await;
                s.m.retried.inc_by(n);
                backoff = (sleep * 2).min(max_backoff);
            }
        }
    }
    s.m.bytes.inc_by(body.len() as u64);
    let prev = s.highest_sent_ms.fetch_max(highest, Ordering::Relaxed);
    if highest > prev {
        s.m.highest_sent.set((highest / 1000) as f64);
    }
    s.data_out.incr(n as i64);
    s.data_out_duration.incr(began.elapsed().as_nanos() as i64);
    s.last_send_secs.store(unix_secs(), Ordering::Relaxed);
    s.m.pending.dec_by(n as i64);
    // A lane's samples reach this shard, and its batches, in WAL order: acknowledging them one
    // by one walks each lane's records front to back.
    let mut t = s.tracker.lock().unwrap_or_else(|e| e.into_inner());
    for q in batch.iter() {
        t.ack(usize::from(q.lane));
    }
    drop(t);
    batch.clear();
}

/// Prometheus' metadata watcher: every `send_interval`, the metadata of every active target,
/// deduplicated on (name, type, help, unit), sent in requests of `max_samples_per_send` entries
/// with the samples' retry rules. Not parallel, and never in the way of the samples.
async fn send_metadata_loop(s: Arc<Shared>) {
    let Some(source) = s.metadata_source.clone() else {
        return;
    };
    let every = s
        .meta_cfg
        .send_interval
        .to_std()
        .max(Duration::from_millis(100));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if s.quit.load(Ordering::SeqCst) {
            return;
        }
        let (targets, _) = source.targets();
        let mut seen: HashSet<&(String, MetricMetadata)> = HashSet::new();
        let mut entries: Vec<proto::MetricMetadata> = Vec::new();
        for t in &targets {
            for e in t.metadata.iter() {
                if seen.insert(e) {
                    entries.push(proto::MetricMetadata {
                        r#type: metric_type_number(&e.1.kind),
                        metric_family_name: e.0.clone(),
                        help: e.1.help.clone(),
                        unit: e.1.unit.clone(),
                    });
                }
            }
        }
        for chunk in entries.chunks(s.meta_cfg.max_samples_per_send) {
            send_metadata(&s, chunk).await;
        }
    }
}

/// The `MetricType` enum of remote.proto for a type as the scrape reports it.
fn metric_type_number(kind: &str) -> i32 {
    match kind {
        "counter" => 1,
        "gauge" => 2,
        "histogram" => 3,
        "gaugehistogram" => 4,
        "summary" => 5,
        "info" => 6,
        "stateset" => 7,
        _ => 0,
    }
}

async fn send_metadata(s: &Shared, entries: &[proto::MetricMetadata]) {
    let n = entries.len() as u64;
    let req = proto::WriteRequest {
        timeseries: Vec::new(),
        metadata: entries.to_vec(),
    };
    let mut body = Vec::new();
    proto::encode_write_request(&req, &mut body);
    let body = bytes::Bytes::from(body);
    let mut backoff = s.cfg.min_backoff.to_std();
    let max_backoff = s.cfg.max_backoff.to_std();
    loop {
        let t0 = Instant::now();
        let out = attempt(s, &body).await;
        s.m.sent_batch_duration.observe(t0.elapsed().as_secs_f64());
        match out {
            Outcome::Ok => {
                s.m.metadata.inc_by(n);
                s.m.metadata_bytes.inc_by(body.len() as u64);
                return;
            }
            Outcome::Fail(msg) => {
                log!(
                    "error",
                    s.name,
                    "non-recoverable error while sending metadata, count={n}: {msg}"
                );
                s.m.metadata_failed.inc_by(n);
                return;
            }
            Outcome::Retry(after, msg) => {
                if s.quit.load(Ordering::SeqCst) {
                    return;
                }
                let sleep = after.unwrap_or(backoff);
                log!(
                    "warn",
                    s.name,
                    "failed to send metadata, retrying in {sleep:?}: {msg}"
                );
                tokio::time::sleep(sleep).await;
                s.m.metadata_retried.inc_by(n);
                backoff = (sleep * 2).min(max_backoff);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_saves_each_lanes_oldest_record_and_its_acknowledged_prefix() {
        let mut t = Tracker::default();
        assert_eq!(t.saved(), None);
        t.read = Some((3, 500));
        t.lanes[1].push_back(InFlight {
            start: (2, 100),
            total: 3,
            acked: 0,
        });
        t.lanes[1].push_back(InFlight {
            start: (3, 0),
            total: 1,
            acked: 0,
        });
        t.lanes[7].push_back(InFlight {
            start: (3, 0),
            total: 2,
            acked: 1,
        });
        let s = t.saved().unwrap();
        assert_eq!(s.read, (3, 500));
        assert_eq!(s.lanes.get(&1), Some(&((2, 100), 0)));
        assert_eq!(s.lanes.get(&7), Some(&((3, 0), 1)));
        assert_eq!(s.lowest(), (2, 100));
        // Lane 1 acknowledges its first record's three samples, then one of the next.
        for _ in 0..3 {
            t.ack(1);
        }
        assert_eq!(t.saved().unwrap().lanes.get(&1), Some(&((3, 0), 0)));
        t.ack(1);
        t.ack(7);
        let s = t.saved().unwrap();
        assert!(s.lanes.is_empty());
        assert_eq!(s.lowest(), (3, 500));
        // What a restart skips.
        let mut saved = Saved {
            read: (5, 0),
            lanes: BTreeMap::new(),
        };
        saved.lanes.insert(2, ((4, 10), 2));
        assert!(saved.acked(2, (4, 0), 9));
        assert!(saved.acked(2, (4, 10), 1));
        assert!(!saved.acked(2, (4, 10), 2));
        assert!(!saved.acked(2, (4, 20), 0));
        assert!(saved.acked(3, (4, 20), 0));
        assert!(!saved.acked(3, (5, 0), 0));
    }

    #[test]
    fn position_file_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("position");
        assert_eq!(read_position(&p).unwrap(), None);
        let mut saved = Saved {
            read: (12, 34567),
            lanes: BTreeMap::new(),
        };
        saved.lanes.insert(255, ((11, 8), 3));
        saved.lanes.insert(0, ((12, 0), 0));
        write_position(&p, &saved).unwrap();
        assert_eq!(read_position(&p).unwrap(), Some(saved));
        for bad in [
            "garbage",
            "lane 1 2 3 4",
            "read 1 2\nlane 256 1 1 1",
            "read x 2",
        ] {
            std::fs::write(&p, bad).unwrap();
            assert!(read_position(&p).is_err(), "{bad}");
        }
    }

    #[test]
    fn shard_count_follows_prometheus_formula() {
        let base = ShardInputs {
            current: 1,
            min: 1,
            max: 200,
            data_in: 10_000.0,
            data_out: 1_000.0,
            data_dropped: 0.0,
            // One shard busy all the time for 1000 samples/s: 1 ms a sample.
            out_duration: 1.0,
            delay: 0.0,
        };
        // 10k samples/s at 1 ms each: 10 shards.
        assert_eq!(shards_for(base).1, 10);
        // A backlog of 20 s adds 5% of it per second: 10k * (1 + 0.05 * 20) = 20 shards.
        assert_eq!(
            shards_for(ShardInputs {
                delay: 20.0,
                ..base
            })
            .1,
            20
        );
        // Within 30% of the current count: unchanged.
        assert_eq!(shards_for(ShardInputs { current: 9, ..base }).1, 9);
        // Clamped to max_shards, and to min_shards when idle.
        assert_eq!(shards_for(ShardInputs { max: 4, ..base }).1, 4);
        let idle = ShardInputs {
            current: 8,
            min: 2,
            data_in: 1.0,
            ..base
        };
        assert_eq!(shards_for(idle).1, 2);
        // Not shrinking while more than 10 s behind; nothing sent yet: no estimate.
        assert_eq!(
            shards_for(ShardInputs {
                delay: 11.0,
                ..idle
            })
            .1,
            8
        );
        assert_eq!(
            shards_for(ShardInputs {
                data_out: 0.0,
                ..base
            }),
            (None, 1)
        );
    }

    #[test]
    fn ewma_follows_prometheus() {
        let e = Ewma::default();
        e.incr(100);
        e.tick(Duration::from_secs(10));
        assert_eq!(e.rate(), 10.0);
        e.incr(200);
        e.tick(Duration::from_secs(10));
        assert!((e.rate() - 12.0).abs() < 1e-9);
    }
}
