//! The embedded store: one SQLite database file in WAL mode, shared by every
//! worker process, each holding its own connection. Cross-process
//! correctness comes from SQLite's locking: every write is a short
//! `BEGIN IMMEDIATE` transaction (the write lock is taken up front, so two
//! checkouts never both read stock and then both decrement it), and a worker
//! that finds the lock held waits up to the busy timeout. A `CHECK
//! (stock_left >= 0)` constraint makes overselling impossible even for a bug
//! in the code above it, and `orders.idempotency_key UNIQUE` makes a second
//! order for one key impossible.
//!
//! Durability: `synchronous=NORMAL` in WAL mode; a committed transaction
//! survives the death of any process (the fault this project injects), not
//! necessarily a power cut.
//!
//! Not for: anything but this schema; the routes see only [`Store`].

use std::cell::Cell;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};
use serde_json::json;

use super::cpu::PriceLine;
use super::model::{Audit, Cart, CartLine, CheckoutOutcome, MAX_CART_LINES, Order, OrderLine, Product, ProductPage};
use super::store::{PlaceOrder, Store, StoreError};

mod audit;
mod checkpoint;
mod setup;
pub mod write_behind;

pub use audit::audit_at;
pub use setup::prepare;

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

pub(crate) fn db_err(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Busy(Box::new(e)),
        _ => StoreError::Db(Box::new(e)),
    }
}

thread_local! {
    /// How long this thread's store calls may wait for a lock (set before each use).
    static BUSY_BUDGET: Cell<Duration> = const { Cell::new(Duration::from_secs(2)) };
    /// When the current wait for a lock began.
    static BUSY_SINCE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// SQLite's busy handler: called while another connection holds the lock we
/// need, `count` = tries so far. SQLite's own (`busy_timeout`) sleeps 1, 2,
/// 5, 10 ... 100 ms between tries, far longer than a write lock is held here
/// (a fraction of a millisecond), so with two busy workers one of them kept
/// sleeping through free windows (polling instead raised two workers'
/// write throughput by about a third, see docs/PERFORMANCE.md). This polls
/// every 100 µs for the first 20 ms, then every millisecond, and gives up
/// (SQLITE_BUSY, a 503) after the thread's budget, `--db-busy-timeout`.
fn busy_wait(count: i32) -> bool {
    let now = Instant::now();
    let since = match BUSY_SINCE.get() {
        Some(t) if count > 0 => t,
        _ => {
            BUSY_SINCE.set(Some(now));
            now
        }
    };
    let waited = now - since;
    if waited >= BUSY_BUDGET.get() {
        return false;
    }
    std::thread::sleep(if waited < Duration::from_millis(20) {
        Duration::from_micros(100)
    } else {
        Duration::from_millis(1)
    });
    true
}

pub(crate) fn open_conn(path: &Path, flags: OpenFlags, busy: Duration) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, flags)?;
    BUSY_BUDGET.set(busy);
    conn.busy_handler(Some(busy_wait))?;
    // Room for every statement the store runs (about 20), so none is re-parsed.
    conn.set_prepared_statement_cache_capacity(64);
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // After a WAL restart, shrink the file back to at most 64 MiB.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// TEST ONLY bugs the store can be started with (docs/CLUSTER.md, "Test-only
/// defects"); all off by default, and off means the correct code path.
#[derive(Debug, Clone, Copy, Default)]
pub struct Defects {
    /// Defect 6, `--unsafe-ack-before-commit`: a checkout's order rows are
    /// committed [`write_behind::DELAY`] after its 201 (see `write_behind.rs`).
    pub ack_before_commit: bool,
    /// Defect 7, `--unsafe-idempotency-outside-tx`: the Idempotency-Key and
    /// the cart are read once, before pricing, outside the write
    /// transaction; the transaction trusts both (no second look-up, the cart
    /// as priced), and the schema has no UNIQUE on `orders.idempotency_key`
    /// (`setup::schema`). A retry racing its own first attempt on another
    /// worker makes a second order with the same key.
    pub idempotency_outside_tx: bool,
}

/// One worker's connection to the shared database.
pub struct SqliteStore {
    // The Mutex is never contended inside a worker (one event loop, no
    // await while held); it makes the store Sync for the router and lets
    // in-process tests share one store across threads.
    conn: Mutex<Connection>,
    busy: Duration,
    defects: Defects,
    /// Some only with `Defects::ack_before_commit`.
    write_behind: Option<write_behind::WriteBehind>,
    _checkpointer: checkpoint::Checkpointer,
}

impl SqliteStore {
    /// Open a database that [`prepare`] created; never creates or seeds.
    pub fn open(path: &Path, busy: Duration) -> anyhow::Result<Self> {
        Self::open_with(path, busy, Defects::default())
    }

    /// [`open`](Self::open) with TEST ONLY `defects` switched on.
    pub fn open_with(path: &Path, busy: Duration, defects: Defects) -> anyhow::Result<Self> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE;
        let conn = open_conn(path, flags, busy)
            .with_context(|| format!("opening the shop database {} (was it prepared?)", path.display()))?;
        let seeded: Option<String> = conn
            .query_row("SELECT value FROM meta WHERE key = 'seed'", [], |r| r.get(0))
            .optional()
            .with_context(|| format!("{} has no shop schema (was it prepared?)", path.display()))?;
        if seeded.is_none() {
            bail!("{} was never seeded (was it prepared?)", path.display());
        }
        // Checkpoints run on the checkpointer's thread, never inside a
        // request's commit (see checkpoint.rs).
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .with_context(|| format!("turning off automatic checkpoints on {}", path.display()))?;
        let checkpointer = checkpoint::Checkpointer::start(path, busy)?;
        let write_behind =
            if defects.ack_before_commit { Some(write_behind::WriteBehind::start(path, busy)?) } else { None };
        Ok(Self { conn: Mutex::new(conn), busy, defects, write_behind, _checkpointer: checkpointer })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        BUSY_BUDGET.set(self.busy);
        // A panic while holding the lock dropped its Transaction, which
        // rolled back; the connection itself is still sound.
        self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Run a write through the connection's statement cache: the hot paths
/// run the same few statements thousands of times, and parsing SQL each
/// time showed up in profiles.
fn exec<P: rusqlite::Params>(conn: &Connection, sql: &str, params: P) -> Result<usize, StoreError> {
    conn.prepare_cached(sql).and_then(|mut st| st.execute(params)).map_err(db_err)
}

fn product_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Product> {
    Ok(Product {
        sku: r.get(0)?,
        name: r.get(1)?,
        price_cents: r.get(2)?,
        doorbuster: r.get(3)?,
        stock_left: r.get(4)?,
    })
}

fn read_cart(conn: &Connection, cart_id: &str) -> rusqlite::Result<Cart> {
    let mut st = conn.prepare_cached("SELECT sku, qty FROM cart_lines WHERE cart_id = ?1 ORDER BY sku")?;
    let lines = st
        .query_map([cart_id], |r| Ok(CartLine { sku: r.get(0)?, qty: r.get(1)? }))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Cart { cart_id: cart_id.to_string(), lines })
}

fn read_priced(conn: &Connection, cart_id: &str) -> rusqlite::Result<Vec<PriceLine>> {
    let mut st = conn.prepare_cached(
        "SELECT c.sku, c.qty, p.price_cents, p.doorbuster FROM cart_lines c JOIN products p ON p.sku = c.sku
         WHERE c.cart_id = ?1 ORDER BY c.sku",
    )?;
    st.query_map([cart_id], |r| {
        Ok(PriceLine { sku: r.get(0)?, qty: r.get(1)?, unit_price_cents: r.get(2)?, doorbuster: r.get(3)? })
    })?
    .collect()
}

fn read_replay(conn: &Connection, key: &str, cart_id: &str) -> Result<Option<CheckoutOutcome>, StoreError> {
    let row: Option<(String, u16, String)> = conn
        .prepare_cached("SELECT cart_id, status, body FROM idempotency WHERE key = ?1")
        .and_then(|mut st| st.query_row([key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional())
        .map_err(db_err)?;
    match row {
        None => Ok(None),
        Some((first_cart, _, _)) if first_cart != cart_id => {
            Err(StoreError::KeyReused { key: key.to_string(), first_cart, cart_id: cart_id.to_string() })
        }
        Some((_, status, body)) => Ok(Some(CheckoutOutcome { status, body, replayed: true })),
    }
}

fn order_lines(conn: &Connection, order_id: i64) -> rusqlite::Result<Vec<OrderLine>> {
    let mut st =
        conn.prepare_cached("SELECT sku, qty, unit_price_cents FROM order_lines WHERE order_id = ?1 ORDER BY sku")?;
    st.query_map([order_id], |r| Ok(OrderLine { sku: r.get(0)?, qty: r.get(1)?, unit_price_cents: r.get(2)? }))?
        .collect()
}

impl Store for SqliteStore {
    fn products(&self, page: u64, per_page: u64) -> Result<ProductPage, StoreError> {
        let conn = self.lock();
        let total: u64 = conn
            .prepare_cached("SELECT count(*) FROM products")
            .and_then(|mut st| st.query_row([], |r| r.get(0)))
            .map_err(db_err)?;
        let offset = page.saturating_sub(1).saturating_mul(per_page);
        let mut st = conn
            .prepare_cached(
                "SELECT sku, name, price_cents, doorbuster, stock_left FROM products ORDER BY pos LIMIT ?1 OFFSET ?2",
            )
            .map_err(db_err)?;
        let products = st
            .query_map(params![per_page as i64, offset.min(i64::MAX as u64) as i64], product_row)
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(db_err)?;
        Ok(ProductPage { products, page, per_page, total })
    }

    fn product(&self, sku: &str) -> Result<Option<Product>, StoreError> {
        let conn = self.lock();
        conn.prepare_cached("SELECT sku, name, price_cents, doorbuster, stock_left FROM products WHERE sku = ?1")
            .and_then(|mut st| st.query_row([sku], product_row).optional())
            .map_err(db_err)
    }

    fn cart(&self, cart_id: &str) -> Result<Cart, StoreError> {
        read_cart(&self.lock(), cart_id).map_err(db_err)
    }

    fn set_line(&self, cart_id: &str, sku: &str, qty: i64) -> Result<Cart, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_err)?;
        let known: Option<i64> = tx
            .prepare_cached("SELECT 1 FROM products WHERE sku = ?1")
            .and_then(|mut st| st.query_row([sku], |r| r.get(0)).optional())
            .map_err(db_err)?;
        if known.is_none() {
            return Err(StoreError::UnknownSku(sku.to_string()));
        }
        let (lines, has_sku): (usize, bool) = tx
            .prepare_cached("SELECT count(*), coalesce(sum(sku = ?2), 0) FROM cart_lines WHERE cart_id = ?1")
            .and_then(|mut st| st.query_row(params![cart_id, sku], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? > 0))))
            .map_err(db_err)?;
        if !has_sku && lines >= MAX_CART_LINES {
            return Err(StoreError::CartFull { cart_id: cart_id.to_string(), max: MAX_CART_LINES });
        }
        exec(
            &tx,
            "INSERT INTO cart_lines(cart_id, sku, qty) VALUES (?1, ?2, ?3)
             ON CONFLICT(cart_id, sku) DO UPDATE SET qty = excluded.qty",
            params![cart_id, sku, qty],
        )?;
        let cart = read_cart(&tx, cart_id).map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(cart)
    }

    fn remove_line(&self, cart_id: &str, sku: &str) -> Result<Cart, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_err)?;
        exec(&tx, "DELETE FROM cart_lines WHERE cart_id = ?1 AND sku = ?2", [cart_id, sku])?;
        let cart = read_cart(&tx, cart_id).map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(cart)
    }

    fn cart_for_pricing(&self, cart_id: &str) -> Result<Vec<PriceLine>, StoreError> {
        read_priced(&self.lock(), cart_id).map_err(db_err)
    }

    fn replay(&self, key: &str, cart_id: &str) -> Result<Option<CheckoutOutcome>, StoreError> {
        read_replay(&self.lock(), key, cart_id)
    }

    fn place_order(&self, req: PlaceOrder<'_>) -> Result<CheckoutOutcome, StoreError> {
        let mut conn = self.lock();
        // IMMEDIATE: take the write lock before reading stock, so the read
        // and the decrement are one atomic step across every process.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_err)?;
        let outside_tx = self.defects.idempotency_outside_tx;
        if let Some(key) = req.idempotency_key.filter(|_| !outside_tx) {
            // Checked again under the lock: the same key may have raced us
            // from another worker since the caller's lock-free look-up.
            if let Some(done) = read_replay(&tx, key, req.cart_id)? {
                return Ok(done);
            }
        }
        let Decision { outcome, order } = decide(&tx, &req, outside_tx)?;
        if let Some(key) = req.idempotency_key {
            // TEST ONLY: a second order for the key overwrites the first's
            // answer instead of failing on the primary key.
            let sql = if outside_tx {
                "INSERT OR REPLACE INTO idempotency(key, cart_id, status, body, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)"
            } else {
                "INSERT INTO idempotency(key, cart_id, status, body, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)"
            };
            exec(&tx, sql, params![key, req.cart_id, outcome.status, outcome.body, now_ms()])?;
        }
        let behind = match (&self.write_behind, order) {
            (Some(wb), Some(order)) => {
                write_behind::hold_back(&tx, order.order_id)?;
                Some((wb, order))
            }
            _ => None,
        };
        // The order exists once this returns, before any byte of the 201
        // (TEST ONLY with write-behind: it exists DELAY later).
        tx.commit().map_err(db_err)?;
        if let Some((wb, order)) = behind {
            wb.defer(order);
        }
        Ok(outcome)
    }

    fn order(&self, order_id: i64) -> Result<Option<Order>, StoreError> {
        let conn = self.lock();
        let head = conn
            .prepare_cached(
                "SELECT cart_id, idempotency_key, subtotal_cents, discount_cents, tax_cents, total_cents, created_ms
                 FROM orders WHERE order_id = ?1",
            )
            .and_then(|mut st| {
                st.query_row([order_id], |r| {
                    Ok(Order {
                        order_id,
                        cart_id: r.get(0)?,
                        idempotency_key: r.get(1)?,
                        subtotal_cents: r.get(2)?,
                        discount_cents: r.get(3)?,
                        tax_cents: r.get(4)?,
                        total_cents: r.get(5)?,
                        created_ms: r.get(6)?,
                        lines: Vec::new(),
                    })
                })
                .optional()
            })
            .map_err(db_err)?;
        let Some(mut order) = head else { return Ok(None) };
        order.lines = order_lines(&conn, order_id).map_err(db_err)?;
        Ok(Some(order))
    }

    fn audit(&self) -> Result<Audit, StoreError> {
        let mut conn = self.lock();
        audit::read_audit(&mut conn)
    }
}

/// What a checkout's transaction decided: the answer, and the order it
/// created (None for a refusal).
struct Decision {
    outcome: CheckoutOutcome,
    order: Option<Order>,
}

/// Inside the checkout's write transaction: refuse an empty cart (400) or a
/// short line (409, nothing written), or reserve, create the order and
/// empty the cart (201). `trust_priced` (TEST ONLY, defect 7) orders the
/// cart as it was when priced instead of reading it again under the lock.
fn decide(tx: &Connection, req: &PlaceOrder<'_>, trust_priced: bool) -> Result<Decision, StoreError> {
    let refuse = |status: u16, body: serde_json::Value| Decision {
        outcome: CheckoutOutcome { status, body: body.to_string(), replayed: false },
        order: None,
    };
    let lines = if trust_priced { req.priced.to_vec() } else { read_priced(tx, req.cart_id).map_err(db_err)? };
    if lines.is_empty() {
        return Ok(refuse(
            400,
            json!({ "error": format!("cart {:?} is empty (add items before checkout)", req.cart_id) }),
        ));
    }
    for l in &lines {
        let left: i64 = tx
            .prepare_cached("SELECT stock_left FROM products WHERE sku = ?1")
            .and_then(|mut st| st.query_row([&l.sku], |r| r.get(0)))
            .map_err(db_err)?;
        if left < l.qty {
            return Ok(refuse(409, json!({ "error": "sold out", "sku": l.sku })));
        }
    }
    let pricing = if lines == req.priced { req.pricing } else { (req.reprice)(&lines) };
    let created_ms = now_ms();
    exec(
        tx,
        "INSERT INTO orders(cart_id, idempotency_key, subtotal_cents, discount_cents, tax_cents, total_cents, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            req.cart_id,
            req.idempotency_key,
            pricing.subtotal_cents,
            pricing.discount_cents,
            pricing.tax_cents,
            pricing.total_cents,
            created_ms
        ],
    )?;
    let order_id = tx.last_insert_rowid();
    for l in &lines {
        let sql = "UPDATE products SET stock_left = stock_left - ?2 WHERE sku = ?1 AND stock_left >= ?2";
        if exec(tx, sql, params![l.sku, l.qty])? != 1 {
            // Impossible under the write lock; refuse rather than oversell.
            return Err(StoreError::Corrupt(format!("stock of {} changed under the write lock", l.sku)));
        }
        exec(
            tx,
            "INSERT INTO order_lines(order_id, sku, qty, unit_price_cents) VALUES (?1, ?2, ?3, ?4)",
            params![order_id, l.sku, l.qty, l.unit_price_cents],
        )?;
    }
    exec(tx, "DELETE FROM cart_lines WHERE cart_id = ?1", [req.cart_id])?;
    let order = req.order(order_id, &lines, pricing, created_ms);
    let body = serde_json::to_string(&order).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(Decision { outcome: CheckoutOutcome { status: 201, body, replayed: false }, order: Some(order) })
}
