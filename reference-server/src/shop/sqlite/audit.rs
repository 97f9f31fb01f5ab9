//! The audit: every order and every SKU's stock, read in one snapshot.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::{db_err, open_conn};
use crate::shop::model::{Audit, AuditOrder, AuditStock, OrderLine};
use crate::shop::store::StoreError;

/// Orders and stock from one read transaction (one WAL snapshot), so an
/// order committed mid-audit is either wholly in it or wholly out.
pub(super) fn read_audit(conn: &mut Connection) -> Result<Audit, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred).map_err(db_err)?;
    let mut orders: Vec<AuditOrder> = Vec::new();
    {
        let mut st = tx
            .prepare(
                "SELECT o.order_id, o.idempotency_key, o.cart_id, o.total_cents, o.created_ms,
                        l.sku, l.qty, l.unit_price_cents
                 FROM orders o LEFT JOIN order_lines l ON l.order_id = o.order_id
                 ORDER BY o.order_id, l.sku",
            )
            .map_err(db_err)?;
        let mut rows = st.query([]).map_err(db_err)?;
        while let Some(r) = rows.next().map_err(db_err)? {
            let id: i64 = r.get(0).map_err(db_err)?;
            if orders.last().is_none_or(|o| o.order_id != id) {
                orders.push(AuditOrder {
                    order_id: id,
                    idempotency_key: r.get(1).map_err(db_err)?,
                    cart_id: r.get(2).map_err(db_err)?,
                    total_cents: r.get(3).map_err(db_err)?,
                    created_ms: r.get(4).map_err(db_err)?,
                    lines: Vec::new(),
                });
            }
            let sku: Option<String> = r.get(5).map_err(db_err)?;
            if let (Some(sku), Some(o)) = (sku, orders.last_mut()) {
                o.lines.push(OrderLine {
                    sku,
                    qty: r.get(6).map_err(db_err)?,
                    unit_price_cents: r.get(7).map_err(db_err)?,
                });
            }
        }
    }
    let stock = {
        let mut st = tx
            .prepare(
                "SELECT p.sku, p.initial, p.stock_left, coalesce(s.sold, 0)
                 FROM products p LEFT JOIN (SELECT sku, sum(qty) AS sold FROM order_lines GROUP BY sku) s
                   ON s.sku = p.sku
                 ORDER BY p.pos",
            )
            .map_err(db_err)?;
        st.query_map([], |r| Ok(AuditStock { sku: r.get(0)?, initial: r.get(1)?, left: r.get(2)?, sold: r.get(3)? }))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(db_err)?
    };
    tx.commit().map_err(db_err)?;
    Ok(Audit { orders, stock })
}

/// The audit read through a fresh connection, for the master (which holds
/// no store). Opens without CREATE and only reads.
pub fn audit_at(path: &Path, busy: Duration) -> anyhow::Result<Audit> {
    let mut conn = open_conn(path, OpenFlags::SQLITE_OPEN_READ_WRITE, busy)
        .with_context(|| format!("opening the shop database {} for the audit", path.display()))?;
    read_audit(&mut conn).with_context(|| format!("reading the audit from {}", path.display()))
}
