//! The scenario's seeded randomness: one generator type, and independent
//! streams of it derived from the scenario seed (arrivals, journeys, shopper
//! seeds, fault picks), so the same seed gives the same run everywhere.
//!
//! Here rather than in traffic/schedule.rs because templates (a shopper's
//! random values) and chaos picks draw from it too, and the scenario is the
//! stage every other one reads.

use rand::SeedableRng;

/// The harness's random number generator: reproducible for a seed on every platform.
pub type Rng = rand_chacha::ChaCha8Rng;

/// An rng for one purpose (`stream`) derived from the scenario seed.
pub fn rng_for(seed: u64, stream: u64) -> Rng {
    let mut rng = Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}
