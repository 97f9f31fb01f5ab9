//! The shopper schedule: when each shopper arrives, which journey it follows
//! and the seed of its own randomness. Pure and deterministic: the same
//! scenario, seed and rate scale give the same schedule, bit for bit, so the
//! sequence of intended sends is reproducible. Not for sending anything.
//!
//! ## The arrival process
//!
//! The profile is a list of stages whose rate (arrivals/s) moves linearly
//! within a stage; its integral Λ(t) is the expected number of arrivals by
//! time t. Arrivals are made by time-rescaling: points `L_k` on the Λ axis are
//! mapped back to time by solving Λ(t) = L_k (a quadratic within a stage).
//!
//! - `poisson` (default): `L_k` are the points of a unit-rate Poisson process
//!   (sums of Exp(1) draws), which gives a Poisson process with the profile's
//!   time-varying rate. This is exact, needs no rejection (unlike thinning),
//!   and copes with zero-rate stages. Real shoppers arrive independently, so
//!   bursts and gaps are part of the load; a harness that spaced them evenly
//!   would never show the queueing a burst causes.
//! - `uniform`: `L_k = k + 1/2`, evenly spaced in expectation, so a stage of
//!   rate R for T seconds brings exactly round(R·T) arrivals: for calibration
//!   and benchmarks where counts must be exact.
//!
//! Arrival stops when `shoppers` have arrived or the stages end, whichever
//! comes first. Validation refuses a scenario whose stages bring (in
//! expectation, at rate scale 1) fewer than `shoppers`; with `poisson` and a
//! profile that only just brings `shoppers`, chance may still leave a few
//! short, and a rate scale below 1 brings proportionally fewer: the schedule
//! holds the shoppers that really arrive.
//!
//! Three independent ChaCha8 streams of the scenario seed give arrival times,
//! journey picks and shopper seeds, so changing journey weights does not move
//! arrival times.

use std::time::Duration;

use rand::Rng as _;
use rand::distr::Distribution;
use rand::distr::weighted::WeightedIndex;

use crate::scenario::rng::{Rng, rng_for};
use crate::scenario::{ArrivalProcess, Scenario, Stage};

#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// In arrival order; `id` is the index.
    pub shoppers: Vec<PlannedShopper>,
    /// When arrival ends: the last arrival if the `shoppers` cap ended it,
    /// otherwise the end of the stages.
    pub duration: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedShopper {
    /// 0-based, in arrival order.
    pub id: u64,
    /// Intended arrival, from run start: the first step's intended send time.
    pub arrival: Duration,
    /// Index into `Scenario::journeys`.
    pub journey: usize,
    /// Seed of the shopper's own rng (`ShopperCtx::new`).
    pub seed: u64,
}

const STREAM_ARRIVALS: u64 = 1;
const STREAM_JOURNEYS: u64 = 2;
const STREAM_SEEDS: u64 = 3;

/// Builds the schedule. `rate_scale` multiplies every rate (1.0 = as written);
/// a scale that is not a positive finite number gives no arrivals.
pub fn build(s: &Scenario, rate_scale: f64) -> Schedule {
    let scale = if rate_scale.is_finite() && rate_scale > 0.0 { rate_scale } else { 0.0 };
    let stages: Vec<Stage> = s
        .arrival
        .iter()
        .map(|st| Stage { duration: st.duration, from_rate: st.from_rate * scale, to_rate: st.to_rate * scale })
        .collect();
    let profile = Profile::new(&stages);
    let end = s.arrival_duration();

    let mut arrivals_rng = rng_for(s.seed, STREAM_ARRIVALS);
    let mut journey_rng = rng_for(s.seed, STREAM_JOURNEYS);
    let mut seed_rng = rng_for(s.seed, STREAM_SEEDS);
    let weights = WeightedIndex::new(s.journeys.iter().map(|j| j.weight)).ok();

    let cap = usize::try_from(s.shoppers).unwrap_or(usize::MAX);
    let expected = profile.total.min(cap as f64) as usize;
    let mut shoppers = Vec::with_capacity(expected.saturating_add(expected / 10).min(cap));
    let mut level = match s.arrival_process {
        ArrivalProcess::Poisson => exp1(&mut arrivals_rng),
        ArrivalProcess::Uniform => 0.5,
    };
    let mut cursor = 0usize;
    while shoppers.len() < cap && level <= profile.total {
        let Some(t) = profile.time_at(level, &mut cursor) else { break };
        let journey = weights.as_ref().map_or(0, |w| w.sample(&mut journey_rng));
        // t is finite and within the stages by construction; the fallback only
        // guards absurd rate scales (an infinite rate) against a panic.
        let arrival = Duration::try_from_secs_f64(t).unwrap_or(Duration::ZERO);
        shoppers.push(PlannedShopper { id: shoppers.len() as u64, arrival, journey, seed: seed_rng.random() });
        level += match s.arrival_process {
            ArrivalProcess::Poisson => exp1(&mut arrivals_rng),
            ArrivalProcess::Uniform => 1.0,
        };
    }
    let duration = if shoppers.len() == cap && cap > 0 { shoppers.last().map_or(end, |p| p.arrival) } else { end };
    Schedule { shoppers, duration }
}

/// An Exp(1) draw by inverse transform; 1 - U is in (0, 1], so ln is finite.
fn exp1(rng: &mut Rng) -> f64 {
    -(1.0 - rng.random::<f64>()).ln()
}

/// The cumulative rate Λ(t) of a piecewise-linear profile and its inverse.
struct Profile {
    /// Per stage: (start time s, Λ at start, from rate, to rate, duration s).
    segs: Vec<(f64, f64, f64, f64, f64)>,
    total: f64,
}

impl Profile {
    fn new(stages: &[Stage]) -> Self {
        let (mut t, mut cum) = (0.0, 0.0);
        let mut segs = Vec::with_capacity(stages.len());
        for st in stages {
            let d = st.duration.as_secs_f64();
            segs.push((t, cum, st.from_rate, st.to_rate, d));
            t += d;
            cum += (st.from_rate + st.to_rate) / 2.0 * d;
        }
        Profile { segs, total: cum }
    }

    /// The time t with Λ(t) = level, searching from stage `cursor` on (levels
    /// come in increasing order, so the search never goes back).
    fn time_at(&self, level: f64, cursor: &mut usize) -> Option<f64> {
        while let Some(&(start, cum0, r0, r1, d)) = self.segs.get(*cursor) {
            let area = (r0 + r1) / 2.0 * d;
            if level <= cum0 + area && area > 0.0 {
                let x = (level - cum0).max(0.0);
                // Solve r0·τ + a·τ² = x with a = (r1 - r0) / (2d); this form
                // is stable for a of either sign and for a = 0.
                let a = (r1 - r0) / (2.0 * d);
                let disc = (r0 * r0 + 4.0 * a * x).max(0.0);
                let denom = r0 + disc.sqrt();
                let tau = if denom > 0.0 { 2.0 * x / denom } else { 0.0 };
                let tau = if tau.is_finite() { tau.clamp(0.0, d) } else { 0.0 };
                return Some(start + tau);
            }
            *cursor += 1;
        }
        None
    }
}
