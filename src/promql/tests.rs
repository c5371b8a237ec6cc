//! Engine unit tests over a small in-memory database.

use super::*;
use crate::labels::Labels;
use crate::{Db, FsyncPolicy, Options};

type SeriesSpec<'a> = (&'a [(&'a str, &'a str)], &'a [(i64, f64)]);

fn db_with(series: &[SeriesSpec]) -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default().fsync(FsyncPolicy::Never)).unwrap();
    let mut app = db.appender();
    for (labels, samples) in series {
        let l = Labels::from_pairs(labels);
        for &(t, v) in samples.iter() {
            app.append(&l, t, v).unwrap();
        }
    }
    app.commit().unwrap();
    (dir, db)
}

#[test]
fn instant_selector_and_arithmetic() {
    let (_d, db) = db_with(&[(&[("__name__", "m"), ("a", "1")], &[(0, 1.0), (60_000, 2.0)])]);
    let Value::Vector(v) = db.query("m * 2", 60_000).unwrap() else {
        panic!()
    };
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].v, 4.0);
    assert_eq!(v[0].labels, Labels::from_pairs(&[("a", "1")]));
}

/// A result with floats compared by bits, so NaN equals NaN and -0 differs from 0.
fn bits(v: &Value) -> String {
    match v {
        Value::Vector(s) => s
            .iter()
            .map(|s| format!("{} {} {:x}\n", s.labels, s.t, s.v.to_bits()))
            .collect(),
        Value::Matrix(m) => m
            .iter()
            .map(|s| {
                let pts: Vec<String> = s
                    .points
                    .iter()
                    .map(|(t, v)| format!("{t}:{:x}", v.to_bits()))
                    .collect();
                format!("{} {}\n", s.labels, pts.join(","))
            })
            .collect(),
        Value::Scalar { t, v } => format!("{t} {:x}", v.to_bits()),
        Value::String { t, s } => format!("{t} {s}"),
    }
}

/// Expected hashes computed outside this crate: the stringlabels encoding written out by hand and
/// hashed with the reference C xxHash library (`XXH64(data, len, 0)`).
#[test]
fn limit_ratio_hash_is_prometheus_labels_hash() {
    use super::eval::{prometheus_labels_hash, ratio_keeps, ratio_offset};
    let cases: [(Labels, u64); 5] = [
        (Labels::default(), 0xef46_db37_51d8_e999),
        (
            Labels::from_pairs(&[("__name__", "up")]),
            0xecd7_5f13_400a_bdf5,
        ),
        (
            Labels::from_pairs(&[
                ("__name__", "http_requests_total"),
                ("instance", "0"),
                ("job", "api"),
            ]),
            0xbc01_6d7e_754a_406f,
        ),
        (
            Labels::from_pairs(&[
                ("__name__", "http_requests_total"),
                ("instance", "1"),
                ("job", "api"),
            ]),
            0xc5e5_55f0_6da9_da8d,
        ),
        // A value of 300 bytes takes the 4-byte length form.
        (
            Labels::from_pairs(&[("a", &"x".repeat(300))]),
            0x7334_729f_4d20_ea0b,
        ),
    ];
    for (l, want) in &cases {
        assert_eq!(prometheus_labels_hash(l), *want, "{l}");
    }
    // Offsets 0.7344 and 0.7730: a ratio of 0.75 keeps the first, -0.25 the second.
    let (a, b) = (ratio_offset(&cases[2].0), ratio_offset(&cases[3].0));
    assert!((a - 0.734_396_785_138_678_8).abs() < 1e-12);
    assert!(ratio_keeps(0.75, a) && !ratio_keeps(0.75, b));
    assert!(!ratio_keeps(-0.25, a) && ratio_keeps(-0.25, b));

    let (_d, db) = db_with(&[
        (
            &[
                ("__name__", "http_requests_total"),
                ("instance", "0"),
                ("job", "api"),
            ],
            &[(0, 1.0)],
        ),
        (
            &[
                ("__name__", "http_requests_total"),
                ("instance", "1"),
                ("job", "api"),
            ],
            &[(0, 2.0)],
        ),
    ]);
    let pick = |q: &str| -> Vec<f64> {
        let Value::Vector(v) = db.query(q, 10_000).unwrap() else {
            panic!()
        };
        v.iter().map(|s| s.v).collect()
    };
    assert_eq!(pick("limit_ratio(0.75, http_requests_total)"), vec![1.0]);
    assert_eq!(pick("limit_ratio(-0.25, http_requests_total)"), vec![2.0]);
    assert_eq!(
        pick("limit_ratio(0.7, http_requests_total)"),
        Vec::<f64>::new()
    );
    assert_eq!(pick("limit_ratio(1, http_requests_total)"), vec![1.0, 2.0]);
}

fn many_series_db() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default().fsync(FsyncPolicy::Never)).unwrap();
    let mut app = db.appender();
    for inst in 0..40 {
        for (k, le) in ["0.1", "0.5", "1", "+Inf"].iter().enumerate() {
            let inst_s = inst.to_string();
            let l = Labels::from_pairs(&[
                ("__name__", "req_bucket"),
                ("instance", &inst_s),
                ("job", if inst % 3 == 0 { "a" } else { "b" }),
                ("le", le),
            ]);
            for i in 0..200i64 {
                // Irregular values so that summation order would show in the last bits.
                let v = (i * (k as i64 + 1)) as f64 * 1.1 + (inst as f64) / 7.0;
                app.append(&l, i * 15_000 + inst as i64, v).unwrap();
            }
        }
    }
    app.commit().unwrap();
    (dir, db)
}

#[test]
fn parallel_results_equal_sequential_results() {
    let (_d, db) = many_series_db();
    let queries = [
        "sum by (job) (rate(req_bucket[5m]))",
        "avg(req_bucket) + stddev(req_bucket)",
        "histogram_quantile(0.9, sum by (le, job) (rate(req_bucket[2m])))",
        "topk(3, req_bucket) / ignoring(le) group_left sum without (le) (req_bucket)",
        "quantile_over_time(0.3, req_bucket[10m:30s])",
        "count_values(\"v\", round(req_bucket / 100))",
    ];
    // Every query, range and instant, on a pool of `threads` with `opts`.
    let run_with = |threads: usize, opts: &QueryOptions| -> Vec<String> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            queries
                .iter()
                .flat_map(|q| {
                    let r = db
                        .query_range_with(q, 600_000, 2_900_000, 30_000, opts)
                        .unwrap();
                    let i = db.query_with(q, 1_800_000, opts).unwrap();
                    [bits(&r), bits(&i)]
                })
                .collect()
        })
    };
    let defaults = QueryOptions::default();
    let one = run_with(1, &defaults);
    assert!(one.iter().all(|s| !s.is_empty()));
    assert_eq!(one, run_with(4, &defaults));
    // Every loop on the pool, and none: the same bits.
    for min in [0, usize::MAX] {
        let opts = QueryOptions {
            parallel_min_work: min,
            ..QueryOptions::default()
        };
        assert_eq!(run_with(4, &opts), one, "parallel_min_work {min}");
    }
}

#[test]
fn sample_limit_is_a_clear_error() {
    let (_d, db) = many_series_db();
    let opts = QueryOptions {
        max_samples: 1000,
        ..QueryOptions::default()
    };
    let e = db
        .query_range_with("req_bucket", 0, 2_900_000, 15_000, &opts)
        .unwrap_err();
    assert!(matches!(e, QueryError::TooManySamples), "{e}");
    assert!(e.to_string().contains("too many samples"));
}

#[test]
fn cancellation_stops_a_query() {
    let (_d, db) = many_series_db();
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let opts = QueryOptions {
        cancel: Some(flag),
        ..QueryOptions::default()
    };
    let e = db.query_with("sum(req_bucket)", 0, &opts).unwrap_err();
    assert!(matches!(e, QueryError::Canceled));
}

#[test]
fn parse_errors_say_where() {
    let (_d, db) = db_with(&[]);
    let e = db.query("sum(rate(x[5m])", 0).unwrap_err();
    assert!(matches!(e, QueryError::Parse(_)), "{e}");
    eprintln!("PARSE ERROR: {e}");
}

#[test]
fn range_query_of_a_range_vector_is_refused() {
    let (_d, db) = db_with(&[]);
    let e = db.query_range("x[5m]", 0, 60_000, 15_000).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector"
    );
}

mod fuzz {
    use super::super::fuzz_query;
    use proptest::prelude::*;

    const SEEDS: &[&str] = &[
        "sum by (job) (rate(h_bucket[5m]))",
        "histogram_quantile(0.9, rate(h_bucket[2m]))",
        "g offset 1m @ 300 + on(job) group_left(i) g",
        "topk(2, g) or bottomk(1, g) unless g > 3",
        "quantile_over_time(0.5, g[10m:1m] offset -1m)",
        "label_replace(g, \"x\", \"$1\", \"job\", \"(.*)\")",
        "count_values(\"v\", g) / scalar(sum(g))",
        "absent_over_time(nope[5m]) * -time()",
        "1 + 2 ^ 3 ^ -g % 4",
        "g[5m:] @ end()",
    ];
    const TOKENS: &[&str] = &[
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        ",",
        "g",
        "h_bucket",
        "5m",
        "1",
        "sum",
        "by",
        "rate",
        "@",
        "offset",
        "+",
        "/",
        "^",
        "==",
        "bool",
        "on",
        "group_left",
        "\"",
        "=~",
        "\".*\"",
        ":",
        "job",
        "-",
        "0",
        "NaN",
        "Inf",
        "topk",
        "without",
        "ignoring",
        " ",
    ];

    fn mutated() -> impl Strategy<Value = String> {
        (
            0..SEEDS.len(),
            proptest::collection::vec((0usize..64, 0..TOKENS.len(), any::<bool>()), 0..4),
        )
            .prop_map(|(s, edits)| {
                let mut q = SEEDS[s].to_string();
                for (pos, tok, insert) in edits {
                    let mut at = pos.min(q.len());
                    while !q.is_char_boundary(at) {
                        at -= 1;
                    }
                    if insert {
                        q.insert_str(at, TOKENS[tok]);
                    } else {
                        let mut end = (at + TOKENS[tok].len()).min(q.len());
                        while !q.is_char_boundary(end) {
                            end -= 1;
                        }
                        q.replace_range(at..end, "");
                    }
                }
                q
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
        #[test]
        fn queries_never_panic(q in mutated()) {
            fuzz_query(q.as_bytes());
        }

        #[test]
        fn token_soup_never_panics(toks in proptest::collection::vec(0..TOKENS.len(), 0..24)) {
            let q: String = toks.iter().map(|&t| TOKENS[t]).collect::<Vec<_>>().join(" ");
            fuzz_query(q.as_bytes());
        }
    }
}

fn annotations_of(db: &Db, q: &str, range: bool) -> Annotations {
    let opts = QueryOptions::default();
    let r = if range {
        db.query_range_annotated(q, 0, 600_000, 60_000, &opts)
    } else {
        db.query_annotated(q, 600_000, &opts)
    };
    r.unwrap().annotations
}

#[test]
fn annotations_have_prometheus_texts_and_positions() {
    let pts: Vec<(i64, f64)> = (0..=40).map(|i| (i * 15_000, i as f64)).collect();
    let (_d, db) = db_with(&[
        (&[("__name__", "foo"), ("a", "1")], &pts),
        (&[("__name__", "foo_total"), ("a", "1")], &pts),
        (&[("__name__", "h_bucket"), ("le", "1")], &[(600_000, 10.0)]),
        (&[("__name__", "h_bucket"), ("le", "2")], &[(600_000, 7.0)]),
        (
            &[("__name__", "h_bucket"), ("le", "+Inf")],
            &[(600_000, 12.0)],
        ),
        (&[("__name__", "h_bucket"), ("le", "x")], &[(600_000, 1.0)]),
    ]);
    let a = annotations_of(&db, "sum(rate(foo[5m]))", false);
    assert_eq!(
        a.infos,
        ["PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: \"foo\" (1:10)"]
    );
    assert!(a.warnings.is_empty());
    assert!(annotations_of(&db, "rate(foo_total[5m]) + irate(foo[5m])", false).is_empty());
    // Over a subquery Prometheus has no position for the argument: 1:1.
    let a = annotations_of(&db, "1 + increase(foo[5m:1m])", false);
    assert_eq!(
        a.infos,
        ["PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: \"foo\" (1:1)"]
    );

    let a = annotations_of(&db, "quantile(1.5, foo)", false);
    assert_eq!(
        a.warnings,
        ["PromQL warning: quantile value should be between 0 and 1, got 1.5 (1:10)"]
    );
    let a = annotations_of(&db, "count(limit_ratio(-1.1, foo))", false);
    assert_eq!(
        a.warnings,
        ["PromQL warning: ratio value should be between -1 and 1, got -1.1, capping to -1 (1:19)"]
    );

    let a = annotations_of(&db, "sort(foo)", true);
    assert_eq!(
        a.warnings,
        ["PromQL warning: sort is ineffective for range queries since results are always ordered by labels (1:1)"]
    );
    assert!(annotations_of(&db, "sort(foo)", false).is_empty());

    let a = annotations_of(&db, "histogram_quantile(0.5,\n  h_bucket)", false);
    assert_eq!(
        a.warnings,
        ["PromQL warning: bucket label \"le\" is missing or has a malformed value of \"x\" for metric name \"h_bucket\" (2:3)"]
    );
    assert_eq!(
        a.infos,
        ["PromQL info: input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name \"h_bucket\", from buckets 2 to 2, with a max diff of 3, over 1 samples from 1970-01-01T00:10:00Z to 1970-01-01T00:10:00Z (2:3)"]
    );
    // The same annotation at several steps is reported once.
    let a = annotations_of(&db, "histogram_quantile(2, h_bucket)", true);
    assert_eq!(
        a.warnings[0],
        "PromQL warning: quantile value should be between 0 and 1, got 2 (1:20)"
    );
}

#[test]
fn prepared_queries_equal_parsed_each_time() {
    let (_d, db) = many_series_db();
    let opts = QueryOptions::default();
    for q in [
        "sum by (job) (rate(req_bucket[5m]))",
        "histogram_quantile(0.9, sum by (le) (rate(req_bucket[5m])))",
        "rate(req_bucket{le=\"0.1\"}[5m]) > 0.5",
        "scalar(sum(req_bucket))",
        "sum(rate(req_bucket)",
    ] {
        let p = PreparedQuery::new(q);
        assert_eq!(p.expr(), q);
        for t in [600_000, 1_800_000] {
            match (
                db.query_prepared(&p, t, &opts),
                db.query_annotated(q, t, &opts),
            ) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(bits(&a.value), bits(&b.value), "{q}");
                    assert_eq!(a.annotations, b.annotations, "{q}");
                }
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{q}"),
                (a, b) => panic!("{q}: {a:?} vs {b:?}"),
            }
        }
    }
}
