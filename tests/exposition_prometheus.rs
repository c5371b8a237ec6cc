//! Compatibility of the exposition parser with the real Prometheus 2.42.
//!
//! Every document of tests/data/exposition/ (`*.prom`: text 0.0.4, `*.om`: OpenMetrics; names
//! start with `ok-` or `bad-` for the expected verdict; `@NOW@` stands for the current Unix time in
//! seconds, so explicit timestamps stay inside the head's appendable window) is served by a small
//! HTTP server in this test with its format's Content-Type; one Prometheus scrapes each as its own
//! job every second. Then for each document `up` (1 = accepted) must equal our verdict, and for
//! accepted ones the stored series (without job/instance) and values (bit for bit, NaN included,
//! through the API's string form) and explicit timestamps must equal what our parser yields.
//!
//! Without /usr/bin/prometheus the test prints a notice and passes, unless TSDB_REQUIRE_PEERS=1.

mod common;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tsdb::exposition::{Entry, Format, Parser};
use tsdb::labels::Labels;

struct Doc {
    name: String,
    format: Format,
    body: Vec<u8>,
}

/// What a scrape stores for one document, as our parser sees it.
#[derive(Debug, PartialEq)]
struct Outcome {
    accepted: bool,
    /// series (Prometheus' text form, target labels excluded) -> (timestamp, value bits)
    series: BTreeMap<String, (Option<i64>, u64)>,
    why: String,
}

fn corpus(now_s: u64) -> Vec<Doc> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/exposition");
    let mut docs = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    for path in paths {
        let format = match path.extension().and_then(|e| e.to_str()) {
            Some("prom") => Format::Prometheus,
            Some("om") => Format::OpenMetrics,
            _ => continue,
        };
        let raw = std::fs::read(&path).unwrap();
        let body = replace(&raw, b"@NOW@", now_s.to_string().as_bytes());
        let name = path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace('.', "_");
        docs.push(Doc { name, format, body });
    }
    docs
}

fn replace(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// Parses a document as a scrape would: the first error rejects it; the first sample of a label
/// set wins; `job`/`instance` labels of the document would be renamed `exported_*`.
fn our_outcome(doc: &Doc) -> Outcome {
    let mut p = Parser::new(&doc.body, doc.format);
    let mut series = BTreeMap::new();
    let mut labels = Vec::new();
    let reject = |why: String| Outcome {
        accepted: false,
        series: BTreeMap::new(),
        why,
    };
    loop {
        match p.next_entry() {
            Ok(None) => break,
            Ok(Some(Entry::Sample {
                value,
                timestamp_ms,
                ..
            })) => {
                if let Err(e) = p.labels(&mut labels) {
                    return reject(e.to_string());
                }
                for l in labels.iter_mut() {
                    if l.name == "job" || l.name == "instance" {
                        l.name = format!("exported_{}", l.name);
                    }
                }
                let key = Labels::new(labels.clone()).to_string();
                series.entry(key).or_insert((timestamp_ms, value.to_bits()));
            }
            Ok(Some(Entry::Eof { .. })) => {
                // One document per scrape: only the end of input may follow.
                if let Err(e) = p.next_entry() {
                    return reject(e.to_string());
                }
                break;
            }
            Ok(Some(_)) => {}
            Err(e) => return reject(e.to_string()),
        }
    }
    Outcome {
        accepted: true,
        series,
        why: String::new(),
    }
}

/// Serves each document at /<name> with its format's Content-Type, until the process ends.
fn serve(docs: Arc<Vec<Doc>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let docs = docs.clone();
            std::thread::spawn(move || {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&req);
                let path = line.split_whitespace().nth(1).unwrap_or("/");
                let doc = docs.iter().find(|d| path == format!("/{}", d.name));
                let resp = match doc {
                    Some(d) => {
                        let ct = match d.format {
                            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
                            Format::OpenMetrics => {
                                "application/openmetrics-text; version=1.0.0; charset=utf-8"
                            }
                        };
                        let mut r = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            d.body.len()
                        )
                        .into_bytes();
                        r.extend_from_slice(&d.body);
                        r
                    }
                    None => {
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_vec()
                    }
                };
                let _ = conn.write_all(&resp);
            });
        }
    });
    port
}

/// A Prometheus server scraping every document as its own job, with its directory.
struct Prometheus {
    /// Killed on drop, before its directory is removed.
    _server: common::Prometheus,
    port: u16,
    _dir: tempfile::TempDir,
}

fn start_prometheus(docs: &[Doc], target_port: u16) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg =
        String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n");
    for d in docs {
        cfg.push_str(&format!(
            "  - job_name: '{}'\n    honor_timestamps: true\n    metrics_path: '/{}'\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n",
            d.name, d.name
        ));
    }
    let server = common::Prometheus::start(dir.path(), &cfg);
    Prometheus {
        port: server.port,
        _server: server,
        _dir: dir,
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// GET /api/v1/query?query=... ; the `data.result` array, or None while Prometheus is not up.
fn query(port: u16, q: &str) -> Option<Vec<serde_json::Value>> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let req = format!(
        "GET /api/v1/query?query={} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        url_encode(q)
    );
    conn.write_all(req.as_bytes()).ok()?;
    let mut resp = Vec::new();
    conn.read_to_end(&mut resp).ok()?;
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&resp[..split]).to_lowercase();
    let mut body = resp[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    v["data"]["result"].as_array().cloned()
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(nl) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..nl]).trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + size]);
        b = &b[nl + 2 + size + 2..];
    }
}

/// Prometheus' text form of a result's metric, without the target labels.
fn series_key(metric: &serde_json::Value) -> String {
    let mut pairs: Vec<(String, String)> = metric
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "job" && *k != "instance")
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    pairs.sort();
    let refs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    Labels::from_pairs(&refs).to_string()
}

fn value_bits(s: &str) -> u64 {
    let v: f64 = s.parse().unwrap_or_else(|_| panic!("value {s:?}"));
    // JSON carries NaN as "NaN": any NaN compares equal to our canonical one.
    if v.is_nan() {
        tsdb::exposition::NORMAL_NAN_BITS
    } else {
        v.to_bits()
    }
}

#[test]
fn documents_are_accepted_and_stored_as_prometheus_does() {
    if !common::available(common::PROMETHEUS) {
        return;
    }
    let now_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 30;
    let docs = Arc::new(corpus(now_s));
    assert!(docs.len() > 40, "corpus not found");
    let target_port = serve(docs.clone());
    let prom = start_prometheus(&docs, target_port);

    // Wait until every job has been scraped at least three times.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let counts = query(prom.port, "count_over_time(up[1m])");
        if let Some(c) = &counts {
            let ready = c
                .iter()
                .filter(|r| {
                    r["value"][1]
                        .as_str()
                        .and_then(|v| v.parse::<f64>().ok())
                        .unwrap_or(0.0)
                        >= 3.0
                })
                .count();
            if ready == docs.len() {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not scrape every document in time"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    let mut mismatches = Vec::new();
    let mut accepted = 0;
    for doc in docs.iter() {
        let ours = our_outcome(doc);
        let up = query(prom.port, &format!("up{{job=\"{}\"}}", doc.name)).unwrap();
        let theirs_accepted = up.first().and_then(|r| r["value"][1].as_str()) == Some("1");
        let expected = doc.name.starts_with("ok-");
        if theirs_accepted != expected {
            mismatches.push(format!(
                "{}: Prometheus' verdict contradicts the file name",
                doc.name
            ));
        }
        if ours.accepted != theirs_accepted {
            mismatches.push(format!(
                "{}: Prometheus accepted={theirs_accepted}, we accepted={} {}",
                doc.name, ours.accepted, ours.why
            ));
            continue;
        }
        if !theirs_accepted {
            continue;
        }
        accepted += 1;
        let q = format!("{{job=\"{}\",__name__!~\"up|scrape_.+\"}}[10m]", doc.name);
        let result = query(prom.port, &q).unwrap();
        let mut theirs: BTreeMap<String, BTreeSet<(Option<i64>, u64)>> = BTreeMap::new();
        for r in &result {
            let key = series_key(&r["metric"]);
            for v in r["values"].as_array().unwrap() {
                let ts_ms = (v[0].as_f64().unwrap() * 1000.0).round() as i64;
                theirs
                    .entry(key.clone())
                    .or_default()
                    .insert((Some(ts_ms), value_bits(v[1].as_str().unwrap())));
            }
        }
        let keys_ours: BTreeSet<&String> = ours.series.keys().collect();
        let keys_theirs: BTreeSet<&String> = theirs.keys().collect();
        if keys_ours != keys_theirs {
            mismatches.push(format!(
                "{}: series differ\n  ours:   {keys_ours:?}\n  theirs: {keys_theirs:?}",
                doc.name
            ));
            continue;
        }
        for (key, (ts, bits)) in &ours.series {
            let got = &theirs[key];
            let ok = match ts {
                // Scrape time: every stored sample has our value.
                None => got.iter().all(|(_, b)| b == bits),
                Some(t) => got.iter().all(|(gt, b)| gt == &Some(*t) && b == bits),
            };
            if !ok {
                mismatches.push(format!(
                    "{}: {key}: ours ts={ts:?} value={:?}, theirs {:?}",
                    doc.name,
                    f64::from_bits(*bits),
                    got.iter()
                        .map(|(t, b)| (t, f64::from_bits(*b)))
                        .collect::<Vec<_>>()
                ));
            }
        }
    }
    eprintln!("{} documents, {accepted} accepted by both", docs.len());
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
