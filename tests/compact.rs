//! Head compaction: the oldest ranges of the head become Prometheus blocks, the WAL is truncated
//! behind a checkpoint, and nothing is lost or doubled — in our queries, after a restart, and as the
//! real promtool reads the directory.

use std::collections::BTreeMap;
use std::process::Command;
use tsdb::labels::{Labels, MatchType, Matcher};
use tsdb::{Db, FsyncPolicy, Options};

const HOUR: i64 = 3_600_000;

type Model = BTreeMap<String, Vec<(i64, u64)>>;

fn all(db: &Db) -> Model {
    let q = db.querier(i64::MIN, i64::MAX);
    let m = [Matcher::new(MatchType::Regexp, "__name__", ".+").unwrap()];
    q.select(&m)
        .unwrap()
        .iter()
        .map(|s| {
            (
                s.labels().to_string(),
                s.samples().map(|(t, v)| (t, v.to_bits())).collect(),
            )
        })
        .collect()
}

/// 7 hours of 30 series at 15 s, in hourly commits; one series stops after 1 hour.
fn fill(db: &Db) {
    for hour in 0..7i64 {
        let mut app = db.appender();
        for step in 0..240i64 {
            let t = hour * HOUR + step * 15_000 + 1;
            for i in 0..30 {
                if i == 29 && hour >= 1 {
                    continue;
                }
                let l = Labels::from_pairs(&[("__name__", "m"), ("i", &i.to_string())]);
                let v = if step % 50 == 7 {
                    f64::from_bits(0x7ff0_0000_0000_0002)
                } else {
                    (t / 1000 + i) as f64 * 0.5
                };
                app.append(&l, t, v).unwrap();
            }
        }
        app.commit().unwrap();
    }
}

#[test]
fn compaction_writes_blocks_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let before;
    {
        let opts = Options::default()
            .fsync(FsyncPolicy::Never)
            .background_compaction(false);
        let db = Db::open(dir.path(), opts).unwrap();
        fill(&db);
        before = all(&db);
        let written = db.compact_head().unwrap();
        // The head spans 7 h: [0,2h) and [2h,4h) become blocks; 3 h stay in the head.
        assert_eq!(written.len(), 2);
        assert_eq!(db.blocks().len(), 2);
        assert_eq!(all(&db), before);
        let (min, _) = db.head().time_range().unwrap();
        assert!(min >= 4 * HOUR);
        // The series that stopped after an hour is gone from the head, not from queries.
        assert_eq!(db.head().num_series(), 29);
        // Appends into a block's range are refused as out of bounds.
        let mut app = db.appender();
        let l = Labels::from_pairs(&[("__name__", "m"), ("i", "0")]);
        assert!(app.append(&l, HOUR, 1.0).is_err());
    }
    let wal = dir.path().join("wal");
    assert!(std::fs::read_dir(&wal).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with("checkpoint.")));
    let db = Db::open(dir.path(), Options::default()).unwrap();
    assert!(
        db.open_report().warnings.is_empty(),
        "{:?}",
        db.open_report().warnings
    );
    assert_eq!(all(&db), before);
    drop(db);

    // The real promtool reads our data directory: every sample, nothing more.
    let promtool = std::path::Path::new("/usr/bin/promtool");
    if !promtool.exists() {
        assert!(
            std::env::var("TSDB_REQUIRE_PEERS").is_err(),
            "promtool is required (TSDB_REQUIRE_PEERS=1)"
        );
        eprintln!("skipping the promtool part: /usr/bin/promtool not installed");
        return;
    }
    let out = Command::new(promtool)
        .args(["tsdb", "list", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(promtool)
        .args(["tsdb", "dump", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump = String::from_utf8_lossy(&out.stdout);
    let lines = dump.lines().count();
    let want: usize = before.values().map(|v| v.len()).sum();
    assert_eq!(lines, want, "promtool dump prints every sample once");
}

#[test]
fn retention_deletes_whole_blocks_beyond_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(
        dir.path(),
        Options::default()
            .fsync(FsyncPolicy::Never)
            .background_compaction(false)
            .retention_ms(2 * HOUR),
    )
    .unwrap();
    fill(&db);
    db.compact_head().unwrap();
    // Blocks [0,2h) and [2h,4h) were written; the first ends 2 h before the newest block's end.
    assert_eq!(db.blocks().len(), 1);
    assert_eq!(db.blocks()[0].meta().min_time, 2 * HOUR);
    let m = all(&db);
    assert!(m
        .values()
        .all(|s| s.first().is_none_or(|f| f.0 >= 2 * HOUR)));
    assert!(!std::fs::read_dir(dir.path()).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("tmp")));
}

#[test]
fn tsdbctl_compact_and_inspect() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(dir.path(), Options::default().background_compaction(false)).unwrap();
        fill(&db);
    }
    let exe = env!("CARGO_BIN_EXE_tsdbctl");
    let d = dir.path().to_str().unwrap();
    let out = Command::new(exe)
        .args(["compact", "--db", d])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("blocks written: 2"));
    let out = Command::new(exe)
        .args(["inspect", "--db", d])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().filter(|l| l.contains("1970-01-01T0")).count(),
        3,
        "{text}"
    );
    assert!(text.contains("Highest cardinality labels:"), "{text}");
    assert!(text.contains("       30  i"), "{text}");
}

/// With background compaction on (the default), commits that leave the head spanning more than
/// 1.5 block ranges wake a thread that writes the blocks; appends and queries go on meanwhile and
/// see every sample throughout.
#[test]
fn background_compaction_cuts_blocks_while_appends_and_queries_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default().fsync(FsyncPolicy::Never)).unwrap();
    let mut total = 0usize;
    for hour in 0..7i64 {
        let mut app = db.appender();
        for step in 0..240i64 {
            let t = hour * HOUR + step * 15_000 + 1;
            for i in 0..30 {
                let l = Labels::from_pairs(&[("__name__", "m"), ("i", &i.to_string())]);
                app.append(&l, t, t as f64).unwrap();
                total += 1;
            }
        }
        app.commit().unwrap();
        // Every committed sample is visible, whatever the compactor is doing.
        let seen: usize = all(&db).values().map(Vec::len).sum();
        assert_eq!(seen, total, "after hour {hour}");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while db.compaction_status().blocks_written < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(db.blocks().len(), 2, "{:?}", db.compaction_status());
    let st = db.compaction_status();
    assert_eq!((st.failed, st.blocks_written), (0, 2), "{st:?}");
    let seen: usize = all(&db).values().map(Vec::len).sum();
    assert_eq!(seen, total);
    assert!(db.head().time_range().unwrap().0 >= 4 * HOUR);
}

/// `hours` hours of `n` series at 15 s, one commit per hour.
fn fill_hours(db: &Db, hours: i64, n: usize) -> usize {
    let mut total = 0;
    for hour in 0..hours {
        let mut app = db.appender();
        for step in 0..240i64 {
            let t = hour * HOUR + step * 15_000 + 7;
            for i in 0..n {
                let l = Labels::from_pairs(&[("__name__", "m"), ("i", &i.to_string())]);
                app.append(&l, t, (t / 1000) as f64 + i as f64 / 8.0)
                    .unwrap();
                total += 1;
            }
        }
        app.commit().unwrap();
    }
    total
}

fn manual() -> Options {
    Options::default()
        .fsync(FsyncPolicy::Never)
        .background_compaction(false)
}

fn ranges(db: &Db) -> Vec<(i64, i64, u32)> {
    db.blocks()
        .iter()
        .map(|b| {
            let m = b.meta();
            (m.min_time / HOUR, m.max_time / HOUR, m.compaction.level)
        })
        .collect()
}

/// Prometheus' leveled compaction: three 2h blocks filling [0h,6h) become one level-2 block; the
/// newest block is left alone; every sample is still there, once, also after a restart.
#[test]
fn leveled_compaction_merges_three_2h_blocks_into_a_6h_block() {
    let dir = tempfile::tempdir().unwrap();
    let before;
    {
        let db = Db::open(dir.path(), manual()).unwrap();
        let total = fill_hours(&db, 11, 20);
        before = all(&db);
        assert_eq!(before.values().map(Vec::len).sum::<usize>(), total);
        let mut events = 0;
        let report = db.compact(&mut |_| events += 1).unwrap();
        assert_eq!(report.head_blocks.len(), 4, "{report:?}");
        assert_eq!(report.merged.len(), 1, "{report:?}");
        assert!(events >= 2);
        assert_eq!(ranges(&db), vec![(0, 6, 2), (6, 8, 1)]);
        assert_eq!(all(&db), before);
        // The merged inputs are gone from the directory.
        let dirs = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().join("meta.json").exists())
            .count();
        assert_eq!(dirs, 2);
    }
    let db = Db::open(dir.path(), manual()).unwrap();
    assert_eq!(all(&db), before);
    assert_eq!(ranges(&db), vec![(0, 6, 2), (6, 8, 1)]);
}

/// A crash after a merged block was written but before its inputs were deleted leaves both: the
/// next open deletes the inputs (they are the merged block's parents), so nothing is doubled.
#[test]
fn a_crash_between_merge_and_deleting_its_inputs_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let before;
    {
        let db = Db::open(dir.path(), manual()).unwrap();
        fill_hours(&db, 11, 5);
        before = all(&db);
        db.compact_head().unwrap();
        let blocks = db.blocks();
        assert_eq!(blocks.len(), 4);
        // What compaction does up to the crash: the merged block is in place, inputs not deleted.
        tsdb::compact::merge_blocks(dir.path(), &blocks[..3], &mut |_, _| {})
            .unwrap()
            .unwrap();
    }
    let db = Db::open(dir.path(), manual()).unwrap();
    assert_eq!(ranges(&db), vec![(0, 6, 2), (6, 8, 1)]);
    assert_eq!(all(&db), before);
}

/// Overlapping blocks (for example, one written by a backfill) are merged vertically.
#[test]
fn overlapping_blocks_are_merged_vertically() {
    let dir = tempfile::tempdir().unwrap();
    let before;
    {
        let db = Db::open(dir.path(), manual()).unwrap();
        fill_hours(&db, 5, 5);
        db.compact_head().unwrap();
        before = all(&db);
    }
    // A second copy of the first block: same data, overlapping range.
    let src = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("meta.json").exists())
        .unwrap();
    let b = std::sync::Arc::new(tsdb::block::Block::open(&src).unwrap());
    // A merge of one block is a rewrite under a new ULID; drop its parents so it stays.
    let copy = tsdb::compact::merge_blocks(dir.path(), &[b], &mut |_, _| {})
        .unwrap()
        .unwrap();
    let copy_dir = dir.path().join(copy.to_string());
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(copy_dir.join("meta.json")).unwrap()).unwrap();
    meta["compaction"]["parents"] = serde_json::json!([]);
    std::fs::write(copy_dir.join("meta.json"), meta.to_string()).unwrap();

    let db = Db::open(dir.path(), manual()).unwrap();
    assert_eq!(db.blocks().len(), 2);
    assert_eq!(
        all(&db),
        before,
        "overlapping blocks are deduplicated when read"
    );
    let report = db.compact(&mut |_| {}).unwrap();
    assert_eq!(report.merged.len(), 1);
    assert_eq!(db.blocks().len(), 1);
    assert_eq!(all(&db), before);
}

/// `retention_bytes`: the oldest blocks go while blocks + WAL exceed the limit.
#[test]
fn size_retention_deletes_the_oldest_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), manual().retention_ms(0)).unwrap();
    fill_hours(&db, 11, 50);
    db.compact_head().unwrap();
    assert_eq!(db.blocks().len(), 4);
    let block_bytes: Vec<u64> = db.blocks().iter().map(|b| du(b.dir())).collect();
    let wal = du(&dir.path().join("wal")) + du(&dir.path().join("chunks_head"));
    drop(db);
    // Room for the WAL and the two newest blocks, not three.
    let limit = wal + block_bytes[2] + block_bytes[3] + block_bytes[1] / 2;
    let db = Db::open(dir.path(), manual().retention_ms(0).retention_bytes(limit)).unwrap();
    assert_eq!(db.apply_retention().unwrap(), 2);
    assert_eq!(
        ranges(&db).iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![4, 6]
    );
}

fn du(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                du(&e.path())
            } else {
                m.len()
            }
        })
        .sum()
}

/// A damaged block is reported with its ULID and what failed, left in place, and excluded; the
/// rest of the data stays queryable.
#[test]
fn a_damaged_block_is_reported_left_in_place_and_the_rest_is_queryable() {
    let dir = tempfile::tempdir().unwrap();
    let before;
    let damaged;
    {
        let db = Db::open(dir.path(), manual()).unwrap();
        fill_hours(&db, 7, 5);
        db.compact_head().unwrap();
        assert_eq!(db.blocks().len(), 2);
        damaged = db.blocks()[0].dir().to_path_buf();
        before = all(&db);
    }
    let index = damaged.join("index");
    let mut bytes = std::fs::read(&index).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 0xff; // inside the TOC: its CRC fails
    std::fs::write(&index, &bytes).unwrap();
    let ulid = damaged.file_name().unwrap().to_string_lossy().into_owned();

    let db = Db::open(dir.path(), manual()).unwrap();
    let warnings = &db.open_report().warnings;
    assert!(
        warnings
            .iter()
            .any(|w| w.contains(&ulid) && w.contains("left in place")),
        "{warnings:?}"
    );
    assert_eq!(db.blocks().len(), 1);
    assert!(damaged.join("meta.json").exists(), "never deleted");
    let after = all(&db);
    let want: Model = before
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.iter().filter(|s| s.0 >= 2 * HOUR).copied().collect(),
            )
        })
        .collect();
    assert_eq!(after, want);
    // Compaction neither touches nor deletes it.
    db.compact(&mut |_| {}).unwrap();
    assert!(damaged.join("meta.json").exists());
}

/// `clean_tombstones` rewrites blocks with deletions without the deleted samples.
#[test]
fn clean_tombstones_rewrites_blocks_without_deleted_data() {
    let dir = tempfile::tempdir().unwrap();
    let before;
    let bdir;
    {
        let db = Db::open(dir.path(), manual()).unwrap();
        fill_hours(&db, 7, 5);
        db.compact_head().unwrap();
        before = all(&db);
        bdir = db.blocks()[0].dir().to_path_buf();
    }
    // Series 1 of the first block loses [0, 1h].
    let b = tsdb::block::Block::open(&bdir).unwrap();
    let refs = b
        .series_refs(&[Matcher::new(MatchType::Equal, "i", "1").unwrap()])
        .unwrap();
    let mut t = tsdb::block::Tombstones::new();
    t.add(
        refs[0],
        tsdb::block::Interval {
            mint: 0,
            maxt: HOUR,
        },
    );
    std::fs::write(bdir.join("tombstones"), t.encode()).unwrap();
    drop(b);

    let db = Db::open(dir.path(), manual()).unwrap();
    let mut want = before.clone();
    let key = want.keys().find(|k| k.contains("i=\"1\"")).unwrap().clone();
    want.get_mut(&key).unwrap().retain(|s| s.0 > HOUR);
    assert_eq!(all(&db), want, "tombstones hide the samples");
    let old_meta = db.blocks()[0].meta().clone();
    let cleaned = db.clean_tombstones(&mut |_| {}).unwrap();
    assert_eq!(cleaned.len(), 1);
    // meta.json as Prometheus' CleanTombstones writes it: level 1, its own source, the old block
    // as parent.
    let (old, new) = (cleaned[0].0, cleaned[0].1.unwrap());
    assert_eq!(old, old_meta.ulid);
    let meta = db
        .blocks()
        .iter()
        .find(|b| b.meta().ulid == new)
        .unwrap()
        .meta()
        .clone();
    assert_eq!(meta.compaction.level, 1);
    assert_eq!(meta.compaction.sources, vec![new]);
    assert_eq!(meta.compaction.parents.len(), 1);
    assert_eq!(
        (
            meta.compaction.parents[0].ulid,
            meta.compaction.parents[0].min_time,
            meta.compaction.parents[0].max_time
        ),
        (old, old_meta.min_time, old_meta.max_time)
    );
    assert!(db.blocks().iter().all(|b| b.tombstones().is_empty()));
    assert!(!bdir.exists());
    assert_eq!(all(&db), want);
    drop(db);
    let db = Db::open(dir.path(), manual()).unwrap();
    assert_eq!(all(&db), want);
}

/// `flush_head` writes every range the head touches, however recent; the head is left empty and
/// every sample is still there, once, also after a restart.
#[test]
fn flush_head_writes_the_whole_head_into_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let before;
    {
        let db = Db::open(dir.path(), manual()).unwrap();
        fill_hours(&db, 3, 10);
        before = all(&db);
        assert!(
            db.compact_head().unwrap().is_empty(),
            "3 h: nothing due yet"
        );
        let written = db.flush_head().unwrap();
        assert_eq!(written.len(), 2);
        assert_eq!(ranges(&db), vec![(0, 2, 1), (2, 4, 1)]);
        assert_eq!(db.head().num_series(), 0);
        assert_eq!(all(&db), before);
    }
    let db = Db::open(dir.path(), manual()).unwrap();
    assert_eq!(all(&db), before);
}

/// Two blocks holding interleaved samples of one series (a backfill before compaction merged it)
/// read as one time-ordered series, in queries and in PromQL, before and after compaction.
#[test]
fn interleaved_overlapping_blocks_read_in_time_order_before_compaction() {
    use std::sync::Arc;
    use tsdb::chunk::XorAppender;
    use tsdb::querier::ChunkMeta;
    let dir = tempfile::tempdir().unwrap();
    let l = Labels::from_pairs(&[("__name__", "m"), ("i", "0")]);
    let block = |offset: i64| {
        let mut app = XorAppender::new();
        let ts: Vec<i64> = (0..100).map(|k| k * 30_000 + offset).collect();
        for &t in &ts {
            app.append(t, t as f64);
        }
        let c = ChunkMeta {
            min_t: ts[0],
            max_t: ts[99],
            data: Arc::from(app.into_bytes()),
        };
        tsdb::block::write_block(
            dir.path(),
            0,
            2 * HOUR,
            std::iter::once((l.clone(), vec![c])),
        )
        .unwrap();
    };
    block(0);
    block(15_000);
    let want: Vec<(i64, u64)> = (0..200)
        .map(|k| (k * 15_000, ((k * 15_000) as f64).to_bits()))
        .collect();
    let db = Db::open(dir.path(), manual()).unwrap();
    assert_eq!(db.blocks().len(), 2);
    assert_eq!(all(&db).into_values().next().unwrap(), want);
    let v = db.query("count_over_time(m[1h])", 3_600_000).unwrap();
    let tsdb::promql::Value::Vector(s) = v else {
        panic!("{v:?}")
    };
    assert_eq!(s[0].v, 199.0); // (0, 1h]: left-open, so the sample at 0 is out
    db.compact(&mut |_| {}).unwrap();
    assert_eq!(db.blocks().len(), 1);
    assert_eq!(all(&db).into_values().next().unwrap(), want);
}
