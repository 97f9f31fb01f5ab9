//! The shop: catalog, carts, checkout, doorbusters, orders, on a store shared
//! by every worker. Placeholder until the shop issue lands.

use axum::Router;

/// Shop flags (catalog size, stock, CPU costs, database path).
#[derive(Debug, Clone, clap::Args)]
pub struct ShopArgs {}

/// Create and seed the store once, before any worker starts.
pub fn prepare(_args: &ShopArgs) -> anyhow::Result<()> {
    Ok(())
}

/// Per-worker handle on the shop.
#[derive(Clone)]
pub struct Shop {}

/// Open the store prepared by [`prepare`]; called once in each worker.
pub fn open(_args: &ShopArgs) -> anyhow::Result<Shop> {
    Ok(Shop {})
}

/// The shop's public routes.
pub fn router(_shop: Shop) -> Router {
    Router::new()
}

/// The audit document served on the admin address, as JSON text.
pub fn audit_json(_args: &ShopArgs) -> anyhow::Result<String> {
    Ok("{}".to_string())
}
