//! Crash test: a child process commits batches in a loop and is killed with SIGKILL at random
//! moments. After every kill the directory must open without error, every batch whose commit
//! returned must be present bit-exact, and the batch in flight must be wholly present or wholly
//! absent.
//!
//! The child is this test binary itself, re-executed with `TSDB_CRASH_CHILD` set (the `child` test
//! is its entry point and does nothing in a normal run). Trials: 30 by default, `TSDB_CRASH_TRIALS`
//! for a long run (see docs/testing.md).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use tsdb::labels::{Labels, Matcher};
use tsdb::{Db, Options};

const SERIES: u64 = 37;
const BATCH_SPAN: i64 = 1_000_000;

/// Deterministic pseudo-random numbers (splitmix64).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Samples in batch `k`: mostly small, sometimes large enough to span many WAL records and
/// segments.
fn batch_len(k: u64) -> u64 {
    match mix(k) % 10 {
        0 => 40_000 + mix(k + 1) % 60_000,
        _ => 1 + mix(k + 2) % 3_000,
    }
}

/// Sample `j` of batch `k`: (series, timestamp, value bits). Values cover NaN payloads, the stale
/// marker, infinities and ordinary numbers, so bit-exactness is checked.
fn sample(k: u64, j: u64) -> (u64, i64, u64) {
    let s = j % SERIES;
    let t = k as i64 * BATCH_SPAN + (j / SERIES) as i64;
    let r = mix(k * 1_000_003 + j);
    let bits = match r % 16 {
        0 => 0x7ff0_0000_0000_0002,
        1 => 0x7ff8_0000_0000_0001,
        2 => f64::INFINITY.to_bits(),
        3 => f64::NEG_INFINITY.to_bits(),
        4 => 0x7ff8_dead_beef_0001,
        5 => ((r % 1000) as f64).to_bits(),
        _ => f64::from_bits(r >> 2).to_bits(),
    };
    (s, t, bits)
}

fn labels(s: u64) -> Labels {
    Labels::from_pairs(&[("__name__", "crash_series"), ("s", &s.to_string())])
}

fn opts() -> Options {
    // Small segments so that batches cross segment boundaries.
    Options::default().wal_segment_size(256 * 1024)
}

/// Batches present in the directory, verified. Returns the number of the last batch, or -1.
fn verify(dir: &Path, acked: i64) -> i64 {
    let db = Db::open(dir, opts()).unwrap_or_else(|e| panic!("open after kill: {e}"));
    let q = db.querier(i64::MIN, i64::MAX);
    let series = q
        .select(&[Matcher::equal("__name__", "crash_series")])
        .unwrap();
    // per batch: (series, t, bits) seen
    let mut got: std::collections::BTreeMap<u64, Vec<(u64, i64, u64)>> = Default::default();
    for s in &series {
        let id: u64 = s.labels().get("s").unwrap().parse().unwrap();
        for (t, v) in s.samples() {
            got.entry((t / BATCH_SPAN) as u64)
                .or_default()
                .push((id, t, v.to_bits()));
        }
    }
    let last = got.keys().next_back().map_or(-1, |&k| k as i64);
    assert!(
        last >= acked,
        "batch {acked} was acknowledged but the directory ends at batch {last}"
    );
    assert!(
        last <= acked + 1,
        "batch {last} present but only {acked} acknowledged (one may be in flight)"
    );
    for k in 0..=last.max(-1) {
        let k = k as u64;
        let mut want: Vec<(u64, i64, u64)> = (0..batch_len(k)).map(|j| sample(k, j)).collect();
        want.sort();
        let mut have = got.remove(&k).unwrap_or_default();
        have.sort();
        assert_eq!(
            have.len(),
            want.len(),
            "batch {k}: {} of {} samples present (acknowledged up to {acked})",
            have.len(),
            want.len()
        );
        assert!(
            have == want,
            "batch {k}: samples differ from what was committed"
        );
    }
    last
}

#[test]
fn child() {
    let Ok(dir) = std::env::var("TSDB_CRASH_CHILD") else {
        return; // Only an entry point for the re-executed child.
    };
    let db = Db::open(&dir, opts()).unwrap();
    let start = db
        .head()
        .time_range()
        .map_or(0, |(_, max)| (max / BATCH_SPAN) as u64 + 1);
    let ids: Vec<u64> = {
        // Ensure the series exist so the loop appends by id.
        (0..SERIES)
            .map(|s| db.head().get_or_create(&labels(s)).0.id)
            .collect()
    };
    let stdout = std::io::stdout();
    for k in start.. {
        let mut app = db.appender();
        for j in 0..batch_len(k) {
            let (s, t, bits) = sample(k, j);
            app.append_id(ids[s as usize], t, f64::from_bits(bits))
                .unwrap();
        }
        app.commit().unwrap();
        use std::io::Write;
        let mut out = stdout.lock();
        // libtest has printed `test child ... ` without a newline: the first ack shares its line,
        // hence the marker the parent looks for anywhere in a line.
        writeln!(out, "ACK {k}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn sigkill_loses_nothing_committed() {
    let trials: u64 = std::env::var("TSDB_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked: i64 = -1;
    let mut kills_mid_large = 0;
    for trial in 0..trials {
        let mut child = Command::new(&exe)
            .args(["--exact", "child", "--nocapture", "--test-threads=1"])
            .env("TSDB_CRASH_CHILD", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut last = None;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let ack = line.rfind("ACK ").map(|i| &line[i + 4..]);
                if let Some(Ok(k)) = ack.map(|a| a.trim().parse::<i64>()) {
                    last = Some(k);
                }
            }
            last
        });
        let wait = 30 + mix(trial + 77) % 400;
        std::thread::sleep(Duration::from_millis(wait));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        if let Some(k) = reader.join().unwrap() {
            acked = acked.max(k);
        }
        let last = verify(dir.path(), acked);
        if last == acked && batch_len((acked + 1) as u64) > 10_000 {
            kills_mid_large += 1;
        }
        acked = last; // a batch committed but not yet acknowledged counts from now on
    }
    assert!(acked >= 0, "the child never committed a batch");
    eprintln!("{trials} kills; {kills_mid_large} during a large batch; {acked} batches committed");
}
