use super::*;
use crate::block::encoding::read_uvarint;
use crate::chunk::{NORMAL_NAN_BITS, STALE_NAN_BITS};
use proptest::prelude::*;

type Samples = Vec<(i64, f64)>;
/// Labels with chunks as (min_t, max_t, encoding, bytes).
type OwnedSeries = (Labels, Vec<(i64, i64, u8, Vec<u8>)>);

fn xor_chunks(samples: &[(i64, f64)], per_chunk: usize) -> Vec<(i64, i64, Vec<u8>)> {
    samples
        .chunks(per_chunk.max(1))
        .map(|s| {
            let mut a = XorAppender::new();
            for &(t, v) in s {
                a.append(t, v);
            }
            (s[0].0, s[s.len() - 1].0, a.into_bytes())
        })
        .collect()
}

fn labels(i: usize) -> Labels {
    Labels::from_pairs(&[
        (
            "__name__",
            if i.is_multiple_of(3) {
                "up"
            } else {
                "metric_total"
            },
        ),
        ("instance", &format!("host-{i:04}")),
        ("job", "node"),
    ])
}

/// Series as the block writer would hand them: sorted by labels, with owned chunk bytes.
fn series_of(data: &[(Samples, usize)]) -> Vec<OwnedSeries> {
    let mut v: Vec<_> = data
        .iter()
        .enumerate()
        .map(|(i, (s, per))| {
            let chunks = xor_chunks(s, *per)
                .into_iter()
                .map(|(lo, hi, b)| (lo, hi, ENCODING_XOR, b))
                .collect();
            (labels(i), chunks)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn borrowed(s: &[OwnedSeries]) -> Vec<(Labels, Vec<ChunkIn<'_>>)> {
    s.iter()
        .map(|(l, cs)| {
            let c = cs
                .iter()
                .map(|(lo, hi, e, d)| ChunkIn {
                    min_t: *lo,
                    max_t: *hi,
                    encoding: *e,
                    data: d,
                })
                .collect();
            (l.clone(), c)
        })
        .collect()
}

/// Encodes, decodes, and checks every chunk comes back byte-identical with its time range.
fn round_trip(s: &[OwnedSeries]) {
    let bytes = encode(&borrowed(s), 3).unwrap();
    let a = Archive::parse(Path::new("t"), &bytes, DecodeLimits::default()).unwrap();
    assert_eq!(a.num_series(), s.len());
    let mut i = 0;
    a.for_each_series(|l, chunks| -> Result<(), ArchiveError> {
        let (wl, wc) = &s[i];
        assert_eq!(l, wl);
        assert_eq!(chunks.len(), wc.len(), "{l}");
        for (got, want) in chunks.iter().zip(wc) {
            assert_eq!(
                (got.min_t, got.max_t, got.encoding),
                (want.0, want.1, want.2)
            );
            assert_eq!(got.data, &want.3[..], "{l}: chunk bytes differ");
            if got.encoding == ENCODING_XOR {
                let g: Vec<(i64, u64)> = XorIterator::new(got.data)
                    .unwrap()
                    .map(|x| x.map(|(t, v)| (t, v.to_bits())).unwrap())
                    .collect();
                let w: Vec<(i64, u64)> = XorIterator::new(&want.3)
                    .unwrap()
                    .map(|x| x.map(|(t, v)| (t, v.to_bits())).unwrap())
                    .collect();
                assert_eq!(g, w, "{l}: samples differ");
            }
        }
        i += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(i, s.len());
}

#[test]
fn decimals_are_exact() {
    for v in [0.1, 0.3, 63942.95, 1e-7, 123456789.123, 16e9, -2.5, 0.0] {
        let e = min_exponent(v).unwrap();
        let m = decimal_at(v, e).unwrap();
        assert_eq!(decimal_value(m, e).to_bits(), v.to_bits(), "{v}");
    }
    assert_eq!(min_exponent(0.1), Some(1));
    assert_eq!(min_exponent(42.0), Some(0));
    // 16 digits still fit a 53-bit mantissa.
    assert_eq!(min_exponent(std::f64::consts::PI), Some(15));
    for v in [
        -0.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::from_bits(STALE_NAN_BITS),
        0.1 + 0.2,
        1e300,
    ] {
        assert_eq!(min_exponent(v), None, "{v}");
    }
}

#[test]
fn specials_and_raw_fallbacks_round_trip() {
    let specials = [
        f64::from_bits(STALE_NAN_BITS),
        f64::from_bits(NORMAL_NAN_BITS),
        f64::from_bits(0xfff0_0000_dead_beef),
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        0.0,
        1.5,
        std::f64::consts::E,
    ];
    let s: Samples = (0..300)
        .map(|i| (i * 15_000 + (i % 3), specials[i as usize % specials.len()]))
        .collect();
    let mostly_nan: Samples = (0..50)
        .map(|i| (i * 1000, f64::from_bits(STALE_NAN_BITS ^ i as u64)))
        .collect();
    let mut data = series_of(&[(s, 120), (mostly_nan, 7), (vec![(5, 1.0)], 1)]);
    // A chunk whose meta range is wider than its samples, and a chunk of another encoding:
    // both must come back unchanged, through the raw section.
    let c = &mut data[0].1[0];
    c.0 -= 1;
    data[1].1.push((i64::MAX - 5, i64::MAX, 2, vec![1, 2, 3]));
    round_trip(&data);
}

#[test]
fn shared_timestamps_are_stored_once() {
    let ts: Vec<i64> = (0..240).map(|i| 1_767_225_600_003 + i * 15_000).collect();
    let data: Vec<(Samples, usize)> = (0..50)
        .map(|k| (ts.iter().map(|&t| (t, (t % 97 + k) as f64)).collect(), 120))
        .collect();
    let s = series_of(&data);
    let bytes = encode(&borrowed(&s), 3).unwrap();
    let a = Archive::parse(Path::new("t"), &bytes, DecodeLimits::default()).unwrap();
    assert_eq!(a.ts.len(), 1);
    round_trip(&s);
}

fn value_strategy() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => (-1_000_000i64..1_000_000, 0usize..7).prop_map(|(m, e)| m as f64 / POW10[e]),
        1 => any::<u64>().prop_map(f64::from_bits),
        1 => prop::sample::select(vec![
            f64::from_bits(STALE_NAN_BITS),
            f64::from_bits(NORMAL_NAN_BITS),
            f64::from_bits(0x7ff8_0000_0000_0123),
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            0.0,
        ]),
    ]
}

fn series_strategy() -> impl Strategy<Value = (Samples, usize)> {
    (
        any::<i32>(),
        prop::collection::vec((1i64..100_000, value_strategy()), 1..300),
        0u8..3,
        1usize..150,
    )
        .prop_map(|(t0, steps, shape, per)| {
            let mut t = i64::from(t0);
            let mut acc = 0.0f64;
            let s = steps
                .into_iter()
                .map(|(d, v)| {
                    t += d;
                    let v = match shape {
                        // Counters: running sums of short decimals stay short decimals.
                        0 if v.is_finite() && v.abs() < 1e6 => {
                            acc = ((acc + v.abs()) * 100.0).round() / 100.0;
                            acc
                        }
                        _ => v,
                    };
                    (t, v)
                })
                .collect();
            (s, per)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random series with NaN payloads, stale markers, ±Inf, -0.0 and irregular timestamps come
    /// back as byte-identical XOR chunks with bit-exact samples.
    #[test]
    fn archive_round_trips(data in prop::collection::vec(series_strategy(), 1..12)) {
        round_trip(&series_of(&data));
    }
}

/// The sections of a valid archive, decompressed.
fn sections_of(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut at = ARCHIVE_MAGIC.len() + 2;
    let mut out = Vec::new();
    for _ in 0..SECTIONS.len() {
        let (_, n) = read_uvarint(&bytes[at..]).unwrap();
        at += n;
        let (clen, n) = read_uvarint(&bytes[at..]).unwrap();
        at += n + 4;
        out.push(zstd::decode_all(&bytes[at..at + clen as usize]).unwrap());
        at += clen as usize;
    }
    out
}

/// Frames sections as the encoder does (valid CRCs), so mutations reach the section parsers.
fn frame(sections: &[Vec<u8>]) -> Vec<u8> {
    let mut out = ARCHIVE_MAGIC.to_vec();
    out.push(ARCHIVE_VERSION);
    out.push(sections.len() as u8);
    for raw in sections {
        let comp = zstd::encode_all(&raw[..], 1).unwrap();
        put_uvarint(&mut out, raw.len() as u64);
        put_uvarint(&mut out, comp.len() as u64);
        out.extend_from_slice(&crc32c::crc32c(raw).to_be_bytes());
        out.extend_from_slice(&comp);
    }
    out
}

fn sample_archive() -> Vec<u8> {
    let data: Vec<(Samples, usize)> = (0..6)
        .map(|k| {
            let s = (0..40)
                .map(|i| {
                    let v = match (k, i % 5) {
                        (0, 0) => f64::from_bits(STALE_NAN_BITS),
                        (1, _) => f64::from_bits(0x7ff8_0000_0000_0000 | i as u64),
                        _ => (i * k) as f64 / 10.0,
                    };
                    (i as i64 * 1000 + k as i64, v)
                })
                .collect();
            (s, 16)
        })
        .collect();
    let mut s = series_of(&data);
    s[2].1.push((i64::MAX - 1, i64::MAX, 7, vec![9; 5]));
    encode(&borrowed(&s), 1).unwrap()
}

#[test]
fn sections_reframe_to_a_valid_archive() {
    let bytes = sample_archive();
    let again = frame(&sections_of(&bytes));
    let a = rebuild_in_memory(Path::new("a"), &bytes, DecodeLimits::default()).unwrap();
    let b = rebuild_in_memory(Path::new("b"), &again, DecodeLimits::default()).unwrap();
    assert_eq!(a, b);
}

#[test]
fn damage_is_reported_with_section_and_offset() {
    let bytes = sample_archive();
    let mut bad = bytes.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    let e = rebuild_in_memory(Path::new("x"), &bad, DecodeLimits::default()).unwrap_err();
    assert!(matches!(e, ArchiveError::Corrupt { .. }), "{e}");
    let mut secs = sections_of(&bytes);
    secs[S_LABELS].push(0);
    let e = rebuild_in_memory(Path::new("x"), &frame(&secs), DecodeLimits::default()).unwrap_err();
    assert!(e.to_string().contains("labels section"), "{e}");
    let e = rebuild_in_memory(Path::new("x"), b"TSDBARCX", DecodeLimits::default()).unwrap_err();
    assert!(e.to_string().contains("magic"), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn fuzz_archive_random_bytes(data in prop::collection::vec(any::<u8>(), 0..400)) {
        let mut d = ARCHIVE_MAGIC.to_vec();
        d.push(ARCHIVE_VERSION);
        d.extend_from_slice(&data);
        fuzz_archive(&data);
        fuzz_archive(&d);
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Mutated sections, re-framed with valid CRCs so the parsers behind them are exercised.
    #[test]
    fn fuzz_archive_mutated_sections(
        section in 0usize..5,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut secs = sections_of(&sample_archive());
        let s = &mut secs[section];
        if !s.is_empty() {
            for (i, b) in &edits {
                let at = i.index(s.len());
                s[at] = *b;
            }
            if truncate {
                let at = cut.index(s.len());
                s.truncate(at);
            }
        }
        fuzz_archive(&frame(&secs));
    }
}

// ---------------------------------------------------------------------------------------------
// Block directories.

fn write_compat(dir: &Path, data: &[(Samples, usize)]) -> Ulid {
    let mut series: Vec<(Labels, Vec<crate::querier::ChunkMeta>)> = data
        .iter()
        .enumerate()
        .map(|(i, (s, per))| {
            let c = xor_chunks(s, *per)
                .into_iter()
                .map(|(lo, hi, b)| crate::querier::ChunkMeta {
                    min_t: lo,
                    max_t: hi,
                    data: b.into(),
                })
                .collect();
            (labels(i), c)
        })
        .collect();
    series.sort_by(|a, b| a.0.cmp(&b.0));
    super::super::write_block(dir, 0, 10_000_000, series.into_iter()).unwrap()
}

fn small_data() -> Vec<(Samples, usize)> {
    (0..30)
        .map(|k| {
            let s = (0..500)
                .map(|i| {
                    let v = if i == 77 {
                        f64::from_bits(STALE_NAN_BITS)
                    } else {
                        (i * (k + 1)) as f64 * 0.25
                    };
                    (i as i64 * 15_000 + k as i64, v)
                })
                .collect();
            (s, 120)
        })
        .collect()
}

fn all_samples(b: &Block) -> Vec<(Labels, Vec<(i64, u64)>)> {
    let m =
        crate::labels::Matcher::new(crate::labels::MatchType::Regexp, "__name__", ".+").unwrap();
    b.select(&[m], i64::MIN, i64::MAX)
        .unwrap()
        .into_iter()
        .map(|(l, cs)| {
            let s = cs
                .iter()
                .flat_map(|c| {
                    XorIterator::new(&c.data)
                        .unwrap()
                        .map(|x| x.map(|(t, v)| (t, v.to_bits())).unwrap())
                        .collect::<Vec<_>>()
                })
                .collect();
            (l, s)
        })
        .collect()
}

#[test]
fn blocks_archive_open_and_unarchive() {
    let dir = tempfile::tempdir().unwrap();
    let src_ulid = write_compat(dir.path(), &small_data());
    let src = dir.path().join(src_ulid.to_string());
    assert!(!is_archive(&src));
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    let a = archive_block(&src, &out, 5).unwrap();
    let adir = out.join(a.to_string());
    assert!(is_archive(&adir));
    assert!(!adir.join("index").exists() && !adir.join("chunks").exists());
    let meta = String::from_utf8(fs::read(adir.join("meta.json")).unwrap()).unwrap();
    assert!(meta.contains("\"tsdbctl\": {\n\t\t\"archive\""), "{meta}");
    assert!(meta.contains(&src_ulid.to_string()), "parent named: {meta}");

    let orig = Block::open(&src).unwrap();
    let ab = Block::open(&adir).unwrap();
    assert_eq!(ab.meta().stats, orig.meta().stats);
    assert_eq!(ab.meta().compaction.level, orig.meta().compaction.level);
    assert_eq!(all_samples(&ab), all_samples(&orig));
    assert!(matches!(
        archive_block(&adir, &out, 5),
        Err(ArchiveError::AlreadyArchive { .. })
    ));
    assert!(matches!(
        unarchive_block(&src, &out),
        Err(ArchiveError::NotArchive { .. })
    ));
    assert!(matches!(
        archive_block(&src, &out, 0),
        Err(ArchiveError::Level(0))
    ));

    let u = unarchive_block(&adir, &out).unwrap();
    let udir = out.join(u.to_string());
    assert!(!is_archive(&udir));
    for f in ["index", "chunks/000001", "tombstones"] {
        assert_eq!(
            fs::read(src.join(f)).unwrap(),
            fs::read(udir.join(f)).unwrap(),
            "{f}"
        );
    }
    let ub = Block::open(&udir).unwrap();
    assert_eq!(ub.meta().compaction.parents[0].ulid, a);
    assert_eq!(all_samples(&ub), all_samples(&orig));
}

#[test]
fn replacing_in_place_takes_the_lock_and_recovers_from_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let src = write_compat(dir.path(), &small_data());
    let before = all_samples(&Block::open(&dir.path().join(src.to_string())).unwrap());
    {
        let _db = crate::Db::open(dir.path(), crate::Options::default()).unwrap();
        assert!(matches!(
            DataDirLock::acquire(dir.path()),
            Err(ArchiveError::Locked { .. })
        ));
    }
    let lock = DataDirLock::acquire(dir.path()).unwrap();
    let a = archive_in_place(&lock, src, 3).unwrap();
    let blocks = list_blocks(dir.path()).unwrap();
    assert_eq!(blocks.len(), 1);
    assert!(blocks[0].archive && blocks[0].meta.ulid == a);

    // A crash after the unarchived block was renamed in but before the archive was retired:
    // both exist; recovery retires the parent.
    let u = unarchive_block(&dir.path().join(a.to_string()), dir.path()).unwrap();
    assert_eq!(list_blocks(dir.path()).unwrap().len(), 2);
    assert_eq!(finish_interrupted(&lock).unwrap(), vec![a]);
    let blocks = list_blocks(dir.path()).unwrap();
    assert_eq!(blocks.len(), 1);
    assert!(!blocks[0].archive && blocks[0].meta.ulid == u);
    drop(lock);

    let lock = DataDirLock::acquire(dir.path()).unwrap();
    let a2 = archive_in_place(&lock, u, 3).unwrap();
    drop(lock);
    let db = crate::Db::open(dir.path(), crate::Options::default()).unwrap();
    let blocks = db.blocks();
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].meta().ulid, a2);
    assert_eq!(all_samples(&blocks[0]), before);
}
