//! Measures what the shop's CPU cost flags mean on this machine: µs per
//! work unit, and ms of CPU for the default `--pricing-cost` and
//! `--inventory-cost`. Run by scripts/bench-shop.sh (release build).

use std::hint::black_box;
use std::time::Instant;

use reference_server::shop::ShopArgs;
use reference_server::shop::cpu::{self, PriceLine};

/// Best of `runs` timings of `f`, in seconds: the least disturbed by other load.
fn best(runs: usize, mut f: impl FnMut()) -> f64 {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let defaults = ShopArgs::with_db("unused.db");
    let units = 10_000;
    let per_unit_us = best(30, || {
        black_box(cpu::work(black_box(1), units));
    }) / units as f64
        * 1e6;
    let lines: Vec<PriceLine> = (1..=3)
        .map(|i| PriceLine { sku: format!("sku-{i:04}"), qty: i, unit_price_cents: 1999, doorbuster: false })
        .collect();
    let pricing_ms = best(20, || {
        black_box(cpu::price(black_box(&lines), defaults.pricing_cost));
    }) * 1e3;
    let inventory_ms = best(20, || {
        black_box(cpu::inventory_check(black_box("sku-0001"), 5, defaults.inventory_cost));
    }) * 1e3;
    println!("work unit: {per_unit_us:.3} us ({} mixing rounds)", cpu::ROUNDS_PER_UNIT);
    println!("pricing (default --pricing-cost {}): {pricing_ms:.2} ms per checkout", defaults.pricing_cost);
    println!(
        "inventory check (default --inventory-cost {}): {inventory_ms:.3} ms per product view",
        defaults.inventory_cost
    );
}
