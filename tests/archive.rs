//! Archive blocks (issue 3, point 10) through the public API, the real `tsdbctl` binary, and
//! Prometheus 2.42's own tools (`/usr/bin/promtool`, `/usr/bin/prometheus`):
//! - an unarchived block passes `promtool tsdb analyze` and `promtool tsdb dump` prints exactly
//!   what it prints for the original block;
//! - promtool and Prometheus refuse an archive block loudly (and leave it in place);
//! - on a 10-host dataset of `gen_dataset.py` (python3), `tsdbctl archive` stays under the bytes
//!   per sample measured for it, and queries answer the same before, during and after.
//!
//! Without promtool, Prometheus, python3 or the generator the tests print a skip notice, or fail
//! if `TSDB_REQUIRE_PEERS=1`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tsdb::block::archive::{self, archive_block, is_archive, unarchive_block};
use tsdb::block::{write_block, Block};
use tsdb::chunk::{XorAppender, STALE_NAN_BITS};
use tsdb::labels::Labels;
use tsdb::querier::ChunkMeta;
use tsdb::{Db, Options};

const PROMTOOL: &str = "/usr/bin/promtool";
const PROMETHEUS: &str = "/usr/bin/prometheus";

/// Bytes per sample of the archive of `gen_dataset.py --hosts 10 --duration 2h` at the default
/// level 9: measured 0.972 (the compatible block: 5.308); the bound leaves room for other zstd
/// versions.
const MAX_BYTES_PER_SAMPLE: f64 = 1.05;

fn peer(path: &str, what: &str) -> bool {
    if Path::new(path).exists() {
        return true;
    }
    if std::env::var("TSDB_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!("{path} is missing and TSDB_REQUIRE_PEERS=1");
    }
    eprintln!("SKIP: {path} not found; {what} not run");
    false
}

fn run(cmd: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(cmd).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(cmd: &str, args: &[&str]) -> String {
    let (success, out, err) = run(cmd, args);
    assert!(success, "{cmd} {args:?} failed: {err}\n{out}");
    out
}

fn dir_size(p: &Path) -> u64 {
    fs::read_dir(p)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                dir_size(&e.path())
            } else {
                m.len()
            }
        })
        .sum()
}

/// Series with the values that trouble encoders: stale markers, NaN payloads, ±Inf, -0.0, long
/// fractions, huge integers, irregular timestamps.
fn awkward_block(dir: &Path) -> tsdb::block::Ulid {
    let specials = [
        f64::from_bits(STALE_NAN_BITS),
        f64::from_bits(0x7ff8_0000_0000_0001),
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        0.1 + 0.2,
        1e20,
        -2.5,
    ];
    let mut series: Vec<(Labels, Vec<ChunkMeta>)> = (0..40)
        .map(|i| {
            let l = Labels::from_pairs(&[
                (
                    "__name__",
                    if i % 2 == 0 { "gauge" } else { "counter_total" },
                ),
                ("instance", &format!("host-{i}")),
                ("path", "/a \"quoted\"\\path"),
            ]);
            let mut t = 1_000_000 + i;
            let samples: Vec<(i64, f64)> = (0..700)
                .map(|k| {
                    t += 15_000 + (k * i) % 7 - 3 + if k % 97 == 0 { 600_000 } else { 0 };
                    let v = match (i % 4, k % 11) {
                        (0, 3) => specials[(k as usize / 11) % specials.len()],
                        (1, _) => (k * i) as f64 * 0.01,
                        (2, _) => (k as f64 * 0.37).sin() * 1e3,
                        _ => (k / 3 * 4096) as f64,
                    };
                    (t, v)
                })
                .collect();
            let chunks = samples
                .chunks(120)
                .map(|s| {
                    let mut a = XorAppender::new();
                    for &(t, v) in s {
                        a.append(t, v);
                    }
                    ChunkMeta {
                        min_t: s[0].0,
                        max_t: s[s.len() - 1].0,
                        data: a.into_bytes().into(),
                    }
                })
                .collect();
            (l, chunks)
        })
        .collect();
    series.sort_by(|a, b| a.0.cmp(&b.0));
    write_block(dir, 0, 100_000_000, series.into_iter()).unwrap()
}

/// A data directory holding one block of each kind, ready for promtool (which wants a `wal`).
fn data_dir(parent: &Path, name: &str) -> PathBuf {
    let d = parent.join(name);
    fs::create_dir_all(d.join("wal")).unwrap();
    d
}

#[test]
fn unarchived_block_passes_promtool_and_dumps_equal() {
    if !peer(PROMTOOL, "promtool archive checks") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let orig = data_dir(tmp.path(), "orig");
    let arch = data_dir(tmp.path(), "arch");
    let back = data_dir(tmp.path(), "back");
    let src = awkward_block(&orig);
    let a = archive_block(&orig.join(src.to_string()), &arch, archive::DEFAULT_LEVEL).unwrap();
    assert!(is_archive(&arch.join(a.to_string())));
    let u = unarchive_block(&arch.join(a.to_string()), &back).unwrap();

    let analyze = ok(
        PROMTOOL,
        &["tsdb", "analyze", back.to_str().unwrap(), &u.to_string()],
    );
    assert!(analyze.contains("Series: 40"), "{analyze}");
    let want = ok(PROMTOOL, &["tsdb", "dump", orig.to_str().unwrap()]);
    let got = ok(PROMTOOL, &["tsdb", "dump", back.to_str().unwrap()]);
    assert_eq!(got.lines().count(), 40 * 700);
    assert!(got == want, "promtool dump of the unarchived block differs");
    for f in ["index", "chunks/000001", "tombstones"] {
        let (x, y) = (orig.join(src.to_string()), back.join(u.to_string()));
        assert_eq!(
            fs::read(x.join(f)).unwrap(),
            fs::read(y.join(f)).unwrap(),
            "{f}"
        );
    }
}

#[test]
fn promtool_and_prometheus_refuse_an_archive_block() {
    if !peer(PROMTOOL, "promtool archive checks") || !peer(PROMETHEUS, "Prometheus archive checks")
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let orig = data_dir(tmp.path(), "orig");
    let arch = data_dir(tmp.path(), "arch");
    let src = awkward_block(&orig);
    let a = archive_block(&orig.join(src.to_string()), &arch, 3).unwrap();
    let adir = arch.join(a.to_string());
    let before = dir_size(&adir);

    let (success, out, err) = run(PROMTOOL, &["tsdb", "analyze", arch.to_str().unwrap()]);
    assert!(!success, "promtool analyzed an archive block: {out}");
    assert!(
        err.contains(&format!("corrupted block {a}")) && err.contains("no such file"),
        "{err}"
    );

    let cfg = tmp.path().join("prometheus.yml");
    fs::write(&cfg, "global:\n  scrape_interval: 15s\n").unwrap();
    let mut child = Command::new(PROMETHEUS)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.tsdb.path={}", arch.display()))
        .arg("--web.listen-address=127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("Prometheus kept running on a data directory with an archive block");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    assert!(!status.success());
    assert!(
        log.contains("opening storage failed") && log.contains(&format!("corrupted block {a}")),
        "{log}"
    );
    // Nothing deleted or rewritten: the archive still opens with us.
    assert_eq!(dir_size(&adir), before);
    assert_eq!(
        Block::open(&adir).unwrap().meta().stats.num_samples,
        40 * 700
    );
}

fn tsdbctl(args: &[&str]) -> String {
    ok(env!("CARGO_BIN_EXE_tsdbctl"), args)
}

fn generator() -> Option<PathBuf> {
    let candidates = [
        std::env::var("TSDB_GEN_DATASET").ok().map(PathBuf::from),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/gen_dataset.py")),
        Some(PathBuf::from("/work/shared/bench/gen_dataset.py")),
    ];
    let found = candidates.into_iter().flatten().find(|p| p.exists());
    let python = Command::new("python3").arg("--version").output().is_ok();
    match found {
        Some(p) if python => Some(p),
        _ => {
            if std::env::var("TSDB_REQUIRE_PEERS").as_deref() == Ok("1") {
                panic!(
                    "python3 or gen_dataset.py (TSDB_GEN_DATASET) missing and TSDB_REQUIRE_PEERS=1"
                );
            }
            eprintln!("SKIP: python3 or gen_dataset.py not found; archive size check not run");
            None
        }
    }
}

#[test]
fn archive_bytes_per_sample_on_generated_dataset() {
    let Some(gen) = generator() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let prom = tmp.path().join("h10.prom");
    ok(
        "python3",
        &[
            gen.to_str().unwrap(),
            "--hosts",
            "10",
            "--duration",
            "2h",
            "-o",
            prom.to_str().unwrap(),
        ],
    );
    let wal_db = tmp.path().join("wal-db");
    tsdbctl(&[
        "ingest",
        "--db",
        wal_db.to_str().unwrap(),
        prom.to_str().unwrap(),
    ]);
    // The 2 h of data lie in one 2 h range, which the head keeps; cut it into a block directly.
    let db_dir = tmp.path().join("db");
    // `tsdbctl query` wants a database: a `wal/` beside the blocks.
    fs::create_dir_all(db_dir.join("wal")).unwrap();
    {
        let db = Db::open(&wal_db, Options::default().read_only(true)).unwrap();
        let (lo, hi) = db.head().time_range().unwrap();
        let range = db.options().block_range_ms;
        let mut t = lo.div_euclid(range) * range;
        while t <= hi {
            tsdb::compact::write_head_block(&db_dir, db.head(), t, t + range).unwrap();
            t += range;
        }
    }
    let blocks = archive::list_blocks(&db_dir).unwrap();
    let samples: u64 = blocks.iter().map(|b| b.meta.stats.num_samples).sum();
    assert_eq!(samples, 480_000);
    let compat: u64 = blocks
        .iter()
        .map(|b| dir_size(&db_dir.join(b.meta.ulid.to_string())))
        .sum();

    let d = db_dir.to_str().unwrap();
    let query = |expr: &str| {
        tsdbctl(&[
            "query",
            "--db",
            d,
            "--time",
            "1767232000",
            "--output",
            "json",
            expr,
        ])
    };
    let exprs = [
        "sum by (mode) (rate(node_cpu_seconds_total[5m]))",
        "node_memory_MemAvailable_bytes{instance=\"host-0003:9100\"}",
        "histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket[10m])))",
    ];
    let before: Vec<String> = exprs.iter().map(|e| query(e)).collect();
    for (e, b) in exprs.iter().zip(&before) {
        assert!(b.contains("\"metric\""), "{e}: no result: {b}");
    }

    let out = tsdbctl(&["archive", "--db", d, "--older-than", "0s"]);
    assert!(out.starts_with("archived "), "{out}");
    let blocks = archive::list_blocks(&db_dir).unwrap();
    assert!(blocks.iter().all(|b| b.archive));
    let size: u64 = blocks
        .iter()
        .map(|b| dir_size(&db_dir.join(b.meta.ulid.to_string())))
        .sum();
    let bps = size as f64 / samples as f64;
    eprintln!(
        "archive: {size} bytes, {bps:.3} bytes/sample (compatible: {:.3})",
        compat as f64 / samples as f64
    );
    assert!(
        bps <= MAX_BYTES_PER_SAMPLE,
        "{bps:.3} bytes/sample, bound {MAX_BYTES_PER_SAMPLE}"
    );
    let during: Vec<String> = exprs.iter().map(|e| query(e)).collect();
    assert_eq!(during, before);

    let out = tsdbctl(&["unarchive", "--db", d, "--all"]);
    assert!(out.starts_with("unarchived "), "{out}");
    assert!(archive::list_blocks(&db_dir)
        .unwrap()
        .iter()
        .all(|b| !b.archive));
    let after: Vec<String> = exprs.iter().map(|e| query(e)).collect();
    assert_eq!(after, before);
}

#[test]
fn cli_refuses_a_data_directory_in_use() {
    let tmp = tempfile::tempdir().unwrap();
    let src = awkward_block(tmp.path());
    let d = tmp.path().to_str().unwrap();
    let db = Db::open(tmp.path(), Options::default()).unwrap();
    let (success, _, err) = run(
        env!("CARGO_BIN_EXE_tsdbctl"),
        &["archive", "--db", d, &src.to_string()],
    );
    assert!(!success);
    assert!(err.contains("in use by another process"), "{err}");
    drop(db);
    let out = tsdbctl(&["archive", "--db", d, "--level", "1", &src.to_string()]);
    assert!(out.contains(&format!("archived {src} -> ")), "{out}");
    assert!(!tmp.path().join(src.to_string()).exists());
}
