//! The HTTP API side by side with the real Prometheus 2.42 (issue 5, point 3): the same blocks
//! (made by `promtool tsdb create-blocks-from openmetrics`) served by Prometheus and by our web
//! layer in-process; the same requests to both — queries (GET and POST), series, labels, label
//! values, metadata, targets, federation, TSDB status, errors — give the same status codes and
//! the same JSON (order-insensitive where Prometheus leaves the order unspecified; fields that
//! legitimately differ, such as build and runtime information, compared by shape only).

mod common;

use common::{available, Prometheus, PROMETHEUS, PROMTOOL};
use serde_json::Value;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};
use tsdb::server::web::{self, WebOptions, WebState};
use tsdb::server::{DroppedTarget, MetricMetadata, ScrapeView, TargetInfo};
use tsdb::{Db, Options};

/// A scrape manager with no targets, as a Prometheus whose configuration has no scrape jobs.
struct NoTargets;

impl ScrapeView for NoTargets {
    fn targets(&self) -> (Vec<TargetInfo>, Vec<DroppedTarget>) {
        (Vec::new(), Vec::new())
    }
    fn metadata(&self) -> Vec<(String, MetricMetadata)> {
        Vec::new()
    }
}

/// OpenMetrics text: counters, gauges, a histogram and awkward label values, one sample every
/// 15 s for 3 h up to `end` (seconds). Sample times sit 0.123 s off whole seconds, so that no
/// sample is on the boundary of a window the queries below use (where Prometheus 2.42 and our
/// engine, as Prometheus 3, differ).
fn openmetrics(end: i64) -> String {
    let mut out = String::new();
    let start = end - 3 * 3600;
    let n = (end - start) / 15;
    out.push_str("# TYPE http_requests counter\n# HELP http_requests Requests served.\n");
    for job in ["api", "web"] {
        for inst in ["a:1", "b:2"] {
            for code in ["200", "500"] {
                let rate = if code == "200" { 10.0 } else { 0.25 } * (1 + job.len()) as f64;
                for i in 0..n {
                    let t = start + i * 15;
                    let _ = writeln!(
                        out,
                        "http_requests_total{{code=\"{code}\",instance=\"{inst}\",job=\"{job}\"}} {} {t}.123",
                        (i as f64 * 15.0 * rate).floor()
                    );
                }
            }
        }
    }
    out.push_str("# TYPE node_load1 gauge\n");
    for (k, inst) in ["a:1", "b:2", "c:3"].iter().enumerate() {
        for i in 0..n {
            let t = start + i * 15;
            let _ = writeln!(
                out,
                "node_load1{{instance=\"{inst}\",job=\"node\"}} {} {t}.123",
                ((i * 7 + k as i64 * 13) % 50) as f64 / 10.0
            );
        }
    }
    out.push_str("# TYPE lat histogram\n");
    for i in 0..n {
        let t = start + i * 15;
        let c = i as f64;
        for (le, f) in [("0.1", 2.0), ("1.0", 5.0), ("+Inf", 6.0)] {
            let _ = writeln!(
                out,
                "lat_bucket{{job=\"api\",le=\"{le}\"}} {} {t}.123",
                c * f
            );
        }
        let _ = writeln!(out, "lat_sum{{job=\"api\"}} {} {t}.123", c * 1.5);
        let _ = writeln!(out, "lat_count{{job=\"api\"}} {} {t}.123", c * 6.0);
    }
    out.push_str("# TYPE odd gauge\n");
    for i in 0..n {
        let t = start + i * 15;
        let _ = writeln!(
            out,
            "odd{{path=\"/a?b=1&c=<2>\",quote=\"say \\\"hi\\\"\"}} {} {t}.123",
            1e-7 * i as f64
        );
    }
    out.push_str("# EOF\n");
    out
}

/// Sorts arrays whose order Prometheus leaves unspecified, recursively by their JSON text.
fn sorted(v: &Value) -> Value {
    match v {
        Value::Array(a) => {
            let mut a: Vec<Value> = a.iter().map(sorted).collect();
            a.sort_by_key(|x| x.to_string());
            Value::Array(a)
        }
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), sorted(v))).collect()),
        other => other.clone(),
    }
}

/// Shape of a JSON value: objects keep their keys, leaves become their type.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(a) => Value::Array(a.iter().take(1).map(shape).collect()),
        Value::String(_) => Value::String("string".into()),
        Value::Number(_) => Value::String("number".into()),
        Value::Bool(_) => Value::String("bool".into()),
        Value::Null => Value::Null,
    }
}

/// Whether two values are equal up to a relative difference in sample values (sums: Prometheus
/// 2.42 adds plainly, our engine as Prometheus 3 with Kahan summation).
fn close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) if x != y => {
            match (x.parse::<f64>(), y.parse::<f64>()) {
                (Ok(fx), Ok(fy)) => (fx - fy).abs() <= 1e-12 * fx.abs().max(fy.abs()),
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| close(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| close(v, w)))
        }
        _ => a == b,
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Compare {
    /// Same status, same JSON up to order and float rounding.
    Json,
    /// Same status, `status` and `errorType` (messages worded by different parsers).
    ErrorType,
    /// Same status and JSON shape.
    Shape,
    /// Same status, same set of lines (text bodies).
    Lines,
    /// Same status code only.
    Status,
}

/// Method, path and query, form fields, how to compare.
type Request = (&'static str, String, Vec<(&'static str, String)>, Compare);

struct Reply {
    /// `Access-Control-Allow-Origin`.
    cors: Option<String>,
    status: u16,
    body: String,
}

async fn send(
    c: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    form: &[(&str, String)],
) -> Reply {
    let url = format!("{base}{path}");
    let req = match method {
        "POST" => c.post(&url).form(form),
        "OPTIONS" => c.request(reqwest::Method::OPTIONS, &url),
        _ => c.get(&url),
    };
    // Prometheus adds CORS headers to API answers when the request has an Origin.
    let req = req.header("Origin", "http://grafana.example");
    let r = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let cors = r
        .headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap_or("").to_string());
    Reply {
        cors,
        status: r.status().as_u16(),
        body: r.text().await.unwrap(),
    }
}

fn json_of(path: &str, r: &Reply) -> Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", r.body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_answers_as_prometheus_over_the_same_blocks() {
    if !available(PROMETHEUS) || !available(PROMTOOL) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // Data ends a minute ago: /federate (5 min lookback) finds every series' last sample.
    let end = now / 60 * 60 - 60;
    let om = tmp.path().join("data.om");
    std::fs::write(&om, openmetrics(end)).unwrap();
    let theirs_dir = tmp.path().join("prometheus");
    let ours_dir = tmp.path().join("ours");
    common::promtool(&[
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        om.to_str().unwrap(),
        theirs_dir.to_str().unwrap(),
    ]);
    std::fs::create_dir_all(&ours_dir).unwrap();
    for e in std::fs::read_dir(&theirs_dir).unwrap() {
        let e = e.unwrap();
        if e.path().join("meta.json").exists() {
            copy_dir(&e.path(), &ours_dir.join(e.file_name()));
        }
    }

    let p = Prometheus::start(&theirs_dir, "global:\n  scrape_interval: 1h\n");
    let theirs = format!("http://127.0.0.1:{}", p.port);

    let db = Arc::new(Db::open(&ours_dir, Options::default().read_only(true)).unwrap());
    assert!(
        db.blocks().len() >= 2,
        "promtool wrote {} blocks",
        db.blocks().len()
    );
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = web::register_metrics(&mut registry, &db);
    let (reload_tx, _reloads) = mpsc::channel(1);
    let state = WebState::new(
        db.clone(),
        Arc::new(NoTargets),
        Arc::new(registry),
        reload_tx,
    );
    state.ready.store(true, Ordering::Relaxed);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ours = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(web::serve_listener(
        listener,
        WebOptions::default(),
        state,
        metrics,
        axum::Router::new(),
        async move {
            let _ = stopped.await;
        },
    ));

    let t = end - 1800; // an instant inside the data, off the sample grid
    let (qs, qe) = (end - 2 * 3600, end - 60);
    let rate = "sum by (job, code) (rate(http_requests_total[5m]))";
    let enc = common::url_encode;
    let range_form = |q: &str, step: &str| -> Vec<(&'static str, String)> {
        vec![
            ("query", q.to_string()),
            ("start", qs.to_string()),
            ("end", qe.to_string()),
            ("step", step.to_string()),
        ]
    };
    let none: Vec<(&'static str, String)> = Vec::new();
    let requests: Vec<Request> = vec![
        (
            "GET",
            format!("/api/v1/query?query=http_requests_total&time={t}"),
            none.clone(),
            Compare::Json,
        ),
        (
            "GET",
            format!("/api/v1/query?query={}&time={t}", enc(rate)),
            none.clone(),
            Compare::Json,
        ),
        (
            "GET",
            format!(
                "/api/v1/query?query={}&time={t}",
                enc("scalar(sum(node_load1))")
            ),
            none.clone(),
            Compare::Json,
        ),
        (
            "GET",
            format!("/api/v1/query?query={}&time={t}", enc("\"hello\"")),
            none.clone(),
            Compare::Json,
        ),
        (
            "GET",
            format!("/api/v1/query?query={}&time={t}", enc("node_load1[1m]")),
            none.clone(),
            Compare::Json,
        ),
        (
            "GET",
            format!("/api/v1/query?query=odd&time={t}"),
            none.clone(),
            Compare::Json,
        ),
        (
            "GET",
            format!("/api/v1/query?query=nothing_here&time={t}"),
            none.clone(),
            Compare::Json,
        ),
        (
            "POST",
            "/api/v1/query".to_string(),
            vec![
                ("query", "max(node_load1)".to_string()),
                ("time", t.to_string()),
            ],
            Compare::Json,
        ),
        (
            "GET",
            format!(
                "/api/v1/query_range?query={}&start={qs}&end={qe}&step=60",
                enc(rate)
            ),
            none.clone(),
            Compare::Json,
        ),
        (
            "POST",
            "/api/v1/query_range".to_string(),
            range_form(rate, "1m"),
            Compare::Json,
        ),
        (
            "POST",
            "/api/v1/query_range".to_string(),
            range_form("histogram_quantile(0.9, rate(lat_bucket[5m]))", "300"),
            Compare::Json,
        ),
        (
            "GET",
            format!("/api/v1/query_range?query=node_load1&start={qs}&end={qe}&step=15m"),
            none.clone(),
            Compare::Json,
        ),
        (
            "GET",
            format!(
                "/api/v1/series?match[]=node_load1&match[]={}",
                enc("{job=\"api\"}")
            ),
            none.clone(),
            Compare::Json,
        ),
        (
            "POST",
            "/api/v1/series".to_string(),
            vec![
                ("match[]", "lat_count".to_string()),
                ("match[]", "odd".to_string()),
            ],
            Compare::Json,
        ),
        (
            "GET",
            format!(
                "/api/v1/series?match[]=node_load1&start={}&end={}",
                end + 3600,
                end + 7200
            ),
            none.clone(),
            Compare::Json,
        ),
        (
            "GET",
            "/api/v1/labels".to_string(),
            none.clone(),
            Compare::Json,
        ),
        (
            "GET",
            format!("/api/v1/labels?match[]={}", enc("lat_bucket")),
            none.clone(),
            Compare::Json,
        ),
        (
            "GET",
            "/api/v1/label/job/values".to_string(),
            none.clone(),
            Compare::Json,
        ),
        (
            "GET",
            "/api/v1/label/__name__/values".to_string(),
            none.clone(),
            Compare::Json,
        ),
        (
            "GET",
            format!(
                "/api/v1/label/instance/values?match[]={}",
                enc("node_load1")
            ),
            none.clone(),
            Compare::Json,
        ),
        (
            "GET",
            "/api/v1/label/nope/values".to_string(),
            none.clone(),
            Compare::Json,
        ),
        (
            "GET",
            "/api/v1/metadata".to_string(),
            none.clone(),
            Compare::Json,
        ),
        (
            "GET",
            "/api/v1/metadata?metric=up&limit=1".to_string(),
            none.clone(),
            Compare::Json,
        ),
        (
            "GET",
            "/api/v1/targets".to_string(),
            none.clone(),
            Compare::Json,
        ),
        (
            "GET",
            "/api/v1/targets?state=dropped".to_string(),
            none.clone(),
            Compare::Json,
        ),
        (
            "GET",
            "/api/v1/targets/metadata?metric=up&limit=3".to_string(),
            none.clone(),
            Compare::Json,
        ),
        (
            "GET",
            "/api/v1/status/tsdb".to_string(),
            none.clone(),
            Compare::Json,
        ),
        (
            "GET",
            "/api/v1/status/buildinfo".to_string(),
            none.clone(),
            Compare::Shape,
        ),
        (
            "GET",
            "/api/v1/status/runtimeinfo".to_string(),
            none.clone(),
            Compare::Shape,
        ),
        (
            "GET",
            "/api/v1/status/config".to_string(),
            none.clone(),
            Compare::Shape,
        ),
        (
            "GET",
            format!(
                "/federate?match[]=node_load1&match[]={}&match[]=odd",
                enc("{__name__=~\"http_.*\",code=\"500\"}")
            ),
            none.clone(),
            Compare::Lines,
        ),
        ("GET", "/federate".to_string(), none.clone(), Compare::Lines),
        (
            "GET",
            "/-/healthy".to_string(),
            none.clone(),
            Compare::Lines,
        ),
        ("GET", "/-/ready".to_string(), none.clone(), Compare::Lines),
        // Errors.
        (
            "GET",
            "/api/v1/query_range?query=up".to_string(),
            none.clone(),
            Compare::Json,
        ),
        (
            "GET",
            "/api/v1/query_range?query=up&start=10&end=5&step=1".to_string(),
            none.clone(),
            Compare::Json,
        ),
        (
            "GET",
            "/api/v1/query_range?query=up&start=0&end=5&step=-1".to_string(),
            none.clone(),
            Compare::Json,
        ),
        (
            "GET",
            "/api/v1/query_range?query=up&start=0&end=100000&step=1".to_string(),
            none.clone(),
            Compare::Json,
        ),
        (
            "GET",
            "/api/v1/query?query=up&time=later".to_string(),
            none.clone(),
            Compare::Json,
        ),
        (
            "GET",
            "/api/v1/query?query=up&timeout=x".to_string(),
            none.clone(),
            Compare::Json,
        ),
        (
            "GET",
            format!("/api/v1/query?query={}", enc("sum(")),
            none.clone(),
            Compare::ErrorType,
        ),
        (
            "GET",
            format!(
                "/api/v1/query_range?query={}&start=0&end=1&step=1",
                enc("rate(x)")
            ),
            none.clone(),
            Compare::ErrorType,
        ),
        (
            "GET",
            format!(
                "/api/v1/query?query={}&time={t}",
                enc("http_requests_total + on(job) http_requests_total")
            ),
            none.clone(),
            Compare::ErrorType,
        ),
        (
            "GET",
            "/api/v1/series".to_string(),
            none.clone(),
            Compare::Json,
        ),
        (
            "GET",
            format!("/api/v1/series?match[]={}", enc("{job=~\".*\"}")),
            none.clone(),
            Compare::ErrorType,
        ),
        (
            "GET",
            "/api/v1/label/1x/values".to_string(),
            none.clone(),
            Compare::Json,
        ),
        (
            "GET",
            "/api/v1/metadata?limit=many".to_string(),
            none.clone(),
            Compare::Json,
        ),
        (
            "GET",
            "/api/v1/targets/metadata?limit=many".to_string(),
            none.clone(),
            Compare::Json,
        ),
        (
            "GET",
            "/api/v1/targets/metadata?match_target=up%7B".to_string(),
            none.clone(),
            Compare::Json,
        ),
        (
            "POST",
            "/api/v1/admin/tsdb/snapshot".to_string(),
            none.clone(),
            Compare::Json,
        ),
        (
            "POST",
            "/api/v1/admin/tsdb/delete_series?match[]=up".to_string(),
            none.clone(),
            Compare::Json,
        ),
        (
            "GET",
            "/federate?match[]=%7B".to_string(),
            none.clone(),
            Compare::Status,
        ),
        (
            "POST",
            "/-/reload".to_string(),
            none.clone(),
            Compare::Lines,
        ),
        ("GET", "/-/reload".to_string(), none.clone(), Compare::Lines),
        (
            "GET",
            "/api/v1/nonexistent".to_string(),
            none.clone(),
            Compare::Status,
        ),
    ];

    let c = reqwest::Client::new();
    let mut failures = Vec::new();
    for (method, path, form, how) in &requests {
        let a = send(&c, &ours, method, path, form).await;
        let b = send(&c, &theirs, method, path, form).await;
        let what = format!("{method} {path} {form:?}");
        if std::env::var_os("WEB_PROMETHEUS_SHOW").is_some() {
            eprintln!("{what}: {} {}", a.status, clip(&a.body));
        }
        if a.cors != b.cors {
            failures.push(format!(
                "{what}: CORS origin {:?} vs Prometheus' {:?}",
                a.cors, b.cors
            ));
        }
        if a.status != b.status {
            failures.push(format!(
                "{what}: status {} vs Prometheus' {}\n  ours:   {}\n  theirs: {}",
                a.status, b.status, a.body, b.body
            ));
            continue;
        }
        let same = match how {
            Compare::Status => true,
            Compare::Lines => {
                let lines = |s: &str| {
                    let mut l: Vec<String> = s.lines().map(str::to_string).collect();
                    l.sort();
                    l
                };
                lines(&a.body) == lines(&b.body)
            }
            Compare::Json => {
                let (x, y) = (json_of(path, &a), json_of(path, &b));
                close(&sorted(&x), &sorted(&y))
            }
            Compare::ErrorType => {
                let (x, y) = (json_of(path, &a), json_of(path, &b));
                x["status"] == y["status"] && x["errorType"] == y["errorType"]
            }
            Compare::Shape => {
                let (x, y) = (json_of(path, &a), json_of(path, &b));
                shape(&x) == shape(&y)
            }
        };
        if !same {
            failures.push(format!(
                "{what}: bodies differ\n  ours:   {}\n  theirs: {}",
                clip(&a.body),
                clip(&b.body)
            ));
        }
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    p.stop();
    assert!(
        failures.is_empty(),
        "{} of {} requests differ:\n{}",
        failures.len(),
        requests.len(),
        failures.join("\n")
    );
    eprintln!(
        "{} requests answered as Prometheus 2.42 does",
        requests.len()
    );
}

fn clip(s: &str) -> String {
    if s.len() > 1500 {
        let head: String = s.chars().take(1500).collect();
        format!("{head}... ({} bytes)", s.len())
    } else {
        s.to_string()
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// Starts our web layer over `db` on a free port; returns its base URL, the stop sender and the
/// server task.
async fn start_ours(
    db: Arc<Db>,
) -> (
    String,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), web::WebError>>,
) {
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = web::register_metrics(&mut registry, &db);
    let (reload_tx, _reloads) = mpsc::channel(1);
    let state = WebState::new(db, Arc::new(NoTargets), Arc::new(registry), reload_tx);
    state.ready.store(true, Ordering::Relaxed);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(web::serve_listener(
        listener,
        WebOptions::default(),
        state,
        metrics,
        axum::Router::new(),
        async move {
            let _ = stopped.await;
        },
    ));
    (url, stop, server)
}

/// The head side: a WAL our database wrote, replayed by Prometheus and by us; the TSDB status
/// (head statistics and cardinality lists), queries, series, labels and federation agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_statistics_and_queries_match_prometheus_over_the_same_wal() {
    if !available(PROMETHEUS) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let theirs_dir = tmp.path().join("prometheus");
    let ours_dir = tmp.path().join("ours");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // 25 minutes of samples up to a minute ago: one head chunk range, no compaction.
    let (first, last) = (now - 26 * 60_000 + 123, now - 60_000 + 123);
    {
        let db = Db::open(&theirs_dir, Options::default().background_compaction(false)).unwrap();
        let mut app = db.appender();
        // Cardinalities that differ per name and label, so the top-10 lists have no ties at
        // their cut: metric m{k} has k+1 series over label `i`, plus `job` and a rare label.
        for k in 0..14i64 {
            for i in 0..=k {
                let name = format!("m{k:02}");
                let inst = format!("i{i}");
                let mut pairs = vec![("__name__", name.as_str()), ("i", inst.as_str())];
                let job = if i % 3 == 0 { "x" } else { "y" };
                pairs.push(("job", job));
                if k == 13 && i == 0 {
                    pairs.push(("rare", "yes"));
                }
                let l = tsdb::labels::Labels::from_pairs(&pairs);
                let mut t = first + i * 7;
                while t <= last {
                    app.append(&l, t, ((t / 15_000) % 100) as f64 + k as f64)
                        .unwrap();
                    t += 15_000;
                }
            }
        }
        app.commit().unwrap();
    }
    copy_dir(&theirs_dir, &ours_dir);
    let _ = std::fs::remove_file(ours_dir.join("lock"));
    let p = Prometheus::start(&theirs_dir, "global:\n  scrape_interval: 1h\n");
    let theirs = format!("http://127.0.0.1:{}", p.port);
    let db =
        Arc::new(Db::open(&ours_dir, Options::default().background_compaction(false)).unwrap());
    let (ours, stop, server) = start_ours(db).await;

    let t = (now - 5 * 60_000) / 1000;
    let (qs, qe) = ((first + 60_000) / 1000, last / 1000);
    let enc = common::url_encode;
    let none: Vec<(&'static str, String)> = Vec::new();
    let requests: Vec<Request> = vec![
        (
            "GET",
            "/api/v1/status/tsdb".to_string(),
            none.clone(),
            Compare::Json,
        ),
        (
            "GET",
            format!("/api/v1/query?query={}&time={t}", enc("sum by (job) (m13)")),
            none.clone(),
            Compare::Json,
        ),
        (
            "GET",
            format!(
                "/api/v1/query?query={}&time={t}",
                enc("count by (__name__) ({job=\"x\"})")
            ),
            none.clone(),
            Compare::Json,
        ),
        (
            "GET",
            format!(
                "/api/v1/query_range?query={}&start={qs}&end={qe}&step=60",
                enc("max_over_time(m05[2m])")
            ),
            none.clone(),
            Compare::Json,
        ),
        (
            "GET",
            format!("/api/v1/series?match[]={}", enc("{rare=\"yes\"}")),
            none.clone(),
            Compare::Json,
        ),
        (
            "GET",
            format!("/api/v1/series?match[]=m03&start={qs}&end={qe}"),
            none.clone(),
            Compare::Json,
        ),
        (
            "GET",
            "/api/v1/labels".to_string(),
            none.clone(),
            Compare::Json,
        ),
        (
            "GET",
            "/api/v1/label/__name__/values".to_string(),
            none.clone(),
            Compare::Json,
        ),
        (
            "GET",
            format!("/api/v1/label/i/values?match[]={}", enc("m02")),
            none.clone(),
            Compare::Json,
        ),
        (
            "GET",
            format!("/federate?match[]={}&match[]=m00", enc("{rare!=\"\"}")),
            none.clone(),
            Compare::Lines,
        ),
    ];
    let c = reqwest::Client::new();
    let mut failures = Vec::new();
    for (method, path, form, how) in &requests {
        let a = send(&c, &ours, method, path, form).await;
        let b = send(&c, &theirs, method, path, form).await;
        if std::env::var_os("WEB_PROMETHEUS_SHOW").is_some() {
            eprintln!("{method} {path}: {} {}", a.status, clip(&a.body));
        }
        let same = a.status == b.status
            && match how {
                Compare::Lines => {
                    let lines = |s: &str| {
                        let mut l: Vec<String> = s.lines().map(str::to_string).collect();
                        l.sort();
                        l
                    };
                    lines(&a.body) == lines(&b.body)
                }
                _ => close(&sorted(&json_of(path, &a)), &sorted(&json_of(path, &b))),
            };
        if !same {
            failures.push(format!(
                "{method} {path}: {} vs {}\n  ours:   {}\n  theirs: {}",
                a.status,
                b.status,
                clip(&a.body),
                clip(&b.body)
            ));
        }
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    p.stop();
    assert!(
        failures.is_empty(),
        "{} of {} requests differ:\n{}",
        failures.len(),
        requests.len(),
        failures.join("\n")
    );
}
