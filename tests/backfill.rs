//! Backfill through the real `tsdbctl ingest` and the library's `Ingester`: an export older than
//! the head lands in blocks, queryable exactly once, merged by compaction with the blocks it
//! overlaps; the blocks pass `promtool tsdb analyze` and `promtool tsdb dump` prints exactly their
//! samples (`/usr/bin/promtool`; without it the promtool test prints a skip notice, or fails if
//! `TSDB_REQUIRE_PEERS=1`); `--no-backfill` rejects them as before.

mod common;

use common::{available, promtool, PROMTOOL};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Output};

use tsdb::ingest::{IngestOptions, Ingester};
use tsdb::labels::Matcher;
use tsdb::{Db, Options};

const H: i64 = 3_600_000;
/// A 2h-aligned origin.
const T0: i64 = 1_700_000_000_000 / (2 * H) * (2 * H);

type Samples = BTreeMap<String, Vec<(i64, u64)>>;

fn tsdbctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tsdbctl"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "tsdbctl failed: {err}");
    err
}

fn value(i: u32, t: i64) -> f64 {
    // Same for a series and timestamp in every file: overlapping exports agree.
    ((t / 60_000) % 1000) as f64 * 0.5 + f64::from(i)
}

/// Prometheus text for series `i` in `series`, from `from` to `to` (exclusive) every minute,
/// time-major like a scrape log; added to `want`.
fn export(series: std::ops::Range<u32>, from: i64, to: i64, want: &mut Samples) -> String {
    let mut s = String::from("# TYPE bf_metric gauge\n");
    let mut t = from;
    while t < to {
        for i in series.clone() {
            let v = value(i, t);
            writeln!(s, "bf_metric{{i=\"{i}\"}} {v} {t}").unwrap();
            want.entry(format!("{{__name__=\"bf_metric\", i=\"{i}\"}}"))
                .or_default()
                .push((t, v.to_bits()));
        }
        t += 60_000;
    }
    s
}

fn normalize(want: &mut Samples) {
    for v in want.values_mut() {
        v.sort();
        v.dedup();
    }
}

fn query_all(dir: &Path) -> Samples {
    let db = Db::open(dir, Options::default().background_compaction(false)).unwrap();
    let q = db.querier(i64::MIN + 1, i64::MAX - 1);
    let mut out = Samples::new();
    for s in q
        .select(&[Matcher::equal("__name__", "bf_metric")])
        .unwrap()
    {
        let pairs: Vec<String> = s
            .labels()
            .iter()
            .map(|l| format!("{}=\"{}\"", l.name, l.value))
            .collect();
        out.insert(
            format!("{{{}}}", pairs.join(", ")),
            s.samples().map(|(t, v)| (t, v.to_bits())).collect(),
        );
    }
    out
}

/// Equal, or a panic naming the first difference (not thousands of samples).
fn assert_same(got: &Samples, want: &Samples) {
    let keys = |m: &Samples| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(got), keys(want), "series differ");
    for (k, w) in want {
        let g = &got[k];
        if let Some(i) = (0..g.len().max(w.len())).find(|&i| g.get(i) != w.get(i)) {
            panic!(
                "{k}: {} samples vs {} wanted; first difference at {i}: {:?} vs {:?}",
                g.len(),
                w.len(),
                g.get(i),
                w.get(i)
            );
        }
    }
}

fn block_ranges(dir: &Path) -> Vec<(i64, i64)> {
    let db = Db::open(dir, Options::default().background_compaction(false)).unwrap();
    let mut r: Vec<(i64, i64)> = db
        .blocks()
        .iter()
        .map(|b| (b.meta().min_time, b.meta().max_time))
        .collect();
    r.sort();
    r
}

fn assert_disjoint(ranges: &[(i64, i64)]) {
    for w in ranges.windows(2) {
        assert!(w[0].1 <= w[1].0, "overlapping blocks: {ranges:?}");
    }
}

fn field(summary: &str, key: &str) -> u64 {
    let at = summary
        .find(key)
        .unwrap_or_else(|| panic!("{key} in {summary}"));
    summary[at + key.len()..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn an_older_export_is_backfilled_and_merged_with_the_blocks_it_overlaps() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("data");
    let d = db.to_str().unwrap();
    let mut want = Samples::new();
    // Recent data: 6 h, so the ingest's compaction leaves [10h, 14h) in blocks, the rest in the
    // head (its minimum valid time is 14h).
    let recent = tmp.path().join("recent.prom");
    std::fs::write(&recent, export(0..6, T0 + 10 * H, T0 + 16 * H, &mut want)).unwrap();
    ok(tsdbctl(&["ingest", "--db", d, recent.to_str().unwrap()]));
    let before = block_ranges(&db);
    assert_eq!(
        before,
        vec![(T0 + 10 * H, T0 + 12 * H), (T0 + 12 * H, T0 + 14 * H)]
    );

    // An older export over [2h, 13h): six ranges, the last two overlapping the blocks (same
    // samples for series 0-5, new series 6-7).
    let old = tmp.path().join("old.prom");
    let mut old_want = Samples::new();
    std::fs::write(&old, export(0..8, T0 + 2 * H, T0 + 13 * H, &mut old_want)).unwrap();
    let exported: u64 = old_want.values().map(|v| v.len() as u64).sum();
    for (k, v) in old_want {
        want.entry(k).or_default().extend(v);
    }
    normalize(&mut want);
    let summary = ok(tsdbctl(&["ingest", "--db", d, old.to_str().unwrap()]));
    assert_eq!(
        field(&summary, "samples backfilled: "),
        exported,
        "{summary}"
    );
    assert_eq!(field(&summary, " into "), 6, "{summary}");
    assert_eq!(field(&summary, "older than the head: "), 0, "{summary}");

    // Every sample once, after a restart (this is a new process).
    assert_same(&query_all(&db), &want);
    // The ingest's compaction merged the overlapping blocks already.
    let after_ingest = block_ranges(&db);
    assert_disjoint(&after_ingest);
    assert_eq!(after_ingest.first().unwrap().0, T0 + 2 * H);
    assert_eq!(after_ingest.last().unwrap().1, T0 + 14 * H);

    ok(tsdbctl(&["compact", "--db", d]));
    let after = block_ranges(&db);
    assert_disjoint(&after);
    // Nothing is left to merge: as many blocks as after the ingest's own compaction, fewer than
    // the 2 + 6 written.
    assert_eq!(after, after_ingest);
    assert!(after.len() < 8, "{after:?}");
    assert_same(&query_all(&db), &want);
}

#[test]
fn no_backfill_rejects_older_samples_as_before() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("data");
    let d = db.to_str().unwrap();
    let mut want = Samples::new();
    let recent = tmp.path().join("recent.prom");
    std::fs::write(&recent, export(0..4, T0 + 10 * H, T0 + 16 * H, &mut want)).unwrap();
    ok(tsdbctl(&["ingest", "--db", d, recent.to_str().unwrap()]));
    let before = block_ranges(&db);

    let old = tmp.path().join("old.prom");
    let mut old_want = Samples::new();
    std::fs::write(&old, export(0..4, T0 + 2 * H, T0 + 8 * H, &mut old_want)).unwrap();
    let exported: u64 = old_want.values().map(|v| v.len() as u64).sum();
    let summary = ok(tsdbctl(&[
        "ingest",
        "--no-backfill",
        "--db",
        d,
        old.to_str().unwrap(),
    ]));
    assert_eq!(
        field(&summary, "older than the head: "),
        exported,
        "{summary}"
    );
    assert_eq!(field(&summary, "samples backfilled: "), 0, "{summary}");
    assert_eq!(block_ranges(&db), before);
    normalize(&mut want);
    assert_same(&query_all(&db), &want);
}

#[test]
fn a_failed_document_leaves_no_backfill_block() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut want = Samples::new();
    {
        let db = Db::open(dir, Options::default().background_compaction(false)).unwrap();
        let recent = export(0..4, T0 + 10 * H, T0 + 16 * H, &mut want);
        let ing = Ingester::new(&db, IngestOptions::new(0));
        for r in ing.ingest("recent", recent.as_bytes(), false, &|_| {}) {
            r.unwrap();
        }
        db.compact(&mut |_| {}).unwrap();
    }
    let before = block_ranges(dir);
    assert_eq!(before.len(), 2);
    // Many ranges of old samples, more than the buffer holds, then a syntax error.
    let mut text = export(0..4, T0 - 200 * H, T0 + 8 * H, &mut Samples::new());
    text.push_str("bf_metric{i=\"0\" 1 1\n");
    let staged_blocks = std::sync::atomic::AtomicUsize::new(0);
    let count_staged = |_| {
        let n = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("backfill-"))
            .map(|e| std::fs::read_dir(e.path()).map_or(0, |d| d.count()))
            .sum::<usize>();
        staged_blocks.fetch_max(n, std::sync::atomic::Ordering::Relaxed);
    };
    {
        let db = Db::open(dir, Options::default().background_compaction(false)).unwrap();
        let mut opts = IngestOptions::new(0);
        opts.backfill = true;
        opts.backfill_buffer_bytes = 16 * 1024;
        opts.window_bytes = 64 * 1024;
        opts.block_bytes = 16 * 1024;
        let results = Ingester::new(&db, opts).ingest("bad", text.as_bytes(), false, &count_staged);
        assert!(results[0].is_err());
        assert_eq!(db.blocks().len(), 2);
    }
    // Blocks were written while the document was read, and are gone.
    assert!(staged_blocks.into_inner() > 10);
    assert_eq!(block_ranges(dir), before);
    let leftovers: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("tmp") || n.starts_with("backfill"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    normalize(&mut want);
    assert_same(&query_all(dir), &want);
}

fn promtool_available() -> bool {
    available(PROMTOOL)
}

/// Parses `promtool tsdb dump` lines `{__name__="bf_metric", i="3"} 1.5 1700000000000` (our
/// label values need no escaping).
fn parse_dump(out: &str) -> Samples {
    let mut got = Samples::new();
    for line in out.lines().filter(|l| !l.is_empty()) {
        let end = line.find("} ").unwrap() + 1;
        let mut f = line[end..].split_whitespace();
        let v: f64 = f.next().unwrap().parse().unwrap();
        let t: i64 = f.next().unwrap().parse().unwrap();
        got.entry(line[..end].to_string())
            .or_default()
            .push((t, v.to_bits()));
    }
    for v in got.values_mut() {
        v.sort();
    }
    got
}

#[test]
fn promtool_reads_the_backfilled_blocks() {
    if !promtool_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut want = Samples::new();
    // 9 ranges, time-major, then samples of series 1 in its last range out of time order
    // (repeats, and new ones in between), which the backfill sorts and deduplicates.
    let mut text = export(0..5, T0, T0 + 17 * H, &mut want);
    for k in (0..50i64).rev() {
        let t = T0 + 16 * H + k * 60_000;
        writeln!(text, "bf_metric{{i=\"1\"}} {} {t}", value(1, t)).unwrap();
        writeln!(text, "bf_metric{{i=\"1\"}} {} {}", value(1, t), t + 7).unwrap();
        want.get_mut("{__name__=\"bf_metric\", i=\"1\"}")
            .unwrap()
            .push((t + 7, value(1, t).to_bits()));
    }
    normalize(&mut want);
    let total: u64 = want.values().map(|v| v.len() as u64).sum();
    {
        let db = Db::open(tmp.path(), Options::default().background_compaction(false)).unwrap();
        // As if blocks covered everything before T0 + 20h: the whole export is older.
        db.head().set_min_valid_time(T0 + 20 * H);
        let mut opts = IngestOptions::new(0);
        opts.backfill = true;
        // A small budget (about three ranges of these 5 series) and small windows: ranges are
        // written while the input is read, one block each.
        opts.backfill_buffer_bytes = 6 * 1024;
        opts.window_bytes = 8 * 1024;
        opts.block_bytes = 4 * 1024;
        let results = Ingester::new(&db, opts).ingest("export", text.as_bytes(), false, &|_| {});
        let stats = results.into_iter().next().unwrap().unwrap();
        assert_eq!(stats.commit.appended, 0);
        assert_eq!(stats.backfill.samples, total);
        assert_eq!(stats.backfill.duplicates, 50);
        assert_eq!(stats.backfill.blocks, 9);
        assert_eq!(db.blocks().len(), 9);
        // Readable before any compaction, through the library too.
        let q = db.querier(i64::MIN + 1, i64::MAX - 1);
        let n: usize = q
            .select(&[Matcher::equal("__name__", "bf_metric")])
            .unwrap()
            .iter()
            .map(|s| s.samples().count())
            .sum();
        assert_eq!(n as u64, total);
    }
    let d = tmp.path().to_str().unwrap();
    let list = promtool(&["tsdb", "list", d]);
    let ulids: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 26)
        .collect();
    assert_eq!(ulids.len(), 9);
    for u in &ulids {
        assert!(list.contains(u.as_str()), "{list}");
        let analyze = promtool(&["tsdb", "analyze", d, u]);
        assert!(analyze.contains(u.as_str()), "{analyze}");
    }
    let dump = promtool(&["tsdb", "dump", d]);
    assert_eq!(dump.lines().count() as u64, total);
    assert_same(&parse_dump(&dump), &want);
}
