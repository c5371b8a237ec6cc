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
