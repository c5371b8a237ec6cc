//! Rules in `tsdbctl serve` as an operator sees them: a recording rule's series, an alert that
//! goes pending then firing, a reload that keeps the alert's `activeAt`, a restart that restores
//! it from `ALERTS_FOR_STATE`; `/api/v1/rules` and `/api/v1/alerts` shaped as a real Prometheus
//! 2.42 answers for the same rule file and target; `tsdbctl check rules` against `promtool
//! check rules`.
#![cfg(feature = "server")]

mod common;

use common::Serve;
use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A target exposing `demo_value{k="a"}` with a value the test sets.
struct GaugeTarget {
    addr: SocketAddr,
    value: Arc<AtomicU64>,
}

impl GaugeTarget {
    fn start(v: f64) -> GaugeTarget {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let value = Arc::new(AtomicU64::new(v.to_bits()));
        let shared = value.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                loop {
                    line.clear();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) if line == "\r\n" => break,
                        Ok(_) => {}
                    }
                }
                let v = f64::from_bits(shared.load(Ordering::SeqCst));
                let body = format!("# TYPE demo_value gauge\ndemo_value{{k=\"a\"}} {v}\n");
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        GaugeTarget { addr, value }
    }
}

/// SIGTERM, and a clean exit.
fn terminate(server: Serve) {
    let (status, log) = server.terminate();
    assert!(status.success(), "exit {status}; log:\n{log}");
}

fn api_get(port: u16, path: &str) -> Value {
    let (status, body) = common::http(port, "GET", path).unwrap();
    assert_eq!(status, 200, "{path}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["data"].clone()
}

fn wait_for(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if ok() {
            return;
        }
        thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}");
}

fn config(target: SocketAddr, rules: &Path) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n  external_labels:\n    site: here\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: demo\n    static_configs:\n      - targets: ['{target}']\n",
        rules.display()
    )
}

const RULES: &str = r#"groups:
- name: demo
  rules:
  - record: demo:value:double
    expr: demo_value * 2
    labels:
      source: rule
  - alert: DemoHigh
    expr: demo_value > 100
    for: 2s
    labels:
      severity: low
    annotations:
      summary: 'value {{ $value }} on {{ $labels.k }}'
"#;

/// The firing `DemoHigh` alerts of `/api/v1/alerts`.
fn firing(alerts: &Value) -> Vec<Value> {
    alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["state"] == "firing" && a["labels"]["alertname"] == "DemoHigh")
        .cloned()
        .collect()
}

/// RFC 3339 (as the API writes it) to whole Unix seconds.
fn unix_seconds(s: &str) -> i64 {
    let ms = tsdb::api::parse_time(s).unwrap_or_else(|e| panic!("{s}: {e:?}"));
    ms.div_euclid(1000)
}

#[test]
fn serve_records_fires_reloads_and_restores_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let target = GaugeTarget::start(150.0);
    let rules = dir.path().join("rules.yml");
    fs::write(&rules, RULES).unwrap();
    let cfg = dir.path().join("prometheus.yml");
    fs::write(&cfg, config(target.addr, &rules)).unwrap();
    let db = dir.path().join("data");
    // A 1 s grace period so that the 2 s `for` is restored at restart.
    let flags = ["--rules.alert.for-grace-period", "1s"];
    let server = Serve::start(&db, &cfg, &flags);

    // The recording rule's series, with the rule's label.
    wait_for("the recorded series", 20, || {
        let r = api_get(server.port, "/api/v1/query?query=demo:value:double");
        r["result"].as_array().is_some_and(|v| {
            v.len() == 1
                && v[0]["value"][1] == "300"
                && v[0]["metric"]["source"] == "rule"
                && v[0]["metric"]["k"] == "a"
        })
    });
    // Pending, then firing after `for`.
    wait_for("the alert firing", 20, || {
        !firing(&api_get(server.port, "/api/v1/alerts")).is_empty()
    });
    let alert = firing(&api_get(server.port, "/api/v1/alerts")).remove(0);
    assert_eq!(alert["labels"]["severity"], "low");
    assert_eq!(alert["annotations"]["summary"], "value 150 on a");
    assert_eq!(alert["value"], "1.5e+02");
    let active_at = alert["activeAt"].as_str().unwrap().to_string();
    let alerts_series = api_get(
        server.port,
        "/api/v1/query?query=ALERTS%7Balertstate%3D%22firing%22%7D",
    );
    assert_eq!(
        alerts_series["result"][0]["metric"]["alertname"], "DemoHigh",
        "{alerts_series}"
    );

    // A reload that changes the group keeps the alert's activeAt.
    fs::write(
        &rules,
        RULES.replace("value {{ $value }}", "now {{ $value }}")
            + "  - record: demo:value:triple\n    expr: demo_value * 3\n",
    )
    .unwrap();
    let (status, body) = common::http(server.port, "POST", "/-/reload").unwrap();
    assert_eq!(status, 200, "{body}");
    wait_for("the changed annotation", 20, || {
        firing(&api_get(server.port, "/api/v1/alerts"))
            .first()
            .is_some_and(|a| a["annotations"]["summary"] == "now 150 on a")
    });
    let after = firing(&api_get(server.port, "/api/v1/alerts")).remove(0);
    assert_eq!(
        after["activeAt"],
        active_at.as_str(),
        "reload reset the alert"
    );
    let groups = api_get(server.port, "/api/v1/rules");
    assert_eq!(groups["groups"][0]["rules"].as_array().unwrap().len(), 3);

    // A restart restores activeAt (to the second, as ALERTS_FOR_STATE stores it) instead of
    // starting `for` again.
    terminate(server);
    thread::sleep(Duration::from_millis(1500));
    let server = Serve::start(&db, &cfg, &flags);
    wait_for("the alert firing again", 20, || {
        !firing(&api_get(server.port, "/api/v1/alerts")).is_empty()
    });
    let restored = firing(&api_get(server.port, "/api/v1/alerts")).remove(0);
    assert_eq!(
        unix_seconds(restored["activeAt"].as_str().unwrap()),
        unix_seconds(&active_at),
        "{restored}; log:\n{}",
        server.logs()
    );

    // The value drops: the alert resolves and leaves /api/v1/alerts.
    target.value.store(1f64.to_bits(), Ordering::SeqCst);
    wait_for("the alert resolved", 20, || {
        api_get(server.port, "/api/v1/alerts")["alerts"]
            .as_array()
            .is_some_and(|a| a.is_empty())
    });
    let metrics = common::http(server.port, "GET", "/metrics").unwrap().1;
    assert!(
        metrics.contains("prometheus_rule_evaluations_total{rule_group=\""),
        "{metrics}"
    );
    terminate(server);
}

/// The keys of a JSON value, recursively, with the JSON type of each leaf: the "shape".
fn shape(v: &Value, path: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                shape(v, &format!("{path}.{k}"), out);
            }
        }
        Value::Array(a) => {
            for v in a {
                shape(v, &format!("{path}[]"), out);
            }
        }
        Value::String(_) => {
            out.insert(format!("{path}: string"));
        }
        Value::Number(_) => {
            out.insert(format!("{path}: number"));
        }
        Value::Bool(_) => {
            out.insert(format!("{path}: bool"));
        }
        Value::Null => {
            out.insert(format!("{path}: null"));
        }
    }
}

/// `v` with the fields that differ between two servers by nature (times, durations) blanked.
fn stable(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let v = match k.as_str() {
                        "evaluationTime" | "lastEvaluation" | "activeAt" | "file" => Value::Null,
                        _ => stable(v),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(stable).collect()),
        v => v.clone(),
    }
}

#[test]
fn rules_api_is_shaped_as_prometheus() {
    if !common::available(common::PROMETHEUS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let target = GaugeTarget::start(150.0);
    let rules = dir.path().join("rules.yml");
    fs::write(
        &rules,
        RULES.to_string()
            + "  - alert: NeverFires\n    expr: demo_value > 1000\n    for: 1m\n    labels:\n      severity: page\n",
    )
    .unwrap();
    let prom_dir = dir.path().join("prom");
    fs::create_dir(&prom_dir).unwrap();
    let prom = common::Prometheus::start(&prom_dir, &config(target.addr, &rules));
    let cfg = dir.path().join("prometheus.yml");
    fs::write(&cfg, config(target.addr, &rules)).unwrap();
    let ours = Serve::start(&dir.path().join("data"), &cfg, &[]);

    let both_firing = |port: u16| !firing(&api_get(port, "/api/v1/alerts")).is_empty();
    wait_for("both alerts firing", 30, || {
        both_firing(prom.port) && both_firing(ours.port)
    });
    for path in [
        "/api/v1/rules",
        "/api/v1/rules?type=alert",
        "/api/v1/rules?type=record",
        "/api/v1/alerts",
    ] {
        let (p, o) = (api_get(prom.port, path), api_get(ours.port, path));
        let (mut ps, mut os) = (BTreeSet::new(), BTreeSet::new());
        shape(&p, "", &mut ps);
        shape(&o, "", &mut os);
        assert_eq!(os, ps, "{path}: shape differs\nours: {o}\nprometheus: {p}");
        assert_eq!(stable(&o), stable(&p), "{path}: values differ");
    }
    // The series rules write carry the same labels.
    for q in ["ALERTS", "ALERTS_FOR_STATE", "demo:value:double"] {
        let metrics = |port: u16| -> BTreeSet<String> {
            api_get(
                port,
                &format!("/api/v1/query?query={}", common::url_encode(q)),
            )["result"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["metric"].to_string())
                .collect()
        };
        let (p, o) = (metrics(prom.port), metrics(ours.port));
        assert!(!p.is_empty(), "{q}: Prometheus has none");
        assert_eq!(o, p, "{q}");
    }
    // The group's file is the path as configured.
    let g = api_get(ours.port, "/api/v1/rules");
    assert_eq!(g["groups"][0]["file"], rules.display().to_string());
    let (status, body) = common::http(ours.port, "GET", "/api/v1/rules?type=bogus").unwrap();
    let (pstatus, pbody) = common::http(prom.port, "GET", "/api/v1/rules?type=bogus").unwrap();
    assert_eq!((status, body.trim()), (pstatus, pbody.trim()));
    terminate(ours);
    prom.stop();
}

/// `tsdbctl check rules` and `promtool check rules` on the same files: the same stdout, exit
/// status, and the same problems (promtool also gives columns, which we do not).
#[test]
fn check_rules_agrees_with_promtool() {
    if !common::available(common::PROMTOOL) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let files = [
        ("good.yml", RULES.to_string()),
        (
            "bad.yml",
            "groups:\n- name: g\n  rules:\n  - record: a-b\n    expr: up(\n  - alert: X\n".into(),
        ),
        (
            "badtmpl.yml",
            "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up\n    annotations:\n      summary: '{{ nosuchfunction }}'\n".into(),
        ),
        (
            "dup.yml",
            "groups:\n- name: g\n  rules:\n  - alert: r\n    expr: up\n    labels: {a: b}\n  - alert: r\n    expr: up\n    labels: {a: b}\n".into(),
        ),
    ];
    for (name, text) in &files {
        fs::write(dir.path().join(name), text).unwrap();
    }
    let run = |bin: &str, args: &[&str]| {
        let o = Command::new(bin)
            .current_dir(dir.path())
            .args(["check", "rules"])
            .args(args)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8(o.stdout).unwrap(),
            String::from_utf8(o.stderr).unwrap(),
        )
    };
    let ours_bin = env!("CARGO_BIN_EXE_tsdbctl");
    for args in [
        &["good.yml"][..],
        &["good.yml", "bad.yml"],
        &["dup.yml"],
        &["good.yml", "dup.yml", "bad.yml"],
        &["badtmpl.yml"],
    ] {
        let (pc, pout, perr) = run(common::PROMTOOL, args);
        let (oc, oout, oerr) = run(ours_bin, args);
        assert_eq!((oc, &oout), (pc, &pout), "{args:?}: stderr {oerr}");
        // Error lines: `file: line[:col]: group "g", rule N, "name": message`; compare the
        // file, the rule and the message's first words.
        let key = |l: &str| -> String {
            match l.split_once(": group ") {
                Some((file, rest)) => {
                    let file = file.split(':').next().unwrap_or("");
                    let rule = rest.split(": ").next().unwrap_or("");
                    format!("{file} {rule}")
                }
                None => l.to_string(),
            }
        };
        let p: Vec<String> = perr.lines().map(key).collect();
        let o: Vec<String> = oerr.lines().map(key).collect();
        assert_eq!(o, p, "{args:?}:\nours:\n{oerr}\npromtool:\n{perr}");
    }
    // Positions and messages word for word, where promtool gives a position (the yaml.v3 node
    // of the value, then the parser's `line:col`).
    let exprs = [
        "rate(x[5m]",
        "foo{",
        "1 +",
        "foo[5m",
        "x @ 1 offset",
        "foo bar",
        "{}",
        "x[5m]]",
        "abs(x) + abs(x, y)",
        "nofunc(x)",
        "\"unterminated",
        "topk(x)",
        "x \"abcdefghijklmn\"",
        "x by",
        "x sum",
        "sum(x) (y)",
        "(x",
        "sum(rate(x[5m])) by",
        "x offset -",
        "SUM( (x) BY (job)",
        "x{a= =\"b\"}",
        "x{a b=\"c\"}",
        "x[7m:1m)",
        "x[2m)",
        "rate(x[",
        "rate(x[1m",
        "x[ [1m]",
        "hour)",
        "histogram_sum((x[5m]))",
        "avg()",
        "clamp(x, , 1)",
        "sum by (a a) (x)",
        "x / on( (a) y",
        "x{a=\"b\"} }",
    ];
    let mut text = String::from("groups:\n  - name: g\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        text.push_str(&format!(
            "      - record: r{i}\n        expr:   {}\n",
            serde_json::to_string(e).unwrap()
        ));
    }
    text.push_str(
        "      - record: a-b\n        alert: both\n        expr:\n          up\n  -  name: g\n",
    );
    fs::write(dir.path().join("positions.yml"), text).unwrap();
    let (pc, pout, perr) = run(common::PROMTOOL, &["positions.yml"]);
    let (oc, oout, oerr) = run(ours_bin, &["positions.yml"]);
    assert_eq!((oc, oout, oerr), (pc, pout, perr));
    let (pc, ..) = run(common::PROMTOOL, &["--lint-fatal", "dup.yml"]);
    let (oc, ..) = run(ours_bin, &["--lint-fatal", "dup.yml"]);
    assert_eq!(oc, pc);
}
