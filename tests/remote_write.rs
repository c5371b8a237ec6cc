//! Remote write end to end against real peers: our WAL-fed sender into VictoriaMetrics and into
//! Prometheus 2.42 (`--web.enable-remote-write-receiver`), Prometheus remote-writing into our
//! receiver, and a receiver that is down while the sender restarts (nothing lost, nothing sent
//! twice).
#![cfg(feature = "server")]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tsdb::labels::{Labels, MatchType, Matcher};
use tsdb::server::remote::{receiver_router, RemoteWriter};
use tsdb::{Db, FsyncPolicy, Options};

const VICTORIA: &str = "/usr/bin/victoria-metrics";

type Samples = BTreeMap<Labels, Vec<(i64, u64)>>;

use common::free_port;

fn open_db(dir: &Path) -> Arc<Db> {
    Arc::new(
        Db::open(
            dir,
            Options::default()
                .fsync(FsyncPolicy::Never)
                .background_compaction(false),
        )
        .unwrap(),
    )
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A remote_write config for `url`, with short deadlines so tests do not wait on defaults.
fn config(url: &str, extra: &str) -> tsdb::config::Config {
    let yaml = format!(
        "global:\n  external_labels: {{}}\nremote_write:\n  - url: {url}\n    name: test\n    queue_config:\n      batch_send_deadline: 100ms\n      min_backoff: 50ms\n      max_backoff: 200ms\n      max_samples_per_send: 100\n      min_shards: 2\n{extra}"
    );
    serde_yaml::from_str(&yaml).unwrap()
}

/// Appends `n` samples to each of `series` series named `name`, one commit per timestamp;
/// values exact in few decimal digits (VictoriaMetrics stores decimals), some negative.
fn append(db: &Db, name: &str, series: usize, t0: i64, n: usize) -> Samples {
    let mut want = Samples::new();
    for i in 0..n {
        let t = t0 + i as i64 * 1000;
        let mut app = db.appender();
        for s in 0..series {
            let l = Labels::from_pairs(&[("__name__", name), ("instance", &format!("i{s}"))]);
            let v = ((i * 37 + s * 11) % 1000) as f64 / 8.0 - 40.0;
            app.append(&l, t, v).unwrap();
            want.entry(l).or_default().push((t, v.to_bits()));
        }
        app.commit().unwrap();
    }
    want
}

fn merge(a: &mut Samples, b: Samples) {
    for (l, s) in b {
        a.entry(l).or_default().extend(s);
    }
}

/// Everything in `db` for metric `name`, values as bits.
fn stored(db: &Db, name: &str) -> Samples {
    let q = db.querier(i64::MIN / 2, i64::MAX / 2);
    q.select(&[Matcher::equal("__name__", name)])
        .unwrap()
        .into_iter()
        .map(|s| {
            let v: Vec<(i64, u64)> = s.samples().map(|(t, v)| (t, v.to_bits())).collect();
            (s.labels().clone(), v)
        })
        .collect()
}

async fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A child process killed on drop.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn logs(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn spawn(bin: &str, args: &[String], log: PathBuf) -> Proc {
    let child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Proc { child, log }
}

async fn get(url: &str) -> Option<(u16, String)> {
    let r = reqwest::get(url).await.ok()?;
    let code = r.status().as_u16();
    Some((code, r.text().await.ok()?))
}

async fn wait_ready(url: &str, p: &Proc) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((200, _)) = get(url).await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} not ready; log:\n{}",
            p.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn labels_of(m: &serde_json::Map<String, serde_json::Value>) -> Labels {
    let pairs: Vec<(String, String)> = m
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    let refs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    Labels::from_pairs(&refs)
}

/// Sends until the writer's position has caught up: every sample appended so far is
/// acknowledged once `sent` reports the whole count.
async fn stop_writer(w: &RemoteWriter) {
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_into_victoria_metrics() {
    if !common::available(VICTORIA) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let vm = spawn(
        VICTORIA,
        &[
            format!("-storageDataPath={}", tmp.path().join("vm").display()),
            format!("-httpListenAddr=127.0.0.1:{port}"),
            "-retentionPeriod=100y".to_string(),
        ],
        tmp.path().join("vm.log"),
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&format!("{base}/health"), &vm).await;

    let db = open_db(&tmp.path().join("db"));
    let mut reg = prometheus_client::registry::Registry::default();
    let w = RemoteWriter::new(db.clone(), &tmp.path().join("db"), &mut reg);
    w.apply_config(&config(&format!("{base}/api/v1/write"), ""))
        .await
        .unwrap();
    // The new queue starts at the WAL's end: let it get there before appending.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = now_ms() / 1000 * 1000 - 3_600_000;
    let want = append(&db, "rw_vm_test", 20, t0, 150);
    let total: usize = want.values().map(Vec::len).sum();

    let export = format!(
        "{base}/api/v1/export?match[]={}",
        common::url_encode("{__name__=\"rw_vm_test\"}")
    );
    let mut got = Samples::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let _ = get(&format!("{base}/internal/force_flush")).await;
        got.clear();
        if let Some((200, body)) = get(&export).await {
            for line in body.lines().filter(|l| !l.is_empty()) {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                let l = labels_of(v["metric"].as_object().unwrap());
                let ts = v["timestamps"].as_array().unwrap();
                let vs = v["values"].as_array().unwrap();
                let e = got.entry(l).or_default();
                for (t, x) in ts.iter().zip(vs) {
                    e.push((t.as_i64().unwrap(), x.as_f64().unwrap().to_bits()));
                }
            }
        }
        for s in got.values_mut() {
            s.sort();
        }
        let n: usize = got.values().map(Vec::len).sum();
        if n >= total || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop_writer(&w).await;
    assert_eq!(got, want, "VictoriaMetrics log:\n{}", vm.logs());
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
    assert!(
        text.contains(&format!(
            "prometheus_remote_storage_samples_total{{remote_name=\"test\",url=\"{base}/api/v1/write\"}} {total}"
        )),
        "{text}"
    );
    assert!(text.contains("prometheus_remote_storage_samples_failed_total{remote_name=\"test\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_into_prometheus() {
    if !common::available(common::PROMETHEUS) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let pdir = tmp.path().join("prom");
    fs::create_dir_all(&pdir).unwrap();
    fs::write(pdir.join("prometheus.yml"), "global: {}\n").unwrap();
    let prom = spawn(
        common::PROMETHEUS,
        &[
            format!("--storage.tsdb.path={}", pdir.display()),
            format!("--config.file={}", pdir.join("prometheus.yml").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--web.enable-remote-write-receiver".to_string(),
        ],
        tmp.path().join("prom.log"),
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&format!("{base}/-/ready"), &prom).await;

    let db = open_db(&tmp.path().join("db"));
    let mut reg = prometheus_client::registry::Registry::default();
    let w = RemoteWriter::new(db.clone(), &tmp.path().join("db"), &mut reg);
    // External labels are added; a relabel rule drops one series and renames a label.
    let mut cfg = config(
        &format!("{base}/api/v1/write"),
        "    write_relabel_configs:\n      - {source_labels: [instance], regex: i3, action: drop}\n",
    );
    cfg.global
        .external_labels
        .insert("cluster".into(), "c1".into());
    w.apply_config(&cfg).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Prometheus accepts samples within its head's range: recent ones.
    let t0 = now_ms() / 1000 * 1000 - 300_000;
    let mut want = append(&db, "rw_prom_test", 5, t0, 120);
    // Arbitrary float bits survive (Prometheus stores float64 as is), NaN payloads aside.
    let odd = Labels::from_pairs(&[("__name__", "rw_prom_test"), ("instance", "odd")]);
    let mut app = db.appender();
    let odd_values = [
        0.1 + 0.2,
        1e-300,
        -1.7976931348623157e308,
        1.0 / 3.0,
        5e-324,
    ];
    for (i, v) in odd_values.iter().enumerate() {
        app.append(&odd, t0 + i as i64 * 1000, *v).unwrap();
    }
    app.commit().unwrap();
    want.insert(
        odd.clone(),
        odd_values
            .iter()
            .enumerate()
            .map(|(i, v)| (t0 + i as i64 * 1000, v.to_bits()))
            .collect(),
    );
    let want: Samples = want
        .into_iter()
        .filter(|(l, _)| l.get("instance") != Some("i3"))
        .map(|(l, s)| {
            let mut v: Vec<tsdb::labels::Label> = l.into_vec();
            v.push(tsdb::labels::Label::new("cluster", "c1"));
            (Labels::new(v), s)
        })
        .collect();
    let total: usize = want.values().map(Vec::len).sum();

    // A range-vector query returns the raw samples; Go prints floats in shortest round-trip form.
    let query = |at: i64| {
        format!(
            "{base}/api/v1/query?query={}&time={}",
            common::url_encode("{__name__=\"rw_prom_test\"}[1h]"),
            at / 1000 + 1
        )
    };
    let end = t0 + 120_000;
    let mut got = Samples::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        got.clear();
        if let Some((200, body)) = get(&query(end)).await {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            for r in v["data"]["result"].as_array().unwrap() {
                let l = labels_of(r["metric"].as_object().unwrap());
                let e = got.entry(l).or_default();
                for p in r["values"].as_array().unwrap() {
                    let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                    let x: f64 = p[1].as_str().unwrap().parse().unwrap();
                    e.push((t, x.to_bits()));
                }
            }
        }
        let n: usize = got.values().map(Vec::len).sum();
        if n >= total || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop_writer(&w).await;
    assert_eq!(got, want, "Prometheus log:\n{}", prom.logs());
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
    assert!(text.contains("prometheus_remote_storage_samples_dropped_total{remote_name=\"test\""));
}

/// Serves `app` on `listener`. Aborting the task closes every connection too (a receiver that
/// is really down, not just refusing new connections while keep-alive ones go on).
fn serve(app: axum::Router, listener: std::net::TcpListener) -> tokio::task::JoinHandle<()> {
    listener.set_nonblocking(true).unwrap();
    let l = tokio::net::TcpListener::from_std(listener).unwrap();
    tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = l.accept().await else {
                continue;
            };
            let svc = hyper_util::service::TowerToHyperService::new(app.clone());
            conns.spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(io, svc)
                .await;
            });
        }
    })
}

fn receiver(db: Arc<Db>) -> (axum::Router, prometheus_client::registry::Registry) {
    let mut reg = prometheus_client::registry::Registry::default();
    let app = receiver_router(db, &mut reg);
    (app, reg)
}

/// Our receiver, answering 503 to any request holding a series with `instance="i0"` while
/// `fail` is set: that series' shard stalls (retrying) while the others go on.
fn faulty_receiver(
    db: Arc<Db>,
    fail: Arc<std::sync::atomic::AtomicBool>,
) -> (axum::Router, prometheus_client::registry::Registry) {
    let (app, reg) = receiver(db);
    let app = app.layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            let fail = fail.clone();
            async move {
                let (parts, body) = req.into_parts();
                let bytes = axum::body::to_bytes(body, 64 << 20).await.unwrap();
                if fail.load(std::sync::atomic::Ordering::SeqCst) {
                    let r = tsdb::server::remote::decode_write_request(&bytes).unwrap();
                    let hit = r.timeseries.iter().any(|ts| {
                        ts.labels
                            .iter()
                            .any(|l| l.name == "instance" && l.value == "i0")
                    });
                    if hit {
                        return axum::response::IntoResponse::into_response((
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            "injected",
                        ));
                    }
                }
                next.run(axum::extract::Request::from_parts(
                    parts,
                    axum::body::Body::from(bytes),
                ))
                .await
            }
        },
    ));
    (app, reg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_writes_into_our_receiver() {
    if !common::available(common::PROMETHEUS) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let ours = open_db(&tmp.path().join("ours"));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let rport = listener.local_addr().unwrap().port();
    let server = serve(receiver(ours.clone()).0, listener);

    let pdir = tmp.path().join("prom");
    fs::create_dir_all(&pdir).unwrap();
    let prom = common::Prometheus::start(
        &pdir,
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: self\n    static_configs:\n      - targets: ['127.0.0.1:PORT']\nremote_write:\n  - url: http://127.0.0.1:{rport}/api/v1/write\n    queue_config:\n      batch_send_deadline: 200ms\n"
        ),
    );
    // A few scrapes; then a clean stop flushes Prometheus' remote-write queue.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if stored(&ours, "up").values().map(Vec::len).sum::<usize>() >= 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no samples arrived; log:\n{}",
            prom.logs()
        );
    }
    tokio::task::spawn_blocking(move || prom.stop())
        .await
        .unwrap();
    server.abort();

    // What Prometheus stored, from its own TSDB.
    let dump = common::promtool(&["tsdb", "dump", pdir.to_str().unwrap()]);
    let theirs = common::parse_dump(&dump);
    let q = ours.querier(i64::MIN / 2, i64::MAX / 2);
    let received = q
        .select(&[Matcher::new(MatchType::Regexp, "__name__", ".+").unwrap()])
        .unwrap();
    assert!(
        received.len() > 50,
        "only {} series arrived",
        received.len()
    );
    let mut compared = 0;
    for s in &received {
        let mine: Vec<(i64, u64)> = s.samples().map(|(t, v)| (t, v.to_bits())).collect();
        let l = s.labels();
        let theirs_s: Vec<(i64, u64)> = theirs
            .get(l)
            .unwrap_or_else(|| panic!("{l} arrived but Prometheus did not store it"))
            .iter()
            .map(|&(t, v)| (t, v.to_bits()))
            .collect();
        // Prometheus sends what it appended after its WAL watcher started: from our first
        // sample of the series on, every sample it stored arrived, equal.
        let first = mine[0].0;
        let last = mine[mine.len() - 1].0;
        let expect: Vec<(i64, u64)> = theirs_s
            .into_iter()
            .filter(|&(t, _)| t >= first && t <= last)
            .collect();
        let norm = |v: Vec<(i64, u64)>| -> Vec<(i64, u64)> {
            // promtool prints every NaN as "NaN": compare NaNs by class.
            v.into_iter()
                .map(|(t, b)| {
                    (
                        t,
                        if f64::from_bits(b).is_nan() {
                            0x7ff8_0000_0000_0001
                        } else {
                            b
                        },
                    )
                })
                .collect()
        };
        assert_eq!(norm(mine), norm(expect), "series {l}");
        compared += 1;
    }
    // And the newest scrape Prometheus stored is among what arrived (its shutdown flushed it).
    let (up, their_up) = theirs
        .iter()
        .find(|(l, _)| l.metric_name() == Some("up"))
        .unwrap();
    let our_up = stored(&ours, "up");
    assert_eq!(our_up[up].last().map(|s| s.0), their_up.last().map(|s| s.0));
    eprintln!("{compared} series compared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_down_and_sender_restarted_loses_and_repeats_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let src_dir = tmp.path().join("src");
    let dst = open_db(&tmp.path().join("dst"));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let url = format!("http://{addr}/api/v1/write");
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (app, _) = faulty_receiver(dst.clone(), fail.clone());
    let server = serve(app, listener);

    let cfg = config(&url, "");
    let t0 = now_ms() - 600_000;
    let mut want = Samples::new();
    {
        let src = open_db(&src_dir);
        let mut reg = prometheus_client::registry::Registry::default();
        let w = RemoteWriter::new(src.clone(), &src_dir, &mut reg)
            .with_flush_deadline(Duration::from_secs(2));
        w.apply_config(&cfg).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        merge(&mut want, append(&src, "rw_restart", 10, t0, 50));
        let n = 500;
        wait_for("the first batch", Duration::from_secs(20), || {
            stored(&dst, "rw_restart")
                .values()
                .map(Vec::len)
                .sum::<usize>()
                == n
        })
        .await;
        // The receiver refuses one series for a while: its shard retries while the other shard
        // sends the rest of the second batch, so the lanes stop at different records.
        fail.store(true, std::sync::atomic::Ordering::SeqCst);
        merge(&mut want, append(&src, "rw_restart", 10, t0 + 50_000, 40));
        wait_for("the unblocked shard", Duration::from_secs(20), || {
            stored(&dst, "rw_restart")
                .values()
                .map(Vec::len)
                .sum::<usize>()
                >= n + 5 * 40
        })
        .await;
        // Then it goes away; the sender stops (it cannot flush).
        server.abort();
        let _ = server.await;
        w.stop().await;
        let pos = fs::read_to_string(src_dir.join("remote/test/position")).unwrap();
        assert!(
            pos.contains("\nlane "),
            "samples in flight were saved: {pos}"
        );
    }
    // The "process" restarts: the database is reopened, the sender resumes from its position
    // and the receiver is still down for a while.
    let src = open_db(&src_dir);
    let mut reg = prometheus_client::registry::Registry::default();
    let w = RemoteWriter::new(src.clone(), &src_dir, &mut reg);
    w.apply_config(&cfg).await.unwrap();
    merge(&mut want, append(&src, "rw_restart", 10, t0 + 90_000, 30));
    tokio::time::sleep(Duration::from_millis(700)).await;
    // The receiver comes back on the same address.
    let (app, rreg) = receiver(dst.clone());
    let server = serve(app, TcpListener::bind(addr).unwrap());
    let total: usize = want.values().map(Vec::len).sum();
    wait_for("every sample", Duration::from_secs(30), || {
        stored(&dst, "rw_restart")
            .values()
            .map(Vec::len)
            .sum::<usize>()
            >= total
    })
    .await;
    w.stop().await;
    server.abort();
    assert_eq!(stored(&dst, "rw_restart"), want);
    // Nothing was sent twice: the receiver saw no request it refused (a sample older than its
    // series' newest would be a 400) and no duplicate sample.
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &rreg).unwrap();
    assert!(!text.contains("code=\"400\""), "{text}");
    assert!(
        text.contains("tsdb_remote_write_duplicate_samples_total 0"),
        "{text}"
    );
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
    let failed = text
        .lines()
        .find(|l| l.starts_with("prometheus_remote_storage_samples_failed_total"))
        .unwrap();
    assert!(failed.ends_with(" 0"), "{failed}");
    let pos = fs::read_to_string(src_dir.join("remote/test/position")).unwrap();
    assert!(pos.starts_with("read "), "{pos}");
    assert!(!pos.contains("lane"), "everything acknowledged, yet: {pos}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_compaction_keeps_the_segments_a_sender_still_needs() {
    let tmp = tempfile::tempdir().unwrap();
    let src_dir = tmp.path().join("src");
    let dst = open_db(&tmp.path().join("dst"));
    // The receiver's address, not listening yet: the sender's requests fail to connect.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let src = open_db(&src_dir);
    let mut reg = prometheus_client::registry::Registry::default();
    let w = RemoteWriter::new(src.clone(), &src_dir, &mut reg)
        .with_flush_deadline(Duration::from_secs(2));
    w.apply_config(&config(&format!("http://{addr}/api/v1/write"), ""))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Nine hours of samples every 10 minutes: head compaction cuts blocks and truncates the WAL.
    let t0 = now_ms() / 1000 * 1000 - 9 * 3_600_000;
    let mut want = Samples::new();
    for k in 0..55 {
        merge(
            &mut want,
            append(&src, "rw_compact", 8, t0 + k * 600_000, 1),
        );
    }
    let first_before = tsdb::wal::segments(&src_dir.join("wal")).unwrap()[0];
    let blocks = src.compact_head().unwrap();
    assert!(!blocks.is_empty(), "no head compaction happened");
    assert_eq!(
        tsdb::wal::segments(&src_dir.join("wal")).unwrap()[0],
        first_before,
        "the WAL was truncated past what the sender still needs"
    );
    // The receiver comes up: everything arrives.
    let (app, _) = receiver(dst.clone());
    let server = serve(app, TcpListener::bind(addr).unwrap());
    let total: usize = want.values().map(Vec::len).sum();
    wait_for("every sample", Duration::from_secs(30), || {
        stored(&dst, "rw_compact")
            .values()
            .map(Vec::len)
            .sum::<usize>()
            >= total
    })
    .await;
    w.stop().await;
    server.abort();
    assert_eq!(stored(&dst, "rw_compact"), want);
    // The sender retried while the receiver was down.
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
    assert!(text.contains("prometheus_remote_storage_samples_retried_total{remote_name=\"test\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_and_headers_are_sent_and_a_401_drops_the_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let dst = open_db(&tmp.path().join("dst"));
    let (app, _) = receiver(dst.clone());
    // "user:pw", base64; and the configured header.
    let app = app.layer(axum::middleware::from_fn(
        |req: axum::extract::Request, next: axum::middleware::Next| async move {
            let h = req.headers();
            let ok = h.get("authorization").and_then(|v| v.to_str().ok())
                == Some("Basic dXNlcjpwdw==")
                && h.get("x-tenant").and_then(|v| v.to_str().ok()) == Some("t1")
                && h.get("content-encoding").and_then(|v| v.to_str().ok()) == Some("snappy")
                && h.get("x-prometheus-remote-write-version")
                    .and_then(|v| v.to_str().ok())
                    == Some("0.1.0");
            if ok {
                next.run(req).await
            } else {
                axum::response::IntoResponse::into_response(axum::http::StatusCode::UNAUTHORIZED)
            }
        },
    ));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/api/v1/write", listener.local_addr().unwrap());
    let server = serve(app, listener);
    let src_dir = tmp.path().join("src");
    let src = open_db(&src_dir);
    for (password, arrives) in [("wrong", false), ("pw", true)] {
        let mut reg = prometheus_client::registry::Registry::default();
        let w = RemoteWriter::new(src.clone(), &src_dir, &mut reg);
        let extra = format!(
            "    headers: {{X-Tenant: t1}}\n    basic_auth: {{username: user, password: {password}}}\n"
        );
        w.apply_config(&config(&url, &extra)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let name = format!("rw_auth_{password}");
        let want = append(&src, &name, 3, now_ms() - 60_000, 10);
        let failed = || {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
            text.lines()
                .find(|l| l.starts_with("prometheus_remote_storage_samples_failed_total"))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        if arrives {
            wait_for("samples", Duration::from_secs(20), || {
                stored(&dst, &name) == want
            })
            .await;
            assert_eq!(failed(), 0);
        } else {
            // 401 is not retried: the batch is dropped and counted.
            wait_for("the failure count", Duration::from_secs(20), || {
                failed() == 30
            })
            .await;
            assert!(stored(&dst, &name).is_empty());
        }
        w.stop().await;
    }
    server.abort();
}

/// A CA and a server certificate for 127.0.0.1 made with `openssl`; (ca, cert, key) paths.
fn make_certs(dir: &Path) -> Option<(PathBuf, PathBuf, PathBuf)> {
    if !common::make_ca(dir) {
        return None;
    }
    common::issue_cert(dir, "server", "IP:127.0.0.1", "serverAuth");
    Some((
        dir.join("ca.crt"),
        dir.join("server.crt"),
        dir.join("server.key"),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_speaks_tls_with_the_configured_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((ca, cert, key)) = make_certs(tmp.path()) else {
        return;
    };
    let certs: Vec<_> = rustls_pemfile::certs(&mut &fs::read(&cert).unwrap()[..])
        .collect::<Result<_, _>>()
        .unwrap();
    let key = rustls_pemfile::private_key(&mut &fs::read(&key).unwrap()[..])
        .unwrap()
        .unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let dst = open_db(&tmp.path().join("dst"));
    let (app, _) = receiver(dst.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/api/v1/write", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            conns.spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let svc = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                .await;
            });
        }
    });
    let src_dir = tmp.path().join("src");
    let src = open_db(&src_dir);
    let mut reg = prometheus_client::registry::Registry::default();
    let w = RemoteWriter::new(src.clone(), &src_dir, &mut reg);
    let extra = format!("    tls_config: {{ca_file: {}}}\n", ca.display());
    w.apply_config(&config(&url, &extra)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let want = append(&src, "rw_tls", 3, now_ms() - 60_000, 10);
    wait_for("samples over TLS", Duration::from_secs(20), || {
        stored(&dst, "rw_tls") == want
    })
    .await;
    w.stop().await;
    server.abort();
}

/// Appends `per` commits of `series` samples each to metric `name` (ids reused after the first).
fn append_bulk(db: &Db, name: &str, series: usize, per: usize, t0: i64) {
    let ls: Vec<Labels> = (0..series)
        .map(|s| Labels::from_pairs(&[("__name__", name), ("instance", &format!("i{s}"))]))
        .collect();
    let mut ids = Vec::new();
    for i in 0..per {
        let mut app = db.appender();
        for (s, l) in ls.iter().enumerate() {
            let t = t0 + i as i64 * 1000;
            if i == 0 {
                ids.push(app.append(l, t, s as f64).unwrap());
            } else {
                app.append_id(ids[s], t, (s + i) as f64).unwrap();
            }
        }
        app.commit().unwrap();
    }
}

fn count(db: &Db, name: &str) -> usize {
    let q = db.querier(i64::MIN / 2, i64::MAX / 2);
    q.select(&[Matcher::equal("__name__", name)])
        .unwrap()
        .iter()
        .map(|s| s.samples().count())
        .sum()
}

/// Throughput of our sender into our receiver over loopback (run with `--ignored --release`;
/// prints the figures): appending live, then catching up a backlog written while the receiver
/// was down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput_sender_into_our_receiver() {
    let tmp = tempfile::tempdir().unwrap();
    let src_dir = tmp.path().join("src");
    let dst = open_db(&tmp.path().join("dst"));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let url = format!("http://{addr}/api/v1/write");
    let server = serve(receiver(dst.clone()).0, listener);
    let src = open_db(&src_dir);
    let mut reg = prometheus_client::registry::Registry::default();
    let w = RemoteWriter::new(src.clone(), &src_dir, &mut reg);
    let cfg: tsdb::config::Config = serde_yaml::from_str(&format!(
        "remote_write:\n  - url: {url}\n    name: bench\n    queue_config:\n      max_samples_per_send: 2000\n      capacity: 10000\n      batch_send_deadline: 100ms\n      min_shards: 4\n      max_backoff: 100ms\n"
    ))
    .unwrap();
    w.apply_config(&cfg).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (series, per) = (1000usize, 1000usize);
    let total = series * per;
    let t0 = now_ms() - 3_600_000;

    let started = Instant::now();
    let db = src.clone();
    tokio::task::spawn_blocking(move || append_bulk(&db, "rw_live", series, per, t0))
        .await
        .unwrap();
    let appended = started.elapsed();
    wait_for("live samples", Duration::from_secs(600), || {
        count(&dst, "rw_live") >= total
    })
    .await;
    let live = started.elapsed();

    // The receiver goes down; a backlog accumulates in the WAL; it comes back.
    server.abort();
    let _ = server.await;
    let db = src.clone();
    tokio::task::spawn_blocking(move || append_bulk(&db, "rw_backlog", series, per, t0))
        .await
        .unwrap();
    let server = serve(receiver(dst.clone()).0, TcpListener::bind(addr).unwrap());
    let back = Instant::now();
    wait_for("the backlog", Duration::from_secs(600), || {
        count(&dst, "rw_backlog") >= total
    })
    .await;
    let catch_up = back.elapsed();
    w.stop().await;
    server.abort();
    eprintln!(
        "remote write, {total} samples ({series} series): live {:.2} s to append, all received after {:.2} s ({:.0} samples/s end to end); backlog caught up in {:.2} s ({:.0} samples/s, 4 shards, 2000 per request, sender and receiver on one loaded 2-core box)",
        appended.as_secs_f64(),
        live.as_secs_f64(),
        total as f64 / live.as_secs_f64(),
        catch_up.as_secs_f64(),
        total as f64 / catch_up.as_secs_f64(),
    );
}

/// A `/metrics` body with every metric type, HELP text with escapes, and a family without HELP.
const METADATA_BODY: &str = "\
# HELP demo_calls_total Calls of the demo function.
# TYPE demo_calls_total counter
demo_calls_total 3
# HELP demo_temperature_celsius Temperature, in \\\\ degrees \\n Celsius.
# TYPE demo_temperature_celsius gauge
demo_temperature_celsius 21.5
# HELP demo_latency_seconds Latency.
# TYPE demo_latency_seconds histogram
demo_latency_seconds_bucket{le=\"0.1\"} 1
demo_latency_seconds_bucket{le=\"+Inf\"} 2
demo_latency_seconds_sum 0.3
demo_latency_seconds_count 2
# HELP demo_size_bytes Sizes.
# TYPE demo_size_bytes summary
demo_size_bytes{quantile=\"0.5\"} 10
demo_size_bytes_sum 30
demo_size_bytes_count 3
# TYPE demo_untyped untyped
demo_untyped 1
demo_no_metadata 2
";

/// Serves [`METADATA_BODY`] at `/metrics` on a fresh port.
fn metadata_target() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(|| async {
            (
                [("content-type", "text/plain; version=0.0.4")],
                METADATA_BODY,
            )
        }),
    );
    (port, serve(app, listener))
}

type MetaEntry = (i32, String, String, String);
/// The metadata of each request a capture received.
type Captured = Arc<std::sync::Mutex<Vec<Vec<MetaEntry>>>>;

/// A remote-write receiver that keeps the metadata of every request (one list per request) and
/// answers 204.
fn metadata_capture() -> (String, Captured, tokio::task::JoinHandle<()>) {
    let got: Captured = Arc::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/api/v1/write",
        axum::routing::post(move |body: axum::body::Bytes| {
            let g = g.clone();
            async move {
                let r = tsdb::server::remote::decode_write_request(&body).unwrap();
                if !r.metadata.is_empty() {
                    assert!(r.timeseries.is_empty(), "metadata travels on its own");
                    g.lock().unwrap().push(
                        r.metadata
                            .into_iter()
                            .map(|m| (m.r#type, m.metric_family_name, m.help, m.unit))
                            .collect(),
                    );
                }
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/api/v1/write", listener.local_addr().unwrap());
    (url, got, serve(app, listener))
}

/// `metadata_config`: every interval, the metadata of the scraped targets, deduplicated across
/// targets, in requests of at most `max_samples_per_send` entries — the same entries Prometheus
/// 2.42 sends for the same two targets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_is_sent_as_prometheus_sends_it() {
    if !common::available(common::PROMETHEUS) {
        return;
    }
    let (p1, t1) = metadata_target();
    let (p2, t2) = metadata_target();
    let (their_url, theirs, c1) = metadata_capture();
    let (our_url, ours, c2) = metadata_capture();
    let yaml = |url: &str| {
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: demo\n    static_configs:\n      - targets: ['127.0.0.1:{p1}', '127.0.0.1:{p2}']\nremote_write:\n  - url: {url}\n    metadata_config:\n      send_interval: 1s\n      max_samples_per_send: 4\n"
        )
    };
    let tmp = tempfile::tempdir().unwrap();
    let pdir = tmp.path().join("prom");
    fs::create_dir_all(&pdir).unwrap();
    let prom = common::Prometheus::start(&pdir, &yaml(&their_url));

    let db = open_db(&tmp.path().join("ours"));
    let cfg = tsdb::config::Config::parse(&yaml(&our_url), Path::new("prometheus.yml")).unwrap();
    let mut reg = prometheus_client::registry::Registry::default();
    let scrape = Arc::new(tsdb::server::scrape::ScrapeManager::new(
        db.clone(),
        &mut reg,
    ));
    scrape.apply_config(&cfg).await.unwrap();
    let w = RemoteWriter::new(db.clone(), &tmp.path().join("ours"), &mut reg)
        .with_metadata_source(scrape.clone());
    w.apply_config(&cfg).await.unwrap();

    // One full round each: the requests of one interval add up to every entry once.
    let full = |got: &std::sync::Mutex<Vec<Vec<MetaEntry>>>| -> Option<Vec<MetaEntry>> {
        let g = got.lock().unwrap();
        let mut all: Vec<MetaEntry> = g.iter().flatten().cloned().collect();
        all.sort();
        all.dedup();
        (all.len() >= 5).then_some(all)
    };
    wait_for("metadata from both", Duration::from_secs(30), || {
        full(&theirs).is_some() && full(&ours).is_some()
    })
    .await;
    let (t, o) = (full(&theirs).unwrap(), full(&ours).unwrap());
    assert_eq!(o, t, "ours:\n{o:#?}\nPrometheus':\n{t:#?}");
    let names: Vec<&str> = o.iter().map(|e| e.1.as_str()).collect();
    assert!(names.contains(&"demo_calls_total") && names.contains(&"demo_latency_seconds"));
    for got in [&ours, &theirs] {
        let g = got.lock().unwrap();
        assert!(
            g.iter().all(|r| r.len() <= 4),
            "batches of at most 4: {g:?}"
        );
        // Each interval sends each entry once, not once per target.
        let first_round: usize = g.iter().take(2).map(Vec::len).sum();
        assert_eq!(first_round, o.len(), "{g:?}");
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
    assert!(
        text.lines().any(
            |l| l.starts_with("prometheus_remote_storage_metadata_total{") && !l.ends_with(" 0")
        ),
        "{text}"
    );
    w.stop().await;
    scrape.stop().await;
    tokio::task::spawn_blocking(move || prom.stop())
        .await
        .unwrap();
    for t in [t1, t2, c1, c2] {
        t.abort();
    }
}
