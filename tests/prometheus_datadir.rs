//! Whole data directories shared with the real Prometheus 2.42 (issue 3, point 8):
//! - Prometheus started on a directory `tsdbctl ingest` wrote (blocks, WAL) answers
//!   `/api/v1/query_range` with exactly the bodies `tsdbctl query` prints;
//! - tsdbctl opens a directory a running Prometheus wrote (its blocks, its WAL) and answers the
//!   same range queries with the same values Prometheus gave.

mod common;

use common::{available, gen_dataset, generate, url_encode, Prometheus, PROMETHEUS};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tsdb::labels::Labels;
use tsdb::{Db, Options};

const HOUR: i64 = 3_600_000;

/// `data.result` of a query_range body, series sorted by their labels, as comparable JSON.
fn result_of(body: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["status"], "success", "{body}");
    assert_eq!(v["data"]["resultType"], "matrix", "{body}");
    let mut r = v["data"]["result"].as_array().unwrap().clone();
    r.sort_by_key(|s| s["metric"].to_string());
    r
}

fn prometheus_range(
    p: &Prometheus,
    q: &str,
    start: f64,
    end: f64,
    step: u32,
) -> Vec<serde_json::Value> {
    let path = format!(
        "/api/v1/query_range?query={}&start={start:.3}&end={end:.3}&step={step}",
        url_encode(q)
    );
    let (status, body) = p.get(&path).unwrap();
    assert_eq!(status, 200, "{q}: {body}");
    result_of(&body)
}

/// Compares two results point by point; on a difference, says where (not the whole bodies).
/// `rel`: 0 for bit-identical values; else the relative difference allowed (aggregations that add:
/// Prometheus 3 and we use Kahan summation, 2.42 added plainly — `docs/promql-compatibility.md`).
fn same(q: &str, rel: f64, ours: &[serde_json::Value], theirs: &[serde_json::Value]) {
    let metrics = |r: &[serde_json::Value]| -> Vec<String> {
        r.iter().map(|s| s["metric"].to_string()).collect()
    };
    assert_eq!(metrics(ours), metrics(theirs), "{q}: series");
    let mut diffs = Vec::new();
    for (a, b) in ours.iter().zip(theirs) {
        let (va, vb) = (
            a["values"].as_array().unwrap(),
            b["values"].as_array().unwrap(),
        );
        if va.len() != vb.len() {
            diffs.push(format!(
                "{}: {} points vs {}",
                a["metric"],
                va.len(),
                vb.len()
            ));
            continue;
        }
        for (x, y) in va.iter().zip(vb) {
            let close = || {
                let f = |p: &serde_json::Value| p[1].as_str().unwrap().parse::<f64>().unwrap();
                let (fx, fy) = (f(x), f(y));
                x[0] == y[0] && (fx - fy).abs() <= rel * fx.abs().max(fy.abs())
            };
            if x != y && (rel == 0.0 || !close()) {
                diffs.push(format!("{}: {x} vs {y}", a["metric"]));
            }
        }
    }
    assert!(
        diffs.is_empty(),
        "{q}: {} points differ (ours vs Prometheus'), first: {:?}",
        diffs.len(),
        &diffs[..diffs.len().min(5)]
    );
}

fn points(r: &[serde_json::Value]) -> usize {
    r.iter()
        .map(|s| s["values"].as_array().unwrap().len())
        .sum()
}

/// Range queries over the generated fleet whose answers do not depend on where Prometheus 2
/// and 3 differ (no sample sits on a window boundary in this data).
/// With the relative difference allowed (0: bit-identical).
const QUERIES: &[(&str, f64)] = &[
    (r#"node_memory_MemAvailable_bytes{job="node"}"#, 0.0),
    ("rate(node_network_receive_bytes_total[5m])", 0.0),
    ("sum by (job) (rate(http_requests_total[5m]))", 1e-13),
    (
        "histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
        1e-13,
    ),
    ("avg_over_time(node_load1[10m])", 1e-13),
    (
        "node_memory_MemAvailable_bytes / on (instance, job) node_memory_MemTotal_bytes",
        0.0,
    ),
    ("count by (code) (http_requests_total)", 0.0),
    (
        r#"max_over_time(rpc_duration_seconds{quantile="0.99"}[30m])"#,
        0.0,
    ),
];

#[test]
fn prometheus_answers_query_range_over_a_tsdbctl_directory_as_tsdbctl_does() {
    if !available(PROMETHEUS) {
        return;
    }
    let Some(script) = gen_dataset() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("fleet.prom");
    // 5 hours: two 2h blocks are cut by ingest, the rest stays in the head (WAL).
    let (start, end) = generate(&script, &file, &["--hosts", "3", "--duration", "5h"]);
    let data = tmp.path().join("data");
    let exe = env!("CARGO_BIN_EXE_tsdbctl");
    let out = Command::new(exe)
        .args(["ingest", "--db"])
        .arg(&data)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let blocks = std::fs::read_dir(&data)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join("meta.json").exists())
        .count();
    assert!(blocks >= 1, "ingest cut no block");

    let (qs, qe) = (start as f64 + 600.0, end as f64 + 1.0);
    let ours: Vec<Vec<serde_json::Value>> = QUERIES
        .iter()
        .map(|(q, _)| {
            let out = Command::new(exe)
                .args(["query", "--db"])
                .arg(&data)
                .args(["--start", &format!("{qs:.3}"), "--end", &format!("{qe:.3}")])
                .args(["--step", "60", "--output", "json", q])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{q}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            result_of(&String::from_utf8_lossy(&out.stdout))
        })
        .collect();

    let p = Prometheus::start(&data, "global:\n  scrape_interval: 1h\n");
    let mut total = 0;
    for ((q, rel), ours) in QUERIES.iter().zip(&ours) {
        let theirs = prometheus_range(&p, q, qs, qe, 60);
        assert!(!theirs.is_empty(), "{q}: Prometheus returned nothing");
        total += points(&theirs);
        same(q, *rel, ours, &theirs);
    }
    p.stop();
    eprintln!("{} queries, {total} points identical", QUERIES.len());
}

#[test]
fn tsdbctl_reads_a_directory_prometheus_wrote_blocks_and_wal() {
    if !available(PROMETHEUS) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Six hours of our series up to an hour ago, so that Prometheus cuts blocks from its head;
    // its own scrapes of itself go to its WAL.
    {
        let db = Db::open(data, Options::default().background_compaction(false)).unwrap();
        let mut app = db.appender();
        for i in 0..20 {
            let l = Labels::from_pairs(&[
                ("__name__", "seeded"),
                ("i", &i.to_string()),
                ("origin", "ours"),
            ]);
            // Off the query's step grid: no sample on a window boundary, where Prometheus 2.42
            // (closed windows) and 3 (left-open, as we) differ.
            let mut t = now - 7 * HOUR + i * 7 + 3;
            while t < now - HOUR {
                app.append(&l, t, ((t / 15_000) % 97) as f64 * 0.25 + i as f64)
                    .unwrap();
                t += 15_000;
            }
        }
        app.commit().unwrap();
    }
    let config = "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: self\n    static_configs:\n      - targets: ['127.0.0.1:PORT']\n";
    let p = Prometheus::start(data, config);
    let deadline = Instant::now() + Duration::from_secs(180);
    let blocks = || {
        std::fs::read_dir(data)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().join("meta.json").exists())
            .count()
    };
    while blocks() < 2 {
        assert!(
            Instant::now() < deadline,
            "no blocks after 180 s; log:\n{}",
            p.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A few more self-scrapes into the WAL after the compaction.
    std::thread::sleep(Duration::from_secs(4));
    let (qs, qe) = (
        (now - 7 * HOUR) as f64 / 1000.0,
        now as f64 / 1000.0 + 600.0,
    );
    let queries = [
        r#"seeded{origin="ours"}"#,
        r#"max_over_time(seeded[10m])"#,
        r#"up{job="self"}"#,
        r#"prometheus_build_info"#,
    ];
    let theirs: Vec<Vec<serde_json::Value>> = queries
        .iter()
        .map(|q| prometheus_range(&p, q, qs, qe, 30))
        .collect();
    p.stop();

    let db = Db::open(data, Options::default().read_only(true)).unwrap();
    assert!(db.blocks().len() >= 2);
    for (q, theirs) in queries.iter().zip(&theirs) {
        assert!(!theirs.is_empty(), "{q}: Prometheus returned nothing");
        let v = db
            .query_range(q, (qs * 1000.0) as i64, (qe * 1000.0) as i64, 30_000)
            .unwrap();
        let ours = result_of(&tsdb::api::value_json(&v));
        same(q, 0.0, &ours, theirs);
    }
}
