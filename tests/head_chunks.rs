//! Memory-mapped head chunks through the public API: completed chunks leave memory for
//! `chunks_head/`, a restart maps them back and replays only the open chunks from the WAL, a torn
//! `chunks_head/` tail is rebuilt from the WAL, compaction reads mapped chunks into blocks and then
//! deletes the files, and appends, queries and chunk writes run concurrently.

use std::collections::BTreeMap;
use std::path::Path;
use tsdb::head::ChunkData;
use tsdb::labels::{Labels, Matcher};
use tsdb::{Db, Options};

type Samples = BTreeMap<String, Vec<(i64, u64)>>;

fn opts() -> Options {
    Options::default()
        .fsync(tsdb::FsyncPolicy::Never)
        .background_compaction(false)
}

fn labels(i: u64) -> Labels {
    Labels::from_pairs(&[("__name__", "hc"), ("i", &i.to_string())])
}

fn value(i: u64, k: i64) -> f64 {
    match (i + k as u64) % 7 {
        0 => f64::from_bits(0x7ff0_0000_0000_0002),
        1 => -(k as f64) * 0.25,
        _ => (i * 1000) as f64 + k as f64,
    }
}

/// `series` series, `steps` samples each at 15 s from `t0`, committed `per_commit` steps at a time.
fn ingest(db: &Db, series: u64, t0: i64, steps: std::ops::Range<i64>, per_commit: i64) {
    let mut k = steps.start;
    while k < steps.end {
        let mut app = db.appender();
        for kk in k..(k + per_commit).min(steps.end) {
            for i in 0..series {
                app.append(&labels(i), t0 + kk * 15_000, value(i, kk))
                    .unwrap();
            }
        }
        app.commit().unwrap();
        k += per_commit;
    }
}

fn all(db: &Db) -> Samples {
    db.querier(i64::MIN, i64::MAX)
        .select(&[Matcher::equal("__name__", "hc")])
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

/// (closed chunks on disk, closed chunks in memory, samples in open chunks).
fn chunk_census(db: &Db) -> (usize, usize, usize) {
    let (mut disk, mut mem, mut open) = (0, 0, 0);
    for s in db.head().all_series() {
        let c = s.lock();
        for cl in &c.closed {
            match cl.data {
                ChunkData::Disk(_) => disk += 1,
                ChunkData::Mem(_) => mem += 1,
            }
        }
        open += c.head.as_ref().map_or(0, |h| h.app.num_samples());
    }
    (disk, mem, open)
}

fn head_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("chunks_head"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn restart_maps_completed_chunks_and_replays_only_open_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (before, open_samples, closed) = {
        let db = Db::open(dir.path(), opts()).unwrap();
        // 500 steps: four completed chunks a series and an open one; commits of 50 steps cut
        // chunks inside staged transactions too.
        ingest(&db, 30, 0, 0..500, 50);
        let (disk, mem, open) = chunk_census(&db);
        assert_eq!(mem, 0, "every completed chunk is written out");
        assert!(disk >= 30 * 3, "{disk} chunks on disk");
        let m = db.head().memory_stats();
        assert_eq!(m.mapped_chunks as usize, disk);
        assert_eq!(m.samples, 30 * 500);
        (all(&db), open, disk)
    };
    assert_eq!(head_files(dir.path()), vec!["000001"]);
    let db = Db::open(dir.path(), opts()).unwrap();
    let r = db.open_report();
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert_eq!(r.mapped_chunks as usize, closed);
    assert_eq!(r.mapped_chunks_dropped, 0);
    // Only the open chunks' samples were re-encoded; the rest were skipped as mapped.
    assert_eq!(r.replayed_samples as usize, open_samples);
    assert_eq!(r.replay_in_mapped_chunks as usize, 30 * 500 - open_samples);
    assert_eq!(all(&db), before);
    assert_eq!(db.head().memory_stats().samples, 30 * 500);
    // Appending continues the series as before; a second restart sees both.
    ingest(&db, 30, 0, 500..700, 100);
    let both = all(&db);
    drop(db);
    let db = Db::open(dir.path(), opts()).unwrap();
    assert_eq!(all(&db), both);
    assert_eq!(head_files(dir.path()), vec!["000001", "000002"]);
}

#[test]
fn a_torn_chunks_head_tail_is_rebuilt_from_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let db = Db::open(dir.path(), opts()).unwrap();
        ingest(&db, 10, 0, 0..400, 400);
        all(&db)
    };
    let f = dir.path().join("chunks_head/000001");
    let len = std::fs::metadata(&f).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&f)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    let r = db.open_report();
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert!(r.warnings[0].contains("chunks_head/000001"));
    assert!(r.replayed_samples > 0);
    assert_eq!(all(&db), before);
    drop(db);
    let db = Db::open(dir.path(), opts()).unwrap();
    assert!(db.open_report().warnings.is_empty());
    assert_eq!(all(&db), before);
}

#[test]
fn compaction_reads_mapped_chunks_and_deletes_their_files() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    // 5 h at 15 s: the first 2 h range becomes a block.
    ingest(&db, 20, 0, 0..1200, 200);
    let before = all(&db);
    let written = db.compact_head().unwrap();
    assert!(!written.is_empty());
    assert_eq!(all(&db), before);
    // Chunks of the compacted range are gone from the head and, as far as whole files allow,
    // from chunks_head/; what remains still reads back after a restart.
    let files_after = head_files(dir.path());
    drop(db);
    let db = Db::open(dir.path(), opts()).unwrap();
    assert!(
        db.open_report().warnings.is_empty(),
        "{:?}",
        db.open_report().warnings
    );
    assert_eq!(all(&db), before);
    assert!(!files_after.is_empty());
    // A second compaction deletes the file the first one finished.
    ingest(&db, 20, 0, 1200..1700, 250);
    db.compact_head().unwrap();
    assert!(!head_files(dir.path()).contains(&"000001".to_string()));
    let want = all(&db);
    drop(db);
    let db = Db::open(dir.path(), opts()).unwrap();
    assert_eq!(all(&db), want);
}

#[test]
fn queries_read_mapped_chunks_while_appends_write_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| ingest(&db, 50, 0, 0..1000, 10));
        s.spawn(|| {
            for _ in 0..200 {
                let got = all(&db);
                for (_, samples) in got {
                    // Every series reads back as a gapless prefix of its samples.
                    for (k, (t, _)) in samples.iter().enumerate() {
                        assert_eq!(*t, k as i64 * 15_000);
                    }
                }
            }
        });
    });
    let (disk, mem, _) = chunk_census(&db);
    assert!(disk > 0 && mem == 0);
    assert_eq!(db.head().chunk_disk_errors().0, 0);
}
