//! `tsdbctl serve`: a Prometheus server's workflow in one process, behind the cargo feature
//! `server` (an application embedding the crate with `default-features = false` compiles none of
//! it).
//!
//! The outer shell of the crate: it depends on storage (`db`), query (`promql`, `api`), the
//! exposition parser, [`crate::config`] and [`crate::relabel`]; nothing below depends on it.
//! Submodules, each a component with its own error enum:
//! - `scrape`: one loop per target, target discovery (static and file SD) and relabeling,
//!   staleness, synthetic series; exposes what it does through [`ScrapeView`].
//! - `web`: the Prometheus HTTP API, `/federate`, `/metrics`, health and admin endpoints, the
//!   `--web.config.file` TLS and basic-auth layer.
//! - `remote`: remote write in (`/api/v1/write`) and out (a sender fed from the WAL).
//! - `notifier`: alerts delivered to Alertmanagers (the `alerting` section); exposes its
//!   Alertmanagers through [`AlertmanagerView`].
//!
//! The types below are the seams between them: the web layer reads scrape state only through
//! [`ScrapeView`], so either side can change without the other.

pub mod notifier;
pub mod remote;
pub mod run;
pub mod scrape;
pub mod web;

use crate::config::Duration;
use crate::labels::Labels;

/// A target's health as `/api/v1/targets` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Not scraped yet.
    Unknown,
    Up,
    Down,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}

/// One active target, as `/api/v1/targets` lists it.
#[derive(Clone, Debug)]
pub struct TargetInfo {
    /// Labels before relabeling (`__address__`, `__scheme__`, `__meta_*`, ...).
    pub discovered_labels: Labels,
    /// Labels after relabeling: what every scraped series of this target carries.
    pub labels: Labels,
    pub scrape_pool: String,
    pub scrape_url: String,
    /// The URL as reachable from elsewhere (`scrape_url` with the host's name for localhost).
    pub global_url: String,
    /// Empty when the last scrape succeeded.
    pub last_error: String,
    /// Start of the last scrape, Unix milliseconds; `None` before the first.
    pub last_scrape_ms: Option<i64>,
    pub last_scrape_duration_s: f64,
    pub health: Health,
    pub scrape_interval: Duration,
    pub scrape_timeout: Duration,
    /// What the target said about its metric families, for `/api/v1/targets/metadata`.
    pub metadata: std::sync::Arc<Vec<(String, MetricMetadata)>>,
}

/// A target that relabeling dropped, as `/api/v1/targets` lists it.
#[derive(Clone, Debug)]
pub struct DroppedTarget {
    pub discovered_labels: Labels,
}

/// What a target said about a metric family (`# HELP`, `# TYPE`, `# UNIT`), for
/// `/api/v1/metadata`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MetricMetadata {
    /// `counter`, `gauge`, `histogram`, `gaugehistogram`, `summary`, `info`, `stateset` or
    /// `unknown`, as Prometheus reports them.
    pub kind: String,
    pub help: String,
    pub unit: String,
}

/// Read access to the scrape manager's state for the web layer.
pub trait ScrapeView: Send + Sync {
    /// Active targets (all pools, in pool then label order) and dropped targets.
    fn targets(&self) -> (Vec<TargetInfo>, Vec<DroppedTarget>);
    /// Metadata per metric family name, deduplicated across targets (a name may carry several
    /// distinct entries when targets disagree).
    fn metadata(&self) -> Vec<(String, MetricMetadata)>;
}

/// The notifier's Alertmanagers for `/api/v1/alertmanagers`.
pub trait AlertmanagerView: Send + Sync {
    /// URLs alerts are posted to (`<scheme>://<address><path_prefix>/api/v2/alerts`), and those
    /// of discovered Alertmanagers that relabeling dropped.
    fn alertmanagers(&self) -> (Vec<String>, Vec<String>);
}

/// Log severity, as Prometheus' logfmt `level=` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// One log line on stderr in Prometheus' logfmt shape (`ts=... level=info msg="..."`), so the
/// tools operators already point at Prometheus' logs parse ours.
pub fn log(level: Level, msg: &str) {
    use std::io::Write;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let level = match level {
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    };
    let mut quoted = String::with_capacity(msg.len() + 2);
    crate::api::write_json_string(&mut quoted, msg);
    // A closed stderr is not worth dying for.
    let _ = writeln!(
        std::io::stderr().lock(),
        "ts={} level={level} msg={quoted}",
        crate::api::format_rfc3339(now)
    );
}
