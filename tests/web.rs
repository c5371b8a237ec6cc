//! The HTTP layer in-process (issue 5, point 3): `--web.config.file` TLS and basic auth protect
//! every endpoint (other components' routes included), the admin API exists only when enabled,
//! errors have Prometheus' shapes and codes, readiness and reload behave as Prometheus', and
//! shutdown drains.

mod common;
use axum::routing::post;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tsdb::labels::Labels;
use tsdb::server::web::{self, WebOptions, WebState};
use tsdb::server::{DroppedTarget, MetricMetadata, ScrapeView, TargetInfo};
use tsdb::{Db, Options};

/// A scrape manager with no targets and no metadata.
struct NoTargets;

impl ScrapeView for NoTargets {
    fn targets(&self) -> (Vec<TargetInfo>, Vec<DroppedTarget>) {
        (Vec::new(), Vec::new())
    }
    fn metadata(&self) -> Vec<(String, MetricMetadata)> {
        Vec::new()
    }
}

struct Server {
    addr: SocketAddr,
    db: Arc<Db>,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<Result<(), web::WebError>>,
    reloads: mpsc::Receiver<web::ReloadRequest>,
    ready: Arc<std::sync::atomic::AtomicBool>,
    _dir: tempfile::TempDir,
}

impl Server {
    fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://{}{path}", self.addr)
    }

    async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.done.await.unwrap().unwrap();
    }
}

/// Starts the web layer over a fresh database holding `up{job="a"}` and `up{job="b"}` (1 at
/// t = 0..10 min) with `opts` adjusted by the caller.
async fn start(opts: WebOptions, extra: axum::Router) -> Server {
    start_with_targets(opts, extra, Arc::new(NoTargets)).await
}

/// [`start`] with `scrape` answering the target endpoints.
async fn start_with_targets(
    mut opts: WebOptions,
    extra: axum::Router,
    scrape: Arc<dyn ScrapeView>,
) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(
        Db::open(
            dir.path().join("data"),
            Options::default().background_compaction(false),
        )
        .unwrap(),
    );
    let mut app = db.appender();
    for job in ["a", "b"] {
        let l = Labels::from_pairs(&[("__name__", "up"), ("job", job)]);
        for i in 0..=10 {
            app.append(&l, i * 60_000, 1.0).unwrap();
        }
    }
    app.commit().unwrap();
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = web::register_metrics(&mut registry, &db);
    let (reload_tx, reloads) = mpsc::channel(1);
    let state = WebState::new(db.clone(), scrape, Arc::new(registry), reload_tx);
    state.ready.store(true, Ordering::Relaxed);
    let ready = state.ready.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    opts.listen = addr;
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(web::serve_listener(
        listener,
        opts,
        state,
        metrics,
        extra,
        async move {
            let _ = stopped.await;
        },
    ));
    Server {
        addr,
        db,
        stop: Some(stop),
        done,
        reloads,
        ready,
        _dir: dir,
    }
}

/// A CA and a server certificate for localhost and 127.0.0.1 signed by it, in `dir`
/// (`ca.crt`, `server.crt`, `server.key`); false when openssl is missing (skip).
fn make_certificates(dir: &Path) -> bool {
    if !common::make_ca(dir) {
        return false;
    }
    common::issue_cert(dir, "server", "DNS:localhost,IP:127.0.0.1", "serverAuth");
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_basic_auth_protect_every_endpoint() {
    let certs = tempfile::tempdir().unwrap();
    if !make_certificates(certs.path()) {
        return;
    }
    // Cost 4 keeps the test fast; the server caches results whatever the cost.
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let config = certs.path().join("web.yml");
    std::fs::write(
        &config,
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\nbasic_auth_users:\n  alice: {hash}\n"
        ),
    )
    .unwrap();
    let extra = axum::Router::new().route(
        "/api/v1/write",
        post(|| async { axum::http::StatusCode::NO_CONTENT }),
    );
    let s = start(
        WebOptions {
            web_config_file: Some(config),
            ..WebOptions::default()
        },
        extra,
    )
    .await;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(certs.path().join("ca.crt")).unwrap())
        .unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();

    let paths = [
        ("GET", "/api/v1/query?query=up&time=600"),
        ("GET", "/api/v1/labels"),
        ("GET", "/federate?match[]=up"),
        ("GET", "/metrics"),
        ("GET", "/-/healthy"),
        ("GET", "/-/ready"),
        ("POST", "/api/v1/write"),
        ("GET", "/no/such/path"),
    ];
    for (method, path) in paths {
        let req = |c: &reqwest::Client| match method {
            "POST" => c.post(s.url("https", path)),
            _ => c.get(s.url("https", path)),
        };
        let none = req(&client).send().await.unwrap();
        assert_eq!(none.status(), 401, "{path} without credentials");
        assert_eq!(none.headers()["www-authenticate"], "Basic", "{path}");
        assert_eq!(none.headers()["x-frame-options"], "deny", "{path}");
        assert_eq!(none.text().await.unwrap(), "Unauthorized\n");
        for (user, pass) in [("alice", "wrong"), ("bob", "s3cret"), ("", "")] {
            let r = req(&client)
                .basic_auth(user, Some(pass))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401, "{path} as {user}:{pass}");
        }
        let ok = req(&client)
            .basic_auth("alice", Some("s3cret"))
            .send()
            .await
            .unwrap();
        let want = match path {
            "/api/v1/write" => 204,
            "/no/such/path" => 404,
            _ => 200,
        };
        assert_eq!(ok.status(), want, "{path} with the right password");
        assert_eq!(ok.headers()["x-frame-options"], "deny", "{path}");
    }
    let (_, body) = json(
        client
            .get(s.url("https", "/api/v1/query?query=sum(up)&time=600"))
            .basic_auth("alice", Some("s3cret"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(body["data"]["result"][0]["value"][1], "2", "{body}");

    // The file is re-read when it changes: users, then a broken file (500), then certificates.
    let bob = bcrypt::hash("b0b", 4).unwrap();
    let tls_part = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";
    std::fs::write(
        certs.path().join("web.yml"),
        format!("{tls_part}basic_auth_users:\n  bob: {bob}\n"),
    )
    .unwrap();
    let get = |c: &reqwest::Client, user: &str, pass: &str| {
        c.get(s.url("https", "/-/healthy"))
            .basic_auth(user, Some(pass))
            .send()
    };
    assert_eq!(get(&client, "alice", "s3cret").await.unwrap().status(), 401);
    let r = get(&client, "bob", "b0b").await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-frame-options").is_none());
    std::fs::write(
        certs.path().join("web.yml"),
        format!("{tls_part}basic_auth_users: [\n"),
    )
    .unwrap();
    let r = client.get(s.url("https", "/-/healthy")).send().await;
    // The handshake fails or the request gets 500, as exporter-toolkit's.
    assert!(r.is_err() || r.unwrap().status() == 500);
    let rotated = tempfile::tempdir().unwrap();
    assert!(make_certificates(rotated.path()));
    for f in ["server.crt", "server.key"] {
        std::fs::copy(rotated.path().join(f), certs.path().join(f)).unwrap();
    }
    std::fs::write(
        certs.path().join("web.yml"),
        format!("{tls_part}basic_auth_users:\n  bob: {bob}\n"),
    )
    .unwrap();
    // New connections get the new certificate (pooled ones keep their session).
    let ca1 = reqwest::Certificate::from_pem(&std::fs::read(certs.path().join("ca.crt")).unwrap())
        .unwrap();
    let client1 = reqwest::Client::builder()
        .add_root_certificate(ca1)
        .build()
        .unwrap();
    assert!(
        get(&client1, "bob", "b0b").await.is_err(),
        "old certificate still served"
    );
    let ca2 =
        reqwest::Certificate::from_pem(&std::fs::read(rotated.path().join("ca.crt")).unwrap())
            .unwrap();
    let client2 = reqwest::Client::builder()
        .add_root_certificate(ca2)
        .build()
        .unwrap();
    assert_eq!(get(&client2, "bob", "b0b").await.unwrap().status(), 200);

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .get(s.url("http", "/-/healthy"))
        .send()
        .await;
    assert!(
        plain.is_err() || plain.unwrap().status() == 400,
        "plain HTTP served on the TLS port"
    );
    // A client that does not trust the CA fails the handshake.
    let untrusting = reqwest::Client::new()
        .get(s.url("https", "/-/healthy"))
        .basic_auth("bob", Some("b0b"))
        .send()
        .await;
    assert!(untrusting.is_err());
    s.shutdown().await;
}

/// Two targets of job `demo` with metadata, one of job `node`.
struct ThreeTargets;

impl ScrapeView for ThreeTargets {
    fn targets(&self) -> (Vec<TargetInfo>, Vec<DroppedTarget>) {
        let meta = |kind: &str, help: &str| MetricMetadata {
            kind: kind.into(),
            help: help.into(),
            unit: String::new(),
        };
        let target =
            |job: &str, instance: &str, metadata: Vec<(String, MetricMetadata)>| TargetInfo {
                discovered_labels: Labels::from_pairs(&[("__address__", instance)]),
                labels: Labels::from_pairs(&[("instance", instance), ("job", job)]),
                scrape_pool: job.into(),
                scrape_url: format!("http://{instance}/metrics"),
                global_url: format!("http://{instance}/metrics"),
                last_error: String::new(),
                last_scrape_ms: None,
                last_scrape_duration_s: 0.0,
                health: tsdb::server::Health::Unknown,
                scrape_interval: tsdb::config::Duration(15_000),
                scrape_timeout: tsdb::config::Duration(10_000),
                metadata: Arc::new(metadata),
            };
        let demo = vec![
            ("calls".to_string(), meta("counter", "Calls.")),
            ("temp".to_string(), meta("gauge", "Temperature.")),
        ];
        (
            vec![
                target(
                    "node",
                    "n:9100",
                    vec![("up_time".into(), meta("gauge", "Up."))],
                ),
                target("demo", "d:1", demo.clone()),
                target("demo", "d:2", demo),
            ],
            Vec::new(),
        )
    }
    fn metadata(&self) -> Vec<(String, MetricMetadata)> {
        Vec::new()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_metadata_filters_as_prometheus() {
    let s = start_with_targets(
        WebOptions::default(),
        axum::Router::new(),
        Arc::new(ThreeTargets),
    )
    .await;
    let client = reqwest::Client::new();
    let get = |q: &str| {
        client
            .get(s.url("http", &format!("/api/v1/targets/metadata{q}")))
            .send()
    };
    // Pools in name order, each target's whole list.
    let (code, v) = json(get("").await.unwrap()).await;
    assert_eq!(code, 200);
    let rows: Vec<(String, String, String)> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["target"]["instance"].as_str().unwrap().to_string(),
                e["metric"].as_str().unwrap().to_string(),
                e["type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let row = |i: &str, m: &str, t: &str| (i.to_string(), m.to_string(), t.to_string());
    assert_eq!(
        rows,
        [
            row("d:1", "calls", "counter"),
            row("d:1", "temp", "gauge"),
            row("d:2", "calls", "counter"),
            row("d:2", "temp", "gauge"),
            row("n:9100", "up_time", "gauge"),
        ]
    );
    assert_eq!(
        v["data"][0],
        serde_json::json!({"target": {"instance": "d:1", "job": "demo"}, "metric": "calls",
            "type": "counter", "help": "Calls.", "unit": ""})
    );
    // One metric: no "metric" key; the target selector filters.
    let (_, v) = json(
        get("?metric=temp&match_target=%7Binstance%3D%22d%3A2%22%7D")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        v["data"],
        serde_json::json!([{"target": {"instance": "d:2", "job": "demo"}, "type": "gauge",
            "help": "Temperature.", "unit": ""}])
    );
    // The limit is checked before each target: the first target's two entries are both kept.
    let (_, v) = json(get("?limit=1").await.unwrap()).await;
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    let (_, v) = json(get("?limit=0").await.unwrap()).await;
    assert_eq!(v["data"], serde_json::json!([]));
    let (code, v) = json(get("?limit=x").await.unwrap()).await;
    assert_eq!(
        (code, v["error"].as_str()),
        (400, Some("limit must be a number"))
    );
    let (code, v) = json(get("?match_target=%7B").await.unwrap()).await;
    assert_eq!(code, 400);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid parameter \"match_target\": "),
        "{v}"
    );
    s.shutdown().await;
}

async fn json(r: reqwest::Response) -> (u16, serde_json::Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_exists_only_when_enabled() {
    let c = reqwest::Client::new();
    let s = start(WebOptions::default(), axum::Router::new()).await;
    for path in [
        "/api/v1/admin/tsdb/delete_series?match[]=up",
        "/api/v1/admin/tsdb/clean_tombstones",
        "/api/v1/admin/tsdb/snapshot",
    ] {
        let (code, v) = json(c.post(s.url("http", path)).send().await.unwrap()).await;
        assert_eq!(code, 500, "{path}");
        assert_eq!(
            v,
            serde_json::json!({"status":"error","errorType":"unavailable","error":"admin APIs disabled"})
        );
    }
    s.shutdown().await;

    let s = start(
        WebOptions {
            enable_admin_api: true,
            ..WebOptions::default()
        },
        axum::Router::new(),
    )
    .await;
    let (code, v) = json(
        c.post(s.url("http", "/api/v1/admin/tsdb/snapshot"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let name = v["data"]["name"].as_str().unwrap().to_string();
    let snap = s.db.dir().join("snapshots").join(&name);
    assert!(snap.is_dir(), "{name}");
    assert_eq!(
        std::fs::read_dir(&snap)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().join("meta.json").exists())
            .count(),
        1,
        "the head as one block"
    );

    let r = c
        .post(s.url("http", "/api/v1/admin/tsdb/delete_series"))
        .form(&[("match[]", "up{job=\"a\"}"), ("end", "300")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (_, v) = json(
        c.get(s.url(
            "http",
            "/api/v1/query?query=count_over_time(up[20m])&time=600",
        ))
        .send()
        .await
        .unwrap(),
    )
    .await;
    let counts: Vec<(String, String)> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["metric"]["job"].as_str().unwrap().to_string(),
                r["value"][1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        counts,
        vec![("a".into(), "5".into()), ("b".into(), "11".into())]
    );
    let (code, v) = json(
        c.post(s.url("http", "/api/v1/admin/tsdb/delete_series"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((code, v["errorType"].as_str()), (400, Some("bad_data")));
    let r = c
        .put(s.url("http", "/api/v1/admin/tsdb/clean_tombstones"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_prometheus_shapes() {
    let c = reqwest::Client::new();
    let s = start(
        WebOptions {
            max_samples: 30,
            enable_lifecycle: true,
            ..WebOptions::default()
        },
        axum::Router::new(),
    )
    .await;
    let cases: &[(&str, u16, &str, &str)] = &[
        (
            "/api/v1/query_range?query=up&end=10&step=1",
            400,
            "bad_data",
            r#"invalid parameter "start": cannot parse "" to a valid timestamp"#,
        ),
        (
            "/api/v1/query_range?query=up&start=10&end=5&step=1",
            400,
            "bad_data",
            r#"invalid parameter "end": end timestamp must not be before start time"#,
        ),
        (
            "/api/v1/query_range?query=up&start=0&end=5&step=0",
            400,
            "bad_data",
            r#"invalid parameter "step": zero or negative query resolution step widths are not accepted. Try a positive integer"#,
        ),
        (
            "/api/v1/query_range?query=up&start=0&end=100000&step=1",
            400,
            "bad_data",
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ),
        (
            "/api/v1/query?query=up&time=yesterday",
            400,
            "bad_data",
            r#"invalid parameter "time": Invalid time value for 'time': cannot parse "yesterday" to a valid timestamp"#,
        ),
        (
            "/api/v1/query?query=up&time=1&timeout=soon",
            400,
            "bad_data",
            r#"invalid parameter "timeout": cannot parse "soon" to a valid duration"#,
        ),
        ("/api/v1/query?query=sum(", 400, "bad_data", ""),
        ("/api/v1/query_range?query=sum(&start=0&end=1&step=1", 400, "bad_data", ""),
        (
            "/api/v1/query?query=up[10m:1s]&time=600",
            422,
            "execution",
            "query processing would load too many samples into memory in query execution",
        ),
        (
            "/api/v1/series",
            400,
            "bad_data",
            "no match[] parameter provided",
        ),
        (
            "/api/v1/label/1a/values",
            400,
            "bad_data",
            r#"invalid label name: "1a""#,
        ),
        (
            "/api/v1/metadata?limit=x",
            400,
            "bad_data",
            "limit must be a number",
        ),
    ];
    for &(path, code, kind, message) in cases {
        let (got, v) = json(c.get(s.url("http", path)).send().await.unwrap()).await;
        assert_eq!(got, code, "{path}: {v}");
        assert_eq!(v["status"], "error", "{path}");
        assert_eq!(v["errorType"], kind, "{path}: {v}");
        if !message.is_empty() {
            assert_eq!(v["error"], message, "{path}");
        } else {
            assert!(v["error"].as_str().unwrap().contains("parse error"), "{v}");
        }
    }
    // The instant query's parse error names the parameter; the range query's does not.
    let (_, v) = json(
        c.get(s.url("http", "/api/v1/query?query=sum("))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(v["error"]
        .as_str()
        .unwrap()
        .starts_with(r#"invalid parameter "query": "#));

    // POSTed forms read as query strings.
    let (code, v) = json(
        c.post(s.url("http", "/api/v1/query_range"))
            .form(&[
                ("query", "up"),
                ("start", "0"),
                ("end", "600"),
                ("step", "5m"),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["data"]["result"].as_array().unwrap().len(), 2);

    // Lifecycle: reload answers with the reloader's outcome; GET is refused.
    let r = c.get(s.url("http", "/-/reload")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let mut s = s;
    let mut reloads = std::mem::replace(&mut s.reloads, mpsc::channel(1).1);
    let reloader = tokio::spawn(async move {
        let first = reloads.recv().await.unwrap();
        first.send(Err("line 3: bad key".into())).unwrap();
        let second = reloads.recv().await.unwrap();
        second.send(Ok(())).unwrap();
    });
    let r = c.post(s.url("http", "/-/reload")).send().await.unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(
        r.text().await.unwrap(),
        "failed to reload config: line 3: bad key\n"
    );
    let r = c.put(s.url("http", "/-/reload")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    reloader.await.unwrap();

    // Not ready: the API and federation answer 503, health and metrics do not wait.
    s.ready.store(false, Ordering::Relaxed);
    for (path, code) in [
        ("/api/v1/query?query=up", 503),
        ("/federate?match[]=up", 503),
        ("/-/ready", 503),
        ("/-/healthy", 200),
        ("/metrics", 200),
    ] {
        let r = c.get(s.url("http", path)).send().await.unwrap();
        assert_eq!(r.status(), code, "{path}");
    }
    let metrics = c
        .get(s.url("http", "/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for want in [
        "prometheus_http_requests_total{handler=\"/api/v1/query_range\",code=\"400\"} 5",
        "prometheus_http_requests_total{handler=\"/api/v1/label/:name/values\",code=\"400\"} 1",
        "prometheus_tsdb_head_series 2",
        "prometheus_ready 0",
        "tsdb_engine_queries_total{type=\"instant\",result=\"execution\"} 1",
    ] {
        assert!(metrics.contains(want), "{want} missing in\n{metrics}");
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_disabled_and_drain_on_shutdown() {
    let c = reqwest::Client::new();
    let s = start(WebOptions::default(), axum::Router::new()).await;
    let r = c.post(s.url("http", "/-/reload")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.text().await.unwrap(), "Lifecycle API is not enabled.");
    // A request's timeout shortens --query.timeout: 503 `timeout`.
    let started = std::time::Instant::now();
    let (code, v) = json(
        // The engine checks its deadline between expression nodes: the second term sees it.
        c.get(s.url(
            "http",
            "/api/v1/query?query=count_over_time(vector(1)[30d:1s])%2Bcount_over_time(vector(1)[30d:1s])%2Bcount_over_time(vector(1)[30d:1s])&time=600&timeout=20ms",
        ))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        (code, v["errorType"].as_str()),
        (503, Some("timeout")),
        "{v}"
    );
    assert_eq!(v["error"], "query timed out in expression evaluation");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));

    // A client that goes away cancels its query.
    let slow = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(50))
        .build()
        .unwrap();
    let gone = slow
        .get(s.url(
            "http",
            "/api/v1/query?query=count_over_time(vector(1)[30d:1s])%2Bcount_over_time(vector(1)[30d:1s])%2Bcount_over_time(vector(1)[30d:1s])&time=600",
        ))
        .send()
        .await;
    assert!(gone.is_err(), "the query finished within 50 ms");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let m = c
            .get(s.url("http", "/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if m.contains("tsdb_engine_queries_total{type=\"instant\",result=\"canceled\"} 1")
            && m.contains("prometheus_engine_queries 0\n")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no canceled query in\n{m}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Responses are gzipped when the client accepts it (reqwest would undo it silently).
    let raw = reqwest::Client::builder().no_gzip().build().unwrap();
    let r = raw
        .get(s.url(
            "http",
            "/api/v1/query_range?query=up&start=0&end=600&step=1",
        ))
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()
            .get("content-encoding")
            .map(|v| v.to_str().unwrap()),
        Some("gzip"),
        "{:?}",
        r.headers()
    );
    let (code, v) = json(
        c.get(s.url(
            "http",
            "/api/v1/query_range?query=up&start=0&end=600&step=1",
        ))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        v["data"]["result"][0]["values"].as_array().unwrap().len(),
        601
    );
    // A keep-alive connection is open; shutdown still completes, and the port is closed after.
    let r = c.get(s.url("http", "/-/healthy")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "Prometheus Server is Healthy.\n");
    let addr = s.addr;
    tokio::time::timeout(std::time::Duration::from_secs(10), s.shutdown())
        .await
        .expect("shutdown drained within 10 s");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait() {
    let s = start(
        WebOptions {
            max_connections: 1,
            ..WebOptions::default()
        },
        axum::Router::new(),
    )
    .await;
    // An idle connection takes the only slot.
    let idle = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let url = s.url("http", "/-/healthy");
    let waiting = tokio::spawn(async move { reqwest::get(url).await.map(|r| r.status()) });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "served beyond --web.max-connections"
    );
    drop(idle);
    let status = tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
        .await
        .expect("served once the slot is free")
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_web_config_or_busy_port_fail_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path().join("data"), Options::default()).unwrap());
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = web::register_metrics(&mut registry, &db);
    let registry = Arc::new(registry);
    let state = || {
        WebState::new(
            db.clone(),
            Arc::new(NoTargets),
            registry.clone(),
            mpsc::channel(1).0,
        )
    };
    for (text, want) in [
        (
            "basic_auth_users:\n  alice: plaintext\n",
            "not a bcrypt hash",
        ),
        (
            "tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n",
            "nope.crt",
        ),
        (
            "http_server_config:\n  http3: true\n",
            "unknown field `http3`",
        ),
    ] {
        let path = dir.path().join("web.yml");
        std::fs::write(&path, text).unwrap();
        let opts = WebOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            web_config_file: Some(path),
            ..WebOptions::default()
        };
        let e = web::serve(opts, state(), metrics.clone(), axum::Router::new(), async {
        })
        .await
        .unwrap_err();
        assert!(e.to_string().contains(want), "{e}");
    }
    let busy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let opts = WebOptions {
        listen: busy.local_addr().unwrap(),
        ..WebOptions::default()
    };
    let e = web::serve(opts, state(), metrics, axum::Router::new(), async {})
        .await
        .unwrap_err();
    assert!(matches!(e, web::WebError::Bind { .. }), "{e}");
}
