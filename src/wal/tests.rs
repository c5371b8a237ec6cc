//! Unit tests of the WAL writer, reader and recovery.

use super::record::{self, RefSample};
use super::*;
use proptest::prelude::*;
use std::fs;

fn read_all(dir: &Path) -> Result<Vec<Vec<u8>>, WalError> {
    let mut r = WalReader::open(dir)?;
    let mut out = Vec::new();
    while let Some(rec) = r.next_record()? {
        out.push(rec.to_vec());
    }
    Ok(out)
}

/// A record of `len` bytes that compresses somewhat (a samples-like type byte and a pattern).
fn rec(seed: u8, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    v.push(record::TYPE_SAMPLES);
    let mut x = u32::from(seed).wrapping_mul(2_654_435_761).wrapping_add(1);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        // Half pattern, half noise: compressible but not trivially.
        v.push(if v.len() % 2 == 0 { seed } else { x as u8 });
    }
    v.truncate(len);
    v
}

fn opts(seg_pages: usize, c: Compression) -> WalOptions {
    WalOptions::default()
        .segment_size(seg_pages * PAGE_SIZE)
        .compression(c)
}

fn seg_lens(dir: &Path) -> Vec<(u64, u64)> {
    segments(dir)
        .unwrap()
        .into_iter()
        .map(|s| (s, fs::metadata(segment_path(dir, s)).unwrap().len()))
        .collect()
}

#[test]
fn round_trip_each_compression() {
    for c in [Compression::None, Compression::Snappy, Compression::Zstd] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wal");
        let mut w = Wal::open(&dir, opts(8, c)).unwrap();
        let mut want = Vec::new();
        let sizes = [
            1,
            2,
            100,
            PAGE_SIZE - 7,
            PAGE_SIZE,
            3 * PAGE_SIZE + 5,
            17,
            60_000,
        ];
        for (i, &n) in sizes.iter().enumerate() {
            let a = rec(i as u8, n);
            let b = rec(i as u8 + 100, n / 2 + 1);
            w.log_commit(&[&a, &b]).unwrap();
            want.push(a);
            want.push(b);
        }
        // Records that look like our markers are still data to the caller... but decode as
        // no-ops everywhere, so the reader drops them; an empty commit logs only its marker.
        w.log_commit(&[]).unwrap();
        w.sync().unwrap();
        drop(w);
        assert_eq!(read_all(&dir).unwrap(), want, "{c:?}");
        assert_eq!(recover(&dir).unwrap(), RecoverReport::default(), "{c:?}");
    }
}

#[test]
fn compression_flags_on_every_fragment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut w = Wal::open(&dir, opts(8, Compression::Snappy)).unwrap();
    // Compresses to a multi-page record: every fragment carries the snappy flag.
    let big: Vec<u8> = (0..20_000u32)
        .flat_map(|i| format!("series_{} value {}\n", i % 977, i * 3).into_bytes())
        .collect();
    assert!(snap::raw::Encoder::new().compress_vec(&big).unwrap().len() > 2 * PAGE_SIZE);
    w.log_commit(&[&big]).unwrap();
    drop(w);
    let bytes = fs::read(segment_path(&dir, 0)).unwrap();
    // Header fragment at 0, then the record's first fragment at 8.
    assert_eq!(bytes[8], FRAG_FIRST | FLAG_SNAPPY);
    assert_eq!(bytes[PAGE_SIZE], FRAG_MIDDLE | FLAG_SNAPPY);
    assert_eq!(read_all(&dir).unwrap(), vec![big]);
}

#[test]
fn records_near_and_above_segment_size() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut w = Wal::open(&dir, opts(2, Compression::None)).unwrap();
    // Room in a fresh 2-page segment after its header: page 1 minus header and one fragment
    // header, plus page 2 minus one fragment header.
    let room = (PAGE_SIZE - 8 - HEADER_SIZE) + (PAGE_SIZE - HEADER_SIZE);
    let exact = rec(1, room);
    let over = rec(2, room + 1);
    let huge = rec(3, 5 * PAGE_SIZE);
    let small = rec(4, 10);
    w.log_commit(&[&exact]).unwrap();
    w.log_commit(&[&small, &over, &huge]).unwrap();
    drop(w);
    assert_eq!(read_all(&dir).unwrap(), vec![exact, small, over, huge]);
    let lens = seg_lens(&dir);
    // seg 0: header + `exact` fill it exactly; the marker rolls to seg 1, followed by `small`;
    // `over` does not fit in the rest: seg 2; `huge` gets its own, oversized segment 3, whose
    // commit marker then rolls to segment 4.
    assert_eq!(lens.len(), 5, "{lens:?}");
    assert_eq!(lens[0].1, 2 * PAGE_SIZE as u64);
    assert!(lens[3].1 > 2 * PAGE_SIZE as u64);
    for &(s, _) in &lens {
        let b = fs::read(segment_path(&dir, s)).unwrap();
        let mut header = vec![FRAG_FULL, 0, 1];
        header.extend_from_slice(&crc32c::crc32c(SEGMENT_HEADER).to_be_bytes());
        header.extend_from_slice(SEGMENT_HEADER);
        assert_eq!(&b[..8], &header[..], "segment {s} starts with the header");
    }
    for &(_, len) in &lens[..lens.len() - 1] {
        assert_eq!(
            len % PAGE_SIZE as u64,
            0,
            "finished segments are page-aligned"
        );
    }
}

#[test]
fn rollover_many_commits_and_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut want = Vec::new();
    for round in 0..3u8 {
        assert_eq!(recover(&dir).unwrap(), RecoverReport::default());
        let mut w = Wal::open(&dir, opts(1, Compression::Snappy)).unwrap();
        for i in 0..40u8 {
            let a = rec(i.wrapping_add(round * 40), 1000 + usize::from(i) * 97);
            w.log_commit(&[&a]).unwrap();
            want.push(a);
        }
        drop(w);
    }
    let segs = segments(&dir).unwrap();
    assert!(segs.len() > 6, "{segs:?}");
    assert_eq!(read_all(&dir).unwrap(), want);
    let mut r = WalReader::open(&dir).unwrap();
    while r.next_record().unwrap().is_some() {}
    let last = *segs.last().unwrap();
    // The last record returned is followed only by its commit marker (one 8-byte fragment).
    assert_eq!(
        r.position(),
        (
            last,
            fs::metadata(segment_path(&dir, last)).unwrap().len() - 8
        )
    );
}

/// Builds a WAL of commits; returns the commits' records and the global byte position (over
/// the concatenated segment files) after each commit.
fn build(dir: &Path, o: WalOptions, commits: &[Vec<Vec<u8>>]) -> Vec<u64> {
    let mut w = Wal::open(dir, o).unwrap();
    let mut ends = Vec::new();
    for c in commits {
        let refs: Vec<&[u8]> = c.iter().map(|r| r.as_slice()).collect();
        w.log_commit(&refs).unwrap();
        ends.push(seg_lens(dir).iter().map(|x| x.1).sum());
    }
    ends
}

/// Writes the WAL image `segs` cut at global position `cut` into `dir` (fresh).
fn write_cut(dir: &Path, segs: &[(u64, Vec<u8>)], cut: u64) {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).unwrap();
    let mut left = cut;
    for (s, bytes) in segs {
        let n = (bytes.len() as u64).min(left);
        fs::write(segment_path(dir, *s), &bytes[..n as usize]).unwrap();
        left -= n;
        if left == 0 {
            break;
        }
    }
}

/// Cuts the WAL at every byte of its last commit; returns the commit ends and segment count.
fn torn_tail_at_every_offset(o: WalOptions, commits: Vec<Vec<Vec<u8>>>) -> (Vec<u64>, usize) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let ends = build(&src, o, &commits);
    let image: Vec<(u64, Vec<u8>)> = segments(&src)
        .unwrap()
        .into_iter()
        .map(|s| (s, fs::read(segment_path(&src, s)).unwrap()))
        .collect();
    let total: u64 = image.iter().map(|x| x.1.len() as u64).sum();
    let n = commits.len();
    let from = ends[n - 2];
    let dir = tmp.path().join("cut");
    for cut in from..=total {
        write_cut(&dir, &image, cut);
        let report = recover(&dir).unwrap();
        let complete = ends.iter().filter(|&&e| e <= cut).count();
        let want: Vec<Vec<u8>> = commits[..complete].iter().flatten().cloned().collect();
        let got = read_all(&dir).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        assert!(
            got == want,
            "cut {cut}: {} records, want {}",
            got.len(),
            want.len()
        );
        let after: u64 = seg_lens(&dir).iter().map(|x| x.1).sum();
        let keep = ends[complete - 1];
        match report.truncated {
            None => assert_eq!(after, cut, "cut {cut}: untouched"),
            Some(t) => {
                assert_eq!(after, keep, "cut {cut}: {t:?}");
                assert_eq!(t.bytes_dropped, cut - keep, "cut {cut}: {t:?}");
            }
        }
        // Idempotent, and the WAL can be appended to afterwards.
        assert_eq!(
            recover(&dir).unwrap(),
            RecoverReport::default(),
            "cut {cut}"
        );
    }
    (ends, image.len())
}

#[test]
fn torn_tail_across_a_page() {
    // The first commits end 300 bytes before a page end; the last commit straddles it.
    let first = vec![rec(1, PAGE_SIZE - 8 - 2 * HEADER_SIZE - 1 - 300 - 8)];
    let second = vec![rec(2, 20)];
    let last = vec![rec(3, 150), rec(4, 400), rec(5, 30)];
    let (ends, _) =
        torn_tail_at_every_offset(opts(4, Compression::None), vec![first, second, last]);
    assert!(
        ends[1] < PAGE_SIZE as u64 && ends[2] > PAGE_SIZE as u64,
        "{ends:?}"
    );
}

#[test]
fn torn_tail_across_segments() {
    // One-page segments: the last commit's records fill the end of segment 0 and spill into
    // segment 1 (behind its header), so recovery searches back across the segment boundary.
    // Segment 0 has 1500 bytes left after the first commit.
    let first = vec![rec(1, PAGE_SIZE - 8 - HEADER_SIZE - 8 - 1500)];
    let second = vec![rec(2, 30)];
    let last = vec![rec(3, 800), rec(4, 2_000), rec(5, 40)];
    let (ends, segs) =
        torn_tail_at_every_offset(opts(1, Compression::None), vec![first, second, last]);
    assert_eq!(segs, 2);
    assert!(ends[1] < PAGE_SIZE as u64, "{ends:?}");
}

#[test]
fn torn_tail_with_zstd_multi_fragment_record() {
    // Compressed, the first commit ends shortly before the first page does.
    let first = vec![rec(1, 48_000)];
    let second = vec![rec(2, 100)];
    let last = vec![rec(3, 6_000)];
    let (ends, _) =
        torn_tail_at_every_offset(opts(2, Compression::Zstd), vec![first, second, last]);
    assert!(
        ends[1] < PAGE_SIZE as u64 && ends[2] > PAGE_SIZE as u64,
        "{ends:?}"
    );
}

#[test]
fn flipped_byte_in_earlier_segment_is_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut w = Wal::open(&dir, opts(1, Compression::None)).unwrap();
    for i in 0..8 {
        w.log_commit(&[&rec(i, 12_000)]).unwrap();
    }
    drop(w);
    assert!(segments(&dir).unwrap().len() >= 4);
    // Segment 1: header at 0, then the first fragment of a record at 8; flip a data byte.
    let p = segment_path(&dir, 1);
    let mut b = fs::read(&p).unwrap();
    b[8 + HEADER_SIZE + 100] ^= 0x40;
    fs::write(&p, &b).unwrap();
    assert_eq!(recover(&dir).unwrap(), RecoverReport::default());
    assert_eq!(
        fs::read(&p).unwrap(),
        b,
        "recover leaves earlier damage alone"
    );
    match read_all(&dir) {
        Err(WalError::Corruption {
            segment, offset, ..
        }) => assert_eq!((segment, offset), (1, 8)),
        other => panic!("want corruption, got {other:?}"),
    }
}

#[test]
fn damage_in_segment_recover_must_search_is_reported() {
    // The last segment holds an unfinished commit, and the segment before it is damaged:
    // recover cannot find the commit point without trusting damaged bytes.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut w = Wal::open(&dir, opts(1, Compression::None)).unwrap();
    w.log_commit(&[&rec(1, 20_000)]).unwrap();
    drop(w);
    let p0 = segment_path(&dir, 0);
    let mut b = fs::read(&p0).unwrap();
    b[100] ^= 1;
    fs::write(&p0, &b).unwrap();
    // Segment 1: our header, then a record without a commit marker.
    let mut seg1 = Vec::new();
    put_raw(&mut seg1, SEGMENT_HEADER, 0);
    put_raw(&mut seg1, &rec(2, 50), 0);
    fs::write(segment_path(&dir, 1), &seg1).unwrap();
    match recover(&dir) {
        Err(WalError::Corruption {
            segment, offset, ..
        }) => assert_eq!((segment, offset), (0, 8)),
        other => panic!("want corruption, got {other:?}"),
    }
}

/// Appends `data` as one full fragment (test helper for hand-made segments; fits in a page).
fn put_raw(out: &mut Vec<u8>, data: &[u8], flags: u8) {
    out.push(FRAG_FULL | flags);
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(data).to_be_bytes());
    out.extend_from_slice(data);
}

#[test]
fn prometheus_style_segment_commits_every_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    fs::create_dir_all(&dir).unwrap();
    let recs: Vec<Vec<u8>> = (0..5).map(|i| rec(i, 200 + usize::from(i))).collect();
    let mut seg = Vec::new();
    for r in &recs[..3] {
        put_raw(&mut seg, r, 0);
    }
    // Prometheus pads a page on segment switch or when full: a pad byte and zeros to the end.
    seg.resize(PAGE_SIZE, 0);
    for r in &recs[3..] {
        put_raw(&mut seg, r, 0);
    }
    let good = seg.len();
    fs::write(segment_path(&dir, 0), &seg).unwrap();
    assert_eq!(read_all(&dir).unwrap(), recs);
    assert_eq!(recover(&dir).unwrap(), RecoverReport::default());

    // Torn in the middle of the last record: only that record goes.
    let torn = good - 50;
    fs::write(segment_path(&dir, 0), &seg[..torn]).unwrap();
    let report = recover(&dir).unwrap();
    let keep = good - (HEADER_SIZE + recs[4].len());
    assert_eq!(
        report.truncated,
        Some(Truncation {
            segment: 0,
            offset: keep as u64,
            bytes_dropped: (torn - keep) as u64
        })
    );
    assert_eq!(read_all(&dir).unwrap(), recs[..4].to_vec());

    // Our writer continues in a new segment with a header; both read back in order.
    let mut w = Wal::open(&dir, WalOptions::default()).unwrap();
    w.log_commit(&[&recs[4]]).unwrap();
    assert_eq!(w.segment(), 1);
    drop(w);
    assert_eq!(read_all(&dir).unwrap(), recs);
}

#[test]
fn snappy_record_from_prometheus_style_fragment() {
    // Prometheus compresses with golang/snappy's block format, which snap's raw format is.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    fs::create_dir_all(&dir).unwrap();
    let r = rec(9, 3000);
    let c = snap::raw::Encoder::new().compress_vec(&r).unwrap();
    let mut seg = Vec::new();
    put_raw(&mut seg, &c, FLAG_SNAPPY);
    fs::write(segment_path(&dir, 0), &seg).unwrap();
    assert_eq!(read_all(&dir).unwrap(), vec![r]);
}

#[test]
fn bad_padding_and_bad_sequencing_are_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    fs::create_dir_all(&dir).unwrap();
    let p = segment_path(&dir, 0);
    let mut seg = Vec::new();
    put_raw(&mut seg, &rec(1, 10), 0);
    let pad_at = seg.len();
    seg.resize(PAGE_SIZE, 0);
    seg[pad_at + 5] = 9;
    fs::write(&p, &seg).unwrap();
    assert!(matches!(
        read_all(&dir),
        Err(WalError::Corruption { segment: 0, offset, .. }) if offset == pad_at as u64 + 5
    ));

    // A last fragment with no first before it.
    let mut seg = Vec::new();
    put_raw(&mut seg, &rec(1, 10), 0);
    let at = seg.len();
    put_raw(&mut seg, &rec(2, 10), 0);
    seg[at] = FRAG_LAST;
    fs::write(&p, &seg).unwrap();
    assert!(matches!(
        read_all(&dir),
        Err(WalError::Corruption { segment: 0, offset, .. }) if offset == at as u64
    ));
}

#[test]
fn gap_in_segments_is_an_error_and_checkpoints_are_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    fs::create_dir_all(dir.join("checkpoint.000003")).unwrap();
    fs::write(dir.join("00000002"), b"").unwrap();
    fs::write(dir.join("00000004"), b"").unwrap();
    fs::write(dir.join("junk.tmp"), b"").unwrap();
    assert_eq!(segments(&dir).unwrap(), vec![2, 4]);
    assert!(matches!(
        WalReader::open(&dir),
        Err(WalError::SegmentGap {
            before: 2,
            after: 4,
            ..
        })
    ));
    let w = Wal::open(&dir, WalOptions::default()).unwrap();
    assert_eq!(w.segment(), 5);
    assert!(matches!(
        Wal::open(&dir, WalOptions::default().segment_size(1000)),
        Err(WalError::InvalidSegmentSize(1000))
    ));
}

#[test]
fn samples_records_survive_bit_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut w = Wal::open(&dir, opts(4, Compression::Snappy)).unwrap();
    let samples: Vec<RefSample> = (0..5000)
        .map(|i| RefSample {
            series: i % 7,
            t: 1_700_000_000_000 + i as i64 * 15_000,
            v: if i % 100 == 0 {
                f64::from_bits(0x7ff0000000000002)
            } else {
                i as f64 * 0.25
            },
        })
        .collect();
    let mut r = Vec::new();
    record::encode_samples(&samples, &mut r);
    w.log_commit(&[&r]).unwrap();
    drop(w);
    let recs = read_all(&dir).unwrap();
    let mut back = Vec::new();
    record::decode_samples(&recs[0], &mut back).unwrap();
    assert_eq!(back.len(), samples.len());
    for (a, b) in back.iter().zip(&samples) {
        assert_eq!(
            (a.series, a.t, a.v.to_bits()),
            (b.series, b.t, b.v.to_bits())
        );
    }
}

fn valid_segment(records: &[Vec<u8>], c: Compression) -> Vec<u8> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut w = Wal::open(&dir, opts(4, c)).unwrap();
    for r in records {
        w.log_commit(&[r]).unwrap();
    }
    drop(w);
    fs::read(segment_path(&dir, 0)).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn fuzz_read_segment_random(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
        fuzz_read_segment(&data);
    }

    #[test]
    fn fuzz_read_segment_mutated(
        sizes in proptest::collection::vec(1usize..40_000, 1..4),
        zstd in any::<bool>(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in any::<usize>(),
    ) {
        let recs: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, &n)| rec(i as u8, n)).collect();
        let c = if zstd { Compression::Zstd } else { Compression::Snappy };
        let mut seg = valid_segment(&recs, c);
        for (i, b) in flips {
            let n = seg.len();
            seg[i % n] ^= b;
        }
        let n = seg.len();
        seg.truncate(cut % (n + 1));
        fuzz_read_segment(&seg);
    }
}
