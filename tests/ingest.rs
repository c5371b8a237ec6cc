//! Ingest through the library: every sample of a document lands exactly once and bit-exact, whatever
//! the block and window sizes; an invalid document stores nothing and says where it is wrong;
//! rejected samples are counted by reason.

use std::collections::BTreeMap;
use tsdb::exposition::{Entry, Format, Parser};
use tsdb::ingest::{IngestError, IngestOptions, Ingester};
use tsdb::labels::{Label, Labels, Matcher};
use tsdb::{Db, FsyncPolicy, Options};

type Model = BTreeMap<Labels, Vec<(i64, u64)>>;

/// A time-major document: `scrapes` scrapes of `series` series, with label values that need
/// escaping, special floats and a stale marker-free mix of values.
fn document(series: usize, scrapes: usize) -> String {
    let mut s = String::new();
    for k in 0..scrapes {
        s.push_str("# HELP m_total A counter with \\\\ and \\n.\n# TYPE m_total counter\n");
        for i in 0..series {
            let t = 1_700_000_000_000i64 + (k as i64) * 15_000 + (i % 3) as i64;
            let v = match (i + k) % 7 {
                0 => "NaN".to_string(),
                1 => "+Inf".to_string(),
                2 => format!("{}", (k * i) as f64 * 0.001),
                _ => format!("{}.0", k * 10 + i),
            };
            s.push_str(&format!(
                "m_total{{host=\"h{i}\",path=\"/a\\\"b\\\\c\\n\",le=\"{}\"}} {v} {t}\n",
                i % 5
            ));
        }
        s.push_str("up 1 ");
        s.push_str(&(1_700_000_000_000i64 + (k as i64) * 15_000).to_string());
        s.push('\n');
    }
    s
}

/// What a sequential parse of the document says (the model).
fn model(doc: &str) -> Model {
    let mut p = Parser::new(doc.as_bytes(), Format::Prometheus);
    let mut m = Model::new();
    let mut buf: Vec<Label> = Vec::new();
    while let Some(e) = p.next_entry().unwrap() {
        if let Entry::Sample {
            value,
            timestamp_ms,
            ..
        } = e
        {
            p.labels(&mut buf).unwrap();
            let l = Labels::new(buf.clone());
            m.entry(l)
                .or_default()
                .push((timestamp_ms.unwrap(), value.to_bits()));
        }
    }
    m
}

fn stored(db: &Db) -> Model {
    let q = db.querier(i64::MIN, i64::MAX);
    let mut m = Model::new();
    for s in q
        .select(&[Matcher::new(tsdb::labels::MatchType::Regexp, "__name__", ".+").unwrap()])
        .unwrap()
    {
        m.insert(
            s.labels().clone(),
            s.samples().map(|(t, v)| (t, v.to_bits())).collect(),
        );
    }
    m
}

fn opts(block: usize, window: usize) -> IngestOptions {
    let mut o = IngestOptions::new(0);
    o.block_bytes = block;
    o.window_bytes = window;
    o
}

fn db(dir: &std::path::Path) -> Db {
    Db::open(dir, Options::default().fsync(FsyncPolicy::Never)).unwrap()
}

#[test]
fn every_sample_lands_exactly_for_any_block_size() {
    let doc = document(300, 40);
    let want = model(&doc);
    for (block, window) in [
        (1 << 20, 8 << 20),
        (4096, 16384),
        (333, 1000),
        (100_000, 100_000),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let db = db(dir.path());
        let ing = Ingester::new(&db, opts(block, window));
        let r = ing.ingest("doc", doc.as_bytes(), false, &|_| {});
        assert_eq!(r.len(), 1);
        let stats = r.into_iter().next().unwrap().unwrap();
        assert_eq!(stats.samples, 300 * 40 + 40);
        assert_eq!(stats.commit.appended, 300 * 40 + 40);
        assert_eq!(stats.new_series, 301);
        assert_eq!(stored(&db), want, "block {block} window {window}");
        drop(db);
        // And the same after a WAL replay.
        assert_eq!(stored(&self::db(dir.path())), want);
    }
}

#[test]
fn an_invalid_document_stores_nothing_and_says_where() {
    let mut doc = document(50, 20);
    let good_lines = doc.lines().count();
    doc.push_str("m_total{host=\"x\" 1\n");
    doc.push_str(&document(5, 2));
    for block in [1 << 20, 256] {
        let dir = tempfile::tempdir().unwrap();
        let db = db(dir.path());
        let ing = Ingester::new(&db, opts(block, 4 * block));
        let r = ing.ingest("bad.prom", doc.as_bytes(), false, &|_| {});
        match &r[0] {
            Err(IngestError::Parse {
                source_name,
                line,
                column,
                message,
            }) => {
                assert_eq!(source_name, "bad.prom");
                assert_eq!(*line as usize, good_lines + 1, "{message}");
                assert_eq!(*column, 18, "{message}");
            }
            other => panic!("expected a parse error, got {other:?}"),
        }
        assert!(stored(&db).is_empty());
        drop(db);
        assert!(stored(&self::db(dir.path())).is_empty());
    }
}

#[test]
fn quoted_newlines_across_blocks_parse_as_one_pass() {
    // A raw newline inside a quoted label value (Prometheus accepts it) lands on a block cut.
    let mut doc = String::new();
    for i in 0..200 {
        doc.push_str(&format!("a{{v=\"x\ny{i}\"}} {i} {}\n", 1000 + i));
    }
    let want = model(&doc);
    let dir = tempfile::tempdir().unwrap();
    let db = db(dir.path());
    let ing = Ingester::new(&db, opts(64, 256));
    let r = ing.ingest("nl", doc.as_bytes(), false, &|_| {});
    assert!(r[0].is_ok(), "{:?}", r[0]);
    assert_eq!(stored(&db), want);
}

#[test]
fn duplicates_and_out_of_order_are_counted_not_lost() {
    let doc = "a 1 1000\na 2 1000\na 1 1000\na 3 500\na 4 2000\nb 5\nb 6\n";
    let dir = tempfile::tempdir().unwrap();
    let db = db(dir.path());
    let ing = Ingester::new(&db, opts(1 << 20, 1 << 20));
    let s = ing
        .ingest("d", doc.as_bytes(), false, &|_| {})
        .remove(0)
        .unwrap();
    assert_eq!(s.samples, 7);
    assert_eq!(s.commit.appended, 3); // a@1000, a@2000, b@0
    assert_eq!(s.commit.no_ops, 1); // a 1 1000 again
    assert_eq!(s.commit.rejected.duplicate, 2); // a 2 1000, b 6
    assert_eq!(s.commit.rejected.out_of_order, 1); // a 3 500
    let m = stored(&db);
    let a = &m[&Labels::from_pairs(&[("__name__", "a")])];
    assert_eq!(a, &vec![(1000, 1f64.to_bits()), (2000, 4f64.to_bits())]);
}

#[test]
fn openmetrics_documents_are_transactions_each() {
    let doc = "# TYPE a gauge\na 1 1.5\n# EOF\n# TYPE a gauge\na 2 2.5\nbad line here\n# EOF\n# TYPE a gauge\na 3 3.5\n# EOF\n";
    let dir = tempfile::tempdir().unwrap();
    let db = db(dir.path());
    let mut o = opts(1 << 20, 1 << 20);
    o.format = None;
    let ing = Ingester::new(&db, o);
    let r = ing.ingest("om", doc.as_bytes(), true, &|_| {});
    assert_eq!(r.len(), 3);
    assert!(r[0].is_ok() && r[2].is_ok());
    match &r[1] {
        Err(IngestError::Parse { line, .. }) => assert_eq!(*line, 6),
        other => panic!("{other:?}"),
    }
    let m = stored(&db);
    let a = &m[&Labels::from_pairs(&[("__name__", "a")])];
    assert_eq!(a, &vec![(1500, 1f64.to_bits()), (3500, 3f64.to_bits())]);
    // Without --keep-going the first failure stops the input.
    let dir = tempfile::tempdir().unwrap();
    let db = self::db(dir.path());
    let ing = Ingester::new(&db, opts(1 << 20, 1 << 20));
    assert_eq!(ing.ingest("om", doc.as_bytes(), false, &|_| {}).len(), 2);
}
