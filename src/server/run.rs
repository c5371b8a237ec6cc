//! The server's lifecycle: load the configuration, open the data directory, start the scrape
//! manager, the rule manager, the remote writers, the notifier and the web layer, then wait for
//! signals.
//!
//! - SIGHUP and `POST /-/reload` re-read the configuration file; a file that fails to load changes
//!   nothing (the old configuration keeps running, the error is logged and returned to the caller of
//!   `/-/reload`). Data, unchanged targets and unchanged rule groups are untouched by a reload;
//!   changed rule groups keep the state of their alerts.
//! - SIGTERM and SIGINT shut down in Prometheus' order: not ready, rule evaluation stopped (running
//!   queries cancelled), scrapes stopped (in-flight ones
//!   finish or are cancelled, everything scraped is committed), remote writers flushed with their
//!   WAL position saved, the notifier's queue flushed to the Alertmanagers (bounded), the web layer
//!   drained, then the WAL synced and the directory closed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot};

use super::notifier::{Notifier, NotifierOptions};
use super::remote::RemoteWriter;
use super::scrape::ScrapeManager;
use super::web::{self, ReloadRequest, ReloadStatus, WebOptions, WebState};
use super::{log, Level};
use crate::config::{Config, ConfigError};
use crate::labels::{Label, Labels};
use crate::rules::{Manager as RuleManager, ManagerOptions as RuleManagerOptions};
use crate::{Db, DbError, Options};

/// Everything `tsdbctl serve` is told on its command line.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub db_dir: PathBuf,
    pub config_file: PathBuf,
    pub db_options: Options,
    pub web: WebOptions,
    /// Accept remote writes at `/api/v1/write` (Prometheus' `--web.enable-remote-write-receiver`).
    pub enable_remote_write_receiver: bool,
    /// Alertmanager delivery (`--alertmanager.notification-queue-capacity`).
    pub notifier: NotifierOptions,
    /// `--rules.alert.for-outage-tolerance`.
    pub rule_outage_tolerance_ms: i64,
    /// `--rules.alert.for-grace-period`.
    pub rule_for_grace_period_ms: i64,
    /// `--rules.alert.resend-delay`.
    pub rule_resend_delay_ms: i64,
    /// The command line, for `/api/v1/status/flags` (flag name without dashes → value).
    pub flags: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Db(#[from] DbError),
    #[error("starting the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("installing a signal handler: {0}")]
    Signal(std::io::Error),
    #[error("{0}")]
    Web(#[from] web::WebError),
    #[error("{0}")]
    Scrape(#[from] super::scrape::ScrapeError),
    #[error("{0}")]
    Remote(#[from] super::remote::RemoteError),
    #[error("{0}")]
    Notifier(#[from] super::notifier::NotifierError),
    #[error("{0}")]
    Rules(#[from] crate::rules::ManagerError),
}

/// Prometheus' external URL: `--web.external-url`, else `http://<hostname>:<port>`; without a
/// trailing slash (it prefixes paths in generator URLs and `$externalURL`).
fn external_url(opts: &ServeOptions) -> String {
    let url = match &opts.web.external_url {
        Some(u) if !u.is_empty() => u.clone(),
        _ => {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "localhost".to_string());
            format!("http://{host}:{}", opts.web.listen.port())
        }
    };
    url.trim_end_matches('/').to_string()
}

/// Rule evaluation runs with the limits of queries.
fn rule_manager_options(opts: &ServeOptions) -> RuleManagerOptions {
    let mut query = crate::promql::QueryOptions {
        lookback_ms: opts.web.lookback_ms,
        max_samples: opts.web.max_samples,
        // Groups run concurrently; each rule's query stays on its group's thread.
        parallel_min_work: usize::MAX,
        ..Default::default()
    };
    query.timeout = (opts.web.query_timeout_ms > 0)
        .then(|| Duration::from_millis(opts.web.query_timeout_ms as u64));
    RuleManagerOptions {
        external_url: external_url(opts),
        query,
        resend_delay_ms: opts.rule_resend_delay_ms,
        outage_tolerance_ms: opts.rule_outage_tolerance_ms,
        for_grace_period_ms: opts.rule_for_grace_period_ms,
    }
}

/// `global.external_labels` as a label set.
fn external_labels(config: &Config) -> Labels {
    Labels::new(
        config
            .global
            .external_labels
            .iter()
            .map(|(k, v)| Label::new(k.clone(), v.clone()))
            .collect(),
    )
}

/// Runs the server until SIGTERM or SIGINT; returns after a graceful shutdown.
pub fn run(opts: ServeOptions) -> Result<(), ServeError> {
    // A broken file is reported before anything is opened or bound.
    let config = Config::load(&opts.config_file)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tsdb-serve")
        .build()
        .map_err(ServeError::Runtime)?;
    let db = Arc::new(Db::open(&opts.db_dir, opts.db_options.clone())?);
    for w in &db.open_report().warnings {
        log(
            Level::Warn,
            &format!("opening {}: {w}", opts.db_dir.display()),
        );
    }
    let result = runtime.block_on(serve(&opts, config, db.clone()));
    // Everything appended is in the WAL: force it to disk whatever the fsync policy.
    if let Err(e) = db.sync() {
        log(Level::Error, &format!("syncing the WAL at shutdown: {e}"));
    }
    drop(runtime);
    result
}

async fn serve(opts: &ServeOptions, config: Config, db: Arc<Db>) -> Result<(), ServeError> {
    // Signal handlers first: a SIGTERM during start-up must not kill the process uncleanly.
    let mut sigterm = signal(SignalKind::terminate()).map_err(ServeError::Signal)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(ServeError::Signal)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(ServeError::Signal)?;

    let mut registry = Registry::default();
    let scrape = Arc::new(ScrapeManager::new(db.clone(), &mut registry));
    let remote = RemoteWriter::new(db.clone(), &opts.db_dir, &mut registry)
        .with_metadata_source(scrape.clone());
    let extra = if opts.enable_remote_write_receiver {
        super::remote::receiver_router(db.clone(), &mut registry)
    } else {
        axum::Router::new()
    };
    // Alertmanager delivery; rule evaluation sends to it as its `AlertSink` (without Alertmanagers
    // configured it counts what it cannot deliver as dropped, as Prometheus does).
    let notifier = Notifier::new(opts.notifier.clone(), &mut registry);
    let rules = RuleManager::new(
        db.clone(),
        Arc::new(notifier.clone()),
        rule_manager_options(opts),
        &mut registry,
    );
    let web_metrics = web::register_metrics(&mut registry, &db);

    scrape.apply_config(&config).await?;
    // Before the rules: their first alerts get the external labels of this configuration.
    notifier.apply_config(&config).await?;
    rules.apply_config(&config).await?;
    remote.apply_config(&config).await?;

    let (reload_tx, mut reload_rx) = mpsc::channel::<ReloadRequest>(4);
    let mut state = WebState::new(db.clone(), scrape.clone(), Arc::new(registry), reload_tx);
    state.config_yaml = Arc::new(RwLock::new(config.to_yaml()));
    state.external_labels = Arc::new(RwLock::new(external_labels(&config)));
    state.flags = opts.flags.clone();
    state.alertmanagers = Some(Arc::new(notifier.clone()));
    state.rules = Arc::new(rules.clone());
    let config_yaml = state.config_yaml.clone();
    let external = state.external_labels.clone();
    let last_reload = state.last_reload.clone();
    let ready = state.ready.clone();
    let (stop_web, web_stopped) = oneshot::channel::<()>();
    let mut web_task = tokio::spawn(web::serve(
        opts.web.clone(),
        state,
        web_metrics,
        extra,
        async move {
            let _ = web_stopped.await;
        },
    ));
    ready.store(true, Ordering::SeqCst);
    log(
        Level::Info,
        &format!(
            "server is ready to receive web requests on {}",
            opts.web.listen
        ),
    );

    let reload = |source: &'static str| {
        let scrape = scrape.clone();
        let rules = rules.clone();
        let remote = &remote;
        let notifier = notifier.clone();
        let config_yaml = config_yaml.clone();
        let external = external.clone();
        let last_reload = last_reload.clone();
        async move {
            let result = async {
                let config = Config::load(&opts.config_file).map_err(|e| e.to_string())?;
                scrape
                    .apply_config(&config)
                    .await
                    .map_err(|e| e.to_string())?;
                notifier
                    .apply_config(&config)
                    .await
                    .map_err(|e| e.to_string())?;
                rules
                    .apply_config(&config)
                    .await
                    .map_err(|e| e.to_string())?;
                remote
                    .apply_config(&config)
                    .await
                    .map_err(|e| e.to_string())?;
                if let Ok(mut y) = config_yaml.write() {
                    *y = config.to_yaml();
                }
                if let Ok(mut l) = external.write() {
                    *l = external_labels(&config);
                }
                Ok::<(), String>(())
            }
            .await;
            if let Ok(mut r) = last_reload.write() {
                *r = ReloadStatus {
                    success: result.is_ok(),
                    time: std::time::SystemTime::now(),
                };
            }
            match &result {
                Ok(()) => log(
                    Level::Info,
                    &format!("reloaded {} ({source})", opts.config_file.display()),
                ),
                Err(e) => log(
                    Level::Error,
                    &format!(
                        "reloading {} ({source}) failed, the previous configuration stays: {e}",
                        opts.config_file.display()
                    ),
                ),
            }
            result
        }
    };

    let outcome = loop {
        tokio::select! {
            _ = sigterm.recv() => break Ok("SIGTERM"),
            _ = sigint.recv() => break Ok("SIGINT"),
            _ = sighup.recv() => {
                let _ = reload("SIGHUP").await;
            }
            Some(reply) = reload_rx.recv() => {
                let r = reload("/-/reload").await;
                let _ = reply.send(r);
            }
            joined = &mut web_task => {
                // The web layer only returns early when it failed (bind, TLS files).
                break Err(match joined {
                    Ok(Err(e)) => ServeError::Web(e),
                    Ok(Ok(())) => ServeError::Runtime(std::io::Error::other("web server stopped")),
                    Err(e) => ServeError::Runtime(std::io::Error::other(e.to_string())),
                });
            }
        }
    };
    let signal = match outcome {
        Ok(s) => s,
        Err(e) => {
            rules.stop().await;
            scrape.stop().await;
            remote.stop().await;
            notifier.stop().await;
            return Err(e);
        }
    };
    log(Level::Info, &format!("received {signal}, shutting down"));
    ready.store(false, Ordering::SeqCst);
    rules.stop().await;
    log(Level::Info, "rule evaluation stopped");
    scrape.stop().await;
    log(
        Level::Info,
        "scrapes stopped, everything scraped is committed",
    );
    remote.stop().await;
    log(Level::Info, "remote writers stopped, positions saved");
    // After rule evaluation (nothing sends alerts any more): what is queued is flushed, bounded.
    notifier.stop().await;
    let _ = stop_web.send(());
    match web_task.await {
        Ok(Err(e)) => log(Level::Error, &format!("web server: {e}")),
        Err(e) => log(Level::Error, &format!("web server task: {e}")),
        Ok(Ok(())) => {}
    }
    log(Level::Info, "web server drained; syncing the WAL");
    Ok(())
}
