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
