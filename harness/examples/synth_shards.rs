//! Writes N synthetic shard folders of one run of R requests, for the merge
//! benchmark (scripts/bench-merge.sh): what `harness run --shard K/N` would
//! leave after R requests, without replaying them. Each shard goes through
//! the real stages after the traffic (the ledger writer, the recorder,
//! `run::conclude`, which writes summary.json, the interval logs and the
//! events), fed with generated attempts instead of the engine's.
//!
//! Usage: synth_shards SCENARIO OUT_DIR SHARDS REQUESTS [RATE_PER_S [SHOPPERS]]
//! The requests are spread over REQUESTS / RATE seconds (default 2,000/s),
//! one attempt per operation, every step of the scenario in turn, latencies
//! from 1 to ~60 ms; 1 in 1,000 attempts is a refused one. Request i is
//! shopper i mod SHOPPERS's (default 30,000, Black Friday's count): the
//! judge keeps one small record per shopper (the affinity check), so the
//! shopper count, not the request count, is what memory follows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use harness::drive::run::{self, Executed, RunOptions};
use harness::drive::shard::{self, Shard};
use harness::outcome::{Handshake, Outcome};
use harness::record::events::{EVENTS_FILE, EventLog};
use harness::record::ledger::{AttemptRef, LEDGER_FILE, Ledger, split};
use harness::record::recorder::Recorder;
use harness::scenario;
use harness::traffic::engine::{self, Book, EngineOutcome, Live};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: synth_shards SCENARIO OUT_DIR SHARDS REQUESTS [RATE_PER_S]");
        std::process::exit(2);
    }
    let scenario_path = PathBuf::from(&args[1]);
    let out = PathBuf::from(&args[2]);
    let n: u64 = args[3].parse().expect("SHARDS: a whole number");
    let requests: u64 = args[4].parse().expect("REQUESTS: a whole number");
    let rate: f64 = args.get(5).map_or(2000.0, |r| r.parse().expect("RATE_PER_S: a number"));
    let shoppers: u64 = args.get(6).map_or(30_000, |r| r.parse().expect("SHOPPERS: a whole number"));
    let hash = shard::scenario_hash(&scenario_path).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // One start instant for all shards, as `--start-at` gives them.
    let start_at = SystemTime::now();
    for k in 0..n {
        let dir = out.join(format!("shard-{k}"));
        let shard = Shard { index: k, count: n };
        rt.block_on(write_shard(&scenario_path, &dir, shard, &hash, (requests, rate, shoppers), start_at));
        println!("{}", dir.display());
    }
}

async fn write_shard(
    scenario_path: &Path,
    dir: &Path,
    shard: Shard,
    hash: &str,
    (requests, rate, shoppers): (u64, f64, u64),
    start_at: SystemTime,
) {
    let mut s = scenario::load(scenario_path).unwrap();
    shard::shard_only_traffic(&mut s);
    let opts = RunOptions {
        out: Some(dir.to_path_buf()),
        shard: Some(shard),
        start_at: Some(start_at),
        scenario_hash: hash.to_string(),
        ..RunOptions::default()
    };
    let p = run::prepare(s, &opts).unwrap();
    let steps = engine::step_names(&p.scenario);
    let ledger_path = dir.join(LEDGER_FILE);
    let mut ledger = Ledger::create(&ledger_path).unwrap();
    let mut recorder = Recorder::new(steps.clone());
    let gap_ms = 1000.0 / rate;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ shard.index;
    let mut end_ms: f64 = 0.0;
    let mut i = shard.index;
    while i < requests {
        // xorshift: a reproducible spread of latencies without a dependency.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let latency_us = 1000 + x % 59_000;
        let intended_us = (i as f64 * gap_ms * 1000.0) as u64;
        let start_us = intended_us + x % 200;
        let end_us = intended_us + latency_us;
        let step = (i % steps.len() as u64) as usize;
        let outcome = if i % 1000 == 999 { Outcome::Refused } else { Outcome::Ok };
        let (kind, class) = split(outcome);
        let op = ledger.begin_operation();
        ledger.begin_attempt();
        let rec = AttemptRef {
            op,
            shopper: i % shoppers.max(1),
            step: &steps[step],
            attempt: 1,
            intended_ms: intended_us as f64 / 1000.0,
            start_ms: start_us as f64 / 1000.0,
            end_ms: end_us as f64 / 1000.0,
            outcome: kind,
            class,
            status: Some(if outcome == Outcome::Ok { 200 } else { 409 }),
            reused: true,
            handshake: Handshake::None,
            worker: Some("w1"),
            addr: None,
            idem: None,
            order_id: None,
        };
        ledger.end_attempt_of(&rec, false);
        recorder.record(step, outcome, latency_us, start_us - intended_us, rec.end_ms);
        ledger.end_operation(&steps[step], outcome, false);
        end_ms = end_ms.max(rec.end_ms);
        i += shard.count;
    }
    recorder.finish(end_ms);
    let events = EventLog::create_at(&dir.join(EVENTS_FILE), Instant::now()).unwrap();
    let live = Arc::new(Live::default());
    live.arrived.store(p.schedule.shoppers.len() as u64, std::sync::atomic::Ordering::Relaxed);
    let ex = Executed {
        outcome: EngineOutcome {
            book: Book { ledger, recorder },
            cut_off_shoppers: 0,
            interrupted: false,
            end_ms,
            peak_active_shoppers: 0,
        },
        events,
        wall_start: start_at,
        ledger_path,
        live,
        problems: Vec::new(),
        extra_gates: Vec::new(),
        chaos: Default::default(),
        traffic_peak_rss_mb: None,
        traffic_cpu_s: None,
        machine: Vec::new(),
        resources: Vec::new(),
        resources_every: harness::host::resources::period_for(p.schedule.duration),
        scrapes: Default::default(),
        start_offset_ms: Some(0.0),
        shards: Vec::new(),
        environment: None,
    };
    let summary = run::conclude(&p, ex, None).unwrap();
    assert!(summary.validity.valid, "{:?}", summary.validity.problems);
    harness::drive::merge::keep_scenario_copy(scenario_path, dir).unwrap();
}
