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
