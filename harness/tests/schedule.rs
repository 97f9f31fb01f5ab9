//! The shopper schedule: same seed -> the same schedule, different seed ->
//! different (the engine's intended sends are pinned through the engine in
//! engine_determinism.rs); arrival counts and timing follow the stages;
//! journeys follow their weights; think times stay in their bounds.

// Tests unwrap what they built themselves; a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use harness::scenario::rng::Rng;
use harness::scenario::{self, ArrivalProcess, Scenario, ThinkTime};
use harness::traffic::schedule;
use rand::SeedableRng;
use serde_json::json;

/// `shoppers` is set after validation, so that a test can ask for more than
/// the stages bring (validation refuses that) and see the stages end arrival.
fn scenario(arrival: serde_json::Value, shoppers: u64, process: &str, seed: u64) -> Scenario {
    let mut s = scenario::parse(
        &json!({
            "name": "sched",
            "seed": seed,
            "target": { "base_url": "http://127.0.0.1:8080" },
            "shoppers": 1,
            "arrival": arrival,
            "arrival_process": process,
            "journeys": [
                { "name": "a", "weight": 3, "steps": [ { "name": "a1", "path": "/a" } ] },
                { "name": "b", "weight": 1, "steps": [ { "name": "b1", "path": "/b" } ] }
            ]
        })
        .to_string(),
    )
    .unwrap();
    s.shoppers = shoppers;
    s
}

fn constant(rate: f64, secs: u64, shoppers: u64, process: &str, seed: u64) -> Scenario {
    scenario(json!([{ "duration": format!("{secs}s"), "rate": rate }]), shoppers, process, seed)
}

#[test]
fn same_seed_same_schedule_different_seed_different() {
    let s = constant(200.0, 10, 100_000, "poisson", 42);
    let a = schedule::build(&s, 1.0);
    let b = schedule::build(&s, 1.0);
    assert!(!a.shoppers.is_empty());
    assert_eq!(a, b, "same scenario, seed and scale must give the identical schedule");
    let c = schedule::build(&constant(200.0, 10, 100_000, "poisson", 43), 1.0);
    assert_ne!(
        a.shoppers.iter().map(|p| p.arrival).collect::<Vec<_>>(),
        c.shoppers.iter().map(|p| p.arrival).collect::<Vec<_>>()
    );
    assert_ne!(
        a.shoppers.iter().map(|p| p.seed).collect::<Vec<_>>(),
        c.shoppers.iter().map(|p| p.seed).collect::<Vec<_>>()
    );
}

#[test]
fn journey_weights_change_no_arrival_time() {
    let s = constant(100.0, 10, 100_000, "poisson", 5);
    let mut t = s.clone();
    t.journeys[1].weight = 50.0;
    let (a, b) = (schedule::build(&s, 1.0), schedule::build(&t, 1.0));
    assert_eq!(
        a.shoppers.iter().map(|p| p.arrival).collect::<Vec<_>>(),
        b.shoppers.iter().map(|p| p.arrival).collect::<Vec<_>>()
    );
    assert_ne!(
        a.shoppers.iter().map(|p| p.journey).collect::<Vec<_>>(),
        b.shoppers.iter().map(|p| p.journey).collect::<Vec<_>>()
    );
}

#[test]
fn constant_rate_poisson_count_and_spread() {
    // 100/s for 10 s: 1000 expected; a Poisson count has sd ~32, so 5 sd is 840..1160.
    for seed in 1..=5 {
        let sched = schedule::build(&constant(100.0, 10, 100_000, "poisson", seed), 1.0);
        let n = sched.shoppers.len();
        assert!((840..=1160).contains(&n), "seed {seed}: {n} arrivals");
        assert!(sched.shoppers.windows(2).all(|w| w[0].arrival <= w[1].arrival), "sorted");
        assert!(sched.shoppers.iter().all(|p| p.arrival < Duration::from_secs(10)));
        assert_eq!(sched.duration, Duration::from_secs(10), "stages ended the arrival");
        // Each second holds about 100 (sd 10): never below 50 or above 150.
        for sec in 0..10 {
            let in_sec = sched.shoppers.iter().filter(|p| p.arrival.as_secs() == sec).count();
            assert!((50..=150).contains(&in_sec), "seed {seed} second {sec}: {in_sec}");
        }
        // Ids are the arrival order.
        assert!(sched.shoppers.iter().enumerate().all(|(i, p)| p.id == i as u64));
    }
}

#[test]
fn poisson_gaps_are_exponential() {
    // Mean gap 1/R and coefficient of variation ~1 (uniform spacing would have 0).
    let sched = schedule::build(&constant(1000.0, 20, 1_000_000, "poisson", 3), 1.0);
    let gaps: Vec<f64> = sched.shoppers.windows(2).map(|w| (w[1].arrival - w[0].arrival).as_secs_f64()).collect();
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
    assert!((mean - 0.001).abs() < 0.00005, "mean gap {mean}");
    let cv = var.sqrt() / mean;
    assert!((0.95..1.05).contains(&cv), "cv {cv}");
}

#[test]
fn uniform_process_is_exact() {
    let sched = schedule::build(&constant(100.0, 10, 100_000, "uniform", 1), 1.0);
    assert_eq!(sched.shoppers.len(), 1000);
    assert_eq!(sched.shoppers[0].arrival, Duration::from_millis(5));
    let gaps: Vec<Duration> = sched.shoppers.windows(2).map(|w| w[1].arrival - w[0].arrival).collect();
    assert!(gaps.iter().all(|g| g.abs_diff(Duration::from_millis(10)) < Duration::from_micros(1)), "even spacing");
}

#[test]
fn shopper_cap_ends_arrival_early() {
    let sched = schedule::build(&constant(100.0, 10, 500, "uniform", 1), 1.0);
    assert_eq!(sched.shoppers.len(), 500);
    assert_eq!(sched.duration, sched.shoppers[499].arrival);
    assert!(sched.duration < Duration::from_secs(5) + Duration::from_millis(1));
    let sched = schedule::build(&constant(100.0, 10, 500, "poisson", 1), 1.0);
    assert_eq!(sched.shoppers.len(), 500);
}

#[test]
fn a_ramp_puts_more_arrivals_late_than_early() {
    // 0 -> 200/s over 10 s: 1000 expected; the first half holds a quarter of them.
    let s = scenario(json!([{ "duration": "10s", "from_rate": 0, "to_rate": 200 }]), 100_000, "poisson", 11);
    let sched = schedule::build(&s, 1.0);
    let early = sched.shoppers.iter().filter(|p| p.arrival < Duration::from_secs(5)).count();
    let late = sched.shoppers.len() - early;
    assert!(late > 2 * early, "early {early}, late {late}");
    assert!((150..=350).contains(&early), "early {early} (expected ~250)");
    // The uniform process follows the integral exactly: k-th arrival at sqrt(k/10) s.
    let s = scenario(json!([{ "duration": "10s", "from_rate": 0, "to_rate": 200 }]), 100_000, "uniform", 11);
    let sched = schedule::build(&s, 1.0);
    assert_eq!(sched.shoppers.len(), 1000);
    let t250 = sched.shoppers[249].arrival.as_secs_f64(); // level 249.5
    assert!((t250 - (249.5f64 / 10.0).sqrt()).abs() < 1e-6, "{t250}");
}

#[test]
fn stages_follow_each_other_including_a_pause_and_a_ramp_down() {
    let s = scenario(
        json!([
            { "duration": "2s", "rate": 100 },
            { "duration": "2s", "rate": 0 },
            { "duration": "4s", "from_rate": 100, "to_rate": 0 }
        ]),
        100_000,
        "uniform",
        1,
    );
    let sched = schedule::build(&s, 1.0);
    assert_eq!(sched.shoppers.len(), 400);
    let count =
        |from: f64, to: f64| sched.shoppers.iter().filter(|p| (from..to).contains(&p.arrival.as_secs_f64())).count();
    assert_eq!(count(0.0, 2.0), 200);
    assert_eq!(count(2.0, 4.0), 0, "nobody arrives at rate 0");
    assert_eq!(count(4.0, 6.0), 150, "the ramp down brings 3/4 of its 200 in its first half");
    assert_eq!(count(6.0, 8.0), 50);
}

#[test]
fn rate_scale_multiplies_rates() {
    let s = constant(100.0, 10, 100_000, "uniform", 1);
    assert_eq!(schedule::build(&s, 2.0).shoppers.len(), 2000);
    assert_eq!(schedule::build(&s, 0.5).shoppers.len(), 500);
    assert_eq!(schedule::build(&s, 0.0).shoppers.len(), 0);
    assert_eq!(schedule::build(&s, f64::NAN).shoppers.len(), 0);
    // Absurd scales are capped by the shopper count and never panic.
    let mut capped = s.clone();
    capped.shoppers = 10_000;
    for scale in [1e300, f64::MAX, f64::INFINITY] {
        let sched = schedule::build(&capped, scale);
        assert!(sched.shoppers.len() <= 10_000);
        assert!(sched.shoppers.iter().all(|p| p.arrival <= Duration::from_secs(10)));
    }
}

#[test]
fn journeys_follow_their_weights() {
    let sched = schedule::build(&constant(1000.0, 10, 1_000_000, "poisson", 2), 1.0);
    let n = sched.shoppers.len() as f64;
    let a = sched.shoppers.iter().filter(|p| p.journey == 0).count() as f64;
    assert!((a / n - 0.75).abs() < 0.02, "share of weight-3 journey: {}", a / n);
    assert!(sched.shoppers.iter().all(|p| p.journey < 2));
}

#[test]
fn blackfriday_schedule_has_30000_shoppers() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/blackfriday.json");
    let s = scenario::load(&path).unwrap();
    let sched = schedule::build(&s, 1.0);
    assert_eq!(sched.shoppers.len(), 30_000);
    assert!(sched.duration < s.arrival_duration());
}

#[test]
fn think_times_stay_in_bounds() {
    let mut rng = Rng::seed_from_u64(1);
    assert_eq!(ThinkTime::None.sample(&mut rng), Duration::ZERO);
    assert_eq!(ThinkTime::Constant(Duration::from_millis(7)).sample(&mut rng), Duration::from_millis(7));
    let (min, max) = (Duration::from_millis(10), Duration::from_millis(20));
    let u = ThinkTime::Uniform { min, max };
    let samples: Vec<Duration> = (0..10_000).map(|_| u.sample(&mut rng)).collect();
    assert!(samples.iter().all(|d| (min..=max).contains(d)));
    let mean = samples.iter().sum::<Duration>().as_secs_f64() / samples.len() as f64;
    assert!((mean - 0.015).abs() < 0.0005, "uniform mean {mean}");
    let e = ThinkTime::Exponential { mean: Duration::from_millis(100), max: Duration::from_secs(10) };
    let samples: Vec<Duration> = (0..20_000).map(|_| e.sample(&mut rng)).collect();
    let mean = samples.iter().sum::<Duration>().as_secs_f64() / samples.len() as f64;
    assert!((mean - 0.1).abs() < 0.005, "exponential mean {mean}");
    let capped = ThinkTime::Exponential { mean: Duration::from_millis(100), max: Duration::from_millis(120) };
    assert!((0..10_000).all(|_| capped.sample(&mut rng) <= Duration::from_millis(120)));
}

#[test]
fn default_process_is_poisson() {
    let s = scenario::parse(
        &json!({
            "name": "d", "target": { "base_url": "http://127.0.0.1:1" }, "shoppers": 1,
            "arrival": [{ "duration": "1s", "rate": 5 }],
            "journeys": [{ "name": "j", "steps": [{ "name": "s", "path": "/" }] }]
        })
        .to_string(),
    )
    .unwrap();
    assert_eq!(s.arrival_process, ArrivalProcess::Poisson);
    assert_eq!(s.seed, 1);
}
