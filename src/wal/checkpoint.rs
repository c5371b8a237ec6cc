//! WAL checkpoints, as Prometheus writes them (`tsdb/wlog/checkpoint.go`, format in
//! `tsdb/docs/format/wal.md`): `wal/checkpoint.NNNNNNNN/` is an ordinary segment directory holding what
//! is still needed from segments up to `NNNNNNNN` — the series records of series still in the head,
//! and samples and tombstones at or after the head's new minimum time. Replay reads the latest
//! checkpoint, then the segments after it; once a checkpoint is in place the segments it covers are
//! deleted.
//!
//! Crash safety: a checkpoint is built in `checkpoint.NNNNNNNN.tmp`, fsynced, then renamed; a
//! leftover `.tmp` is garbage and removed. Segments are deleted only after the rename, so at every
//! moment either the old segments or the new checkpoint (or both, which replay handles by starting
//! after the checkpoint) hold the data.

use super::record::{self, RecordType, RefSample, Stone};
use super::{io_err, segments, Compression, Wal, WalError, WalOptions, WalReader};
use std::path::{Path, PathBuf};

const PREFIX: &str = "checkpoint.";
const TMP_SUFFIX: &str = ".tmp";

/// Records of a checkpoint are written in commits of about this many bytes.
const BATCH_BYTES: usize = 1 << 20;

/// The latest complete checkpoint in `wal_dir`: its directory and the last segment it covers.
pub fn last_checkpoint(wal_dir: &Path) -> Result<Option<(PathBuf, u64)>, WalError> {
    Ok(checkpoints(wal_dir)?.pop())
}

/// Complete checkpoints, oldest first.
fn checkpoints(wal_dir: &Path) -> Result<Vec<(PathBuf, u64)>, WalError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(wal_dir).map_err(|e| io_err(wal_dir, e))? {
        let entry = entry.map_err(|e| io_err(wal_dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(idx) = name.strip_prefix(PREFIX) else {
            continue;
        };
        if idx.is_empty() || !idx.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(idx) = idx.parse::<u64>() {
            out.push((entry.path(), idx));
        }
    }
    out.sort_by_key(|c| c.1);
    Ok(out)
}

/// Removes leftovers of checkpoints interrupted by a crash.
pub fn remove_temporary_checkpoints(wal_dir: &Path) -> Result<(), WalError> {
    for entry in std::fs::read_dir(wal_dir).map_err(|e| io_err(wal_dir, e))? {
        let entry = entry.map_err(|e| io_err(wal_dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(PREFIX) && name.ends_with(TMP_SUFFIX) {
            std::fs::remove_dir_all(entry.path()).map_err(|e| io_err(&entry.path(), e))?;
        }
    }
    Ok(())
}

/// What a checkpoint kept and dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    pub series_kept: u64,
    pub series_dropped: u64,
    pub samples_kept: u64,
    pub samples_dropped: u64,
    /// Deletion intervals (tombstones record entries) kept and dropped.
    pub tombstones_kept: u64,
    pub tombstones_dropped: u64,
}

/// Writes `checkpoint.{to}` from the previous checkpoint (if any) and segments `..= to` of
/// `wal_dir`, keeping series for which `keep(id)` holds, their samples at or after `mint`, and
/// their deletion intervals that reach `mint` (Prometheus keeps intervals with `maxt >= mint`;
/// it does not check the series, whose intervals replay then drops as unknown). Does not delete
/// anything: see [`truncate`].
pub fn checkpoint(
    wal_dir: &Path,
    to: u64,
    keep: &dyn Fn(u64) -> bool,
    mint: i64,
    compression: Compression,
) -> Result<CheckpointStats, WalError> {
    remove_temporary_checkpoints(wal_dir)?;
    let final_dir = wal_dir.join(format!("{PREFIX}{to:08}"));
    let tmp_dir = wal_dir.join(format!("{PREFIX}{to:08}{TMP_SUFFIX}"));
    std::fs::create_dir_all(&tmp_dir).map_err(|e| io_err(&tmp_dir, e))?;
    let mut out = Wal::open(
        &tmp_dir,
        WalOptions {
            compression,
            ..WalOptions::default()
        },
    )?;
    let mut stats = CheckpointStats::default();
    let mut batch: Vec<Vec<u8>> = Vec::new();
    let mut batch_bytes = 0usize;
    let flush = |out: &mut Wal, batch: &mut Vec<Vec<u8>>, bytes: &mut usize| {
        if batch.is_empty() {
            return Ok(());
        }
        let refs: Vec<&[u8]> = batch.iter().map(|r| r.as_slice()).collect();
        out.log_commit(&refs)?;
        batch.clear();
        *bytes = 0;
        Ok::<(), WalError>(())
    };

    let previous = last_checkpoint(wal_dir)?.filter(|c| c.1 < to);
    let mut sources: Vec<(PathBuf, Option<u64>)> = Vec::new();
    if let Some((dir, _)) = &previous {
        sources.push((dir.clone(), None));
    }
    sources.push((wal_dir.to_path_buf(), previous.map(|c| c.1 + 1)));

    let mut series = Vec::new();
    let mut samples = Vec::new();
    let mut stones = Vec::new();
    for (dir, from) in sources {
        let mut reader = WalReader::open_from(&dir, from.unwrap_or(0), Some(to))?;
        while let Some(rec) = reader.next_record()? {
            let mut kept = Vec::new();
            let filtered = filter_record(
                rec,
                Bufs {
                    series: &mut series,
                    samples: &mut samples,
                    stones: &mut stones,
                },
                keep,
                mint,
                &mut stats,
                &mut kept,
            );
            if let Err(e) = filtered {
                let (segment, offset) = reader.position();
                return Err(WalError::Corruption {
                    segment,
                    offset,
                    reason: e.to_string(),
                });
            }
            if !kept.is_empty() {
                batch_bytes += kept.len();
                batch.push(kept);
                if batch_bytes >= BATCH_BYTES {
                    flush(&mut out, &mut batch, &mut batch_bytes)?;
                }
            }
        }
    }
    flush(&mut out, &mut batch, &mut batch_bytes)?;
    out.sync()?;
    drop(out);
    std::fs::rename(&tmp_dir, &final_dir).map_err(|e| io_err(&final_dir, e))?;
    sync_dir(wal_dir)?;
    Ok(stats)
}

struct Bufs<'a> {
    series: &'a mut Vec<(u64, crate::labels::Labels)>,
    samples: &'a mut Vec<RefSample>,
    stones: &'a mut Vec<Stone>,
}

/// The part of one record a checkpoint keeps, encoded into `kept` (left empty if nothing).
fn filter_record(
    rec: &[u8],
    b: Bufs<'_>,
    keep: &dyn Fn(u64) -> bool,
    mint: i64,
    stats: &mut CheckpointStats,
    kept: &mut Vec<u8>,
) -> Result<(), record::RecordError> {
    match record::record_type(rec) {
        RecordType::Series => {
            b.series.clear();
            record::decode_series(rec, b.series)?;
            let before = b.series.len();
            b.series.retain(|(id, _)| keep(*id));
            stats.series_kept += b.series.len() as u64;
            stats.series_dropped += (before - b.series.len()) as u64;
            if !b.series.is_empty() {
                record::encode_series_header(kept);
                for (id, labels) in b.series.iter() {
                    record::encode_series_entry(
                        kept,
                        *id,
                        labels.iter().map(|l| (l.name.as_str(), l.value.as_str())),
                    );
                }
            }
        }
        RecordType::Samples => {
            b.samples.clear();
            record::decode_samples(rec, b.samples)?;
            let before = b.samples.len();
            b.samples.retain(|s| s.t >= mint && keep(s.series));
            stats.samples_kept += b.samples.len() as u64;
            stats.samples_dropped += (before - b.samples.len()) as u64;
            if !b.samples.is_empty() {
                record::encode_samples(b.samples, kept);
            }
        }
        RecordType::Tombstones => {
            b.stones.clear();
            record::decode_tombstones(rec, b.stones)?;
            let before = b.stones.len();
            b.stones.retain(|s| s.maxt >= mint && keep(s.series));
            stats.tombstones_kept += b.stones.len() as u64;
            stats.tombstones_dropped += (before - b.stones.len()) as u64;
            if !b.stones.is_empty() {
                record::encode_tombstones(b.stones, kept);
            }
        }
        // Exemplars, metadata and histograms are not kept by us yet (replay skips them).
        _ => {}
    }
    Ok(())
}

/// Deletes the segments a checkpoint `to` covers (`< to + 1`) and older checkpoints.
pub fn truncate(wal_dir: &Path, to: u64) -> Result<(), WalError> {
    for seg in segments(wal_dir)? {
        if seg <= to {
            let p = super::segment_path(wal_dir, seg);
            std::fs::remove_file(&p).map_err(|e| io_err(&p, e))?;
        }
    }
    for (dir, idx) in checkpoints(wal_dir)? {
        if idx < to {
            std::fs::remove_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        }
    }
    sync_dir(wal_dir)
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_err(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Labels;

    fn series_rec(ids: &[u64]) -> Vec<u8> {
        let mut r = Vec::new();
        record::encode_series_header(&mut r);
        for &id in ids {
            let l = Labels::from_pairs(&[("__name__", "m"), ("id", &id.to_string())]);
            record::encode_series_entry(
                &mut r,
                id,
                l.iter().map(|l| (l.name.as_str(), l.value.as_str())),
            );
        }
        r
    }

    fn samples_rec(s: &[(u64, i64)]) -> Vec<u8> {
        let v: Vec<RefSample> = s
            .iter()
            .map(|&(series, t)| RefSample {
                series,
                t,
                v: t as f64,
            })
            .collect();
        let mut r = Vec::new();
        record::encode_samples(&v, &mut r);
        r
    }

    fn read_all(dir: &Path, from: u64) -> (Vec<u64>, Vec<(u64, i64)>) {
        let mut r = WalReader::open_from(dir, from, None).unwrap();
        let (mut ids, mut smp) = (Vec::new(), Vec::new());
        while let Some(rec) = r.next_record().unwrap() {
            match record::record_type(rec) {
                RecordType::Series => {
                    let mut v = Vec::new();
                    record::decode_series(rec, &mut v).unwrap();
                    ids.extend(v.into_iter().map(|s| s.0));
                }
                RecordType::Samples => {
                    let mut v = Vec::new();
                    record::decode_samples(rec, &mut v).unwrap();
                    smp.extend(v.into_iter().map(|s| (s.series, s.t)));
                }
                _ => {}
            }
        }
        (ids, smp)
    }

    #[test]
    fn checkpoint_keeps_live_series_and_recent_samples_then_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path();
        {
            let mut w = Wal::open(wal, WalOptions::default().segment_size(64 * 1024)).unwrap();
            w.log_commit(&[
                &series_rec(&[1, 2, 3]),
                &samples_rec(&[(1, 10), (2, 10), (3, 10)]),
            ])
            .unwrap();
            w.log_commit(&[&samples_rec(&[(1, 20), (2, 20), (3, 20)])])
                .unwrap();
        }
        // A second writer session starts segment 1.
        {
            let mut w = Wal::open(wal, WalOptions::default()).unwrap();
            w.log_commit(&[&samples_rec(&[(1, 30), (3, 30)])]).unwrap();
        }
        let segs = segments(wal).unwrap();
        assert_eq!(segs, vec![0, 1]);
        let stats = checkpoint(wal, 0, &|id| id != 2, 20, Compression::None).unwrap();
        assert_eq!(stats.series_kept, 2);
        assert_eq!(stats.samples_kept, 2); // (1,20), (3,20)
        truncate(wal, 0).unwrap();
        assert_eq!(segments(wal).unwrap(), vec![1]);
        let (cp, idx) = last_checkpoint(wal).unwrap().unwrap();
        assert_eq!(idx, 0);
        assert_eq!(read_all(&cp, 0), (vec![1, 3], vec![(1, 20), (3, 20)]));
        assert_eq!(read_all(wal, idx + 1).1, vec![(1, 30), (3, 30)]);

        // A later checkpoint folds the previous one in.
        let stats = checkpoint(wal, 1, &|id| id == 3, 25, Compression::Snappy).unwrap();
        assert_eq!((stats.series_kept, stats.samples_kept), (1, 1));
        truncate(wal, 1).unwrap();
        let (cp, idx) = last_checkpoint(wal).unwrap().unwrap();
        assert_eq!(idx, 1);
        assert_eq!(read_all(&cp, 0), (vec![3], vec![(3, 30)]));
        assert_eq!(checkpoints(wal).unwrap().len(), 1);
    }

    fn stones_in(dir: &Path) -> Vec<Stone> {
        let mut r = WalReader::open(dir).unwrap();
        let mut out = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            if record::record_type(rec) == RecordType::Tombstones {
                record::decode_tombstones(rec, &mut out).unwrap();
            }
        }
        out
    }

    #[test]
    fn checkpoint_keeps_tombstones_of_live_series_reaching_mint() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path();
        let stone = |series, mint, maxt| Stone { series, mint, maxt };
        let stones = [
            stone(1, 0, 5),   // ends before mint: dropped
            stone(1, 5, 20),  // reaches mint: kept whole
            stone(2, 0, 100), // series gone: dropped
            stone(3, 30, 40), // kept
        ];
        let mut tomb = Vec::new();
        record::encode_tombstones(&stones, &mut tomb);
        let mut only_dropped = Vec::new();
        record::encode_tombstones(&[stone(2, 50, 60)], &mut only_dropped);
        {
            let mut w = Wal::open(wal, WalOptions::default()).unwrap();
            w.log_commit(&[&series_rec(&[1, 2, 3]), &samples_rec(&[(1, 10), (3, 30)])])
                .unwrap();
            w.log_commit(&[&tomb]).unwrap();
            w.log_commit(&[&only_dropped]).unwrap();
        }
        let stats = checkpoint(wal, 0, &|id| id != 2, 20, Compression::None).unwrap();
        assert_eq!((stats.tombstones_kept, stats.tombstones_dropped), (2, 3));
        let (cp, _) = last_checkpoint(wal).unwrap().unwrap();
        assert_eq!(stones_in(&cp), vec![stone(1, 5, 20), stone(3, 30, 40)]);
    }

    #[test]
    fn temporary_checkpoints_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("checkpoint.00000003.tmp")).unwrap();
        remove_temporary_checkpoints(dir.path()).unwrap();
        assert!(last_checkpoint(dir.path()).unwrap().is_none());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
