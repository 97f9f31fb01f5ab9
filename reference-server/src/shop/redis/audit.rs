//! The audit: every order and every SKU's stock from one consistent
//! snapshot, read as one MULTI of five reads (the seed's presence, HGETALL
//! of the orders, the catalog list, HGETALL of stock and of initial stock). EXEC runs them
//! back to back with no other client's command (so no checkout) between
//! them: an order is wholly in the audit or wholly out.
//!
//! Cost, a MULTI rather than a Lua script: Redis builds the whole reply
//! (every order's JSON, about 300 bytes each) in one go while serving no
//! one else, about O(orders) time and the reply's size in its output
//! buffer: of the order of 100 ms and 300 MB for a million orders. A script
//! would cost the same plus a Lua copy of it all. The audit is for the
//! checker after a run, not for traffic; a shop with many millions of
//! orders would read a replica instead.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::Context;
use redis::{Connection, RedisResult};

use super::{INITIAL, META, ORDERS, RedisTarget, SKUS, STOCK, connect, store_err};
use crate::shop::model::{Audit, AuditOrder, AuditStock, Order};
use crate::shop::store::StoreError;

/// The five reads as Redis answered them, in one snapshot.
pub(super) struct Raw {
    seeded: bool,
    orders: Vec<(String, String)>,
    skus: Vec<String>,
    stock: HashMap<String, i64>,
    initial: HashMap<String, i64>,
}

pub(super) fn read_raw(c: &mut Connection) -> RedisResult<Raw> {
    let (seeded, orders, skus, stock, initial) = redis::pipe()
        .atomic()
        .cmd("HEXISTS")
        .arg(META)
        .arg("seed")
        .cmd("HGETALL")
        .arg(ORDERS)
        .cmd("LRANGE")
        .arg(SKUS)
        .arg(0)
        .arg(-1)
        .cmd("HGETALL")
        .arg(STOCK)
        .cmd("HGETALL")
        .arg(INITIAL)
        .query(c)?;
    Ok(Raw { seeded, orders, skus, stock, initial })
}

/// Orders by id, and stock in catalog order with `sold` summed from the
/// orders' lines (not derived from initial - left).
pub(super) fn assemble(raw: Raw) -> Result<Audit, StoreError> {
    if !raw.seeded {
        return Err(StoreError::Corrupt("the store was never seeded (was it prepared?)".into()));
    }
    let mut orders = BTreeMap::new();
    let mut sold: HashMap<&str, i64> = HashMap::new();
    let parsed = raw
        .orders
        .iter()
        .map(|(id, body)| {
            serde_json::from_str::<Order>(body)
                .map_err(|e| StoreError::Corrupt(format!("order {id} in {ORDERS}: {e}")))
                .and_then(|o| {
                    if o.order_id.to_string() == *id {
                        Ok(o)
                    } else {
                        Err(StoreError::Corrupt(format!("order {id} in {ORDERS} says it is {}", o.order_id)))
                    }
                })
        })
        .collect::<Result<Vec<Order>, _>>()?;
    for o in &parsed {
        for l in &o.lines {
            *sold.entry(l.sku.as_str()).or_default() += l.qty;
        }
    }
    let mut stock = Vec::with_capacity(raw.skus.len());
    for sku in &raw.skus {
        let missing = |what: &str| StoreError::Corrupt(format!("{sku:?} has no {what}"));
        stock.push(AuditStock {
            sku: sku.clone(),
            initial: *raw.initial.get(sku).ok_or_else(|| missing("initial stock"))?,
            left: *raw.stock.get(sku).ok_or_else(|| missing("stock"))?,
            sold: sold.get(sku.as_str()).copied().unwrap_or(0),
        });
    }
    for o in parsed {
        orders.insert(
            o.order_id,
            AuditOrder {
                order_id: o.order_id,
                idempotency_key: o.idempotency_key,
                cart_id: o.cart_id,
                lines: o.lines,
                total_cents: o.total_cents,
                created_ms: o.created_ms,
            },
        );
    }
    Ok(Audit { orders: orders.into_values().collect(), stock })
}

/// The audit read through a fresh connection, for the master (which holds
/// no store).
pub fn audit_at(target: &RedisTarget, timeout: Duration) -> anyhow::Result<Audit> {
    let client = target.client()?;
    let mut conn = connect(&client, timeout)
        .map_err(store_err)
        .with_context(|| format!("connecting to the Redis store at {target} for the audit"))?;
    let raw = read_raw(&mut conn).map_err(store_err).with_context(|| format!("reading the audit from {target}"))?;
    assemble(raw).with_context(|| format!("reading the audit from {target}"))
}
