//! The shop's CPU-bound work: the inventory check behind a product page and
//! the pricing of a checkout (discounts, tax and a fraud score). Real integer
//! computation whose amount is set by flags, never a sleep, so a costly
//! handler occupies its worker's event loop the way a Node handler would.
//!
//! Costs are counted in work units. One unit is [`ROUNDS_PER_UNIT`] rounds of a
//! dependent multiply-xorshift chain, sized so a unit takes about one
//! microsecond of one core on the reference machine (AMD EPYC, release build);
//! `--pricing-cost 5000` is therefore roughly 5 ms of CPU per checkout there.
//! A debug build is much slower per unit. Not for: anything about money that a
//! real shop would need (currencies, rounding law); the arithmetic is
//! deterministic so tests can check totals.

use std::hint::black_box;

/// Rounds of [`mix`] per work unit; calibrated so one unit is about 1 µs.
pub const ROUNDS_PER_UNIT: u64 = 275;

/// Tax rate in basis points (8.25 %).
pub const TAX_BPS: i64 = 825;
/// Volume discount in basis points (5 %) on a regular line of this many units or more.
pub const VOLUME_DISCOUNT_BPS: i64 = 500;
pub const VOLUME_DISCOUNT_MIN_QTY: i64 = 10;

/// One round of a 64-bit mixer (the splitmix64 finaliser): each round
/// depends on the last, so the compiler cannot vectorise the chain away.
#[inline(always)]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a, to turn SKUs into seeds.
fn fnv(bytes: &[u8], mut h: u64) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01B3);
    }
    h
}

const FNV_OFFSET: u64 = 0xCBF2_9CE4_8422_2325;

/// `units` work units of dependent mixing, starting from `seed`.
pub fn work(seed: u64, units: u64) -> u64 {
    let mut z = seed;
    for _ in 0..units {
        for _ in 0..ROUNDS_PER_UNIT {
            z = mix(z.wrapping_add(0x9E37_79B9_7F4A_7C15));
        }
        // One barrier per unit keeps the optimiser from collapsing the loop
        // without costing much against the rounds inside.
        z = black_box(z);
    }
    z
}

/// The inventory check behind a product page: a simulated lookup across
/// warehouses, `units` of work. Returns a checksum the caller black-boxes;
/// whether the product is in stock comes from the store's count.
pub fn inventory_check(sku: &str, stock_left: i64, units: u64) -> u64 {
    black_box(work(fnv(sku.as_bytes(), FNV_OFFSET) ^ stock_left as u64, units))
}

/// One priced line of a cart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceLine {
    pub sku: String,
    pub qty: i64,
    pub unit_price_cents: i64,
    pub doorbuster: bool,
}

/// What a checkout costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pricing {
    pub subtotal_cents: i64,
    pub discount_cents: i64,
    pub tax_cents: i64,
    pub total_cents: i64,
    /// 0..1000; reported, never used to refuse an order (tests stay deterministic).
    pub fraud_score: u32,
}

/// `amount * bps / 10000`, rounded half up (amounts are never negative here).
fn bps_of(amount: i64, bps: i64) -> i64 {
    (amount * bps + 5_000) / 10_000
}

/// Price a cart: subtotal, 5 % volume discount on regular lines of 10 or more
/// units (never on doorbusters), 8.25 % tax on the discounted amount, and a
/// fraud score costing `units` of work.
pub fn price(lines: &[PriceLine], units: u64) -> Pricing {
    let mut subtotal = 0i64;
    let mut discount = 0i64;
    let mut seed = FNV_OFFSET;
    for l in lines {
        let amount = l.qty * l.unit_price_cents;
        subtotal += amount;
        if !l.doorbuster && l.qty >= VOLUME_DISCOUNT_MIN_QTY {
            discount += bps_of(amount, VOLUME_DISCOUNT_BPS);
        }
        seed = fnv(l.sku.as_bytes(), seed) ^ (l.qty as u64).rotate_left(17);
    }
    let tax = bps_of(subtotal - discount, TAX_BPS);
    let fraud = work(seed ^ subtotal as u64, units);
    Pricing {
        subtotal_cents: subtotal,
        discount_cents: discount,
        tax_cents: tax,
        total_cents: subtotal - discount + tax,
        fraud_score: (black_box(fraud) % 1000) as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(sku: &str, qty: i64, price: i64, door: bool) -> PriceLine {
        PriceLine { sku: sku.into(), qty, unit_price_cents: price, doorbuster: door }
    }

    #[test]
    fn pricing_math() {
        // 2 x 10.00 + 10 x 1.00 (5 % off: 0.50) + doorbuster 10 x 5.00 (no discount)
        let p = price(&[line("a", 2, 1000, false), line("b", 10, 100, false), line("door-1", 10, 500, true)], 3);
        assert_eq!(p.subtotal_cents, 2000 + 1000 + 5000);
        assert_eq!(p.discount_cents, 50);
        // 8.25 % of 79.50 = 6.55875 -> 6.56
        assert_eq!(p.tax_cents, 656);
        assert_eq!(p.total_cents, 8000 - 50 + 656);
        assert!(p.fraud_score < 1000);
    }

    #[test]
    fn work_is_deterministic_and_depends_on_cost() {
        assert_eq!(work(7, 10), work(7, 10));
        assert_ne!(work(7, 10), work(7, 11));
        assert_eq!(work(7, 0), 7);
        assert_eq!(inventory_check("sku-0001", 5, 2), inventory_check("sku-0001", 5, 2));
    }
}
