use std::path::Path;

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse_unchecked_files(text, Path::new("/etc/prometheus/prometheus.yml"))
}

fn err(text: &str) -> ConfigError {
    match parse(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e,
    }
}

#[test]
fn defaults_filled_from_global() {
    let c = parse(
        "global:\n  scrape_interval: 15s\n  sample_limit: 100\nscrape_configs:\n- job_name: a\n- job_name: b\n  scrape_interval: 5s\n  sample_limit: 7\n",
    )
    .unwrap();
    assert_eq!(c.global.scrape_timeout, Duration::from_secs(10));
    assert_eq!(c.global.evaluation_interval, Duration::from_secs(60));
    let a = &c.scrape_configs[0];
    assert_eq!(a.scrape_interval, Some(Duration::from_secs(15)));
    assert_eq!(a.scrape_timeout, Some(Duration::from_secs(10)));
    assert_eq!(a.sample_limit, Some(100));
    assert_eq!(a.label_limit, Some(0));
    assert_eq!(a.metrics_path, "/metrics");
    assert_eq!(a.scheme, "http");
    assert!(a.honor_timestamps);
    assert!(a.http.follow_redirects && a.http.enable_http2);
    // A timeout inferred from global is capped at the job's interval.
    let b = &c.scrape_configs[1];
    assert_eq!(b.scrape_interval, Some(Duration::from_secs(5)));
    assert_eq!(b.scrape_timeout, Some(Duration::from_secs(5)));
    assert_eq!(b.sample_limit, Some(7));
}

#[test]
fn empty_and_null_sections_are_defaults() {
    assert_eq!(parse("").unwrap(), Config::default());
    let c =
        parse("global:\nscrape_configs:\n- job_name: x\n  static_configs:\n  relabel_configs:\n")
            .unwrap();
    assert_eq!(c.global, GlobalConfig::default());
    assert!(c.scrape_configs[0].static_configs.is_empty());
    // A global timeout above a smaller global interval is capped, as in Prometheus.
    let c = parse("global:\n  scrape_interval: 5s\n").unwrap();
    assert_eq!(c.global.scrape_timeout, Duration::from_secs(5));
}

#[test]
fn unknown_keys_rejected_everywhere_with_line() {
    for (text, line) in [
        ("foo: 1\n", 1),
        ("global:\n  scrape_intervall: 1s\n", 2),
        ("scrape_configs:\n- job_name: x\n  metric_path: /m\n", 3),
        // Next to the inlined HTTP client keys (serde's flatten would have let this through).
        ("scrape_configs:\n- job_name: x\n  basic_auth:\n    username: u\n  tls_confg: {}\n", 5),
        ("scrape_configs:\n- job_name: x\n  basic_auth:\n    user: u\n", 4),
        ("remote_write:\n- url: http://x/api/v1/write\n  queue_config:\n    capacty: 1\n", 4),
        ("remote_write:\n- url: http://x/api/v1/write\n  sigv5: {}\n", 3),
        ("scrape_configs:\n- job_name: x\n  relabel_configs:\n  - target_label: a\n    regexp: x\n", 5),
        ("scrape_configs:\n- job_name: x\n  static_configs:\n  - targets: ['a:1']\n    label: {}\n", 5),
    ] {
        let e = err(text);
        assert_eq!(e.line(), Some(line), "{text:?}: {e}");
        assert!(e.to_string().contains("unknown field"), "{e}");
    }
}

#[test]
fn yaml_1_1_booleans_as_prometheus_reads_them() {
    let c = parse("scrape_configs:\n- job_name: a\n  honor_labels: yes\n  honor_timestamps: off\n  tls_config:\n    insecure_skip_verify: Y\n  follow_redirects:\n").unwrap();
    let a = &c.scrape_configs[0];
    assert!(a.honor_labels && !a.honor_timestamps && a.http.tls_config.insecure_skip_verify);
    assert!(a.http.follow_redirects);
    let e = err("scrape_configs:\n- job_name: a\n  honor_labels: maybe\n");
    assert_eq!(e.line(), Some(3), "{e}");
}

#[test]
fn alerting_is_checked_and_kept() {
    let text = "alerting:\n  alertmanagers:\n  - static_configs:\n    - targets: ['localhost:9093']\n    timeout: 5s\n    api_version: v2\n  alert_relabel_configs:\n  - regex: replica\n    action: labeldrop\n";
    let c = parse(text).unwrap();
    let a = &c.alerting;
    assert_eq!(a.alert_relabel_configs.len(), 1);
    assert_eq!(a.alertmanagers.len(), 1);
    let am = &a.alertmanagers[0];
    assert_eq!(am.static_configs[0].targets, vec!["localhost:9093"]);
    assert_eq!(am.timeout, Duration::from_secs(5));
    assert_eq!(am.api_version, "v2");
    assert_eq!(am.scheme, "http");
    assert!(am.http.follow_redirects);
    // Defaults: Prometheus' DefaultAlertmanagerConfig.
    let c = parse("alerting:\n  alertmanagers:\n  - static_configs:\n    - targets: [a:1]\n    path_prefix: /am\n    basic_auth:\n      username: u\n      password: p\n").unwrap();
    let am = &c.alerting.alertmanagers[0];
    assert_eq!(
        (am.timeout, am.api_version.as_str()),
        (Duration::from_secs(10), "v2")
    );
    assert_eq!(am.path_prefix, "/am");
    assert_eq!(am.http.basic_auth.as_ref().unwrap().username, "u");
    assert!(
        c.to_yaml().contains("password: <secret>"),
        "{}",
        c.to_yaml()
    );
    // tsdbctl speaks only v2: v1, which Prometheus 2.42 still accepts, is a clear error.
    let e = err("alerting:\n  alertmanagers:\n  - static_configs: []\n    api_version: v1\n");
    assert_eq!(e.line(), Some(4), "{e}");
    assert!(
        e.to_string().contains("only the Alertmanager API v2"),
        "{e}"
    );
    for (bad, line) in [
        ("alerting:\n  alertmanagers:\n  - static_config: []\n", 3),
        ("alerting:\n  alertmanagers:\n  - api_version: v3\n", 3),
        ("alerting:\n  alertmanagers:\n  - timeout: 5\n", 3),
        (
            "alerting:\n  alert_relabel_configs:\n  - action: keep\n    regex: (\n",
            4,
        ),
        ("alerting:\n  alertmanagrs: []\n", 2),
        ("alerting:\n  alertmanagers:\n  - static_configs:\n    - targets: ['http://a:1']\n", 4),
        ("alerting:\n  alertmanagers:\n  - scheme: ftp\n", 3),
        ("alerting:\n  alertmanagers:\n  - sigv4: {}\n", 3),
        (
            "alerting:\n  alertmanagers:\n  - basic_auth:\n      username: u\n    bearer_token: t\n",
            3,
        ),
    ] {
        let e = err(bad);
        assert_eq!(e.line(), Some(line), "{bad:?}: {e}");
    }
}

#[test]
fn prometheus_keys_we_do_not_support_say_so() {
    for (text, line) in [
        ("remote_read:\n- url: http://x\n", 1),
        (
            "scrape_configs:\n- job_name: k\n  kubernetes_sd_configs:\n  - role: pod\n",
            3,
        ),
        (
            "scrape_configs:\n- job_name: k\n  body_size_limit: 10MB\n",
            3,
        ),
    ] {
        let e = err(text);
        assert_eq!(e.line(), Some(line), "{e}");
        assert!(
            e.to_string()
                .contains("is a Prometheus setting that tsdbctl does not support"),
            "{e}"
        );
    }
    // A typo is still a typo.
    assert!(err("scrape_configs:\n- job_name: k\n  static_config: []\n")
        .to_string()
        .contains("unknown field `static_config`, expected"));
}

#[test]
fn bad_values_name_key_and_line() {
    let cases: &[(&str, usize, &str)] = &[
        ("global:\n  scrape_interval: 1.5s\n", 2, "not a valid duration"),
        ("global:\n  scrape_interval: 10s\n  scrape_timeout: 20s\n", 3, "scrape_timeout 20s greater than scrape_interval 10s"),
        ("global:\n  external_labels:\n    a-b: x\n", 3, "not a valid label name"),
        ("scrape_configs:\n- job_name: node\n  scrape_interval: 15s\n  scrape_timeout: 20s\n", 4, "scrape_configs[0] (job \"node\"): scrape_timeout 20s greater than scrape_interval 15s"),
        ("scrape_configs:\n- job_name: a\n- job_name: a\n", 3, "found multiple scrape configs with job name \"a\""),
        ("scrape_configs:\n- scrape_interval: 1s\n", 2, "job_name is empty"),
        ("scrape_configs:\n- job_name: a\n  scheme: ftp\n", 3, "scheme"),
        ("scrape_configs:\n- job_name: a\n  static_configs:\n  - targets:\n    - a:1\n    - http://b:2\n", 6, "is not a valid hostname"),
        ("scrape_configs:\n- job_name: a\n  static_configs:\n  - targets: ['a:1']\n    labels:\n      a-b: x\n", 6, "not a valid label name"),
        ("scrape_configs:\n- job_name: a\n  relabel_configs:\n  - source_labels: [a]\n    regex: 'a(b'\n    action: keep\n", 5, "relabel_configs[0]: regex"),
        ("scrape_configs:\n- job_name: a\n  metric_relabel_configs:\n  - action: keep\n  - action: replace\n", 5, "requires 'target_label'"),
        ("scrape_configs:\n- job_name: a\n  relabel_configs:\n  - action: hashmod\n    target_label: x\n", 4, "non-zero modulus"),
        ("scrape_configs:\n- job_name: a\n  basic_auth:\n    username: u\n    password: p\n    password_file: f\n", 6, "at most one of basic_auth password & password_file"),
        ("scrape_configs:\n- job_name: a\n  bearer_token: t\n  authorization:\n    credentials: c\n", 4, "authorization is not compatible"),
        ("scrape_configs:\n- job_name: a\n  authorization:\n    type: basic\n", 4, "authorization type cannot be set to \"basic\""),
        ("scrape_configs:\n- job_name: a\n  tls_config:\n    min_version: TLS14\n", 4, "unknown TLS version"),
        ("scrape_configs:\n- job_name: a\n  file_sd_configs:\n  - files:\n    - t.txt\n", 5, "is not valid for file discovery"),
        ("scrape_configs:\n- job_name: a\n  file_sd_configs:\n  - refresh_interval: 1m\n", 4, "at least one path name"),
        ("remote_write:\n- name: x\n", 2, "url for remote_write is empty"),
        ("remote_write:\n- url: foo\n", 2, "not an http:// or https:// URL"),
        ("remote_write:\n- url: http://x\n  headers:\n    Authorization: x\n", 4, "authorization header must be changed"),
        ("remote_write:\n- url: http://x\n  name: a\n- url: http://y\n  name: a\n", 5, "found multiple remote write configs"),
        ("rule_files:\n- 'a/*/*.yml'\n", 2, "invalid rule file path"),
        // Prometheus refuses any written regex on keepequal, even the default.
        ("scrape_configs:\n- job_name: a\n  relabel_configs:\n  - action: keepequal\n    source_labels: [x]\n    target_label: y\n    regex: (.*)\n", 7, "keepequal action requires only"),
        ("scrape_configs:\n- job_name: a\n  sample_limit: -1\n", 3, "invalid type"),
    ];
    for (text, line, want) in cases {
        let e = err(text);
        assert_eq!(e.line(), Some(*line), "{text:?}: {e}");
        let msg = e.to_string();
        assert!(msg.contains(want), "{text:?}: {msg}");
        assert!(msg.starts_with("/etc/prometheus/prometheus.yml:"), "{msg}");
    }
}

#[test]
fn error_format_matches_the_documented_shape() {
    let e = Config::parse_unchecked_files(
        "scrape_configs:\n- job_name: node\n  scrape_interval: 15s\n  scrape_timeout: 20s\n",
        Path::new("prometheus.yml"),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "prometheus.yml:4: scrape_configs[0] (job \"node\"): scrape_timeout 20s greater than scrape_interval 15s"
    );
}

#[test]
fn paths_resolved_and_bearer_token_moved() {
    let c = parse(
        "rule_files: ['rules/*.yml', /abs/r.yml]\nscrape_configs:\n- job_name: a\n  bearer_token_file: tok\n  tls_config:\n    ca_file: ca.pem\n  file_sd_configs:\n  - files: [t/*.json]\n- job_name: b\n  bearer_token: secret\n  basic_auth: null\n",
    )
    .unwrap();
    assert_eq!(
        c.rule_files,
        vec!["/etc/prometheus/rules/*.yml", "/abs/r.yml"]
    );
    let a = &c.scrape_configs[0].http;
    assert_eq!(a.bearer_token_file, None);
    let auth = a.authorization.as_ref().unwrap();
    assert_eq!(auth.kind, "Bearer");
    assert_eq!(
        auth.credentials_file.as_deref(),
        Some("/etc/prometheus/tok")
    );
    assert_eq!(
        a.tls_config.ca_file.as_deref(),
        Some("/etc/prometheus/ca.pem")
    );
    assert_eq!(
        c.scrape_configs[0].file_sd_configs[0].files,
        vec!["/etc/prometheus/t/*.json"]
    );
    let b = &c.scrape_configs[1].http;
    assert_eq!(
        b.authorization.as_ref().unwrap().credentials.as_deref(),
        Some("secret")
    );
}

#[test]
fn to_yaml_hides_secrets_and_round_trips() {
    let c = parse(
        "global:\n  external_labels: {dc: x}\nscrape_configs:\n- job_name: a\n  basic_auth: {username: u, password: hunter2}\n  static_configs:\n  - targets: ['h:1']\n- job_name: b\n  bearer_token: tok3n\nremote_write:\n- url: http://x/w\n  authorization: {credentials: s3cret}\n",
    )
    .unwrap();
    let y = c.to_yaml();
    for secret in ["hunter2", "tok3n", "s3cret"] {
        assert!(!y.contains(secret), "{y}");
    }
    assert!(y.contains("<secret>"), "{y}");
    assert!(y.contains("job_name: a"), "{y}");
    // What it prints loads again (secrets aside) to the same configuration.
    let again = parse(&y).unwrap();
    assert_eq!(again.scrape_configs.len(), 2);
    assert_eq!(
        again.scrape_configs[0].scrape_interval,
        c.scrape_configs[0].scrape_interval
    );
    assert_eq!(again.global, c.global);
}

#[test]
fn relabel_rules_in_config_compile() {
    let c = parse(
        "scrape_configs:\n- job_name: a\n  relabel_configs:\n  - source_labels: [__address__]\n    regex: '(.*):\\d+'\n    target_label: host\n  - action: LabelMap\n    regex: __meta_(.+)\n  - regex:\n    replacement: static\n    target_label: abc\n",
    )
    .unwrap();
    let rules = crate::relabel::compile(&c.scrape_configs[0].relabel_configs).unwrap();
    assert_eq!(rules.len(), 3);
    let out = crate::relabel::process(
        &rules,
        &crate::labels::Labels::from_pairs(&[("__address__", "h:9100"), ("__meta_x", "1")]),
    )
    .unwrap();
    assert_eq!(out.get("host"), Some("h"));
    assert_eq!(out.get("x"), Some("1"));
    assert_eq!(out.get("abc"), Some("static"));
}

#[test]
fn load_checks_rule_files() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    std::fs::write(
        dir.path().join("rules/a.yml"),
        "groups:\n- name: g\n  rules:\n  - record: x:y\n    expr: sum(up)\n",
    )
    .unwrap();
    std::fs::write(&cfg, "rule_files: ['rules/*.yml']\n").unwrap();
    let c = Config::load(&cfg).unwrap();
    assert_eq!(c.rule_files.len(), 1);
    assert_eq!(c.load_rule_files().unwrap()[0].rule_count(), 1);
    // A missing plain name is an error with its line; a bad rule file fails the load.
    std::fs::write(&cfg, "global: {}\nrule_files:\n- missing.yml\n").unwrap();
    let e = Config::load(&cfg).unwrap_err();
    assert_eq!(e.line(), Some(3), "{e}");
    std::fs::write(
        dir.path().join("rules/b.yml"),
        "groups:\n- name: g\n  rules:\n  - record: x\n",
    )
    .unwrap();
    std::fs::write(&cfg, "rule_files: ['rules/*.yml']\n").unwrap();
    assert!(matches!(
        Config::load(&cfg),
        Err(ConfigError::RuleFile { .. })
    ));
    assert!(matches!(
        Config::load(&dir.path().join("nope.yml")),
        Err(ConfigError::Io { .. })
    ));
}

#[test]
fn deserialize_impls_deny_unknown_keys_too() {
    // The public types' own Deserialize impls go through the same raw shapes.
    assert!(serde_yaml::from_str::<ScrapeConfig>("job_name: x\nfoo: 1\n").is_err());
    assert!(serde_yaml::from_str::<RemoteWriteConfig>("url: http://x\nfoo: 1\n").is_err());
    let s: ScrapeConfig = serde_yaml::from_str("job_name: x\nproxy_url: http://p:1\n").unwrap();
    assert_eq!(s.http.proxy_url.as_deref(), Some("http://p:1"));
    assert_eq!(ScrapeConfig::default().metrics_path, "/metrics");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    #[test]
    fn prop_parse_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
        fuzz_parse_config(&data);
    }

    #[test]
    fn prop_mutated_configs_never_panic(
        pos in 0usize..2000,
        len in 0usize..8,
        insert in "[ -~\n]{0,12}",
    ) {
        const SEED: &str = "global:\n  scrape_interval: 15s\n  external_labels: {a: b}\nrule_files: ['r/*.yml']\nscrape_configs:\n- job_name: node\n  scrape_timeout: 5s\n  basic_auth:\n    username: u\n    password: p\n  static_configs:\n  - targets: ['localhost:9100']\n    labels: {env: x}\n  relabel_configs:\n  - source_labels: [__address__]\n    regex: '(.*):(\\d+)'\n    target_label: port\n    replacement: '${2}'\n  file_sd_configs:\n  - files: [t.json]\nremote_write:\n- url: http://localhost:8428/api/v1/write\n  queue_config: {capacity: 10}\n  write_relabel_configs:\n  - action: labeldrop\n    regex: tmp_.*\n";
        let mut s = SEED.as_bytes().to_vec();
        let p = pos % (s.len() + 1);
        let end = (p + len).min(s.len());
        s.splice(p..end, insert.bytes());
        fuzz_parse_config(&s);
    }
}

#[test]
fn durations_print_as_prometheus_does() {
    for (ms, s) in [
        (0, "0s"),
        (90_000, "1m30s"),
        (15 * 86_400_000, "15d"),
        (14 * 86_400_000, "2w"),
        (90 * 86_400_000, "90d"),
        (365 * 86_400_000, "1y"),
        (500, "500ms"),
        (3_600_000 + 1, "1h1ms"),
    ] {
        assert_eq!(Duration(ms).to_string(), s);
    }
}
