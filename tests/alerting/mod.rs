//! Shared by the tests that run Debian's real Alertmanager (`prometheus-alertmanager` 0.25):
//! a webhook receiver served by the test on 127.0.0.1, and an Alertmanager process (killed on
//! drop) whose only route sends every alert group to that webhook, resolved ones too.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::common;

pub const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";

/// Alertmanager's webhook notifications, as received (each a JSON object with `status`,
/// `alerts`, `commonLabels`...), with the time each arrived.
pub struct Webhook {
    pub port: u16,
    pub received: Arc<Mutex<Vec<(Instant, Value)>>>,
}

impl Webhook {
    /// Serves `POST /hook` on 127.0.0.1 from a thread (ends with the test process).
    pub fn start() -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let r = received.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut s) = conn else { continue };
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let mut reader = BufReader::new(s.try_clone().unwrap());
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let l = line.trim_end();
                    if l.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = l.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0; len];
                if reader.read_exact(&mut body).is_ok() {
                    if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                        r.lock().unwrap().push((Instant::now(), v));
                    }
                }
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        Webhook { port, received }
    }

    /// Waits up to `within` for a notification with `status` (`firing` or `resolved`) holding
    /// an alert whose labels include `labels`; returns that alert.
    pub fn wait_for(&self, status: &str, labels: &[(&str, &str)], within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            if let Some(a) = self.find(status, labels) {
                return a;
            }
            if Instant::now() > deadline {
                panic!(
                    "no {status} notification for {labels:?} within {within:?}; received: {:#?}",
                    self.received
                        .lock()
                        .unwrap()
                        .iter()
                        .map(|(_, v)| v.clone())
                        .collect::<Vec<_>>()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn find(&self, status: &str, labels: &[(&str, &str)]) -> Option<Value> {
        let got = self.received.lock().unwrap();
        for (_, n) in got.iter() {
            if n["status"] != status {
                continue;
            }
            for a in n["alerts"].as_array().into_iter().flatten() {
                if a["status"] == status && labels.iter().all(|(k, v)| a["labels"][*k] == *v) {
                    return Some(a.clone());
                }
            }
        }
        None
    }
}

/// A running Alertmanager, killed on drop.
pub struct Alertmanager {
    child: Child,
    pub port: u16,
    log: std::path::PathBuf,
}

impl Alertmanager {
    /// Started in `dir` with a route to `hook`: one group per alert (`group_by: ['...']`),
    /// group_wait and group_interval 1 s, so a firing or resolved alert is announced about a
    /// second after it arrives. Clustering is off (`--cluster.listen-address=`): no gossip
    /// port, no peer wait.
    pub fn start(dir: &Path, hook: &Webhook) -> Alertmanager {
        let port = common::free_port();
        let cfg = dir.join("alertmanager.yml");
        fs::write(
            &cfg,
            format!(
                "route:\n  receiver: hook\n  group_by: ['...']\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: http://127.0.0.1:{}/hook\n        send_resolved: true\n",
                hook.port
            ),
        )
        .unwrap();
        let data = dir.join("am-data");
        fs::create_dir_all(&data).unwrap();
        let log = dir.join("alertmanager.log");
        let child = Command::new(ALERTMANAGER)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let am = Alertmanager { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok((200, _)) = common::http(port, "GET", "/-/ready") {
                return am;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("Alertmanager not ready after 30 s; log:\n{}", am.logs());
    }

    pub fn logs(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The alerts it holds (`GET /api/v2/alerts`).
    pub fn alerts(&self) -> Value {
        let (_, body) = common::http(self.port, "GET", "/api/v2/alerts").unwrap();
        serde_json::from_str(&body).unwrap_or(Value::Null)
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP port that accepts connections and never answers: an Alertmanager that hangs.
pub fn black_hole() -> (u16, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().flatten() {
            held.push(s);
        }
    });
    (port, h)
}

pub use super::common::Serve;
