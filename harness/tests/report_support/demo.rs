//! Synthetic report data shaped like a Black Friday single-process vs
//! cluster run, for the report's tests, the `report_demo` example and
//! trying the page out. Deterministic for a seed. Not measured data: pages
//! built from it say so in their title. Test code, not shipped in the
//! library: included with `#[path = "report_support/demo.rs"] mod demo;`.
#![allow(dead_code)]

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use harness::outcome::FailureClass;
use harness::report::model::*;

/// Two runs ("single process", "cluster") over `seconds` seconds.
pub fn synthetic(seconds: u32, seed: u64) -> ReportData {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let d = f64::from(seconds);
    let single_faults = vec![
        fault("restart-1", "naive_restart", 0.30 * d, 0.30 * d + 2.0, Some(0.30 * d + 4.5), 310, 40, 270),
        fault("restart-2", "naive_restart", 0.65 * d, 0.65 * d + 2.0, Some(0.65 * d + 6.0), 420, 35, 385),
    ];
    let cluster_faults = vec![
        fault("kill-1", "kill_worker SIGKILL", 0.25 * d, 0.25 * d, Some(0.25 * d + 0.8), 6, 6, 0),
        fault("rolling-restart", "signal_master SIGHUP", 0.45 * d, 0.45 * d + 5.0, Some(0.45 * d + 5.0), 0, 0, 0),
        fault("kill-2", "kill_worker SIGKILL", 0.60 * d, 0.60 * d, Some(0.60 * d + 0.7), 4, 4, 0),
        fault("hang-1", "hang_worker", 0.75 * d, 0.75 * d + 3.0, Some(0.75 * d + 3.2), 3, 3, 0),
    ];
    let single = run(&mut rng, "single process", "reference-server --workers 0", seconds, 9.0, single_faults, 1);
    let mut cluster = run(&mut rng, "cluster", "reference-server --workers 2", seconds, 1.0, cluster_faults, 0);
    let scraped = server_log(d);
    cluster.server = harness::scrape::series::charts(&scraped);
    cluster.scrapers = scraped.endpoints.iter().map(harness::judge::summary::ScrapedEndpoint::from).collect();
    let verdict = vec![
        gate(
            "cluster: dropped requests <= 0",
            cluster.totals.dropped == 0,
            format!("{} dropped (budget 0)", cluster.totals.dropped),
        ),
        gate("cluster: audit passes", true, "orders, idempotency and stock all consistent".into()),
        gate(
            "cluster beats single process on p99",
            cluster.totals.p99_ms < single.totals.p99_ms,
            format!("{:.0} ms vs {:.0} ms", cluster.totals.p99_ms, single.totals.p99_ms),
        ),
        gate(
            "cluster beats single process on dropped",
            cluster.totals.dropped < single.totals.dropped,
            format!("{} vs {}", cluster.totals.dropped, single.totals.dropped),
        ),
        GateRow {
            gate: "baseline: p99 latency".into(),
            status: Status::Unknown,
            detail: "no baseline given (--baseline OLD/summary.json)".into(),
        },
    ];
    ReportData {
        title: "Black Friday: single process vs cluster (synthetic demo data)".into(),
        generated: now_rfc3339(),
        machine: Machine::current(),
        scenario: ScenarioInfo {
            name: "blackfriday-demo".into(),
            description: "Shoppers arrive on a midnight ramp, browse, fill carts and check out; doorbusters sell out."
                .into(),
            shoppers: 3_000,
            duration_s: d,
            seed,
            transport: None,
        },
        scaling_note: Some(
            "Synthetic demo data: nothing was measured. A real run states here how the arrival rate was scaled \
             from a calibration of one worker's capacity."
                .into(),
        ),
        verdict,
        runs: vec![single, cluster],
    }
}

/// What the cluster's /metrics could have said during the demo's faults: two
/// workers, a third during the rolling restart (new before old), a crash at
/// each kill, a hang, and two failed scrapes (a gap) after the second kill.
fn server_log(d: f64) -> harness::scrape::ScrapeLog {
    use harness::scenario::default_series;
    use harness::scrape::{EndpointInfo, Sample, ScrapeLog, ScrapeRecord, SeriesInfo};
    let series = default_series()
        .into_iter()
        .map(|s| SeriesInfo { name: s.name, labels: s.labels, kind: s.kind.as_str().into(), title: s.title })
        .collect();
    let mut records = Vec::new();
    let (mut crash, mut hang, mut rolling, mut requests) = (0.0, 0.0, 0.0, [0.0f64; 2]);
    for t in 0..(d as u32) {
        let t = f64::from(t);
        let roll = (0.45 * d..0.45 * d + 5.0).contains(&t);
        if t == (0.25 * d).ceil() || t == (0.60 * d).ceil() {
            crash += 1.0;
        }
        if t == (0.75 * d + 1.0).ceil() {
            hang += 1.0;
        }
        if t == (0.45 * d + 2.0).ceil() || t == (0.45 * d + 4.0).ceil() {
            rolling += 1.0;
        }
        let gap = (0.60 * d + 2.0..0.60 * d + 4.0).contains(&t);
        let sample = |name: &str, label: Option<(&str, String)>, value: f64| Sample {
            name: name.into(),
            labels: label.map(|(k, v)| BTreeMap::from([(k.to_string(), v)])).unwrap_or_default(),
            value,
        };
        let mut samples = vec![
            sample("reference_workers_up", None, if roll && t as u32 % 2 == 1 { 3.0 } else { 2.0 }),
            sample("reference_workers_draining", None, if roll && t as u32 % 2 == 0 { 1.0 } else { 0.0 }),
        ];
        for (reason, n) in [("crash", crash), ("hang", hang), ("rolling", rolling), ("sigterm", 0.0)] {
            samples.push(sample("reference_worker_restarts_total", Some(("reason", reason.into())), n));
        }
        for (slot, total) in requests.iter_mut().enumerate() {
            *total += 40.0 + 10.0 * ((t + slot as f64) * 0.7).sin();
            let load = 3.0 + 2.0 * ((t + slot as f64) * 0.3).sin();
            samples.push(sample("reference_requests_total", Some(("slot", slot.to_string())), *total));
            samples.push(sample("reference_in_flight_requests", Some(("slot", slot.to_string())), load.round()));
            samples.push(sample("reference_open_connections", Some(("slot", slot.to_string())), 16.0 + load.round()));
        }
        records.push(ScrapeRecord {
            t_ms: t * 1000.0,
            endpoint: "reference-server".into(),
            took_ms: if gap { 1000.0 } else { 1.2 },
            ok: !gap,
            error: gap.then(|| "no complete answer within 1000 ms".into()),
            samples: if gap { Vec::new() } else { samples },
        });
    }
    ScrapeLog {
        endpoints: vec![EndpointInfo {
            label: "reference-server".into(),
            url: "http://127.0.0.1:9090/metrics".into(),
            interval_ms: 1000,
            series,
            scrapes: records.len() as u64,
            gaps: records.iter().filter(|r| !r.ok).count() as u64,
            scraper_cpu_ms: 12.5,
            gap_reasons: vec!["no complete answer within 1000 ms".into()],
        }],
        records,
    }
}

fn gate(name: &str, pass: bool, detail: String) -> GateRow {
    GateRow { gate: name.into(), status: if pass { Status::Pass } else { Status::Fail }, detail }
}

#[allow(clippy::too_many_arguments)]
fn fault(
    name: &str,
    action: &str,
    start_s: f64,
    end_s: f64,
    recovered_s: Option<f64>,
    failed: u64,
    recovered: u64,
    dropped: u64,
) -> FaultRow {
    let mut by_class = BTreeMap::new();
    if failed > 0 {
        by_class.insert(FailureClass::ConnectRefused, failed * 2 / 3);
        by_class.insert(FailureClass::ResetBeforeResponse, failed - failed * 2 / 3);
    }
    FaultRow {
        name: name.into(),
        action: action.into(),
        start_s,
        end_s: Some(end_s),
        recovered_s,
        outcome: "ok".into(),
        first_attempt_failures: by_class,
        recovered,
        dropped,
        recovery_ms: recovered_s.map(|r| (r - start_s) * 1000.0),
        // A rolling restart promises zero (docs/CHAOS.md, "Budgets").
        budget: action.starts_with("signal_master").then_some(harness::judge::summary::BudgetOut {
            max_first_attempt_failures: Some(0),
            max_dropped: Some(0),
            kept: failed == 0 && dropped == 0,
        }),
    }
}

fn in_fault(faults: &[FaultRow], t: f64) -> bool {
    faults.iter().any(|f| t + 1.0 > f.start_s && t <= f.recovered_s.or(f.end_s).unwrap_or(f.start_s))
}

/// One run: arrivals ramp up then down; `slowness` scales latency with load.
fn run(
    rng: &mut ChaCha8Rng,
    label: &str,
    target: &str,
    seconds: u32,
    slowness: f64,
    faults: Vec<FaultRow>,
    fail_per_load: u64,
) -> RunData {
    let mut all = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("static histogram bounds");
    let mut points = Vec::new();
    let mut totals = KeyNumbers::default();
    let mut active = 0u64;
    let mut failed_total = 0u64;
    for s in 0..seconds {
        let t = f64::from(s);
        let phase = t / f64::from(seconds.max(1));
        let load = (phase * std::f64::consts::PI).sin().max(0.05);
        let rate = (40.0 + 160.0 * load) as u64;
        let mut h = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("static histogram bounds");
        let base_ms = 4.0 + slowness * 60.0 * load * load;
        let faulty = in_fault(&faults, t);
        for _ in 0..rate {
            let mut ms = base_ms * (0.5 + rng.random::<f64>()).powi(2);
            if rng.random::<f64>() < 0.01 {
                ms *= 8.0;
            }
            if faulty {
                ms *= 3.0;
            }
            let us = (ms * 1000.0) as u64;
            h.saturating_record(us);
            all.saturating_record(us);
        }
        let mut failures = BTreeMap::new();
        if faulty {
            let n = 3 + 67 * fail_per_load + rng.random_range(0..4);
            failures.insert(FailureClass::ConnectRefused, n * 2 / 3);
            failures.insert(FailureClass::ResetBeforeResponse, n - n * 2 / 3);
        }
        if fail_per_load > 0 && load > 0.8 {
            failures.insert(FailureClass::ResponseTimeout, (load * 6.0) as u64);
        }
        let failed: u64 = failures.values().sum();
        failed_total += failed;
        let refused = if phase > 0.5 { rate / 25 } else { 0 };
        // Shoppers arrive with the load and leave after a journey whose length
        // grows with latency; a fault holds them up.
        let journey_s = 6.0 + base_ms / 40.0 + if faulty { 6.0 } else { 0.0 };
        active = active + rate / 4 - (active as f64 / journey_s) as u64;
        let q = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
        points.push(SecondPoint {
            t_s: t,
            p50_ms: Some(q(0.5)),
            p99_ms: Some(q(0.99)),
            max_ms: Some(h.max() as f64 / 1000.0),
            failed_ms: (failed > 0)
                .then(|| if failures.contains_key(&FailureClass::ResponseTimeout) { 5000.0 } else { 2.0 }),
            ok: rate - refused,
            refused,
            failures,
            active,
        });
        totals.ok += rate - refused;
        totals.refused += refused;
    }
    totals.dropped = faults.iter().map(|f| f.dropped).sum::<u64>() + failed_total / 10 * fail_per_load;
    totals.first_attempt_failures = failed_total;
    totals.operations = totals.ok + totals.refused + totals.dropped;
    totals.throughput_rps = totals.ok as f64 / f64::from(seconds.max(1));
    let q = |p: f64| all.value_at_quantile(p) as f64 / 1000.0;
    (totals.p50_ms, totals.p99_ms, totals.p999_ms, totals.max_ms) =
        (q(0.5), q(0.99), q(0.999), all.max() as f64 / 1000.0);
    let steps = [
        ("browse", "GET /products?page={{rand.1.50}}"),
        ("view-product", "GET /products/{{pick.skus}}"),
        ("add-to-cart", "POST /carts/{{shopper}}/items"),
        ("checkout", "POST /checkout"),
    ];
    let endpoints = steps
        .iter()
        .enumerate()
        .map(|(i, (step, request))| {
            let share = [0.4, 0.3, 0.2, 0.1][i];
            let scale = 1.0 + i as f64 * 0.3;
            EndpointRow {
                step: (*step).into(),
                request: (*request).into(),
                count: ((totals.ok + totals.refused) as f64 * share) as u64,
                failures: (failed_total as f64 * share) as u64,
                dropped: (totals.dropped as f64 * share) as u64,
                p50_ms: totals.p50_ms * scale,
                p90_ms: q(0.9) * scale,
                p99_ms: totals.p99_ms * scale,
                p999_ms: totals.p999_ms * scale,
                max_ms: totals.max_ms,
            }
        })
        .collect();
    let audit_ok = fail_per_load == 0;
    let audit = AuditChecks {
        status: Status::Pass,
        rows: vec![
            AuditCheck {
                check: "every acknowledged order exists exactly once".into(),
                status: Status::Pass,
                counts: [("acknowledged".to_string(), 812), ("found".to_string(), 812)].into(),
                detail: String::new(),
            },
            AuditCheck {
                check: "stock: initial = left + sold".into(),
                status: Status::Pass,
                counts: [("skus".to_string(), 1005), ("oversold".to_string(), 0)].into(),
                detail: if audit_ok { String::new() } else { "3 checkouts timed out: outcome unknown, allowed".into() },
            },
        ],
    };
    RunData {
        label: label.into(),
        target: target.into(),
        seconds: points,
        spectrum: harness::record::recorder::spectrum(&all),
        endpoints,
        hosts: Vec::new(),
        addresses: Vec::new(),
        shards: Vec::new(),
        faults,
        audit: Some(audit),
        slip: Slip { p99_ms: 0.4, max_ms: 3.1, harness_bottleneck: false, detail: "sender kept up".into() },
        totals,
        machine: None,
        resources: Some(demo_resources(f64::from(seconds))),
        server: Vec::new(),
        scrapers: Vec::new(),
    }
}

/// A flat target (workers replaced by the faults: a saw-tooth) and a
/// harness whose memory follows the load, one sample every 3 s.
fn demo_resources(duration_s: f64) -> harness::report::resources::ResourceData {
    use harness::host::resources::{self, Sample, Usage};
    let samples: Vec<Sample> = (0..=(duration_s / 3.0) as u64)
        .map(|i| Sample {
            t_s: i as f64 * 3.0,
            harness: Usage { rss_kib: 40_000 + (i % 7) * 2_000, fds: 300 + (i % 5) * 20, processes: 1 },
            server: Some(Usage { rss_kib: 90_000 + (i % 6) * 6_000, fds: 120 + (i % 6) * 10, processes: 5 }),
        })
        .collect();
    harness::report::resources::ResourceData {
        samples: samples.iter().map(harness::report::resources::ResourcePoint::from_sample).collect(),
        summary: resources::summarize(
            &samples,
            std::time::Duration::from_secs(3),
            std::time::Duration::from_secs_f64(duration_s),
        ),
        rss_limit: Some(50.0),
        fds_limit: Some(100.0),
    }
}
