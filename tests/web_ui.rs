//! The web UI of `tsdbctl serve` (issue 7), in a real browser: Debian's Chromium driven through
//! chromedriver's W3C WebDriver protocol (a small client over reqwest below, so CI needs neither
//! Python nor Node), against a `tsdbctl serve` scraping the motivating example's four targets
//! (tests/fixtures/scrape) with a label value `<img src=x onerror=alert(1)>`, plus 100 series ×
//! 1,000 samples written before the start for the drawing-time figure.
//!
//! Without /usr/bin/chromium or /usr/bin/chromedriver the browser test skips with a notice
//! (fails under `TSDB_REQUIRE_PEERS=1`). `TSDB_UI_SCREENSHOTS=<dir>` saves the graph, targets and
//! alerts pages there as PNG (how docs/ui-*.png are made).
#![cfg(feature = "server")]

mod common;

use common::{python_has_client, wait_listening, Proc};

use serde_json::{json, Value};
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tsdb::labels::Labels;
use tsdb::{Db, Options};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The issue's bound on everything a first visit downloads, gzipped.
const UI_GZIP_BUDGET: usize = 150 * 1024;
const XSS: &str = "<img src=x onerror=alert(1)>";
/// WebDriver's element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// The drawing-time figure's data: series × samples (1 s apart).
const PERF_SERIES: usize = 100;
const PERF_POINTS: i64 = 1000;
/// The table's cap (graph.js `MAX_TABLE_ROWS`); the graph's is 500.
const MANY_SERIES: usize = 10_000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// One HTTP/1.0 response: status, headers (lower-case names), body bytes.
struct Resp {
    status: u32,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no header end");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Resp {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

/// `tsdbctl serve`, killed on drop.
struct Server {
    _proc: Proc,
    port: u16,
    log: PathBuf,
}

impl Server {
    fn start(dir: &Path, config_yaml: &str) -> Server {
        let s = Server::spawn(dir, config_yaml, &[]);
        s.wait("ready", |s| {
            common::http(s.port, "GET", "/-/ready").is_ok_and(|(c, _)| c == 200)
        });
        s
    }

    /// Started with `extra` flags; returns once it listens.
    fn spawn(dir: &Path, config_yaml: &str, extra: &[&str]) -> Server {
        let port = common::free_port();
        let cfg = dir.join("prometheus.yml");
        fs::write(&cfg, config_yaml).unwrap();
        let log = dir.join("serve.log");
        let child = Command::new(env!("CARGO_BIN_EXE_tsdbctl"))
            .args(["serve", "--db"])
            .arg(dir.join("data"))
            .arg("--config")
            .arg(&cfg)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let s = Server {
            _proc: Proc(child),
            port,
            log,
        };
        s.wait("listening", |s| {
            TcpStream::connect(("127.0.0.1", s.port)).is_ok()
        });
        s
    }

    fn logs(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait(&self, what: &str, mut ok: impl FnMut(&Server) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if ok(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("timed out waiting for {what}; log:\n{}", self.logs());
    }

    /// `GET` of an API path as JSON (errors too: their body is JSON).
    fn api(&self, path_and_query: &str) -> Value {
        let (_, body) = common::http(self.port, "GET", path_and_query).unwrap();
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path_and_query}: {e}: {body}"))
    }

    fn query(&self, expr: &str, time_s: Option<f64>) -> Value {
        let mut q = format!("/api/v1/query?query={}", common::url_encode(expr));
        if let Some(t) = time_s {
            q.push_str(&format!("&time={t}"));
        }
        self.api(&q)
    }
}

/// The configuration of the browser test: the four targets (with the XSS label) every second,
/// rules evaluated every second.
fn demo_config(ports: &[u16], rules: &Path) -> String {
    let targets: Vec<String> = ports.iter().map(|p| format!("'127.0.0.1:{p}'")).collect();
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files: ['{}']\n\
         scrape_configs:\n  - job_name: demo\n    static_configs:\n      - targets: [{}]\n        labels:\n          xss: '{XSS}'\n",
        rules.display(),
        targets.join(", ")
    )
}

const RULES: &str = r#"groups:
  - name: ui
    rules:
      - alert: DemoTargetUp
        expr: up{job="demo"} == 1
        labels:
          severity: info
        annotations:
          summary: "<script>alert(2)</script> is shown as text"
      - alert: NeverFires
        expr: up{job="demo"} == 2
      - record: job:function_calls:rate1m
        expr: sum by (job) (rate(function_calls_total[1m]))
"#;

/// chromedriver and one Chromium session, both ended on drop.
struct Browser {
    _driver: Proc,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    base: String,
    session: String,
}

impl Browser {
    fn start() -> Browser {
        let port = common::free_port();
        let driver = Proc(
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_listening(port);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut b = Browser {
            _driver: driver,
            rt,
            http: reqwest::Client::new(),
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
        };
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless", "--no-sandbox", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--disable-quic",
                         "--disable-gpu", "--window-size=1280,900"],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let v = b.raw("POST", "/session", Some(caps));
        b.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        b
    }

    /// One WebDriver command; its `value`, or an `Err` with the WebDriver error.
    fn try_raw(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, Value> {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self
                .http
                .post(url)
                .header("Content-Type", "application/json")
                .body(body.unwrap_or(json!({})).to_string()),
        };
        let text = self.rt.block_on(async {
            let resp = req
                .timeout(Duration::from_secs(60))
                .send()
                .await
                .expect("chromedriver request");
            resp.text().await.expect("chromedriver body")
        });
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        let value = v["value"].clone();
        if value.get("error").is_some() {
            Err(value)
        } else {
            Ok(value)
        }
    }

    fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_raw(method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.raw(method, &format!("/session/{}{path}", self.session), body)
    }

    fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    fn js(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Waits until `script` returns a truthy value; returns it.
    fn wait_js(&self, what: &str, script: &str, args: Value) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.js(script, args.clone());
            let empty = v.as_array().is_some_and(|a| a.is_empty());
            if !(v.is_null() || empty || v == json!(false) || v == json!("") || v == json!(0)) {
                return v;
            }
            if Instant::now() > deadline {
                let page = self.js("return document.body.innerText", json!([]));
                panic!("timed out waiting for {what}; page text:\n{page}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn find(&self, css: &str) -> String {
        let v = self.cmd(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v[ELEMENT].as_str().unwrap().to_string()
    }

    fn type_keys(&self, element: &str, text: &str) {
        self.cmd(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        );
    }

    fn screenshot(&self, name: &str) {
        let Some(dir) = std::env::var_os("TSDB_UI_SCREENSHOTS") else {
            return;
        };
        use base64::Engine;
        let b64 = self.cmd("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        fs::write(Path::new(&dir).join(name), png).unwrap();
    }

    /// Whether a JavaScript dialog (`alert(...)`) is open.
    fn dialog_open(&self) -> bool {
        self.try_raw(
            "GET",
            &format!("/session/{}/alert/text", self.session),
            None,
        )
        .is_ok()
    }

    /// The console's messages since the last call (chromedriver's log endpoint).
    fn console(&self) -> Vec<String> {
        self.cmd("POST", "/se/log", Some(json!({"type": "browser"})))
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|e| format!("{} {}", e["level"], e["message"]))
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.try_raw("DELETE", &format!("/session/{}", self.session), None);
        }
    }
}

/// Pixels of the panel's graph canvas that are clearly colored (series lines: uPlot draws axes
/// and grid in black and grey).
const COLORED_PIXELS: &str = r#"
const c = document.querySelector(arguments[0] + ' .chart canvas');
if (!c) return -1;
const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
let n = 0;
for (let i = 0; i < d.length; i += 4) {
  const mx = Math.max(d[i], d[i+1], d[i+2]), mn = Math.min(d[i], d[i+1], d[i+2]);
  if (d[i+3] > 0 && mx - mn > 60) n++;
}
return n;
"#;

fn url_param(s: &str) -> String {
    common::url_encode(s)
}

/// Writes [`PERF_SERIES`] × [`PERF_POINTS`] samples of `ui_perf` ending at `end_ms` (whole
/// seconds) into `dir` before the server opens it.
fn write_perf_data(dir: &Path, end_ms: i64) {
    let db = Db::open(dir, Options::default()).unwrap();
    let mut app = db.appender();
    for s in 0..PERF_SERIES {
        let name = format!("s{s:03}");
        let l = Labels::from_pairs(&[("__name__", "ui_perf"), ("series", &name)]);
        for k in 0..PERF_POINTS {
            let t = end_ms - (PERF_POINTS - 1 - k) * 1000;
            let v = (s as f64) + ((k as f64) / 50.0 + s as f64).sin() * 3.0;
            app.append(&l, t, v).unwrap();
        }
    }
    // One more series than a table shows: the caps' notices.
    for s in 0..=MANY_SERIES {
        let name = format!("m{s:05}");
        let l = Labels::from_pairs(&[("__name__", "ui_many"), ("i", &name)]);
        app.append(&l, end_ms - 1000, 1.0).unwrap();
        app.append(&l, end_ms, 2.0).unwrap();
    }
    app.commit().unwrap();
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[test]
fn ui_in_chromium() {
    if !common::available(CHROMIUM) || !common::available(CHROMEDRIVER) || !python_has_client() {
        return;
    }
    let t0 = Instant::now();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scrape");
    let mut procs = Vec::new();
    let mut ports = Vec::new();
    for script in ["counter.py", "gauge.py", "histogram.py", "summary.py"] {
        let port = common::free_port();
        procs.push(Proc(
            Command::new("python3")
                .arg(fixtures.join(script))
                .arg(port.to_string())
                .current_dir(&fixtures)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap(),
        ));
        ports.push(port);
    }
    for &p in &ports {
        wait_listening(p);
    }
    let dir = tempfile::tempdir().unwrap();
    let perf_end_ms = now_ms() / 1000 * 1000 - 60_000;
    write_perf_data(&dir.path().join("data"), perf_end_ms);
    let rules = dir.path().join("rules.yml");
    fs::write(&rules, RULES).unwrap();
    let server = Server::start(dir.path(), &demo_config(&ports, &rules));
    let base = format!("http://127.0.0.1:{}", server.port);
    // Five scrapes at least: the rate then has several points to draw a line through (on an
    // idle machine the setup is quick enough that a single point was all there was, and a
    // single point draws no line).
    server.wait("four targets up and a rate over five scrapes", |s| {
        let up = s.query("count(up{job=\"demo\"} == 1)", None);
        let scrapes = s.query("min(count_over_time(function_calls_total[1m]))", None);
        up["data"]["result"][0]["value"][1] == "4"
            && scrapes["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|n| n >= 5.0)
    });
    let browser = Browser::start();
    eprintln!("setup: {:?}", t0.elapsed());
    if std::env::var_os("TSDB_UI_SCREENSHOTS").is_some() {
        // A graph worth looking at: a minute of scrapes.
        std::thread::sleep(Duration::from_secs(60));
    }

    // --- Graph of rate(function_calls_total[1m]): drawn, legend lists the series. ---
    let expr = "rate(function_calls_total[1m])";
    browser.goto(&format!(
        "{base}/graph?g0.expr={}&g0.tab=0&g0.range_input=2m",
        url_param(expr)
    ));
    browser.wait_js(
        "the graph",
        "return document.querySelector('.panel').dataset.state === 'done'",
        json!([]),
    );
    let colored = browser
        .js(COLORED_PIXELS, json!([".panel"]))
        .as_i64()
        .unwrap();
    assert!(colored > 50, "graph canvas has {colored} colored pixels");
    let legend = browser.js(
        "return [...document.querySelectorAll('.legend-text')].map(e => e.textContent)",
        json!([]),
    );
    let want = format!(
        "{{instance=\"127.0.0.1:{}\", job=\"demo\", module=\"counter_demo\", xss=\"{XSS}\"}}",
        ports[0]
    );
    assert_eq!(legend, json!([want]), "legend");
    // Hover near the right end of the plot (where the few seconds of data are) shows a time
    // and a value.
    let over = browser.find(".panel .u-over");
    let half = browser
        .js(
            "return Math.floor(document.querySelector('.panel .u-over').clientWidth / 2)",
            json!([]),
        )
        .as_i64()
        .unwrap();
    browser.cmd(
        "POST",
        "/actions",
        Some(json!({"actions": [{"type": "pointer", "id": "mouse", "actions": [
            {"type": "pointerMove", "origin": {ELEMENT: over}, "x": half - 40, "y": 0, "duration": 0},
            {"type": "pointerMove", "origin": {ELEMENT: over}, "x": half - 4, "y": 0, "duration": 50},
        ]}]})),
    );
    let tip = browser.wait_js(
        "the hover tooltip",
        "const t = document.querySelector('.chart-tooltip'); return !t.hidden && t.textContent",
        json!([]),
    );
    assert!(
        tip.as_str().unwrap().contains("value: ") && tip.as_str().unwrap().contains("UTC"),
        "{tip}"
    );
    // Click on the legend item hides the series; a second click shows it again.
    browser.js("document.querySelector('.legend-item').click()", json!([]));
    let shown = browser.js(
        "const p = document.querySelector('.legend-item'); return !p.classList.contains('off')",
        json!([]),
    );
    assert_eq!(shown, json!(false));
    browser.js("document.querySelector('.legend-item').click()", json!([]));
    browser.cmd(
        "POST",
        "/actions",
        Some(
            json!({"actions": [{"type": "pointer", "id": "mouse", "actions": [
        {"type": "pointerMove", "origin": "viewport", "x": 5, "y": 5, "duration": 0}]}]}),
        ),
    );
    browser.screenshot("ui-graph.png");

    // Drag-zoom: selecting a span sets a shorter range and a fixed end in the URL, and reruns.
    browser.cmd(
        "POST",
        "/actions",
        Some(json!({"actions": [{"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"}, "actions": [
            {"type": "pointerMove", "origin": {ELEMENT: over}, "x": -200, "y": 0, "duration": 0},
            {"type": "pointerDown", "button": 0},
            {"type": "pointerMove", "origin": {ELEMENT: over}, "x": 100, "y": 0, "duration": 100},
            {"type": "pointerUp", "button": 0},
        ]}]})),
    );
    let url = browser.wait_js(
        "the zoomed view in the URL",
        "return location.search.includes('g0.end_input=') && location.search",
        json!([]),
    );
    let url = url.as_str().unwrap().to_string();
    let range = url
        .split('&')
        .find_map(|kv| kv.strip_prefix("g0.range_input="))
        .unwrap();
    assert_ne!(range, "2m", "zoom kept the range: {url}");
    browser.wait_js(
        "the zoomed graph",
        "return document.querySelector('.panel').dataset.state === 'done'",
        json!([]),
    );

    // --- Table at a chosen time: the values the API returns. ---
    // At the latest sample's timestamp, so that later scrapes change nothing.
    let at_s: f64 = server.query("max(timestamp(function_calls_total))", None)["data"]["result"][0]
        ["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let at_input = {
        let d = browser.js(
            "return new Date(arguments[0] * 1000).toISOString().slice(0, 23).replace('T', ' ')",
            json!([at_s]),
        );
        d.as_str().unwrap().to_string()
    };
    browser.goto(&format!(
        "{base}/graph?g0.expr={}&g0.tab=1&g0.end_input={}",
        url_param("function_calls_total"),
        url_param(&at_input)
    ));
    browser.wait_js(
        "the table",
        "return document.querySelector('.panel').dataset.state === 'done'",
        json!([]),
    );
    let rows = browser.js(
        "return [...document.querySelectorAll('table.result tr')].map(r => [r.cells[0].textContent, r.cells[1].textContent])",
        json!([]),
    );
    let api = server.query("function_calls_total", Some(at_s));
    let want: Vec<Value> = api["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let m = &s["metric"];
            json!([
                format!(
                    "function_calls_total{{instance=\"{}\", job=\"demo\", module=\"counter_demo\", xss=\"{XSS}\"}}",
                    m["instance"].as_str().unwrap()
                ),
                s["value"][1]
            ])
        })
        .collect();
    assert!(!want.is_empty());
    assert_eq!(rows, json!(want), "table vs API at {at_s}");

    // --- Editor: Shift+Enter is a newline, Enter runs; completion. ---
    browser.goto(&format!("{base}/graph"));
    let ta = browser.find(".panel textarea.expr");
    browser.type_keys(&ta, "up\u{E008}\u{E007}\u{E000}== 1");
    let v = browser.js(
        "return [document.querySelector('textarea.expr').value, document.querySelector('.panel').dataset.state || '']",
        json!([]),
    );
    assert_eq!(v, json!(["up\n== 1", ""]), "Shift+Enter must not run");
    browser.type_keys(&ta, "\u{E007}");
    browser.wait_js(
        "Enter to run",
        "return document.querySelector('.panel').dataset.state === 'done'",
        json!([]),
    );
    let n = browser.js(
        "return document.querySelectorAll('table.result tr').length",
        json!([]),
    );
    assert_eq!(n, json!(4), "up == 1 rows");
    // The list once it shows completions of the kind wanted (arguments[0]).
    let completions = "const c = document.querySelector('.completions'); return !c.hidden && c.dataset.kind === arguments[0] && [...c.querySelectorAll('li .completion-text')].map(e => e.textContent)";
    browser.js(
        "const t = document.querySelector('textarea.expr'); t.value = ''; t.focus()",
        json!([]),
    );
    browser.type_keys(&ta, "function_c");
    let items = browser.wait_js("metric name completion", completions, json!(["name"]));
    assert!(
        items
            .as_array()
            .unwrap()
            .contains(&json!("function_calls_total")),
        "{items}"
    );
    browser.type_keys(&ta, "alls_t");
    browser.wait_js(
        "the one metric left",
        "const c = document.querySelector('.completions'); return !c.hidden && c.querySelectorAll('li').length === 1",
        json!([]),
    );
    browser.type_keys(&ta, "\u{E004}{mod");
    let items = browser.wait_js("label name completion", completions, json!(["label"]));
    assert_eq!(items, json!(["module"]));
    browser.type_keys(&ta, "\u{E004}=\"");
    let items = browser.wait_js("label value completion", completions, json!(["value"]));
    assert_eq!(items, json!(["counter_demo"]));
    browser.type_keys(&ta, "\u{E004}}");
    let v = browser.js(
        "return document.querySelector('textarea.expr').value",
        json!([]),
    );
    assert_eq!(v, json!("function_calls_total{module=\"counter_demo\"}"));
    browser.js(
        "const t = document.querySelector('textarea.expr'); t.value = ''; t.focus()",
        json!([]),
    );
    browser.type_keys(&ta, "histogram_q");
    let items = browser.wait_js("function completion", completions, json!(["name"]));
    assert_eq!(items, json!(["histogram_quantile"]));

    // --- An invalid expression shows the API's error, with its position. ---
    let bad = "sum(rate(function_calls_total[1m])";
    let api_err = server.query(bad, None)["error"]
        .as_str()
        .unwrap()
        .to_string();
    browser.goto(&format!("{base}/graph?g0.expr={}&g0.tab=1", url_param(bad)));
    let shown = browser.wait_js(
        "the error",
        "const e = document.querySelector('.query-error'); return !e.hidden && e.querySelector('.alert').textContent",
        json!([]),
    );
    assert_eq!(shown, json!(format!("Error executing query: {api_err}")));
    // The position the API gives ("1:<col>: parse error"), marked under the expression.
    let col: usize = api_err
        .split(": ")
        .find_map(|p| p.strip_prefix("1:"))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no position in {api_err}"));
    let caret = browser.js(
        "return document.querySelector('.query-error .error-position').textContent",
        json!([]),
    );
    assert_eq!(caret, json!(format!("{bad}\n{}^", " ".repeat(col - 1))));

    // --- Several panels, state in the URL with Prometheus' parameters. ---
    browser.goto(&format!(
        "{base}/graph?g0.expr=up&g0.tab=1&g1.expr={}&g1.tab=0&g1.stacked=1&g1.range_input=1m&g1.step_input=2",
        url_param("sum by (instance) (rate(function_calls_total[1m]))")
    ));
    browser.wait_js(
        "two panels",
        "const p = document.querySelectorAll('.panel'); return p.length === 2 && [...p].every(x => x.dataset.state === 'done')",
        json!([]),
    );
    let state = browser.js(
        "const p = document.querySelectorAll('.panel')[1]; return [p.querySelector('.range-input').value, p.querySelector('.step-input').value, p.querySelector('.toggle.active').textContent, p.querySelector('.stats').textContent]",
        json!([]),
    );
    assert_eq!(state[0], json!("1m"));
    assert_eq!(state[1], json!("2"));
    assert_eq!(state[2], json!("Stacked"));
    assert!(
        state[3].as_str().unwrap().contains("Resolution: 2s"),
        "{state}"
    );
    let colored = browser
        .js(COLORED_PIXELS, json!([".panel:nth-child(2)"]))
        .as_i64()
        .unwrap();
    assert!(colored > 50, "stacked graph has {colored} colored pixels");
    // PNG save: a data: URL of the canvas (the download itself is the browser's).
    let png = browser.js(
        "let href = ''; const orig = HTMLAnchorElement.prototype.click; HTMLAnchorElement.prototype.click = function () { href = this.href; }; document.querySelectorAll('.save-png')[1].click(); HTMLAnchorElement.prototype.click = orig; return href.slice(0, 22)",
        json!([]),
    );
    assert_eq!(png, json!("data:image/png;base64,"));

    // --- Drawing time: 100 series × 1,000 points. ---
    let (mut times, mut parse_times) = (Vec::new(), Vec::new());
    for _ in 0..9 {
        browser.goto(&format!(
            "{base}/graph?g0.expr=ui_perf&g0.tab=0&g0.range_input=999s&g0.step_input=1&g0.end_input={}",
            url_param(&format!("{}", perf_end_ms / 1000))
        ));
        let ms = browser.wait_js(
            "the 100-series graph",
            "const p = document.querySelector('.panel'); return p.dataset.state === 'done' && [p.dataset.renderMs, p.dataset.renderPoints, p.dataset.parseMs]",
            json!([]),
        );
        assert_eq!(
            ms[1],
            json!(format!("{}", PERF_SERIES as i64 * PERF_POINTS))
        );
        times.push(ms[0].as_str().unwrap().parse::<f64>().unwrap());
        parse_times.push(ms[2].as_str().unwrap().parse::<f64>().unwrap());
    }
    let n = browser.js(
        "return document.querySelectorAll('.legend-item').length",
        json!([]),
    );
    assert_eq!(n, json!(PERF_SERIES));
    let med = median(times.clone());
    let min = times.iter().cloned().fold(f64::INFINITY, f64::min);
    eprintln!(
        "FIGURE ui_draw_100x1000_ms median={med:.1} min={min:.1} runs={times:?} (response arrived → graph drawn; of which JSON.parse: {parse_times:?})"
    );
    // The target is 200 ms; the bound leaves room for a loaded CI machine.
    assert!(med < 1000.0, "drawing 100x1000 took {med} ms");

    // A resolution asking more than 11,000 points per series is raised, with a notice.
    browser.goto(&format!(
        "{base}/graph?g0.expr=ui_perf&g0.tab=0&g0.range_input=999s&g0.step_input=0.01&g0.end_input={}",
        url_param(&format!("{}", perf_end_ms / 1000))
    ));
    let notice = browser.wait_js(
        "the resolution notice",
        "const p = document.querySelector('.panel'); return p.dataset.state === 'done' && p.querySelector('.notice').textContent",
        json!([]),
    );
    assert!(
        notice
            .as_str()
            .unwrap()
            .starts_with("Resolution raised to 1s: at most 11000 points per series."),
        "{notice}"
    );

    // Results over the caps: the first 500 series graphed, the first 10,000 in the table, each
    // with a notice.
    let end_input = url_param(&format!("{}", perf_end_ms / 1000));
    browser.goto(&format!(
        "{base}/graph?g0.expr=ui_many&g0.tab=0&g0.range_input=1m&g0.end_input={end_input}&g1.expr=ui_many&g1.tab=1&g1.end_input={end_input}"
    ));
    let capped = browser.wait_js(
        "the capped results",
        "const p = document.querySelectorAll('.panel'); return [...p].every(x => x.dataset.state === 'done') && [p[0].querySelector('.notice').textContent, p[0].querySelectorAll('.legend-item').length, p[1].querySelector('.table-box .notice').textContent, p[1].querySelectorAll('table.result tr').length]",
        json!([]),
    );
    assert_eq!(
        capped,
        json!([
            format!("Showing the first 500 of {} series. ", MANY_SERIES + 1),
            500,
            format!(
                "Showing the first {MANY_SERIES} of {} series.",
                MANY_SERIES + 1
            ),
            MANY_SERIES
        ])
    );

    // --- Targets: four up; the XSS label is text. ---
    browser.goto(&format!("{base}/targets"));
    let rows = browser.wait_js(
        "the targets",
        "const r = document.querySelectorAll('section.pool tr.target'); return r.length && [...r].map(x => [x.cells[1].textContent, x.cells[2].textContent])",
        json!([]),
    );
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 4, "{rows:?}");
    for r in rows {
        assert_eq!(r[0], json!("UP"), "{r}");
        assert!(
            r[1].as_str().unwrap().contains(&format!("xss=\"{XSS}\"")),
            "{r}"
        );
    }
    let imgs = browser.js("return document.querySelectorAll('img').length", json!([]));
    assert_eq!(imgs, json!(0), "an <img> was created from a label value");
    assert!(!browser.dialog_open(), "alert() ran");
    browser.screenshot("ui-targets.png");

    // --- Status pages render (no errors shown). ---
    for (page, needle) in [
        ("status", "Runtime Information"),
        ("config", "job_name: demo"),
        ("flags", "--"),
        ("tsdb-status", "ui_perf"),
    ] {
        browser.goto(&format!("{base}/{page}"));
        let text = browser.wait_js(
            page,
            "return !document.querySelector('main').textContent.includes('Loading') && document.querySelector('main').textContent",
            json!([]),
        );
        let text = text.as_str().unwrap();
        assert!(text.contains(needle), "/{page}: {text}");
        assert!(!text.contains("Error loading"), "/{page}: {text}");
    }

    // --- Alerts: the firing alert, its annotation as text; the other rule inactive. ---
    server.wait("the alert firing", |s| {
        s.api("/api/v1/alerts")["data"]["alerts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["state"] == "firing"))
    });
    browser.goto(&format!("{base}/alerts"));
    let firing = browser.wait_js(
        "a firing alert",
        "const r = [...document.querySelectorAll('details.rule')].find(d => d.querySelector('.rule-name').textContent === 'DemoTargetUp'); return r && r.querySelector('summary .state').textContent === 'FIRING' && [...r.querySelectorAll('tr.alert-row')].map(x => [x.cells[1].textContent, x.cells[4].textContent, x.cells[0].textContent])",
        json!([]),
    );
    let firing = firing.as_array().unwrap();
    assert_eq!(firing.len(), 4, "{firing:?}");
    for a in firing {
        assert_eq!(a[0], json!("FIRING"), "{a}");
        assert_eq!(
            a[1],
            json!("summary: <script>alert(2)</script> is shown as text"),
            "{a}"
        );
        assert!(
            a[2].as_str()
                .unwrap()
                .contains("alertname=\"DemoTargetUp\""),
            "{a}"
        );
        assert!(
            a[2].as_str().unwrap().contains(&format!("xss=\"{XSS}\"")),
            "{a}"
        );
    }
    let inactive = browser.js(
        "const r = [...document.querySelectorAll('details.rule')].find(d => d.querySelector('.rule-name').textContent === 'NeverFires'); return r && r.querySelector('summary .state').textContent",
        json!([]),
    );
    assert_eq!(inactive, json!("INACTIVE"));
    let counts = browser.js(
        "return [...document.querySelectorAll('.state-filter')].map(e => e.textContent.trim())",
        json!([]),
    );
    assert_eq!(counts, json!(["Inactive (1)", "Pending (0)", "Firing (1)"]));
    assert_eq!(
        browser.js(
            "return document.querySelectorAll('img, script:not([src])').length",
            json!([])
        ),
        json!(0)
    );
    assert!(!browser.dialog_open(), "alert() ran");
    browser.screenshot("ui-alerts.png");

    // --- Rules: the group's three rules, each with a health badge and its error as text. ---
    browser.goto(&format!("{base}/rules"));
    let rules = browser.wait_js(
        "the rules",
        "const r = document.querySelectorAll('tr.rule-row'); return r.length && [...r].map(x => [x.cells[0].textContent.split('\\n')[0], x.cells[1].textContent, x.cells[2].textContent])",
        json!([]),
    );
    let rules = rules.as_array().unwrap();
    let names: Vec<&Value> = rules.iter().map(|r| &r[0]).collect();
    assert_eq!(
        names,
        [
            &json!("alert: DemoTargetUp"),
            &json!("alert: NeverFires"),
            &json!("record: job:function_calls:rate1m")
        ]
    );
    for r in rules {
        // Health is the rule engine's business (a loaded machine has shown ERR once); the page
        // must show one of the API's values, and an error only with ERR.
        let health = r[1].as_str().unwrap();
        assert!(["OK", "ERR", "UNKNOWN"].contains(&health), "{r}");
        assert_eq!(health == "ERR", !r[2].as_str().unwrap().is_empty(), "{r}");
        if health != "OK" {
            eprintln!("NOTE: rule health {r}");
        }
    }

    // No script errors and no Content-Security-Policy violations in the whole visit.
    let bad: Vec<String> = browser
        .console()
        .into_iter()
        .filter(|m| m.contains("SEVERE") || m.contains("Content Security Policy"))
        // The invalid expression's answer.
        .filter(|m| !m.contains("/api/v1/query - Failed to load resource: the server responded with a status of 400"))
        .collect();
    assert!(bad.is_empty(), "console: {bad:#?}");
    eprintln!("total: {:?}", t0.elapsed());
    drop(procs);
}

#[test]
fn ui_routes_headers_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "global:\n  scrape_interval: 15s\n");
    let port = server.port;

    let r = get(port, "/", &[]);
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("/graph"));
    let r = get(port, "/?g0.expr=up&g0.tab=1", &[]);
    assert_eq!(r.header("location"), Some("/graph?g0.expr=up&g0.tab=1"));

    let gz = [("Accept-Encoding", "gzip")];
    let mut total = 0;
    let mut html = String::new();
    for page in tsdb::server::web::ui::PAGES {
        let r = get(port, page, &gz);
        assert_eq!(r.status, 200, "{page}");
        assert_eq!(
            r.header("content-type"),
            Some("text/html; charset=utf-8"),
            "{page}"
        );
        assert_eq!(r.header("content-encoding"), Some("gzip"), "{page}");
        let csp = r.header("content-security-policy").unwrap();
        assert!(csp.contains("script-src 'self';"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        if html.is_empty() {
            total += r.body.len();
            let mut out = String::new();
            flate2::read::GzDecoder::new(&r.body[..])
                .read_to_string(&mut out)
                .unwrap();
            html = out;
        }
    }
    // Every asset the page links, gzipped as served: the first visit's download.
    let links: Vec<&str> = html
        .split('"')
        .filter(|s| s.starts_with("/static/"))
        .collect();
    assert_eq!(links.len(), 6, "{links:?}");
    for link in &links {
        let r = get(port, link, &gz);
        assert_eq!(r.status, 200, "{link}");
        assert_eq!(r.header("content-encoding"), Some("gzip"), "{link}");
        assert_eq!(
            r.header("cache-control"),
            Some("public, max-age=31536000, immutable"),
            "{link}"
        );
        total += r.body.len();
        let etag = r.header("etag").unwrap().to_string();
        let again = get(port, link, &[("If-None-Match", &etag)]);
        assert_eq!(again.status, 304, "{link}");
        assert!(again.body.is_empty());
        // Without gzip: the plain bytes.
        let plain = get(port, link, &[]);
        assert_eq!(plain.header("content-encoding"), None);
        assert!(plain.body.len() > r.body.len());
        // Without the version: revalidated, not cached for a year.
        let path = link.split('?').next().unwrap();
        assert_eq!(
            get(port, path, &gz).header("cache-control"),
            Some("no-cache")
        );
    }
    assert_eq!(get(port, "/static/nope.js", &[]).status, 404);
    eprintln!(
        "FIGURE ui_gzip_bytes={total} ({:.1} KiB; budget {} KiB)",
        total as f64 / 1024.0,
        UI_GZIP_BUDGET / 1024
    );
    assert!(
        total < UI_GZIP_BUDGET,
        "the UI is {total} bytes gzipped, over {UI_GZIP_BUDGET}"
    );
    assert_eq!(total, tsdb::server::web::ui::ui().gzipped_size());
}

/// The UI sits behind the same `--web.config.file` basic auth as the API.
#[test]
fn ui_requires_the_api_credentials() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let web = dir.path().join("web.yml");
    fs::write(&web, format!("basic_auth_users:\n  alice: '{hash}'\n")).unwrap();
    let server = Server::spawn(
        dir.path(),
        "global:\n  scrape_interval: 15s\n",
        &["--web.config.file", web.to_str().unwrap()],
    );
    let good = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:s3cret")
    );
    let wrong = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:nope")
    );
    let page = format!("/static/{}", tsdb::server::web::ui::ui().assets[0].name);
    for path in ["/", "/graph", "/targets", "/alerts", page.as_str()] {
        let r = get(server.port, path, &[]);
        assert_eq!(r.status, 401, "{path} without credentials");
        assert_eq!(r.header("www-authenticate"), Some("Basic"), "{path}");
        assert_eq!(
            get(server.port, path, &[("Authorization", &wrong)]).status,
            401,
            "{path}"
        );
        let r = get(server.port, path, &[("Authorization", &good)]);
        assert!(r.status == 200 || r.status == 302, "{path}: {}", r.status);
    }
}
