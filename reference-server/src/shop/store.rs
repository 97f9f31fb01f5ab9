//! The store seam: everything the routes need from durable, shared state,
//! as one small trait. The embedded SQLite store ([`super::sqlite`]) is the
//! default; the Redis store ([`super::redis`]) serves a shop that outgrows
//! one host, behind the same trait, without touching the routes.
//!
//! Methods block: a worker is one event loop with a synchronous store, like
//! a Node process with a synchronous database driver (see `mod.rs`).

use thiserror::Error;

use super::cpu::{PriceLine, Pricing};
use super::model::{Audit, Cart, CheckoutOutcome, Order, OrderLine, Product, ProductPage};

/// A backend's own error, kept as the source of a [`StoreError`]: the
/// variants name what the routes do about it, not which database said it.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why a store call failed. Business refusals a client can see are variants;
/// the database's own failures are `Busy` or `Unavailable` (retryable: a
/// 503, nothing was written) or `Db` (a 500). Each backend maps its own
/// errors onto these.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("unknown sku {0:?}")]
    UnknownSku(String),
    #[error("cart {cart_id:?} already holds {max} different skus")]
    CartFull { cart_id: String, max: usize },
    #[error("Idempotency-Key {key:?} was already used for cart {first_cart:?}, not {cart_id:?}")]
    KeyReused { key: String, first_cart: String, cart_id: String },
    #[error("the database stayed busy ({0}); retry")]
    Busy(#[source] Cause),
    /// The store could not be reached or is not ready (a networked store
    /// down, restarting or loading its data), within the busy timeout.
    #[error("the store is unavailable ({0}); retry")]
    Unavailable(#[source] Cause),
    #[error("database error: {0}")]
    Db(#[source] Cause),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

/// A checkout as the routes hand it to the store: the cart as it was priced,
/// outside any lock, and how to price it again if it changed meanwhile.
pub struct PlaceOrder<'a> {
    pub cart_id: &'a str,
    pub idempotency_key: Option<&'a str>,
    /// The lines that `pricing` was computed for.
    pub priced: &'a [PriceLine],
    pub pricing: Pricing,
    /// Called (under the store's write lock) only if the cart changed
    /// between pricing and reservation; rare, and correct either way.
    pub reprice: &'a dyn Fn(&[PriceLine]) -> Pricing,
}

impl PlaceOrder<'_> {
    /// The order this checkout makes of `lines` priced at `pricing`: what
    /// both stores record and answer with.
    pub fn order(&self, order_id: i64, lines: &[PriceLine], pricing: Pricing, created_ms: i64) -> Order {
        Order {
            order_id,
            cart_id: self.cart_id.to_string(),
            lines: lines
                .iter()
                .map(|l| OrderLine { sku: l.sku.clone(), qty: l.qty, unit_price_cents: l.unit_price_cents })
                .collect(),
            subtotal_cents: pricing.subtotal_cents,
            discount_cents: pricing.discount_cents,
            tax_cents: pricing.tax_cents,
            total_cents: pricing.total_cents,
            idempotency_key: self.idempotency_key.map(str::to_string),
            created_ms,
        }
    }
}

pub trait Store: Send + Sync {
    /// One page (1-based) of the catalog, doorbusters first.
    fn products(&self, page: u64, per_page: u64) -> Result<ProductPage, StoreError>;
    fn product(&self, sku: &str) -> Result<Option<Product>, StoreError>;
    /// A cart; a cart nobody wrote to is empty, not missing.
    fn cart(&self, cart_id: &str) -> Result<Cart, StoreError>;
    /// Set the quantity of `sku` in the cart (adding the line if new), so a
    /// repeated request leaves the cart as one request would.
    fn set_line(&self, cart_id: &str, sku: &str, qty: i64) -> Result<Cart, StoreError>;
    fn remove_line(&self, cart_id: &str, sku: &str) -> Result<Cart, StoreError>;
    /// The cart's lines with their current prices, for pricing.
    fn cart_for_pricing(&self, cart_id: &str) -> Result<Vec<PriceLine>, StoreError>;
    /// The recorded answer for an Idempotency-Key, if that key was used.
    fn replay(&self, key: &str, cart_id: &str) -> Result<Option<CheckoutOutcome>, StoreError>;
    /// Atomically: replay the key's answer if it exists; otherwise refuse an
    /// empty cart (400) or a short item (409, nothing reserved), or reserve
    /// the stock, create the order and empty the cart (201). The answer is
    /// recorded under the key in the same transaction and committed before
    /// this returns.
    fn place_order(&self, req: PlaceOrder<'_>) -> Result<CheckoutOutcome, StoreError>;
    fn order(&self, order_id: i64) -> Result<Option<Order>, StoreError>;
    /// Every order and every SKU's stock, from one consistent snapshot.
    fn audit(&self) -> Result<Audit, StoreError>;
}
