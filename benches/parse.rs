//! Exposition parser throughput over text shaped like /work/shared/bench/gen_dataset.py output:
//! a fleet of hosts, 100 series each (node_exporter-like counters and gauges, an HTTP counter, a
//! classic histogram, a summary), scraped every 15 s, one scrape after another, with millisecond
//! timestamps (0.0.4) or grouped by series with second timestamps (OpenMetrics).
//!
//! Reported per format: bytes/s (`parse_bytes`) and samples/s (`parse_samples`).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use tsdb::exposition::{Entry, Format, Parser};

const HOSTS: usize = 100;
const STEPS: usize = 20;
const START_MS: u64 = 1_767_225_600_000;

/// A deterministic generator (xorshift), so runs compare.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One series: family (for HELP/TYPE), type, series text, value, and how the value moves.
struct Series {
    family: String,
    kind: &'static str,
    text: String,
    value: f64,
    step: f64,
    decimals: u32,
}

fn host_series(rng: &mut Rng, host: usize) -> Vec<Series> {
    let job = if host.is_multiple_of(4) {
        "api"
    } else {
        "node"
    };
    let inst = format!("host-{host:04}:9100");
    let mut out = Vec::new();
    let mut add = |family: &str,
                   kind: &'static str,
                   name: &str,
                   extra: &[(&str, String)],
                   value: f64,
                   step: f64,
                   decimals: u32| {
        let mut labels: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        labels.push(("instance".into(), inst.clone()));
        labels.push(("job".into(), job.into()));
        labels.sort();
        let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        out.push(Series {
            family: family.into(),
            kind,
            text: format!("{name}{{{}}}", inner.join(",")),
            value,
            step,
            decimals,
        });
    };
    let modes = [
        "user", "system", "idle", "iowait", "irq", "softirq", "steal", "nice",
    ];
    for cpu in 0..4 {
        for mode in modes {
            let v = (rng.unit() * 1e7).round() / 100.0;
            add(
                "node_cpu_seconds_total",
                "counter",
                "node_cpu_seconds_total",
                &[("cpu", cpu.to_string()), ("mode", mode.into())],
                v,
                7.0,
                2,
            );
        }
    }
    for m in ["MemAvailable", "MemFree", "Cached", "Buffers", "MemTotal"] {
        let name = format!("node_memory_{m}_bytes");
        add(
            &name,
            "gauge",
            &name,
            &[],
            (rng.unit() * 4e9).floor() * 4096.0,
            5e7,
            0,
        );
    }
    for dev in ["eth0", "lo"] {
        for d in ["receive", "transmit"] {
            let name = format!("node_network_{d}_bytes_total");
            add(
                &name,
                "counter",
                &name,
                &[("device", dev.into())],
                (rng.next() >> 24) as f64,
                2e5,
                0,
            );
        }
    }
    for dev in ["sda", "sdb"] {
        add(
            "node_disk_io_time_seconds_total",
            "counter",
            "node_disk_io_time_seconds_total",
            &[("device", dev.into())],
            (rng.unit() * 1e7).round() / 1000.0,
            0.4,
            3,
        );
    }
    for n in ["1", "5", "15"] {
        let name = format!("node_load{n}");
        add(
            &name,
            "gauge",
            &name,
            &[],
            (rng.unit() * 300.0).round() / 100.0,
            0.2,
            2,
        );
    }
    for mp in ["/", "/var"] {
        add(
            "node_filesystem_avail_bytes",
            "gauge",
            "node_filesystem_avail_bytes",
            &[("mountpoint", mp.into())],
            (rng.next() >> 29) as f64 * 4096.0,
            8e6,
            0,
        );
        add(
            "node_filesystem_size_bytes",
            "gauge",
            "node_filesystem_size_bytes",
            &[("mountpoint", mp.into())],
            (rng.next() >> 28) as f64 * 4096.0,
            0.0,
            0,
        );
    }
    for handler in ["/api", "/home"] {
        for method in ["GET", "POST"] {
            for code in ["200", "404", "500"] {
                add(
                    "http_requests_total",
                    "counter",
                    "http_requests_total",
                    &[
                        ("code", code.into()),
                        ("handler", handler.into()),
                        ("method", method.into()),
                    ],
                    (rng.next() % 10000) as f64,
                    40.0,
                    0,
                );
            }
        }
    }
    for handler in ["/api", "/home"] {
        let fam = "http_request_duration_seconds";
        for le in [
            "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0",
            "+Inf",
        ] {
            add(
                fam,
                "histogram",
                &format!("{fam}_bucket"),
                &[("handler", handler.into()), ("le", le.into())],
                0.0,
                60.0,
                0,
            );
        }
        add(
            fam,
            "histogram",
            &format!("{fam}_sum"),
            &[("handler", handler.into())],
            0.0,
            7.3,
            6,
        );
        add(
            fam,
            "histogram",
            &format!("{fam}_count"),
            &[("handler", handler.into())],
            0.0,
            110.0,
            0,
        );
    }
    for q in ["0.5", "0.9", "0.99"] {
        add(
            "rpc_duration_seconds",
            "summary",
            "rpc_duration_seconds",
            &[("quantile", q.into())],
            0.08,
            0.01,
            6,
        );
    }
    add(
        "rpc_duration_seconds",
        "summary",
        "rpc_duration_seconds_sum",
        &[],
        0.0,
        2.9,
        6,
    );
    add(
        "rpc_duration_seconds",
        "summary",
        "rpc_duration_seconds_count",
        &[],
        0.0,
        27.0,
        0,
    );
    add(
        "process_resident_memory_bytes",
        "gauge",
        "process_resident_memory_bytes",
        &[],
        1.5e8,
        1e6,
        0,
    );
    add(
        "process_cpu_seconds_total",
        "counter",
        "process_cpu_seconds_total",
        &[],
        512.25,
        0.05,
        2,
    );
    add(
        "process_start_time_seconds",
        "gauge",
        "process_start_time_seconds",
        &[],
        1_766_000_000.0,
        0.0,
        0,
    );
    add("go_goroutines", "gauge", "go_goroutines", &[], 50.0, 3.0, 0);
    add(
        "function_calls_total",
        "counter",
        "function_calls_total",
        &[("module", "counter_demo".into())],
        0.0,
        1.0,
        0,
    );
    out
}

fn fmt_value(v: f64, decimals: u32) -> String {
    let p = 10f64.powi(decimals as i32);
    let v = (v * p).round() / p;
    if v == v.trunc() && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// The generated text and its sample count.
fn dataset(format: Format) -> (Vec<u8>, usize) {
    let mut rng = Rng(42);
    let mut hosts: Vec<Vec<Series>> = (0..HOSTS).map(|h| host_series(&mut rng, h)).collect();
    let mut ts = vec![vec![0u64; STEPS]; HOSTS];
    let mut values = vec![vec![Vec::new(); STEPS]; HOSTS];
    for (h, series) in hosts.iter_mut().enumerate() {
        for i in 0..STEPS {
            ts[h][i] = START_MS + i as u64 * 15_000 + 1 + rng.next() % 3;
            for s in series.iter_mut() {
                s.value += s.step * rng.unit();
                values[h][i].push(fmt_value(s.value, s.decimals));
            }
        }
    }
    let mut out = String::new();
    let mut seen = std::collections::HashSet::new();
    let mut samples = 0;
    match format {
        Format::Prometheus => {
            for i in 0..STEPS {
                for (h, series) in hosts.iter().enumerate() {
                    for (j, s) in series.iter().enumerate() {
                        if seen.insert(s.family.clone()) {
                            out.push_str(&format!(
                                "# HELP {} Help text.\n# TYPE {} {}\n",
                                s.family, s.family, s.kind
                            ));
                        }
                        out.push_str(&format!("{} {} {}\n", s.text, values[h][i][j], ts[h][i]));
                        samples += 1;
                    }
                }
            }
        }
        Format::OpenMetrics => {
            let n = hosts[0].len();
            for j in 0..n {
                for (h, series) in hosts.iter().enumerate() {
                    let s = &series[j];
                    if seen.insert(s.family.clone()) {
                        out.push_str(&format!(
                            "# HELP {} Help text.\n# TYPE {} {}\n",
                            s.family, s.family, s.kind
                        ));
                    }
                    for i in 0..STEPS {
                        out.push_str(&format!(
                            "{} {} {}.{:03}\n",
                            s.text,
                            values[h][i][j],
                            ts[h][i] / 1000,
                            ts[h][i] % 1000
                        ));
                        samples += 1;
                    }
                }
            }
            out.push_str("# EOF\n");
        }
    }
    (out.into_bytes(), samples)
}

fn parse_all(input: &[u8], format: Format) -> (usize, f64) {
    let mut p = Parser::new(input, format);
    let mut n = 0;
    let mut sum = 0.0;
    while let Some(e) = p.next_entry().expect("generated text parses") {
        if let Entry::Sample {
            series,
            value,
            timestamp_ms,
        } = e
        {
            n += 1;
            sum += value + series.len() as f64 + timestamp_ms.unwrap_or(0) as f64;
        }
    }
    (n, sum)
}

/// Nanoseconds this thread has been on a CPU (Linux), so the figure below is per core even on a
/// shared, overloaded machine; None elsewhere.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Samples and bytes per CPU-second over a few passes.
fn per_core_figure(label: &str, text: &[u8], samples: usize, format: Format) {
    let passes = 15;
    let (Some(t0), w0) = (thread_cpu_ns(), std::time::Instant::now()) else {
        return;
    };
    for _ in 0..passes {
        black_box(parse_all(black_box(text), format));
    }
    let (Some(t1), wall) = (thread_cpu_ns(), w0.elapsed()) else {
        return;
    };
    let cpu_s = (t1 - t0) as f64 / 1e9;
    eprintln!(
        "{label}: per core: {:.1} M samples/s, {:.0} MB/s ({passes} passes, {:.2} s on CPU, {:.2} s wall)",
        (samples * passes) as f64 / cpu_s / 1e6,
        (text.len() * passes) as f64 / cpu_s / 1e6,
        cpu_s,
        wall.as_secs_f64()
    );
}

fn bench(c: &mut Criterion) {
    for (label, format) in [
        ("prom", Format::Prometheus),
        ("openmetrics", Format::OpenMetrics),
    ] {
        let (text, samples) = dataset(format);
        assert_eq!(parse_all(&text, format).0, samples);
        eprintln!(
            "{label}: {} bytes, {samples} samples, {:.1} bytes/sample",
            text.len(),
            text.len() as f64 / samples as f64
        );
        per_core_figure(label, &text, samples, format);
        let mut g = c.benchmark_group(format!("parse_bytes/{label}"));
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function("next_entry", |b| {
            b.iter(|| black_box(parse_all(black_box(&text), format)))
        });
        g.finish();
        let mut g = c.benchmark_group(format!("parse_samples/{label}"));
        g.throughput(Throughput::Elements(samples as u64));
        g.bench_function("next_entry", |b| {
            b.iter(|| black_box(parse_all(black_box(&text), format)))
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);
