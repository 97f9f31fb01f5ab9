//! Creating and seeding the database, once, before any worker starts.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use rusqlite::{OpenFlags, OptionalExtension, TransactionBehavior, params};

use super::{Defects, open_conn};
use crate::shop::catalog::{self, Catalog};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS products(
    sku TEXT PRIMARY KEY,
    pos INTEGER NOT NULL UNIQUE,
    name TEXT NOT NULL,
    price_cents INTEGER NOT NULL CHECK (price_cents >= 0),
    doorbuster INTEGER NOT NULL,
    initial INTEGER NOT NULL CHECK (initial >= 0),
    stock_left INTEGER NOT NULL CHECK (stock_left >= 0)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cart_lines(
    cart_id TEXT NOT NULL,
    sku TEXT NOT NULL REFERENCES products(sku),
    qty INTEGER NOT NULL CHECK (qty BETWEEN 1 AND 100),
    PRIMARY KEY (cart_id, sku)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS orders(
    order_id INTEGER PRIMARY KEY AUTOINCREMENT,
    cart_id TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    subtotal_cents INTEGER NOT NULL,
    discount_cents INTEGER NOT NULL,
    tax_cents INTEGER NOT NULL,
    total_cents INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS order_lines(
    order_id INTEGER NOT NULL REFERENCES orders(order_id),
    sku TEXT NOT NULL,
    qty INTEGER NOT NULL CHECK (qty > 0),
    unit_price_cents INTEGER NOT NULL,
    PRIMARY KEY (order_id, sku)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS order_lines_sku ON order_lines(sku);
CREATE TABLE IF NOT EXISTS idempotency(
    key TEXT PRIMARY KEY,
    cart_id TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_ms INTEGER NOT NULL
) WITHOUT ROWID;
";

/// The schema; without `unique_keys` (TEST ONLY, defect 7) the orders table
/// has no UNIQUE on `idempotency_key`, so nothing below the code stops a
/// second order for one key (the audit must report the duplicate).
fn schema(unique_keys: bool) -> Cow<'static, str> {
    const UNIQUE: &str = "idempotency_key TEXT UNIQUE,";
    if unique_keys { Cow::Borrowed(SCHEMA) } else { Cow::Owned(SCHEMA.replace(UNIQUE, "idempotency_key TEXT,")) }
}

/// Create the database file if needed and seed it if it has no catalog.
/// Runs once, before any worker starts. With `reset`, the file (and its WAL)
/// is deleted first. An existing catalog is kept as it is (orders, carts and
/// stock included), even if the seed flags differ; that is reported.
/// `defects` (TEST ONLY) shape the schema of a new database.
pub fn prepare(path: &Path, catalog: &Catalog, reset: bool, busy: Duration, defects: Defects) -> anyhow::Result<()> {
    catalog::check(&catalog.products)?;
    if reset {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            let p = PathBuf::from(p);
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("--reset-db: removing {}", p.display())),
            }
        }
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
    let mut conn =
        open_conn(path, flags, busy).with_context(|| format!("opening the shop database {}", path.display()))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .with_context(|| format!("switching {} to WAL mode", path.display()))?;
    if !mode.eq_ignore_ascii_case("wal") {
        bail!("{} refused WAL mode (got {mode}); is it on a network filesystem?", path.display());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(&schema(!defects.idempotency_outside_tx))
        .with_context(|| format!("creating the schema in {}", path.display()))?;
    let existing: i64 = tx.query_row("SELECT count(*) FROM products", [], |r| r.get(0))?;
    if existing > 0 {
        let old: Option<String> =
            tx.query_row("SELECT value FROM meta WHERE key = 'seed'", [], |r| r.get(0)).optional()?;
        let old = old.unwrap_or_else(|| "unknown".into());
        if old != catalog.describe {
            eprintln!(
                "[shop] keeping the existing catalog in {} ({old}); flags ask for {}; pass --reset-db to reseed",
                path.display(),
                catalog.describe
            );
        }
        if defects.idempotency_outside_tx {
            eprintln!(
                "[shop] --unsafe-idempotency-outside-tx: {} keeps its schema (UNIQUE keys, if it had them); \
                 pass --reset-db for the defect's schema",
                path.display()
            );
        }
        tx.commit()?;
        return Ok(());
    }
    {
        let mut ins = tx.prepare(
            "INSERT INTO products(sku, pos, name, price_cents, doorbuster, initial, stock_left)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        )?;
        for (pos, p) in catalog.products.iter().enumerate() {
            ins.execute(params![p.sku, pos as i64 + 1, p.name, p.price_cents, p.doorbuster, p.stock])?;
        }
    }
    tx.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('seed', ?1)", [&catalog.describe])?;
    tx.commit().with_context(|| format!("seeding {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_defect_drops_the_unique_idempotency_key() {
        assert!(schema(true).contains("idempotency_key TEXT UNIQUE,"));
        let loose = schema(false);
        assert!(loose.contains("idempotency_key TEXT,") && !loose.contains("UNIQUE,\n    subtotal"), "{loose}");
        assert_eq!(loose.matches("UNIQUE").count(), schema(true).matches("UNIQUE").count() - 1);
    }
}
