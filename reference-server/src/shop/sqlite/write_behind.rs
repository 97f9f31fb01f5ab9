//! TEST ONLY (`--unsafe-ack-before-commit`, defect 6 in docs/CLUSTER.md):
//! write-behind of a checkout's order rows. The checkout's transaction
//! commits the stock, the emptied cart and the idempotency answer, and hands
//! the order itself here; a thread with its own connection writes it
//! [`DELAY`] later. A worker SIGKILLed in between has acknowledged an order
//! (201, order id) that never reaches the database: the lost order (and the
//! stock reserved for nothing) the harness's audit must catch. Without a
//! kill every order commits, also on a graceful exit: dropping the store
//! waits for the queue.
//!
//! Not for: anything but demonstrating that bug; off by default.

use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};

use super::{BUSY_BUDGET, db_err, exec, open_conn};
use crate::shop::model::Order;
use crate::shop::store::StoreError;

/// How long after its 201 an order is committed: the window in which a
/// SIGKILL of the worker loses it. Long enough that a kill during a busy
/// run finds orders in it, short enough that a run without a kill ends with
/// every order committed.
pub const DELAY: Duration = Duration::from_millis(300);

/// The write-behind thread of one store.
pub struct WriteBehind {
    queue: Option<mpsc::Sender<(Instant, Order)>>,
    thread: Option<JoinHandle<()>>,
}

impl WriteBehind {
    pub fn start(path: &Path, busy: Duration) -> anyhow::Result<Self> {
        let conn = open_conn(path, OpenFlags::SQLITE_OPEN_READ_WRITE, busy)
            .with_context(|| format!("opening {} for write-behind", path.display()))?;
        let (queue, rx) = mpsc::channel::<(Instant, Order)>();
        let thread = std::thread::Builder::new()
            .name("shop-write-behind".into())
            .spawn(move || {
                BUSY_BUDGET.set(busy);
                let mut conn = conn;
                // FIFO with equal delays, so due times only grow. Ends when
                // the store is dropped and the queue is empty.
                while let Ok((due, order)) = rx.recv() {
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    if let Err(e) = commit(&mut conn, &order) {
                        eprintln!("[shop] write-behind: acknowledged order {} lost: {e}", order.order_id);
                    }
                }
            })
            .context("starting the write-behind thread")?;
        Ok(Self { queue: Some(queue), thread: Some(thread) })
    }

    /// Commit `order` [`DELAY`] from now.
    pub fn defer(&self, order: Order) {
        let id = order.order_id;
        if self.queue.as_ref().is_none_or(|q| q.send((Instant::now() + DELAY, order)).is_err()) {
            eprintln!("[shop] write-behind thread gone: acknowledged order {id} lost");
        }
    }
}

impl Drop for WriteBehind {
    /// A graceful exit commits what is queued (at most [`DELAY`] away).
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The rows `decide` wrote and the checkout's transaction held back, with
/// the same order id (reserved there: AUTOINCREMENT never reuses it).
fn commit(conn: &mut Connection, order: &Order) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_err)?;
    exec(
        &tx,
        "INSERT INTO orders(order_id, cart_id, idempotency_key, subtotal_cents, discount_cents, tax_cents, total_cents,
                            created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            order.order_id,
            order.cart_id,
            order.idempotency_key,
            order.subtotal_cents,
            order.discount_cents,
            order.tax_cents,
            order.total_cents,
            order.created_ms
        ],
    )?;
    for l in &order.lines {
        exec(
            &tx,
            "INSERT INTO order_lines(order_id, sku, qty, unit_price_cents) VALUES (?1, ?2, ?3, ?4)",
            params![order.order_id, l.sku, l.qty, l.unit_price_cents],
        )?;
    }
    tx.commit().map_err(db_err)
}

/// Inside the checkout's transaction: take back the order rows `decide`
/// just wrote, keeping everything else (stock, cart, idempotency answer).
pub(super) fn hold_back(tx: &Connection, order_id: i64) -> Result<(), StoreError> {
    exec(tx, "DELETE FROM order_lines WHERE order_id = ?1", [order_id])?;
    exec(tx, "DELETE FROM orders WHERE order_id = ?1", [order_id])?;
    Ok(())
}
