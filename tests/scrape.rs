//! The scrape manager against targets served in-process (axum on 127.0.0.1:0): request headers,
//! content negotiation, gzip, timeouts, staleness when targets go away, limits, reload and file
//! SD. Intervals are 500 ms so that the whole file runs in a few seconds.
#![cfg(feature = "server")]

mod common;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Response, Uri};
use tsdb::config::Config;
use tsdb::labels::{MatchType, Matcher};
use tsdb::server::scrape::ScrapeManager;
use tsdb::server::{Health, ScrapeView};
use tsdb::{Db, Options};

const STALE: u64 = 0x7ff0000000000002;

/// What a test target serves, and what it saw.
#[derive(Default)]
struct TargetState {
    body: Vec<u8>,
    content_type: String,
    gzip: bool,
    delay: Duration,
    status: u16,
    requests: Vec<(String, HeaderMap)>,
}

struct TestTarget {
    addr: String,
    state: Arc<Mutex<TargetState>>,
}

impl TestTarget {
    async fn start(body: &str) -> TestTarget {
        let state = Arc::new(Mutex::new(TargetState {
            body: body.as_bytes().to_vec(),
            content_type: "text/plain; version=0.0.4; charset=utf-8".into(),
            status: 200,
            ..Default::default()
        }));
        let st = Arc::clone(&state);
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
            let st = Arc::clone(&st);
            async move {
                let (body, ct, gzip, delay, status) = {
                    let mut s = st.lock().unwrap();
                    s.requests.push((uri.to_string(), headers));
                    (
                        s.body.clone(),
                        s.content_type.clone(),
                        s.gzip,
                        s.delay,
                        s.status,
                    )
                };
                tokio::time::sleep(delay).await;
                let mut r = Response::builder()
                    .status(status)
                    .header("Content-Type", ct);
                let body = if gzip {
                    r = r.header("Content-Encoding", "gzip");
                    gzip_stored(&body)
                } else {
                    body
                };
                r.body(Body::from(body)).unwrap()
            }
        });
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        TestTarget { addr, state }
    }

    fn set(&self, f: impl FnOnce(&mut TargetState)) {
        f(&mut self.state.lock().unwrap())
    }

    fn requests(&self) -> usize {
        self.state.lock().unwrap().requests.len()
    }
}

/// A gzip member with the data in stored (uncompressed) deflate blocks.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    let mut chunks = data.chunks(65535).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(c) = chunks.next() {
        out.push(u8::from(chunks.peek().is_none()));
        let n = c.len() as u16;
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&(!n).to_le_bytes());
        out.extend_from_slice(c);
    }
    out.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn config(yaml: &str) -> Config {
    Config::parse(yaml, std::path::Path::new("prometheus.yml")).unwrap()
}

fn open_db() -> (tempfile::TempDir, Arc<Db>) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    (dir, Arc::new(db))
}

fn manager(db: &Arc<Db>) -> ScrapeManager {
    let mut reg = prometheus_client::registry::Registry::default();
    ScrapeManager::new(Arc::clone(db), &mut reg)
}

/// Samples of every series whose name matches `name_re`, by label text; StaleNaN as NaN with
/// the flag.
fn dump(db: &Db, name_re: &str) -> BTreeMap<String, Vec<(i64, f64, bool)>> {
    let q = db.querier(0, i64::MAX / 2);
    let m = Matcher::new(MatchType::Regexp, "__name__", name_re).unwrap();
    q.select(&[m])
        .unwrap()
        .into_iter()
        .map(|s| {
            let v = s
                .samples()
                .map(|(t, v)| (t, v, v.to_bits() == STALE))
                .collect();
            (s.labels().to_string(), v)
        })
        .collect()
}

async fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_params_auth_and_labels() {
    let t = TestTarget::start("# HELP m A metric.\n# TYPE m gauge\nm{a=\"1\"} 7\n").await;
    let (_d, db) = open_db();
    let m = manager(&db);
    let yaml = format!(
        r#"
scrape_configs:
  - job_name: hdr
    scrape_interval: 500ms
    scrape_timeout: 300ms
    metrics_path: /probe
    params: {{module: [http_2xx], x: ["a b"]}}
    basic_auth: {{username: u, password: p}}
    static_configs:
      - targets: ['{}']
        labels: {{env: test}}
"#,
        t.addr
    );
    m.apply_config(&config(&yaml)).await.unwrap();
    wait_for("two scrapes", 5, || t.requests() >= 2).await;
    let (uri, h) = t.state.lock().unwrap().requests[0].clone();
    assert_eq!(uri, "/probe?module=http_2xx&x=a+b");
    assert_eq!(
        h["accept"],
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    );
    assert_eq!(h["accept-encoding"], "gzip");
    assert_eq!(h["x-prometheus-scrape-timeout-seconds"], "0.3");
    assert!(h["user-agent"].to_str().unwrap().starts_with("tsdbctl/"));
    assert_eq!(h["authorization"], "Basic dTpw");
    let (active, dropped) = m.targets();
    assert!(dropped.is_empty());
    assert_eq!(active.len(), 1);
    let ti = &active[0];
    assert_eq!(
        ti.scrape_url,
        format!("http://{}/probe?module=http_2xx&x=a+b", t.addr)
    );
    assert_eq!(
        ti.labels.to_string(),
        format!(r#"{{env="test", instance="{}", job="hdr"}}"#, t.addr)
    );
    assert_eq!(ti.discovered_labels.get("__param_module"), Some("http_2xx"));
    wait_for("health", 5, || m.targets().0[0].health == Health::Up).await;
    let md = m.metadata();
    assert_eq!(md.len(), 1);
    assert_eq!(md[0].0, "m");
    assert_eq!(md[0].1.kind, "gauge");
    assert_eq!(md[0].1.help, "A metric.");
    m.stop().await;
    let d = dump(&db, "m");
    let s = &d[&format!(
        r#"m{{a="1", env="test", instance="{}", job="hdr"}}"#,
        t.addr
    )];
    assert!(s.len() >= 2 && s.iter().all(|&(_, v, _)| v == 7.0), "{s:?}");
    // Timestamps aligned on the interval grid: consecutive scrapes 500 ms apart.
    assert!(
        s.windows(2)
            .all(|w| (485..=515).contains(&(w[1].0 - w[0].0))),
        "{s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openmetrics_gzip_and_text() {
    let om = "# TYPE c counter\n# HELP c Calls.\nc_total 3.0\nc_created 1.7e9\n# EOF\n";
    let t1 = TestTarget::start(om).await;
    t1.set(|s| {
        s.content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8".into();
        s.gzip = true;
    });
    // The same text read as 0.0.4 fails (`# EOF` is a comment there, but `c_created 1.7e9` is
    // fine, so use something only OpenMetrics accepts: a timestamp in seconds).
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 10;
    let t2 = TestTarget::start(&format!("x 1 {now_s}.5\n# EOF\n")).await;
    t2.set(|s| s.content_type = "application/openmetrics-text; version=1.0.0".into());
    let t3 = TestTarget::start(&format!("x 1 {now_s}.5\n")).await;
    let (_d, db) = open_db();
    let m = manager(&db);
    let yaml = format!(
        "scrape_configs:\n  - job_name: om\n    scrape_interval: 500ms\n    scrape_timeout: 400ms\n    static_configs:\n      - targets: ['{}', '{}', '{}']\n",
        t1.addr, t2.addr, t3.addr
    );
    m.apply_config(&config(&yaml)).await.unwrap();
    wait_for("scrapes", 5, || {
        m.targets().0.iter().all(|t| t.health != Health::Unknown)
    })
    .await;
    let md = m.metadata();
    m.stop().await;
    let d = dump(&db, "c_total|c_created|x|up");
    let k = |n: &str, a: &str| format!(r#"{n}{{instance="{a}", job="om"}}"#);
    assert_eq!(d[&k("c_total", &t1.addr)][0].1, 3.0);
    assert_eq!(d[&k("c_created", &t1.addr)][0].1, 1.7e9);
    assert_eq!(d[&k("up", &t1.addr)][0].1, 1.0);
    assert_eq!(d[&k("x", &t2.addr)][0].0, now_s as i64 * 1000 + 500);
    assert_eq!(d[&k("up", &t2.addr)][0].1, 1.0);
    // 0.0.4 timestamps are integers (ms): the float one fails the scrape.
    assert_eq!(d[&k("up", &t3.addr)][0].1, 0.0);
    assert!(!d.contains_key(&k("x", &t3.addr)));
    assert_eq!(md.len(), 1);
    assert_eq!((md[0].0.as_str(), md[0].1.kind.as_str()), ("c", "counter"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_target_times_out_and_never_delays_a_fast_one() {
    let slow = TestTarget::start("s 1\n").await;
    slow.set(|s| s.delay = Duration::from_secs(5));
    let fast = TestTarget::start("f 1\n").await;
    let dead = "127.0.0.1:1";
    let (_d, db) = open_db();
    let m = manager(&db);
    let yaml = format!(
        "scrape_configs:\n  - job_name: t\n    scrape_interval: 500ms\n    scrape_timeout: 200ms\n    static_configs:\n      - targets: ['{}', '{}', '{}']\n",
        slow.addr, fast.addr, dead
    );
    m.apply_config(&config(&yaml)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let (active, _) = m.targets();
    let by = |a: &str| {
        active
            .iter()
            .find(|t| t.scrape_url.contains(a))
            .unwrap()
            .clone()
    };
    let s = by(&slow.addr);
    assert_eq!(s.health, Health::Down);
    assert_eq!(
        s.last_error,
        format!(
            "Get \"http://{}/metrics\": context deadline exceeded",
            slow.addr
        )
    );
    assert!(
        s.last_scrape_duration_s >= 0.19 && s.last_scrape_duration_s < 1.0,
        "{}",
        s.last_scrape_duration_s
    );
    let dd = by(dead);
    assert_eq!(dd.health, Health::Down);
    assert!(
        dd.last_error
            .starts_with("Get \"http://127.0.0.1:1/metrics\": "),
        "{}",
        dd.last_error
    );
    m.stop().await;
    // The fast target was scraped every 500 ms: 6 or 7 times in 3.2 s after its offset.
    let d = dump(&db, "f|up");
    let f = &d[&format!(r#"f{{instance="{}", job="t"}}"#, fast.addr)];
    assert!(f.len() >= 5, "{f:?}");
    assert!(
        f.windows(2)
            .all(|w| (485..=515).contains(&(w[1].0 - w[0].0))),
        "{f:?}"
    );
    let up_slow = &d[&format!(r#"up{{instance="{}", job="t"}}"#, slow.addr)];
    assert!(
        up_slow.len() >= 5 && up_slow.iter().all(|s| s.1 == 0.0),
        "{up_slow:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_target_gets_stale_markers_and_reload_keeps_others_running() {
    let a = TestTarget::start("a 1\n").await;
    let b = TestTarget::start("b 1\n").await;
    let (_d, db) = open_db();
    let m = manager(&db);
    let both = format!(
        "scrape_configs:\n  - job_name: j\n    scrape_interval: 500ms\n    scrape_timeout: 400ms\n    static_configs:\n      - targets: ['{}', '{}']\n",
        a.addr, b.addr
    );
    m.apply_config(&config(&both)).await.unwrap();
    wait_for("scrapes", 5, || a.requests() >= 2 && b.requests() >= 2).await;
    // `b` goes; `a` keeps its loop (only discovery changed), and a new job appears.
    let c = TestTarget::start("c 1\n").await;
    let only_a = format!(
        "scrape_configs:\n  - job_name: j\n    scrape_interval: 500ms\n    scrape_timeout: 400ms\n    static_configs:\n      - targets: ['{}']\n  - job_name: k\n    scrape_interval: 500ms\n    scrape_timeout: 400ms\n    static_configs:\n      - targets: ['{}']\n",
        a.addr, c.addr
    );
    let reload_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    m.apply_config(&config(&only_a)).await.unwrap();
    assert_eq!(m.targets().0.len(), 2);
    // Markers come after two intervals and a tenth.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    m.stop().await;
    let d = dump(&db, "a|b|up");
    let sa = &d[&format!(r#"a{{instance="{}", job="j"}}"#, a.addr)];
    assert!(sa.iter().all(|s| !s.2), "a must not go stale: {sa:?}");
    assert!(
        sa.windows(2)
            .all(|w| (485..=515).contains(&(w[1].0 - w[0].0))),
        "a kept its schedule: {sa:?}"
    );
    assert!(sa.last().unwrap().0 > reload_at + 1000);
    let sb = &d[&format!(r#"b{{instance="{}", job="j"}}"#, b.addr)];
    let last = sb.last().unwrap();
    assert!(last.2, "b ends with a stale marker: {sb:?}");
    let gap = last.0 - sb[sb.len() - 2].0;
    assert!(
        (485..600).contains(&gap),
        "marker at the next scrape's time: {sb:?}"
    );
    let ub = &d[&format!(r#"up{{instance="{}", job="j"}}"#, b.addr)];
    assert!(ub.last().unwrap().2, "{ub:?}");
    // Shutdown writes no markers.
    let ua = &d[&format!(r#"up{{instance="{}", job="j"}}"#, a.addr)];
    assert!(!ua.last().unwrap().2, "{ua:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_pool_restarts_with_its_cache_and_limits_apply() {
    let a = TestTarget::start("a 1\nb 2\nc 3\n").await;
    let (_d, db) = open_db();
    let mut reg = prometheus_client::registry::Registry::default();
    let m = ScrapeManager::new(Arc::clone(&db), &mut reg);
    let cfg = |limit: &str| {
        format!(
            "scrape_configs:\n  - job_name: j\n    scrape_interval: 500ms\n    scrape_timeout: 400ms\n{limit}    static_configs:\n      - targets: ['{}']\n",
            a.addr
        )
    };
    m.apply_config(&config(&cfg(""))).await.unwrap();
    wait_for("scrape", 5, || m.targets().0[0].health == Health::Up).await;
    m.apply_config(&config(&cfg("    sample_limit: 2\n")))
        .await
        .unwrap();
    wait_for("limit", 5, || m.targets().0[0].health == Health::Down).await;
    assert_eq!(m.targets().0[0].last_error, "sample limit exceeded");
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
    for want in [
        "prometheus_target_scrape_pool_targets{scrape_job=\"j\"} 1\n",
        "prometheus_target_scrape_pool_reloads_total 1\n",
    ] {
        assert!(text.contains(want), "{want} not in\n{text}");
    }
    let limited: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("prometheus_target_scrapes_exceeded_sample_limit_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(limited >= 1.0);
    m.stop().await;
    let d = dump(&db, "a|up");
    let sa = &d[&format!(r#"a{{instance="{}", job="j"}}"#, a.addr)];
    // The restart handed the cache over: no stale marker for `a` at any point.
    assert!(sa.iter().all(|s| !s.2), "{sa:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sd_targets_follow_the_file() {
    let a = TestTarget::start("a 1\n").await;
    let b = TestTarget::start("b 1\n").await;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("t.json");
    std::fs::write(
        &f,
        format!(r#"[{{"targets": ["{}"], "labels": {{"g": "1"}}}}]"#, a.addr),
    )
    .unwrap();
    let (_d, db) = open_db();
    let m = manager(&db);
    let yaml = format!(
        "scrape_configs:\n  - job_name: f\n    scrape_interval: 500ms\n    scrape_timeout: 400ms\n    file_sd_configs:\n      - files: ['{}/*.json']\n    relabel_configs: []\n",
        dir.path().display()
    );
    m.apply_config(&config(&yaml)).await.unwrap();
    let (active, _) = m.targets();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].labels.get("g"), Some("1"));
    assert_eq!(
        active[0].discovered_labels.get("__meta_filepath"),
        Some(f.display().to_string().as_str())
    );
    assert_eq!(active[0].labels.get("__meta_filepath"), None);
    wait_for("a scraped", 5, || a.requests() >= 1).await;
    std::fs::write(&f, format!(r#"[{{"targets": ["{}"]}}]"#, b.addr)).unwrap();
    wait_for("file change seen", 5, || {
        let (t, _) = m.targets();
        t.len() == 1 && t[0].scrape_url.contains(&b.addr)
    })
    .await;
    wait_for("b scraped", 5, || b.requests() >= 1).await;
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relabeling_drops_targets_and_series() {
    let a = TestTarget::start("keep_me 1\ndrop_me 2\n").await;
    let b = TestTarget::start("x 1\n").await;
    let (_d, db) = open_db();
    let m = manager(&db);
    let yaml = format!(
        r#"
scrape_configs:
  - job_name: r
    scrape_interval: 500ms
    scrape_timeout: 400ms
    static_configs:
      - targets: ['{}', '{}']
        labels: {{team: a}}
    relabel_configs:
      - source_labels: [__address__]
        regex: '{}'
        action: drop
      - source_labels: [team]
        target_label: owner
        replacement: 'team-$1'
    metric_relabel_configs:
      - source_labels: [__name__]
        regex: drop_.*
        action: drop
"#,
        a.addr,
        b.addr,
        regex_escape(&b.addr)
    );
    m.apply_config(&config(&yaml)).await.unwrap();
    let (active, dropped) = m.targets();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].labels.get("owner"), Some("team-a"));
    assert_eq!(dropped.len(), 1);
    assert_eq!(
        dropped[0].discovered_labels.get("__address__"),
        Some(b.addr.as_str())
    );
    wait_for("two scrapes", 5, || a.requests() >= 2).await;
    m.stop().await;
    assert_eq!(b.requests(), 0);
    let d = dump(&db, ".+");
    let k = |n: &str| {
        format!(
            r#"{n}{{instance="{}", job="r", owner="team-a", team="a"}}"#,
            a.addr
        )
    };
    assert!(d.contains_key(&k("keep_me")), "{:?}", d.keys());
    assert!(!d.keys().any(|s| s.starts_with("drop_me")));
    let post = &d[&k("scrape_samples_post_metric_relabeling")];
    assert!(post.iter().all(|s| s.1 == 1.0), "{post:?}");
    let scraped = &d[&k("scrape_samples_scraped")];
    assert!(scraped.iter().all(|s| s.1 == 2.0), "{scraped:?}");
}

fn regex_escape(s: &str) -> String {
    s.replace('.', "\\.")
}

/// A CA, a server certificate for `target.test` and a client certificate, signed by the CA
/// (`ca.crt`, `srv.{crt,key}`, `cli.{crt,key}`); false when openssl is missing (skip).
fn make_certs(dir: &std::path::Path) -> bool {
    if !common::make_ca(dir) {
        return false;
    }
    common::issue_cert(dir, "srv", "DNS:target.test", "serverAuth");
    common::issue_cert(dir, "cli", "DNS:client.test", "clientAuth");
    true
}

/// An HTTPS target requiring a client certificate from the CA; serves `body` to every request.
async fn tls_target(dir: &std::path::Path, body: &'static str) -> String {
    use rustls::pki_types::CertificateDer;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let certs: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut read("srv.crt").as_slice())
            .collect::<Result<_, _>>()
            .unwrap();
    let key = rustls_pemfile::private_key(&mut read("srv.key").as_slice())
        .unwrap()
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut read("ca.crt").as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::clone(&provider),
    )
    .build()
    .unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(s).await else {
                    return;
                };
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_ca_server_name_client_cert_and_insecure() {
    let certs = tempfile::tempdir().unwrap();
    let c = certs.path();
    if !make_certs(c) {
        return;
    }
    let addr = tls_target(c, "secure 1\n").await;
    let (_d, db) = open_db();
    let m = manager(&db);
    let p = |f: &str| c.join(f).display().to_string();
    let job = |name: &str, tls: String| {
        format!(
            "  - job_name: {name}\n    scheme: https\n    scrape_interval: 500ms\n    scrape_timeout: 400ms\n    tls_config: {tls}\n    static_configs:\n      - targets: ['{addr}']\n"
        )
    };
    let client = format!(
        "cert_file: '{}', key_file: '{}'",
        p("cli.crt"),
        p("cli.key")
    );
    let yaml = format!(
        "scrape_configs:\n{}{}{}{}",
        job(
            "named",
            format!(
                "{{ca_file: '{}', server_name: target.test, {client}}}",
                p("ca.crt")
            )
        ),
        job(
            "unnamed",
            format!("{{ca_file: '{}', {client}}}", p("ca.crt"))
        ),
        job(
            "insecure",
            format!("{{insecure_skip_verify: true, {client}}}")
        ),
        job(
            "nocert",
            format!("{{ca_file: '{}', server_name: target.test}}", p("ca.crt"))
        ),
    );
    m.apply_config(&config(&yaml)).await.unwrap();
    wait_for("all scraped", 10, || {
        m.targets().0.iter().all(|t| t.health != Health::Unknown)
    })
    .await;
    let errors: BTreeMap<String, String> = m
        .targets()
        .0
        .into_iter()
        .map(|t| (t.scrape_pool, t.last_error))
        .collect();
    m.stop().await;
    assert!(errors["unnamed"].contains("certificate"), "{errors:?}");
    let d = dump(&db, "up");
    let up = |job: &str| d[&format!(r#"up{{instance="{addr}", job="{job}"}}"#)][0].1;
    assert_eq!(up("named"), 1.0);
    assert_eq!(up("insecure"), 1.0);
    assert_eq!(
        up("unnamed"),
        0.0,
        "the certificate names target.test, not 127.0.0.1"
    );
    assert_eq!(
        up("nocert"),
        0.0,
        "the target requires a client certificate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_limit_fails_every_target_of_the_pool() {
    let a = TestTarget::start("a 1\n").await;
    let b = TestTarget::start("b 1\n").await;
    let (_d, db) = open_db();
    let m = manager(&db);
    let yaml = format!(
        "scrape_configs:\n  - job_name: l\n    target_limit: 1\n    scrape_interval: 500ms\n    scrape_timeout: 400ms\n    static_configs:\n      - targets: ['{}', '{}']\n",
        a.addr, b.addr
    );
    m.apply_config(&config(&yaml)).await.unwrap();
    wait_for("scrapes", 5, || {
        m.targets().0.iter().all(|t| t.health == Health::Down)
    })
    .await;
    for t in m.targets().0 {
        assert_eq!(
            t.last_error,
            "target_limit exceeded (number of targets: 2, limit: 1)"
        );
    }
    m.stop().await;
    // Nothing was fetched.
    assert_eq!(a.requests() + b.requests(), 0);
}
