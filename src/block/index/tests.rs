use super::*;
use crate::index::{collect, postings_for_matchers};
use crate::labels::{MatchType, Matcher};
use proptest::prelude::*;
use std::collections::BTreeSet;

fn build(series: &[(Labels, Vec<ChunkRefMeta>)]) -> Vec<u8> {
    let mut syms: BTreeSet<&str> = BTreeSet::new();
    for (l, _) in series {
        for x in l {
            syms.insert(&x.name);
            syms.insert(&x.value);
        }
    }
    let mut w = IndexWriter::new(Vec::new(), Path::new("mem"), syms).unwrap();
    for (l, c) in series {
        w.add_series(l, c).unwrap();
    }
    w.finish().unwrap()
}

fn open(b: Vec<u8>) -> IndexFileReader {
    IndexFileReader::from_bytes(Path::new("test/index"), b).unwrap()
}

fn meta(min_t: i64, max_t: i64, chunk_ref: u64) -> ChunkRefMeta {
    ChunkRefMeta {
        min_t,
        max_t,
        chunk_ref,
    }
}

fn sample_series() -> Vec<(Labels, Vec<ChunkRefMeta>)> {
    vec![
        (
            Labels::from_pairs(&[("__name__", "up"), ("job", "a")]),
            vec![meta(-5, 100, 8), meta(101, 200, 40)],
        ),
        (
            Labels::from_pairs(&[("__name__", "up"), ("job", "b")]),
            vec![meta(0, 0, 80)],
        ),
        (Labels::from_pairs(&[("__name__", "x")]), vec![]),
    ]
}

#[test]
fn small_index_reads_back() {
    let b = build(&sample_series());
    assert_eq!(&b[..5], &[0xBA, 0xAA, 0xD7, 0x00, 2]);
    let r = open(b);
    assert_eq!(
        r.symbols().unwrap(),
        ["__name__", "a", "b", "job", "up", "x"]
    );
    assert_eq!(r.symbol(4).unwrap(), "up");
    assert!(r.symbol(6).is_err());
    let streamed: Vec<&str> = r.symbol_iter().collect::<Result<_, _>>().unwrap();
    assert_eq!(streamed, r.symbols().unwrap());
    for (i, sym) in ["__name__", "a", "b", "job", "up", "x"].iter().enumerate() {
        assert_eq!(r.symbol_ref(sym), Some(i as u32));
    }
    assert_eq!(r.symbol_ref(""), None);
    assert_eq!(r.symbol_ref("c"), None);
    assert_eq!(r.symbol_ref("zz"), None);
    assert_eq!(r.label_names(), ["__name__", "job"]);
    assert_eq!(
        IndexFileReader::label_values(&r, "__name__").unwrap(),
        ["up", "x"]
    );
    assert_eq!(
        IndexFileReader::label_values(&r, "job").unwrap(),
        ["a", "b"]
    );
    assert!(IndexFileReader::label_values(&r, "nope")
        .unwrap()
        .is_empty());
    let all = collect(&mut r.all_series().unwrap());
    assert_eq!(all.len(), 3);
    let up = collect(&mut r.postings_list("__name__", "up").unwrap());
    assert_eq!(up, all[..2]);
    assert!(r.postings_list("__name__", "zz").unwrap().is_empty());
    assert!(r.postings_list("__name__", "a").unwrap().is_empty());
    for (i, (l, c)) in sample_series().into_iter().enumerate() {
        assert_eq!(
            r.series(all[i]).unwrap(),
            SeriesEntry {
                labels: l,
                chunks: c
            }
        );
    }
    let toc = r.toc();
    assert!(toc.symbols == 5 && toc.series > toc.symbols && toc.postings_table > toc.postings);
    let m = Matcher::new(MatchType::Regexp, "job", "b|c").unwrap();
    assert_eq!(postings_for_matchers(&r, &[m]), [all[1]]);
}

#[test]
fn writer_refuses_misuse() {
    let l = Labels::from_pairs(&[("a", "1")]);
    let mut w = IndexWriter::new(Vec::new(), Path::new("m"), ["1", "a"]).unwrap();
    w.add_series(&l, &[]).unwrap();
    assert!(w.add_series(&l, &[]).is_err(), "repeated series");
    let mut w = IndexWriter::new(Vec::new(), Path::new("m"), ["1"]).unwrap();
    assert!(w.add_series(&l, &[]).is_err(), "missing symbol");
    assert!(IndexWriter::new(Vec::new(), Path::new("m"), ["b", "a"]).is_err());
}

#[test]
fn empty_index() {
    let r = open(build(&[]));
    assert!(r.label_names().is_empty());
    assert!(r.all_series().unwrap().is_empty());
    assert_eq!(r.num_symbols(), 0);
}

#[test]
fn damage_is_reported_with_file_and_offset() {
    let b = build(&sample_series());
    let r = open(b.clone());
    let first = collect(&mut r.all_series().unwrap())[0];
    // A byte inside the first series entry.
    let mut bad = b.clone();
    bad[first as usize * 16 + 2] ^= 0x40;
    let r = open(bad);
    let e = r.series(first).unwrap_err().to_string();
    assert!(
        e.contains("test/index") && e.contains(&format!("offset {}", first * 16)),
        "{e}"
    );
    assert!(e.contains("CRC"), "{e}");
    // The TOC.
    let mut bad = b.clone();
    let n = bad.len();
    bad[n - 10] ^= 1;
    let e = IndexFileReader::from_bytes(Path::new("t"), bad)
        .unwrap_err()
        .to_string();
    assert!(e.contains("TOC"), "{e}");
    // The magic.
    let mut bad = b.clone();
    bad[0] = 0;
    assert!(IndexFileReader::from_bytes(Path::new("t"), bad).is_err());
    // A postings list: reported through the IndexReader trait's sticky error.
    let r = open(b.clone());
    let toc = r.toc();
    let mut bad = b;
    bad[toc.postings as usize + 12] ^= 0xff;
    let r = open(bad);
    let m = Matcher::new(MatchType::Equal, "", "").unwrap();
    let got = postings_for_matchers(&r, &[m]);
    assert!(got.is_empty());
    let e = r.take_error().expect("sticky error").to_string();
    assert!(e.contains("postings list") && e.contains("CRC"), "{e}");
}

fn arb_series() -> impl Strategy<Value = Vec<(Labels, Vec<ChunkRefMeta>)>> {
    let label = (0usize..4, 0usize..80);
    let labels = proptest::collection::btree_map(0usize..4, 0usize..80, 1..4);
    let chunk = (any::<i32>(), 0i64..10_000, any::<u32>());
    let _ = label;
    proptest::collection::btree_map(
        labels.prop_map(|m| {
            let names = ["__name__", "instance", "job", "zone"];
            let pairs: Vec<(String, String)> = m
                .into_iter()
                .map(|(n, v)| (names[n].to_string(), format!("v{v:03}")))
                .collect();
            let refs: Vec<(&str, &str)> = pairs
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect();
            Labels::from_pairs(&refs)
        }),
        proptest::collection::vec(chunk, 0..5),
        0..150,
    )
    .prop_map(|m| {
        m.into_iter()
            .map(|(l, cs)| {
                let metas = cs
                    .into_iter()
                    .map(|(t, d, r)| meta(i64::from(t), i64::from(t) + d, u64::from(r) << 7))
                    .collect();
                (l, metas)
            })
            .collect()
    })
}

fn arb_matcher() -> impl Strategy<Value = Matcher> {
    let name = prop::sample::select(vec!["__name__", "instance", "job", "zone", "none"]);
    let kind = prop::sample::select(vec![
        MatchType::Equal,
        MatchType::NotEqual,
        MatchType::Regexp,
        MatchType::NotRegexp,
    ]);
    let value = prop::sample::select(vec!["", "v001", "v0.*", "v07.", ".+", "v010|v011|v050"]);
    (kind, name, value).prop_map(|(k, n, v)| Matcher::new(k, n, v).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn index_round_trips(series in arb_series(), ms in proptest::collection::vec(arb_matcher(), 1..3)) {
        let r = open(build(&series));
        let all = collect(&mut r.all_series().unwrap());
        prop_assert_eq!(all.len(), series.len());
        for (i, sym) in r.symbols().unwrap().into_iter().enumerate() {
            prop_assert_eq!(r.symbol_ref(sym), Some(i as u32));
            prop_assert_eq!(r.symbol(i as u32).unwrap(), sym);
        }
        for (sref, (l, c)) in all.iter().zip(&series) {
            let got = r.series(*sref).unwrap();
            prop_assert_eq!(&got.labels, l);
            prop_assert_eq!(&got.chunks, c);
        }
        // Values and postings per label, including names with more than 32 values (sampling).
        let mut want: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
        for (sref, (l, _)) in all.iter().zip(&series) {
            for x in l {
                want.entry((x.name.clone(), x.value.clone())).or_default().push(*sref);
            }
        }
        let names: BTreeSet<String> = want.keys().map(|k| k.0.clone()).collect();
        prop_assert_eq!(r.label_names(), names.iter().cloned().collect::<Vec<_>>());
        for n in &names {
            let vals: Vec<String> = want.keys().filter(|k| &k.0 == n).map(|k| k.1.clone()).collect();
            prop_assert_eq!(IndexFileReader::label_values(&r, n).unwrap(), vals);
        }
        for ((n, v), refs) in &want {
            prop_assert_eq!(&collect(&mut r.postings_list(n, v).unwrap()), refs);
        }
        // Matchers through the IndexReader trait agree with a brute-force scan.
        let got = postings_for_matchers(&r, &ms);
        let brute: Vec<u64> = all
            .iter()
            .zip(&series)
            .filter(|(_, (l, _))| ms.iter().all(|m| m.matches(l.get(&m.name).unwrap_or(""))))
            .map(|(s, _)| *s)
            .collect();
        prop_assert_eq!(got, brute);
        prop_assert!(r.take_error().is_none());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn fuzz_index_on_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        fuzz_index(&data);
    }

    #[test]
    fn fuzz_index_on_mutated_indexes(
        series in arb_series(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
    ) {
        let b = build(&series);
        let mut m = b.clone();
        for (i, x) in &flips {
            let n = m.len();
            m[i % n] ^= x;
        }
        fuzz_index(&m);
        fuzz_index(&b[..cut % b.len()]);
    }

    /// Damage past the CRCs: re-seal every section's checksum after mutating, so decoding
    /// itself is exercised on garbage.
    #[test]
    fn fuzz_index_with_resealed_checksums(
        series in arb_series(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
    ) {
        let b = build(&series);
        let r = open(b.clone());
        let toc = r.toc();
        let mut m = b;
        let n = m.len();
        for (i, x) in &flips {
            // Leave the TOC alone so the reader gets past it.
            let at = i % (n - TOC_LEN);
            m[at] ^= x;
        }
        reseal(&mut m, &toc);
        fuzz_index(&m);
    }
}

/// Recomputes the CRC of every section the TOC points to, every postings list and every series.
fn reseal(b: &mut [u8], toc: &Toc) {
    let fix = |b: &mut [u8], off: usize| {
        if off + 4 > b.len() {
            return;
        }
        let len = u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]]) as usize;
        let end = off + 4 + len;
        if end + 4 <= b.len() {
            let crc = crc32c::crc32c(&b[off + 4..end]);
            b[end..end + 4].copy_from_slice(&crc.to_be_bytes());
        }
    };
    fix(b, toc.symbols as usize);
    fix(b, toc.postings_table as usize);
    // Series entries from the series section start.
    let mut off = toc.series as usize;
    while off < toc.label_indices as usize {
        off = off.div_ceil(16) * 16;
        let Some((len, n)) = read_uvarint(&b[off.min(b.len())..]) else {
            break;
        };
        let end = off + n + len as usize;
        if end + 4 > toc.label_indices as usize {
            break;
        }
        let crc = crc32c::crc32c(&b[off + n..end]);
        b[end..end + 4].copy_from_slice(&crc.to_be_bytes());
        off = end + 4;
    }
    let mut off = toc.postings.div_ceil(4) as usize * 4;
    while off + 8 <= toc.label_indices_table as usize {
        let len = u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]]) as usize;
        if off + 8 + len > toc.label_indices_table as usize {
            break;
        }
        fix(b, off);
        off = (off + 8 + len).div_ceil(4) * 4;
    }
}
