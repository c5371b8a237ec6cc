//! The Prometheus-compatible HTTP layer of `tsdbctl serve`: the HTTP API v1 (Prometheus 2.42's
//! `web/api/v1/api.go`), `/federate` (`web/federate.go`), `/metrics`, the lifecycle endpoints
//! `/-/healthy`, `/-/ready`, `/-/reload` (`web/web.go`), the admin API behind
//! `--web.enable-admin-api`, all behind the `--web.config.file` TLS and basic-auth layer
//! (exporter-toolkit's format, [`webconfig`]).
//!
//! Exists so that Grafana and every other Prometheus client work against `tsdbctl serve`
//! unchanged: same paths, parameters, status codes and JSON bodies (`status`, `data`,
//! `errorType`, `error`, `warnings`). It is a thin shell: query evaluation is [`crate::api`] and
//! [`crate::promql`] (run on blocking threads, never on the async runtime), reads are
//! [`crate::querier`], scrape state comes through [`ScrapeView`], rule state through
//! [`RulesView`]. It must never hold storage or
//! query logic of its own.
//!
//! Submodules: [`api`] (the `/api/v1` handlers), [`federate`], [`admin`], [`metrics`] (its own
//! metrics and the database collector), [`webconfig`].

pub mod admin;
pub mod api;
pub mod federate;
pub mod metrics;
pub mod webconfig;

pub use metrics::{register_metrics, WebMetrics};
pub use webconfig::{WebConfig, WebConfigError};

use crate::db::Db;
use crate::labels::Labels;
use crate::rules::{NoRules, RulesView};
use crate::server::ScrapeView;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, oneshot, watch};

/// Prometheus' name for itself in `/-/healthy` and `/-/ready` bodies (`AppName`).
pub const APP_NAME: &str = "Prometheus Server";
/// Version reported by `/api/v1/status/buildinfo`: the Prometheus API this layer implements.
/// Clients (Grafana) pick features by this number.
pub const COMPATIBLE_VERSION: &str = "2.42.0";
/// A TLS handshake that takes longer than this is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// After shutdown, in-flight requests get this long to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of the HTTP layer (the `--web.*` and `--query.*` flags).
#[derive(Clone, Debug)]
pub struct WebOptions {
    pub listen: SocketAddr,
    /// `--web.config.file`.
    pub web_config_file: Option<PathBuf>,
    /// `--web.enable-admin-api`.
    pub enable_admin_api: bool,
    /// `--web.enable-lifecycle`: without it `POST /-/reload` answers 403, as in Prometheus.
    pub enable_lifecycle: bool,
    /// `--web.external-url`: kept for the integrator (this layer serves at `/`, no route prefix).
    pub external_url: Option<String>,
    /// `--query.max-samples`.
    pub max_samples: usize,
    /// `--query.lookback-delta` (ms); also the window of `/federate`.
    pub lookback_ms: i64,
    /// `--query.timeout` (ms); a request's `timeout` parameter can only shorten it.
    pub query_timeout_ms: i64,
    /// `--web.max-connections`: connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// `--query.max-concurrency`: queries evaluated at once; more wait their turn.
    pub max_concurrent_queries: usize,
}

impl Default for WebOptions {
    fn default() -> WebOptions {
        WebOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            web_config_file: None,
            enable_admin_api: false,
            enable_lifecycle: false,
            external_url: None,
            max_samples: crate::promql::DEFAULT_MAX_SAMPLES,
            lookback_ms: crate::promql::DEFAULT_LOOKBACK_MS,
            query_timeout_ms: 120_000,
            max_connections: 512,
            max_concurrent_queries: 20,
        }
    }
}

/// The outcome of the last configuration (re)load, for `/api/v1/status/runtimeinfo`.
#[derive(Clone, Copy, Debug)]
pub struct ReloadStatus {
    pub success: bool,
    pub time: SystemTime,
}

/// A reload request: the receiver answers on the oneshot once the configuration is applied.
pub type ReloadRequest = oneshot::Sender<Result<(), String>>;

/// What the HTTP layer reads from the rest of the server.
#[derive(Clone)]
pub struct WebState {
    pub db: Arc<Db>,
    pub scrape: Arc<dyn ScrapeView>,
    /// Rule groups and alerts, for `/api/v1/rules` and `/api/v1/alerts` (none by default).
    pub rules: Arc<dyn RulesView>,
    /// The configuration file's text, for `/api/v1/status/config`.
    pub config_yaml: Arc<RwLock<String>>,
    /// `global.external_labels`, added by `/federate`.
    pub external_labels: Arc<RwLock<Labels>>,
    /// Served at `/metrics`; other components register first.
    pub registry: Arc<prometheus_client::registry::Registry>,
    /// `POST /-/reload` sends a request here and answers with its outcome.
    pub reload: mpsc::Sender<ReloadRequest>,
    /// Readiness (`/-/ready`; the API and `/federate` answer 503 until set).
    pub ready: Arc<AtomicBool>,
    pub last_reload: Arc<RwLock<ReloadStatus>>,
    pub start_time: SystemTime,
    /// Command-line flags for `/api/v1/status/flags` (name without dashes → value).
    pub flags: BTreeMap<String, String>,
}

impl WebState {
    /// A state with an empty configuration text, no external labels, not ready, started now.
    pub fn new(
        db: Arc<Db>,
        scrape: Arc<dyn ScrapeView>,
        registry: Arc<prometheus_client::registry::Registry>,
        reload: mpsc::Sender<ReloadRequest>,
    ) -> WebState {
        let now = SystemTime::now();
        WebState {
            db,
            scrape,
            rules: Arc::new(NoRules),
            config_yaml: Arc::default(),
            external_labels: Arc::default(),
            registry,
            reload,
            ready: Arc::new(AtomicBool::new(false)),
            last_reload: Arc::new(RwLock::new(ReloadStatus {
                success: true,
                time: now,
            })),
            start_time: now,
            flags: BTreeMap::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("web config: {0}")]
    Config(#[from] WebConfigError),
    #[error("web config {path}: TLS: {message}")]
    Tls { path: PathBuf, message: String },
}

/// Everything a handler needs.
pub(crate) struct Ctx {
    pub opts: WebOptions,
    pub state: WebState,
    pub metrics: WebMetrics,
    /// Permits of `max_concurrent_queries`.
    pub query_slots: Arc<tokio::sync::Semaphore>,
}

pub(crate) type Shared = Arc<Ctx>;

/// Binds `opts.listen`, serves until `shutdown` resolves, then lets in-flight requests finish
/// (up to 30 s). `extra` holds other components' routes (e.g. `POST /api/v1/write`), served
/// behind the same TLS and authentication.
pub async fn serve(
    opts: WebOptions,
    state: WebState,
    metrics: WebMetrics,
    extra: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WebError> {
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|source| WebError::Bind {
            addr: opts.listen,
            source,
        })?;
    serve_listener(listener, opts, state, metrics, extra, shutdown).await
}

/// [`serve`] on a listener bound by the caller (`opts.listen` is then only reported).
pub async fn serve_listener(
    listener: tokio::net::TcpListener,
    opts: WebOptions,
    state: WebState,
    metrics: WebMetrics,
    extra: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WebError> {
    let live = Arc::new(LiveConfig::start(opts.web_config_file.clone())?);
    let tls = live
        .current()
        .result
        .as_ref()
        .is_ok_and(|a| a.tls.is_some())
        .then(|| live.clone());
    metrics
        .ready
        .set(i64::from(state.ready.load(Ordering::Relaxed)));
    let max_connections = opts.max_connections.max(1);
    let app = router(opts, state, metrics, extra, live);
    accept_loop(listener, app, tls, max_connections, shutdown).await;
    Ok(())
}

/// The whole application: API, federation, lifecycle, `/metrics`, `extra`; instrumented, then
/// wrapped in authentication and the configured response headers.
fn router(
    opts: WebOptions,
    state: WebState,
    metrics: WebMetrics,
    extra: Router,
    live: Arc<LiveConfig>,
) -> Router {
    let query_slots = Arc::new(tokio::sync::Semaphore::new(
        opts.max_concurrent_queries.max(1),
    ));
    let ctx: Shared = Arc::new(Ctx {
        opts,
        state,
        metrics,
        query_slots,
    });
    let gated = api::routes()
        .merge(admin::routes())
        .route_layer(axum::middleware::from_fn(cors))
        .merge(federate::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            ready_gate,
        ));
    let app = gated
        .merge(lifecycle_routes())
        .with_state(ctx.clone())
        .merge(extra)
        .route_layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            instrument,
        ))
        // Prometheus' CompressionHandler: gzip when the client accepts it (Grafana does); a
        // query_range body shrinks ~10x.
        .layer(tower_http::compression::CompressionLayer::new());
    app.layer(axum::middleware::from_fn_with_state(live, authenticate))
}

/// What one version of the web configuration enforces.
struct Active {
    auth: webconfig::Authenticator,
    headers: Vec<(header::HeaderName, HeaderValue)>,
    /// `None`: plain HTTP.
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// A file's identity for change detection: modification time and size.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(p: &std::path::Path) -> Stamp {
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// One reading of the configuration file and the TLS files it names.
struct Loaded {
    /// Stamps of the configuration file, then of `tls_files`, when they were read.
    stamps: Vec<Stamp>,
    tls_files: Vec<PathBuf>,
    result: Result<Active, String>,
}

/// The web configuration as of its files' last change. exporter-toolkit re-reads the file on
/// every request and TLS handshake, so that new users, headers and certificates apply without a
/// restart; here the files are re-read when a modification time or size changed (a few `stat`s
/// per request instead of a parse). A configuration that stops parsing fails requests with 500
/// and handshakes, as exporter-toolkit's; serving TLS or plain HTTP is decided at start.
struct LiveConfig {
    path: Option<PathBuf>,
    loaded: std::sync::Mutex<Arc<Loaded>>,
}

impl LiveConfig {
    /// Reads the configuration; an invalid one is an error at start.
    fn start(path: Option<PathBuf>) -> Result<LiveConfig, WebError> {
        let loaded = match &path {
            Some(p) => {
                let (stamps, tls_files, active) = read_config(p)?;
                Loaded {
                    stamps,
                    tls_files,
                    result: Ok(active),
                }
            }
            None => Loaded {
                stamps: Vec::new(),
                tls_files: Vec::new(),
                result: Ok(Active {
                    auth: webconfig::Authenticator::default(),
                    headers: Vec::new(),
                    tls: None,
                }),
            },
        };
        Ok(LiveConfig {
            path,
            loaded: std::sync::Mutex::new(Arc::new(loaded)),
        })
    }

    /// The configuration in force, re-read first if its files changed.
    fn current(&self) -> Arc<Loaded> {
        let cur = self
            .loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(path) = &self.path else {
            return cur;
        };
        let now: Vec<Stamp> = std::iter::once(path)
            .chain(&cur.tls_files)
            .map(|p| stamp(p))
            .collect();
        if now == cur.stamps {
            return cur;
        }
        let fresh = Arc::new(match read_config(path) {
            Ok((stamps, tls_files, active)) => Loaded {
                stamps,
                tls_files,
                result: Ok(active),
            },
            Err(e) => Loaded {
                stamps: now,
                tls_files: cur.tls_files.clone(),
                result: Err(e.to_string()),
            },
        });
        *self.loaded.lock().unwrap_or_else(|e| e.into_inner()) = fresh.clone();
        fresh
    }
}

/// Reads the configuration file and the TLS files it names; returns their stamps (taken before
/// reading, so that a change while reading is seen next time), the TLS files, and the result.
fn read_config(path: &std::path::Path) -> Result<(Vec<Stamp>, Vec<PathBuf>, Active), WebError> {
    let first = stamp(path);
    let config = WebConfig::load(path)?;
    let tls_files: Vec<PathBuf> = config
        .tls
        .iter()
        .flat_map(|t| {
            [
                Some(&t.cert_file),
                Some(&t.key_file),
                t.client_ca_file.as_ref(),
            ]
            .into_iter()
            .flatten()
            .cloned()
        })
        .collect();
    let mut stamps = vec![first];
    stamps.extend(tls_files.iter().map(|p| stamp(p)));
    let tls = match &config.tls {
        Some(t) => {
            let cfg = t
                .server_config(config.http2)
                .map_err(|message| WebError::Tls {
                    path: path.to_path_buf(),
                    message,
                })?;
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
        }
        None => None,
    };
    let headers = config
        .headers
        .iter()
        .filter_map(|(k, v)| {
            Some((
                header::HeaderName::from_bytes(k.as_bytes()).ok()?,
                HeaderValue::from_str(v).ok()?,
            ))
        })
        .collect();
    Ok((
        stamps,
        tls_files,
        Active {
            auth: webconfig::Authenticator::new(config.users),
            headers,
            tls,
        },
    ))
}

/// exporter-toolkit's `webHandler`: configured headers on every response; with users, a request
/// without valid basic-auth credentials gets 401 and `WWW-Authenticate: Basic`.
async fn authenticate(State(live): State<Arc<LiveConfig>>, req: Request, next: Next) -> Response {
    let loaded = live.current();
    let Ok(a) = &loaded.result else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n");
    };
    let mut resp = if !a.auth.enabled() {
        next.run(req).await
    } else {
        let creds = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(webconfig::parse_basic_auth);
        let ok = match creds {
            Some((user, pass)) => {
                let loaded = loaded.clone();
                // bcrypt on a cache miss takes tens of milliseconds: not on the runtime's threads.
                tokio::task::spawn_blocking(move || {
                    loaded
                        .result
                        .as_ref()
                        .is_ok_and(|a| a.auth.check(&user, &pass))
                })
                .await
                .unwrap_or(false)
            }
            None => false,
        };
        if ok {
            next.run(req).await
        } else {
            let mut r = text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
            r
        }
    };
    for (k, v) in &a.headers {
        resp.headers_mut().insert(k.clone(), v.clone());
    }
    resp
}

/// Prometheus' `httputil.SetCORS` with its default `--web.cors.origin=.*`: a request with an
/// `Origin` gets the CORS headers and `Access-Control-Allow-Origin: *`; `OPTIONS` (a preflight)
/// answers 204.
async fn cors(req: Request, next: Next) -> Response {
    let has_origin = req.headers().contains_key(header::ORIGIN);
    let mut resp = if req.method() == axum::http::Method::OPTIONS {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(req).await
    };
    if has_origin {
        let h = resp.headers_mut();
        for (k, v) in [
            (
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "Accept, Authorization, Content-Type, Origin",
            ),
            (header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS"),
            (header::ACCESS_CONTROL_EXPOSE_HEADERS, "Date"),
            (header::VARY, "Origin"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ] {
            h.insert(k, HeaderValue::from_static(v));
        }
    }
    resp
}

/// Prometheus' `testReady`: until the server is ready, 503 `Service Unavailable`.
async fn ready_gate(State(ctx): State<Shared>, req: Request, next: Next) -> Response {
    if ctx.state.ready.load(Ordering::Relaxed) {
        next.run(req).await
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response()
    }
}

/// Counts and times requests per route pattern, written as Prometheus names its handlers
/// (`/api/v1/label/:name/values`).
async fn instrument(State(ctx): State<Shared>, req: Request, next: Next) -> Response {
    let handler = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| prometheus_handler_name(p.as_str()))
        .unwrap_or_else(|| "other".to_string());
    let start = Instant::now();
    let resp = next.run(req).await;
    let bytes = axum::body::HttpBody::size_hint(resp.body())
        .exact()
        .unwrap_or(0);
    ctx.metrics.observe_request(
        &handler,
        resp.status().as_u16(),
        start.elapsed().as_secs_f64(),
        bytes,
    );
    resp
}

/// `/api/v1/label/{name}/values` → `/api/v1/label/:name/values`.
fn prometheus_handler_name(pattern: &str) -> String {
    pattern
        .split('/')
        .map(
            |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => format!(":{}", name.trim_start_matches('*')),
                None => seg.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

fn lifecycle_routes() -> Router<Shared> {
    use axum::routing::get;
    Router::new()
        .route(
            "/-/healthy",
            get(|| async { text(StatusCode::OK, &format!("{APP_NAME} is Healthy.\n")) }),
        )
        .route("/-/ready", get(ready))
        .route(
            "/-/reload",
            get(|| async {
                text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "Only POST or PUT requests allowed",
                )
            })
            .post(reload)
            .put(reload),
        )
        .route("/metrics", get(metrics_handler))
}

async fn ready(State(ctx): State<Shared>) -> Response {
    if ctx.state.ready.load(Ordering::Relaxed) {
        text(StatusCode::OK, &format!("{APP_NAME} is Ready.\n"))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response()
    }
}

async fn reload(State(ctx): State<Shared>) -> Response {
    if !ctx.opts.enable_lifecycle {
        return text(StatusCode::FORBIDDEN, "Lifecycle API is not enabled.");
    }
    let (tx, rx) = oneshot::channel();
    let outcome = match ctx.state.reload.send(tx).await {
        Ok(()) => rx
            .await
            .unwrap_or_else(|_| Err("the reloader went away".to_string())),
        Err(_) => Err("the reloader is not running".to_string()),
    };
    match outcome {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("failed to reload config: {e}\n"),
        ),
    }
}

async fn metrics_handler(State(ctx): State<Shared>) -> Response {
    ctx.metrics
        .ready
        .set(i64::from(ctx.state.ready.load(Ordering::Relaxed)));
    let registry = ctx.state.registry.clone();
    // Collectors walk the head's series: off the runtime's threads.
    let out = tokio::task::spawn_blocking(move || {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).map(|()| out)
    })
    .await;
    match out {
        Ok(Ok(body)) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        _ => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "error encoding metrics\n",
        ),
    }
}

/// A `text/plain` response, as Go's `http.Error` writes them.
pub(crate) fn text(code: StatusCode, body: &str) -> Response {
    (
        code,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body.to_string(),
    )
        .into_response()
}

/// Accepts connections (TLS handshakes on their own tasks) until `shutdown`, then asks every
/// connection to finish its in-flight request and close, and waits for them (at most
/// [`DRAIN_TIMEOUT`]).
async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<Arc<LiveConfig>>,
    max_connections: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    // Prometheus' LimitListener: at most this many connections are served at once.
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let mut conns = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => break,
            },
        };
        let (stream, _peer) = tokio::select! {
            () = &mut shutdown => break,
            acc = listener.accept() => match acc {
                Ok(x) => x,
                Err(_) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (app, tls, stop) = (app.clone(), tls.clone(), stop_rx.clone());
        conns.spawn(async move {
            let _slot = slot;
            match tls {
                Some(live) => {
                    // The certificate in force now (a configuration that stopped parsing, or
                    // lost its TLS section, fails the handshake as exporter-toolkit's).
                    let loaded = live.current();
                    let Some(acceptor) = loaded.result.as_ref().ok().and_then(|a| a.tls.clone())
                    else {
                        return;
                    };
                    // A failed or stalled handshake just ends the connection.
                    if let Ok(Ok(s)) =
                        tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        serve_connection(hyper_util::rt::TokioIo::new(s), app, stop).await
                    }
                }
                None => serve_connection(hyper_util::rt::TokioIo::new(stream), app, stop).await,
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        // Past the grace period: dropping the connections cancels their queries, so nothing
        // keeps the database open after `serve` returns but a query's last evaluation step.
        conns.shutdown().await;
    }
}

async fn serve_connection<I>(io: I, app: Router, mut stop: watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    // With a timer, hyper drops an HTTP/1 connection that sends no complete header within 30 s
    // (slow clients holding connection slots).
    builder.http1().timer(hyper_util::rt::TokioTimer::new());
    let service = hyper_util::service::TowerToHyperService::new(app);
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    if !*stop.borrow_and_update() {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = stop.changed() => {}
        }
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// Fuzz body: arbitrary bytes as the untrusted inputs of this layer — a web-config file, an
/// `Authorization` header, `match[]` selectors, time and label-name parameters, a sample value
/// for federation. Must never panic; errors are fine.
#[doc(hidden)]
pub fn fuzz_web_input(data: &[u8]) {
    if data.len() >= 8 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&data[..8]);
        let v = f64::from_bits(u64::from_le_bytes(b));
        let _ = federate::go_float(v);
    }
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = webconfig::WebConfig::parse_for_fuzz(s);
    let _ = webconfig::parse_basic_auth(s);
    let _ = api::matcher_sets(&[s]);
    let _ = api::go_quote(s);
    let _ = api::go_time_json(crate::api::parse_time(s).ok());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        #[test]
        fn fuzz_body_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            fuzz_web_input(&data);
        }

        #[test]
        fn fuzz_body_on_yaml_like_text(s in "[a-z_:\\n \\-\\$0-9{}\\[\\]\"']{0,120}") {
            fuzz_web_input(s.as_bytes());
        }

        #[test]
        fn federation_values_round_trip(v in any::<f64>()) {
            let s = federate::go_float(v);
            if v.is_nan() {
                prop_assert_eq!(s, "NaN");
            } else {
                let back: f64 = s.parse().unwrap();
                prop_assert_eq!(back.to_bits(), v.to_bits(), "{}", s);
            }
        }
    }

    #[test]
    fn handler_names_as_prometheus() {
        assert_eq!(
            prometheus_handler_name("/api/v1/label/{name}/values"),
            "/api/v1/label/:name/values"
        );
        assert_eq!(prometheus_handler_name("/federate"), "/federate");
    }
}
