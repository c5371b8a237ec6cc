//! Cross-checks our block format against the real promtool and Prometheus 2.42
//! (`/usr/bin/promtool`, `/usr/bin/prometheus`):
//! - a block written by `tsdb::block::write_block` passes `promtool tsdb analyze` and `list`, and
//!   `promtool tsdb dump` prints exactly the samples we wrote;
//! - blocks made by `promtool tsdb create-blocks-from openmetrics` read back through
//!   `tsdb::block::Block` give exactly the samples of the OpenMetrics file, and re-encoding what we
//!   read with our writers reproduces Prometheus' index, chunk segment, tombstones and meta.json
//!   byte for byte;
//! - blocks a running Prometheus 2.42 cut from its head (after replaying a WAL we wrote) read back
//!   through our reader with exactly the samples we wrote in their ranges, and re-encode byte for
//!   byte too;
//! - tombstones Prometheus' admin delete API writes into our block decode with our reader, and
//!   `Block::select` leaves out exactly the deleted samples.
//!
//! Without the binary the tests print a skip notice, or fail if `TSDB_REQUIRE_PEERS=1`.

mod common;

use common::{available, parse_dump, promtool, Prometheus, PROMETHEUS, PROMTOOL};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tsdb::block::{write_block, Block, BlockWriter, ChunkWriter, IndexWriter, Tombstones};
use tsdb::chunk::{XorAppender, XorIterator};
use tsdb::index::Postings;
use tsdb::labels::{Labels, MatchType, Matcher};
use tsdb::querier::ChunkMeta;
use tsdb::{Db, Options};

const HOUR: i64 = 3_600_000;

type Samples = BTreeMap<Labels, Vec<(i64, f64)>>;

fn promtool_available() -> bool {
    available(PROMTOOL)
}

/// A deterministic dataset: counters, gauges with awkward values, label values that need quoting.
fn dataset(start: i64, end: i64, step: i64) -> Samples {
    let mut out = Samples::new();
    let values = |s: u64, k: i64| -> f64 {
        match s % 4 {
            0 => (k * 7) as f64,
            1 => (k as f64 * 0.1).sin() * 1e3,
            2 => [1e-7, -2.5, 1e20, 0.0, -0.0, 123456.789][(k % 6) as usize],
            _ => {
                if k % 50 == 49 {
                    f64::NAN
                } else {
                    k as f64 / 3.0
                }
            }
        }
    };
    let mut sid = 0u64;
    for name in ["http_requests_total", "node_load1", "weird"] {
        for inst in ["a:9100", "b:9100", "c \"quoted\" \\ é"] {
            for shard in 0..3 {
                let shard = shard.to_string();
                let l = Labels::from_pairs(&[
                    ("__name__", name),
                    ("instance", inst),
                    ("shard", &shard),
                ]);
                // Series start at staggered times and use jittered steps.
                let mut s = Vec::new();
                let mut t = start + (sid as i64 % 5) * 1000;
                let mut k = 0;
                while t < end {
                    s.push((t, values(sid, k)));
                    t += step + (k % 3) - 1;
                    k += 1;
                }
                out.insert(l, s);
                sid += 1;
            }
        }
    }
    out
}

fn chunks_of(samples: &[(i64, f64)]) -> Vec<ChunkMeta> {
    samples
        .chunks(120)
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

/// Values compare bit for bit, except that every NaN equals every NaN (text output loses NaN bits).
fn same(a: &Samples, b: &Samples) -> Result<(), String> {
    if a.len() != b.len() {
        return Err(format!("{} series vs {}", a.len(), b.len()));
    }
    for ((la, sa), (lb, sb)) in a.iter().zip(b) {
        if la != lb {
            return Err(format!("series {la} vs {lb}"));
        }
        if sa.len() != sb.len() {
            return Err(format!("{la}: {} samples vs {}", sa.len(), sb.len()));
        }
        for (x, y) in sa.iter().zip(sb) {
            let eq = x.0 == y.0 && (x.1.to_bits() == y.1.to_bits() || x.1.is_nan() && y.1.is_nan());
            if !eq {
                return Err(format!("{la}: sample {x:?} vs {y:?}"));
            }
        }
    }
    Ok(())
}

#[test]
fn promtool_reads_our_block() {
    if !promtool_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mint = 1_700_000_000_000 / (2 * HOUR) * (2 * HOUR);
    let maxt = mint + 2 * HOUR;
    let data = dataset(mint, maxt, 15_000);
    let ulid = write_block(
        dir.path(),
        mint,
        maxt,
        data.iter().map(|(l, s)| (l.clone(), chunks_of(s))),
    )
    .unwrap();
    fs::create_dir(dir.path().join("wal")).unwrap();
    let d = dir.path().to_str().unwrap();

    let list = promtool(&["tsdb", "list", d]);
    assert!(list.contains(&ulid.to_string()), "{list}");
    let total: usize = data.values().map(Vec::len).sum();
    assert!(list.contains(&total.to_string()), "sample count in {list}");

    let analyze = promtool(&["tsdb", "analyze", d, &ulid.to_string()]);
    assert!(analyze.contains(&ulid.to_string()), "{analyze}");
    assert!(
        analyze.contains(&format!("Series: {}", data.len())),
        "{analyze}"
    );

    let dump = promtool(&["tsdb", "dump", d]);
    let got = parse_dump(&dump);
    assert_eq!(dump.lines().count(), total);
    if let Err(e) = same(&got, &data) {
        panic!("promtool dump differs from what we wrote: {e}");
    }
}

/// Chunk references name the segment by its position (file `000001` is 0): promtool must agree on
/// a block whose chunks span many small segments.
#[test]
fn promtool_reads_our_multi_segment_block() {
    if !promtool_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mint = 1_700_000_000_000 / (2 * HOUR) * (2 * HOUR);
    let maxt = mint + 2 * HOUR;
    let data = dataset(mint, maxt, 10_000);
    let mut w = BlockWriter::with_segment_size(dir.path(), mint, maxt, 4096).unwrap();
    for (l, s) in &data {
        w.add_series(l.clone(), &chunks_of(s)).unwrap();
    }
    let ulid = w.finish().unwrap();
    let segs = fs::read_dir(dir.path().join(ulid.to_string()).join("chunks"))
        .unwrap()
        .count();
    assert!(segs > 5, "{segs} segments");
    fs::create_dir(dir.path().join("wal")).unwrap();
    let dump = promtool(&["tsdb", "dump", dir.path().to_str().unwrap()]);
    if let Err(e) = same(&parse_dump(&dump), &data) {
        panic!("promtool dump differs from what we wrote: {e}");
    }
}

/// Every sample of every block in `dir`, merged per series.
fn read_blocks(dir: &Path) -> (Samples, usize) {
    let mut got = Samples::new();
    let mut blocks = 0;
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if !p.join("meta.json").exists() {
            continue;
        }
        blocks += 1;
        let b = Block::open(&p).unwrap();
        let m = Matcher::new(MatchType::Regexp, "__name__", ".+").unwrap();
        for (l, chunks) in b.select(&[m], i64::MIN, i64::MAX).unwrap() {
            let s = got.entry(l).or_default();
            for c in chunks {
                for x in XorIterator::new(&c.data).unwrap() {
                    let (t, v) = x.unwrap();
                    assert!(t >= b.meta().min_time && t < b.meta().max_time);
                    s.push((t, v));
                }
            }
        }
    }
    for s in got.values_mut() {
        s.sort_by_key(|x| x.0);
    }
    (got, blocks)
}

/// Rewrites each block's index and chunk segments with our writers from what our reader decoded,
/// and compares them with Prometheus' files byte for byte.
fn same_bytes_as_prometheus(dir: &Path) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if !p.join("meta.json").exists() {
            continue;
        }
        let b = Block::open(&p).unwrap();
        let ix = b.index();
        let symbols = ix.symbols().unwrap();
        let mut w = IndexWriter::new(Vec::new(), Path::new("ours"), symbols).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let mut cw = ChunkWriter::new(tmp.path()).unwrap();
        let mut all = ix.all_series().unwrap();
        while let Some(r) = Postings::next(&mut all) {
            let s = ix.series(r).unwrap();
            for c in &s.chunks {
                let (enc, data) = b.chunks().chunk(c.chunk_ref).unwrap();
                assert_eq!(cw.write(enc, data).unwrap(), c.chunk_ref, "{}", s.labels);
            }
            w.add_series(&s.labels, &s.chunks).unwrap();
        }
        cw.finish().unwrap();
        let ours = w.finish().unwrap();
        let theirs = fs::read(p.join("index")).unwrap();
        assert!(ours == theirs, "index of {} differs from ours", p.display());
        assert_eq!(
            fs::read(tmp.path().join("000001")).unwrap(),
            fs::read(p.join("chunks/000001")).unwrap(),
            "chunk segment of {}",
            p.display()
        );
        assert_eq!(
            String::from_utf8(b.meta().to_json()).unwrap(),
            fs::read_to_string(p.join("meta.json")).unwrap(),
            "meta.json of {}",
            p.display()
        );
        assert_eq!(
            fs::read(p.join("tombstones")).unwrap(),
            Tombstones::new().encode(),
            "tombstones of {}",
            p.display()
        );
    }
}

fn openmetrics(data: &Samples) -> String {
    let mut out = String::new();
    let mut last_name = "";
    for (l, s) in data {
        let name = l.metric_name().unwrap();
        if name != last_name {
            out.push_str(&format!("# TYPE {name} gauge\n"));
            last_name = name;
        }
        let rest: Vec<String> = l
            .without_metric_name()
            .iter()
            .map(|x| {
                let v = x.value.replace('\\', "\\\\").replace('"', "\\\"");
                format!("{}=\"{v}\"", x.name)
            })
            .collect();
        for (t, v) in s {
            let v = if v.is_nan() {
                "NaN".to_string()
            } else {
                format!("{v:?}")
            };
            out.push_str(&format!(
                "{name}{{{}}} {v} {}.{:03}\n",
                rest.join(","),
                t / 1000,
                t % 1000
            ));
        }
    }
    out.push_str("# EOF\n");
    out
}

#[test]
fn we_read_blocks_promtool_creates() {
    if !promtool_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Five hours from an unaligned start: promtool cuts several 2h-aligned blocks.
    let start = 1_700_000_123_456;
    let data = dataset(start, start + 5 * HOUR, 30_000);
    let file = dir.path().join("input.om");
    fs::write(&file, openmetrics(&data)).unwrap();
    let out = dir.path().join("out");
    promtool(&[
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        file.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    let (got, blocks) = read_blocks(&out);
    assert!(blocks >= 3, "{blocks} blocks");
    same_bytes_as_prometheus(&out);
    if let Err(e) = same(&got, &data) {
        panic!("our reader differs from the OpenMetrics input: {e}");
    }
}

/// Prometheus' admin delete API writes tombstones into our block; our reader decodes them and
/// `select` leaves exactly the deleted samples out.
#[test]
fn we_read_tombstones_prometheus_writes_into_our_block() {
    if !available(PROMETHEUS) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Recent enough to stay inside the default 15d retention.
    let mint = (now - 6 * HOUR) / (2 * HOUR) * (2 * HOUR);
    let maxt = mint + 2 * HOUR;
    let data = dataset(mint, maxt, 15_000);
    let ulid = write_block(
        data_dir,
        mint,
        maxt,
        data.iter().map(|(l, s)| (l.clone(), chunks_of(s))),
    )
    .unwrap();
    let p = Prometheus::start_with(
        data_dir,
        "global:\n  scrape_interval: 1h\n",
        &["--web.enable-admin-api"],
    );
    // node_load1 on instance a:9100 loses a 20-minute stretch; every `weird` series loses it all.
    let (d0, d1) = (mint + 30 * 60_000, mint + 50 * 60_000);
    let q = format!(
        "/api/v1/admin/tsdb/delete_series?match[]=node_load1%7Binstance%3D%22a%3A9100%22%7D&start={}&end={}",
        d0 / 1000,
        d1 / 1000
    );
    assert_eq!(p.request("POST", &q).unwrap().0, 204, "{}", p.logs());
    let q = "/api/v1/admin/tsdb/delete_series?match[]=weird";
    assert_eq!(p.request("POST", q).unwrap().0, 204, "{}", p.logs());
    p.stop();

    let b = Block::open(&data_dir.join(ulid.to_string())).unwrap();
    assert!(b.tombstones().total() >= 4, "{:?}", b.tombstones());
    assert_eq!(b.meta().stats.num_tombstones, b.tombstones().total());
    let m = Matcher::new(MatchType::Regexp, "__name__", ".+").unwrap();
    let mut got = Samples::new();
    for (l, chunks) in b.select(&[m], i64::MIN, i64::MAX).unwrap() {
        for c in chunks {
            for x in XorIterator::new(&c.data).unwrap() {
                got.entry(l.clone()).or_default().push(x.unwrap());
            }
        }
    }
    let want: Samples = data
        .into_iter()
        .filter(|(l, _)| l.metric_name() != Some("weird"))
        .map(|(l, s)| {
            let cut = l.metric_name() == Some("node_load1") && l.get("instance") == Some("a:9100");
            let s = s
                .into_iter()
                .filter(|(t, _)| !(cut && *t >= d0 && *t <= d1))
                .collect();
            (l, s)
        })
        .collect();
    if let Err(e) = same(&got, &want) {
        panic!("samples after Prometheus' deletions differ: {e}");
    }
}

fn block_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("meta.json").exists())
        .collect();
    v.sort();
    v
}

/// Prometheus cuts a block from its head once the head spans 1.5 block ranges. We leave it a WAL
/// (written by our `Db`) spanning hours in the past; its own scrapes at "now" then make the head
/// compactable at the next commit, and the blocks it writes are read back with our reader.
#[test]
fn we_read_blocks_prometheus_cut_from_its_head() {
    if !available(PROMETHEUS) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let start = now - 7 * HOUR;
    let mut data = dataset(start, now - HOUR, 60_000);
    // A label of our own, to tell our series from Prometheus' self-scrape.
    data = data
        .into_iter()
        .map(|(l, s)| {
            let mut v = l.into_vec();
            v.push(tsdb::labels::Label::new("origin", "ours"));
            (Labels::new(v), s)
        })
        .collect();
    {
        let db = Db::open(data_dir, Options::default()).unwrap();
        let mut app = db.appender();
        for (l, s) in &data {
            for &(t, v) in s {
                app.append(l, t, v).unwrap();
            }
        }
        app.commit().unwrap();
    }
    let config = "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: self\n    static_configs:\n      - targets: ['127.0.0.1:PORT']\n";
    let p = Prometheus::start(data_dir, config);
    let deadline = Instant::now() + Duration::from_secs(180);
    // Two blocks at least: the 2h ranges before now - 3h are all compactable.
    while block_dirs(data_dir).len() < 2 {
        assert!(
            Instant::now() < deadline,
            "no blocks after 180 s; log:\n{}",
            p.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    p.stop();
    same_bytes_as_prometheus(data_dir);

    let m = Matcher::new(MatchType::Equal, "origin", "ours").unwrap();
    let mut got = Samples::new();
    let mut ranges = Vec::new();
    for dir in block_dirs(data_dir) {
        let b = Block::open(&dir).unwrap();
        let (lo, hi) = (b.meta().min_time, b.meta().max_time);
        ranges.push((lo, hi));
        for (l, chunks) in b
            .select(std::slice::from_ref(&m), i64::MIN, i64::MAX)
            .unwrap()
        {
            for c in chunks {
                for x in XorIterator::new(&c.data).unwrap() {
                    got.entry(l.clone()).or_default().push(x.unwrap());
                }
            }
        }
        // Prometheus' own series read back too.
        let all = Matcher::new(MatchType::Regexp, "__name__", ".+").unwrap();
        for (_, chunks) in b.select(&[all], lo, hi).unwrap() {
            for c in chunks {
                for x in XorIterator::new(&c.data).unwrap() {
                    let (t, _) = x.unwrap();
                    assert!(t >= lo && t < hi);
                }
            }
        }
    }
    for s in got.values_mut() {
        s.sort_by_key(|x| x.0);
    }
    let data_len: usize = data.values().map(Vec::len).sum();
    let want: Samples = data
        .into_iter()
        .map(|(l, s)| {
            let s: Vec<(i64, f64)> = s
                .into_iter()
                .filter(|(t, _)| ranges.iter().any(|(lo, hi)| t >= lo && t < hi))
                .collect();
            (l, s)
        })
        .filter(|(_, s)| !s.is_empty())
        .collect();
    let n: usize = want.values().map(Vec::len).sum();
    eprintln!(
        "{} blocks cut by Prometheus ({ranges:?}) hold {n} of our samples",
        ranges.len()
    );
    assert!(n > data_len / 4, "{n} of {data_len} samples in blocks");
    if let Err(e) = same(&got, &want) {
        panic!("blocks Prometheus cut ({ranges:?}) differ from our samples: {e}");
    }
}
