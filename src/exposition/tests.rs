//! Unit tests: Prometheus 2.42's own parser test cases (promparse_test.go,
//! openmetricsparse_test.go) carried over as facts, plus the quirks this module documents.

use super::*;
use proptest::prelude::*;

#[derive(Clone, Debug, PartialEq)]
enum E {
    Help(String, String),
    Type(String, MetricType),
    Unit(String, String),
    Comment,
    /// series, value bits, timestamp, labels as "name=value" in output order
    Sample(String, u64, Option<i64>, Vec<String>),
    Eof(usize),
}

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn parse_all(input: &[u8], format: Format) -> Result<Vec<E>, ParseError> {
    let mut p = Parser::new(input, format);
    let mut out = Vec::new();
    let mut labels = Vec::new();
    while let Some(e) = p.next_entry()? {
        out.push(match e {
            Entry::Help { metric, text } => E::Help(s(metric), s(&unescape_help(text, format))),
            Entry::Type { metric, kind } => E::Type(s(metric), kind),
            Entry::Unit { metric, unit } => E::Unit(s(metric), s(unit)),
            Entry::Comment => E::Comment,
            Entry::Sample {
                series,
                value,
                timestamp_ms,
            } => {
                p.labels(&mut labels)?;
                let ls = labels
                    .iter()
                    .map(|l| format!("{}={}", l.name, l.value))
                    .collect();
                E::Sample(s(series), value.to_bits(), timestamp_ms, ls)
            }
            Entry::Eof { next_offset } => E::Eof(next_offset),
        });
    }
    Ok(out)
}

fn prom(input: &str) -> Result<Vec<E>, ParseError> {
    parse_all(input.as_bytes(), Format::Prometheus)
}
fn om(input: &str) -> Result<Vec<E>, ParseError> {
    parse_all(input.as_bytes(), Format::OpenMetrics)
}

fn sample(series: &str, v: f64, ts: Option<i64>, labels: &[&str]) -> E {
    E::Sample(
        series.into(),
        v.to_bits(),
        ts,
        labels.iter().map(|l| l.to_string()).collect(),
    )
}

/// Asserts the document fails at `line:col` with a message containing `msg`.
fn fails(format: Format, input: impl AsRef<[u8]>, line: u64, col: u64, msg: &str) {
    let input = input.as_ref();
    let e =
        parse_all(input, format).expect_err(&format!("{format:?} should reject {:?}", s(input)));
    assert!(
        e.line == line && e.column == col && e.message.contains(msg),
        "{format:?} {:?}: got {e}, want {line}:{col}: ...{msg}...",
        s(input)
    );
}

/// Asserts the document is accepted.
fn accepts(format: Format, input: impl AsRef<[u8]>) -> Vec<E> {
    let input = input.as_ref();
    parse_all(input, format).unwrap_or_else(|e| panic!("{format:?} {:?}: {e}", s(input)))
}

#[test]
fn prom_document_from_prometheus_tests() {
    let mut input = String::from(
        r#"# HELP go_gc_duration_seconds A summary of the GC invocation durations.
# 	TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile="0"} 4.9351e-05
go_gc_duration_seconds{quantile="0.25",} 7.424100000000001e-05
go_gc_duration_seconds{quantile="0.5",a="b"} 8.3835e-05
go_gc_duration_seconds{quantile="0.8", a="b"} 8.3835e-05
go_gc_duration_seconds{ quantile="0.9", a="b"} 8.3835e-05
# Hrandom comment starting with prefix of HELP
#
wind_speed{A="2",c="3"} 12345
# comment with escaped \n newline
# comment with escaped \ escape character
# HELP nohelp1
# HELP nohelp2 
go_gc_duration_seconds{ quantile="1.0", a="b" } 8.3835e-05
go_gc_duration_seconds { quantile="1.0", a="b" } 8.3835e-05
go_gc_duration_seconds { quantile= "1.0", a= "b", } 8.3835e-05
go_gc_duration_seconds { quantile = "1.0", a = "b" } 8.3835e-05
go_gc_duration_seconds_count 99
some:aggregate:rate5m{a_b="c"}	1
# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 33  	123123
_metric_starting_with_underscore 1
testmetric{_label_starting_with_underscore="foo"} 1
testmetric{label="\"bar\""} 1"#,
    );
    input.push_str("\n# HELP metric foo\x00bar");
    input.push_str("\nnull_byte_metric{a=\"abc\x00\"} 1");
    let g = "go_gc_duration_seconds";
    let n = |x: &str| format!("__name__={x}");
    let got = prom(&input).unwrap();
    let want = vec![
        E::Help(g.into(), "A summary of the GC invocation durations.".into()),
        // "# \tTYPE" is a TYPE line: any run of spaces and tabs follows '#'.
        E::Type(g.into(), MetricType::Summary),
        sample(
            r#"go_gc_duration_seconds{quantile="0"}"#,
            4.9351e-05,
            None,
            &[&n(g), "quantile=0"],
        ),
        sample(
            r#"go_gc_duration_seconds{quantile="0.25",}"#,
            7.424100000000001e-05,
            None,
            &[&n(g), "quantile=0.25"],
        ),
        sample(
            r#"go_gc_duration_seconds{quantile="0.5",a="b"}"#,
            8.3835e-05,
            None,
            &[&n(g), "quantile=0.5", "a=b"],
        ),
        sample(
            r#"go_gc_duration_seconds{quantile="0.8", a="b"}"#,
            8.3835e-05,
            None,
            &[&n(g), "quantile=0.8", "a=b"],
        ),
        sample(
            r#"go_gc_duration_seconds{ quantile="0.9", a="b"}"#,
            8.3835e-05,
            None,
            &[&n(g), "quantile=0.9", "a=b"],
        ),
        E::Comment,
        E::Comment,
        sample(
            r#"wind_speed{A="2",c="3"}"#,
            12345.0,
            None,
            &["__name__=wind_speed", "A=2", "c=3"],
        ),
        E::Comment,
        E::Comment,
        E::Help("nohelp1".into(), "".into()),
        E::Help("nohelp2".into(), "".into()),
        sample(
            r#"go_gc_duration_seconds{ quantile="1.0", a="b" }"#,
            8.3835e-05,
            None,
            &[&n(g), "quantile=1.0", "a=b"],
        ),
        sample(
            r#"go_gc_duration_seconds { quantile="1.0", a="b" }"#,
            8.3835e-05,
            None,
            &[&n(g), "quantile=1.0", "a=b"],
        ),
        sample(
            r#"go_gc_duration_seconds { quantile= "1.0", a= "b", }"#,
            8.3835e-05,
            None,
            &[&n(g), "quantile=1.0", "a=b"],
        ),
        sample(
            r#"go_gc_duration_seconds { quantile = "1.0", a = "b" }"#,
            8.3835e-05,
            None,
            &[&n(g), "quantile=1.0", "a=b"],
        ),
        sample(
            "go_gc_duration_seconds_count",
            99.0,
            None,
            &["__name__=go_gc_duration_seconds_count"],
        ),
        sample(
            r#"some:aggregate:rate5m{a_b="c"}"#,
            1.0,
            None,
            &["__name__=some:aggregate:rate5m", "a_b=c"],
        ),
        E::Help(
            "go_goroutines".into(),
            "Number of goroutines that currently exist.".into(),
        ),
        E::Type("go_goroutines".into(), MetricType::Gauge),
        sample(
            "go_goroutines",
            33.0,
            Some(123123),
            &["__name__=go_goroutines"],
        ),
        sample(
            "_metric_starting_with_underscore",
            1.0,
            None,
            &["__name__=_metric_starting_with_underscore"],
        ),
        sample(
            r#"testmetric{_label_starting_with_underscore="foo"}"#,
            1.0,
            None,
            &["__name__=testmetric", "_label_starting_with_underscore=foo"],
        ),
        sample(
            r#"testmetric{label="\"bar\""}"#,
            1.0,
            None,
            &["__name__=testmetric", "label=\"bar\""],
        ),
        E::Help("metric".into(), "foo\x00bar".into()),
        sample(
            "null_byte_metric{a=\"abc\x00\"}",
            1.0,
            None,
            &["__name__=null_byte_metric", "a=abc\x00"],
        ),
    ];
    assert_eq!(got, want);
}

#[test]
fn prom_errors_from_prometheus_tests() {
    let p = Format::Prometheus;
    fails(
        p,
        "a",
        1,
        2,
        "expected value after metric, got end of input",
    );
    fails(p, "a{b='c'} 1\n", 1, 5, "expected label value, got \"'\"");
    fails(p, "a{b=\n", 1, 5, "expected label value, got end of line");
    fails(
        p,
        b"a{\xff=\"foo\"} 1\n",
        1,
        3,
        "expected label name, got \"\\xff\"",
    );
    fails(
        p,
        b"a{b=\"\xff\"} 1\n",
        1,
        5,
        "expected valid UTF-8 in label value",
    );
    fails(
        p,
        "a true\n",
        1,
        3,
        "expected a float value, got \"true\" (invalid syntax)",
    );
    fails(
        p,
        "something_weird{problem=\"",
        1,
        26,
        "expected label value, got end of input",
    );
    fails(
        p,
        "empty_label_name{=\"\"} 0",
        1,
        18,
        "expected label name, got EQUAL \"=\"",
    );
    fails(p, "foo 1_2\n", 1, 5, "unsupported character in float");
    fails(p, "foo 0x1p-3\n", 1, 5, "unsupported character in float");
    fails(p, "foo 0x1P-3\n", 1, 5, "unsupported character in float");
    fails(
        p,
        "foo 0 1_2\n",
        1,
        8,
        "expected end of line after timestamp, got \"_\"",
    );
    fails(p, "{a=\"ok\"} 1", 1, 1, "at start of line, got \"{\"");
    fails(
        p,
        "# TYPE #\n#EOF\n",
        1,
        8,
        "expected metric name after TYPE, got \"#\"",
    );
    fails(
        p,
        "# HELP #\n#EOF\n",
        1,
        8,
        "expected metric name after HELP, got \"#\"",
    );
    // NUL bytes.
    fails(
        p,
        "a{b=\x00\"ssss\"} 1\n",
        1,
        5,
        "expected label value, got \"\\x00\"",
    );
    fails(
        p,
        "a{b=\"\x00",
        1,
        7,
        "expected label value, got end of input",
    );
    fails(
        p,
        "a{b\x00=\"hiih\"}\t1",
        1,
        4,
        "expected equal sign after label name, got \"\\x00\"",
    );
    fails(
        p,
        "a\x00{b=\"ddd\"} 1",
        1,
        2,
        "expected value after metric, got \"\\x00\"",
    );
    fails(
        p,
        "a 0 1\x00",
        1,
        6,
        "expected end of line after timestamp, got \"\\x00\"",
    );
}

#[test]
fn prom_nul_inside_values_is_kept() {
    for (input, value) in [
        ("null_byte_metric{a=\"abc\x00\"} 1", "abc\x00"),
        ("a{b=\"\x00ss\"} 1\n", "\x00ss"),
        ("a{b=\"\x00\"} 1\n", "\x00"),
    ] {
        let got = accepts(Format::Prometheus, input);
        let E::Sample(_, _, _, labels) = &got[0] else {
            panic!("{got:?}")
        };
        assert_eq!(
            labels[1],
            format!("{}={value}", if input.starts_with('n') { "a" } else { "b" })
        );
    }
    // NULs right after a closing quote join the value token, whose last byte is then stripped.
    let got = accepts(Format::Prometheus, "a{b=\"c\"\x00\x00,d=\"e\"} 1\n");
    assert_eq!(
        got,
        vec![sample(
            "a{b=\"c\"\x00\x00,d=\"e\"}",
            1.0,
            None,
            &["__name__=a", "b=c\"\x00", "d=e"]
        )]
    );
}

#[test]
fn prom_more_errors() {
    let p = Format::Prometheus;
    fails(p, "foo 1\r\n", 1, 5, "got \"1\\r\" (invalid syntax)");
    fails(p, "foo 1\n\r\n", 2, 1, "at start of line, got \"\\r\"");
    fails(
        p,
        "foo 1 -5\n",
        1,
        7,
        "expected timestamp or end of line, got \"-\"",
    );
    fails(
        p,
        "foo 1 99999999999999999999\n",
        1,
        7,
        "(value out of range)",
    );
    fails(
        p,
        "foo 1 2 3\n",
        1,
        9,
        "expected end of line after timestamp, got TIMESTAMP \"3\"",
    );
    fails(
        p,
        "foo 1 1.5\n",
        1,
        8,
        "expected end of line after timestamp, got \".\"",
    );
    fails(p, "foo 1e400\n", 1, 5, "(value out of range)");
    fails(p, "foo -nan\n", 1, 5, "(invalid syntax)");
    fails(p, "foo +NaN\n", 1, 5, "(invalid syntax)");
    fails(p, "# TYPE foo counter \n", 1, 12, "got \"counter \"");
    fails(p, "# TYPE foo\n", 1, 11, "got \"\"");
    fails(
        p,
        "# TYPE foo unknown\n",
        1,
        12,
        "or untyped, got \"unknown\"",
    );
    fails(p, "# TYPE foo counter\r\n", 1, 12, "got \"counter\\r\"");
    fails(
        p,
        "# HELP \n",
        1,
        8,
        "expected metric name after HELP, got end of line",
    );
    fails(
        p,
        b"# HELP foo \xff\n",
        1,
        11,
        "expected valid UTF-8 in help text",
    );
    fails(
        p,
        "# HELP foo\x00bar\n",
        1,
        11,
        "expected end of line after metadata, got end of input",
    );
    fails(
        p,
        "foo{a=\"b\",,} 1",
        1,
        11,
        "expected label name, got COMMA \",\"",
    );
    fails(p, "foo{,} 1", 1, 5, "expected label name, got COMMA");
    fails(p, "foo{a=\"b\" 1", 1, 11, "expected label name, got \"1\"");
    fails(
        p,
        "foo{a=\"\\\n\"} 1",
        1,
        9,
        "expected label value, got end of line",
    );
    fails(
        p,
        "foo 1 {\n",
        1,
        7,
        "expected timestamp or end of line, got \"{\"",
    );
    fails(
        p,
        "foo 1{\n",
        1,
        6,
        "expected timestamp or end of line, got \"{\"",
    );
    fails(
        p,
        "foo{a=\"b\"}{c=\"d\"} 1\n",
        1,
        11,
        "expected value after metric, got BOPEN",
    );
    fails(
        p,
        "ok 1\nok 2\n\nfoo bar\n",
        4,
        5,
        "got \"bar\" (invalid syntax)",
    );
}

#[test]
fn prom_accepts_loose_syntax() {
    let p = Format::Prometheus;
    // No separator needed after a label block, nor between label pairs; a value may follow the
    // name directly when it cannot continue the name.
    assert_eq!(
        accepts(p, "foo{a=\"b\"}1\nfoo{a=\"b\" c=\"d\"} 2\nfoo-3 4\n"),
        vec![
            sample("foo{a=\"b\"}", 1.0, None, &["__name__=foo", "a=b"]),
            sample(
                "foo{a=\"b\" c=\"d\"}",
                2.0,
                None,
                &["__name__=foo", "a=b", "c=d"]
            ),
            sample("foo", -3.0, Some(4), &["__name__=foo"]),
        ]
    );
    // Blank and whitespace-only lines, tabs, trailing whitespace, no final newline.
    assert_eq!(
        accepts(p, "\n \t\nfoo\t1\t \t2 \t\n\n\nbar 3"),
        vec![
            sample("foo", 1.0, Some(2), &["__name__=foo"]),
            sample("bar", 3.0, None, &["__name__=bar"]),
        ]
    );
    // Comments: CR and any bytes are fine there, "# HELP" needs a name after it to be HELP.
    assert_eq!(
        accepts(p, "#\r\n# HELP\n#HELP foo x\n# HELPfoo\n# TYPE\n#\n"),
        vec![E::Comment; 6]
    );
    // HELP text: everything after one separator byte; a first non-name byte is dropped too.
    assert_eq!(
        accepts(
            p,
            "# HELP foo  two spaces \n# HELP foo-bar x\n#\tHELP\tfoo\ta\\\\b\\nc\\\"\n"
        ),
        vec![
            E::Help("foo".into(), " two spaces ".into()),
            E::Help("foo".into(), "bar x".into()),
            E::Help("foo".into(), "a\\b\nc\\\"".into()),
        ]
    );
    // Exotic floats and timestamps.
    let got = accepts(
        p,
        "a +Inf\na -inf\na Infinity\na nan\na .5\na 5.\na 1E3\na -0\na 1e-400\na 1 0009\na 1 9223372036854775807\n",
    );
    let values: Vec<(u64, Option<i64>)> = got
        .iter()
        .map(|e| match e {
            E::Sample(_, v, t, _) => (*v, *t),
            _ => panic!(),
        })
        .collect();
    assert_eq!(
        values,
        vec![
            (f64::INFINITY.to_bits(), None),
            (f64::NEG_INFINITY.to_bits(), None),
            (f64::INFINITY.to_bits(), None),
            (NORMAL_NAN_BITS, None),
            (0.5f64.to_bits(), None),
            (5f64.to_bits(), None),
            (1000f64.to_bits(), None),
            ((-0.0f64).to_bits(), None),
            (0f64.to_bits(), None),
            (1f64.to_bits(), Some(9)),
            (1f64.to_bits(), Some(i64::MAX)),
        ]
    );
    // A raw newline inside a quoted label value.
    let mut parser = Parser::new(b"foo{a=\"x\ny\"} 1\nbar 2\n", p);
    assert!(matches!(
        parser.next_entry(),
        Ok(Some(Entry::Sample { .. }))
    ));
    let mut labels = Vec::new();
    parser.labels(&mut labels).unwrap();
    assert_eq!(labels[1], Label::new("a", "x\ny"));
    assert_eq!(parser.line(), 1);
    assert!(matches!(
        parser.next_entry(),
        Ok(Some(Entry::Sample { .. }))
    ));
    assert_eq!(parser.line(), 3);
}

#[test]
fn label_set_checks_follow_the_scrape() {
    let p = Format::Prometheus;
    // Whitespace before the name becomes part of it: an invalid name.
    fails(
        p,
        "ok 1\n  foo 1\n",
        2,
        1,
        "expected a valid metric name, got \"  foo\"",
    );
    fails(
        p,
        "foo{__name__=\"\"} 1",
        1,
        1,
        "expected a metric name, got an empty __name__ label",
    );
    fails(
        p,
        "foo{a=\"1\",a=\"2\"} 1",
        1,
        1,
        "expected unique label names, got \"a\" twice",
    );
    fails(p, "foo{__name__=\"bar\"} 1", 1, 1, "got \"__name__\" twice");
    fails(
        p,
        "foo{__name__=\"1bar\"} 1",
        1,
        1,
        "expected a valid metric name, got \"1bar\"",
    );
    // An empty value deletes every label of its name.
    assert_eq!(
        accepts(p, "foo{a=\"\",a=\"2\",b=\"\",c=\"3\"} 1"),
        vec![sample(
            "foo{a=\"\",a=\"2\",b=\"\",c=\"3\"}",
            1.0,
            None,
            &["__name__=foo", "c=3"]
        )]
    );
    assert_eq!(
        accepts(p, "foo{a=\"x\\\\y\\\"z\\nw\\t\"} 1"),
        vec![sample(
            "foo{a=\"x\\\\y\\\"z\\nw\\t\"}",
            1.0,
            None,
            &["__name__=foo", "a=x\\y\"z\nw\\t"]
        )]
    );
    let mut parser = Parser::new(b"# HELP a b\n", p);
    parser.next_entry().unwrap();
    let e = parser.labels(&mut Vec::new()).unwrap_err();
    assert!(e.message.contains("expected a sample"), "{e}");
}

#[test]
fn prom_nul_at_line_start_ends_the_document() {
    for (input, at, n) in [
        ("foo 1\n\x00bar 2\n", 6, 1),
        ("foo 1\n  \x00bar 2\n", 6, 1),
        ("foo 1\n#x\x00\nbar 2\n", 6, 1),
        ("foo 1\n# \x00x\nbar 2\n", 6, 1),
        ("\x00", 0, 0),
    ] {
        let mut parser = Parser::new(input.as_bytes(), Format::Prometheus);
        let mut samples = 0;
        while let Some(e) = parser.next_entry().unwrap() {
            samples += usize::from(matches!(e, Entry::Sample { .. }));
        }
        assert_eq!((samples, parser.truncated_at()), (n, Some(at)), "{input:?}");
    }
    // Elsewhere in a comment after "# ", NULs are skipped; so they are inside a HELP keyword.
    assert_eq!(
        accepts(Format::Prometheus, "# x\x00y\n# H\x00ELP a b\nbar 2\n"),
        vec![
            E::Comment,
            E::Help("a".into(), "b".into()),
            sample("bar", 2.0, None, &["__name__=bar"])
        ]
    );
    let mut parser = Parser::new(b"foo 1\n", Format::Prometheus);
    while parser.next_entry().unwrap().is_some() {}
    assert_eq!(parser.truncated_at(), None);
}

#[test]
fn om_document_from_prometheus_tests() {
    let mut input = String::from(
        r#"# HELP go_gc_duration_seconds A summary of the GC invocation durations.
# TYPE go_gc_duration_seconds summary
# UNIT go_gc_duration_seconds seconds
go_gc_duration_seconds{quantile="0"} 4.9351e-05
go_gc_duration_seconds{quantile="0.25"} 7.424100000000001e-05
go_gc_duration_seconds{quantile="0.5",a="b"} 8.3835e-05
# HELP nohelp1 
# HELP help2 escape \ \n \\ \" \x chars
# UNIT nounit 
go_gc_duration_seconds{quantile="1.0",a="b"} 8.3835e-05
go_gc_duration_seconds_count 99
some:aggregate:rate5m{a_b="c"} 1
# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 33 123.123
# TYPE hh histogram
hh_bucket{le="+Inf"} 1
# TYPE gh gaugehistogram
gh_bucket{le="+Inf"} 1
# TYPE hhh histogram
hhh_bucket{le="+Inf"} 1 # {aa="bb"} 4
# TYPE ggh gaugehistogram
ggh_bucket{le="+Inf"} 1 # {cc="dd",xx="yy"} 4 123.123
# TYPE ii info
ii{foo="bar"} 1
# TYPE ss stateset
ss{ss="foo"} 1
ss{ss="bar"} 0
ss{A="a"} 0
# TYPE un unknown
_metric_starting_with_underscore 1
testmetric{_label_starting_with_underscore="foo"} 1
testmetric{label="\"bar\""} 1
# TYPE foo counter
foo_total 17.0 1520879607.789 # {xx="yy"} 5"#,
    );
    input.push_str("\n# HELP metric foo\x00bar");
    input.push_str("\nnull_byte_metric{a=\"abc\x00\"} 1");
    input.push_str("\n# EOF\n");
    let g = "go_gc_duration_seconds";
    let n = |x: &str| format!("__name__={x}");
    let got = om(&input).unwrap();
    let want = vec![
        E::Help(g.into(), "A summary of the GC invocation durations.".into()),
        E::Type(g.into(), MetricType::Summary),
        E::Unit(g.into(), "seconds".into()),
        sample(
            r#"go_gc_duration_seconds{quantile="0"}"#,
            4.9351e-05,
            None,
            &[&n(g), "quantile=0"],
        ),
        sample(
            r#"go_gc_duration_seconds{quantile="0.25"}"#,
            7.424100000000001e-05,
            None,
            &[&n(g), "quantile=0.25"],
        ),
        sample(
            r#"go_gc_duration_seconds{quantile="0.5",a="b"}"#,
            8.3835e-05,
            None,
            &[&n(g), "quantile=0.5", "a=b"],
        ),
        E::Help("nohelp1".into(), "".into()),
        E::Help("help2".into(), "escape \\ \n \\ \" \\x chars".into()),
        E::Unit("nounit".into(), "".into()),
        sample(
            r#"go_gc_duration_seconds{quantile="1.0",a="b"}"#,
            8.3835e-05,
            None,
            &[&n(g), "quantile=1.0", "a=b"],
        ),
        sample(
            "go_gc_duration_seconds_count",
            99.0,
            None,
            &["__name__=go_gc_duration_seconds_count"],
        ),
        sample(
            r#"some:aggregate:rate5m{a_b="c"}"#,
            1.0,
            None,
            &["__name__=some:aggregate:rate5m", "a_b=c"],
        ),
        E::Help(
            "go_goroutines".into(),
            "Number of goroutines that currently exist.".into(),
        ),
        E::Type("go_goroutines".into(), MetricType::Gauge),
        sample(
            "go_goroutines",
            33.0,
            Some(123123),
            &["__name__=go_goroutines"],
        ),
        E::Type("hh".into(), MetricType::Histogram),
        sample(
            r#"hh_bucket{le="+Inf"}"#,
            1.0,
            None,
            &["__name__=hh_bucket", "le=+Inf"],
        ),
        E::Type("gh".into(), MetricType::GaugeHistogram),
        sample(
            r#"gh_bucket{le="+Inf"}"#,
            1.0,
            None,
            &["__name__=gh_bucket", "le=+Inf"],
        ),
        E::Type("hhh".into(), MetricType::Histogram),
        sample(
            r#"hhh_bucket{le="+Inf"}"#,
            1.0,
            None,
            &["__name__=hhh_bucket", "le=+Inf"],
        ),
        E::Type("ggh".into(), MetricType::GaugeHistogram),
        sample(
            r#"ggh_bucket{le="+Inf"}"#,
            1.0,
            None,
            &["__name__=ggh_bucket", "le=+Inf"],
        ),
        E::Type("ii".into(), MetricType::Info),
        sample(r#"ii{foo="bar"}"#, 1.0, None, &["__name__=ii", "foo=bar"]),
        E::Type("ss".into(), MetricType::StateSet),
        sample(r#"ss{ss="foo"}"#, 1.0, None, &["__name__=ss", "ss=foo"]),
        sample(r#"ss{ss="bar"}"#, 0.0, None, &["__name__=ss", "ss=bar"]),
        sample(r#"ss{A="a"}"#, 0.0, None, &["__name__=ss", "A=a"]),
        E::Type("un".into(), MetricType::Unknown),
        sample(
            "_metric_starting_with_underscore",
            1.0,
            None,
            &["__name__=_metric_starting_with_underscore"],
        ),
        sample(
            r#"testmetric{_label_starting_with_underscore="foo"}"#,
            1.0,
            None,
            &["__name__=testmetric", "_label_starting_with_underscore=foo"],
        ),
        sample(
            r#"testmetric{label="\"bar\""}"#,
            1.0,
            None,
            &["__name__=testmetric", "label=\"bar\""],
        ),
        E::Type("foo".into(), MetricType::Counter),
        sample(
            "foo_total",
            17.0,
            Some(1520879607789),
            &["__name__=foo_total"],
        ),
        E::Help("metric".into(), "foo\x00bar".into()),
        sample(
            "null_byte_metric{a=\"abc\x00\"}",
            1.0,
            None,
            &["__name__=null_byte_metric", "a=abc\x00"],
        ),
        E::Eof(input.len()),
    ];
    assert_eq!(got, want);
}

#[test]
fn om_errors_from_prometheus_tests() {
    let o = Format::OpenMetrics;
    assert_eq!(accepts(o, "# EOF"), vec![E::Eof(5)]);
    assert_eq!(accepts(o, "# EOF\n"), vec![E::Eof(6)]);
    fails(o, "", 1, 1, "expected # EOF at end of input");
    fails(o, "\n", 1, 1, "at start of line, got end of line");
    fails(
        o,
        "metric",
        1,
        7,
        "expected value after metric, got end of input",
    );
    fails(o, "metric 1", 1, 9, "expected # EOF at end of input");
    fails(o, "metric 1\n", 2, 1, "expected # EOF at end of input");
    fails(
        o,
        "metric_total 1 # {aa=\"bb\"} 4",
        1,
        29,
        "expected # EOF at end of input",
    );
    fails(
        o,
        "a\n#EOF\n",
        1,
        2,
        "expected value after metric, got end of line",
    );
    fails(o, "\n\n#EOF\n", 1, 1, "got end of line");
    fails(o, " a 1\n#EOF\n", 1, 1, "at start of line, got \" \"");
    fails(o, "9\n#EOF\n", 1, 1, "at start of line, got \"9\"");
    fails(
        o,
        "# TYPE u untyped\n#EOF\n",
        1,
        10,
        "or unknown, got \"untyped\"",
    );
    fails(o, "# TYPE c counter \n#EOF\n", 1, 10, "got \"counter \"");
    fails(
        o,
        "#  TYPE c counter\n#EOF\n",
        1,
        3,
        "at start of line, got \" \"",
    );
    fails(
        o,
        "# TYPE \n#EOF\n",
        1,
        8,
        "expected metric name after TYPE, got end of line",
    );
    fails(
        o,
        "# TYPE m\n#EOF\n",
        1,
        9,
        "expected text in TYPE, got end of line",
    );
    fails(
        o,
        "# UNIT metric suffix\n#EOF\n",
        1,
        15,
        "suffix of metric \"metric\", got \"suffix\"",
    );
    fails(
        o,
        "# UNIT metricsuffix suffix\n#EOF\n",
        1,
        21,
        "suffix of metric \"metricsuffix\"",
    );
    fails(
        o,
        "# UNIT m suffix\n#EOF\n",
        1,
        10,
        "suffix of metric \"m\"",
    );
    fails(
        o,
        "# UNIT \n#EOF\n",
        1,
        8,
        "expected metric name after UNIT",
    );
    fails(o, "# UNIT m\n#EOF\n", 1, 9, "expected text in UNIT");
    fails(
        o,
        "# HELP \n#EOF\n",
        1,
        8,
        "expected metric name after HELP",
    );
    fails(o, "# HELP m\n#EOF\n", 1, 9, "expected text in HELP");
    fails(
        o,
        "a\t1\n#EOF\n",
        1,
        2,
        "expected value after metric, got \"\\t\"",
    );
    fails(o, "a 1\t2\n#EOF\n", 1, 3, "got \"1\\t2\" (invalid syntax)");
    fails(
        o,
        "a 1 2 \n#EOF\n",
        1,
        7,
        "after timestamp, got end of line",
    );
    fails(
        o,
        "a 1 2 #\n#EOF\n",
        1,
        6,
        "after timestamp, got TIMESTAMP \" #\"",
    );
    fails(
        o,
        "a 1 1z\n#EOF\n",
        1,
        5,
        "expected a float timestamp, got \"1z\"",
    );
    fails(o, " # EOF\n", 1, 1, "got \" \"");
    fails(
        o,
        "# EOF\na 1",
        2,
        1,
        "expected end of input after # EOF, got MNAME \"a\"",
    );
    fails(
        o,
        "# EOF\n\n",
        2,
        1,
        "expected end of input after # EOF, got end of line",
    );
    fails(
        o,
        "# EOFa 1",
        1,
        6,
        "expected end of input after # EOF, got MNAME \"a\"",
    );
    fails(o, "#\tTYPE c counter\n", 1, 2, "got \"\\t\"");
    fails(o, "# TYPE c  counter\n", 1, 10, "got \" counter\"");
    fails(
        o,
        "a 1 1 1\n# EOF\n",
        1,
        6,
        "after timestamp, got TIMESTAMP \" 1\"",
    );
    fails(
        o,
        "a{b='c'} 1\n# EOF\n",
        1,
        5,
        "expected label value, got \"'\"",
    );
    fails(
        o,
        "a{b=\"c\",} 1\n# EOF\n",
        1,
        9,
        "expected label name, got BCLOSE",
    );
    fails(
        o,
        "a{,b=\"c\"} 1\n# EOF\n",
        1,
        3,
        "expected label name or right brace, got COMMA",
    );
    fails(
        o,
        "a{b=\"c\"d=\"e\"} 1\n# EOF\n",
        1,
        8,
        "expected comma or right brace, got LNAME \"d\"",
    );
    fails(
        o,
        "a{b=\"c\",,d=\"e\"} 1\n# EOF\n",
        1,
        9,
        "expected label name, got COMMA",
    );
    fails(
        o,
        "a{b=\n# EOF\n",
        1,
        5,
        "expected label value, got end of line",
    );
    fails(
        o,
        b"a{\xff=\"foo\"} 1\n# EOF\n",
        1,
        3,
        "expected label name or right brace",
    );
    fails(
        o,
        b"a{b=\"\xff\"} 1\n# EOF\n",
        1,
        5,
        "expected valid UTF-8 in label value",
    );
    fails(o, "a true\n", 1, 3, "(invalid syntax)");
    fails(
        o,
        "something_weird{problem=\"\n# EOF\n",
        1,
        26,
        "expected label value, got end of line",
    );
    fails(o, "empty_label_name{=\"\"} 0\n# EOF\n", 1, 18, "got EQUAL");
    fails(
        o,
        "foo 1_2\n\n# EOF\n",
        1,
        5,
        "unsupported character in float",
    );
    fails(
        o,
        "foo 0x1p-3\n\n# EOF\n",
        1,
        5,
        "unsupported character in float",
    );
    fails(
        o,
        "foo 0x1P-3\n\n# EOF\n",
        1,
        5,
        "unsupported character in float",
    );
    fails(
        o,
        "foo 0 1_2\n\n# EOF\n",
        1,
        7,
        "unsupported character in float",
    );
    let c = "custom_metric_total 1 # {";
    fails(
        o,
        format!("{c}aa=bb}}\n# EOF\n"),
        1,
        29,
        "expected label value, got \"b\"",
    );
    fails(
        o,
        format!("{c}aa=\"bb\"}}\n# EOF\n"),
        1,
        34,
        "expected value after exemplar labels, got end of line",
    );
    fails(
        o,
        format!("{c}aa=\"bb\"}}"),
        1,
        34,
        "expected value after exemplar labels, got end of input",
    );
    fails(
        o,
        "custom_metric 1 # {aa=\"bb\"}",
        1,
        16,
        "ending in _total or _bucket before an exemplar, got \"custom_metric\"",
    );
    fails(
        o,
        format!("{c}aa=\"bb\",,cc=\"dd\"}} 1"),
        1,
        34,
        "expected label name, got COMMA",
    );
    fails(
        o,
        format!("{c}aa=\"bb\"}} 1_2"),
        1,
        35,
        "unsupported character in float",
    );
    fails(
        o,
        format!("{c}aa=\"bb\"}} 0x1p-3"),
        1,
        35,
        "unsupported character in float",
    );
    fails(o, format!("{c}aa=\"bb\"}} true"), 1, 35, "(invalid syntax)");
    fails(
        o,
        format!("{c}aa=\"bb\",cc=}}"),
        1,
        37,
        "expected label value, got \"}\"",
    );
    fails(
        o,
        format!("{c}aa=\\\"\u{ff}\"}} 9.0"),
        1,
        29,
        "expected label value, got \"\\\\\"",
    );
    fails(o, "{b=\"c\",} 1", 1, 1, "got \"{\"");
    fails(
        o,
        "a 1 NaN",
        1,
        5,
        "expected a finite timestamp, got \"NaN\"",
    );
    fails(o, "a 1 -Inf", 1, 5, "expected a finite timestamp");
    fails(o, "a 1 Inf", 1, 5, "expected a finite timestamp");
    let h = "# TYPE hhh histogram\nhhh_bucket{le=\"+Inf\"} 1 # {aa=\"bb\"} 4";
    fails(
        o,
        format!("{h} NaN"),
        2,
        39,
        "expected a finite exemplar timestamp, got \"NaN\"",
    );
    fails(
        o,
        format!("{h} -Inf"),
        2,
        39,
        "expected a finite exemplar timestamp",
    );
    fails(
        o,
        format!("{h} Inf"),
        2,
        39,
        "expected a finite exemplar timestamp",
    );
    // NUL bytes.
    for ok in [
        "null_byte_metric{a=\"abc\x00\"} 1\n# EOF\n",
        "a{b=\"\x00ss\"} 1\n# EOF\n",
        "a{b=\"\x00\"} 1\n# EOF\n",
        "a{b=\"\x00\"} 1\n# EOF",
    ] {
        accepts(o, ok);
    }
    fails(
        o,
        "a{b=\x00\"ssss\"} 1\n# EOF\n",
        1,
        5,
        "expected label value, got \"\\x00\"",
    );
    fails(
        o,
        "a{b=\"\x00",
        1,
        7,
        "expected label value, got end of input",
    );
    fails(
        o,
        "a{b\x00=\"hiih\"}\t1",
        1,
        4,
        "expected equal sign after label name",
    );
    fails(
        o,
        "a\x00{b=\"ddd\"} 1",
        1,
        2,
        "expected value after metric, got \"\\x00\"",
    );
    fails(o, "#", 1, 2, "got end of input");
    fails(o, "# H", 1, 4, "got end of input");
    fails(
        o,
        format!("{c}b=\x00\"ssss\"}} 1\n"),
        1,
        28,
        "expected label value, got \"\\x00\"",
    );
    fails(
        o,
        format!("{c}b=\"\x00ss\"}} 1\n"),
        1,
        29,
        "expected label value, got \"\\x00\"",
    );
}

#[test]
fn om_timestamps_and_exemplars() {
    let o = Format::OpenMetrics;
    let got = accepts(
        o,
        "a 1 1.5\na 1 -1.5\na 1 1e3\na 1 0.0015\na 1 1e300\na_total 1 2 # {} 3\na_bucket 1 # {a=\"\\\"\"} 3 4.5\n# EOF\n",
    );
    let ts: Vec<Option<i64>> = got
        .iter()
        .filter_map(|e| match e {
            E::Sample(_, _, t, _) => Some(*t),
            _ => None,
        })
        .collect();
    assert_eq!(
        ts,
        vec![
            Some(1500),
            Some(-1500),
            Some(1_000_000),
            Some(1),
            Some(i64::MIN),
            Some(2000),
            None
        ]
    );
    fails(
        o,
        "a_total 1 # {a=\"b\"} 1 2 3\n# EOF\n",
        1,
        24,
        "expected end of line after exemplar timestamp",
    );
    fails(
        o,
        "a_total 1 # {a=\"b\"}  1\n# EOF\n",
        1,
        21,
        "expected value after exemplar labels, got \" \"",
    );
}

#[test]
fn om_eof_offsets_allow_document_sequences() {
    let input = b"a 1\n# EOF\nb 2\n# EOF\n";
    let mut p = Parser::new(input, Format::OpenMetrics);
    assert!(matches!(p.next_entry(), Ok(Some(Entry::Sample { .. }))));
    let Ok(Some(Entry::Eof { next_offset })) = p.next_entry() else {
        panic!()
    };
    assert_eq!(next_offset, 10);
    let e = p.next_entry().unwrap_err();
    assert_eq!((e.line, e.column), (3, 1));
    // The caller starts the next document at next_offset, with the right line number.
    let mut q = Parser::with_first_line(&input[next_offset..], Format::OpenMetrics, 3);
    assert!(matches!(q.next_entry(), Ok(Some(Entry::Sample { .. }))));
    assert_eq!(q.line(), 3);
    assert!(matches!(
        q.next_entry(),
        Ok(Some(Entry::Eof { next_offset: 10 }))
    ));
    assert_eq!(q.next_entry(), Ok(None));
    // NULs after "# EOF\n" are swallowed by its token.
    assert_eq!(
        accepts(Format::OpenMetrics, "# EOF\n\x00\x00"),
        vec![E::Eof(8)]
    );
}

#[test]
fn om_labels_checks() {
    let o = Format::OpenMetrics;
    fails(
        o,
        "foo{a=\"1\",a=\"2\"} 1\n# EOF\n",
        1,
        1,
        "expected unique label names",
    );
    assert_eq!(
        accepts(o, "foo{} 1\n# HELP m a\n\x00\x00b 1\n# EOF\n"),
        vec![
            sample("foo{}", 1.0, None, &["__name__=foo"]),
            E::Help("m".into(), "a\n\x00".into()),
            sample("b", 1.0, None, &["__name__=b"]),
            E::Eof(31),
        ]
    );
}

#[test]
fn errors_report_absolute_lines_in_blocks() {
    let input = b"a 1\nb 2\nc x\n";
    let e = parse_all(input, Format::Prometheus).unwrap_err();
    assert_eq!((e.line, e.column), (3, 3));
    let mut p = Parser::with_first_line(&input[8..], Format::Prometheus, 3);
    let e = p.next_entry().unwrap_err();
    assert_eq!(
        e.to_string(),
        "3:3: expected a float value, got \"x\" (invalid syntax)"
    );
    assert_eq!(p.line(), 3);
    // The error sticks.
    assert_eq!(p.next_entry().unwrap_err(), e);
}

#[test]
fn detect_format_rules() {
    assert_eq!(detect_format(b""), Format::Prometheus);
    assert_eq!(detect_format(b"a 1\n"), Format::Prometheus);
    assert_eq!(detect_format(b"a 1\n# EOF\n"), Format::OpenMetrics);
    assert_eq!(detect_format(b"a 1\n# EOF"), Format::OpenMetrics);
    assert_eq!(detect_format(b"# EOF\n"), Format::OpenMetrics);
    assert_eq!(detect_format(b"# UNIT a_s s\na_s 1\n"), Format::OpenMetrics);
    assert_eq!(
        detect_format(b"# TYPE a unknown\na 1\n"),
        Format::OpenMetrics
    );
    assert_eq!(
        detect_format(b"# TYPE a untyped\na 1\n"),
        Format::Prometheus
    );
    assert_eq!(detect_format(b"# EOF\nb 1\n# EOF\n"), Format::OpenMetrics);
    assert_eq!(
        Format::from_content_type("application/openmetrics-text; version=1.0.0"),
        Format::OpenMetrics
    );
    assert_eq!(
        Format::from_content_type("text/plain; version=0.0.4"),
        Format::Prometheus
    );
    assert_eq!(Format::from_content_type(""), Format::Prometheus);
}

#[test]
fn unescape_like_go_replacer() {
    assert_eq!(&*unescape_label_value(b"plain"), b"plain");
    assert_eq!(&*unescape_label_value(b"a\\\\n"), b"a\\n");
    assert_eq!(&*unescape_label_value(b"\\\"\\n\\t\\"), b"\"\n\\t\\");
    assert_eq!(
        &*unescape_help(b"\\\"\\n\\\\", Format::Prometheus),
        b"\\\"\n\\"
    );
    assert_eq!(
        &*unescape_help(b"\\\"\\n\\\\", Format::OpenMetrics),
        b"\"\n\\"
    );
}

/// Lines built from fragments near the grammar, to reach both paths and most error branches.
fn near_grammar_line() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop::sample::select(vec![
        "a",
        "foo_total",
        "x_bucket",
        "n:m",
        "_",
        "{",
        "}",
        "=",
        ",",
        "\"",
        "\"v\"",
        "\"a\\\"b\"",
        "\"\\n\"",
        "\\",
        " ",
        "  ",
        "\t",
        "#",
        "# ",
        "# HELP ",
        "# TYPE ",
        "# UNIT ",
        "# EOF",
        "counter",
        "gauge",
        "untyped",
        "unknown",
        "1",
        "-1.5",
        "1e3",
        "NaN",
        "+Inf",
        "-nan",
        "1_0",
        "0x1p3",
        "123",
        "1.5",
        " # {",
        "le=\"+Inf\"",
        "\r",
        "\x00",
        "\u{e9}",
        "\n",
        "9223372036854775808",
    ]);
    prop::collection::vec(piece, 0..12).prop_map(|v| v.concat().into_bytes())
}

fn sample_line() -> impl Strategy<Value = Vec<u8>> {
    (
        "[a-z_:][a-z0-9_:]{0,8}",
        prop::collection::vec(("[a-z_][a-z0-9_]{0,5}", "[ -~]{0,6}"), 0..4),
        prop::sample::select(vec![
            "1",
            "-2.5",
            "NaN",
            "+Inf",
            "1e-3",
            "x",
            "-0",
            "+.5",
            "5.",
            "1767225600.123",
            "123456789012345",
            "1234567890123456",
            "12345678901234.56",
            "0.000000000000001",
            "00000000000000000001",
        ]),
        prop::option::of(prop::sample::select(vec![
            "1700000000123",
            "1700000000.123",
            "5",
        ])),
    )
        .prop_map(|(name, labels, v, ts)| {
            let mut s = name;
            if !labels.is_empty() {
                let inner: Vec<String> =
                    labels.iter().map(|(n, v)| format!("{n}=\"{v}\"")).collect();
                s.push('{');
                s.push_str(&inner.join(","));
                s.push('}');
            }
            s.push(' ');
            s.push_str(v);
            if let Some(ts) = ts {
                s.push(' ');
                s.push_str(ts);
            }
            s.push('\n');
            s.into_bytes()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn fuzz_body_on_near_grammar_documents(
        lines in prop::collection::vec(prop_oneof![near_grammar_line(), sample_line()], 0..8),
        eof in any::<bool>(),
    ) {
        let mut doc = lines.concat();
        if eof {
            doc.extend_from_slice(b"# EOF\n");
        }
        fuzz_parse(&doc);
    }

    #[test]
    fn fuzz_body_on_random_bytes(data in prop::collection::vec(any::<u8>(), 0..200)) {
        fuzz_parse(&data);
    }

    /// Splitting a 0.0.4 document at line boundaries and parsing the blocks independently gives
    /// the entries and the first error of one pass, when no block stops early.
    #[test]
    fn prom_blocks_match_one_pass(
        lines in prop::collection::vec(prop_oneof![4 => sample_line(), 1 => near_grammar_line()], 1..12),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
    ) {
        let doc = lines.concat();
        let whole = collect(&doc, 0, 1);
        let starts: Vec<usize> = std::iter::once(0).chain(doc.iter().enumerate().filter(|(_, &c)| c == b'\n').map(|(i, _)| i + 1)).filter(|&i| i < doc.len()).collect();
        let mut bounds: Vec<usize> = if starts.is_empty() {
            Vec::new()
        } else {
            cuts.iter().map(|c| starts[c.index(starts.len())]).collect()
        };
        bounds.push(0);
        bounds.push(doc.len());
        bounds.sort_unstable();
        bounds.dedup();
        let mut joined = Vec::new();
        let mut stopped = None;
        for w in bounds.windows(2) {
            let first_line = 1 + doc[..w[0]].iter().filter(|&&c| c == b'\n').count() as u64;
            let (entries, end) = collect(&doc[w[0]..w[1]], w[0], first_line);
            joined.extend(entries);
            if end.is_some() {
                stopped = end;
                break;
            }
        }
        let (want, want_end) = whole;
        if stopped.is_none() {
            // Every block parsed cleanly to its end: exactly the one-pass result.
            prop_assert_eq!(&joined, &want);
            prop_assert_eq!(want_end, None);
        } else {
            // Up to the first block that fails or stops early, entries are those of one pass; the
            // caller re-parses from that block's start (a label value may span the cut).
            prop_assert!(joined.len() <= want.len() && want[..joined.len()] == joined[..]);
        }
    }
}

/// Entries of a 0.0.4 block as strings (offsets made absolute), plus how it ended early, if it did.
fn collect(block: &[u8], base: usize, first_line: u64) -> (Vec<String>, Option<String>) {
    let mut p = Parser::with_first_line(block, Format::Prometheus, first_line);
    let mut out = Vec::new();
    let mut labels = Vec::new();
    loop {
        match p.next_entry() {
            Ok(Some(e)) => {
                let l = if matches!(e, Entry::Sample { .. }) {
                    format!("{:?}", p.labels(&mut labels).map(|_| labels.clone()))
                } else {
                    String::new()
                };
                out.push(format!("{} {} {l}", p.line(), comparable(&Ok(Some(e)))));
            }
            Ok(None) => {
                return (
                    out,
                    p.truncated_at()
                        .map(|t| format!("truncated at {}", base + t)),
                );
            }
            Err(e) => return (out, Some(format!("error {e}"))),
        }
    }
}

#[test]
fn known_series_fast_path_reads_exactly_what_next_entry_reads() {
    let doc: &[u8] = b"a 1\na {b=\"c\"} 2\na\t3 7\nx{a=\"b\"} 4\nx{a=\"b\"}5\nx{a=\"b\"} 6 8\nx{a=\"b\"}  7\n\nx{a=\"b\",} 9\n";
    let guesses: [&[u8]; 3] = [b"a", b"x{a=\"b\"}", b"a {b=\"c\"}"];
    let mut plain = Parser::new(doc, Format::Prometheus);
    let mut want = Vec::new();
    while let Some(e) = plain.next_entry().unwrap() {
        want.push((format!("{e:?}"), plain.line()));
    }
    for g in guesses {
        let mut p = Parser::new(doc, Format::Prometheus);
        let mut got = Vec::new();
        loop {
            let e = match p.next_sample_for(g) {
                Some(e) => e,
                None => match p.next_entry().unwrap() {
                    Some(e) => e,
                    None => break,
                },
            };
            got.push((format!("{e:?}"), p.line()));
        }
        assert_eq!(got, want, "guessing {:?}", String::from_utf8_lossy(g));
    }
    // A guess that matches only a prefix of the line's series is not taken.
    let mut p = Parser::new(b"a {b=\"c\"} 2\n", Format::Prometheus);
    assert!(p.next_sample_for(b"a").is_none());
    let mut p = Parser::new(b"ab 2\n", Format::Prometheus);
    assert!(p.next_sample_for(b"a").is_none());
}
