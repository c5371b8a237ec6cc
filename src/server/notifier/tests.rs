//! The notifier against a small HTTP server of the test's (the real Alertmanager is in
//! `tests/alertmanager.rs`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::config::Config;

fn alert(name: &str, extra: &[(&str, &str)]) -> Alert {
    let mut pairs = vec![("alertname", name)];
    pairs.extend_from_slice(extra);
    Alert {
        labels: Labels::from_pairs(&pairs),
        annotations: Labels::from_pairs(&[("summary", "s")]),
        starts_at_ms: 1_000,
        ends_at_ms: 2_000,
        generator_url: String::new(),
    }
}

fn notifier(capacity: usize) -> Notifier {
    Notifier::new(
        NotifierOptions {
            queue_capacity: capacity,
            flush_deadline: Duration::from_secs(2),
        },
        &mut Registry::default(),
    )
}

fn config(text: &str) -> Config {
    Config::parse_unchecked_files(text, std::path::Path::new("/x/prometheus.yml")).unwrap()
}

#[test]
fn external_labels_where_absent_then_alert_relabeling() {
    let n = notifier(100);
    {
        let mut l = n.core.labeling.write().unwrap();
        l.external = Labels::from_pairs(&[("cluster", "eu"), ("replica", "a"), ("severity", "x")]);
        l.rules = relabel::compile(
            &config(
                "alerting:\n  alert_relabel_configs:\n  - regex: replica\n    action: labeldrop\n  - source_labels: [alertname]\n    regex: Drop.*\n    action: drop\n",
            )
            .alerting
            .alert_relabel_configs,
        )
        .unwrap();
    }
    let out = n.prepare(vec![
        alert("A", &[("severity", "low")]),
        alert("DropMe", &[]),
        alert("B", &[]),
    ]);
    assert_eq!(out.len(), 2, "{out:?}");
    // The alert's own severity wins; replica is dropped by relabeling after being added.
    assert_eq!(
        out[0].labels,
        Labels::from_pairs(&[("alertname", "A"), ("cluster", "eu"), ("severity", "low")])
    );
    assert_eq!(
        out[1].labels,
        Labels::from_pairs(&[("alertname", "B"), ("cluster", "eu"), ("severity", "x")])
    );
}

#[test]
fn queue_overflow_drops_oldest_and_counts() {
    let n = notifier(4);
    n.send((0..3).map(|i| alert(&format!("a{i}"), &[])).collect());
    n.send((3..6).map(|i| alert(&format!("a{i}"), &[])).collect());
    assert_eq!(n.queue_len(), 4);
    assert_eq!(n.dropped_total(), 2);
    let names: Vec<String> = lock(&n.core.queue)
        .alerts
        .iter()
        .map(|a| a.labels.get("alertname").unwrap().to_string())
        .collect();
    assert_eq!(names, ["a2", "a3", "a4", "a5"]);
    // One send larger than the whole queue keeps its newest alerts.
    n.send((6..16).map(|i| alert(&format!("a{i}"), &[])).collect());
    assert_eq!(n.queue_len(), 4);
    assert_eq!(n.dropped_total(), 2 + 6 + 4);
    assert_eq!(
        lock(&n.core.queue).alerts[0].labels.get("alertname"),
        Some("a12")
    );
    assert_eq!(n.core.metrics.queue_length.get(), 4);
    assert_eq!(n.core.metrics.queue_capacity.get(), 4);
}

/// An HTTP server on 127.0.0.1 recording the bodies posted to `/api/v2/alerts`, answering
/// `status`.
async fn receiver(status: u16) -> (u16, Arc<Mutex<Vec<String>>>) {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let b = bodies.clone();
    let app = axum::Router::new().route(
        "/api/v2/alerts",
        axum::routing::post(move |body: String| {
            let b = b.clone();
            async move {
                b.lock().unwrap().push(body);
                axum::http::StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await });
    (port, bodies)
}

async fn wait_for(mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition not met within 4 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_of_64_to_every_alertmanager() {
    let (p1, b1) = receiver(200).await;
    let (p2, b2) = receiver(200).await;
    let n = notifier(1000);
    // Queue first, then configure: the dispatcher starts with 150 alerts waiting.
    n.send((0..150).map(|i| alert(&format!("a{i}"), &[])).collect());
    n.apply_config(&config(&format!(
        "global:\n  external_labels:\n    dc: x\nalerting:\n  alertmanagers:\n  - static_configs:\n    - targets: ['127.0.0.1:{p1}', '127.0.0.1:{p2}', '127.0.0.1:{p1}']\n"
    )))
    .await
    .unwrap();
    let (active, dropped) = n.alertmanagers();
    assert_eq!(
        active,
        vec![
            format!("http://127.0.0.1:{p1}/api/v2/alerts"),
            format!("http://127.0.0.1:{p2}/api/v2/alerts")
        ]
    );
    assert!(dropped.is_empty());
    wait_for(|| b1.lock().unwrap().len() == 3 && b2.lock().unwrap().len() == 3).await;
    for bodies in [&b1, &b2] {
        let sizes: Vec<usize> = bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| {
                serde_json::from_str::<serde_json::Value>(b)
                    .unwrap()
                    .as_array()
                    .unwrap()
                    .len()
            })
            .collect();
        assert_eq!(sizes, [64, 64, 22]);
    }
    // Alerts queued before the configuration got no external labels (they were labeled when
    // sent); later ones do.
    n.send(vec![alert("late", &[])]);
    wait_for(|| b1.lock().unwrap().len() == 4).await;
    let last: serde_json::Value = serde_json::from_str(b1.lock().unwrap().last().unwrap()).unwrap();
    assert_eq!(last[0]["labels"]["dc"], "x");
    let url1 = format!("http://127.0.0.1:{p1}/api/v2/alerts");
    wait_for(|| n.core.metrics.sent.get_or_create(&am_label(&url1)).get() == 151).await;
    assert_eq!(n.dropped_total(), 0);
    assert_eq!(n.core.metrics.discovered.get(), 2);
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_alertmanagers_count_errors_and_drops() {
    let (bad, _) = receiver(500).await;
    let (good, bodies) = receiver(200).await;
    let n = notifier(100);
    n.apply_config(&config(&format!(
        "alerting:\n  alertmanagers:\n  - static_configs:\n    - targets: ['127.0.0.1:{bad}']\n"
    )))
    .await
    .unwrap();
    n.send(vec![alert("a", &[]), alert("b", &[])]);
    let bad_url = format!("http://127.0.0.1:{bad}/api/v2/alerts");
    wait_for(|| n.dropped_total() == 2).await;
    assert_eq!(
        n.core
            .metrics
            .errors
            .get_or_create(&am_label(&bad_url))
            .get(),
        1
    );
    // With one Alertmanager accepting, nothing is dropped. The reload keeps the first entry's
    // sender (unchanged) and adds a second entry.
    n.apply_config(&config(&format!(
        "alerting:\n  alertmanagers:\n  - static_configs:\n    - targets: ['127.0.0.1:{bad}']\n  - static_configs:\n    - targets: ['127.0.0.1:{good}']\n      labels:\n        x: y\n    relabel_configs:\n    - source_labels: [x]\n      regex: y\n      action: keep\n"
    )))
    .await
    .unwrap();
    n.send(vec![alert("c", &[])]);
    wait_for(|| bodies.lock().unwrap().len() == 1).await;
    wait_for(|| {
        n.core
            .metrics
            .errors
            .get_or_create(&am_label(&bad_url))
            .get()
            == 2
    })
    .await;
    assert_eq!(n.dropped_total(), 2);
    // Relabeling that drops an Alertmanager lists it as dropped.
    n.apply_config(&config(&format!(
        "alerting:\n  alertmanagers:\n  - static_configs:\n    - targets: ['127.0.0.1:{good}']\n    relabel_configs:\n    - source_labels: [__address__]\n      regex: nothing\n      action: keep\n"
    )))
    .await
    .unwrap();
    let (active, dropped) = n.alertmanagers();
    assert!(active.is_empty());
    assert_eq!(
        dropped,
        vec![format!("http://127.0.0.1:{good}/api/v2/alerts")]
    );
    n.stop().await;
    // After stop, alerts are dropped, counted.
    n.send(vec![alert("d", &[])]);
    assert_eq!(n.dropped_total(), 3);
    assert!(n.apply_config(&Config::default()).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_flushes_what_is_queued() {
    let (p, bodies) = receiver(200).await;
    let n = notifier(1000);
    n.apply_config(&config(&format!(
        "alerting:\n  alertmanagers:\n  - static_configs:\n    - targets: ['127.0.0.1:{p}']\n"
    )))
    .await
    .unwrap();
    n.send((0..200).map(|i| alert(&format!("a{i}"), &[])).collect());
    n.stop().await;
    let total: usize = bodies
        .lock()
        .unwrap()
        .iter()
        .map(|b| {
            serde_json::from_str::<serde_json::Value>(b)
                .unwrap()
                .as_array()
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(total, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sd_alertmanagers_follow_the_file() {
    let (p, _bodies) = receiver(200).await;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("am.json");
    std::fs::write(&f, format!(r#"[{{"targets": ["127.0.0.1:{p}"]}}]"#)).unwrap();
    let n = notifier(10);
    n.apply_config(&config(&format!(
        "alerting:\n  alertmanagers:\n  - file_sd_configs:\n    - files: ['{}']\n    path_prefix: /am\n",
        f.display()
    )))
    .await
    .unwrap();
    assert_eq!(
        n.alertmanagers().0,
        vec![format!("http://127.0.0.1:{p}/am/api/v2/alerts")]
    );
    std::fs::write(&f, r#"[{"targets": ["127.0.0.1:1", "127.0.0.1:2"]}]"#).unwrap();
    wait_for(|| n.alertmanagers().0.len() == 2).await;
    n.stop().await;
}
