//! The shop: catalog, product pages with an inventory check, carts,
//! checkout with CPU-heavy pricing, limited-stock doorbusters and orders, on
//! a store shared by every worker (docs/SHOP_API.md).
//!
//! Two stores behind one trait (`store.rs`): the SQLite file (default,
//! `sqlite/`) and Redis (`--store redis://...`, `redis/`).
//!
//! The seam with the rest of the server is this module's five items:
//! [`ShopArgs`] (flags), [`prepare`] (once, before any worker), [`open`]
//! (once per worker), [`router`] (the public routes) and [`audit_json`] (the
//! admin audit). Not for: sockets, worker ids, draining (`worker`), or the
//! admin address itself (`admin`).
//!
//! Blocking on purpose: handlers call the store and the CPU work inline on
//! the worker's one event loop, with no `spawn_blocking`. A worker is meant
//! to behave like a Node process with a synchronous database driver: while
//! it prices a checkout or waits for SQLite's write lock, that worker (and
//! only it) serves nothing else, which is exactly the load shape the cluster
//! exists to spread. A blocking pool would hide that cost in threads the
//! harness cannot see. Store transactions are kept short (pricing happens
//! before the write lock is taken) and the busy timeout is below the
//! master's hang timeout, so a waiting worker is never mistaken for a hung
//! one. The one thing off the event loop is housekeeping no request waits
//! for: the WAL checkpoint (and its `fsync`) runs on a thread of its own
//! (`sqlite/checkpoint.rs`).

pub mod catalog;
pub mod cpu;
pub mod model;
pub mod redis;
pub mod routes;
pub mod sqlite;
pub mod store;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use clap::Parser;

use crate::duration::parse_duration;
use store::Store;

/// Which store holds the shop's state.
#[derive(Debug, Clone)]
pub enum StoreKind {
    /// The SQLite file named by `--db`.
    Sqlite,
    /// A Redis database (`redis://HOST:PORT/DB`), shared by every worker
    /// and every host pointed at it.
    Redis(redis::RedisTarget),
}

impl StoreKind {
    fn parse(s: &str) -> Result<Self, String> {
        if s == "sqlite" {
            return Ok(Self::Sqlite);
        }
        // rediss:// and redis+unix:// too, so the refusal names what is missing.
        if s.starts_with("redis") {
            return redis::RedisTarget::parse(s).map(Self::Redis);
        }
        Err(format!("{s:?}: the store is `sqlite` (the --db file) or redis://HOST:PORT/DB"))
    }
}

/// Shop flags (catalog size, stock, CPU costs, database path).
#[derive(Debug, Clone, clap::Args)]
pub struct ShopArgs {
    /// The shop's SQLite database file (WAL mode), shared by every worker.
    #[arg(long, default_value = "reference-shop.db")]
    pub db: PathBuf,

    /// Where the shop's state lives: `sqlite` (the --db file) or
    /// redis://HOST:PORT/DB, a Redis database shared by every worker (and
    /// every host pointed at it); run Redis with appendonly yes and
    /// appendfsync always, or an acknowledged order can be lost when it
    /// dies (docs/SHOP_API.md). The TEST ONLY --unsafe-* store defects need
    /// sqlite.
    #[arg(long, default_value = "sqlite", value_parser = StoreKind::parse)]
    pub store: StoreKind,

    /// Delete the database (orders, carts, stock) at start-up and seed it
    /// afresh; with Redis, every shop: key of its database. Without it an
    /// existing database is kept as it is.
    #[arg(long)]
    pub reset_db: bool,

    /// Seed from this catalog file instead of the generated catalog:
    /// {"products": [{"sku", "name", "price_cents", "stock", "doorbuster"}]}.
    /// The four catalog flags below are then ignored.
    #[arg(long)]
    pub catalog_file: Option<PathBuf>,

    /// Regular catalog SKUs: sku-0001 .. sku-NNNN.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    pub catalog_size: u64,

    /// Units of stock per regular SKU.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(i64).range(0..))]
    pub stock: i64,

    /// Doorbuster SKUs: door-1 .. door-K, listed first.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub doorbusters: u64,

    /// Units of stock per doorbuster.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(0..))]
    pub doorbuster_stock: i64,

    /// CPU work per product page (the inventory check), in work units of
    /// about 1 µs each on the reference machine (release build); 0 = none.
    #[arg(long, default_value_t = 200)]
    pub inventory_cost: u64,

    /// CPU work per checkout (pricing, tax, fraud score), in work units of
    /// about 1 µs each on the reference machine: the default is about 5 ms.
    #[arg(long, default_value_t = 5000)]
    pub pricing_cost: u64,

    /// Largest request body in bytes; larger ones get 413.
    #[arg(long, default_value_t = 16 * 1024)]
    pub max_body: usize,

    /// How long a worker waits for another worker's database write lock
    /// before answering 503. Keep it below --hang-timeout.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub db_busy_timeout: Duration,

    /// TEST ONLY (defect 6, docs/CLUSTER.md): answer a checkout's 201 before
    /// its order is committed (write-behind, 300 ms later); a SIGKILL in
    /// between loses an acknowledged order.
    #[arg(long, hide = true)]
    pub unsafe_ack_before_commit: bool,

    /// TEST ONLY (defect 7, docs/CLUSTER.md): look the Idempotency-Key up
    /// once, before pricing, outside the write transaction, with no UNIQUE
    /// constraint behind it (needs a fresh database: --reset-db); a retry
    /// racing its first attempt on another worker makes a duplicate order.
    #[arg(long, hide = true)]
    pub unsafe_idempotency_outside_tx: bool,
}

impl ShopArgs {
    /// The command line's defaults, with the database at `db`.
    pub fn with_db(db: impl Into<PathBuf>) -> Self {
        #[derive(Parser)]
        struct Defaults {
            #[command(flatten)]
            shop: ShopArgs,
        }
        let mut args = Defaults::parse_from(["shop"]).shop;
        args.db = db.into();
        args
    }

    /// The command line's defaults, with the store in Redis at `url`
    /// (`redis://HOST:PORT/DB`).
    pub fn with_redis(url: &str) -> anyhow::Result<Self> {
        let mut args = Self::with_db("reference-shop.db");
        args.store = StoreKind::parse(url).map_err(anyhow::Error::msg)?;
        Ok(args)
    }

    /// The TEST ONLY defects live in the SQLite store; asking for them on
    /// another store is a start-up error, not a silently correct shop.
    fn refuse_defects_outside_sqlite(&self) -> anyhow::Result<()> {
        let flags = [
            (self.unsafe_ack_before_commit, "--unsafe-ack-before-commit"),
            (self.unsafe_idempotency_outside_tx, "--unsafe-idempotency-outside-tx"),
        ];
        match (&self.store, flags.iter().find(|(on, _)| *on)) {
            (StoreKind::Redis(target), Some((_, flag))) => {
                anyhow::bail!("{flag} is a defect of the SQLite store only; it cannot be used with --store {target}")
            }
            _ => Ok(()),
        }
    }

    fn defects(&self) -> sqlite::Defects {
        sqlite::Defects {
            ack_before_commit: self.unsafe_ack_before_commit,
            idempotency_outside_tx: self.unsafe_idempotency_outside_tx,
        }
    }

    fn catalog(&self) -> anyhow::Result<catalog::Catalog> {
        match &self.catalog_file {
            Some(path) => catalog::from_file(path),
            None if self.catalog_size == 0 && self.doorbusters == 0 => {
                anyhow::bail!("the catalog would be empty: --catalog-size and --doorbusters are both 0")
            }
            None => Ok(catalog::generated(self.catalog_size, self.stock, self.doorbusters, self.doorbuster_stock)),
        }
    }
}

/// Create the database (WAL mode) and seed it, once, before any worker
/// starts. An existing database is kept unless `--reset-db`; workers never
/// seed, so a respawned worker finds the stock as the others left it.
pub fn prepare(args: &ShopArgs) -> anyhow::Result<()> {
    args.refuse_defects_outside_sqlite()?;
    match &args.store {
        StoreKind::Sqlite => {
            sqlite::prepare(&args.db, &args.catalog()?, args.reset_db, args.db_busy_timeout, args.defects())
        }
        StoreKind::Redis(target) => redis::prepare(target, &args.catalog()?, args.reset_db, args.db_busy_timeout),
    }
}

/// Per-worker handle on the shop: the store plus the CPU costs.
#[derive(Clone)]
pub struct Shop {
    store: Arc<dyn Store>,
    inventory_cost: u64,
    pricing_cost: u64,
    max_body: usize,
}

impl Shop {
    /// A shop over any store (the seam for other backends and for tests).
    pub fn new(store: Arc<dyn Store>, args: &ShopArgs) -> Self {
        Self { store, inventory_cost: args.inventory_cost, pricing_cost: args.pricing_cost, max_body: args.max_body }
    }
}

/// Open the store prepared by [`prepare`]; called once in each worker.
pub fn open(args: &ShopArgs) -> anyhow::Result<Shop> {
    args.refuse_defects_outside_sqlite()?;
    let store: Arc<dyn Store> = match &args.store {
        StoreKind::Sqlite => Arc::new(sqlite::SqliteStore::open_with(&args.db, args.db_busy_timeout, args.defects())?),
        StoreKind::Redis(target) => Arc::new(redis::RedisStore::open(target, args.db_busy_timeout)?),
    };
    Ok(Shop::new(store, args))
}

/// The shop's public routes.
pub fn router(shop: Shop) -> Router {
    routes::router(shop)
}

/// The audit document served on the admin address, as JSON text: read
/// through a fresh connection in one snapshot (the caller holds no store).
pub fn audit_json(args: &ShopArgs) -> anyhow::Result<String> {
    let audit = match &args.store {
        StoreKind::Sqlite => sqlite::audit_at(&args.db, args.db_busy_timeout)?,
        StoreKind::Redis(target) => redis::audit_at(target, args.db_busy_timeout)?,
    };
    serde_json::to_string(&audit).context("serialising the audit")
}
