//! `tsdbctl serve`: flags (Prometheus' names where Prometheus has the flag) → [`ServeOptions`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use tsdb::server::run::{run, ServeOptions};
use tsdb::server::web::WebOptions;
use tsdb::wal::Compression;
use tsdb::{FsyncPolicy, Options};

use crate::{parse_duration_ms, Retention};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Data directory (Prometheus: --storage.tsdb.path).
    #[arg(long, default_value = "./data", alias = "storage.tsdb.path")]
    db: PathBuf,
    /// The prometheus.yml to run (Prometheus: --config.file).
    #[arg(long, default_value = "prometheus.yml", alias = "config.file")]
    config: PathBuf,
    /// Address of the HTTP API. Loopback by default: exposing it further is an explicit choice
    /// (Prometheus: --web.listen-address).
    #[arg(long, default_value = "127.0.0.1:9090", alias = "web.listen-address")]
    listen: SocketAddr,
    /// Prometheus' web configuration file: TLS certificate and key, basic-auth users (bcrypt).
    #[arg(long = "web.config.file")]
    web_config_file: Option<PathBuf>,
    /// Serve the admin endpoints (delete series, clean tombstones, snapshot).
    #[arg(long = "web.enable-admin-api")]
    enable_admin_api: bool,
    /// Accept remote writes at /api/v1/write.
    #[arg(long = "web.enable-remote-write-receiver")]
    enable_remote_write_receiver: bool,
    /// Allow `POST /-/reload` (and `/-/quit` in Prometheus). SIGHUP always reloads.
    #[arg(long = "web.enable-lifecycle")]
    enable_lifecycle: bool,
    /// Connections served at once; more wait to be accepted.
    #[arg(long = "web.max-connections", default_value_t = 512)]
    max_connections: usize,
    /// The URL under which the server is reached from outside (links in the API).
    #[arg(long = "web.external-url")]
    external_url: Option<String>,
    /// Longest a query may run.
    #[arg(long = "query.timeout", default_value = "2m", value_parser = parse_duration_ms)]
    query_timeout: i64,
    /// Most samples a query may hold in memory at once.
    #[arg(long = "query.max-samples", default_value_t = 50_000_000)]
    query_max_samples: usize,
    /// Queries evaluated at once; more wait.
    #[arg(long = "query.max-concurrency", default_value_t = 20)]
    query_max_concurrency: usize,
    /// How far back an instant selector looks for a sample.
    #[arg(long = "query.lookback-delta", default_value = "5m", value_parser = parse_duration_ms)]
    lookback_delta: i64,
    /// Force the WAL to disk every this often (`0s`: at every commit, i.e. every scrape).
    /// Whatever the setting, samples survive a killed process; this bounds what a power loss
    /// can take. Prometheus syncs only when a WAL segment is full.
    #[arg(long = "storage.fsync-interval", default_value = "1s", value_parser = parse_duration_ms)]
    fsync_interval: i64,
    /// Compress the WAL's records, as Prometheus does by default (`--no-storage.tsdb.wal-compression`
    /// or `=false` turns it off).
    #[arg(
        long = "storage.tsdb.wal-compression",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    wal_compression: bool,
    /// Prometheus' negative form of `--storage.tsdb.wal-compression`.
    #[arg(
        long = "no-storage.tsdb.wal-compression",
        conflicts_with = "wal_compression"
    )]
    no_wal_compression: bool,
    /// The WAL's compression when it is on: `snappy` (what Prometheus 2.42 writes and reads) or
    /// `zstd` (Prometheus 2.45 and later).
    #[arg(long = "storage.tsdb.wal-compression-type", value_enum, default_value_t = WalCompressionType::Snappy)]
    wal_compression_type: WalCompressionType,
    /// Out-of-order window (Prometheus' storage.tsdb.out_of_order_time_window).
    #[arg(long = "storage.tsdb.out-of-order-time-window", default_value = "0s", value_parser = parse_duration_ms)]
    out_of_order_window: i64,
    /// Alerts waiting for the Alertmanagers before the oldest are dropped.
    #[arg(long = "alertmanager.notification-queue-capacity", default_value_t = tsdb::server::notifier::DEFAULT_QUEUE_CAPACITY)]
    notification_queue_capacity: usize,
    /// An alert's `for` state older than this at start-up is not restored.
    #[arg(long = "rules.alert.for-outage-tolerance", default_value = "1h", value_parser = parse_duration_ms)]
    for_outage_tolerance: i64,
    /// A restored alert fires no sooner than this after start-up; rules with a shorter `for`
    /// are not restored.
    #[arg(long = "rules.alert.for-grace-period", default_value = "10m", value_parser = parse_duration_ms)]
    for_grace_period: i64,
    /// Minimum time between two sends of the same firing alert to Alertmanager.
    #[arg(long = "rules.alert.resend-delay", default_value = "1m", value_parser = parse_duration_ms)]
    resend_delay: i64,
    #[command(flatten)]
    retention: Retention,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum WalCompressionType {
    Snappy,
    Zstd,
}

impl WalCompressionType {
    fn name(self) -> &'static str {
        match self {
            WalCompressionType::Snappy => "snappy",
            WalCompressionType::Zstd => "zstd",
        }
    }
}

pub fn serve(a: ServeArgs) -> Result<ExitCode, String> {
    let fsync = if a.fsync_interval <= 0 {
        FsyncPolicy::Commit
    } else {
        FsyncPolicy::Interval(Duration::from_millis(a.fsync_interval as u64))
    };
    let wal_compression = a.wal_compression && !a.no_wal_compression;
    let compression = match (wal_compression, a.wal_compression_type) {
        (false, _) => Compression::None,
        (true, WalCompressionType::Snappy) => Compression::Snappy,
        (true, WalCompressionType::Zstd) => Compression::Zstd,
    };
    let db_options = a
        .retention
        .apply(Options::default())
        .fsync(fsync)
        .wal_compression(compression)
        .out_of_order_window_ms(a.out_of_order_window);
    let flags: BTreeMap<String, String> = [
        ("storage.tsdb.path", a.db.display().to_string()),
        ("config.file", a.config.display().to_string()),
        ("web.listen-address", a.listen.to_string()),
        (
            "web.config.file",
            a.web_config_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        ),
        ("web.enable-admin-api", a.enable_admin_api.to_string()),
        ("web.enable-lifecycle", a.enable_lifecycle.to_string()),
        (
            "web.enable-remote-write-receiver",
            a.enable_remote_write_receiver.to_string(),
        ),
        (
            "web.external-url",
            a.external_url.clone().unwrap_or_default(),
        ),
        ("web.max-connections", a.max_connections.to_string()),
        (
            "alertmanager.notification-queue-capacity",
            a.notification_queue_capacity.to_string(),
        ),
        ("query.timeout", fmt_ms(a.query_timeout)),
        ("query.max-samples", a.query_max_samples.to_string()),
        ("query.max-concurrency", a.query_max_concurrency.to_string()),
        ("query.lookback-delta", fmt_ms(a.lookback_delta)),
        (
            "storage.tsdb.retention.time",
            fmt_ms(a.retention.retention_time),
        ),
        (
            "storage.tsdb.retention.size",
            format!("{}B", a.retention.retention_size),
        ),
        ("storage.tsdb.wal-compression", wal_compression.to_string()),
        (
            "storage.tsdb.wal-compression-type",
            a.wal_compression_type.name().to_string(),
        ),
        (
            "storage.tsdb.out-of-order-time-window",
            fmt_ms(a.out_of_order_window),
        ),
        (
            "rules.alert.for-outage-tolerance",
            fmt_ms(a.for_outage_tolerance),
        ),
        ("rules.alert.for-grace-period", fmt_ms(a.for_grace_period)),
        ("rules.alert.resend-delay", fmt_ms(a.resend_delay)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let opts = ServeOptions {
        db_dir: a.db,
        config_file: a.config,
        db_options,
        web: WebOptions {
            listen: a.listen,
            web_config_file: a.web_config_file,
            enable_admin_api: a.enable_admin_api,
            external_url: a.external_url,
            max_samples: a.query_max_samples,
            lookback_ms: a.lookback_delta,
            query_timeout_ms: a.query_timeout,
            enable_lifecycle: a.enable_lifecycle,
            max_connections: a.max_connections,
            max_concurrent_queries: a.query_max_concurrency,
        },
        enable_remote_write_receiver: a.enable_remote_write_receiver,
        notifier: tsdb::server::notifier::NotifierOptions {
            queue_capacity: a.notification_queue_capacity,
            ..Default::default()
        },
        rule_outage_tolerance_ms: a.for_outage_tolerance,
        rule_for_grace_period_ms: a.for_grace_period,
        rule_resend_delay_ms: a.resend_delay,
        flags,
    };
    run(opts).map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

/// A duration flag's value as Prometheus prints it (`15d`, `2m`).
fn fmt_ms(ms: i64) -> String {
    tsdb::config::Duration(ms).to_string()
}
