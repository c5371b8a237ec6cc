//! `tsdbctl serve` as an operator runs it: a real process scraping real HTTP targets, reloaded by
//! SIGHUP and `POST /-/reload`, stopped by SIGTERM; afterwards the data directory holds every
//! sample the server had acknowledged.
#![cfg(feature = "server")]

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use common::Serve;
use tsdb::api;
use tsdb::promql::{QueryOptions, Value};
use tsdb::{Db, Options};

/// A target whose counter is the number of scrapes it has answered: stored values must then be
/// 1, 2, 3, ... with none missing.
struct CountingTarget {
    addr: SocketAddr,
    served: Arc<AtomicU64>,
}

impl CountingTarget {
    fn start(label: &'static str) -> CountingTarget {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(AtomicU64::new(0));
        let count = served.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                // Request line and headers up to the blank line.
                loop {
                    line.clear();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) if line == "\r\n" => break,
                        Ok(_) => {}
                    }
                }
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                let body = format!(
                    "# HELP demo_total Scrapes answered.\n# TYPE demo_total counter\ndemo_total{{k=\"{label}\"}} {n}\n"
                );
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        CountingTarget { addr, served }
    }
}

/// The instant vector of `expr` now, as (labels JSON, value) pairs.
fn query(server: &Serve, expr: &str) -> Vec<(serde_json::Value, f64)> {
    let (status, body) = server
        .get(&format!("/api/v1/query?query={}", common::url_encode(expr)))
        .unwrap();
    assert_eq!(status, 200, "{expr}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let val = s["value"][1].as_str().unwrap().parse::<f64>().unwrap();
            (s["metric"].clone(), val)
        })
        .collect()
}

fn config(jobs: &[(&str, SocketAddr)]) -> String {
    let mut s =
        String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n");
    for (job, addr) in jobs {
        s.push_str(&format!(
            "  - job_name: {job}\n    static_configs:\n      - targets: ['{addr}']\n"
        ));
    }
    s
}

/// The stored samples of `expr` (a range selector) from a closed data directory.
fn stored(dir: &Path, expr: &str) -> Vec<(i64, f64)> {
    let db = Db::open(dir, Options::default().read_only(true)).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let v = api::query(&db, expr, now, &QueryOptions::default()).unwrap();
    assert!(matches!(v, Value::Matrix(_)), "{expr}: not a matrix");
    let series = api::result_series(&v);
    assert_eq!(series.len(), 1, "{expr}: {series:?}");
    series[0].points.clone()
}

/// The header byte of every record fragment of a WAL segment (32 KiB pages; a fragment's header is
/// type and flags, 2-byte length, 4-byte CRC; zeros pad the rest of a page).
fn wal_record_flags(segment: &[u8]) -> Vec<u8> {
    const PAGE: usize = 32 * 1024;
    let mut out = Vec::new();
    let mut o = 0;
    while o + 7 <= segment.len() {
        let left_in_page = PAGE - o % PAGE;
        if left_in_page < 7 || segment[o] == 0 {
            o += left_in_page;
            continue;
        }
        out.push(segment[o]);
        let len = u16::from_be_bytes([segment[o + 1], segment[o + 2]]) as usize;
        o += 7 + len;
    }
    out
}

#[test]
fn serve_scrapes_reloads_and_stops_without_losing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data");
    let cfg = dir.path().join("prometheus.yml");
    let a = CountingTarget::start("a");
    let b = CountingTarget::start("b");
    fs::write(&cfg, config(&[("a", a.addr)])).unwrap();
    let server = Serve::start(&db, &cfg, &[]);

    server.wait_for("three scrapes of a", |s| {
        query(s, "demo_total")
            .first()
            .is_some_and(|(_, v)| *v >= 3.0)
    });
    let up = query(&server, "up");
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(up[0].0["job"], "a");
    assert_eq!(up[0].0["instance"], a.addr.to_string());
    assert_eq!(up[0].1, 1.0);

    // SIGHUP with a second job: b starts, a keeps running.
    fs::write(&cfg, config(&[("a", a.addr), ("b", b.addr)])).unwrap();
    server.signal("HUP");
    server.wait_for("b scraped after SIGHUP", |s| {
        query(s, "demo_total{k=\"b\"}")
            .first()
            .is_some_and(|(_, v)| *v >= 2.0)
    });

    // A broken file is refused and changes nothing.
    fs::write(
        &cfg,
        "scrape_configs:\n  - job_name: a\n    scrape_intervall: 1s\n",
    )
    .unwrap();
    let (status, body) = server.request("POST", "/-/reload").unwrap();
    assert_ne!(status, 200, "{body}");
    assert!(body.contains("scrape_intervall"), "{body}");
    let before = b.served.load(Ordering::SeqCst);
    server.wait_for("b still scraped after a failed reload", |_| {
        b.served.load(Ordering::SeqCst) >= before + 2
    });

    let seen = query(&server, "demo_total{k=\"a\"}")[0].1;
    let (status, body) = server.get("/api/v1/status/flags").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(r#""storage.tsdb.wal-compression":"true""#),
        "{body}"
    );
    let (status, logs) = server.terminate();
    assert!(status.success(), "exit {status}; log:\n{logs}");
    assert!(logs.contains("shutting down"), "{logs}");
    let served_a = a.served.load(Ordering::SeqCst) as f64;

    // Every scrape of a, across the reloads, is stored: values 1, 2, ... with no gap and no
    // interval much longer than the scrape interval (a restarted loop would show one).
    // The WAL is snappy-compressed by default, as Prometheus writes it: records that snappy makes
    // smaller carry the snappy flag (0x08) in their header byte. It replays below.
    let segment = fs::read(db.join("wal").join("00000000")).unwrap();
    let flags = wal_record_flags(&segment);
    assert!(flags.iter().any(|f| f & 0x18 == 0x08), "{flags:?}");
    assert!(
        flags.iter().all(|f| f & 0x10 == 0),
        "zstd records: {flags:?}"
    );
    let points = stored(&db, "demo_total{k=\"a\"}[1h]");
    let values: Vec<f64> = points.iter().map(|p| p.1).collect();
    let expected: Vec<f64> = (1..=values.len()).map(|i| i as f64).collect();
    assert_eq!(values, expected, "a's scrapes, in order, none missing");
    let last = *values.last().unwrap();
    assert!(last >= seen, "the API showed {seen}, only {last} survived");
    // A scrape in flight at SIGTERM may be cancelled before it is stored; no more.
    assert!(last >= served_a - 1.0, "served {served_a}, stored {last}");
    for w in points.windows(2) {
        assert!(w[1].0 - w[0].0 < 1900, "gap between scrapes of a: {:?}", w);
    }
}

#[test]
fn serve_refuses_a_broken_config_before_starting() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("prometheus.yml");
    fs::write(
        &cfg,
        "global:\n  scrape_interval: 15s\nscrape_configs:\n  - job_name: x\n    scrape_timeout: 20s\n    static_configs:\n      - targets: ['127.0.0.1:1']\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tsdbctl"))
        .args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("scrape_timeout"), "{err}");
    assert!(err.contains(":5"), "line of the key: {err}");
}

/// Two servers: A scrapes a target and remote-writes to B's receiver. After A's SIGTERM, its
/// queue's position is saved, and B holds every sample A stored, with A's external labels.
#[test]
fn serve_remote_writes_to_another_serve_and_saves_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let (db_a, db_b) = (dir.path().join("a"), dir.path().join("b"));
    let (cfg_a, cfg_b) = (dir.path().join("a.yml"), dir.path().join("b.yml"));
    let target = CountingTarget::start("rw");
    fs::write(&cfg_b, "global:\n  scrape_interval: 1s\n").unwrap();
    let b = Serve::start(&db_b, &cfg_b, &["--web.enable-remote-write-receiver"]);
    fs::write(
        &cfg_a,
        format!(
            "{}remote_write:\n  - url: http://127.0.0.1:{}/api/v1/write\n    name: to-b\n    queue_config:\n      batch_send_deadline: 200ms\n",
            config(&[("rw", target.addr)]).replace(
                "global:\n",
                "global:\n  external_labels:\n    replica: a\n"
            ),
            b.port
        ),
    )
    .unwrap();
    let a = Serve::start(&db_a, &cfg_a, &[]);
    b.wait_for("A's samples at B", |s| {
        query(s, "demo_total{replica=\"a\"}")
            .first()
            .is_some_and(|(_, v)| *v >= 3.0)
    });
    let (status, logs) = a.terminate();
    assert!(status.success(), "A exit {status}; log:\n{logs}");
    let pos = db_a.join("remote/to-b/position");
    assert!(pos.exists(), "no saved position at {}", pos.display());
    // What A stored has all arrived at B (A flushed its queue before stopping).
    let stored_a = stored(&db_a, "demo_total{k=\"rw\"}[1h]");
    b.wait_for("everything A stored at B", |s| {
        query(s, "demo_total{replica=\"a\"}")
            .first()
            .is_some_and(|(_, v)| *v >= stored_a.last().unwrap().1)
    });
    let (status, logs) = b.terminate();
    assert!(status.success(), "B exit {status}; log:\n{logs}");
    let stored_b = stored(&db_b, "demo_total{k=\"rw\",replica=\"a\"}[1h]");
    assert_eq!(stored_b, stored_a, "B holds exactly A's samples");
}
