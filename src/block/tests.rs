use super::*;
use crate::chunk::{XorAppender, XorIterator};
use crate::labels::MatchType;

fn chunks_of(samples: &[(i64, f64)], per_chunk: usize) -> Vec<ChunkMeta> {
    samples
        .chunks(per_chunk)
        .map(|s| {
            let mut a = XorAppender::new();
            for &(t, v) in s {
                a.append(t, v);
            }
            ChunkMeta {
                min_t: s[0].0,
                max_t: s[s.len() - 1].0,
                data: Arc::from(a.into_bytes()),
            }
        })
        .collect()
}

fn decode(chunks: &[ChunkMeta]) -> Vec<(i64, f64)> {
    let mut out = Vec::new();
    for c in chunks {
        let it = XorIterator::new(&c.data).unwrap();
        for s in it {
            out.push(s.unwrap());
        }
    }
    out
}

fn generated() -> Vec<(Labels, Vec<(i64, f64)>)> {
    let mut v: Vec<(Labels, Vec<(i64, f64)>)> = (0..20)
        .map(|i| {
            let l = Labels::from_pairs(&[
                ("__name__", if i % 2 == 0 { "a" } else { "b" }),
                ("i", &format!("{i}")),
            ]);
            let s = (0..(50 + i * 13))
                .map(|k| (k * 15_000 + i, (k * i) as f64 * 0.5))
                .collect();
            (l, s)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn write_open_select_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let data = generated();
    let ulid = write_block(
        dir.path(),
        0,
        7_200_000,
        data.iter().map(|(l, s)| (l.clone(), chunks_of(s, 120))),
    )
    .unwrap();
    let bdir = dir.path().join(ulid.to_string());
    assert!(bdir.join("chunks/000001").exists());
    assert!(!dir
        .path()
        .join(format!("{ulid}{TMP_FOR_CREATION_SUFFIX}"))
        .exists());
    let b = Block::open(&bdir).unwrap();
    let m = b.meta();
    assert_eq!((m.ulid, m.min_time, m.max_time), (ulid, 0, 7_200_000));
    assert_eq!(m.stats.num_series, 20);
    let total: usize = data.iter().map(|(_, s)| s.len()).sum();
    assert_eq!(m.stats.num_samples, total as u64);
    assert_eq!(m.compaction.level, 1);
    assert_eq!(m.compaction.sources, [ulid]);
    assert!(b.tombstones().is_empty());

    let all = b
        .select(
            &[Matcher::new(MatchType::Regexp, "__name__", ".+").unwrap()],
            i64::MIN,
            i64::MAX,
        )
        .unwrap();
    assert_eq!(all.len(), data.len());
    for ((l, chunks), (wl, ws)) in all.iter().zip(&data) {
        assert_eq!(l, wl);
        assert_eq!(&decode(chunks), ws);
    }
    let a = b.select(&[Matcher::equal("__name__", "a")], 0, 10).unwrap();
    assert_eq!(a.len(), 6, "series 0, 2, .., 10 start by t=10");
    assert!(
        a.iter().all(|(_, c)| c.len() == 1),
        "only the first chunk overlaps [0, 10]"
    );
    assert!(b
        .select(&[Matcher::equal("__name__", "zz")], 0, 10)
        .unwrap()
        .is_empty());

    let refs = b.series_refs(&[Matcher::equal("__name__", "b")]).unwrap();
    assert_eq!(refs.len(), 10);
    assert!(refs
        .iter()
        .all(|&r| b.series(r).unwrap().labels.metric_name() == Some("b")));
    let first = collect_refs(&b);
    let s = b.series(first[0]).unwrap();
    assert_eq!(s.labels, data[0].0);
    assert_eq!(b.chunk(s.chunks[0].chunk_ref).unwrap()[..2], [0, 50]);
}

fn collect_refs(b: &Block) -> Vec<u64> {
    crate::index::collect(&mut b.index().all_series().unwrap())
}

#[test]
fn writer_rejects_bad_input_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let c = chunks_of(&[(5, 1.0)], 120);
    let mut w = BlockWriter::new(dir.path(), 0, 10).unwrap();
    w.add_series(Labels::from_pairs(&[("a", "2")]), &c).unwrap();
    let e = w
        .add_series(Labels::from_pairs(&[("a", "1")]), &c)
        .unwrap_err();
    assert!(e.to_string().contains("sorted"), "{e}");
    let e = w
        .add_series(
            Labels::from_pairs(&[("a", "3")]),
            &chunks_of(&[(10, 1.0)], 1),
        )
        .unwrap_err();
    assert!(e.to_string().contains("outside the block range"), "{e}");
    drop(w);
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        0,
        "temporary dir removed"
    );
    assert!(BlockWriter::new(dir.path(), 10, 10).is_err());
}

#[test]
fn refused_series_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = BlockWriter::new(dir.path(), 0, 100).unwrap();
    w.add_series(
        Labels::from_pairs(&[("a", "1")]),
        &chunks_of(&[(5, 1.0)], 1),
    )
    .unwrap();
    // The second chunk is out of range: the first must not be written either.
    let two = chunks_of(&[(6, 1.0), (7, 2.0), (100, 3.0)], 2);
    assert!(w
        .add_series(Labels::from_pairs(&[("a", "2")]), &two)
        .is_err());
    let u = w.finish().unwrap();
    let b = Block::open(&dir.path().join(u.to_string())).unwrap();
    assert_eq!(
        (
            b.meta().stats.num_series,
            b.meta().stats.num_chunks,
            b.meta().stats.num_samples
        ),
        (1, 1, 1)
    );
    let seg = fs::read(dir.path().join(u.to_string()).join("chunks/000001")).unwrap();
    assert_eq!(
        seg.len(),
        8 + chunks::record_len(chunks_of(&[(5, 1.0)], 1)[0].data.len())
    );
}

#[test]
fn empty_block_opens() {
    let dir = tempfile::tempdir().unwrap();
    let ulid = write_block(dir.path(), 0, 1000, std::iter::empty()).unwrap();
    let b = Block::open(&dir.path().join(ulid.to_string())).unwrap();
    assert_eq!(b.meta().stats, BlockStats::default());
    assert!(b
        .select(&[Matcher::equal("", "")], 0, 1000)
        .unwrap()
        .is_empty());
}

#[test]
fn damaged_blocks_name_their_ulid_and_what_failed() {
    let dir = tempfile::tempdir().unwrap();
    let data = generated();
    let write = || {
        write_block(
            dir.path(),
            0,
            7_200_000,
            data.iter().map(|(l, s)| (l.clone(), chunks_of(s, 120))),
        )
        .unwrap()
    };
    // A flipped byte in chunk data: open works, select reports the segment and offset.
    let u = write();
    let bdir = dir.path().join(u.to_string());
    let seg = bdir.join("chunks/000001");
    let mut bytes = fs::read(&seg).unwrap();
    bytes[20] ^= 0xff;
    fs::write(&seg, &bytes).unwrap();
    let b = Block::open(&bdir).unwrap();
    let e = b
        .select(&[Matcher::equal("", "")], 0, i64::MAX)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&u.to_string()) && e.contains("000001") && e.contains("offset 8"),
        "{e}"
    );

    // A truncated index: open fails naming the block and the index file.
    let u = write();
    let bdir = dir.path().join(u.to_string());
    let ix = bdir.join("index");
    let bytes = fs::read(&ix).unwrap();
    fs::write(&ix, &bytes[..bytes.len() - 3]).unwrap();
    let e = Block::open(&bdir).unwrap_err().to_string();
    assert!(
        e.contains(&u.to_string()) && e.contains("index") && e.contains("TOC"),
        "{e}"
    );

    // Broken meta.json.
    let u = write();
    let bdir = dir.path().join(u.to_string());
    fs::write(bdir.join("meta.json"), b"{").unwrap();
    let e = Block::open(&bdir).unwrap_err().to_string();
    assert!(e.contains(&u.to_string()) && e.contains("meta.json"), "{e}");
    // Nothing was deleted.
    assert!(bdir.join("index").exists());
}

#[test]
fn select_applies_tombstones() {
    let dir = tempfile::tempdir().unwrap();
    let data = generated();
    let ulid = write_block(
        dir.path(),
        0,
        7_200_000,
        data.iter().map(|(l, s)| (l.clone(), chunks_of(s, 120))),
    )
    .unwrap();
    let bdir = dir.path().join(ulid.to_string());
    let refs = collect_refs(&Block::open(&bdir).unwrap());
    // Series 0 loses [0, 100000] and a middle stretch; series 1 loses everything.
    let mut t = Tombstones::new();
    t.add(
        refs[0],
        Interval {
            mint: 0,
            maxt: 100_000,
        },
    );
    t.add(
        refs[0],
        Interval {
            mint: 300_000,
            maxt: 450_000,
        },
    );
    t.add(
        refs[1],
        Interval {
            mint: i64::MIN,
            maxt: i64::MAX,
        },
    );
    fs::write(bdir.join("tombstones"), t.encode()).unwrap();
    let b = Block::open(&bdir).unwrap();
    assert_eq!(b.tombstones(), &t);
    let got = b
        .select(&[Matcher::equal("", "")], i64::MIN, i64::MAX)
        .unwrap();
    assert_eq!(got.len(), data.len() - 1);
    let keep = |s: &[(i64, f64)], ivs: &[Interval]| -> Vec<(i64, f64)> {
        s.iter()
            .copied()
            .filter(|(t, _)| !ivs.iter().any(|i| i.contains(*t)))
            .collect()
    };
    assert_eq!(got[0].0, data[0].0);
    assert_eq!(decode(&got[0].1), keep(&data[0].1, t.get(refs[0])));
    assert!(got[0].1.iter().all(|c| c.min_t > 100_000));
    assert_eq!(got[1].0, data[2].0);
    assert_eq!(decode(&got[1].1), data[2].1);
}

#[test]
fn delete_writes_clamped_merged_tombstones_and_meta() {
    let dir = tempfile::tempdir().unwrap();
    let data = generated();
    let ulid = write_block(
        dir.path(),
        0,
        7_200_000,
        data.iter().map(|(l, s)| (l.clone(), chunks_of(s, 120))),
    )
    .unwrap();
    let bdir = dir.path().join(ulid.to_string());
    let b = Block::open(&bdir).unwrap();
    let refs = collect_refs(&b);
    let a = [Matcher::equal("__name__", "a")];
    // Outside the block's half-open range: nothing to do.
    assert!(b.delete(&a, 7_200_000, i64::MAX).unwrap().is_none());
    assert!(b.delete(&a, 10, 5).unwrap().is_none());

    // All time, clamped per series to its own first and last sample (Prometheus' clampInterval).
    let d = b.delete(&a, i64::MIN, i64::MAX).unwrap().unwrap();
    assert_eq!(d.series.len(), 10);
    assert!(d.series.iter().all(|l| l.get("__name__") == Some("a")));
    let (l0, s0) = &data[0];
    assert_eq!(&d.series[0], l0);
    assert_eq!(
        d.block.tombstones().get(refs[0]),
        [Interval {
            mint: s0[0].0,
            maxt: s0[s0.len() - 1].0
        }]
    );
    assert_eq!(d.block.meta().stats.num_tombstones, 10);
    assert!(d.block.select(&a, i64::MIN, i64::MAX).unwrap().is_empty());
    // The files on disk say the same; no temporary file is left.
    let on_disk = Block::open(&bdir).unwrap();
    assert_eq!(on_disk.tombstones(), d.block.tombstones());
    assert_eq!(on_disk.meta(), d.block.meta());
    let names: Vec<String> = fs::read_dir(&bdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    // The same deletion again changes nothing and writes nothing.
    assert!(d.block.delete(&a, 0, 100).unwrap().is_none());

    // A range inside series "b": added to the existing (empty) tombstones of those series, and
    // merged with earlier ones of the same series.
    let bm = [Matcher::equal("__name__", "b")];
    let d2 = d.block.delete(&bm, 30_000, 60_000).unwrap().unwrap();
    assert_eq!(d2.series.len(), 10);
    let d3 = d2.block.delete(&bm, 60_001, 90_000).unwrap().unwrap();
    let b1 = refs
        .iter()
        .position(|&r| d3.block.series(r).unwrap().labels == data[10].0)
        .unwrap();
    assert_eq!(
        d3.block.tombstones().get(refs[b1]),
        [Interval {
            mint: 30_000,
            maxt: 90_000
        }]
    );
    assert_eq!(d3.block.meta().stats.num_tombstones, 20);
    let got = d3.block.select(&bm, i64::MIN, i64::MAX).unwrap();
    let want: Vec<(i64, f64)> = data[10]
        .1
        .iter()
        .copied()
        .filter(|&(t, _)| !(30_000..=90_000).contains(&t))
        .collect();
    assert_eq!(got[0].0, data[10].0);
    assert_eq!(decode(&got[0].1), want);
}

#[test]
fn block_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Block>();
}

#[test]
fn streaming_writer_gives_the_same_block() {
    let dir = tempfile::tempdir().unwrap();
    let data = generated();
    let mut symbols = std::collections::BTreeSet::new();
    for (l, _) in &data {
        for x in l {
            symbols.insert(x.name.clone());
            symbols.insert(x.value.clone());
        }
    }
    let mut w =
        BlockWriter::with_symbols(dir.path(), 0, 7_200_000, symbols.iter().map(String::as_str))
            .unwrap();
    for (l, s) in &data {
        w.add_series(l.clone(), &chunks_of(s, 120)).unwrap();
    }
    let streamed = w.finish().unwrap();
    let buffered = write_block(
        dir.path(),
        0,
        7_200_000,
        data.iter().map(|(l, s)| (l.clone(), chunks_of(s, 120))),
    )
    .unwrap();
    let read = |u: Ulid| fs::read(dir.path().join(u.to_string()).join("index")).unwrap();
    assert_eq!(read(streamed), read(buffered));
    // A label missing from the given symbols is refused.
    let mut w = BlockWriter::with_symbols(dir.path(), 0, 10, ["__name__"]).unwrap();
    let e = w
        .add_series(
            Labels::from_pairs(&[("__name__", "x")]),
            &chunks_of(&[(1, 1.0)], 1),
        )
        .unwrap_err();
    assert!(e.to_string().contains("symbols given up front"), "{e}");
    let mut w = BlockWriter::with_symbols(dir.path(), 0, 10, ["__name__", "x", "y"]).unwrap();
    let c = chunks_of(&[(1, 1.0)], 1);
    w.add_series(Labels::from_pairs(&[("__name__", "y")]), &c)
        .unwrap();
    let e = w
        .add_series(Labels::from_pairs(&[("__name__", "x")]), &c)
        .unwrap_err();
    assert!(e.to_string().contains("sorted"), "{e}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// Whole blocks through files: what select returns is what was written.
    #[test]
    fn blocks_round_trip(
        raw in proptest::collection::btree_map(
            (0u8..5, 0u16..300),
            proptest::collection::vec((1i64..60_000, -1e6f64..1e6), 1..400),
            1..30,
        ),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut data: Vec<(Labels, Vec<(i64, f64)>)> = raw
            .into_iter()
            .map(|((n, v), steps)| {
                let l = Labels::from_pairs(&[("__name__", &format!("m{n}")), ("v", &format!("{v}"))]);
                let mut t = 0;
                let s = steps.into_iter().map(|(d, x)| { t += d; (t, x) }).collect();
                (l, s)
            })
            .collect();
        data.sort_by(|a, b| a.0.cmp(&b.0));
        let maxt = data.iter().map(|(_, s)| s.last().unwrap().0).max().unwrap() + 1;
        let ulid = write_block(
            dir.path(), 0, maxt,
            data.iter().map(|(l, s)| (l.clone(), chunks_of(s, 120))),
        ).unwrap();
        let b = Block::open(&dir.path().join(ulid.to_string())).unwrap();
        let got = b.select(&[Matcher::equal("", "")], 0, maxt).unwrap();
        proptest::prop_assert_eq!(got.len(), data.len());
        for ((l, c), (wl, ws)) in got.iter().zip(&data) {
            proptest::prop_assert_eq!(l, wl);
            proptest::prop_assert_eq!(&decode(c), ws);
        }
    }
}

proptest::proptest! {
    /// A chunk re-encoded without deleted samples holds exactly the others, and its time range is
    /// theirs.
    #[test]
    fn chunk_without_deleted_keeps_exactly_the_rest(
        steps in proptest::collection::vec((1i64..10_000, -1e6f64..1e6), 1..200),
        ivs in proptest::collection::vec((0i64..1_000_000, 0i64..200_000), 0..5),
    ) {
        let mut t = 0;
        let samples: Vec<(i64, f64)> = steps.into_iter().map(|(d, x)| { t += d; (t, x) }).collect();
        let chunk = &chunks_of(&samples, samples.len())[0];
        let mut stones = Tombstones::new();
        for (a, l) in ivs {
            stones.add(1, Interval { mint: a, maxt: a + l });
        }
        let deleted = stones.get(1);
        let want: Vec<(i64, f64)> = samples
            .iter()
            .copied()
            .filter(|(t, _)| !deleted.iter().any(|d| d.contains(*t)))
            .collect();
        match chunk_without_deleted(&chunk.data, deleted).unwrap() {
            None => proptest::prop_assert!(want.is_empty()),
            Some(c) => {
                proptest::prop_assert_eq!(c.min_t, want[0].0);
                proptest::prop_assert_eq!(c.max_t, want[want.len() - 1].0);
                proptest::prop_assert_eq!(decode(&[c]), want);
            }
        }
    }
}
