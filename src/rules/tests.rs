//! Unit tests of the synchronous evaluation core: recording rules, the alert state machine,
//! delivery schedule, `for`-state restoration, reload state hand-over, evaluation slots.

use std::path::Path;

use super::alerting::{generator_url, query_escape, AlertState};
use super::group::{Group, RuleOptions, STALE_NAN};
use super::recording::RuleHealth;
use crate::config::rules::RuleFile;
use crate::db::Db;
use crate::labels::{Labels, Matcher};
use crate::Options;

const MIN: i64 = 60_000;

fn db() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default().background_compaction(false)).unwrap();
    (dir, db)
}

fn put(db: &Db, series: &[(&[(&str, &str)], f64)], t: i64) {
    let mut app = db.appender();
    for (l, v) in series {
        app.append(&Labels::from_pairs(l), t, *v).unwrap();
    }
    app.commit().unwrap();
}

fn group_with(yaml: &str, opts: &RuleOptions) -> Group {
    let f = RuleFile::parse(yaml, Path::new("rules.yml")).unwrap();
    Group::new(&f.path, &f.groups[0], opts).unwrap()
}

fn group(yaml: &str) -> Group {
    let mut g = group_with(yaml, &RuleOptions::default());
    g.set_restored();
    g
}

/// Raw samples of the series with exactly these labels.
fn samples(db: &Db, l: &[(&str, &str)]) -> Vec<(i64, f64)> {
    let want = Labels::from_pairs(l);
    let m: Vec<Matcher> = want
        .iter()
        .map(|l| Matcher::equal(l.name.clone(), l.value.clone()))
        .collect();
    let q = db.querier(i64::MIN / 2, i64::MAX / 2);
    q.select(&m)
        .unwrap()
        .iter()
        .filter(|s| s.labels() == &want)
        .flat_map(|s| s.samples().collect::<Vec<_>>())
        .collect()
}

fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN.to_bits()
}

#[test]
fn recording_rule_renames_relabels_and_stale_marks() {
    let (_d, db) = db();
    let mut g = group(
        "groups:\n- name: g\n  rules:\n  - record: job:x:double\n    expr: x * 2\n    labels:\n      team: a\n      job: over\n",
    );
    put(
        &db,
        &[
            (&[("__name__", "x"), ("job", "j"), ("i", "1")], 1.0),
            (&[("__name__", "x"), ("job", "j"), ("i", "2")], 5.0),
        ],
        0,
    );
    let r = g.eval(&db, 10_000);
    assert_eq!((r.evaluated, r.failures, r.samples), (2 - 1, 0, 2));
    let s1 = [
        ("__name__", "job:x:double"),
        ("i", "1"),
        ("job", "over"),
        ("team", "a"),
    ];
    let s2 = [
        ("__name__", "job:x:double"),
        ("i", "2"),
        ("job", "over"),
        ("team", "a"),
    ];
    assert_eq!(samples(&db, &s1), vec![(10_000, 2.0)]);
    assert_eq!(samples(&db, &s2), vec![(10_000, 10.0)]);
    assert_eq!(g.rules()[0].status().health, RuleHealth::Good);
    // x{i="2"} goes stale: its recorded series gets a stale marker at the next evaluation.
    put(
        &db,
        &[
            (&[("__name__", "x"), ("job", "j"), ("i", "1")], 1.0),
            (&[("__name__", "x"), ("job", "j"), ("i", "2")], STALE_NAN),
        ],
        15_000,
    );
    g.eval(&db, 20_000);
    assert_eq!(samples(&db, &s1), vec![(10_000, 2.0), (20_000, 2.0)]);
    let s = samples(&db, &s2);
    assert_eq!(s.len(), 2);
    assert_eq!(s[1].0, 20_000);
    assert!(is_stale(s[1].1));
    // Not marked twice.
    g.eval(&db, 30_000);
    assert_eq!(samples(&db, &s2).len(), 2);
}

#[test]
fn rules_see_earlier_rules_of_the_group_at_the_same_timestamp() {
    let (_d, db) = db();
    let mut g = group(
        "groups:\n- name: g\n  rules:\n  - record: a\n    expr: x + 1\n  - record: b\n    expr: a * 10\n  - record: s\n    expr: scalar(b) + 1\n",
    );
    put(&db, &[(&[("__name__", "x")], 1.0)], 0);
    let r = g.eval(&db, 5_000);
    assert_eq!(r.failures, 0);
    assert_eq!(samples(&db, &[("__name__", "b")]), vec![(5_000, 20.0)]);
    // A scalar result is one series without other labels.
    assert_eq!(samples(&db, &[("__name__", "s")]), vec![(5_000, 21.0)]);
}

#[test]
fn duplicate_labelsets_and_limit_fail_the_rule() {
    let (_d, db) = db();
    put(
        &db,
        &[
            (&[("__name__", "x"), ("a", "1")], 1.0),
            (&[("__name__", "x"), ("a", "2")], 2.0),
        ],
        0,
    );
    let mut g = group(
        "groups:\n- name: g\n  rules:\n  - record: r\n    expr: x\n    labels:\n      a: same\n",
    );
    let r = g.eval(&db, 1_000);
    assert_eq!(r.failures, 1);
    let st = g.rules()[0].status();
    assert_eq!(st.health, RuleHealth::Bad);
    assert_eq!(
        st.last_error.as_deref(),
        Some("vector contains metrics with the same labelset after applying rule labels")
    );
    assert!(samples(&db, &[("__name__", "r"), ("a", "same")]).is_empty());

    let mut g = group("groups:\n- name: g\n  limit: 1\n  rules:\n  - record: r\n    expr: x\n");
    g.eval(&db, 1_000);
    assert_eq!(
        g.rules()[0].status().last_error.as_deref(),
        Some("exceeded limit of 1 with 2 series")
    );
    let mut g = group("groups:\n- name: g\n  limit: 1\n  rules:\n  - alert: A\n    expr: x > 0\n");
    g.eval(&db, 1_000);
    assert_eq!(
        g.rules()[0].status().last_error.as_deref(),
        Some("exceeded limit of 1 with 2 alerts")
    );
    assert_eq!(
        g.rules()[0].as_alerting().unwrap().active_alerts().count(),
        0
    );
}

const ALERT: &str = "groups:\n- name: g\n  interval: 10s\n  rules:\n  - alert: High\n    expr: x > 100\n    for: 30s\n    labels:\n      severity: low\n      instance_copy: '{{ $labels.instance }}'\n    annotations:\n      summary: 'value {{ $value }} on {{ $labels.instance }}'\n";

#[test]
fn alert_goes_pending_then_firing_then_resolved() {
    let (_d, db) = db();
    let mut g = group(ALERT);
    let x = [("__name__", "x"), ("instance", "i1")];
    let alert_labels = Labels::from_pairs(&[
        ("alertname", "High"),
        ("instance", "i1"),
        ("instance_copy", "i1"),
        ("severity", "low"),
    ]);
    put(&db, &[(&x, 50.0)], 0);
    assert!(g.eval(&db, 10_000).alerts.is_empty());
    assert_eq!(
        g.rules()[0].as_alerting().unwrap().state(),
        AlertState::Inactive
    );

    put(&db, &[(&x, 150.0)], 15_000);
    let r = g.eval(&db, 20_000);
    assert!(r.alerts.is_empty(), "pending alerts are not sent");
    let rule = g.rules()[0].as_alerting().unwrap();
    let a = rule.active_alerts().next().unwrap();
    assert_eq!(a.state, AlertState::Pending);
    assert_eq!(a.labels, alert_labels);
    assert_eq!(a.annotations.get("summary"), Some("value 150 on i1"));
    assert_eq!(a.active_at_ms, 20_000);
    let mut alerts_pending = alert_labels.clone().into_vec();
    alerts_pending.push(crate::labels::Label::new("__name__", "ALERTS"));
    alerts_pending.push(crate::labels::Label::new("alertstate", "pending"));
    let alerts_pending = Labels::new(alerts_pending);
    let pairs: Vec<(&str, &str)> = alerts_pending
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect();
    assert_eq!(samples(&db, &pairs), vec![(20_000, 1.0)]);
    let mut fs: Vec<(&str, &str)> = alert_labels
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect();
    fs.push(("__name__", "ALERTS_FOR_STATE"));
    assert_eq!(samples(&db, &fs), vec![(20_000, 20.0)]);

    // 30 s later it fires and is sent.
    for t in [30_000, 40_000] {
        put(&db, &[(&x, 150.0)], t - 5_000);
        assert!(g.eval(&db, t).alerts.is_empty());
    }
    put(&db, &[(&x, 150.0)], 45_000);
    let r = g.eval(&db, 50_000);
    let a = g.rules()[0]
        .as_alerting()
        .unwrap()
        .active_alerts()
        .next()
        .unwrap();
    assert_eq!((a.state, a.fired_at_ms), (AlertState::Firing, Some(50_000)));
    assert_eq!(r.alerts.len(), 1);
    let sent = &r.alerts[0];
    assert_eq!(sent.labels, alert_labels);
    assert_eq!(sent.starts_at_ms, 50_000);
    // 4 × max(resend delay 1m, interval 10s).
    assert_eq!(sent.ends_at_ms, 50_000 + 4 * MIN);
    assert_eq!(sent.generator_url, "/graph?g0.expr=x+%3E+100&g0.tab=1");

    // Re-sent only once the resend delay has passed.
    let mut sends = Vec::new();
    for t in (60_000..=120_000).step_by(10_000) {
        put(&db, &[(&x, 150.0)], t - 5_000);
        if !g.eval(&db, t).alerts.is_empty() {
            sends.push(t);
        }
    }
    assert_eq!(sends, vec![120_000]);

    // The condition stops holding: resolved, sent at once with ends_at = resolution.
    put(&db, &[(&x, 1.0)], 125_000);
    let r = g.eval(&db, 130_000);
    assert_eq!(r.alerts.len(), 1);
    assert_eq!(r.alerts[0].ends_at_ms, 130_000);
    assert_eq!(r.alerts[0].starts_at_ms, 50_000);
    let rule = g.rules()[0].as_alerting().unwrap();
    assert_eq!(rule.active_alerts().count(), 0);
    let kept = rule.current_alerts().next().unwrap();
    assert_eq!(
        (kept.state, kept.resolved_at_ms),
        (AlertState::Inactive, Some(130_000))
    );
    // Re-sent as resolved for 15 minutes, then forgotten: a send is due once the last one is
    // strictly older than the resend delay, so every 70 s at a 10 s interval (12 times).
    let mut resent = 0;
    let mut t = 140_000;
    while t <= 130_000 + 15 * MIN + 10_000 {
        resent += g.eval(&db, t).alerts.len();
        t += 10_000;
    }
    assert_eq!(resent, 12);
    assert_eq!(
        g.rules()[0].as_alerting().unwrap().current_alerts().count(),
        0
    );
}

#[test]
fn pending_alert_that_vanishes_is_dropped_and_for_zero_fires_at_once() {
    let (_d, db) = db();
    let mut g = group(ALERT);
    let x = [("__name__", "x"), ("instance", "i1")];
    put(&db, &[(&x, 150.0)], 0);
    g.eval(&db, 10_000);
    put(&db, &[(&x, 1.0)], 15_000);
    assert!(g.eval(&db, 20_000).alerts.is_empty());
    assert_eq!(
        g.rules()[0].as_alerting().unwrap().current_alerts().count(),
        0
    );

    let mut g = group("groups:\n- name: g\n  rules:\n  - alert: Now\n    expr: x > 100\n");
    put(&db, &[(&x, 150.0)], 25_000);
    let r = g.eval(&db, 30_000);
    assert_eq!(r.alerts.len(), 1);
    assert_eq!(r.alerts[0].starts_at_ms, 30_000);
}

#[test]
fn keep_firing_for_holds_a_firing_alert() {
    let (_d, db) = db();
    let mut g = group(
        "groups:\n- name: g\n  interval: 10s\n  rules:\n  - alert: K\n    expr: x > 100\n    keep_firing_for: 25s\n",
    );
    let x = [("__name__", "x")];
    put(&db, &[(&x, 150.0)], 0);
    g.eval(&db, 10_000);
    assert_eq!(
        g.rules()[0].as_alerting().unwrap().state(),
        AlertState::Firing
    );
    put(&db, &[(&x, 1.0)], 15_000);
    for (t, want) in [
        (20_000, AlertState::Firing),
        (30_000, AlertState::Firing),
        (40_000, AlertState::Firing),
        (50_000, AlertState::Inactive),
    ] {
        put(&db, &[(&x, 1.0)], t - 1_000);
        g.eval(&db, t);
        let rule = g.rules()[0].as_alerting().unwrap();
        let a = rule.current_alerts().next().unwrap();
        assert_eq!(a.state, want, "at {t}");
        if want == AlertState::Firing {
            assert_eq!(a.keep_firing_since_ms, Some(20_000));
        } else {
            assert_eq!(a.resolved_at_ms, Some(50_000));
        }
    }
    // Holding again resets keep_firing_since (a new alert: the old one is resolved).
    put(&db, &[(&x, 150.0)], 55_000);
    g.eval(&db, 60_000);
    let a = g.rules()[0]
        .as_alerting()
        .unwrap()
        .active_alerts()
        .next()
        .unwrap()
        .clone();
    assert_eq!(
        (a.state, a.active_at_ms, a.keep_firing_since_ms),
        (AlertState::Firing, 60_000, None)
    );
}

#[test]
fn templates_expand_per_alert_and_errors_are_reported_in_the_alert() {
    let (_d, db) = db();
    let opts = RuleOptions {
        external_labels: Labels::from_pairs(&[("site", "here")]),
        external_url: "http://prom:9090".into(),
        ..RuleOptions::default()
    };
    let mut g = group_with(
        "groups:\n- name: g\n  rules:\n  - alert: T\n    expr: x > 0\n    labels:\n      double: '{{ $value | humanize }}'\n    annotations:\n      broken: '{{ humanize \"notanumber\" }}'\n      ctx: '{{ $externalLabels.site }} {{ $externalURL }}'\n      q: '{{ with query \"sum(x)\" }}{{ . | first | value }}{{ end }}'\n      empty: '{{ $labels.nosuch }}'\n",
        &opts,
    );
    g.set_restored();
    put(
        &db,
        &[
            (&[("__name__", "x"), ("i", "1")], 1500.0),
            (&[("__name__", "x"), ("i", "2")], 2.0),
        ],
        0,
    );
    g.eval(&db, 1_000);
    let rule = g.rules()[0].as_alerting().unwrap();
    let alerts: Vec<_> = rule.active_alerts().collect();
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[0].labels.get("double"), Some("1.5k"));
    assert_eq!(alerts[1].labels.get("double"), Some("2"));
    let a = alerts[0];
    // Templates parse (the rule file is checked); an execution error is the alert's text.
    let broken = a.annotations.get("broken").unwrap();
    assert!(
        broken.starts_with(
            "<error expanding template: error executing template __alert_T: template: __alert_T:1:"
        ),
        "{broken}"
    );
    assert_eq!(a.annotations.get("ctx"), Some("here http://prom:9090"));
    assert_eq!(a.annotations.get("q"), Some("1502"));
    // An annotation that expands to nothing is kept, empty (Prometheus lists it).
    assert_eq!(a.annotations.get("empty"), Some(""));
    assert_eq!(g.rules()[0].status().health, RuleHealth::Good);
}

#[test]
fn alerts_are_written_only_once_restored() {
    let (_d, db) = db();
    let mut g = group_with(ALERT, &RuleOptions::default());
    assert!(g.should_restore());
    put(&db, &[(&[("__name__", "x"), ("instance", "i1")], 150.0)], 0);
    g.eval(&db, 10_000);
    assert!(samples(
        &db,
        &[
            ("__name__", "ALERTS_FOR_STATE"),
            ("alertname", "High"),
            ("instance", "i1"),
            ("instance_copy", "i1"),
            ("severity", "low")
        ]
    )
    .is_empty());
    g.restore_for_state(&db, 12_000);
    assert!(!g.should_restore());
    g.eval(&db, 20_000);
    assert_eq!(
        samples(
            &db,
            &[
                ("__name__", "ALERTS_FOR_STATE"),
                ("alertname", "High"),
                ("instance", "i1"),
                ("instance_copy", "i1"),
                ("severity", "low")
            ]
        ),
        vec![(20_000, 10.0)]
    );
}

/// `for: 1h` alert; `ALERTS_FOR_STATE` says it became active at `active_s` and was last
/// written at `down_ms`; restart evaluates at `ts` then restores.
fn restored_active_at(active_s: i64, down_ms: i64, ts: i64) -> i64 {
    let (_d, db) = db();
    let yaml = "groups:\n- name: g\n  rules:\n  - alert: Slow\n    expr: x > 0\n    for: 1h\n";
    let fs = [
        ("__name__", "ALERTS_FOR_STATE"),
        ("alertname", "Slow"),
        ("i", "1"),
    ];
    put(&db, &[(&fs, active_s as f64)], down_ms);
    put(&db, &[(&[("__name__", "x"), ("i", "1")], 1.0)], ts - 1_000);
    let mut g = group_with(yaml, &RuleOptions::default());
    g.eval(&db, ts);
    g.restore_for_state(&db, ts);
    let a = g.rules()[0]
        .as_alerting()
        .unwrap()
        .active_alerts()
        .next()
        .unwrap()
        .clone();
    a.active_at_ms
}

#[test]
fn restore_for_state_as_prometheus() {
    let h = 3_600_000;
    let t0 = 10 * h;
    // Was firing (active 2 h before going down): the old active time stays.
    assert_eq!(
        restored_active_at((t0 - 2 * h) / 1000, t0, t0 + 5 * MIN),
        t0 - 2 * h
    );
    // Pending for 10 min, down 20 min: the remaining 50 min run from now.
    let ts = t0 + 20 * MIN;
    assert_eq!(
        restored_active_at((t0 - 10 * MIN) / 1000, t0, ts),
        t0 - 10 * MIN + 20 * MIN
    );
    // Pending for 55 min: 5 min left is under the 10 min grace period, so it fires 10 min
    // after the restart.
    assert_eq!(
        restored_active_at((t0 - 55 * MIN) / 1000, t0, ts),
        ts + 10 * MIN - h
    );
    // Outside the outage tolerance (1 h): not restored, active from the restart's evaluation.
    assert_eq!(
        restored_active_at((t0 - 10 * MIN) / 1000, t0, t0 + 2 * h),
        t0 + 2 * h
    );
    // A stale marker means it was not active.
    let (_d, db) = db();
    let fs = [
        ("__name__", "ALERTS_FOR_STATE"),
        ("alertname", "Slow"),
        ("i", "1"),
    ];
    put(&db, &[(&fs, 100.0)], t0 - MIN);
    put(&db, &[(&fs, STALE_NAN)], t0);
    put(&db, &[(&[("__name__", "x"), ("i", "1")], 1.0)], t0 + MIN);
    let mut g = group_with(
        "groups:\n- name: g\n  rules:\n  - alert: Slow\n    expr: x > 0\n    for: 1h\n",
        &RuleOptions::default(),
    );
    g.eval(&db, t0 + 2 * MIN);
    g.restore_for_state(&db, t0 + 2 * MIN);
    let a = g.rules()[0]
        .as_alerting()
        .unwrap()
        .active_alerts()
        .next()
        .unwrap()
        .clone();
    assert_eq!(a.active_at_ms, t0 + 2 * MIN);
}

#[test]
fn short_for_is_not_restored() {
    let (_d, db) = db();
    let fs = [
        ("__name__", "ALERTS_FOR_STATE"),
        ("alertname", "Quick"),
        ("i", "1"),
    ];
    put(&db, &[(&fs, 100.0)], 200_000);
    put(&db, &[(&[("__name__", "x"), ("i", "1")], 1.0)], 250_000);
    let mut g = group_with(
        "groups:\n- name: g\n  rules:\n  - alert: Quick\n    expr: x > 0\n    for: 5m\n",
        &RuleOptions::default(),
    );
    g.eval(&db, 260_000);
    g.restore_for_state(&db, 260_000);
    let rule = g.rules()[0].as_alerting().unwrap();
    assert!(rule.restored());
    assert_eq!(rule.active_alerts().next().unwrap().active_at_ms, 260_000);
}

#[test]
fn copy_state_keeps_alerts_and_stale_marks_removed_rules() {
    let (_d, db) = db();
    put(&db, &[(&[("__name__", "x")], 150.0)], 0);
    let mut old = group(
        "groups:\n- name: g\n  rules:\n  - record: gone\n    expr: x\n  - alert: A\n    expr: x > 100\n    for: 1h\n",
    );
    old.eval(&db, 10_000);
    let mut new = group(
        "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: x > 100\n    for: 1h\n    annotations:\n      new: yes\n",
    );
    assert!(!new.same_config(&old));
    new.copy_state(&mut old);
    put(&db, &[(&[("__name__", "x")], 150.0)], 15_000);
    new.eval(&db, 20_000);
    let a = new.rules()[0]
        .as_alerting()
        .unwrap()
        .active_alerts()
        .next()
        .unwrap()
        .clone();
    assert_eq!(a.active_at_ms, 10_000);
    assert_eq!(a.annotations.get("new"), Some("yes"));
    let gone = samples(&db, &[("__name__", "gone")]);
    assert_eq!(gone.len(), 2);
    assert!(is_stale(gone[1].1) && gone[1].0 == 20_000);
}

#[test]
fn evaluation_slots_are_offset_by_the_group_hash() {
    let g = group("groups:\n- name: g\n  interval: 15s\n  rules:\n  - record: r\n    expr: x\n");
    let interval = 15_000_000_000i64;
    let offset = (g.hash() % interval as u64) as i64;
    let now = 1_700_000_000_123_456_789i64;
    let ts = g.eval_timestamp_ns(now);
    assert!(ts <= now && now - ts < interval);
    assert_eq!((ts - offset).rem_euclid(interval), 0);
    assert_eq!(g.eval_timestamp_ns(ts), ts);
    assert_eq!(g.eval_timestamp_ns(ts + interval - 1), ts);
    // Prometheus' labels.Hash of {file="rules.yml", name="g"}: xxhash64 over
    // "file\xffrules.yml\xffname\xffg\xff".
    assert_eq!(
        g.hash(),
        xxhash_rust::xxh64::xxh64(b"file\xffrules.yml\xffname\xffg\xff", 0)
    );
    let other =
        group("groups:\n- name: h\n  interval: 15s\n  rules:\n  - record: r\n    expr: x\n");
    assert_ne!(other.eval_timestamp_ns(now), ts);
}

#[test]
fn generator_urls_escape_as_go() {
    assert_eq!(
        query_escape("a b/c{d=\"é\"}~_.-"),
        "a+b%2Fc%7Bd%3D%22%C3%A9%22%7D~_.-"
    );
    assert_eq!(
        generator_url("http://h:9090", "rate(x[5m]) > 0"),
        "http://h:9090/graph?g0.expr=rate%28x%5B5m%5D%29+%3E+0&g0.tab=1"
    );
}
