//! The web layer's own metrics and a collector of the database's figures, under Prometheus' names
//! where Prometheus has the same figure (`prometheus_http_requests_total{handler,code}`,
//! `prometheus_tsdb_head_series`, ...), so dashboards built for Prometheus read them unchanged.
//!
//! Exists so that `/metrics` tells how the process serves (HTTP, queries) and how its storage
//! fares (head, blocks, WAL, compactions). The database figures are read at scrape time from what
//! [`DbCore`] exposes; the collector holds the database weakly, so it never keeps it open.

use crate::db::{dir_size, Db, DbCore};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::sync::{Arc, Weak};

/// Prometheus' buckets of `prometheus_http_request_duration_seconds`.
const HTTP_DURATION_BUCKETS: [f64; 9] = [0.1, 0.2, 0.4, 1.0, 3.0, 8.0, 20.0, 60.0, 120.0];
/// Buckets of the query duration histogram (Prometheus has a summary there; prometheus-client
/// has no summaries).
const QUERY_DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];

type HandlerCode = Vec<(&'static str, String)>;

fn http_duration() -> Histogram {
    Histogram::new(HTTP_DURATION_BUCKETS)
}

fn response_size() -> Histogram {
    // Prometheus: ExponentialBuckets(100, 10, 8).
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        100.0, 10.0, 8,
    ))
}

/// Handles to the web layer's metrics (cheap to clone: every field is shared).
#[derive(Clone, Debug)]
pub struct WebMetrics {
    /// `prometheus_http_requests_total{handler,code}`.
    pub requests: Family<HandlerCode, Counter>,
    /// `prometheus_http_request_duration_seconds{handler}`.
    pub duration: Family<HandlerCode, Histogram, fn() -> Histogram>,
    /// `prometheus_http_response_size_bytes{handler}`.
    pub response_size: Family<HandlerCode, Histogram, fn() -> Histogram>,
    /// `prometheus_ready`.
    pub ready: Gauge,
    /// `prometheus_engine_queries`: queries running now.
    pub queries_running: Gauge,
    /// `prometheus_engine_query_duration_seconds{type}` (`instant` or `range`), successful or not.
    pub query_duration: Family<HandlerCode, Histogram, fn() -> Histogram>,
    /// `tsdb_engine_queries_total{type,result}`: `result` is `success` or the API's `errorType`.
    pub queries: Family<HandlerCode, Counter>,
    /// `prometheus_web_federation_errors_total`.
    pub federation_errors: Counter,
}

fn query_duration() -> Histogram {
    Histogram::new(QUERY_DURATION_BUCKETS)
}

impl WebMetrics {
    pub(crate) fn observe_request(&self, handler: &str, code: u16, seconds: f64, bytes: u64) {
        let h = vec![("handler", handler.to_string())];
        self.duration.get_or_create(&h).observe(seconds);
        self.response_size.get_or_create(&h).observe(bytes as f64);
        self.requests
            .get_or_create(&vec![
                ("handler", handler.to_string()),
                ("code", code.to_string()),
            ])
            .inc();
    }

    pub(crate) fn observe_query(&self, kind: &'static str, result: &str, seconds: f64) {
        self.query_duration
            .get_or_create(&vec![("type", kind.to_string())])
            .observe(seconds);
        self.queries
            .get_or_create(&vec![
                ("type", kind.to_string()),
                ("result", result.to_string()),
            ])
            .inc();
    }
}

/// Registers the web metrics and the database collector in `registry` (call before the registry
/// is frozen in an `Arc` for [`super::WebState::registry`]).
pub fn register_metrics(registry: &mut Registry, db: &Arc<Db>) -> WebMetrics {
    let m = WebMetrics {
        requests: Family::default(),
        duration: Family::new_with_constructor(http_duration),
        response_size: Family::new_with_constructor(response_size),
        ready: Gauge::default(),
        queries_running: Gauge::default(),
        query_duration: Family::new_with_constructor(query_duration),
        queries: Family::default(),
        federation_errors: Counter::default(),
    };
    // prometheus-client appends `_total` to counters.
    registry.register(
        "prometheus_http_requests",
        "Counter of HTTP requests",
        m.requests.clone(),
    );
    registry.register(
        "prometheus_http_request_duration_seconds",
        "Histogram of latencies for HTTP requests",
        m.duration.clone(),
    );
    registry.register(
        "prometheus_http_response_size_bytes",
        "Histogram of response size for HTTP requests",
        m.response_size.clone(),
    );
    registry.register(
        "prometheus_ready",
        "Whether Prometheus startup was fully completed and the server is ready for normal operation",
        m.ready.clone(),
    );
    registry.register(
        "prometheus_engine_queries",
        "The current number of queries being executed or waiting",
        m.queries_running.clone(),
    );
    registry.register(
        "prometheus_engine_query_duration_seconds",
        "Query timings (whole evaluation, by query type)",
        m.query_duration.clone(),
    );
    registry.register(
        "tsdb_engine_queries",
        "Queries answered by the HTTP API, by type and result (success or the error type)",
        m.queries.clone(),
    );
    registry.register(
        "prometheus_web_federation_errors",
        "Total number of errors that occurred while sending federation responses",
        m.federation_errors.clone(),
    );
    registry.register_collector(Box::new(DbCollector {
        db: Arc::downgrade(db),
    }));
    m
}

/// Reads the database's figures at each scrape.
struct DbCollector {
    db: Weak<Db>,
}

impl std::fmt::Debug for DbCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DbCollector")
    }
}

/// Figures of the database at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DbFigures {
    pub head_series: u64,
    pub head_chunks: u64,
    pub head_samples: u64,
    pub head_min_time: i64,
    pub head_max_time: i64,
    pub blocks: u64,
    pub blocks_bytes: u64,
    pub wal_segment_current: u64,
    pub wal_bytes: u64,
    pub compactions: u64,
    pub compactions_failed: u64,
    pub compaction_blocks_written: u64,
    pub compaction_blocks_merged: u64,
    pub head_chunks_disk_errors: u64,
    pub wal_replayed_samples: u64,
    pub wal_replay_seconds: f64,
    pub samples_appended: u64,
    pub samples_rejected: u64,
}

/// Reads [`DbFigures`]; walks every head series once (for chunk and sample counts).
pub fn db_figures(db: &DbCore) -> DbFigures {
    let head = db.head();
    let (mut chunks, mut samples) = (0u64, 0u64);
    for s in head.all_series() {
        let c = s.lock();
        chunks += c.closed.len() as u64 + u64::from(c.head.is_some());
        samples += c.num_samples() as u64;
    }
    let (min, max) = head.time_range().unwrap_or((i64::MAX, i64::MIN));
    let blocks = db.blocks();
    let wal_dir = db.dir().join("wal");
    let status = db.compaction_status();
    let report = db.open_report();
    DbFigures {
        head_series: head.num_series(),
        head_chunks: chunks,
        head_samples: samples,
        head_min_time: min,
        head_max_time: max,
        blocks: blocks.len() as u64,
        blocks_bytes: blocks.iter().map(|b| dir_size(b.dir())).sum(),
        wal_segment_current: crate::wal::segments(&wal_dir)
            .ok()
            .and_then(|s| s.last().copied())
            .unwrap_or(0),
        wal_bytes: dir_size(&wal_dir),
        compactions: status.runs,
        compactions_failed: status.failed,
        compaction_blocks_written: status.blocks_written,
        compaction_blocks_merged: status.blocks_merged,
        head_chunks_disk_errors: head.chunk_disk_errors().0,
        wal_replayed_samples: report.replayed_samples,
        wal_replay_seconds: report.replay_seconds,
        samples_appended: db.appended_totals().0,
        samples_rejected: db.appended_totals().1,
    }
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> std::fmt::Result {
    // Whole numbers print without a fraction (`3`, not `3.0`).
    if v.fract() == 0.0 && v.abs() < 9e15 {
        let g = ConstGauge::new(v as i64);
        return g.encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?);
    }
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, MetricType::Counter)?)
}

impl Collector for DbCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(db) = self.db.upgrade() else {
            return Ok(());
        };
        let f = db_figures(&db);
        gauge(
            &mut e,
            "prometheus_tsdb_head_series",
            "Total number of series in the head block.",
            f.head_series as f64,
        )?;
        gauge(
            &mut e,
            "prometheus_tsdb_head_chunks",
            "Total number of chunks in the head block.",
            f.head_chunks as f64,
        )?;
        gauge(
            &mut e,
            "tsdb_head_samples",
            "Samples held by the head block.",
            f.head_samples as f64,
        )?;
        if f.head_min_time <= f.head_max_time {
            gauge(
                &mut e,
                "prometheus_tsdb_head_min_time",
                "Minimum time bound of the head block (milliseconds).",
                f.head_min_time as f64,
            )?;
            gauge(
                &mut e,
                "prometheus_tsdb_head_max_time",
                "Maximum timestamp of the head block (milliseconds).",
                f.head_max_time as f64,
            )?;
        }
        gauge(
            &mut e,
            "prometheus_tsdb_blocks_loaded",
            "Number of currently loaded data blocks.",
            f.blocks as f64,
        )?;
        gauge(
            &mut e,
            "prometheus_tsdb_storage_blocks_bytes",
            "The number of bytes that are currently used for local storage by all blocks.",
            f.blocks_bytes as f64,
        )?;
        gauge(
            &mut e,
            "prometheus_tsdb_wal_segment_current",
            "Write log segment index that TSDB is currently writing to.",
            f.wal_segment_current as f64,
        )?;
        gauge(
            &mut e,
            "prometheus_tsdb_wal_storage_size_bytes",
            "Size of the write log directory.",
            f.wal_bytes as f64,
        )?;
        counter(
            &mut e,
            "prometheus_tsdb_compactions",
            "Total number of compactions that were executed for the partition.",
            f.compactions,
        )?;
        counter(
            &mut e,
            "prometheus_tsdb_compactions_failed",
            "Total number of compactions that failed for the partition.",
            f.compactions_failed,
        )?;
        counter(
            &mut e,
            "tsdb_compaction_head_blocks_written",
            "Blocks cut from the head by background compaction.",
            f.compaction_blocks_written,
        )?;
        counter(
            &mut e,
            "tsdb_compaction_blocks_merged",
            "Block merges (leveled, vertical, tombstone rewrites) by background compaction.",
            f.compaction_blocks_merged,
        )?;
        counter(
            &mut e,
            "tsdb_head_chunks_disk_errors",
            "Failed writes of completed head chunks to chunks_head/.",
            f.head_chunks_disk_errors,
        )?;
        counter(
            &mut e,
            "prometheus_tsdb_head_samples_appended",
            "Total number of appended samples.",
            f.samples_appended,
        )?;
        counter(
            &mut e,
            "tsdb_head_samples_rejected",
            "Samples rejected at commit (out of order, duplicate, out of bounds).",
            f.samples_rejected,
        )?;
        gauge(
            &mut e,
            "tsdb_wal_replayed_samples",
            "Samples replayed from the WAL when the database was opened.",
            f.wal_replayed_samples as f64,
        )?;
        gauge(
            &mut e,
            "tsdb_wal_replay_seconds",
            "Time the WAL replay took when the database was opened.",
            f.wal_replay_seconds,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Labels;

    #[test]
    fn exposition_carries_db_and_http_figures() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(dir.path(), crate::Options::default()).unwrap());
        let mut app = db.appender();
        for i in 0..3 {
            let l = Labels::from_pairs(&[("__name__", "m"), ("i", &i.to_string())]);
            app.append(&l, 1000, 1.0).unwrap();
            app.append(&l, 2000, 2.0).unwrap();
        }
        app.commit().unwrap();
        let mut reg = Registry::default();
        let m = register_metrics(&mut reg, &db);
        m.observe_request("/api/v1/query", 200, 0.01, 120);
        m.observe_query("instant", "success", 0.002);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
        for want in [
            "prometheus_tsdb_head_series 3\n",
            "prometheus_tsdb_head_chunks 3\n",
            "tsdb_head_samples 6\n",
            "prometheus_tsdb_head_min_time 1000\n",
            "prometheus_tsdb_head_max_time 2000\n",
            "prometheus_http_requests_total{handler=\"/api/v1/query\",code=\"200\"} 1\n",
            "tsdb_engine_queries_total{type=\"instant\",result=\"success\"} 1\n",
            "prometheus_tsdb_compactions_total 0\n",
            "prometheus_tsdb_head_samples_appended_total 6\n",
            "tsdb_head_samples_rejected_total 0\n",
        ] {
            assert!(out.contains(want), "{want} missing in\n{out}");
        }
        let f = db_figures(&db);
        assert_eq!((f.head_series, f.head_samples, f.blocks), (3, 6, 0));
    }
}
