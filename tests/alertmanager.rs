//! Alertmanager delivery (issue 6, point 4) against Debian's real Alertmanager 0.25: alerts sent
//! through `server::notifier::Notifier` reach a webhook receiver through the Alertmanager's
//! routing, firing and then resolved, with their labels, annotations and the external labels;
//! an Alertmanager that is down or hangs does not delay delivery to another.
#![cfg(feature = "server")]

mod alerting;
mod common;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alerting::{black_hole, Alertmanager, Webhook, ALERTMANAGER};
use prometheus_client::registry::Registry;
use tsdb::config::Config;
use tsdb::labels::Labels;
use tsdb::rules::{Alert, AlertSink};
use tsdb::server::notifier::{Notifier, NotifierOptions};
use tsdb::server::AlertmanagerView;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn config(text: &str) -> Config {
    Config::parse(text, Path::new("/nonexistent/prometheus.yml")).unwrap()
}

fn alert(name: &str, starts_at_ms: i64, ends_at_ms: i64) -> Alert {
    Alert {
        labels: Labels::from_pairs(&[
            ("alertname", name),
            ("severity", "low"),
            ("module", "counter_demo"),
        ]),
        annotations: Labels::from_pairs(&[("summary", "example summary")]),
        starts_at_ms,
        ends_at_ms,
        generator_url: "http://127.0.0.1:9090/graph?g0.expr=up&g0.tab=1".to_string(),
    }
}

#[test]
fn firing_then_resolved_reach_the_webhook() {
    if !common::available(ALERTMANAGER) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hook = Webhook::start();
    let am = Alertmanager::start(dir.path(), &hook);
    let rt = runtime();
    let notifier = Notifier::new(NotifierOptions::default(), &mut Registry::default());
    rt.block_on(notifier.apply_config(&config(&format!(
        "global:\n  external_labels:\n    dc: eu\n    severity: overridden-not\nalerting:\n  alertmanagers:\n  - static_configs:\n    - targets: ['127.0.0.1:{}']\n    timeout: 5s\n",
        am.port
    ))))
    .unwrap();
    assert_eq!(
        notifier.alertmanagers().0,
        vec![format!("http://127.0.0.1:{}/api/v2/alerts", am.port)]
    );

    // Milliseconds that print the same in both forms: we send three digits (as Prometheus'
    // strfmt.DateTime), Alertmanager echoes Go's RFC 3339 with trailing zeros trimmed.
    let start = (now_ms() - 10_000) / 1000 * 1000 + 123;
    // Firing: Prometheus sends endsAt = now + 4 × resend delay.
    notifier.send(vec![alert("ExampleAlertName", start, now_ms() + 240_000)]);
    let fired = hook.wait_for(
        "firing",
        &[("alertname", "ExampleAlertName")],
        Duration::from_secs(15),
    );
    assert_eq!(fired["labels"]["severity"], "low", "{fired}");
    assert_eq!(fired["labels"]["dc"], "eu", "external label: {fired}");
    assert_eq!(fired["labels"]["module"], "counter_demo");
    assert_eq!(fired["annotations"]["summary"], "example summary");
    assert_eq!(
        fired["generatorURL"],
        "http://127.0.0.1:9090/graph?g0.expr=up&g0.tab=1"
    );
    assert_eq!(
        fired["startsAt"].as_str().unwrap(),
        tsdb::api::format_rfc3339(start)
    );

    // Resolved: the same alert with endsAt in the past.
    notifier.send(vec![alert("ExampleAlertName", start, now_ms() - 1_000)]);
    let resolved = hook.wait_for(
        "resolved",
        &[("alertname", "ExampleAlertName")],
        Duration::from_secs(15),
    );
    assert_eq!(resolved["labels"]["dc"], "eu");
    rt.block_on(notifier.stop());
    drop(am);
}

#[test]
fn a_down_or_hanging_alertmanager_does_not_delay_another() {
    if !common::available(ALERTMANAGER) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hook = Webhook::start();
    let am = Alertmanager::start(dir.path(), &hook);
    let down = common::free_port();
    let (hang, _h) = black_hole();
    let rt = runtime();
    let mut registry = Registry::default();
    let opts = NotifierOptions {
        // Stop gives the hanging one 1 s, not 5.
        flush_deadline: Duration::from_secs(1),
        ..NotifierOptions::default()
    };
    let notifier = Notifier::new(opts, &mut registry);
    // The hanging one has Prometheus' default 10 s timeout; the down one refuses connections.
    rt.block_on(notifier.apply_config(&config(&format!(
        "alerting:\n  alertmanagers:\n  - static_configs:\n    - targets: ['127.0.0.1:{hang}', '127.0.0.1:{down}']\n  - static_configs:\n    - targets: ['127.0.0.1:{}']\n",
        am.port
    ))))
    .unwrap();
    assert_eq!(notifier.alertmanagers().0.len(), 3);
    let t0 = Instant::now();
    for i in 0..3 {
        // Several sends in a row: with a shared send loop the hanging Alertmanager would hold
        // each batch for its 10 s timeout.
        notifier.send(vec![alert(&format!("A{i}"), now_ms(), now_ms() + 240_000)]);
        std::thread::sleep(Duration::from_millis(100));
    }
    for i in 0..3 {
        hook.wait_for(
            "firing",
            &[("alertname", &format!("A{i}"))],
            Duration::from_secs(8),
        );
    }
    let took = t0.elapsed();
    // Alertmanager's group_wait is 1 s; far below the hanging peer's 10 s timeout.
    assert!(took < Duration::from_secs(6), "took {took:?}");
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let errors_down = format!(
        "prometheus_notifications_errors_total{{alertmanager=\"http://127.0.0.1:{down}/api/v2/alerts\"}} 3"
    );
    assert!(text.contains(&errors_down), "{text}");
    assert!(
        text.contains("prometheus_notifications_alertmanagers_discovered 3"),
        "{text}"
    );
    assert!(
        text.contains("prometheus_notifications_dropped_total 0"),
        "{text}"
    );
    rt.block_on(notifier.stop());
}

#[test]
fn serve_lists_its_alertmanagers_and_reloads_them() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        "alerting:\n  alertmanagers:\n  - static_configs:\n    - targets: ['127.0.0.1:9093']\n    path_prefix: /am\n  - static_configs:\n    - targets: ['127.0.0.1:9094']\n    relabel_configs:\n    - source_labels: [__address__]\n      regex: '.*:9093'\n      action: keep\n",
    )
    .unwrap();
    let serve = alerting::Serve::start(
        &dir.path().join("data"),
        &cfg,
        &["--alertmanager.notification-queue-capacity", "123"],
    );
    let v = serve.json("/api/v1/alertmanagers");
    assert_eq!(
        v["data"],
        serde_json::json!({
            "activeAlertmanagers": [{"url": "http://127.0.0.1:9093/am/api/v2/alerts"}],
            "droppedAlertmanagers": [{"url": "http://127.0.0.1:9094/api/v2/alerts"}],
        })
    );
    let (_, metrics) = serve.get("/metrics").unwrap();
    assert!(
        metrics.contains("prometheus_notifications_queue_capacity 123"),
        "{metrics}"
    );
    assert!(metrics.contains("prometheus_notifications_alertmanagers_discovered 1"));
    std::fs::write(&cfg, "global:\n  scrape_interval: 15s\n").unwrap();
    assert_eq!(serve.post("/-/reload").unwrap().0, 200, "{}", serve.logs());
    let v = serve.json("/api/v1/alertmanagers");
    assert_eq!(
        v["data"],
        serde_json::json!({"activeAlertmanagers": [], "droppedAlertmanagers": []})
    );
}
