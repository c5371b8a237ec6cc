use super::*;

fn parse_err(text: &str) -> String {
    UnitTestFile::parse(text).unwrap_err().to_string()
}

#[test]
fn decodes_promtools_format() {
    let f = UnitTestFile::parse(
        r#"
rule_files: [a.yml, "b/*.yml"]
evaluation_interval: 30s
group_eval_order: [g2, g1]
tests:
  - interval: 1m
    name: t1
    input_series:
      - series: 'up{job="a"}'
        values: '1+1x3'
      - series: up
        values: 0
    external_labels: {cluster: eu, replica: 1}
    external_url: http://x:9090
    alert_rule_test:
      - eval_time: 5m
        alertname: A
        exp_alerts:
          - exp_labels: {severity: page, code: 500}
            exp_annotations: {summary: "s"}
      - eval_time: 0
        alertname: B
    promql_expr_test:
      - expr: up
        eval_time: 1m
        exp_samples:
          - labels: 'up{job="a"}'
            value: 2
          - labels: '{}'
            value: .nan
          - labels: x
            value: -1.5e3
"#,
    )
    .unwrap();
    assert_eq!(f.rule_files, ["a.yml", "b/*.yml"]);
    assert_eq!(f.evaluation_interval.as_millis(), 30_000);
    assert_eq!(f.group_eval_order, ["g2", "g1"]);
    let t = &f.tests[0];
    assert_eq!(t.interval.as_millis(), 60_000);
    assert_eq!(t.name, "t1");
    assert_eq!(t.input_series[1].values, "0");
    assert_eq!(
        t.external_labels,
        Labels::from_pairs(&[("cluster", "eu"), ("replica", "1")])
    );
    assert_eq!(t.external_url, "http://x:9090");
    assert_eq!(
        t.alert_rule_tests[0].exp_alerts[0].exp_labels["code"],
        "500"
    );
    assert_eq!(t.alert_rule_tests[1].eval_time.as_millis(), 0);
    assert!(t.alert_rule_tests[1].exp_alerts.is_empty());
    let s = &t.promql_expr_tests[0].exp_samples;
    assert_eq!(s[0].value, 2.0);
    assert!(s[1].value.is_nan());
    assert_eq!(s[2].value, -1500.0);
    assert_eq!(
        UnitTestFile::parse("# nothing\n").unwrap(),
        UnitTestFile::default()
    );
}

/// Texts checked against promtool 2.42.
#[test]
fn decoding_errors_read_as_promtools() {
    assert_eq!(
        parse_err("tests:\n- interval: 1m\n  alert_rule_tests: []\n"),
        "yaml: unmarshal errors:\n  line 3: field alert_rule_tests not found in type main.testGroup"
    );
    assert_eq!(
        parse_err("rule_file: [a]\n"),
        "yaml: unmarshal errors:\n  line 1: field rule_file not found in type main.unitTestFile"
    );
    assert_eq!(
        parse_err("tests:\n- promql_expr_test:\n  - expr: x\n    exp_samples:\n    - labels: x\n      value: NaN\n"),
        "yaml: unmarshal errors:\n  line 6: cannot unmarshal !!str `NaN` into float64"
    );
    assert_eq!(
        parse_err("tests:\n- interval: foo\n"),
        "not a valid duration string: \"foo\""
    );
    for (text, ty) in [
        ("tests:\n- input_series:\n  - serie: x\n", "main.series"),
        (
            "tests:\n- alert_rule_test:\n  - evaltime: 1m\n",
            "main.alertTestCase",
        ),
        (
            "tests:\n- alert_rule_test:\n  - exp_alerts:\n    - labels: {}\n",
            "main.alert",
        ),
        (
            "tests:\n- promql_expr_test:\n  - exp: x\n",
            "main.promqlTestCase",
        ),
        (
            "tests:\n- promql_expr_test:\n  - exp_samples:\n    - value: 1\n      foo: 2\n",
            "main.sample",
        ),
    ] {
        let e = parse_err(text);
        assert!(
            e.ends_with(&format!("not found in type {ty}")),
            "{text:?}: {e}"
        );
        assert!(e.starts_with("yaml: unmarshal errors:\n  line "), "{e}");
    }
    assert!(parse_err("tests: [").starts_with("yaml: line "));
}

#[test]
fn go_number_and_duration_formats() {
    assert_eq!(go_format_e(0.0), "0E+00");
    assert_eq!(go_format_e(-0.0), "-0E+00");
    assert_eq!(go_format_e(1.0), "1E+00");
    assert_eq!(go_format_e(0.5), "5E-01");
    assert_eq!(go_format_e(1000.0), "1E+03");
    assert_eq!(go_format_e(123.456), "1.23456E+02");
    assert_eq!(go_format_e(1e-300), "1E-300");
    assert_eq!(go_format_e(f64::NAN), "NaN");
    assert_eq!(go_format_e(f64::INFINITY), "+Inf");
    assert_eq!(go_format_e(f64::NEG_INFINITY), "-Inf");
    assert_eq!(go_duration(0), "0s");
    assert_eq!(go_duration(500), "500ms");
    assert_eq!(go_duration(1500), "1.5s");
    assert_eq!(go_duration(60_000), "1m0s");
    assert_eq!(go_duration(90_000), "1m30s");
    assert_eq!(go_duration(3_600_000), "1h0m0s");
    assert_eq!(go_duration(86_400_000 + 61_000), "24h1m1s");
}

#[test]
fn failure_texts_are_promtools() {
    let l = |pairs: &[(&str, &str)]| Labels::from_pairs(pairs);
    let f = Failure::Alert {
        group: "mytest".into(),
        alertname: "InstanceDown".into(),
        eval_time: Duration(180_000),
        exp: vec![AlertView {
            labels: l(&[("alertname", "InstanceDown"), ("instance", "x:1")]),
            annotations: vec![("summary".into(), "wrong".into())],
        }],
        got: vec![
            AlertView {
                labels: l(&[("alertname", "InstanceDown"), ("instance", "x:1")]),
                annotations: vec![("summary".into(), "a".into())],
            },
            AlertView {
                labels: l(&[("alertname", "InstanceDown"), ("instance", "y:1")]),
                annotations: vec![],
            },
        ],
    };
    assert_eq!(
        f.to_string(),
        "    name: mytest,
    alertname: InstanceDown, time: 3m, 
        exp:[
            0:
              Labels:{alertname=\"InstanceDown\", instance=\"x:1\"}
              Annotations:{summary=\"wrong\"}
            ], 
        got:[
            0:
              Labels:{alertname=\"InstanceDown\", instance=\"x:1\"}
              Annotations:{summary=\"a\"},
            1:
              Labels:{alertname=\"InstanceDown\", instance=\"y:1\"}
              Annotations:{}
            ]"
    );
    let f = Failure::Alert {
        group: String::new(),
        alertname: "A".into(),
        eval_time: Duration(60_000),
        exp: vec![],
        got: vec![],
    };
    assert_eq!(
        f.to_string(),
        "    alertname: A, time: 1m, \n        exp:[], \n        got:[]"
    );
    let f = Failure::ExprMismatch {
        expr: "up".into(),
        eval_time: Duration(60_000),
        exp: vec![(l(&[("__name__", "up"), ("instance", "x:1")]), 0.5)],
        got: vec![
            (l(&[("__name__", "up"), ("instance", "x:1")]), 0.0),
            (l(&[("__name__", "up"), ("instance", "y:1")]), 0.0),
        ],
    };
    assert_eq!(
        f.to_string(),
        "    expr: \"up\", time: 1m,
        exp: {__name__=\"up\", instance=\"x:1\"} 5E-01
        got: {__name__=\"up\", instance=\"x:1\"} 0E+00, {__name__=\"up\", instance=\"y:1\"} 0E+00"
    );
    let f = Failure::ExprLabels {
        expr: "up".into(),
        eval_time: Duration(60_000),
        labels: "up{job=~\"a\"}".into(),
        error: series_notation::parse_metric("up{job=~\"a\"}").unwrap_err(),
    };
    assert_eq!(
        f.to_string(),
        "    expr: \"up\", time: 1m, err: labels \"up{job=~\\\"a\\\"}\": 1:7: parse error: unexpected <op:=~> in label set, expected \"=\""
    );
    let f = Failure::RuleEval {
        rule: "r".into(),
        time_ms: 120_000,
        error: "boom".into(),
    };
    assert_eq!(f.to_string(), "    rule: r, time: 2m0s, err: boom");
    let f = Failure::MissingAlertname {
        eval_time: Duration(60_000),
        group: "g".into(),
    };
    assert_eq!(
        f.to_string(),
        "an item under alert_rule_test misses required attribute alertname at eval_time 1m (in TestGroup g)"
    );
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn report(path: &Path) -> (bool, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let ok = run_files(&[path.to_path_buf()], &mut out, &mut err).unwrap();
    (
        ok,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[test]
fn expression_tests_pass_and_fail_with_promtools_report() {
    let dir = tempfile::tempdir().unwrap();
    let ok = write(
        dir.path(),
        "ok.yml",
        r#"
tests:
  - interval: 1m
    input_series:
      - series: 'up{job="a", instance="x"}'
        values: '1 0 _ 1 stale'
      - series: 'c{job="a"}'
        values: '0+10x10'
    promql_expr_test:
      - expr: up
        eval_time: 1m
        exp_samples:
          - labels: 'up{job="a", instance="x"}'
            value: 0
      - expr: up
        eval_time: 2m
        exp_samples:
          - labels: 'up{instance="x",job="a"}'
            value: 0
      - expr: up
        eval_time: 4m
      - expr: c - 5
        eval_time: 3m
        exp_samples:
          - labels: '{job="a"}'
            value: 25
      - expr: scalar(c)
        eval_time: 10m
        exp_samples:
          - labels: '{}'
            value: 100
"#,
    );
    let (passed, out, err) = report(&ok);
    assert!(passed, "{out}{err}");
    assert_eq!(
        out,
        format!("Unit Testing:  {}\n  SUCCESS\n\n", ok.display())
    );
    assert_eq!(err, "");

    let bad = write(
        dir.path(),
        "bad.yml",
        r#"
tests:
  - interval: 1m
    input_series:
      - series: 'up{job="a"}'
        values: '1 2 3'
    promql_expr_test:
      - expr: up
        eval_time: 2m
        exp_samples:
          - labels: 'up{job="a"}'
            value: 2
      - expr: up{
        eval_time: 1m
      - expr: 'up'
        eval_time: 0s
        exp_samples:
          - labels: '{}'
            value: .nan
"#,
    );
    let (passed, out, err) = report(&bad);
    assert!(!passed);
    assert_eq!(
        out,
        format!("Unit Testing:  {}\n\n\n\n\n", bad.display()),
        "one empty line per failure, one per file"
    );
    assert!(err.starts_with("  FAILED:\n    expr: \"up\", time: 2m,\n        exp: {__name__=\"up\", job=\"a\"} 2E+00\n        got: {__name__=\"up\", job=\"a\"} 3E+00\n"), "{err}");
    assert!(err.contains("    expr: \"up{\", time: 1m, err: "), "{err}");
    assert!(err.ends_with("    expr: \"up\", time: 0s,\n        exp: {} NaN\n        got: {__name__=\"up\", job=\"a\"} 1E+00\n"), "{err}");
}

#[test]
fn input_is_loaded_as_promtools_lazy_loader() {
    let dir = tempfile::tempdir().unwrap();
    // Without `interval` every value is at time 0 and the first one counts; the expression test
    // at 90s only sees samples up to the last evaluation (60s).
    let f = write(
        dir.path(),
        "t.yml",
        r#"
tests:
  - input_series:
      - series: 'a'
        values: '7 8 9'
    promql_expr_test:
      - expr: a
        eval_time: 0s
        exp_samples:
          - labels: a
            value: 7
  - interval: 30s
    input_series:
      - series: 'b'
        values: '0 1 2 3 4'
    promql_expr_test:
      - expr: b
        eval_time: 90s
        exp_samples:
          - labels: b
            value: 2
  - interval: 1m
    input_series:
      - series: 'c'
        values: '1 1'
      - series: 'c'
        values: '5'
      - series: ''
        values: ''
      - series: 'd'
        values: '1'
    promql_expr_test:
      - expr: c or d
        eval_time: 1m
        exp_samples:
          - labels: c
            value: 5
"#,
    );
    let (passed, out, err) = report(&f);
    assert!(passed, "{out}{err}");
}

#[test]
fn file_level_problems() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.yml");
    let (passed, _, err) = report(&missing);
    assert!(!passed);
    assert_eq!(
        err,
        format!(
            "  FAILED:\nopen {}: no such file or directory\n",
            missing.display()
        )
    );

    let f = write(
        dir.path(),
        "order.yml",
        "rule_files: [nothing*.yml]\ngroup_eval_order: [a, b, a]\n",
    );
    let (passed, _, err) = report(&f);
    assert!(!passed);
    assert_eq!(
        err,
        format!(
            "  WARNING: no file match pattern {}\n  FAILED:\ngroup name repeated in evaluation order: a\n",
            dir.path().join("nothing*.yml").display()
        )
    );

    let f = write(
        dir.path(),
        "series.yml",
        "tests:\n- interval: 1m\n  input_series:\n  - series: 'up{job=\"a\"}'\n    values: '1 foo 2'\n",
    );
    let (passed, _, err) = report(&f);
    assert!(!passed);
    assert_eq!(
        err,
        "  FAILED:\n1:15: parse error: unexpected identifier \"foo\" in series values, expected number or \"stale\"\n"
    );

    let f = write(
        dir.path(),
        "noname.yml",
        "tests:\n- name: t\n  alert_rule_test:\n  - eval_time: 2m\n",
    );
    let (_, _, err) = report(&f);
    assert_eq!(
        err,
        "  FAILED:\nan item under alert_rule_test misses required attribute alertname at eval_time 2m (in TestGroup t)\n"
    );
}

#[test]
fn rule_file_paths_are_joined_and_cleaned_as_go_does() {
    assert_eq!(go_clean_path("./rules/a.yml"), "rules/a.yml");
    assert_eq!(go_clean_path("a/b/../../c//d/./e"), "c/d/e");
    assert_eq!(go_clean_path("../../x"), "../../x");
    assert_eq!(go_clean_path("/a/../../b"), "/b");
    assert_eq!(go_clean_path("a/.."), ".");
    let mut warnings = Vec::new();
    let got = resolve_rule_files(
        Path::new("."),
        &["nothing-here-*.yml".to_string()],
        &mut warnings,
    )
    .unwrap();
    assert!(got.is_empty());
    assert_eq!(warnings, ["no file match pattern nothing-here-*.yml"]);
}

proptest::proptest! {
    // A few thousand inputs per property: these are the fuzz targets' bodies, run on stable.
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

    #[test]
    fn decoding_never_panics(s in "\\PC{0,200}") {
        fuzz_parse(s.as_bytes());
    }

    #[test]
    fn decoding_mutated_files_never_panics(
        pos in 0usize..400,
        byte in proptest::num::u8::ANY,
        cut in proptest::bool::ANY,
    ) {
        let seed = "rule_files: [a.yml]\nevaluation_interval: 30s\ntests:\n  - interval: 1m\n    \
                    input_series:\n      - series: 'up{job=\"a\"}'\n        values: '1+1x3 _ stale'\n    \
                    alert_rule_test:\n      - eval_time: 2m\n        alertname: A\n        exp_alerts:\n          \
                    - exp_labels: {a: b}\n    promql_expr_test:\n      - expr: up\n        eval_time: 1m\n        \
                    exp_samples:\n          - labels: 'up{job=\"a\"}'\n            value: 2\n";
        let mut b = seed.as_bytes().to_vec();
        let i = pos % b.len();
        if cut {
            b.truncate(i);
        } else {
            b[i] = byte;
        }
        fuzz_parse(&b);
    }
}
