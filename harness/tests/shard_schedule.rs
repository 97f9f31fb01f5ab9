//! `--shard K/N`: the union of N shards' per-shopper schedules is the
//! unsharded run's schedule, shopper for shopper (ids, arrival times,
//! journeys, seeds: a shopper's data picks and idempotency keys come from
//! its id and seed), and the pool is split so the parts add up.

// Tests unwrap what they built themselves; a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use harness::drive::shard::Shard;
use harness::scenario::{self, ConnectionModel};
use harness::traffic::schedule::{self, PlannedShopper};

fn load(name: &str) -> scenario::Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios").join(name);
    scenario::load(&path).unwrap()
}

#[test]
fn the_union_of_the_shards_is_the_unsharded_schedule() {
    for file in ["smoke.json", "blackfriday.json"] {
        let s = load(file);
        let full = schedule::build(&s, 1.0);
        assert!(full.shoppers.len() > 100, "{file}: a schedule worth splitting");
        for n in [1u64, 3, 7] {
            let mut union: Vec<PlannedShopper> = Vec::new();
            for k in 0..n {
                let part = Shard { index: k, count: n }.filter(&full);
                assert_eq!(part.duration, full.duration, "{file} {k}/{n}: one timeline for every shard");
                assert!(part.shoppers.iter().all(|p| p.id % n == k), "{file} {k}/{n}: only its own shoppers");
                // Round-robin: every shard within one shopper of an equal share.
                let fair = full.shoppers.len() as u64 / n;
                assert!((part.shoppers.len() as u64).abs_diff(fair) <= 1, "{file} {k}/{n}: {}", part.shoppers.len());
                union.extend(part.shoppers);
            }
            union.sort_by_key(|p| p.id);
            assert_eq!(union, full.shoppers, "{file}, N={n}: the shards together are the unsharded run");
        }
    }
}

#[test]
fn each_shard_builds_the_same_full_schedule_from_the_seed() {
    // A shard process builds the schedule itself: two builds (two processes)
    // must agree, or the filter would pick different shoppers.
    let s = load("smoke.json");
    assert_eq!(schedule::build(&s, 1.0), schedule::build(&s, 1.0));
}

#[test]
fn the_pool_is_split_across_shards_and_adds_up() {
    let s = load("blackfriday.json");
    let ConnectionModel::Pool { size, .. } = s.connections else {
        panic!("blackfriday.json uses a pool");
    };
    for n in [1u64, 3, 7] {
        let parts: Vec<usize> = (0..n)
            .map(|k| {
                let mut one = s.clone();
                Shard { index: k, count: n }.apply(&mut one);
                match one.connections {
                    ConnectionModel::Pool { size, .. } => size,
                    ConnectionModel::PerShopper { .. } => unreachable!(),
                }
            })
            .collect();
        assert_eq!(parts.iter().sum::<usize>(), size.max(n as usize), "N={n}: {parts:?}");
        assert!(parts.windows(2).all(|w| w[0] >= w[1] && w[0] - w[1] <= 1), "N={n}: {parts:?}");
    }
}
