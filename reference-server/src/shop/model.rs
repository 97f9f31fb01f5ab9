//! The shop's data as it crosses the HTTP boundary and the store boundary:
//! request bodies (strict: unknown fields are refused) and the JSON documents
//! of docs/SHOP_API.md. Not for: storage layout (see `sqlite/`).

use serde::{Deserialize, Serialize};

/// Largest quantity of one SKU in one cart line.
pub const MAX_QTY: i64 = 100;
/// Most distinct SKUs in one cart.
pub const MAX_CART_LINES: usize = 50;
/// Longest cart id and Idempotency-Key.
pub const MAX_ID_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Product {
    pub sku: String,
    pub name: String,
    pub price_cents: i64,
    pub doorbuster: bool,
    pub stock_left: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProductPage {
    pub products: Vec<Product>,
    pub page: u64,
    pub per_page: u64,
    pub total: u64,
}

/// `GET /products/{sku}`: the product plus the inventory check's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct ProductView {
    #[serde(flatten)]
    pub product: Product,
    pub in_stock: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartLine {
    pub sku: String,
    pub qty: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cart {
    pub cart_id: String,
    pub lines: Vec<CartLine>,
}

/// `POST /carts/{cart_id}/items`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddItem {
    pub sku: String,
    pub qty: i64,
}

/// `POST /checkout`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckoutBody {
    pub cart_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub sku: String,
    pub qty: i64,
    pub unit_price_cents: i64,
}

/// An order as `POST /checkout` (201) and `GET /orders/{id}` return it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub order_id: i64,
    pub cart_id: String,
    pub lines: Vec<OrderLine>,
    pub subtotal_cents: i64,
    pub discount_cents: i64,
    pub tax_cents: i64,
    pub total_cents: i64,
    pub idempotency_key: Option<String>,
    pub created_ms: i64,
}

/// An order line as the audit lists it.
#[derive(Debug, Clone, Serialize)]
pub struct AuditOrder {
    pub order_id: i64,
    pub idempotency_key: Option<String>,
    pub cart_id: String,
    pub lines: Vec<OrderLine>,
    pub total_cents: i64,
    pub created_ms: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditStock {
    pub sku: String,
    pub initial: i64,
    pub left: i64,
    /// Sum of qty over every order line for this SKU (counted from the
    /// orders, not derived from `initial - left`, so the two can disagree).
    pub sold: i64,
}

/// The admin `/audit` document.
#[derive(Debug, Clone, Serialize)]
pub struct Audit {
    pub orders: Vec<AuditOrder>,
    pub stock: Vec<AuditStock>,
}

/// A checkout's answer as the store decided and recorded it. Stored verbatim
/// under its Idempotency-Key, so a retry gets the same status and bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutOutcome {
    pub status: u16,
    pub body: String,
    /// True when this answer was replayed for a repeated Idempotency-Key.
    pub replayed: bool,
}

/// A cart id or Idempotency-Key: 1..=128 visible ASCII characters, no '/'.
pub fn valid_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_ID_LEN && s.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
}

/// The SKU of the `i`th regular product (1-based): `sku-0001` ...
pub fn regular_sku(i: u64) -> String {
    format!("sku-{i:04}")
}

/// The SKU of the `i`th doorbuster (1-based): `door-1` ...
pub fn doorbuster_sku(i: u64) -> String {
    format!("door-{i}")
}
