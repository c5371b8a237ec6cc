//! Prometheus 2.42's `template_test.go` cases (input → output, carried over as facts) and Go
//! `text/template` behaviours the rules depend on.

use super::*;
use proptest::prelude::*;

/// Answers every query with a fixed vector (as Prometheus' test query function does).
struct Fixed(Vec<QuerySample>);
impl QueryFn for Fixed {
    fn query(&self, expr: &str) -> Result<Vec<QuerySample>, String> {
        if expr == "fail" {
            return Err("query failed".into());
        }
        Ok(self.0.clone())
    }
}

fn sample(pairs: &[(&str, &str)], value: f64) -> QuerySample {
    QuerySample {
        labels: Labels::from_pairs(pairs),
        value,
    }
}

fn run_with(text: &str, q: &[QuerySample], value: f64) -> Result<String, TemplateError> {
    let labels = Labels::from_pairs(&[("instance", "a:9100"), ("job", "node")]);
    let ext = Labels::from_pairs(&[("cluster", "c1")]);
    let d = TemplateData {
        labels: &labels,
        external_labels: &ext,
        external_url: "http://testhost:9090/path/prefix",
        value,
    };
    expand("test", text, &d, &Fixed(q.to_vec()))
}

fn run(text: &str) -> String {
    match run_with(text, &[], 1e6) {
        Ok(s) => s,
        Err(e) => panic!("{text}: {e}"),
    }
}

fn run_err(text: &str) -> String {
    match run_with(text, &[], 1e6) {
        Ok(s) => panic!("{text}: expected an error, got {s:?}"),
        Err(e) => e.to_string(),
    }
}

/// Offset of the user's text after the prepended definitions (error columns include them).
fn defs() -> usize {
    ALERT_DEFS.len()
}

#[test]
fn prometheus_basic_cases() {
    assert_eq!(run("plain text"), "plain text");
    assert_eq!(run("{{ 1 }}"), "1");
    assert_eq!(run("{{ \"<b>\" }}"), "<b>");
    assert_eq!(run("{{ \"<b>\" | safeHtml }}"), "<b>");
    assert_eq!(
        run("{{define \"x\"}}{{.arg0}} {{.arg1}}{{end}}{{template \"x\" (args 1 \"2\")}}"),
        "1 2"
    );
    assert_eq!(run("{{ reReplaceAll \"(a)b\" \"x$1\" \"ab\" }}"), "xa");
    assert_eq!(run("{{ \"aa bb CC\" | title }}"), "Aa Bb CC");
    assert_eq!(run("{{ \"aa bb CC\" | toUpper }}"), "AA BB CC");
    assert_eq!(run("{{ \"aA bB CC\" | toLower }}"), "aa bb cc");
    assert_eq!(
        run("{{ match \"a+\" \"aa\" }} {{ match \"a+\" \"b\" }}"),
        "true false"
    );
    assert_eq!(run("{{ graphLink \"up\" }}"), "/graph?g0.expr=up&g0.tab=0");
    assert_eq!(run("{{ tableLink \"up\" }}"), "/graph?g0.expr=up&g0.tab=1");
    assert_eq!(run("{{ pathPrefix }}"), "/path/prefix");
    assert_eq!(run("{{ externalURL }}"), "http://testhost:9090/path/prefix");
    assert_eq!(
        run("{{ printf \"%0.2f\" (parseDuration \"1h2m10ms\") }}"),
        "3720.01"
    );
}

#[test]
fn prometheus_query_cases() {
    let one = [sample(&[], 1.5)];
    assert_eq!(
        run_with("{{ query \"1.5\" | first | value }}", &one, 0.0).unwrap(),
        "1.5"
    );
    let a = [sample(&[("__name__", "metric"), ("instance", "a")], 11.0)];
    assert_eq!(
        run_with(
            "{{ query \"metric{instance='a'}\" | first | value }}",
            &a,
            0.0
        )
        .unwrap(),
        "11"
    );
    assert_eq!(
        run_with(
            "{{ query \"metric{instance='a'}\" | first | label \"instance\" }}",
            &a,
            0.0
        )
        .unwrap(),
        "a"
    );
    assert_eq!(
        run_with(
            "{{ query \"metric{instance='a'}\" | first | label \"foo\" }}",
            &a,
            0.0
        )
        .unwrap(),
        ""
    );
    assert_eq!(
        run_with(
            "{{ $x := query \"metric\" | first }}{{ $x.Labels.foo }}",
            &a,
            0.0
        )
        .unwrap(),
        ""
    );
    let v = [sample(&[("__name__", "metric"), ("__value__", "a")], 11.0)];
    assert_eq!(
        run_with(
            "{{ query \"metric{__value__='a'}\" | first | strvalue }}",
            &v,
            0.0
        )
        .unwrap(),
        "a"
    );
    let two = [
        sample(&[("__name__", "metric"), ("instance", "b")], 21.0),
        sample(&[("__name__", "metric"), ("instance", "a")], 11.0),
    ];
    assert_eq!(
        run_with("{{ range query \"metric\" | sortByLabel \"instance\" }}{{.Labels.instance}}:{{.Value}}: {{end}}", &two, 0.0)
            .unwrap(),
        "a:11: b:21: "
    );
    // Errors: Go's message, the command and its position (after the prepended definitions).
    let e = run_with("{{ query \"missing\" | first }}", &[], 0.0)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "error executing template test: template: test:1:{}: executing \"test\" at <first>: error calling first: first() called on vector with no elements",
            defs() + 21
        )
    );
    let e = run_with("{{ (query \"missing\").banana }}", &[], 0.0)
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with("can't evaluate field banana in type template.queryResult"),
        "{e}"
    );
    let e = run_with("{{ query \"fail\" }}", &[], 0.0)
        .unwrap_err()
        .to_string();
    assert!(e.ends_with("error calling query: query failed"), "{e}");
}

#[test]
fn prometheus_strip_port_and_domain() {
    for (i, o) in [
        ("foo.example.com", "foo.example.com"),
        ("foo.example.com:12345", "foo.example.com"),
        ("192.0.2.1", "192.0.2.1"),
        ("192.0.2.1:12345", "192.0.2.1"),
        ("2001:0DB8::1", "2001:0DB8::1"),
        ("[2001:0DB8::1]:12345", "2001:0DB8::1"),
        ("[2001:0DB8::1]::12345", "[2001:0DB8::1]::12345"),
    ] {
        assert_eq!(run(&format!("{{{{ {i:?} | stripPort }}}}")), o, "{i}");
    }
    for (i, o) in [
        ("foo.example.com", "foo"),
        ("foo.example.com:12345", "foo:12345"),
        ("192.0.2.1", "192.0.2.1"),
        ("192.0.2.1:12345", "192.0.2.1:12345"),
        ("2001:0DB8::1", "2001:0DB8::1"),
        ("[2001:0DB8::1]:12345", "[2001:0DB8::1]:12345"),
        ("[2001:0DB8::1]::12345", "[2001:0DB8::1]::12345"),
    ] {
        assert_eq!(run(&format!("{{{{ {i:?} | stripDomain }}}}")), o, "{i}");
    }
}

/// `{{ range }}` over each input with `f` applied, as Prometheus' table tests do.
fn each(f: &str, inputs: &[&str]) -> String {
    let body: String = inputs
        .iter()
        .map(|i| format!("{{{{ {f} {i} }}}}:"))
        .collect();
    run(&body)
}

#[test]
fn prometheus_humanize_cases() {
    assert_eq!(
        each("humanize", &["0.0", "1.0", "1234567.0", ".12"]),
        "0:1:1.235M:120m:"
    );
    assert_eq!(
        each(
            "humanize",
            &["\"0.0\"", "\"1.0\"", "\"1234567.0\"", "\".12\""]
        ),
        "0:1:1.235M:120m:"
    );
    assert_eq!(
        each(
            "humanize",
            &["0", "-1", "1", "1234567", "9223372036854775807"]
        ),
        "0:-1:1:1.235M:9.223E:"
    );
    assert_eq!(each("humanize", &["18446744073709551615"]), "18.45E:");
    assert_eq!(
        each("humanize1024", &["0.0", "1.0", "1048576.0", ".12"]),
        "0:1:1Mi:0.12:"
    );
    assert_eq!(
        each(
            "humanize1024",
            &["\"0.0\"", "\"1.0\"", "\"1048576.0\"", "\".12\""]
        ),
        "0:1:1Mi:0.12:"
    );
    assert_eq!(
        each(
            "humanize1024",
            &["0", "-1", "1", "1234567", "9223372036854775807"]
        ),
        "0:-1:1:1.177Mi:8Ei:"
    );
    assert_eq!(each("humanize1024", &["18446744073709551615"]), "16Ei:");
    assert_eq!(
        each(
            "humanizeDuration",
            &[
                "0.0",
                "1.0",
                "60.0",
                "3600.0",
                "86400.0",
                "90000.0",
                "-183845.0",
                "899.99"
            ]
        ),
        "0s:1s:1m 0s:1h 0m 0s:1d 0h 0m 0s:1d 1h 0m 0s:-2d 3h 4m 5s:14m 59s:"
    );
    assert_eq!(
        each(
            "humanizeDuration",
            &["\"0\"", "\"1\"", "\"60\"", "\"3600\"", "\"86400\""]
        ),
        "0s:1s:1m 0s:1h 0m 0s:1d 0h 0m 0s:"
    );
    assert_eq!(
        each(
            "humanizeDuration",
            &[".1", ".0001", ".12345", "60.1", "60.5", "1.2345", "12.345"]
        ),
        "100ms:100us:123.5ms:1m 0s:1m 0s:1.234s:12.35s:"
    );
    assert_eq!(
        each("humanizeDuration", &["0", "-1", "1", "1234567"]),
        "0s:-1s:1s:14d 6h 56m 7s:"
    );
    assert_eq!(run("{{ humanizeDuration 3661 }}"), "1h 1m 1s");
    let specials = ["\"+Inf\"", "\"-Inf\"", "\"NaN\""];
    let all: String = specials
        .iter()
        .map(|i| format!("{{{{ humanize {i} }}}}:{{{{ humanize1024 {i} }}}}:{{{{ humanizeDuration {i} }}}}:{{{{humanizeTimestamp {i}}}}}:"))
        .collect();
    assert_eq!(
        run(&all),
        "+Inf:+Inf:+Inf:+Inf:-Inf:-Inf:-Inf:-Inf:NaN:NaN:NaN:NaN:"
    );
    assert_eq!(
        run("{{ -0.22222 | humanizePercentage }}:{{ 0.0 | humanizePercentage }}:{{ 0.1234567 | humanizePercentage }}:{{ 1.23456 | humanizePercentage }}"),
        "-22.22%:0%:12.35%:123.5%"
    );
    assert_eq!(
        each(
            "humanizePercentage",
            &["0", "-1", "1", "1234567", "9223372036854775807"]
        ),
        "0%:-100%:100%:1.235e+08%:9.223e+20%:"
    );
    assert_eq!(run("{{ humanizePercentage 0.1234 }}"), "12.34%");
    assert_eq!(
        each("humanizeTimestamp", &["0", "-1", "1", "1234567", "9223372036"]),
        "1970-01-01 00:00:00 +0000 UTC:1969-12-31 23:59:59 +0000 UTC:1970-01-01 00:00:01 +0000 UTC:1970-01-15 06:56:07 +0000 UTC:2262-04-11 23:47:16 +0000 UTC:"
    );
    assert_eq!(
        run("{{ 1435065584.128 | humanizeTimestamp }}"),
        "2015-06-23 13:19:44.128 +0000 UTC"
    );
    assert_eq!(
        run("{{ \"1435065584.128\" | humanizeTimestamp }}"),
        "2015-06-23 13:19:44.128 +0000 UTC"
    );
    assert_eq!(
        run("{{ 1435065584.128 | toTime }}"),
        "2015-06-23 13:19:44.128 +0000 UTC"
    );
}

#[test]
fn prometheus_humanize_errors() {
    for f in ["humanize", "humanize1024", "humanizeDuration"] {
        let e = run_err(&format!("{{{{ {f} \"one\" }}}}"));
        assert_eq!(
            e,
            format!(
                "error executing template test: template: test:1:{}: executing \"test\" at <{f} \"one\">: error calling {f}: strconv.ParseFloat: parsing \"one\": invalid syntax",
                defs() + 3
            )
        );
    }
    let e = run_err("{{ \"one\" | humanizePercentage }}");
    assert!(
        e.contains(&format!(
            "test:1:{}: executing \"test\" at <humanizePercentage>",
            defs() + 11
        )),
        "{e}"
    );
    let e = run_err("{{ -9223372036854775808 | humanizeTimestamp }}");
    assert!(e.ends_with("error calling humanizeTimestamp: -9.223372036854776e+18 cannot be represented as a nanoseconds timestamp since it overflows int64"), "{e}");
    let e = run_err("{{ 18446744073709551615 | humanizeTimestamp }}");
    assert!(e.ends_with("1.8446744073709552e+19 cannot be represented as a nanoseconds timestamp since it overflows int64"), "{e}");
}

#[test]
fn prometheus_parse_errors() {
    let e = Template::parse("test", "{{").unwrap_err().to_string();
    assert_eq!(e, "template: test:1: unclosed action");
    let e = Template::parse("test", "{{ \u{a0}}}")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "template: test:1: unrecognized character in action: U+00A0"
    );
    let e = Template::parse("__alert_X", "{{ nosuch 1 }}")
        .unwrap_err()
        .to_string();
    assert_eq!(e, "template: __alert_X:1: function \"nosuch\" not defined");
    let e = Template::parse("t", "a\nb\n{{ $x }}")
        .unwrap_err()
        .to_string();
    assert_eq!(e, "template: t:3: undefined variable \"$x\"");
    assert!(Template::parse("t", "{{ if 1 }}x").is_err());
    assert!(Template::parse("t", "{{ end }}").is_err());
    assert!(Template::parse("t", "{{ else }}").is_err());
    assert!(Template::parse("t", "{{ break }}").is_err());
    assert!(Template::parse("t", "{{ range . }}{{ break }}{{ end }}").is_ok());
    assert!(Template::parse("t", "{{ 1 | 2 }}").is_err());
    assert!(Template::parse("t", "{{ .a.b 1 }}").is_ok());
    assert!(Template::parse("t", "{{ .a.b c }}").is_err());
    assert!(Template::parse("t", "{{ \"unterminated }}").is_err());
    assert!(Template::parse("t", "{{ 3x }}").is_err());
    assert!(Template::parse("t", "{{ /* comment */ }}").is_err());
    assert_eq!(run("a {{/* comment */}} b"), "a  b");
    assert_eq!(run("a {{- /* comment */ -}} b"), "ab");
}

#[test]
fn alert_variables_and_fields() {
    assert_eq!(
        run("{{ $labels.job }}/{{ .Labels.instance }}/{{ $externalLabels.cluster }}"),
        "node/a:9100/c1"
    );
    assert_eq!(
        run("{{ $externalURL }}|{{ .ExternalURL }}"),
        "http://testhost:9090/path/prefix|http://testhost:9090/path/prefix"
    );
    // missingkey=zero on map[string]string: the zero string, not <no value>.
    assert_eq!(
        run("[{{ $labels.missing }}][{{ index $labels \"missing\" }}]"),
        "[][]"
    );
    assert_eq!(run("{{ index $labels \"job\" }}"), "node");
    assert_eq!(run("{{ $value }}"), "1e+06");
    assert_eq!(
        run_with("{{ $value }} {{ .Value }}", &[], 0.1).unwrap(),
        "0.1 0.1"
    );
    assert_eq!(run_with("{{ $value }}", &[], 100.0).unwrap(), "100");
    assert_eq!(run("{{ $labels }}"), "map[instance:a:9100 job:node]");
    assert_eq!(run("{{ len $labels }}"), "2");
    let e = run_err("{{ .Nope }}");
    assert!(
        e.ends_with("can't evaluate field Nope in type struct"),
        "{e}"
    );
}

#[test]
fn go_trim_markers() {
    assert_eq!(run("a  {{- 1 -}}  b"), "a1b");
    assert_eq!(run("a \n {{- 1 }} \n b"), "a1 \n b");
    assert_eq!(run("a {{ 1 -}} \n\t b"), "a 1b");
    assert_eq!(run("{{ -1 }}"), "-1");
    assert_eq!(run("{{- -1 -}}"), "-1");
}

#[test]
fn go_control_structures() {
    assert_eq!(
        run("{{ if eq $labels.job \"node\" }}yes{{ else }}no{{ end }}"),
        "yes"
    );
    assert_eq!(run("{{ if eq $labels.job \"x\" }}1{{ else if eq $labels.job \"node\" }}2{{ else }}3{{ end }}"), "2");
    assert_eq!(
        run("{{ if false }}1{{ else if false }}2{{ else }}3{{ end }}"),
        "3"
    );
    assert_eq!(run("{{ with $labels.job }}[{{ . }}]{{ end }}{{ with $labels.nope }}x{{ else }}empty{{ end }}"), "[node]empty");
    assert_eq!(
        run("{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}"),
        "instance=a:9100;job=node;"
    );
    assert_eq!(run("{{ range $labels }}{{ . }};{{ end }}"), "a:9100;node;");
    assert_eq!(
        run("{{ range $i, $e := args }}x{{ else }}none{{ end }}"),
        "none"
    );
    // Map keys range in sorted order.
    assert_eq!(
        run("{{ range $k, $v := args 3 1 2 }}{{ $k }}:{{ $v }} {{ end }}"),
        "arg0:3 arg1:1 arg2:2 "
    );
    let q = [
        sample(&[("i", "1")], 1.0),
        sample(&[("i", "2")], 2.0),
        sample(&[("i", "3")], 3.0),
    ];
    assert_eq!(
        run_with("{{ range $i, $s := query \"x\" }}{{ if eq $i 1 }}{{ continue }}{{ end }}{{ if eq $i 2 }}{{ break }}{{ end }}{{ $i }}:{{ $s.Value }};{{ end }}", &q, 0.0)
            .unwrap(),
        "0:1;"
    );
    assert_eq!(
        run_with("{{ range query \"x\" }}{{ .Labels.i }}{{ end }}", &q, 0.0).unwrap(),
        "123"
    );
    assert_eq!(
        run_with(
            "{{ len (query \"x\") }} {{ (index (query \"x\") 2).Value }}",
            &q,
            0.0
        )
        .unwrap(),
        "3 3"
    );
    assert_eq!(
        run_with(
            "{{ range slice (query \"x\") 1 }}{{ .Value }}{{ end }}",
            &q,
            0.0
        )
        .unwrap(),
        "23"
    );
}

#[test]
fn go_variable_scope() {
    assert_eq!(
        run("{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}"),
        "2"
    );
    assert_eq!(
        run("{{ $x := 1 }}{{ if true }}{{ $x := 2 }}{{ $x }}{{ end }}{{ $x }}"),
        "21"
    );
    assert!(Template::parse("t", "{{ if true }}{{ $y := 2 }}{{ end }}{{ $y }}").is_err());
    assert_eq!(
        run("{{ $x := \"a\" }}{{ range $labels }}{{ $x = . }}{{ end }}{{ $x }}"),
        "node"
    );
    // A template call sees only `$` = its dot.
    assert_eq!(
        run("{{ define \"t\" }}{{ $ }}{{ end }}{{ template \"t\" 5 }}"),
        "5"
    );
    assert!(Template::parse("t", "{{ $x := 1 }}{{ define \"t\" }}{{ $x }}{{ end }}").is_err());
    assert_eq!(
        run("{{ block \"b\" $labels.job }}<{{ . }}>{{ end }}"),
        "<node>"
    );
}

#[test]
fn go_literals_and_builtins() {
    assert_eq!(
        run("{{ 1.5 }} {{ 1e3 }} {{ 0x1F }} {{ 'a' }} {{ `raw\\n` }} {{ \"q\\t\" }} {{ true }}"),
        "1.5 1000 31 97 raw\\n q\t true"
    );
    assert_eq!(run("{{ print 1 2 \"a\" \"b\" 3 }}"), "1 2ab3");
    assert_eq!(run("{{ println 1 \"a\" }}"), "1 a\n");
    assert_eq!(run("{{ printf \"%s=%d %v %5.1f|%-4s|%q %x %e %g\" \"a\" 42 1.5 2.74681 \"b\" \"c\" 255 1234.5678 0.000012345 }}"), "a=42 1.5   2.7|b   |\"c\" ff 1.234568e+03 1.2345e-05");
    assert_eq!(run("{{ printf \"%.2f\" $value }}"), "1000000.00");
    assert_eq!(
        run("{{ and 1 0 2 }} {{ or 0 \"\" \"x\" }} {{ not true }} {{ and 1 2 }}"),
        "0 x false 2"
    );
    assert_eq!(run("{{ eq 1 2 3 1 }} {{ ne \"a\" \"b\" }} {{ lt 1 2 }} {{ le 2 2 }} {{ gt 1.5 2.5 }} {{ ge \"b\" \"a\" }}"), "true true true true false true");
    assert!(
        run_err("{{ eq 1 1.0 }}").ends_with("error calling eq: incompatible types for comparison")
    );
    assert_eq!(
        run("{{ html \"<a href='x'>&\" }}"),
        "&lt;a href=&#39;x&#39;&gt;&amp;"
    );
    assert_eq!(run("{{ js \"it's <b>\" }}"), "it\\'s \\u003Cb\\u003E");
    assert_eq!(run("{{ urlquery \"a b&c=d\" }}"), "a+b%26c%3Dd");
    assert_eq!(
        run("{{ len \"abc\" }} {{ index \"abc\" 1 }} {{ slice \"abcdef\" 1 3 }}"),
        "3 98 bc"
    );
    assert_eq!(run("{{ \"x\" | printf \"%s-%s\" \"y\" }}"), "y-x");
    assert_eq!(run("{{ (args 1 2).arg1 }}"), "2");
    assert_eq!(run("{{ (args 1).nope }}"), "<no value>");
    assert!(
        run_err("{{ humanize 1 2 }}").ends_with("wrong number of args for humanize: want 1 got 2")
    );
    assert!(run_err("{{ 1 2 }}").contains("can't give argument to non-function 1"));
    assert!(run_err("{{ template \"nope\" }}").ends_with("no such template \"nope\""));
}

#[test]
fn recursion_and_size_are_bounded() {
    let e = run_err("{{ define \"a\" }}{{ template \"a\" }}{{ end }}{{ template \"a\" }}");
    assert!(e.contains("exceeded maximum template depth"), "{e}");
    let mut t = String::new();
    for i in 0..30 {
        t.push_str(&format!("{{{{ define \"d{i}\" }}}}{{{{ template \"d{}\" }}}}{{{{ template \"d{}\" }}}}{{{{ end }}}}", i + 1, i + 1));
    }
    t.push_str("{{ define \"d30\" }}xxxxxxxxxx{{ end }}{{ template \"d0\" }}");
    let e = run_err(&t);
    assert!(e.contains("size limit"), "{e}");
    let deep = "(".repeat(500) + "1" + &")".repeat(500);
    assert!(Template::parse("t", &format!("{{{{ {deep} }}}}")).is_err());
}

#[test]
fn template_is_clone_send_sync() {
    fn check<T: Clone + Send + Sync>() {}
    check::<Template>();
    let t = Template::parse("t", "{{ $labels.job }}").unwrap();
    let labels = Labels::from_pairs(&[("job", "j")]);
    let d = TemplateData {
        labels: &labels,
        external_labels: &labels,
        external_url: "",
        value: 0.0,
    };
    let t2 = t.clone();
    assert_eq!(t2.expand(&d, &Fixed(vec![])).unwrap(), "j");
    assert_eq!(t.expand(&d, &Fixed(vec![])).unwrap(), "j");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]
    #[test]
    fn fuzz_template_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        fuzz_template(&data);
    }

    /// Mutations of valid templates reach deeper than random bytes.
    #[test]
    fn mutated_templates_never_panic(
        base in prop::sample::select(vec![
            "{{ range $i, $e := query \"x\" }}{{ $e.Labels.instance | printf \"%5.2q\" }}{{ end }}",
            "{{ if and (eq $labels.job \"node\") (gt $value 1.0) }}{{ humanize $value }}{{ else if .Labels }}{{ end }}",
            "{{- define \"a\" -}}{{ . | humanizeDuration }}{{ end }}{{ template \"a\" 3661 }}{{ block \"b\" . }}{{ .Value }}{{ end }}",
            "{{ with query \"y\" | sortByLabel \"instance\" | first }}{{ value . }}{{ label \"a\" . }}{{ strvalue . }}{{ end }}",
            "{{ reReplaceAll \"(.*):.*\" \"$1\" $labels.instance }} {{ match \"^a\" \"abc\" }} {{ slice \"abc\" 1 2 }} {{ index $labels \"job\" }}",
        ]),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let mut b = base.as_bytes().to_vec();
        for (at, byte, op) in edits {
            let i = at % (b.len() + 1);
            match op {
                0 => b.insert(i, byte),
                1 if i < b.len() => { b.remove(i); }
                _ if i < b.len() => b[i] = byte,
                _ => {}
            }
        }
        fuzz_template(&b);
    }
}

/// Messages `promtool check rules` (2.42) prints for these annotation templates.
#[test]
fn parse_errors_match_promtool() {
    for (text, want) in [
        ("{{ if }}", "missing value for if"),
        ("{{ nosuch }}", "function \"nosuch\" not defined"),
        ("{{ end }}", "unexpected {{end}}"),
        ("{{ 1 2 ) }}", "unexpected \")\" in command"),
        ("{{ $x }}", "undefined variable \"$x\""),
        ("{{ .a | 1 }}", "non executable command in pipeline stage 2"),
        (
            "{{ range $i, $e, $f := . }}{{end}}",
            "too many declarations in range",
        ),
        ("{{ break }}", "{{break}} outside {{range}}"),
        ("{{ $x := }}", "missing value for command"),
        ("{{ 3x }}", "bad number syntax: \"3x\""),
        ("{{ \"abc }}", "unterminated quoted string"),
        ("{{ (1 }}", "unclosed left paren"),
        ("{{ template }}", "unexpected \"}}\" in template clause"),
        ("{{ .a.b. }}", "unexpected <.> in operand"),
    ] {
        let e = Template::parse("__alert_A", text).unwrap_err().to_string();
        assert_eq!(e, format!("template: __alert_A:1: {want}"), "{text}");
    }
}

/// Expansions `promtool test rules` (2.42) printed for these annotations of an alert over
/// `m{instance="host.example.com:9100",job="node"} 1e6` (facts; pointer addresses left out).
#[test]
fn expansion_matches_prometheus() {
    let labels = Labels::from_pairs(&[
        ("__name__", "m"),
        ("instance", "host.example.com:9100"),
        ("job", "node"),
    ]);
    let q = [QuerySample {
        labels: labels.clone(),
        value: 1e6,
    }];
    let ext = Labels::default();
    let d = TemplateData {
        labels: &labels,
        external_labels: &ext,
        external_url: "http://h",
        value: 1e6,
    };
    for (text, want) in [
        (
            r#"{{ $value }}|{{ .Value }}|{{ $labels.missing }}|{{ index $labels "nope" }}|{{ $labels }}"#,
            "1e+06|1e+06|||map[__name__:m instance:host.example.com:9100 job:node]",
        ),
        (
            r#"{{ printf "%5.1f|%-6s|%q|%x|%X|%o|%b|%e|%E|%g|%G|%v|%t|%c|%U" 3.14159 "ab" "q\"" 255 "hi" 8 5 1234.5678 0.000123 0.00001234 1e21 $value true 65 65 }}"#,
            "  3.1|ab    |\"q\\\"\"|ff|6869|10|101|1.234568e+03|1.230000E-04|1.234e-05|1E+21|1e+06|true|A|U+0041",
        ),
        (
            r#"{{ printf "%d %s %d" "x" 3 }}|{{ printf "%d" 1 2 }}|{{ printf "%!" }}|{{ printf "%.3s|%8.3f|%+d|% d|%08.3f|%-8d|" "abcdef" 3.14159 5 5 -3.14159 42 }}"#,
            "%!d(string=x) %!s(int=3) %!d(MISSING)|1%!(EXTRA int=2)|%!!(MISSING)|abc|   3.142|+5| 5|-003.142|42      |",
        ),
        (
            "{{ 1e3 }} {{ 1.0 }} {{ 0x10 }} {{ 010 }} {{ 1_000 }} {{ -0.0 }} {{ 1e-7 }} {{ 123456789.0 }} {{ 0.000001 }} {{ 100000000000000000000.0 }}",
            "1000 1 16 8 1000 -0 1e-07 1.23456789e+08 1e-06 1e+20",
        ),
        (
            r#"{{ print 1 2 "a" 3.5 true nil }}|{{ println "x" 1 }}|{{ print }}|{{ len "héllo" }}"#,
            "1 2a3.5 true <nil>|x 1\n||6",
        ),
        (
            "{{ humanize 0.000001234 }} {{ humanize -1234 }} {{ humanize1024 -2048 }} {{ humanizeDuration 0.5 }} {{ humanizeDuration -0.5 }} {{ humanizeDuration 59.99 }} {{ humanizePercentage 1 }} {{ humanizeTimestamp 1.5 }} {{ humanizeTimestamp -0.5 }}",
            "1.234u -1.234k -2ki 500ms -500ms 59.99s 100% 1970-01-01 00:00:01.5 +0000 UTC 1969-12-31 23:59:59.5 +0000 UTC",
        ),
        (
            r#"{{ "a b" | urlquery }} {{ js "<x>&=\u2028é\t" }} {{ html "\x00<\"" }} {{ title "hello wORLD foo_bar a-b é日本 1st" }}"#,
            "a+b \\u003Cx\\u003E\\u0026\\u003D\\u2028é\\u0009 \u{FFFD}&lt;&#34; Hello WORLD Foo_bar A-B É日本 1st",
        ),
        (
            r#"{{ eq 1 1 }} {{ eq "a" "b" "a" }} {{ lt 1.5 2.5 }} {{ and 0 1 }} {{ or 0 "" }} {{ not "" }}"#,
            "true true true 0  true",
        ),
        (
            r#"{{ slice "abcdef" 2 }} {{ index "abc" 0 }} {{ range $i, $c := args "x" "y" }}{{ $i }}={{ $c }} {{ end }}"#,
            "cdef 97 arg0=x arg1=y ",
        ),
        (
            "{{ with $x := 5 }}{{ $x }}{{ end }} {{ if $y := 0 }}a{{ else if $y }}b{{ else }}c{{ $y }}{{ end }}",
            "5 c0",
        ),
        (
            r#"{{ toTime 1500000000 }} {{ parseDuration "1d" }} {{ parseDuration "1m30s" }} {{ stripPort "[::1]" }} {{ stripDomain "a.b:80" }} {{ stripDomain "[a.b]:80" }}"#,
            "2017-07-14 02:40:00 +0000 UTC 86400 90 [::1] a:80 a:80",
        ),
        (
            r#"{{ printf "%v" (args 1) }}|{{ query "m" | first }}"#,
            "map[arg0:1]|{map[__name__:m instance:host.example.com:9100 job:node] 1e+06}",
        ),
        (
            r#"{{ printf "%s" 1.5 }} {{ printf "%d" 1.5 }} {{ printf "%f" 3 }} {{ printf "%s" true }} {{ printf "%s" nil }} {{ printf "%d" nil }} {{ printf "%5t|%-5t|" true false }}"#,
            "%!s(float64=1.5) %!d(float64=1.5) %!f(int=3) %!s(bool=true) %!s(<nil>) %!d(<nil>)  true|false|",
        ),
        (
            r#"{{ printf "%x %X %q %c" -255 "é" 0x263a 0x263a }} {{ printf "%#x %#o %#v" 255 8 "s" }} {{ printf "%6.2e|%.0f|%.0f|%.1f" 123456.0 0.5 1.5 0.25 }}"#,
            "-ff C3A9 '☺' ☺ 0xff 010 \"s\" 1.23e+05|0|2|0.2",
        ),
        (
            r#"{{ printf "%*d|%-*d|%.*f" 5 1 4 2 2 3.14159 }} {{ printf "%[2]d %[1]d" 1 2 }} {{ printf "%v" 1e100 }} {{ printf "%g" 1e-100 }} {{ printf "%.3g" 1234567.0 }} {{ printf "%.10g" 0.1 }}"#,
            "    1|2   |3.14 2 1 1e+100 1e-100 1.23e+06 0.1",
        ),
    ] {
        let got = Template::parse("__alert_A", text).unwrap().expand(&d, &Fixed(q.to_vec()));
        assert_eq!(got.unwrap(), want, "{text}");
    }
    let e = Template::parse("__alert_A", "{{ and }}")
        .unwrap()
        .expand(&d, &Fixed(vec![]))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("error executing template __alert_A: template: __alert_A:1:{}: executing \"__alert_A\" at <and>: wrong number of args for and: want at least 1 got 0", defs() + 3)
    );
}

/// Expansions and errors `promtool test rules` (2.42) printed for an alert over
/// `m{instance="host.example.com:9100",job="node"} 1e6` with no external URL or labels (facts).
const PROMTOOL_CASES: &[(&str, &str)] = &[
    (
        r#"{{ (toTime 1435065584.128).Format "2006-01-02T15:04:05.000Z07:00 Mon Jan _2 3:4:5 PM 06 002 MST -0700 .999 ,000 January Monday" }}"#,
        r#"2015-06-23T13:19:44.128Z Tue Jun 23 1:19:44 PM 15 174 UTC +0000 .128 ,128 June Tuesday"#,
    ),
    (
        r#"{{ with toTime 1500000000.5 }}{{ .Unix }} {{ .Year }} {{ .Month }} {{ .Day }} {{ .Weekday }} {{ .YearDay }} {{ .UnixMilli }} {{ .Hour }}{{ end }}"#,
        r#"1500000000 2017 July 14 Friday 195 1500000000500 2"#,
    ),
    (
        r#"{{ (toTime -1.5).Format "2006-01-02 15:04:05.999999999" }}|{{ (toTime 0).Format "15:04:05.9 pm" }}|{{ toTime 0 | printf "%v" }}"#,
        r#"1969-12-31 23:59:58.5|00:00:00 am|1970-01-01 00:00:00 +0000 UTC"#,
    ),
    (
        r#"a  {{- 1 -}}  b{{/* c */}}{{- /* d */ -}} e {{ range $k, $v := $labels }}{{ $k }}{{ end }}"#,
        r#"a1be __name__instancejob"#,
    ),
    (
        r#"{{ $labels.job | printf "%s-%s" "x" }}|{{ range $i, $s := query "m" }}{{ $i }}{{ $s.Value }}{{ end }}|{{ "abc" | len }}"#,
        r#"x-node|01e+06|3"#,
    ),
    (
        r#"{{ (index (query "m") 0).Labels.job }} {{ define "T" }}[{{ . }}]{{ end }}{{ template "T" $value }} {{ block "B" 2 }}<{{ . }}>{{ end }}"#,
        r#"node [1e+06] <2>"#,
    ),
    (
        r#"{{ printf "%s" .Labels }}|{{ printf "%v" $externalLabels }}|{{ .ExternalURL }}|{{ if . }}t{{ end }}"#,
        r#"map[__name__:m instance:host.example.com:9100 job:node]|map[]||t"#,
    ),
    (
        r#"{{ .Labels.job.x }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:122: executing "__alert_A" at <.Labels.job.x>: can't evaluate field x in type string>"#,
    ),
    (
        r#"{{ index $labels 1 }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <index $labels 1>: error calling index: value has type int; should be string>"#,
    ),
    (
        r#"{{ $x := 1 }}{{ $x.y }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:130: executing "__alert_A" at <$x.y>: can't evaluate field y in type int>"#,
    ),
    (
        r#"{{ printf 1 }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:122: executing "__alert_A" at <1>: expected string; found 1>"#,
    ),
    (
        r#"{{ humanize true }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <humanize true>: error calling humanize: can't convert bool to float>"#,
    ),
    (
        r#"{{ label "a" "b" }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:125: executing "__alert_A" at <"b">: can't handle "b" for arg of type *template.sample>"#,
    ),
    (
        r#"{{ first 1 }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:121: executing "__alert_A" at <1>: can't handle 1 for arg of type template.queryResult>"#,
    ),
    (
        r#"{{ index (query "m") 5 }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <index (query "m") 5>: error calling index: index out of range: 5>"#,
    ),
    (
        r#"{{ range 1 }}{{ end }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:121: executing "__alert_A" at <1>: range can't iterate over 1>"#,
    ),
    (
        r#"{{ "x" | humanize }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:121: executing "__alert_A" at <humanize>: error calling humanize: strconv.ParseFloat: parsing "x": invalid syntax>"#,
    ),
    (
        r#"{{ lt 1 "a" }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <lt 1 "a">: error calling lt: incompatible types for comparison>"#,
    ),
    (
        r#"{{ eq .Labels .Labels }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <eq .Labels .Labels>: error calling eq: non-comparable type map[__name__:m instance:host.example.com:9100 job:node]: map[string]string>"#,
    ),
    (
        r#"{{ slice "abc" 2 1 }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <slice "abc" 2 1>: error calling slice: invalid slice index: 2 > 1>"#,
    ),
    (
        r#"{{ $labels.job 1 }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:122: executing "__alert_A" at <$labels.job>: job is not a method but has arguments>"#,
    ),
    (
        r#"{{ 1 | printf "%d" }}{{ nil }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:136: executing "__alert_A" at <nil>: nil is not a command>"#,
    ),
];

#[test]
fn expansion_and_errors_match_promtool() {
    let labels = Labels::from_pairs(&[
        ("__name__", "m"),
        ("instance", "host.example.com:9100"),
        ("job", "node"),
    ]);
    let q = [QuerySample {
        labels: labels.clone(),
        value: 1e6,
    }];
    let ext = Labels::default();
    let d = TemplateData {
        labels: &labels,
        external_labels: &ext,
        external_url: "",
        value: 1e6,
    };
    let mut bad = Vec::new();
    for (text, want) in PROMTOOL_CASES {
        // Prometheus' alerting rule puts a failed expansion in the annotation like this.
        let got = match Template::parse("__alert_A", text)
            .unwrap()
            .expand(&d, &Fixed(q.to_vec()))
        {
            Ok(s) => s,
            Err(e) => format!("<error expanding template: {e}>"),
        };
        if got != *want {
            bad.push(format!("{text}\n  got:  {got}\n  want: {want}"));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    // Known differences: the regex crate words its errors differently from Go's regexp, and
    // Go names the last node evaluated inside a chain (`<1>`) where we name the chain.
    let e = Template::parse("__alert_A", r#"{{ reReplaceAll "(" "" "" }}"#)
        .unwrap()
        .expand(&d, &Fixed(vec![]))
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("error calling reReplaceAll: regexp: Compile(`(`): error parsing regexp: "),
        "{e}"
    );
    let e = Template::parse("__alert_A", "{{ (toTime 1).Foo }}")
        .unwrap()
        .expand(&d, &Fixed(vec![]))
        .unwrap_err();
    assert!(
        e.to_string()
            .ends_with(": can't evaluate field Foo in type *time.Time"),
        "{e}"
    );
}

/// A second batch from `promtool test rules` (2.42): trim markers across lines, range over
/// labels, multi-line error positions, nested defines, printf corner cases, case mapping.
const PROMTOOL_CASES_2: &[(&str, &str)] = &[
    ("line1\n  {{- if true }}\n  yes\n  {{- else }}\n  no\n  {{- end }}\nend", "line1\n  yes\nend"),
    ("{{ range $k, $v := .Labels -}}\n{{ $k }}={{ $v }}\n{{ end -}}", "__name__=m\ninstance=host.example.com:9100\njob=node\n"),
    ("a\nb {{ humanize \"x\" }}", "<error expanding template: error executing template __alert_A: template: __alert_A:2:5: executing \"__alert_A\" at <humanize \"x\">: error calling humanize: strconv.ParseFloat: parsing \"x\": invalid syntax>"),
    ("{{ define \"x\" }}{{ .Labels.job }}/{{ $.Value }}{{ end }}{{ template \"x\" . }}|{{ with .Labels }}{{ .job }}{{ else }}none{{ end }}", "node/1e+06|node"),
    ("{{ $v := 0 }}{{ range $i, $s := query \"m\" }}{{ $v = $s.Value }}{{ end }}{{ $v }}|{{ range $e := query \"none{}\" }}x{{ else }}empty{{ end }}", "1e+06|empty"),
    ("{{ if and (eq .Labels.job \"node\") (ge .Value 1e6) }}big{{ end }}|{{ if or (ne .Labels.job \"node\") (lt .Value 0.0) }}x{{ else }}y{{ end }}", "big|y"),
    ("{{ printf \"%.2f%%\" (humanizePercentage 0.5 | len | printf \"%d\" | len | printf \"%d.5\" | printf \"%s\") }}", "%!f(string=1.)%"),
    ("{{ .Value | printf \"%.1f\" }} {{ $value | humanize }} {{ 1234.5 | humanize1024 }} {{ printf \"%T\" 1 }}", "1000000.0 1M 1.206ki int"),
    ("{{ \"a,b,c\" | reReplaceAll \",\" \";\" }}|{{ reReplaceAll \"(?P<x>a)\" \"${x}!\" \"aa\" }}|{{ reReplaceAll \"a\" \"$$\" \"aa\" }}|{{ match \"^[a-z]+$\" \"abc\" }}", "a;b;c|a!a!|$$|true"),
    ("{{ index .Labels }}", "map[__name__:m instance:host.example.com:9100 job:node]"),
    ("{{ printf \"%v|%5v|%-5v|%05d|%x|%o\" nil 1.5 true -42 \"é\" -8 }}", "<nil>|  1.5|true |-0042|c3a9|-10"),
    ("{{ len (args 1 2 3) }} {{ index (args \"a\" \"b\") \"arg1\" }} {{ (args).arg0 }}", "3 b <no value>"),
    ("{{ with $x := query \"m\" | first }}{{ $x.Value }} {{ .Labels.job }}{{ end }}", "1e+06 node"),
    ("{{ printf \"%s\" (query \"m\") }}", "[%!s(*template.sample=&{map[__name__:m instance:host.example.com:9100 job:node] 1e+06})]"),
    ("{{ toUpper \"straße\" }} {{ toLower \"ÀB\" }} {{ title \"o'neil ñandú\" }}", "STRAßE àb O'Neil Ñandú"),
    ("{{ humanize 999.9999 }} {{ humanize 1000 }} {{ humanize 0.001 }} {{ humanize -0.0000001 }} {{ humanize1024 1023.99 }} {{ humanize1024 1024 }} {{ humanizeDuration 86399.9 }} {{ humanizeDuration 0.000001 }}", "1000 1k 1m -100n 1024 1ki 23h 59m 59s 1us"),
    ("{{ printf \"%6.3v|%.0e|%#g|%+.3g|%x\" 3.14159 12345.0 1.0 -0.000012345 1.5 }}", "  3.14|1e+04|1.00000|-1.23e-05|0x1.8p+00"),
    ("{{ 'a' }} {{ '\\n' }} {{ \"\\u00e9\\x41\\101\" }} {{ `a\"b` }}", "97 10 éAA a\"b"),
    ("{{ $x := 1 }}{{ $x := 2 }}{{ $x }}", "2"),
];

#[test]
fn expansion_matches_promtool_batch_2() {
    let labels = Labels::from_pairs(&[
        ("__name__", "m"),
        ("instance", "host.example.com:9100"),
        ("job", "node"),
    ]);
    let q = [QuerySample {
        labels: labels.clone(),
        value: 1e6,
    }];
    let ext = Labels::default();
    let d = TemplateData {
        labels: &labels,
        external_labels: &ext,
        external_url: "",
        value: 1e6,
    };
    // `query "none{}"` answers nothing, every other query the series.
    struct ByExpr(Vec<QuerySample>);
    impl QueryFn for ByExpr {
        fn query(&self, expr: &str) -> Result<Vec<QuerySample>, String> {
            Ok(if expr == "none{}" {
                Vec::new()
            } else {
                self.0.clone()
            })
        }
    }
    let mut bad = Vec::new();
    for (text, want) in PROMTOOL_CASES_2 {
        let got = match Template::parse("__alert_A", text)
            .unwrap()
            .expand(&d, &ByExpr(q.to_vec()))
        {
            Ok(s) => s,
            Err(e) => format!("<error expanding template: {e}>"),
        };
        if got != *want {
            bad.push(format!("{text}\n  got:  {got}\n  want: {want}"));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    // promtool check rules: `08` is refused when parsed.
    let e = Template::parse("__alert_A", "{{ 08 }}")
        .unwrap_err()
        .to_string();
    assert_eq!(e, "template: __alert_A:1: integer overflow: \"08\"");
}
