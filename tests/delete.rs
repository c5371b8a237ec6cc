//! Deleting series by matchers and time range (issue 3, point 4): `Db::delete` and `tsdbctl delete`.
//! - deletions over blocks (tombstones, meta.json) and the head (WAL tombstones record) hide exactly
//!   the deleted samples, also after a restart (WAL replay, checkpoints);
//! - compaction after a deletion leaves no deleted sample in the new block;
//! - `promtool tsdb dump` (which applies tombstones, and replays the head from the WAL) of a data
//!   directory after `tsdbctl delete` shows the deleted samples gone;
//! - Prometheus 2.42 replaying our WAL with its tombstones record, and reading our block
//!   tombstones, serves the data without the deleted samples;
//! - our block tombstones and meta.json say what Prometheus' admin delete API writes for the same
//!   deletions.
//!
//! Without the Prometheus binaries the cross-checks print a skip notice, or fail if
//! `TSDB_REQUIRE_PEERS=1`.

mod common;

use common::{available, parse_dump, promtool, Prometheus, PROMETHEUS, PROMTOOL};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use tsdb::block::{Block, Interval, Tombstones};
use tsdb::labels::{parse_selector, Labels, MatchType, Matcher};
use tsdb::{Db, FsyncPolicy, Options};

const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const STEP: i64 = 15_000;

type Samples = BTreeMap<Labels, Vec<(i64, f64)>>;

fn opts() -> Options {
    Options::default()
        .background_compaction(false)
        .fsync(FsyncPolicy::Never)
        .retention_ms(0)
}

fn labels(s: u32) -> Labels {
    let job = if s.is_multiple_of(2) { "even" } else { "odd" };
    Labels::from_pairs(&[("__name__", "m"), ("job", job), ("s", &s.to_string())])
}

/// Series `0..n`, a sample every 15 s in `[from, to)`; value `s * 1e6 + t / 1000`.
fn dataset(n: u32, from: i64, to: i64) -> Samples {
    (0..n)
        .map(|s| {
            let v = (0..)
                .map(|k| from + k * STEP)
                .take_while(|&t| t < to)
                .map(|t| (t, f64::from(s) * 1e6 + (t / 1000) as f64))
                .collect();
            (labels(s), v)
        })
        .collect()
}

fn append(db: &Db, data: &Samples) {
    let mut app = db.appender();
    for (l, s) in data {
        for &(t, v) in s {
            app.append(l, t, v).unwrap();
        }
    }
    let st = app.commit().unwrap();
    assert_eq!(
        st.appended as usize,
        data.values().map(Vec::len).sum::<usize>()
    );
}

fn merge(a: &mut Samples, b: Samples) {
    for (l, s) in b {
        a.entry(l).or_default().extend(s);
    }
}

fn all(db: &Db) -> Samples {
    db.querier(i64::MIN, i64::MAX)
        .select(&[Matcher::equal("__name__", "m")])
        .unwrap()
        .iter()
        .map(|s| (s.labels().clone(), s.samples().collect()))
        .collect()
}

/// `data` without the samples in `[mint, maxt]` of the series `sel` selects.
fn without(data: &Samples, sel: &[Matcher], mint: i64, maxt: i64) -> Samples {
    data.iter()
        .filter_map(|(l, s)| {
            let hit = sel.iter().all(|m| m.matches(l.get(&m.name).unwrap_or("")));
            let s: Vec<(i64, f64)> = s
                .iter()
                .copied()
                .filter(|&(t, _)| !(hit && mint <= t && t <= maxt))
                .collect();
            (!s.is_empty()).then(|| (l.clone(), s))
        })
        .collect()
}

/// Every sample stored in a block's chunks, ignoring its tombstones.
fn raw_block(b: &Block) -> Samples {
    let mut out = Samples::new();
    let refs = b.series_refs(&[Matcher::equal("", "")]).unwrap();
    for r in refs {
        let e = b.series(r).unwrap();
        for c in &e.chunks {
            let data = b.chunk(c.chunk_ref).unwrap();
            for x in tsdb::chunk::XorIterator::new(data).unwrap() {
                out.entry(e.labels.clone()).or_default().push(x.unwrap());
            }
        }
    }
    out
}

#[test]
fn delete_over_blocks_and_head_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut want = dataset(6, 0, 6 * HOUR);
    {
        let db = Db::open(dir.path(), opts()).unwrap();
        append(&db, &want);
        // Blocks [0, 2h) and [2h, 4h); the head keeps [4h, 6h).
        assert_eq!(db.compact_head().unwrap().len(), 2);

        let odd = parse_selector(r#"m{job="odd"}"#).unwrap();
        let st = db.delete(&odd, HOUR, 5 * HOUR).unwrap();
        assert_eq!((st.series, st.head_series), (3, 3));
        assert_eq!(st.blocks.len(), 2);
        assert!(st.blocks.iter().all(|&(_, n)| n == 3));
        want = without(&want, &odd, HOUR, 5 * HOUR);
        assert_eq!(all(&db), want);

        // Only the head: a range after every block.
        let s0 = parse_selector(r#"m{s="0"}"#).unwrap();
        let st = db.delete(&s0, 5 * HOUR + 30 * MIN, i64::MAX).unwrap();
        assert_eq!((st.series, st.head_series, st.blocks.len()), (1, 1, 0));
        want = without(&want, &s0, 5 * HOUR + 30 * MIN, i64::MAX);
        // Only a block, all of series 2 there.
        let s2 = parse_selector(r#"m{s="2"}"#).unwrap();
        let st = db.delete(&s2, i64::MIN, 2 * HOUR - 1).unwrap();
        assert_eq!((st.series, st.head_series, st.blocks.len()), (1, 0, 1));
        want = without(&want, &s2, i64::MIN, 2 * HOUR - 1);
        // Nothing matches: nothing is written.
        let none = parse_selector(r#"m{s="99"}"#).unwrap();
        assert_eq!(db.delete(&none, i64::MIN, i64::MAX).unwrap().series, 0);
        assert_eq!(all(&db), want);

        // meta.json on disk counts the block's intervals, as Prometheus' Block.Delete writes it.
        for b in db.blocks() {
            let m = Block::open(b.dir()).unwrap();
            assert_eq!(m.meta().stats.num_tombstones, m.tombstones().total());
            assert_eq!(m.meta().stats.num_tombstones, b.tombstones().total());
        }
        let first = &db.blocks()[0];
        assert_eq!(first.meta().stats.num_tombstones, 4);
        // Block intervals are clamped to the series' samples in the block.
        let r = first
            .series_refs(&parse_selector(r#"m{s="1"}"#).unwrap())
            .unwrap()[0];
        assert_eq!(
            first.tombstones().get(r),
            [Interval {
                mint: HOUR,
                maxt: 2 * HOUR - STEP
            }]
        );
    }
    // Restart: blocks reopen with their tombstones, the WAL replays the head's.
    let db = Db::open(dir.path(), opts()).unwrap();
    assert_eq!(db.open_report().replayed_tombstones, 4);
    assert!(
        db.open_report().warnings.is_empty(),
        "{:?}",
        db.open_report().warnings
    );
    assert_eq!(all(&db), want);
    // A read-only database refuses to delete.
    drop(db);
    let ro = Db::open(dir.path(), opts().read_only(true)).unwrap();
    assert!(matches!(
        ro.delete(&[Matcher::equal("s", "1")], 0, 1),
        Err(tsdb::DbError::ReadOnly)
    ));
}

#[test]
fn compaction_after_delete_leaves_no_deleted_sample_in_the_block() {
    let dir = tempfile::tempdir().unwrap();
    let sel = [
        Matcher::equal("__name__", "m"),
        Matcher::new(MatchType::Regexp, "s", "1|2").unwrap(),
    ];
    let (d0, d1) = (HOUR, 2 * HOUR + 30 * MIN);
    let mut want = dataset(4, 0, 3 * HOUR);
    {
        let db = Db::open(dir.path(), opts()).unwrap();
        append(&db, &want);
        assert!(!db.compactable());
        let st = db.delete(&sel, d0, d1).unwrap();
        assert_eq!((st.series, st.head_series), (2, 2));
        want = without(&want, &sel, d0, d1);
        // More data makes [0, 2h) compactable.
        let more = dataset(4, 3 * HOUR, 5 * HOUR);
        append(&db, &more);
        merge(&mut want, more);
        assert_eq!(db.compact_head().unwrap().len(), 1);
        let blocks = db.blocks();
        let b = &blocks[0];
        assert!(b.tombstones().is_empty());
        let in_block: Samples = want
            .iter()
            .map(|(l, s)| {
                (
                    l.clone(),
                    s.iter().copied().filter(|p| p.0 < 2 * HOUR).collect(),
                )
            })
            .collect();
        assert_eq!(raw_block(b), in_block);
        assert_eq!(
            b.meta().stats.num_samples as usize,
            in_block.values().map(Vec::len).sum::<usize>()
        );
        // The head still hides [2h, 2h30m] of series 1 and 2.
        assert_eq!(all(&db), want);
    }
    // The WAL now starts with a checkpoint: it kept the tombstones that reach past 2h.
    assert!(fs::read_dir(dir.path().join("wal")).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with("checkpoint.")));
    let db = Db::open(dir.path(), opts()).unwrap();
    assert_eq!(db.open_report().replayed_tombstones, 2);
    assert_eq!(all(&db), want);
    // And the next head block leaves them out too.
    let more = dataset(4, 5 * HOUR, 6 * HOUR);
    append(&db, &more);
    merge(&mut want, more);
    assert_eq!(db.compact_head().unwrap().len(), 1);
    let blocks = db.blocks();
    let second: Samples = want
        .iter()
        .map(|(l, s)| {
            let s = s.iter().copied();
            (
                l.clone(),
                s.filter(|p| (2 * HOUR..4 * HOUR).contains(&p.0)).collect(),
            )
        })
        .collect();
    assert_eq!(raw_block(&blocks[1]), second);
    assert!(db.head().tombstones().is_empty());
    assert_eq!(all(&db), want);
}

/// Prometheus' head tombstones hide every sample in their interval, also one appended after the
/// deletion; but the interval ends at the series' last sample, and appends cannot go back in
/// time, so only a repeat of that last sample could land in it, and that is an ignored duplicate.
#[test]
fn samples_appended_after_a_delete() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    let l = labels(1);
    let data = dataset(2, 0, 10 * MIN);
    append(&db, &data);
    let last = data[&l].last().unwrap().0;
    let st = db
        .delete(&[Matcher::equal("s", "1")], 5 * MIN, i64::MAX)
        .unwrap();
    assert_eq!(st.head_series, 1);
    assert_eq!(db.head().tombstones().total(), 1);
    let mut app = db.appender();
    app.append(&l, last, 1e6 + (last / 1000) as f64).unwrap();
    assert!(app.append(&l, last, 7.0).is_err());
    assert!(app.append(&l, last - STEP, 7.0).is_err());
    let st = app.commit().unwrap();
    assert_eq!((st.appended, st.no_ops), (0, 1));
    let mut app = db.appender();
    app.append(&l, last + STEP, 42.0).unwrap();
    assert_eq!(app.commit().unwrap().appended, 1);
    let got = all(&db);
    let mut want: Vec<(i64, f64)> = data[&l]
        .iter()
        .copied()
        .filter(|&(t, _)| t < 5 * MIN)
        .collect();
    want.push((last + STEP, 42.0));
    assert_eq!(got[&l], want);
    drop(db);
    let db = Db::open(dir.path(), opts()).unwrap();
    assert_eq!(all(&db)[&l], want);
}

#[test]
fn delete_waits_for_a_concurrent_compaction() {
    // Deletions race a background compaction thread that cuts blocks from the head: every
    // deleted sample stays hidden, whether it was in the head or already in a block.
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts().background_compaction(true);
    o.block_range_ms = HOUR;
    let db = Db::open(dir.path(), o.clone()).unwrap();
    let mut want = Samples::new();
    for h in 0..8 {
        let part = dataset(8, h * HOUR, (h + 1) * HOUR);
        append(&db, &part);
        merge(&mut want, part);
        let sel = [Matcher::equal("s", (h % 8).to_string())];
        let (d0, d1) = (h * HOUR - 20 * MIN, h * HOUR + 20 * MIN);
        db.delete(&sel, d0, d1).unwrap();
        want = without(&want, &sel, d0, d1);
        assert_eq!(all(&db), want, "after hour {h}");
    }
    let status = db.compaction_status();
    drop(db);
    let db = Db::open(dir.path(), o.background_compaction(false)).unwrap();
    assert_eq!(all(&db), want);
    eprintln!("compactions: {status:?}; blocks: {}", db.blocks().len());
    assert!(!db.blocks().is_empty(), "{status:?}");
}

// ---------------------------------------------------------------------------------------------
// Cross-checks against promtool and Prometheus 2.42.

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Blocks and a head of recent data (inside Prometheus' default retention, and a head Prometheus
/// will not compact at once): returns the data and the directory's block count.
fn recent_db(dir: &Path, n: u32) -> (Samples, i64) {
    let now = now_ms();
    // 2h-aligned, so the blocks are [start, +2h), [+2h, +4h) and the head keeps the rest: the data
    // spans ~6 h whatever the time of day (the head compacts while it spans more than 3 h), and
    // never reaches into the future. (Ending at `now - 1 min` with `start` 5-7 h back made one
    // block only in the minute after every odd UTC hour.)
    let start = (now - 6 * HOUR) / (2 * HOUR) * (2 * HOUR);
    let end = (start + 6 * HOUR).min(now - MIN);
    let data = dataset(n, start, end);
    let db = Db::open(dir, opts()).unwrap();
    append(&db, &data);
    assert_eq!(db.compact_head().unwrap().len(), 2);
    (data, start)
}

#[test]
fn promtool_dump_after_tsdbctl_delete_lacks_the_deleted_samples() {
    if !available(PROMTOOL) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (data, start) = recent_db(dir, 6);
    let d = dir.to_str().unwrap();
    let before = parse_dump(&promtool(&["tsdb", "dump", d]));
    assert_eq!(before, data);

    // Series 1 and 3 lose 3 hours across both blocks and the head (RFC 3339 and Unix seconds);
    // series 4 loses everything.
    let (d0, d1) = (start + HOUR + 7 * MIN, start + 4 * HOUR + 20 * MIN);
    let rfc = |ms: i64| {
        let out = Command::new("date")
            .args([
                "-u",
                "-d",
                &format!("@{}", ms / 1000),
                "+%Y-%m-%dT%H:%M:%SZ",
            ])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let out = Command::new(env!("CARGO_BIN_EXE_tsdbctl"))
        .args([
            "delete",
            "--db",
            d,
            "--match",
            r#"m{s=~"1|3"}"#,
            "--match",
            "m{s='4'}",
        ])
        .args(["--start", &rfc(d0), "--end", &(d1 / 1000).to_string()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every series, blocks and head, reported per selector.
    assert!(
        stdout.contains(
            r#"m{s=~"1|3"}: samples deleted from 2 series (head: 2 series; blocks touched: 2)"#
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("m{s='4'}: samples deleted from 1 series"),
        "{stdout}"
    );
    let mut want = without(&data, &parse_selector(r#"m{s=~"1|3"}"#).unwrap(), d0, d1);
    want = without(&want, &[Matcher::equal("s", "4")], d0, d1);

    let after = parse_dump(&promtool(&["tsdb", "dump", d]));
    assert_eq!(after.len(), want.len());
    for (l, s) in &want {
        assert_eq!(after.get(l), Some(s), "{l}");
    }
    // Our own reading agrees.
    let db = Db::open(dir, opts().read_only(true)).unwrap();
    assert_eq!(all(&db), want);
    // Without a matcher, or with an inverted range, nothing runs.
    let out = Command::new(env!("CARGO_BIN_EXE_tsdbctl"))
        .args([
            "delete", "--db", d, "--start", "10", "--end", "5", "--match", "m",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = Command::new(env!("CARGO_BIN_EXE_tsdbctl"))
        .args(["delete", "--db", d])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

const PROMETHEUS_CONFIG: &str = "global:\n  scrape_interval: 1h\nscrape_configs: []\n";

/// `query` (a range selector) at `time_ms` from Prometheus, as samples per series.
fn matrix(p: &Prometheus, query: &str, time_ms: i64) -> Samples {
    let q: String = query
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let path = format!(
        "/api/v1/query?query={q}&time={}.{:03}",
        time_ms / 1000,
        time_ms % 1000
    );
    let (status, body) = p.get(&path).unwrap();
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut out = Samples::new();
    for series in v["data"]["result"].as_array().unwrap() {
        let pairs: Vec<(&str, &str)> = series["metric"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
            .collect();
        let s = series["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|pt| {
                let t = (pt[0].as_f64().unwrap() * 1000.0).round() as i64;
                (t, pt[1].as_str().unwrap().parse::<f64>().unwrap())
            })
            .collect();
        out.insert(Labels::from_pairs(&pairs), s);
    }
    out
}

#[test]
fn prometheus_replays_our_tombstones_and_reads_our_block_tombstones() {
    if !available(PROMETHEUS) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (data, start) = recent_db(dir, 4);
    let last = data.values().map(|s| s.last().unwrap().0).max().unwrap();
    let sel = [Matcher::new(MatchType::Regexp, "s", "0|3").unwrap()];
    // From inside the second block to the end of time: both the block and the head.
    let d0 = start + 3 * HOUR + 11 * MIN;
    {
        let db = Db::open(dir, opts()).unwrap();
        let st = db.delete(&sel, d0, i64::MAX).unwrap();
        assert_eq!((st.series, st.head_series, st.blocks.len()), (2, 2, 1));
    }
    let want = without(&data, &sel, d0, i64::MAX);
    let p = Prometheus::start(dir, PROMETHEUS_CONFIG);
    let window = last - start + MIN;
    let got = matrix(&p, &format!("m[{}s]", window / 1000), last);
    let log = p.logs();
    assert!(!log.contains("corruption"), "{log}");
    p.stop();
    assert_eq!(got.len(), want.len());
    for (l, s) in &want {
        assert_eq!(got.get(l), Some(s), "{l}");
    }
}

#[test]
fn our_block_tombstones_are_what_prometheus_writes() {
    if !available(PROMETHEUS) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (ours, theirs) = (tmp.path().join("ours"), tmp.path().join("theirs"));
    let (_, start) = recent_db(&ours, 5);
    // The same blocks, head dropped, in both directories.
    fs::create_dir_all(&theirs).unwrap();
    let blocks: Vec<PathBuf> = fs::read_dir(&ours)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("meta.json").exists())
        .collect();
    for b in &blocks {
        let to = theirs.join(b.file_name().unwrap());
        fs::create_dir_all(to.join("chunks")).unwrap();
        for f in ["index", "meta.json", "tombstones", "chunks/000001"] {
            fs::copy(b.join(f), to.join(f)).unwrap();
        }
    }
    fs::remove_dir_all(ours.join("wal")).unwrap();
    let deletions: [(&str, i64, i64); 3] = [
        (r#"m{s="1"}"#, start + 30 * MIN, start + 50 * MIN),
        (
            r#"m{job="odd"}"#,
            start + HOUR + 45 * MIN,
            start + 2 * HOUR + 10 * MIN,
        ),
        (r#"m{s="1"}"#, start + 50 * MIN, start + HOUR),
    ];
    {
        let db = Db::open(&ours, opts()).unwrap();
        for (sel, d0, d1) in deletions {
            db.delete(&parse_selector(sel).unwrap(), d0, d1).unwrap();
        }
    }
    let p = Prometheus::start_with(&theirs, PROMETHEUS_CONFIG, &["--web.enable-admin-api"]);
    for (sel, d0, d1) in deletions {
        let m: String = sel.bytes().map(|b| format!("%{b:02X}")).collect();
        // The API takes seconds with a fraction.
        let path = format!(
            "/api/v1/admin/tsdb/delete_series?match[]={m}&start={}.{:03}&end={}.{:03}",
            d0 / 1000,
            d0 % 1000,
            d1 / 1000,
            d1 % 1000
        );
        let (status, body) = p.request("POST", &path).unwrap();
        assert_eq!(status, 204, "{body}\n{}", p.logs());
    }
    p.stop();
    for b in &blocks {
        let name = b.file_name().unwrap();
        // Go writes series in map order: compare what the files say, and their sizes.
        let a = fs::read(ours.join(name).join("tombstones")).unwrap();
        let t = fs::read(theirs.join(name).join("tombstones")).unwrap();
        assert!(a.len() > 9, "block {name:?} got tombstones");
        assert_eq!(a.len(), t.len(), "tombstones of block {name:?}");
        assert_eq!(
            Tombstones::decode(&a).unwrap(),
            Tombstones::decode(&t).unwrap(),
            "tombstones of block {name:?}"
        );
        let ma = Block::open(&ours.join(name)).unwrap();
        let mt = Block::open(&theirs.join(name)).unwrap();
        assert_eq!(ma.meta(), mt.meta(), "meta.json of block {name:?}");
    }
}
