//! Shared by the integration tests that run the real Prometheus 2.42 and promtool from Debian's
//! package (`/usr/bin/prometheus`, `/usr/bin/promtool`) and the bench's dataset generator.
//! Without a binary a test prints a skip notice, or fails when `TSDB_REQUIRE_PEERS=1` (CI).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tsdb::labels::Labels;

pub const PROMETHEUS: &str = "/usr/bin/prometheus";
pub const PROMTOOL: &str = "/usr/bin/promtool";
pub const OPENSSL: &str = "/usr/bin/openssl";

/// Whether `path` exists; if not, a skip notice, or a panic under `TSDB_REQUIRE_PEERS=1`.
pub fn available(path: &str) -> bool {
    if Path::new(path).exists() {
        return true;
    }
    if std::env::var("TSDB_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!("{path} is missing and TSDB_REQUIRE_PEERS=1");
    }
    eprintln!("SKIP: {path} not installed; cross-check not run");
    false
}

/// The bench's deterministic dataset generator (`../shared/bench/gen_dataset.py` beside the
/// repository, or `$TSDB_GEN_DATASET`), if present (else skip, or panic under
/// `TSDB_REQUIRE_PEERS=1`).
pub fn gen_dataset() -> Option<PathBuf> {
    let p = std::env::var_os("TSDB_GEN_DATASET")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/gen_dataset.py")
        });
    if p.exists() {
        return Some(p);
    }
    if std::env::var("TSDB_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!("{} is missing and TSDB_REQUIRE_PEERS=1", p.display());
    }
    eprintln!("SKIP: {} not found", p.display());
    None
}

/// Runs the generator with `args` into `out`; returns (start, end) in Unix seconds.
pub fn generate(script: &Path, out: &Path, args: &[&str]) -> (i64, i64) {
    let o = Command::new("python3")
        .arg(script)
        .args(args)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    let field = |k: &str| -> i64 {
        err.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {k} in {err}"))
    };
    (field("start="), field("end="))
}

pub fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A port free on 127.0.0.1 at the time of the call.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.0 request to 127.0.0.1:`port` (the server closes the connection and sends no
/// chunked encoding): status and body.
pub fn http(port: u16, method: &str, path: &str) -> std::io::Result<(u32, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

/// A running Prometheus, killed on drop.
pub struct Prometheus {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus on `data` with `config` (`PORT` in it becomes its own port) and waits
    /// until it is ready.
    pub fn start(data: &Path, config: &str) -> Prometheus {
        Prometheus::start_with(data, config, &[])
    }

    /// [`Prometheus::start`] with extra flags (e.g. `--web.enable-admin-api`).
    pub fn start_with(data: &Path, config: &str, extra: &[&str]) -> Prometheus {
        let port = free_port();
        let cfg = data.join("prometheus.yml");
        fs::write(&cfg, config.replace("PORT", &port.to_string())).unwrap();
        let log = data.join("prometheus.log");
        let child = Command::new(PROMETHEUS)
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let p = Prometheus { child, port, log };
        p.wait_ready();
        p
    }

    pub fn logs(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok((200, _)) = self.get("/-/ready") {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("Prometheus not ready after 60 s; log:\n{}", self.logs());
    }

    pub fn get(&self, path: &str) -> std::io::Result<(u32, String)> {
        http(self.port, "GET", path)
    }

    /// One request without a body: (status, body).
    pub fn request(&self, method: &str, path: &str) -> std::io::Result<(u32, String)> {
        http(self.port, method, path)
    }

    /// SIGTERM, then wait for a clean exit (Prometheus closes its WAL on the way out).
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM {pid}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "Prometheus exit {status}; log:\n{}",
                    self.logs()
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("Prometheus did not stop after SIGTERM");
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A child process killed on drop, even when the test fails.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits (20 s at most) until something accepts connections on `port` of 127.0.0.1.
pub fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `python3` can import `prometheus_client` (the motivating example's targets); if not,
/// a skip notice, or a panic under `TSDB_REQUIRE_PEERS=1`.
pub fn python_has_client() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import prometheus_client"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var("TSDB_REQUIRE_PEERS").as_deref() == Ok("1") {
            panic!("python3 with prometheus_client is missing and TSDB_REQUIRE_PEERS=1");
        }
        eprintln!("SKIP: python3 prometheus_client not installed");
    }
    ok
}

/// A running `tsdbctl serve` (this package's binary), killed on drop.
pub struct Serve {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl Serve {
    /// Started on a free port with its data in `db`, `--web.enable-lifecycle` and `extra` flags;
    /// returns once `/-/ready` answers 200.
    pub fn start(db: &Path, config: &Path, extra: &[&str]) -> Serve {
        let port = free_port();
        let log = db.with_extension(format!("{port}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_tsdbctl"))
            .args(["serve", "--db"])
            .arg(db)
            .arg("--config")
            .arg(config)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--web.enable-lifecycle")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let s = Serve { child, port, log };
        s.wait_for("tsdbctl serve ready", |s| {
            matches!(s.get("/-/ready"), Ok((200, _)))
        });
        s
    }

    pub fn logs(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn request(&self, method: &str, path: &str) -> std::io::Result<(u32, String)> {
        http(self.port, method, path)
    }

    pub fn get(&self, path: &str) -> std::io::Result<(u32, String)> {
        http(self.port, "GET", path)
    }

    pub fn post(&self, path: &str) -> std::io::Result<(u32, String)> {
        http(self.port, "POST", path)
    }

    /// `GET path` as JSON (status 200 asserted).
    pub fn json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.get(path).unwrap();
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Polls `ok` for up to 30 s; panics with the server's log if it never holds.
    pub fn wait_for(&self, what: &str, mut ok: impl FnMut(&Serve) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if ok(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("timed out waiting for {what}; log:\n{}", self.logs());
    }

    /// Sends `sig` (`HUP`, `TERM`, ...).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    /// SIGTERM; the exit status and the log once the process has gone (30 s at most).
    pub fn terminate(mut self) -> (std::process::ExitStatus, String) {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, self.logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("tsdbctl serve did not stop within 30 s of SIGTERM");
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs promtool with `args`; its stdout (a failure panics with promtool's output).
pub fn promtool(args: &[&str]) -> String {
    let out = Command::new(PROMTOOL).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "promtool {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Parses Go's `labels.Labels.String()`: `{a="x", b="y\"z"}` with `strconv.Quote` escapes.
pub fn parse_go_labels(s: &str) -> (Labels, &str) {
    let mut rest = s.strip_prefix('{').expect("labels start with {");
    let mut pairs: Vec<(String, String)> = Vec::new();
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            rest = r;
            break;
        }
        rest = rest.strip_prefix(", ").unwrap_or(rest);
        let eq = rest.find("=\"").unwrap();
        let name = rest[..eq].to_string();
        let mut chars = rest[eq + 2..].char_indices();
        let mut value = String::new();
        let end = loop {
            let (i, c) = chars.next().unwrap();
            match c {
                '"' => break i,
                '\\' => {
                    let (_, e) = chars.next().unwrap();
                    value.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        other => other,
                    });
                }
                c => value.push(c),
            }
        };
        pairs.push((name, value));
        rest = &rest[eq + 2 + end + 1..];
    }
    let refs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    (Labels::from_pairs(&refs), rest)
}

/// Parses `promtool tsdb dump` output: `<labels> <value %g> <timestamp>` per line.
pub fn parse_dump(out: &str) -> BTreeMap<Labels, Vec<(i64, f64)>> {
    let mut got = BTreeMap::<Labels, Vec<(i64, f64)>>::new();
    for line in out.lines().filter(|l| !l.is_empty()) {
        let (l, rest) = parse_go_labels(line);
        let mut f = rest.split_whitespace();
        let v = match f.next().unwrap() {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            x => x.parse::<f64>().unwrap_or_else(|e| panic!("{x}: {e}")),
        };
        let t: i64 = f.next().unwrap().parse().unwrap();
        got.entry(l).or_default().push((t, v));
    }
    got
}

/// Runs the `openssl` CLI with `args` in `dir` (test certificates); its failure panics with stderr.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Test certificates: a CA in `dir` (`ca.key`, `ca.crt`; P-256, two days), after which
/// [`issue_cert`] signs leaf certificates with it. False (skip) when openssl is missing, or a
/// panic under `TSDB_REQUIRE_PEERS=1`.
pub fn make_ca(dir: &Path) -> bool {
    if !available(OPENSSL) {
        return false;
    }
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=tsdb test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    true
}

/// `<name>.key` and `<name>.crt` in `dir`, signed by [`make_ca`]'s CA, for the subject
/// alternative names `san` (`DNS:localhost,IP:127.0.0.1`) and the extended key usage `eku`
/// (`serverAuth`, `clientAuth`).
pub fn issue_cert(dir: &Path, name: &str, san: &str, eku: &str) {
    let (key, csr, crt, ext) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
        format!("{name}.ext"),
    );
    fs::write(
        dir.join(&ext),
        format!("subjectAltName={san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage={eku}\n"),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            "/CN=tsdb test",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    );
}
