//! Cross-checks our WAL against the real Prometheus 2.42 (`/usr/bin/prometheus`):
//! - Prometheus replays a WAL we wrote (commit markers, segment headers, several segments; no
//!   compression and snappy) and serves exactly our samples through its HTTP API;
//! - we read, without error, a WAL Prometheus wrote (scraping itself), and the mixed WAL it leaves
//!   after replaying ours.
//!
//! zstd is not checked here: Prometheus added zstd WAL records in 2.46; 2.42 cannot read them.
//! Without the binary the tests print a skip notice, or fail if `TSDB_REQUIRE_PEERS=1`.

mod common;

use common::{available, url_encode, Prometheus, PROMETHEUS};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tsdb::labels::Labels;
use tsdb::wal::record::{self, RecordType, RefSample};
use tsdb::wal::{recover, segments, Compression, Wal, WalOptions, WalReader, PAGE_SIZE};

const STALE_NAN: u64 = 0x7ff0000000000002;

fn prometheus_available() -> bool {
    available(PROMETHEUS)
}

/// Prometheus prints timestamps as seconds with up to 3 decimals.
fn parse_ts(v: &serde_json::Value) -> i64 {
    let s = match v {
        serde_json::Value::Number(n) => n.to_string(),
        other => panic!("timestamp {other}"),
    };
    let (sec, frac) = s.split_once('.').unwrap_or((&s, ""));
    let mut ms = format!("{frac:0<3}");
    ms.truncate(3);
    sec.parse::<i64>().unwrap() * 1000 + ms.parse::<i64>().unwrap()
}

type SeriesSamples = BTreeMap<String, Vec<(i64, u64)>>;

/// Runs `query` (a range selector) at `time_ms`; returns samples per series (value bits).
fn query_matrix(p: &Prometheus, query: &str, time_ms: i64) -> SeriesSamples {
    let path = format!(
        "/api/v1/query?query={}&time={}.{:03}",
        url_encode(query),
        time_ms / 1000,
        time_ms % 1000
    );
    let (status, body) = p.get(&path).unwrap();
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["resultType"], "matrix", "{body}");
    let mut out = BTreeMap::new();
    for series in v["data"]["result"].as_array().unwrap() {
        let metric = series["metric"].as_object().unwrap();
        let pairs: Vec<(&str, &str)> = metric
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
            .collect();
        let key = Labels::from_pairs(&pairs).to_string();
        let samples = series["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|pt| {
                let v: f64 = match pt[1].as_str().unwrap() {
                    "NaN" => f64::NAN,
                    "+Inf" => f64::INFINITY,
                    "-Inf" => f64::NEG_INFINITY,
                    s => s.parse().unwrap(),
                };
                (parse_ts(&pt[0]), canonical_bits(v))
            })
            .collect();
        out.insert(key, samples);
    }
    out
}

/// JSON carries every NaN as "NaN": compare NaNs by kind, everything else bit-exactly.
fn canonical_bits(v: f64) -> u64 {
    if v.is_nan() {
        f64::NAN.to_bits()
    } else {
        v.to_bits()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Writes a WAL of `n_series` series with `n_steps` samples each, one commit per step (the
/// first also carrying the series record); returns what Prometheus should serve and the time of
/// the last sample.
fn write_our_wal(wal_dir: &Path, c: Compression) -> (SeriesSamples, i64) {
    let n_series = 100u64;
    let n_steps = 120i64;
    let step = 15_000;
    let t0 = now_ms() - 3_600_000 + 60_000;
    let t0 = t0 - t0 % 1000 + 7; // a millisecond part, to check it survives
                                 // One-page segments: this WAL spans several, each opening with our segment header.
    let opts = WalOptions::default().segment_size(PAGE_SIZE).compression(c);
    let mut wal = Wal::open(wal_dir, opts).unwrap();
    let names: Vec<Labels> = (0..n_series)
        .map(|i| {
            Labels::from_pairs(&[
                ("__name__", "wal_test_metric"),
                ("instance", &format!("host-{i}")),
                ("job", "wal\"test"),
            ])
        })
        .collect();
    let mut series_rec = Vec::new();
    record::encode_series_header(&mut series_rec);
    for (i, l) in names.iter().enumerate() {
        // Refs start at 1, as Prometheus' head allocates them.
        record::encode_series_entry(
            &mut series_rec,
            i as u64 + 1,
            l.iter().map(|l| (l.name.as_str(), l.value.as_str())),
        );
    }
    let mut want: SeriesSamples = BTreeMap::new();
    let mut rec = Vec::new();
    let mut samples = Vec::new();
    for k in 0..n_steps {
        samples.clear();
        let t = t0 + k * step;
        for i in 0..n_series {
            let v = match (i, k) {
                (0, 5) => f64::NAN,
                (1, _) => -(k as f64) * 1e-3,
                (2, _) => 1.0e300 / (k as f64 + 1.0),
                (3, _) if k == n_steps - 1 => f64::from_bits(STALE_NAN),
                _ => (i * 1000) as f64 + k as f64 * 0.5,
            };
            samples.push(RefSample {
                series: i + 1,
                t,
                v,
            });
            // Range selectors skip staleness markers.
            if v.to_bits() != STALE_NAN {
                want.entry(names[i as usize].to_string())
                    .or_default()
                    .push((t, canonical_bits(v)));
            }
        }
        rec.clear();
        record::encode_samples(&samples, &mut rec);
        if k == 0 {
            wal.log_commit(&[&series_rec, &rec]).unwrap();
        } else {
            wal.log_commit(&[&rec]).unwrap();
        }
    }
    wal.sync().unwrap();
    drop(wal);
    assert!(segments(wal_dir).unwrap().len() >= 3, "several segments");
    (want, t0 + (n_steps - 1) * step)
}

const EMPTY_CONFIG: &str = "global:\n  scrape_interval: 1m\nscrape_configs: []\n";

/// Reads every record of a WAL with our reader, decoding series and samples.
fn read_with_ours(wal_dir: &Path) -> (Vec<(u64, Labels)>, Vec<RefSample>, usize) {
    let mut r = WalReader::open(wal_dir).unwrap();
    let mut series = Vec::new();
    let mut samples = Vec::new();
    let mut records = 0;
    while let Some(rec) = r.next_record().unwrap() {
        records += 1;
        match record::record_type(rec) {
            RecordType::Series => record::decode_series(rec, &mut series).unwrap(),
            RecordType::Samples => record::decode_samples(rec, &mut samples).unwrap(),
            _ => {}
        }
    }
    (series, samples, records)
}

fn prometheus_replays(c: Compression) {
    if !prometheus_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let (want, last_t) = write_our_wal(&data.join("wal"), c);
    let ours_before = read_with_ours(&data.join("wal"));

    let p = Prometheus::start(data, EMPTY_CONFIG);
    let got = query_matrix(&p, "wal_test_metric[2h]", last_t);
    assert_eq!(got.len(), want.len(), "series; log:\n{}", p.logs());
    for (k, w) in &want {
        assert_eq!(got.get(k), Some(w), "series {k}");
    }
    let log = p.logs();
    assert!(
        !log.contains("corruption"),
        "Prometheus found corruption:\n{log}"
    );
    p.stop();

    // Prometheus started its own segment after ours; the mixed WAL still reads back in full.
    assert_eq!(recover(&data.join("wal")).unwrap().truncated, None);
    let (series, samples, _) = read_with_ours(&data.join("wal"));
    assert_eq!(series.len(), ours_before.0.len());
    assert!(samples.len() >= ours_before.1.len());
    assert!(samples[..ours_before.1.len()]
        .iter()
        .zip(&ours_before.1)
        .all(|(a, b)| a.series == b.series && a.t == b.t && a.v.to_bits() == b.v.to_bits()));
}

#[test]
fn prometheus_replays_our_uncompressed_wal() {
    prometheus_replays(Compression::None);
}

#[test]
fn prometheus_replays_our_snappy_wal() {
    prometheus_replays(Compression::Snappy);
}

#[test]
fn we_read_the_wal_prometheus_wrote() {
    if !prometheus_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let config = "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: self\n    \
                  static_configs:\n      - targets: ['127.0.0.1:PORT']\n";
    let p = Prometheus::start(data, config);
    // Wait for a few scrapes of itself to be appended (and so logged).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = p
            .get(&format!(
                "/api/v1/query?query={}",
                url_encode("count_over_time(up[1m])")
            ))
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let n = v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
        if n >= 4.0 {
            break;
        }
        assert!(Instant::now() < deadline, "no scrapes; log:\n{}", p.logs());
        std::thread::sleep(Duration::from_millis(500));
    }
    p.stop();

    let wal_dir = data.join("wal");
    // Prometheus' segments carry no header: every record counts as committed, nothing is cut.
    assert_eq!(recover(&wal_dir).unwrap().truncated, None);
    let (series, samples, records) = read_with_ours(&wal_dir);
    assert!(records > 0);
    let up: Vec<u64> = series
        .iter()
        .filter(|(_, l)| l.metric_name() == Some("up"))
        .map(|(r, _)| *r)
        .collect();
    assert_eq!(up.len(), 1, "one `up` series");
    let up_samples: Vec<&RefSample> = samples.iter().filter(|s| s.series == up[0]).collect();
    assert!(up_samples.len() >= 4, "{} up samples", up_samples.len());
    assert!(up_samples.iter().all(|s| s.v == 1.0));
    assert!(up_samples.windows(2).all(|w| w[0].t < w[1].t));
    // Every sample belongs to a series logged before it.
    assert!(samples
        .iter()
        .all(|s| series.iter().any(|(r, _)| *r == s.series)));

    // And the whole Prometheus data directory opens as a database: `up` answers with those samples.
    let db = tsdb::Db::open(data, tsdb::Options::default().read_only(true)).unwrap();
    assert!(
        db.open_report()
            .warnings
            .iter()
            .all(|w| !w.contains("damaged")),
        "{:?}",
        db.open_report().warnings
    );
    let q = db.querier(i64::MIN, i64::MAX);
    let sel = q
        .select(&[tsdb::labels::Matcher::equal("__name__", "up")])
        .unwrap();
    assert_eq!(sel.len(), 1);
    assert_eq!(sel[0].labels().get("job"), Some("self"));
    let got: Vec<(i64, f64)> = sel[0].samples().collect();
    let want: Vec<(i64, f64)> = up_samples.iter().map(|s| (s.t, s.v)).collect();
    assert_eq!(got, want);
}

/// Writes `HC_SERIES` series of 400 samples at 15 s (100 min from the start of a 2 h range a few
/// hours ago: Prometheus does not compact it) through our `Db`, so the head cuts chunks and writes
/// them to `chunks_head/`.
/// Returns what a range query at the last timestamp should answer, that timestamp, and the number
/// of completed chunks.
const HC_SERIES: u64 = 40;

fn write_our_head_chunks(data: &Path) -> (SeriesSamples, i64, u64) {
    let steps = 400i64;
    let range = 2 * 3_600_000;
    let t0 = (now_ms() - 3 * 3_600_000).div_euclid(range) * range + 3;
    let mut want: SeriesSamples = BTreeMap::new();
    let db = tsdb::Db::open(data, tsdb::Options::default().background_compaction(false)).unwrap();
    let names: Vec<Labels> = (0..HC_SERIES)
        .map(|i| {
            Labels::from_pairs(&[
                ("__name__", "hc_test_metric"),
                ("instance", &format!("host-{i}")),
            ])
        })
        .collect();
    for batch in 0..steps / 25 {
        let mut app = db.appender();
        for k in batch * 25..(batch + 1) * 25 {
            let t = t0 + k * 15_000;
            for (i, l) in names.iter().enumerate() {
                let v = match (i, k % 50) {
                    (0, 7) => f64::NAN,
                    (1, _) => -(k as f64) * 1e-3,
                    _ => (i * 1000) as f64 + (k as f64).sqrt(),
                };
                app.append(l, t, v).unwrap();
                want.entry(l.to_string())
                    .or_default()
                    .push((t, canonical_bits(v)));
            }
        }
        app.commit().unwrap();
    }
    // 120-sample chunks from the start of the range: three completed, the fourth open.
    let completed = db.head().memory_stats().mapped_chunks;
    assert_eq!(completed, HC_SERIES * 3, "completed chunks in chunks_head/");
    (want, t0 + (steps - 1) * 15_000, completed)
}

/// The value of a counter or gauge on Prometheus' own /metrics page.
fn own_metric(p: &Prometheus, name: &str) -> Option<f64> {
    let (_, body) = p.get("/metrics").ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Prometheus opens a directory whose head has chunks_head/ files we wrote: it maps them without
/// finding corruption (no repair, the files stay) and answers exactly our samples.
#[test]
fn prometheus_reads_our_chunks_head() {
    if !prometheus_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let (want, last_t, _) = write_our_head_chunks(data);
    let ours = fs::read(data.join("chunks_head/000001")).unwrap();
    assert!(ours.len() > 8);

    let p = Prometheus::start(data, EMPTY_CONFIG);
    let got = query_matrix(&p, "hc_test_metric[3h]", last_t);
    assert_eq!(got.len(), want.len(), "series; log:\n{}", p.logs());
    for (k, w) in &want {
        assert_eq!(got.get(k), Some(w), "series {k}");
    }
    assert_eq!(
        own_metric(&p, "prometheus_tsdb_mmap_chunk_corruptions_total"),
        Some(0.0)
    );
    let log = p.logs();
    for bad in [
        "corruption",
        "Deleting mmapped chunk files",
        "out of sequence",
        "discarding chunk files",
    ] {
        assert!(!log.contains(bad), "Prometheus logged {bad:?}:\n{log}");
    }
    p.stop();
    // Our file is still there, unchanged (Prometheus writes new chunks to a new file).
    assert_eq!(fs::read(data.join("chunks_head/000001")).unwrap(), ours);
    // And Prometheus used it: had it ignored our chunks, replaying the WAL would have cut them
    // again and written them to a file of its own.
    for e in fs::read_dir(data.join("chunks_head")).unwrap() {
        let path = e.unwrap().path();
        if path.ends_with("000001") {
            continue;
        }
        let mut n = 0;
        let bytes = fs::read(&path).unwrap();
        let _ = tsdb::head::chunks_disk::scan_file(&bytes, |_, _| n += 1);
        assert_eq!(
            n,
            0,
            "{} holds {n} chunks Prometheus cut again",
            path.display()
        );
    }
}

/// We open a chunks_head/ that Prometheus wrote: it replays our WAL (without our chunks_head/),
/// m-maps the chunks it completes on the way and leaves them on shutdown; we map those back, skip
/// their samples in the WAL and answer the same samples.
#[test]
fn we_read_the_chunks_head_prometheus_wrote() {
    if !prometheus_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let (want, _, completed) = write_our_head_chunks(data);
    fs::remove_dir_all(data.join("chunks_head")).unwrap();

    let p = Prometheus::start(data, EMPTY_CONFIG);
    p.stop();
    let files: Vec<_> = fs::read_dir(data.join("chunks_head"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!files.is_empty(), "Prometheus wrote no chunks_head/ file");

    let db = tsdb::Db::open(data, tsdb::Options::default().background_compaction(false)).unwrap();
    let r = db.open_report();
    assert!(
        r.warnings.iter().all(|w| !w.contains("chunks_head")),
        "{:?}",
        r.warnings
    );
    // Prometheus cuts chunks by the same rules from the same samples.
    assert_eq!(r.mapped_chunks, completed, "{r:?}");
    let total: usize = want.values().map(Vec::len).sum();
    assert_eq!(
        r.replay_in_mapped_chunks as usize + r.replayed_samples as usize,
        total
    );
    let q = db.querier(i64::MIN, i64::MAX);
    let got: SeriesSamples = q
        .select(&[tsdb::labels::Matcher::equal("__name__", "hc_test_metric")])
        .unwrap()
        .iter()
        .map(|s| {
            (
                s.labels().to_string(),
                s.samples().map(|(t, v)| (t, canonical_bits(v))).collect(),
            )
        })
        .collect();
    assert_eq!(got, want);
}
