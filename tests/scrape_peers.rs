//! Issue 5, point 5: the motivating example's four Python `prometheus_client` programs
//! (tests/fixtures/scrape/*.py: Counter, Gauge, Histogram, Summary) and Debian's
//! `prometheus-node-exporter`, scraped at the same time by our [`ScrapeManager`] into a temporary
//! database and by a real Prometheus 2.42 with the same `prometheus.yml`.
//!
//! The two scrapers sample the same processes at different instants, so values cannot be
//! compared at equal timestamps. What is compared instead:
//! - the series (label sets) each stored for the demo job are the same;
//! - values that do not change while the targets run (`*_created`, `python_info`,
//!   `process_max_fds`, node-exporter constants) are equal at the end;
//! - counters, sample by sample: every value we scraped at time t lies between Prometheus'
//!   values just before and just after t (both sample one monotonic counter);
//! - `rate(function_calls_total[1m])` at the same evaluation time: each side's answer is first
//!   recomputed from its own raw samples with Prometheus' `extrapolatedRate` (exact), then the
//!   two differ by no more than the counter's largest increase in one scrape interval at each
//!   end of the window, scaled by the extrapolation (bound derived below).
#![cfg(feature = "server")]

mod common;

use common::{python_has_client, wait_listening, Proc};

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tsdb::config::Config;
use tsdb::labels::{Label, Labels, MatchType, Matcher};
use tsdb::promql::{QueryOptions, Value};
use tsdb::server::scrape::ScrapeManager;
use tsdb::server::{Health, ScrapeView};
use tsdb::{Db, Options};

const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";
/// How long both scrape (1 s interval).
const RUN: Duration = Duration::from_secs(25);

use common::free_port;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Prometheus' JSON `result` of an instant query: (labels, [(t ms, value)]) per series, for
/// vectors (one point) and matrices.
fn prom_query(p: &common::Prometheus, expr: &str, t_ms: i64) -> Vec<(Labels, Vec<(i64, f64)>)> {
    let path = format!(
        "/api/v1/query?query={}&time={}.{:03}",
        common::url_encode(expr),
        t_ms / 1000,
        t_ms % 1000
    );
    let (status, body) = p.get(&path).unwrap();
    assert_eq!(status, 200, "{expr}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let point = |p: &serde_json::Value| -> (i64, f64) {
        let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
        (t, p[1].as_str().unwrap().parse().unwrap())
    };
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let labels = Labels::new(
                s["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| Label::new(k.clone(), v.as_str().unwrap()))
                    .collect(),
            );
            let points = match s.get("values") {
                Some(vs) => vs.as_array().unwrap().iter().map(point).collect(),
                None => vec![point(&s["value"])],
            };
            (labels, points)
        })
        .collect()
}

fn our_query(db: &Db, expr: &str, t_ms: i64) -> Vec<(Labels, Vec<(i64, f64)>)> {
    match tsdb::api::query(db, expr, t_ms, &QueryOptions::default()).unwrap() {
        Value::Vector(v) => v
            .into_iter()
            .map(|s| (s.labels, vec![(s.t, s.v)]))
            .collect(),
        Value::Matrix(m) => m.into_iter().map(|s| (s.labels, s.points)).collect(),
        other => panic!("{expr}: {other:?}"),
    }
}

/// Raw samples of the series matching `name` in `[t - range, t]` (no staleness markers).
fn our_raw(db: &Db, name: &str, t: i64, range: i64) -> BTreeMap<Labels, Vec<(i64, f64)>> {
    let q = db.querier(t - range, t);
    q.select(&[Matcher::new(MatchType::Equal, "__name__", name).unwrap()])
        .unwrap()
        .into_iter()
        .map(|s| {
            let pts = s.samples().filter(|(_, v)| !v.is_nan()).collect();
            (s.labels().clone(), pts)
        })
        .collect()
}

/// The extrapolation factor of a counter's `rate` over `(range_end - range, range_end]` given its
/// first and last samples and their count, and the increase (last - first, resets counted):
/// Prometheus 2.42's `extrapolatedRate` (`v3 = false`: the zero point is compared with the true
/// distance to the window's start) or Prometheus 3's, which our engine follows (`v3 = true`: the
/// distance is first capped at half an interval).
fn rate_parts(pts: &[(i64, f64)], range_end: i64, range: i64, v3: bool) -> (f64, f64) {
    let (first, last) = (pts[0], pts[pts.len() - 1]);
    let mut result = last.1 - first.1;
    for w in pts.windows(2) {
        if w[1].1 < w[0].1 {
            result += w[0].1;
        }
    }
    let mut d_start = (first.0 - (range_end - range)) as f64 / 1000.0;
    let mut d_end = (range_end - last.0) as f64 / 1000.0;
    let sampled = (last.0 - first.0) as f64 / 1000.0;
    let avg = sampled / (pts.len() - 1) as f64;
    let threshold = avg * 1.1;
    let to_zero = (result > 0.0 && first.1 >= 0.0).then(|| sampled * (first.1 / result));
    if v3 {
        if d_start >= threshold {
            d_start = avg / 2.0;
        }
        if let Some(z) = to_zero {
            d_start = d_start.min(z);
        }
    } else {
        if let Some(z) = to_zero {
            d_start = d_start.min(z);
        }
        if d_start >= threshold {
            d_start = avg / 2.0;
        }
    }
    if d_end >= threshold {
        d_end = avg / 2.0;
    }
    (
        result,
        (sampled + d_start + d_end) / sampled / (range as f64 / 1000.0),
    )
}

#[test]
fn motivating_example_and_node_exporter_against_prometheus() {
    if !common::available(common::PROMETHEUS)
        || !common::available(NODE_EXPORTER)
        || !python_has_client()
    {
        return;
    }
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scrape");
    let mut procs = Vec::new();
    let mut demo_ports = Vec::new();
    for script in ["counter.py", "gauge.py", "histogram.py", "summary.py"] {
        let port = free_port();
        let child = Command::new("python3")
            .arg(fixtures.join(script))
            .arg(port.to_string())
            .current_dir(&fixtures)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        procs.push(Proc(child));
        demo_ports.push(port);
    }
    let node_port = free_port();
    procs.push(Proc(
        Command::new(NODE_EXPORTER)
            .arg(format!("--web.listen-address=127.0.0.1:{node_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    ));
    for &p in demo_ports.iter().chain([&node_port]) {
        wait_listening(p);
    }
    let targets: Vec<String> = demo_ports
        .iter()
        .map(|p| format!("'127.0.0.1:{p}'"))
        .collect();
    let yaml = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: prometheus_demo\n    static_configs:\n      - targets: [{}]\n  - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:{node_port}']\n",
        targets.join(", ")
    );
    let cfg = Config::parse(&yaml, Path::new("prometheus.yml")).unwrap();

    let prom_dir = tempfile::tempdir().unwrap();
    let prom = common::Prometheus::start(prom_dir.path(), &yaml);
    // Both scrapers start within about one interval of each other: wait for Prometheus' first
    // scrape of every target, then start ours.
    let deadline = Instant::now() + Duration::from_secs(20);
    while prom_query(&prom, "count(up == 1)", now_ms())
        .first()
        .is_none_or(|(_, p)| p[0].1 < 5.0)
    {
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped all targets"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path(), Options::default()).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut reg = prometheus_client::registry::Registry::default();
    let m = ScrapeManager::new(Arc::clone(&db), &mut reg);
    rt.block_on(m.apply_config(&cfg)).unwrap();
    std::thread::sleep(RUN);
    let (active, _) = m.targets();
    assert_eq!(active.len(), 5);
    for t in &active {
        assert_eq!(t.health, Health::Up, "{}: {}", t.scrape_url, t.last_error);
    }
    // Per-target metadata (`/api/v1/targets/metadata`'s source): the same entries as
    // Prometheus' endpoint gives for the same targets.
    let (status, body) = prom.get("/api/v1/targets/metadata").unwrap();
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let theirs: BTreeSet<(String, String, String, String, String)> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["target"]["instance"].as_str().unwrap().to_string(),
                e["metric"].as_str().unwrap().to_string(),
                e["type"].as_str().unwrap().to_string(),
                e["help"].as_str().unwrap().to_string(),
                e["unit"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let ours: BTreeSet<(String, String, String, String, String)> = active
        .iter()
        .flat_map(|t| {
            let instance = t.labels.get("instance").unwrap_or("").to_string();
            t.metadata.iter().map(move |(name, m)| {
                (
                    instance.clone(),
                    name.clone(),
                    m.kind.clone(),
                    m.help.clone(),
                    m.unit.clone(),
                )
            })
        })
        .collect();
    assert!(ours.len() > 100, "{}", ours.len());
    // The node exporter's families vary little between two scrapes; compare the demo targets'
    // exactly and the node exporter's by name.
    let node = format!("127.0.0.1:{node_port}");
    let split = |s: &BTreeSet<(String, String, String, String, String)>| {
        let (n, d): (BTreeSet<_>, BTreeSet<_>) = s.iter().cloned().partition(|e| e.0 == node);
        (n.into_iter().map(|e| e.1).collect::<BTreeSet<String>>(), d)
    };
    let ((on, od), (pn, pd)) = (split(&ours), split(&theirs));
    assert_eq!(od, pd, "demo targets' metadata");
    assert_eq!(on, pn, "node exporter's metadata names");
    // Evaluate both at a time both have scraped past.
    let t_eval = now_ms() - 1500;
    std::thread::sleep(Duration::from_millis(500));
    rt.block_on(m.stop());

    // 1. The demo job's series: the same label sets on both sides.
    let sel = "{job=\"prometheus_demo\"}";
    let ours: BTreeSet<Labels> = our_query(&db, &format!("last_over_time({sel}[1m])"), t_eval)
        .into_iter()
        .map(|(l, _)| l)
        .collect();
    let theirs: BTreeSet<Labels> = prom_query(&prom, &format!("last_over_time({sel}[1m])"), t_eval)
        .into_iter()
        .map(|(l, _)| l)
        .collect();
    assert!(ours.len() > 40, "{}", ours.len());
    let only_ours: Vec<_> = ours.difference(&theirs).collect();
    let only_theirs: Vec<_> = theirs.difference(&ours).collect();
    assert!(
        only_ours.is_empty() && only_theirs.is_empty(),
        "only ours: {only_ours:?}\nonly Prometheus': {only_theirs:?}"
    );
    // The node exporter's metric names too (its label sets vary with the machine's state).
    let names = |v: Vec<(Labels, Vec<(i64, f64)>)>| -> BTreeSet<String> {
        v.into_iter()
            .filter_map(|(l, _)| l.get("__name__").map(str::to_string))
            .collect()
    };
    let q = "last_over_time({job=\"node\"}[1m])";
    let (on, pn) = (
        names(our_query(&db, q, t_eval)),
        names(prom_query(&prom, q, t_eval)),
    );
    assert!(on.len() > 100, "{}", on.len());
    assert_eq!(on, pn);

    // 2. Values that stay constant are equal.
    for expr in [
        "function_calls_created",
        "request_duration_created",
        "request_processing_seconds_created",
        "python_info",
        "process_max_fds",
        "process_start_time_seconds",
        "node_memory_MemTotal_bytes",
        "node_exporter_build_info",
        "node_uname_info",
        "count by (job) (up)",
        "up",
    ] {
        let mut a = our_query(&db, expr, t_eval);
        let mut b = prom_query(&prom, expr, t_eval);
        a.sort_by(|x, y| x.0.cmp(&y.0));
        b.sort_by(|x, y| x.0.cmp(&y.0));
        assert!(!a.is_empty(), "{expr}: no result");
        let av: Vec<(&Labels, f64)> = a.iter().map(|(l, p)| (l, p[0].1)).collect();
        let bv: Vec<(&Labels, f64)> = b.iter().map(|(l, p)| (l, p[0].1)).collect();
        assert_eq!(av, bv, "{expr}");
    }

    // 3. Counters sample by sample: ours interleave with Prometheus'.
    let range = 60_000;
    for name in [
        "function_calls_total",
        "request_duration_count",
        "request_processing_seconds_count",
    ] {
        let ours = our_raw(&db, name, t_eval, range);
        let theirs: BTreeMap<Labels, Vec<(i64, f64)>> =
            prom_query(&prom, &format!("{name}[1m]"), t_eval)
                .into_iter()
                .collect();
        assert_eq!(ours.len(), 1, "{name}");
        for (l, pts) in &ours {
            let p = theirs
                .get(l)
                .unwrap_or_else(|| panic!("{name}: {l} not in Prometheus"));
            assert!(
                pts.len() >= 15 && p.len() >= 15,
                "{name}: {} / {}",
                pts.len(),
                p.len()
            );
            let mut checked = 0;
            for &(t, v) in pts {
                let before = p.iter().rev().find(|s| s.0 <= t);
                let after = p.iter().find(|s| s.0 >= t);
                if let (Some(b), Some(a)) = (before, after) {
                    assert!(
                        b.1 <= v && v <= a.1,
                        "{name} at {t}: ours {v}, Prometheus {b:?} .. {a:?}"
                    );
                    checked += 1;
                }
            }
            assert!(
                checked >= 10,
                "{name}: only {checked} samples between Prometheus' ones"
            );
        }
    }

    // 4. rate(function_calls_total[1m]) at the same time.
    let expr = "rate(function_calls_total[1m])";
    let ours = our_query(&db, expr, t_eval);
    let theirs = prom_query(&prom, expr, t_eval);
    assert_eq!(ours.len(), 1);
    assert_eq!(theirs.len(), 1);
    assert_eq!(ours[0].0, theirs[0].0);
    let (r_ours, r_theirs) = (ours[0].1[0].1, theirs[0].1[0].1);
    // Each answer is its engine's formula applied to its own raw samples, exactly.
    let raw_ours = our_raw(&db, "function_calls_total", t_eval, range);
    let raw_ours = raw_ours.values().next().unwrap();
    let raw_theirs = &prom_query(&prom, "function_calls_total[1m]", t_eval)[0].1;
    let (inc_ours, f_ours) = rate_parts(raw_ours, t_eval, range, true);
    let (inc_theirs, f_theirs) = rate_parts(raw_theirs, t_eval, range, false);
    assert!(
        (r_ours - inc_ours * f_ours).abs() <= 1e-9 * r_ours,
        "ours {r_ours} vs {inc_ours} * {f_ours}"
    );
    assert!(
        (r_theirs - inc_theirs * f_theirs).abs() <= 1e-9 * r_theirs,
        "Prometheus {r_theirs} vs {inc_theirs} * {f_theirs}"
    );
    // The increases differ only by what the counter did between our first sample and
    // Prometheus' first, and between the last ones. The counter only grows, so that is at most
    // Prometheus' increase from its sample at or before the earlier of the two to its sample at or
    // after the later one (a scrape of ours delayed by a loaded machine widens the span, and the
    // bound with it).
    let wide = &prom_query(&prom, "function_calls_total[3m]", t_eval + 2000)[0].1;
    let span = |a: i64, b: i64| -> f64 {
        let (lo, hi) = (a.min(b), a.max(b));
        let before = wide.iter().rev().find(|s| s.0 <= lo).map_or(0.0, |s| s.1);
        let after = wide.iter().find(|s| s.0 >= hi).map(|s| s.1).unwrap();
        after - before
    };
    let bound = span(raw_ours[0].0, raw_theirs[0].0)
        + span(
            raw_ours[raw_ours.len() - 1].0,
            raw_theirs[raw_theirs.len() - 1].0,
        );
    eprintln!(
        "rate(function_calls_total[1m]) at {t_eval}: ours {r_ours:.4}/s, Prometheus {r_theirs:.4}/s \
         (rel. diff {:.4}); increase over the sampled span: ours {inc_ours} over {} samples, \
         Prometheus {inc_theirs} over {}; |diff| {} <= {bound}; extrapolation factors x60: ours \
         {:.5} (Prometheus 3 rule), Prometheus {:.5}",
        (r_ours - r_theirs).abs() / r_theirs,
        raw_ours.len(),
        raw_theirs.len(),
        (inc_ours - inc_theirs).abs(),
        f_ours * 60.0,
        f_theirs * 60.0,
    );
    assert!((inc_ours - inc_theirs).abs() <= bound);
    // So the rates differ by the increase bound and by the extrapolation factors, which depend
    // only on the samples' timestamps (first and last within one interval of each other).
    let rel = (r_ours - r_theirs).abs() / r_theirs;
    let rel_bound = bound / inc_theirs + (f_ours - f_theirs).abs() / f_theirs + 1e-9;
    assert!(
        rel <= rel_bound * (1.0 + bound / inc_theirs),
        "{rel} > {rel_bound}"
    );
    assert!(rel < 0.1, "{r_ours} vs {r_theirs}");
    prom.stop();
    drop(procs);
}
