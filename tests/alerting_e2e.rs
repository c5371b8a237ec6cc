//! Issue 6, point 7: the motivating example end to end with the real components. `tsdbctl serve`
//! scrapes the four Python targets (tests/fixtures/scrape/*.py, PyPI `prometheus_client`), runs
//! the example's rule file plus one rule on the gauge, and sends to Debian's Alertmanager 0.25,
//! whose webhook receiver is served by this test. A real Prometheus 2.42 runs the same rules on
//! the same targets at the same time, sending to the same Alertmanager; the external label
//! `source` tells their alerts apart.
//!
//! Timing (kept short so the test stays well under a minute): scrape and evaluation interval 1 s
//! (the example has 15 s); the example's `for: 10s` is kept as it is; the gauge rule has
//! `for: 3s`. The targets start only once both servers run, so that both see the counter pass
//! 100 and the gauge move while running.
//!
//! Checked:
//! - the webhook receives `ExampleAlertName` firing with `severity="low"` and the `summary`
//!   annotation, and `GaugeHigh` firing and then, after the test lowers the gauge, resolved —
//!   from tsdbctl, and from Prometheus for reference, with the same annotations;
//! - the `ALERTS` series of both (raw samples): each alert's pending start, firing start and last
//!   firing sample agree within one evaluation interval plus one scrape interval (the two servers
//!   scrape and evaluate at different phases within the interval, so the same counter value
//!   reaches them up to a scrape interval apart), and the time from pending to firing — the `for`
//!   — within one evaluation interval.
#![cfg(feature = "server")]

mod alerting;
mod common;

use common::{python_has_client, wait_listening, Proc};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use alerting::{Alertmanager, Serve, Webhook, ALERTMANAGER};
use serde_json::Value;

const SCRAPE_INTERVAL_S: i64 = 1;
const EVAL_INTERVAL_S: i64 = 1;

/// The example's rule, unchanged, and a rule on the gauge that the test moves.
const RULES: &str = r#"groups:
  - name: example
    rules:
      - alert: ExampleAlertName
        expr: function_calls_total{module="counter_demo"} > 100
        for: 10s
        labels:
          severity: low
        annotations:
          summary: example summary
      - alert: GaugeHigh
        expr: process_time{module="gauge_demo"} > 1
        for: 3s
        labels:
          severity: high
        annotations:
          summary: 'gauge {{ $labels.module }} is high'
"#;

/// The example's `prometheus.yml` with short intervals, the targets' ports, the rule file, and
/// the Alertmanager.
fn config(source: &str, targets: &[u16], rules: &Path, am_port: u16) -> String {
    let targets: Vec<String> = targets.iter().map(|p| format!("'127.0.0.1:{p}'")).collect();
    format!(
        "global:\n  scrape_interval: {SCRAPE_INTERVAL_S}s\n  evaluation_interval: {EVAL_INTERVAL_S}s\n  scrape_timeout: {SCRAPE_INTERVAL_S}s\n  external_labels:\n    source: {source}\nrule_files:\n  - {}\nalerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{am_port}']\nscrape_configs:\n  - job_name: 'prometheus_demo'\n    static_configs:\n      - targets: [{}]\n",
        rules.display(),
        targets.join(", ")
    )
}

/// Per (alertname, alertstate): the first and last sample timestamps (ms) of `ALERTS` in the
/// last five minutes, from `/api/v1/query` on `port`.
fn alerts_series(port: u16) -> BTreeMap<(String, String), (i64, i64)> {
    let (status, body) = common::http(
        port,
        "GET",
        &format!("/api/v1/query?query={}", common::url_encode("ALERTS[5m]")),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let mut out = BTreeMap::new();
    for s in v["data"]["result"].as_array().into_iter().flatten() {
        let name = s["metric"]["alertname"].as_str().unwrap_or("").to_string();
        let state = s["metric"]["alertstate"].as_str().unwrap_or("").to_string();
        let ts: Vec<i64> = s["values"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| (p[0].as_f64().unwrap() * 1000.0).round() as i64)
            .collect();
        if let (Some(first), Some(last)) = (ts.iter().min(), ts.iter().max()) {
            out.insert((name, state), (*first, *last));
        }
    }
    out
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scrape")
}

#[test]
fn motivating_example_alerts_reach_alertmanager_like_prometheus() {
    if !python_has_client()
        || !common::available(ALERTMANAGER)
        || !common::available(common::PROMETHEUS)
    {
        return;
    }
    let t_start = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let hook = Webhook::start();
    let am = Alertmanager::start(dir.path(), &hook);

    let ports: Vec<u16> = (0..4).map(|_| common::free_port()).collect();
    let rules = dir.path().join("alertrules.yml");
    std::fs::write(&rules, RULES).unwrap();
    let ours_cfg = dir.path().join("tsdbctl.yml");
    std::fs::write(&ours_cfg, config("tsdbctl", &ports, &rules, am.port)).unwrap();
    let prom_dir = dir.path().join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let prom = common::Prometheus::start(&prom_dir, &config("prometheus", &ports, &rules, am.port));
    let ours = Serve::start(&dir.path().join("data"), &ours_cfg, &[]);

    // Both scrape the four (not yet running) targets: Prometheus syncs its scrape pools only
    // every 5 s, so without this wait it would start scraping seconds after tsdbctl.
    for port in [prom.port, ours.port] {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, body) = common::http(port, "GET", "/api/v1/targets").unwrap();
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let active = v["data"]["activeTargets"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if active.len() == 4 && active.iter().all(|t| t["health"] == "down") {
                break;
            }
            assert!(Instant::now() < deadline, "targets of {port}: {body}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // The targets start now that both servers scrape them; the gauge holds 5 from the start.
    let gauge_file = dir.path().join("gauge_value");
    std::fs::write(&gauge_file, "5").unwrap();
    let mut procs = Vec::new();
    for (script, port) in ["counter.py", "gauge.py", "histogram.py", "summary.py"]
        .iter()
        .zip(&ports)
    {
        let child = Command::new("python3")
            .arg(fixtures().join(script))
            .arg(port.to_string())
            .current_dir(fixtures())
            .env("GAUGE_VALUE_FILE", &gauge_file)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        procs.push(Proc(child));
    }
    for p in &ports {
        wait_listening(*p);
    }

    // The gauge alert fires at both; then the test lowers the gauge and both resolve it.
    let within = Duration::from_secs(20);
    let mut gauge_fired = BTreeMap::new();
    for source in ["tsdbctl", "prometheus"] {
        let a = hook.wait_for(
            "firing",
            &[("alertname", "GaugeHigh"), ("source", source)],
            within,
        );
        gauge_fired.insert(source, a);
    }
    std::fs::write(&gauge_file, "0").unwrap();
    for source in ["tsdbctl", "prometheus"] {
        hook.wait_for(
            "resolved",
            &[("alertname", "GaugeHigh"), ("source", source)],
            within,
        );
    }
    let ours_gauge = &gauge_fired["tsdbctl"];
    assert_eq!(ours_gauge["labels"]["severity"], "high", "{ours_gauge}");
    assert_eq!(
        ours_gauge["annotations"],
        gauge_fired["prometheus"]["annotations"]
    );
    assert_eq!(
        ours_gauge["annotations"]["summary"],
        "gauge gauge_demo is high"
    );

    // The example's alert: counter past 100, then 10 s pending.
    let mut example = BTreeMap::new();
    for source in ["tsdbctl", "prometheus"] {
        let a = hook.wait_for(
            "firing",
            &[("alertname", "ExampleAlertName"), ("source", source)],
            within,
        );
        example.insert(source, a);
    }
    let e = &example["tsdbctl"];
    assert_eq!(e["labels"]["severity"], "low", "{e}");
    assert_eq!(e["labels"]["module"], "counter_demo", "{e}");
    assert_eq!(e["annotations"]["summary"], "example summary", "{e}");
    assert_eq!(e["annotations"], example["prometheus"]["annotations"]);
    let mut ours_labels = e["labels"].clone();
    let mut theirs_labels = example["prometheus"]["labels"].clone();
    ours_labels["source"] = Value::Null;
    theirs_labels["source"] = Value::Null;
    assert_eq!(ours_labels, theirs_labels);

    // ALERTS of both: the same transitions.
    let theirs = alerts_series(prom.port);
    let mine = alerts_series(ours.port);
    eprintln!("ALERTS tsdbctl: {mine:?}\nALERTS Prometheus: {theirs:?}");
    let tolerance = (EVAL_INTERVAL_S + SCRAPE_INTERVAL_S) * 1000;
    let mut report = Vec::new();
    for (key, (p_first, p_last)) in &theirs {
        let Some((o_first, o_last)) = mine.get(key) else {
            panic!("tsdbctl has no ALERTS{key:?}; ours: {mine:?}; Prometheus: {theirs:?}");
        };
        report.push(format!(
            "{key:?}: first {:+} ms, last {:+} ms",
            o_first - p_first,
            o_last - p_last
        ));
        assert!(
            (o_first - p_first).abs() <= tolerance,
            "{key:?} starts {} ms apart; ours {mine:?}, Prometheus {theirs:?}",
            o_first - p_first
        );
        // The gauge alert is gone at both; its last firing sample is when.
        if key.0 == "GaugeHigh" {
            assert!(
                (o_last - p_last).abs() <= tolerance,
                "{key:?} ends {} ms apart; ours {mine:?}, Prometheus {theirs:?}",
                o_last - p_last
            );
        }
    }
    assert_eq!(
        mine.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>()
    );
    for name in ["ExampleAlertName", "GaugeHigh"] {
        let pend = |m: &BTreeMap<(String, String), (i64, i64)>| {
            let p = m[&(name.to_string(), "pending".to_string())].0;
            let f = m[&(name.to_string(), "firing".to_string())].0;
            f - p
        };
        let (o, p) = (pend(&mine), pend(&theirs));
        report.push(format!("{name}: pending for {o} ms (Prometheus {p} ms)"));
        assert!(
            (o - p).abs() <= EVAL_INTERVAL_S * 1000,
            "{name}: pending {o} ms vs Prometheus {p} ms"
        );
    }
    eprintln!(
        "ALERTS tsdbctl - Prometheus: {}; whole test {:?}",
        report.join("; "),
        t_start.elapsed()
    );
    drop(procs);
}
