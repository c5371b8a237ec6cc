//! [`RemoteWriter`]: the set of remote-write queues, one per `remote_write` entry, started,
//! restarted and stopped as the configuration changes (Prometheus 2.42's
//! `storage/remote/write.go`, `WriteStorage.ApplyConfig`), and their metrics under Prometheus'
//! names (`prometheus_remote_storage_*`, labels `remote_name` and `url`).

use super::queue::{self, Queue, QueueMetrics, QueueSpec};
use super::RemoteError;
use crate::config::{Config, RemoteWriteConfig};
use crate::server::ScrapeView;
use crate::Db;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

/// How long [`RemoteWriter::stop`] (and a queue restarted by a configuration change) waits for
/// the shards to send what they hold: Prometheus' `--storage.remote.flush-deadline` default.
/// Whatever is not sent by then is sent after the restart (the saved position precedes it).
pub const DEFAULT_FLUSH_DEADLINE: Duration = Duration::from_secs(60);

type Labels = Vec<(String, String)>;

/// Prometheus' `sent_batch_duration_seconds` buckets: `DefBuckets` then 25, 60, 120, 300.
const BATCH_BUCKETS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 60.0, 120.0, 300.0,
];

fn batch_histogram() -> Histogram {
    Histogram::new(BATCH_BUCKETS)
}

/// The metric families, registered once; each queue takes the children for its labels.
struct Families {
    samples: Family<Labels, Counter>,
    samples_in: Family<Labels, Counter>,
    failed: Family<Labels, Counter>,
    retried: Family<Labels, Counter>,
    dropped: Family<Labels, Counter>,
    enqueue_retries: Family<Labels, Counter>,
    bytes: Family<Labels, Counter>,
    pending: Family<Labels, Gauge>,
    shards: Family<Labels, Gauge>,
    shards_min: Family<Labels, Gauge>,
    shards_max: Family<Labels, Gauge>,
    shards_desired: Family<Labels, Gauge<f64, AtomicU64>>,
    shard_capacity: Family<Labels, Gauge>,
    max_samples_per_send: Family<Labels, Gauge>,
    highest_sent: Family<Labels, Gauge<f64, AtomicU64>>,
    sent_batch_duration: Family<Labels, Histogram, fn() -> Histogram>,
    current_segment: Family<Labels, Gauge>,
    metadata: Family<Labels, Counter>,
    metadata_failed: Family<Labels, Counter>,
    metadata_retried: Family<Labels, Counter>,
    metadata_bytes: Family<Labels, Counter>,
}

impl Families {
    fn register(r: &mut Registry) -> Families {
        let f = Families {
            samples: Family::default(),
            samples_in: Family::default(),
            failed: Family::default(),
            retried: Family::default(),
            dropped: Family::default(),
            enqueue_retries: Family::default(),
            bytes: Family::default(),
            pending: Family::default(),
            shards: Family::default(),
            shards_min: Family::default(),
            shards_max: Family::default(),
            shards_desired: Family::default(),
            shard_capacity: Family::default(),
            max_samples_per_send: Family::default(),
            highest_sent: Family::default(),
            sent_batch_duration: Family::new_with_constructor(batch_histogram),
            current_segment: Family::default(),
            metadata: Family::default(),
            metadata_failed: Family::default(),
            metadata_retried: Family::default(),
            metadata_bytes: Family::default(),
        };
        // prometheus-client appends `_total` to counters.
        let p = "prometheus_remote_storage_";
        r.register(
            format!("{p}samples"),
            "Total number of samples sent to remote storage",
            f.samples.clone(),
        );
        r.register(
            format!("{p}samples_in"),
            "Samples read from the WAL into remote storage queues",
            f.samples_in.clone(),
        );
        r.register(format!("{p}samples_failed"), "Total number of samples which failed on send to remote storage, non-recoverable errors", f.failed.clone());
        r.register(format!("{p}samples_retried"), "Total number of samples which failed on send to remote storage but were retried because the send error was recoverable", f.retried.clone());
        r.register(format!("{p}samples_dropped"), "Total number of samples which were dropped after being read from the WAL before being sent via remote write, either via relabelling or unintentionally because of an unknown reference ID", f.dropped.clone());
        r.register(
            format!("{p}enqueue_retries"),
            "Total number of times enqueue has failed because a shards queue was full",
            f.enqueue_retries.clone(),
        );
        r.register(
            format!("{p}bytes"),
            "The total number of bytes of data sent by the queue after compression",
            f.bytes.clone(),
        );
        r.register(
            format!("{p}samples_pending"),
            "The number of samples pending in the queues shards to be sent to the remote storage",
            f.pending.clone(),
        );
        r.register(
            format!("{p}shards"),
            "The number of shards used for parallel sending to the remote storage",
            f.shards.clone(),
        );
        r.register(
            format!("{p}shards_min"),
            "The minimum number of shards that the queue is allowed to run",
            f.shards_min.clone(),
        );
        r.register(
            format!("{p}shards_max"),
            "The maximum number of shards that the queue is allowed to run",
            f.shards_max.clone(),
        );
        r.register(format!("{p}shards_desired"), "The number of shards that the queues shard calculation wants to run based on the rate of samples in vs. samples out", f.shards_desired.clone());
        r.register(format!("{p}shard_capacity"), "The capacity of each shard of the queue used for parallel sending to the remote storage", f.shard_capacity.clone());
        r.register(
            format!("{p}max_samples_per_send"),
            "The maximum number of samples to be sent, in a single request, to the remote storage",
            f.max_samples_per_send.clone(),
        );
        r.register(format!("{p}queue_highest_sent_timestamp_seconds"), "Timestamp from a WAL sample, the highest timestamp successfully sent by this queue, in seconds since epoch", f.highest_sent.clone());
        r.register(
            format!("{p}sent_batch_duration_seconds"),
            "Duration of send calls to the remote storage",
            f.sent_batch_duration.clone(),
        );
        r.register(
            format!("{p}metadata"),
            "Total number of metadata entries sent to remote storage.",
            f.metadata.clone(),
        );
        r.register(format!("{p}metadata_failed"), "Total number of metadata entries which failed on send to remote storage, non-recoverable errors.", f.metadata_failed.clone());
        r.register(format!("{p}metadata_retried"), "Total number of metadata entries which failed on send to remote storage but were retried because the send error was recoverable.", f.metadata_retried.clone());
        r.register(
            format!("{p}metadata_bytes"),
            "The total number of bytes of metadata sent by the queue after compression.",
            f.metadata_bytes.clone(),
        );
        r.register(
            "prometheus_wal_watcher_current_segment",
            "Current segment the WAL watcher is reading records from",
            f.current_segment.clone(),
        );
        f
    }

    fn children(&self, l: &Labels, cfg: &RemoteWriteConfig) -> QueueMetrics {
        let q = &cfg.queue_config;
        self.shards_min.get_or_create(l).set(q.min_shards as i64);
        self.shards_max.get_or_create(l).set(q.max_shards as i64);
        self.shard_capacity.get_or_create(l).set(q.capacity as i64);
        self.max_samples_per_send
            .get_or_create(l)
            .set(q.max_samples_per_send as i64);
        let shards_desired = self.shards_desired.get_or_create(l).clone();
        shards_desired.set(q.min_shards as f64);
        QueueMetrics {
            samples: self.samples.get_or_create(l).clone(),
            samples_in: self.samples_in.get_or_create(l).clone(),
            failed: self.failed.get_or_create(l).clone(),
            retried: self.retried.get_or_create(l).clone(),
            dropped: self.dropped.get_or_create(l).clone(),
            enqueue_retries: self.enqueue_retries.get_or_create(l).clone(),
            bytes: self.bytes.get_or_create(l).clone(),
            pending: self.pending.get_or_create(l).clone(),
            shards: self.shards.get_or_create(l).clone(),
            shards_desired,
            highest_sent: self.highest_sent.get_or_create(l).clone(),
            sent_batch_duration: self.sent_batch_duration.get_or_create(l).clone(),
            metadata: self.metadata.get_or_create(l).clone(),
            metadata_failed: self.metadata_failed.get_or_create(l).clone(),
            metadata_retried: self.metadata_retried.get_or_create(l).clone(),
            metadata_bytes: self.metadata_bytes.get_or_create(l).clone(),
            current_segment: self
                .current_segment
                .get_or_create(&vec![("consumer".to_string(), l[0].1.clone())])
                .clone(),
        }
    }

    fn remove(&self, l: &Labels) {
        self.samples.remove(l);
        self.samples_in.remove(l);
        self.failed.remove(l);
        self.retried.remove(l);
        self.dropped.remove(l);
        self.enqueue_retries.remove(l);
        self.bytes.remove(l);
        self.pending.remove(l);
        self.shards.remove(l);
        self.shards_min.remove(l);
        self.shards_max.remove(l);
        self.shards_desired.remove(l);
        self.shard_capacity.remove(l);
        self.max_samples_per_send.remove(l);
        self.highest_sent.remove(l);
        self.sent_batch_duration.remove(l);
        self.metadata.remove(l);
        self.metadata_failed.remove(l);
        self.metadata_retried.remove(l);
        self.metadata_bytes.remove(l);
        self.current_segment
            .remove(&vec![("consumer".to_string(), l[0].1.clone())]);
    }
}

struct Running {
    /// The entry and external labels it runs with (secrets included, so a changed password
    /// restarts the queue).
    fingerprint: String,
    labels: Labels,
    queue: Queue,
}

/// A queue's state, for tests and status pages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueStatus {
    /// The `remote_name` label: the entry's `name`, or a hash of the entry.
    pub name: String,
    pub url: String,
    /// Directory under `<data_dir>/remote/` holding the queue's `position`.
    pub key: String,
    pub shards: usize,
}

/// Remote-write senders: one queue per `remote_write` entry, each fed from the WAL of `db`.
pub struct RemoteWriter {
    db: Arc<Db>,
    data_dir: PathBuf,
    families: Families,
    highest_recv_ms: Arc<AtomicI64>,
    gauge_highest_recv: Gauge<f64, AtomicU64>,
    flush_deadline: Duration,
    queues: tokio::sync::Mutex<HashMap<String, Running>>,
    /// Where the metadata that `metadata_config` sends comes from (the scrape manager).
    metadata_source: Option<Arc<dyn ScrapeView>>,
    /// Queues found on disk by `new` and held until the first `apply_config` says whether they
    /// still exist.
    found: std::sync::Mutex<Vec<String>>,
}

impl RemoteWriter {
    /// Registers the metrics and holds the WAL segments every queue with a saved position under
    /// `<data_dir>/remote/` still needs (until [`RemoteWriter::apply_config`] says which queues
    /// exist). `data_dir` is the database's directory.
    pub fn new(db: Arc<Db>, data_dir: &Path, registry: &mut Registry) -> RemoteWriter {
        let families = Families::register(registry);
        let gauge_highest_recv = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "prometheus_remote_storage_highest_timestamp_in_seconds",
            "Highest timestamp that has come into the remote storage via the WAL, in seconds since epoch",
            gauge_highest_recv.clone(),
        );
        let mut found = Vec::new();
        if let Ok(entries) = std::fs::read_dir(data_dir.join("remote")) {
            for e in entries.flatten() {
                if let Some(key) = e.file_name().to_str() {
                    queue::hold_saved(&db, data_dir, key);
                    found.push(key.to_string());
                }
            }
        }
        RemoteWriter {
            db,
            data_dir: data_dir.to_path_buf(),
            families,
            highest_recv_ms: Arc::new(AtomicI64::new(i64::MIN)),
            gauge_highest_recv,
            flush_deadline: DEFAULT_FLUSH_DEADLINE,
            queues: tokio::sync::Mutex::new(HashMap::new()),
            metadata_source: None,
            found: std::sync::Mutex::new(found),
        }
    }

    /// Sets how long stopping a queue waits for its shards to send what they hold (default
    /// [`DEFAULT_FLUSH_DEADLINE`]).
    pub fn with_flush_deadline(mut self, d: Duration) -> RemoteWriter {
        self.flush_deadline = d;
        self
    }

    /// Sends the metric metadata `source`'s targets expose to every queue whose `metadata_config`
    /// says `send` (Prometheus' metadata watcher); without a source no metadata is sent.
    pub fn with_metadata_source(mut self, source: Arc<dyn ScrapeView>) -> RemoteWriter {
        self.metadata_source = Some(source);
        self
    }

    /// Starts a queue per `remote_write` entry, restarts the ones whose entry (or the external
    /// labels) changed and stops the ones whose entry is gone. Every entry is checked before
    /// anything changes: on error the running queues are left as they were.
    pub async fn apply_config(&self, cfg: &Config) -> Result<(), RemoteError> {
        let mut external: Vec<(String, String)> = cfg
            .global
            .external_labels
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        external.sort();
        let mut wanted: Vec<(QueueSpec, String)> = Vec::new();
        for rw in &cfg.remote_write {
            if rw.url.is_empty() {
                return Err(RemoteError::Config("remote_write entry without url".into()));
            }
            reqwest::Url::parse(&rw.url)
                .map_err(|e| RemoteError::Config(format!("url {:?}: {e}", rw.url)))?;
            crate::relabel::compile(&rw.write_relabel_configs).map_err(|e| {
                RemoteError::Config(format!("{}: write_relabel_configs: {e}", rw.url))
            })?;
            // TLS files, credentials files, headers: checked before anything changes.
            queue::build_client(rw)?;
            let fingerprint = format!("{rw:?} {external:?}");
            let name = match &rw.name {
                Some(n) if !n.is_empty() => n.clone(),
                _ => format!(
                    "{:016x}",
                    xxhash_rust::xxh64::xxh64(format!("{rw:?}").as_bytes(), 0)
                )[..6]
                    .to_string(),
            };
            let key = queue_key(rw);
            if wanted.iter().any(|(s, _)| s.key == key) {
                return Err(RemoteError::Config(format!(
                    "duplicate remote write configs are not allowed: {} ({})",
                    rw.url,
                    rw.name.as_deref().unwrap_or("no name")
                )));
            }
            wanted.push((
                QueueSpec {
                    name,
                    key,
                    cfg: rw.clone(),
                    external: external.clone(),
                    metadata_source: self.metadata_source.clone(),
                },
                fingerprint,
            ));
        }
        let mut queues = self.queues.lock().await;
        // Queues of an earlier run that the configuration no longer has: their segments are free
        // (their position stays on disk, should the entry come back).
        let found = std::mem::take(&mut *self.found.lock().unwrap_or_else(|e| e.into_inner()));
        for key in found {
            if !wanted.iter().any(|(s, _)| s.key == key) {
                queue::release(&self.db, &key);
            }
        }
        let keys: Vec<String> = queues.keys().cloned().collect();
        for key in keys {
            let keep = wanted.iter().any(|(s, f)| {
                s.key == key && queues.get(&key).is_some_and(|r| &r.fingerprint == f)
            });
            if keep {
                continue;
            }
            if let Some(r) = queues.remove(&key) {
                r.queue.stop().await;
                self.families.remove(&r.labels);
                if !wanted.iter().any(|(s, _)| s.key == key) {
                    queue::release(&self.db, &key);
                }
            }
        }
        for (spec, fingerprint) in wanted {
            if queues.contains_key(&spec.key) {
                continue;
            }
            let labels = vec![
                ("remote_name".to_string(), spec.name.clone()),
                ("url".to_string(), spec.cfg.url.clone()),
            ];
            let m = self.families.children(&labels, &spec.cfg);
            let key = spec.key.clone();
            let q = Queue::start(
                spec,
                self.db.clone(),
                &self.data_dir,
                m,
                self.highest_recv_ms.clone(),
                self.gauge_highest_recv.clone(),
                self.flush_deadline,
            )?;
            queues.insert(
                key,
                Running {
                    fingerprint,
                    labels,
                    queue: q,
                },
            );
        }
        Ok(())
    }

    /// Stops every queue: reading stops, the shards send what they hold within the flush
    /// deadline, each queue's position is saved. Nothing committed is lost: what was not sent is
    /// after the saved position and goes out after the next start.
    pub async fn stop(&self) {
        let mut queues = self.queues.lock().await;
        let running: Vec<Running> = queues.drain().map(|(_, r)| r).collect();
        let mut stops = Vec::new();
        for r in running {
            stops.push(tokio::spawn(r.queue.stop()));
        }
        for s in stops {
            let _ = s.await;
        }
    }

    /// The running queues.
    pub async fn status(&self) -> Vec<QueueStatus> {
        let queues = self.queues.lock().await;
        let mut out: Vec<QueueStatus> = queues
            .iter()
            .map(|(key, r)| QueueStatus {
                name: r.queue.shared.name.clone(),
                url: r.queue.shared.url.clone(),
                key: key.clone(),
                shards: r.queue.shards(),
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }
}

/// The queue's directory name and WAL hold name: its `name` when that is a plain file name,
/// else a hash of the URL (so changing queue settings keeps the position; changing the URL
/// starts a new queue).
fn queue_key(rw: &RemoteWriteConfig) -> String {
    match &rw.name {
        Some(n)
            if !n.is_empty()
                && n.len() <= 64
                && n != "."
                && n != ".."
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) =>
        {
            n.clone()
        }
        Some(n) if !n.is_empty() => {
            format!("name-{:016x}", xxhash_rust::xxh64::xxh64(n.as_bytes(), 0))
        }
        _ => format!(
            "url-{:016x}",
            xxhash_rust::xxh64::xxh64(rw.url.as_bytes(), 0)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_keys_are_names_or_url_hashes() {
        let mut rw = RemoteWriteConfig {
            url: "http://a/api/v1/write".into(),
            ..RemoteWriteConfig::default()
        };
        let by_url = queue_key(&rw);
        assert!(by_url.starts_with("url-") && by_url.len() == 20, "{by_url}");
        rw.queue_config.max_shards = 7;
        assert_eq!(
            queue_key(&rw),
            by_url,
            "queue settings do not move the position"
        );
        rw.name = Some("vm-1".into());
        assert_eq!(queue_key(&rw), "vm-1");
        for odd in ["../x", "a/b", ".."] {
            rw.name = Some(odd.into());
            assert!(queue_key(&rw).starts_with("name-"), "{odd}");
        }
    }
}
