//! The scrape manager's own metrics, named as Prometheus 2.42 names them (`scrape/scrape.go`,
//! `scrape/manager.go`, `discovery/file/file.go`), registered with `prometheus_client`.
//!
//! `prometheus_client` has no summary type: the two summaries of Prometheus
//! (`prometheus_target_interval_length_seconds`, `prometheus_target_sync_length_seconds`,
//! `prometheus_sd_file_scan_duration_seconds`) are histograms here, under the same names.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

type Labels1 = Vec<(&'static str, String)>;

fn seconds_buckets() -> Histogram {
    Histogram::new([
        0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0,
    ])
}

#[derive(Clone)]
pub struct Metrics {
    pub interval_length: Family<Labels1, Histogram, fn() -> Histogram>,
    pub pool_targets: Family<Labels1, Gauge>,
    pub exceeded_sample_limit: Counter,
    pub exceeded_body_size_limit: Counter,
    pub sample_duplicate: Counter,
    pub sample_out_of_bounds: Counter,
    pub sample_out_of_order: Counter,
    pub exceeded_label_limits: Counter,
    pub exceeded_target_limit: Counter,
    pub pools: Counter,
    pub pools_failed: Counter,
    pub pool_reloads: Counter,
    pub pool_reloads_failed: Counter,
    pub pool_sync: Family<Labels1, Counter>,
    pub sync_length: Family<Labels1, Histogram, fn() -> Histogram>,
    pub cache_flush_forced: Counter,
    pub metadata_cache_entries: Family<Labels1, Gauge>,
    pub sd_file_read_errors: Counter,
    pub sd_file_scan_duration: Histogram,
    pub sd_file_mtime: Family<Labels1, Gauge<f64, AtomicU64>>,
    pub sd_discovered_targets: Family<Labels1, Gauge>,
}

impl Metrics {
    pub fn new(r: &mut Registry) -> Metrics {
        let m = Metrics {
            interval_length: Family::new_with_constructor(seconds_buckets),
            pool_targets: Family::default(),
            exceeded_sample_limit: Counter::default(),
            exceeded_body_size_limit: Counter::default(),
            sample_duplicate: Counter::default(),
            sample_out_of_bounds: Counter::default(),
            sample_out_of_order: Counter::default(),
            exceeded_label_limits: Counter::default(),
            exceeded_target_limit: Counter::default(),
            pools: Counter::default(),
            pools_failed: Counter::default(),
            pool_reloads: Counter::default(),
            pool_reloads_failed: Counter::default(),
            pool_sync: Family::default(),
            sync_length: Family::new_with_constructor(seconds_buckets),
            cache_flush_forced: Counter::default(),
            metadata_cache_entries: Family::default(),
            sd_file_read_errors: Counter::default(),
            sd_file_scan_duration: seconds_buckets(),
            sd_file_mtime: Family::default(),
            sd_discovered_targets: Family::default(),
        };
        // Counter names lose `_total` here: the client appends it.
        r.register(
            "prometheus_target_interval_length_seconds",
            "Actual intervals between scrapes",
            m.interval_length.clone(),
        );
        r.register(
            "prometheus_target_scrape_pool_targets",
            "Current number of targets in this scrape pool",
            m.pool_targets.clone(),
        );
        r.register(
            "prometheus_target_scrapes_exceeded_sample_limit",
            "Total number of scrapes that hit the sample limit and were rejected",
            m.exceeded_sample_limit.clone(),
        );
        r.register(
            "prometheus_target_scrapes_exceeded_body_size_limit",
            "Total number of scrapes that hit the body size limit",
            m.exceeded_body_size_limit.clone(),
        );
        r.register(
            "prometheus_target_scrapes_sample_duplicate_timestamp",
            "Total number of samples rejected due to duplicate timestamps but different values",
            m.sample_duplicate.clone(),
        );
        r.register(
            "prometheus_target_scrapes_sample_out_of_bounds",
            "Total number of samples rejected due to timestamp falling outside of the time bounds",
            m.sample_out_of_bounds.clone(),
        );
        r.register(
            "prometheus_target_scrapes_sample_out_of_order",
            "Total number of samples rejected due to not being out of the expected order",
            m.sample_out_of_order.clone(),
        );
        r.register(
            "prometheus_target_scrape_pool_exceeded_label_limits",
            "Total number of times scrape pools hit the label limits, during sync or config reload",
            m.exceeded_label_limits.clone(),
        );
        r.register(
            "prometheus_target_scrape_pool_exceeded_target_limit",
            "Total number of times scrape pools hit the target limit, during sync or config reload",
            m.exceeded_target_limit.clone(),
        );
        r.register(
            "prometheus_target_scrape_pools",
            "Total number of scrape pool creation attempts",
            m.pools.clone(),
        );
        r.register(
            "prometheus_target_scrape_pools_failed",
            "Total number of scrape pool creations that failed",
            m.pools_failed.clone(),
        );
        r.register(
            "prometheus_target_scrape_pool_reloads",
            "Total number of scrape pool reloads",
            m.pool_reloads.clone(),
        );
        r.register(
            "prometheus_target_scrape_pool_reloads_failed",
            "Total number of failed scrape pool reloads",
            m.pool_reloads_failed.clone(),
        );
        r.register(
            "prometheus_target_scrape_pool_sync",
            "Total number of syncs that were executed on a scrape pool",
            m.pool_sync.clone(),
        );
        r.register(
            "prometheus_target_sync_length_seconds",
            "Actual interval to sync the scrape pool",
            m.sync_length.clone(),
        );
        r.register(
            "prometheus_target_scrapes_cache_flush_forced",
            "How many times a scrape cache was flushed due to getting big while scrapes are failing",
            m.cache_flush_forced.clone(),
        );
        r.register(
            "prometheus_target_metadata_cache_entries",
            "Total number of metric metadata entries in the cache",
            m.metadata_cache_entries.clone(),
        );
        r.register(
            "prometheus_sd_file_read_errors",
            "The number of File-SD read errors",
            m.sd_file_read_errors.clone(),
        );
        r.register(
            "prometheus_sd_file_scan_duration_seconds",
            "The duration of the File-SD scan in seconds",
            m.sd_file_scan_duration.clone(),
        );
        r.register(
            "prometheus_sd_file_mtime_seconds",
            "Timestamp (mtime) of files read by FileSD. Timestamp is set at read time",
            m.sd_file_mtime.clone(),
        );
        r.register(
            "prometheus_sd_discovered_targets",
            "Current number of discovered targets",
            m.sd_discovered_targets.clone(),
        );
        m
    }

    /// Metrics registered nowhere (tests, or a manager without a registry).
    pub fn unregistered() -> Metrics {
        Metrics::new(&mut Registry::default())
    }
}

/// A one-label set.
pub fn l1(name: &'static str, value: &str) -> Labels1 {
    vec![(name, value.to_string())]
}
