//! `tsdbctl check config` against `promtool check config` (Prometheus 2.42) on the fixture
//! configurations in `tests/fixtures/config/`: the same verdict for each, and our error naming
//! the right file and line. Each fixture's first line says what to expect:
//! `# expect: pass`, `# expect: fail <text in our error>` (e.g. `file.yml:7:`), or
//! `# expect: stricter <text>` for the few files Prometheus accepts and then fails on at run time
//! (see `tsdb::config` validation), which we reject up front.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use tsdb::config::{read_file_sd, Config, RuleFile, FILE_SD_PATH_LABEL};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config")
}

/// The configuration fixtures (not the rule and target files they name), with their expectation.
fn cases() -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![fixtures(), fixtures().join("motivating")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if !name.ends_with(".yml")
                || name.starts_with("rules_")
                || name.starts_with("targets_")
                || name == "alertrules.yml"
            {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            let first = text.lines().next().unwrap_or("");
            let expect = first
                .strip_prefix("# expect: ")
                .unwrap_or_else(|| panic!("{} has no `# expect:` line", p.display()))
                .to_string();
            out.push((p, expect));
        }
    }
    out.sort();
    out
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn run(bin: &str, args: &[&str], file: &Path) -> Run {
    // Run from the fixture's directory with a relative name, as users do: messages then name the
    // file as given and relative rule paths resolve the same way for both tools.
    let out = Command::new(bin)
        .args(args)
        .arg(file.file_name().unwrap())
        .current_dir(file.parent().unwrap())
        .output()
        .unwrap_or_else(|e| panic!("{bin}: {e}"));
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn tsdbctl(file: &Path) -> Run {
    run(env!("CARGO_BIN_EXE_tsdbctl"), &["check", "config"], file)
}

#[test]
fn check_config_agrees_with_promtool() {
    let cases = cases();
    assert!(cases.len() >= 30, "fixtures missing: {}", cases.len());
    let promtool = common::available(common::PROMTOOL);
    let mut failures = Vec::new();
    for (file, expect) in &cases {
        let ours = tsdbctl(file);
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let (kind, want) = expect.split_once(' ').unwrap_or((expect.as_str(), ""));
        match kind {
            "pass" => {
                if !ours.ok {
                    failures.push(format!("{name}: we fail: {}", ours.stderr));
                }
                if !ours.stdout.contains(&format!(
                    " SUCCESS: {name} is valid prometheus config file syntax"
                )) {
                    failures.push(format!("{name}: no SUCCESS line: {}", ours.stdout));
                }
            }
            "fail" | "stricter" => {
                if ours.ok {
                    failures.push(format!("{name}: we accept it"));
                } else if !ours.stderr.contains("FAILED:") || !ours.stderr.contains(want) {
                    failures.push(format!("{name}: error lacks {want:?}: {}", ours.stderr));
                }
            }
            other => panic!("{name}: unknown expectation {other:?}"),
        }
        if promtool {
            let theirs = run(common::PROMTOOL, &["check", "config"], file);
            let want_ok = kind != "fail";
            if theirs.ok != want_ok {
                failures.push(format!(
                    "{name}: promtool {} (expected {}): {}",
                    if theirs.ok { "passes" } else { "fails" },
                    if want_ok { "pass" } else { "fail" },
                    theirs.stderr
                ));
            }
            if kind != "stricter" && theirs.ok != ours.ok {
                failures.push(format!(
                    "{name}: verdicts differ (promtool ok={}, ours ok={})",
                    theirs.ok, ours.ok
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn check_config_output_matches_promtool_shape() {
    let file = fixtures().join("ok_full.yml");
    let ours = tsdbctl(&file);
    assert!(ours.ok, "{}", ours.stderr);
    assert_eq!(
        ours.stdout,
        "Checking ok_full.yml\n  SUCCESS: 1 rule files found\n SUCCESS: ok_full.yml is valid prometheus config file syntax\n\nChecking rules_ok.yml\n  SUCCESS: 3 rules found\n\n"
    );
    if common::available(common::PROMTOOL) {
        let theirs = run(common::PROMTOOL, &["check", "config"], &file);
        assert_eq!(ours.stdout, theirs.stdout);
    }
    // Several files: one failure fails the run, the others are still checked.
    let out = Command::new(env!("CARGO_BIN_EXE_tsdbctl"))
        .args([
            "check",
            "config",
            "bad_duration.yml",
            "motivating/prometheus.yml",
        ])
        .current_dir(fixtures())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(" SUCCESS: motivating/prometheus.yml is valid"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Checking motivating/alertrules.yml\n  SUCCESS: 1 rules found"),
        "{stdout}"
    );
}

#[test]
fn motivating_example_loads() {
    let cfg = Config::load(&fixtures().join("motivating/prometheus.yml")).unwrap();
    assert_eq!(cfg.scrape_configs.len(), 1);
    let job = &cfg.scrape_configs[0];
    assert_eq!(job.job_name, "prometheus_demo");
    assert_eq!(job.scrape_interval.unwrap().to_string(), "15s");
    assert_eq!(job.scrape_timeout.unwrap().to_string(), "10s");
    assert_eq!(job.static_configs[0].targets.len(), 4);
    assert_eq!(cfg.global.evaluation_interval.to_string(), "15s");
    let rules = cfg.load_rule_files().unwrap();
    assert_eq!(rules.len(), 1);
    assert!(cfg.rule_files[0].ends_with("motivating/alertrules.yml"));
    let alert = &rules[0].groups[0].rules[0];
    assert_eq!(alert.name(), "ExampleAlertName");
    assert_eq!(alert.for_duration.to_string(), "10s");
}

#[test]
fn full_fixture_loads_with_everything_resolved() {
    let dir = fixtures();
    let cfg = Config::load(&dir.join("ok_full.yml")).unwrap();
    assert_eq!(
        cfg.rule_files,
        vec![dir.join("rules_ok.yml").to_string_lossy().into_owned()]
    );
    let node = &cfg.scrape_configs[0];
    assert_eq!(node.relabel_configs.len(), 11);
    assert!(tsdb::relabel::compile(&node.relabel_configs).is_ok());
    assert_eq!(
        node.file_sd_configs[0].files,
        vec![dir.join("targets_*.json").to_string_lossy().into_owned()]
    );
    // bearer_token became `authorization`, as in Prometheus.
    let bearer = &cfg.scrape_configs[1].http;
    assert_eq!(bearer.bearer_token, None);
    assert_eq!(
        bearer
            .authorization
            .as_ref()
            .unwrap()
            .credentials
            .as_deref(),
        Some("abc")
    );
    let y = cfg.to_yaml();
    assert!(
        !y.contains("secret\n") && !y.contains("xyz") && !y.contains(": abc"),
        "{y}"
    );
    // file_sd target files as Prometheus reads them, with __meta_filepath.
    let tf = dir.join("targets_ok.json");
    let groups = read_file_sd(&tf).unwrap();
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0].targets, vec!["localhost:9100", "localhost:9101"]);
    assert_eq!(
        groups[1].labels.get(FILE_SD_PATH_LABEL).map(String::as_str),
        Some(tf.to_string_lossy().as_ref())
    );
    assert!(read_file_sd(&dir.join("targets_bad.yml")).is_err());
    assert_eq!(
        RuleFile::load(&dir.join("rules_ok.yml"))
            .unwrap()
            .rule_count(),
        3
    );
}

/// Go regexp semantics of the relabel engine, checked against Go itself: PromQL's
/// `label_replace` anchors and expands exactly as relabeling's `replace` action does, so a
/// `promtool test rules` file whose expected samples come from our engine passes only if every
/// match and expansion agrees with Go's (ASCII `\d\w\s\b`, `\Q..\E`, literal `{`, octal, `$1x`
/// naming a group, `$$`, lazy repetition, ...).
#[test]
fn relabel_replace_agrees_with_go_regexp() {
    use tsdb::labels::Labels;
    use tsdb::relabel::{compile, process, Action, RelabelConfig};
    if !common::available(common::PROMTOOL) {
        return;
    }
    let fixed: &[(&str, &str, &str)] = &[
        ("a1é", r"a(\w+)", "<${1}>"),
        ("a1b", r"a(\w+)", "<${1}>"),
        ("٣", r"\d", "digit"),
        ("٣", r"\D", "nondigit"),
        ("a b", r"a\sb", "space"),
        ("a\u{a0}b", r"a\sb", "nbsp"),
        ("ab", r"(a)(b)", "$1x"),
        ("ab", r"(a)(b)", "${1}x"),
        ("ab", r"(a)(b)", "$$1"),
        ("ab", r"(a)(b)", "$2$1"),
        ("ab", r"(a)(b)", "$"),
        ("ab", r"(a)(b)", "${1"),
        ("ab", r"(a)(b)", "$01"),
        ("ab", r"(a)(b)", "$10"),
        ("ab", r"(a)(b)", "$1é"),
        ("ab", r"(?P<first>a)b", "$first-"),
        ("ab", r"(?P<1a>a)b", "${1a}"),
        ("ab", r"(?P<n>x)?(?P<n>a)b", "[$n]"),
        ("b", r"(a)|(b)", "[$1|$2]"),
        ("a.b", r"\Qa.b\E", "lit"),
        ("axb", r"\Qa.b\E", "lit"),
        ("a{b", r"a{b", "brace"),
        ("a{,2}", r"a{,2}", "brace2"),
        ("[", r"[[]", "cls"),
        ("&", r"[a&&b]", "amp"),
        ("A", r"\101", "oct"),
        ("<a>", r"\<a\>", "angle"),
        ("\u{212a}", r"(?i)k", "kelvin"),
        ("aé", r"a\bé", "wordboundary"),
        ("é", r"\pL", "letter"),
        ("é", r"\p{^Greek}", "notgreek"),
        ("abC", r"a(?i)B(?-i)C", "flags"),
        ("aaa", r"a{2}", "two"),
        ("aaa", r"(a+?)(a*)", "$1|$2"),
        ("aaa", r"(?U)(a+)(a*)", "$1|$2"),
        ("a-b", r"a[^\w]b", "notword"),
        ("aXb", r"a[\W]b", "notword2"),
        ("a b", r"a[[:space:]]b", "posix"),
        ("x", r"", "empty"),
        ("foo", r"f|o", "alt"),
        ("foo", r"(f)(o)+", "$2"),
        ("10.0.0.1:9100", r"(.*):\d+", "$1"),
        ("path:/x,job:j", r"(?:.+,|^)job:([^,]+).*", "${1}"),
    ];
    // Plus random patterns and values from a small alphabet where Go and Rust differ.
    let generated = random_cases(300);
    let mut cases: Vec<(&str, &str, &str)> = fixed.to_vec();
    cases.extend(
        generated
            .iter()
            .map(|(v, r, p)| (v.as_str(), r.as_str(), p.as_str())),
    );
    // Patterns we refuse must be refused by Go too (one promtool run each: a configuration
    // stops at its first error).
    let dir = tempfile::tempdir().unwrap();
    let mut rejected = 0;
    cases.retain(|(_, re, _)| {
        if tsdb::relabel::Rule::new(&RelabelConfig {
            regex: re.to_string(),
            target_label: Some("dst".into()),
            ..RelabelConfig::default()
        })
        .is_ok()
        {
            return true;
        }
        rejected += 1;
        let cfg = dir.path().join(format!("rejected{rejected}.yml"));
        std::fs::write(
            &cfg,
            format!("scrape_configs:\n- job_name: x\n  relabel_configs:\n  - target_label: dst\n    regex: {}\n", json(re)),
        )
        .unwrap();
        let out = Command::new(common::PROMTOOL).args(["check", "config"]).arg(&cfg).output().unwrap();
        assert!(!out.status.success(), "Go accepts {re:?}, we do not");
        false
    });
    assert!(
        cases.len() > 250,
        "too few accepted patterns: {}",
        cases.len()
    );
    let mut test = String::from("rule_files: []\ntests:\n  - interval: 1m\n    input_series:\n");
    for (i, (v, _, _)) in cases.iter().enumerate() {
        test.push_str(&format!(
            "      - series: {}\n        values: '1'\n",
            json(&format!("m{{case=\"{i}\",src=\"{v}\"}}"))
        ));
    }
    test.push_str("    promql_expr_test:\n");
    for (i, (v, re, repl)) in cases.iter().enumerate() {
        let rule = RelabelConfig {
            source_labels: vec!["src".into()],
            target_label: Some("dst".into()),
            regex: re.to_string(),
            replacement: repl.to_string(),
            action: Action::Replace,
            ..RelabelConfig::default()
        };
        let rules = compile(&[rule]).unwrap_or_else(|e| panic!("{re}: {e}"));
        let case = i.to_string();
        let out = process(
            &rules,
            &Labels::from_pairs(&[("__name__", "m"), ("case", &case), ("src", v)]),
        )
        .unwrap();
        let expected: Vec<String> = out
            .iter()
            .map(|l| format!("{}=\"{}\"", l.name, l.value))
            .collect();
        test.push_str(&format!(
            "      - expr: {}\n        eval_time: 0\n        exp_samples:\n          - labels: {}\n            value: 1\n",
            json(&format!("label_replace(m{{case=\"{i}\"}}, \"dst\", `{repl}`, \"src\", `{re}`)")),
            json(&format!("{{{}}}", expected.join(",")))
        ));
    }
    let f = dir.path().join("relabel_test.yml");
    std::fs::write(&f, &test).unwrap();
    if let Ok(keep) = std::env::var("TSDB_KEEP_RELABEL_TEST") {
        std::fs::write(keep, &test).unwrap();
    }
    let out = Command::new(common::PROMTOOL)
        .args(["test", "rules"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "Go disagrees:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Deterministic random (value, regex, replacement) triples: regexes from a small grammar of
/// the constructs whose meaning differs between Go and Rust, values from the characters they
/// tell apart.
fn random_cases(n: usize) -> Vec<(String, String, String)> {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |m: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % m as u64) as usize
    };
    const ATOMS: &[&str] = &[
        "a",
        "b",
        "é",
        "1",
        "٣",
        ".",
        r"\d",
        r"\D",
        r"\w",
        r"\W",
        r"\s",
        r"\S",
        r"\b",
        "[a-c]",
        r"[^a\d]",
        r"[\w-]",
        "[[:alpha:]]",
        r"\pL",
        r"\Q.\E",
        " ",
        "K",
        "(?i:k)",
        ".*",
    ];
    const QUANTS: &[&str] = &[
        "", "", "", "*", "+", "?", "*?", "+?", "{2}", "{1,2}", "{0,}",
    ];
    const REPLS: &[&str] = &[
        "$1",
        "${1}x",
        "$2",
        "[$0]",
        "$1x",
        "$$",
        "<${2}${1}>",
        "lit",
    ];
    const CHARS: &[char] = &[
        'a', 'b', '1', 'é', '٣', ' ', '\u{a0}', 'K', '\u{212a}', '.', '-',
    ];
    fn gen(next: &mut impl FnMut(usize) -> usize, depth: usize) -> String {
        let mut out = String::new();
        for _ in 0..1 + next(3) {
            let atom = if depth < 2 && next(4) == 0 {
                format!("({})", gen(next, depth + 1))
            } else {
                ATOMS[next(ATOMS.len())].to_string()
            };
            out.push_str(&atom);
            out.push_str(QUANTS[next(QUANTS.len())]);
        }
        if depth < 2 && next(5) == 0 {
            out.push('|');
            out.push_str(&gen(next, depth + 1));
        }
        out
    }
    (0..n)
        .map(|_| {
            let re = format!("({})", gen(&mut next, 0));
            let v: String = (0..1 + next(4)).map(|_| CHARS[next(CHARS.len())]).collect();
            (v, re, REPLS[next(REPLS.len())].to_string())
        })
        .collect()
}

fn json(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}
