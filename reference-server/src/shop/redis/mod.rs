//! The networked store: one Redis database shared by every worker (and, in
//! a fleet, by every host), each worker holding one synchronous connection,
//! as it holds one SQLite connection with the embedded store. The same
//! guarantees as SQLite's, each enforced by Redis in one atomic step: every
//! mutation is one Lua script (`set_line.lua`, `place_order.lua`, loaded
//! once per connection and called by SHA, reloaded on NOSCRIPT after a
//! Redis restart) or one MULTI, and `place_order.lua` makes every check
//! before its first write, so a refusal writes nothing and an order never
//! exists without its lines (they are one value).
//!
//! Keys (all under `shop:` in the URL's database): `shop:meta` (the seed),
//! `shop:skus` (catalog order), `shop:p:{sku}` (name, price, doorbuster),
//! `shop:stock` and `shop:initial` (sku -> units), `shop:cart:{id}`
//! (sku -> qty), `shop:orders` (id -> the 201 body), `shop:order_seq`,
//! `shop:idem:{key}` (cart id, status and body of the recorded answer).
//!
//! Failures: a Redis that is down, restarting, loading its AOF or slower
//! than `--db-busy-timeout` (connect, read and write timeouts) is
//! [`StoreError::Unavailable`], a 503 the client may retry; the connection
//! is dropped and made again on the next call, so a worker outlives any
//! outage. Anything else Redis refuses is [`StoreError::Db`].
//!
//! Durability is Redis's configuration, not ours: with `appendonly yes` and
//! `appendfsync always` an acknowledged order survives a SIGKILL of
//! redis-server (`prepare` says so on stderr when it is not the case; see
//! docs/SHOP_API.md, "Redis").
//!
//! Not for: the TEST ONLY defects (SQLite only), or Redis Cluster (reads of
//! a cart's products name keys the script did not declare).

use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{Context, bail};
use redis::{Connection, ConnectionLike, ErrorKind, RedisError, RedisResult, Script, ServerErrorKind};
use serde_json::json;

use super::cpu::PriceLine;
use super::model::{Audit, Cart, CartLine, CheckoutOutcome, MAX_CART_LINES, Order, Product, ProductPage};
use super::store::{PlaceOrder, Store, StoreError};

mod audit;
mod setup;

pub use audit::audit_at;
pub use setup::prepare;

const META: &str = "shop:meta";
const SKUS: &str = "shop:skus";
const STOCK: &str = "shop:stock";
const INITIAL: &str = "shop:initial";
const ORDERS: &str = "shop:orders";
const ORDER_SEQ: &str = "shop:order_seq";

fn product_key(sku: &str) -> String {
    format!("shop:p:{sku}")
}
fn cart_key(cart_id: &str) -> String {
    format!("shop:cart:{cart_id}")
}
fn idem_key(key: &str) -> String {
    format!("shop:idem:{key}")
}

/// How many times a checkout reprices a cart that changed under it before
/// giving up with a 503 (another client keeps editing that cart).
const MAX_REPRICES: usize = 8;

/// A `redis://HOST:PORT/DB` address, validated when the flag is parsed.
/// Debug and Display hide a password (`redis://user:pw@host` shows as
/// `redis://***@host`), since both reach logs.
#[derive(Clone)]
pub struct RedisTarget {
    url: String,
}

impl RedisTarget {
    pub fn parse(url: &str) -> Result<Self, String> {
        if !url.starts_with("redis://") {
            return Err(format!(
                "{url:?}: a Redis store is redis://HOST:PORT/DB (TLS and unix sockets are not supported)"
            ));
        }
        redis::Client::open(url).map_err(|e| format!("{}: not a Redis URL: {e}", Self::hide(url)))?;
        Ok(Self { url: url.to_string() })
    }

    fn hide(url: &str) -> String {
        match (url.strip_prefix("redis://"), url.rfind('@')) {
            (Some(_), Some(at)) => format!("redis://***{}", &url[at..]),
            _ => url.to_string(),
        }
    }

    fn client(&self) -> anyhow::Result<redis::Client> {
        redis::Client::open(self.url.as_str()).with_context(|| format!("{self}: not a Redis URL"))
    }
}

impl fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&Self::hide(&self.url))
    }
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisTarget({self})")
    }
}

/// Down, restarting, loading, or too slow: retryable, and the connection
/// (if any) is not to be trusted any more.
fn unavailable(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
            )
        )
        // A script another client runs past lua-time-limit.
        || e.code() == Some("BUSY")
}

pub(crate) fn store_err(e: RedisError) -> StoreError {
    if unavailable(&e) { StoreError::Unavailable(Box::new(e)) } else { StoreError::Db(Box::new(e)) }
}

fn corrupt(what: impl fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// Connect with every timeout set to `timeout`, so no call waits longer.
pub(crate) fn connect(client: &redis::Client, timeout: Duration) -> RedisResult<Connection> {
    let conn = client.get_connection_with_timeout(timeout)?;
    conn.set_read_timeout(Some(timeout))?;
    conn.set_write_timeout(Some(timeout))?;
    Ok(conn)
}

/// One worker's connection to the shared Redis database.
pub struct RedisStore {
    client: redis::Client,
    timeout: Duration,
    // None after a connection failed: the next call connects again. The
    // Mutex is never contended inside a worker (one event loop, no await
    // while held); it makes the store Sync, as in the SQLite store.
    conn: Mutex<Option<Connection>>,
    set_line: Script,
    place_order: Script,
}

impl RedisStore {
    /// Open a database that [`prepare`] seeded; never seeds. A Redis that
    /// cannot be reached *now* is not an error (a worker respawned during
    /// an outage must not crash-loop): calls answer 503 until it is back.
    pub fn open(target: &RedisTarget, timeout: Duration) -> anyhow::Result<Self> {
        let store = Self {
            client: target.client()?,
            timeout,
            conn: Mutex::new(None),
            set_line: Script::new(include_str!("set_line.lua")),
            place_order: Script::new(include_str!("place_order.lua")),
        };
        let seeded = store.with_conn(|c| {
            store.set_line.prepare_invoke().load(c)?;
            store.place_order.prepare_invoke().load(c)?;
            redis::cmd("HGET").arg(META).arg("seed").query::<Option<String>>(c)
        });
        match seeded {
            Ok(Some(_)) => {}
            Ok(None) => bail!("the Redis store at {target} was never seeded (was it prepared?)"),
            Err(StoreError::Unavailable(e)) => {
                eprintln!("[shop] the Redis store at {target} is unavailable ({e}); answering 503 until it is back");
            }
            Err(e) => return Err(e).with_context(|| format!("opening the Redis store at {target}")),
        }
        Ok(store)
    }

    /// Run `f` on the connection, connecting first if there is none; an
    /// error that leaves the connection in doubt drops it.
    fn with_conn<T>(&self, f: impl FnOnce(&mut Connection) -> RedisResult<T>) -> Result<T, StoreError> {
        let mut slot: MutexGuard<'_, Option<Connection>> = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(connect(&self.client, self.timeout).map_err(store_err)?);
        }
        let Some(conn) = slot.as_mut() else { return Err(corrupt("no Redis connection")) };
        let result = f(conn);
        if let Err(e) = &result {
            if unavailable(e) || e.is_unrecoverable_error() || !conn.is_open() {
                *slot = None;
            }
        }
        result.map_err(store_err)
    }

    fn read_cart(&self, cart_id: &str) -> Result<Cart, StoreError> {
        let pairs: Vec<(String, String)> = self.with_conn(|c| redis::cmd("HGETALL").arg(cart_key(cart_id)).query(c))?;
        cart_from_pairs(cart_id, pairs)
    }
}

fn cart_from_pairs(cart_id: &str, pairs: Vec<(String, String)>) -> Result<Cart, StoreError> {
    let mut lines = pairs
        .into_iter()
        .map(|(sku, qty)| match qty.parse() {
            Ok(qty) => Ok(CartLine { sku, qty }),
            Err(_) => Err(corrupt(format!("cart {cart_id:?}: quantity {qty:?} of {sku:?} is not a number"))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    lines.sort_by(|a, b| a.sku.cmp(&b.sku));
    Ok(Cart { cart_id: cart_id.to_string(), lines })
}

fn int(field: &str, v: Option<String>) -> Result<i64, StoreError> {
    let v = v.ok_or_else(|| corrupt(format!("{field} is missing")))?;
    v.parse().map_err(|_| corrupt(format!("{field}: {v:?} is not a number")))
}

/// A product from its hash fields (name, price_cents, doorbuster) and its
/// stock; None if the product does not exist.
fn product_from(sku: &str, fields: Vec<Option<String>>, left: Option<String>) -> Result<Option<Product>, StoreError> {
    let mut fields = fields.into_iter();
    let Some(name) = fields.next().flatten() else { return Ok(None) };
    Ok(Some(Product {
        sku: sku.to_string(),
        name,
        price_cents: int(&format!("{sku} price_cents"), fields.next().flatten())?,
        doorbuster: fields.next().flatten().as_deref() == Some("1"),
        stock_left: int(&format!("{sku} stock"), left)?,
    }))
}

/// The 201 body for `order` after `{"order_id":`: the script puts the id
/// it takes from the counter in front, so the recorded bytes are exactly
/// what serde writes for the whole order.
fn order_tail(order: &Order) -> Result<String, StoreError> {
    let body = serde_json::to_string(order).map_err(corrupt)?;
    let prefix = format!("{{\"order_id\":{}", order.order_id);
    body.strip_prefix(&prefix)
        .map(str::to_string)
        .ok_or_else(|| corrupt(format!("an order's JSON does not start with {prefix}: {body}")))
}

/// What one call of `place_order.lua` answered.
enum Placed {
    Outcome(CheckoutOutcome),
    Changed,
}

impl RedisStore {
    fn place_once(
        &self,
        req: &PlaceOrder<'_>,
        lines: &[PriceLine],
        pricing: super::cpu::Pricing,
    ) -> Result<Placed, StoreError> {
        let order = req.order(0, lines, pricing, super::sqlite::now_ms());
        let empty = json!({ "error": format!("cart {:?} is empty (add items before checkout)", req.cart_id) });
        let mut call = self.place_order.prepare_invoke();
        call.key(cart_key(req.cart_id))
            .key(idem_key(req.idempotency_key.unwrap_or("")))
            .key(STOCK)
            .key(ORDERS)
            .key(ORDER_SEQ)
            .arg(if req.idempotency_key.is_some() { "1" } else { "0" })
            .arg(req.cart_id)
            .arg(empty.to_string())
            .arg(order_tail(&order)?)
            .arg(lines.len());
        for l in lines {
            call.key(product_key(&l.sku))
                .arg(&l.sku)
                .arg(l.qty)
                .arg(l.unit_price_cents)
                .arg(if l.doorbuster { "1" } else { "0" })
                .arg(json!({ "error": "sold out", "sku": l.sku }).to_string());
        }
        let reply: Vec<String> = self.with_conn(|c| call.invoke(c))?;
        let mut reply = reply.into_iter();
        let outcome = |status: Option<String>, body: Option<String>, replayed| {
            let status = status.and_then(|s| s.parse().ok()).ok_or_else(|| corrupt("place_order: no status"))?;
            let body = body.ok_or_else(|| corrupt("place_order: no body"))?;
            Ok(Placed::Outcome(CheckoutOutcome { status, body, replayed }))
        };
        match reply.next().as_deref() {
            Some("done") => outcome(reply.next(), reply.next(), false),
            Some("replay") => outcome(reply.next(), reply.next(), true),
            Some("changed") => Ok(Placed::Changed),
            Some("reused") => Err(StoreError::KeyReused {
                key: req.idempotency_key.unwrap_or("").to_string(),
                first_cart: reply.next().unwrap_or_default(),
                cart_id: req.cart_id.to_string(),
            }),
            other => Err(corrupt(format!("place_order answered {other:?}"))),
        }
    }
}

impl Store for RedisStore {
    fn products(&self, page: u64, per_page: u64) -> Result<ProductPage, StoreError> {
        let start = page.saturating_sub(1).saturating_mul(per_page).min(i64::MAX as u64) as i64;
        let stop = start.saturating_add(per_page as i64 - 1);
        let (total, skus): (u64, Vec<String>) = self
            .with_conn(|c| redis::pipe().cmd("LLEN").arg(SKUS).cmd("LRANGE").arg(SKUS).arg(start).arg(stop).query(c))?;
        if skus.is_empty() {
            return Ok(ProductPage { products: Vec::new(), page, per_page, total });
        }
        let mut pipe = redis::pipe();
        for sku in &skus {
            pipe.cmd("HMGET").arg(product_key(sku)).arg(&["name", "price_cents", "doorbuster"]);
        }
        pipe.cmd("HMGET").arg(STOCK).arg(&skus);
        let mut rows: Vec<redis::Value> = self.with_conn(|c| pipe.query(c))?;
        let stock: Vec<Option<String>> = rows
            .pop()
            .map(redis::from_redis_value)
            .transpose()
            .map_err(|e| corrupt(format!("stock: {e}")))?
            .unwrap_or_default();
        let mut products = Vec::with_capacity(skus.len());
        for ((sku, row), left) in skus.iter().zip(rows).zip(stock) {
            let fields: Vec<Option<String>> =
                redis::from_redis_value(row).map_err(|e| corrupt(format!("product {sku:?}: {e}")))?;
            let p =
                product_from(sku, fields, left)?.ok_or_else(|| corrupt(format!("listed {sku:?} has no product")))?;
            products.push(p);
        }
        Ok(ProductPage { products, page, per_page, total })
    }

    fn product(&self, sku: &str) -> Result<Option<Product>, StoreError> {
        let (fields, left): (Vec<Option<String>>, Option<String>) = self.with_conn(|c| {
            redis::pipe()
                .cmd("HMGET")
                .arg(product_key(sku))
                .arg(&["name", "price_cents", "doorbuster"])
                .cmd("HGET")
                .arg(STOCK)
                .arg(sku)
                .query(c)
        })?;
        product_from(sku, fields, left)
    }

    fn cart(&self, cart_id: &str) -> Result<Cart, StoreError> {
        self.read_cart(cart_id)
    }

    fn set_line(&self, cart_id: &str, sku: &str, qty: i64) -> Result<Cart, StoreError> {
        let mut call = self.set_line.prepare_invoke();
        call.key(cart_key(cart_id)).key(product_key(sku)).arg(sku).arg(qty).arg(MAX_CART_LINES);
        let reply: Vec<String> = self.with_conn(|c| call.invoke(c))?;
        let mut reply = reply.into_iter();
        match reply.next().as_deref() {
            Some("ok") => {
                let rest: Vec<String> = reply.collect();
                let pairs = rest.chunks(2).filter_map(|p| Some((p.first()?.clone(), p.get(1)?.clone()))).collect();
                cart_from_pairs(cart_id, pairs)
            }
            Some("unknown") => Err(StoreError::UnknownSku(sku.to_string())),
            Some("full") => Err(StoreError::CartFull { cart_id: cart_id.to_string(), max: MAX_CART_LINES }),
            other => Err(corrupt(format!("set_line answered {other:?}"))),
        }
    }

    fn remove_line(&self, cart_id: &str, sku: &str) -> Result<Cart, StoreError> {
        // One MULTI: the cart answered is the cart this removal left.
        let key = cart_key(cart_id);
        let (pairs,): (Vec<(String, String)>,) = self.with_conn(|c| {
            redis::pipe().atomic().cmd("HDEL").arg(&key).arg(sku).ignore().cmd("HGETALL").arg(&key).query(c)
        })?;
        cart_from_pairs(cart_id, pairs)
    }

    fn cart_for_pricing(&self, cart_id: &str) -> Result<Vec<PriceLine>, StoreError> {
        let cart = self.read_cart(cart_id)?;
        if cart.lines.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for l in &cart.lines {
            pipe.cmd("HMGET").arg(product_key(&l.sku)).arg(&["price_cents", "doorbuster"]);
        }
        let rows: Vec<(Option<String>, Option<String>)> = self.with_conn(|c| pipe.query(c))?;
        cart.lines
            .into_iter()
            .zip(rows)
            .map(|(l, (price, door))| {
                Ok(PriceLine {
                    unit_price_cents: int(&format!("{} price_cents", l.sku), price)?,
                    doorbuster: door.as_deref() == Some("1"),
                    sku: l.sku,
                    qty: l.qty,
                })
            })
            .collect()
    }

    fn replay(&self, key: &str, cart_id: &str) -> Result<Option<CheckoutOutcome>, StoreError> {
        let (first_cart, status, body): (Option<String>, Option<String>, Option<String>) =
            self.with_conn(|c| redis::cmd("HMGET").arg(idem_key(key)).arg(&["cart_id", "status", "body"]).query(c))?;
        let Some(first_cart) = first_cart else { return Ok(None) };
        if first_cart != cart_id {
            return Err(StoreError::KeyReused { key: key.to_string(), first_cart, cart_id: cart_id.to_string() });
        }
        let status = int(&format!("the answer recorded for {key:?}"), status)?;
        let status = u16::try_from(status).map_err(corrupt)?;
        let body = body.ok_or_else(|| corrupt(format!("the answer recorded for {key:?} has no body")))?;
        Ok(Some(CheckoutOutcome { status, body, replayed: true }))
    }

    fn place_order(&self, req: PlaceOrder<'_>) -> Result<CheckoutOutcome, StoreError> {
        let mut lines = req.priced.to_vec();
        let mut pricing = req.pricing;
        for _ in 0..MAX_REPRICES {
            match self.place_once(&req, &lines, pricing)? {
                Placed::Outcome(outcome) => return Ok(outcome),
                // The cart changed since it was priced: price what it holds
                // now, outside Redis, and try again.
                Placed::Changed => {
                    lines = self.cart_for_pricing(req.cart_id)?;
                    pricing = (req.reprice)(&lines);
                }
            }
        }
        Err(StoreError::Busy(
            format!("cart {:?} changed {MAX_REPRICES} times while being checked out", req.cart_id).into(),
        ))
    }

    fn order(&self, order_id: i64) -> Result<Option<Order>, StoreError> {
        let body: Option<String> = self.with_conn(|c| redis::cmd("HGET").arg(ORDERS).arg(order_id).query(c))?;
        body.map(|b| serde_json::from_str(&b).map_err(|e| corrupt(format!("order {order_id}: {e}")))).transpose()
    }

    fn audit(&self) -> Result<Audit, StoreError> {
        self.with_conn(audit::read_raw).and_then(audit::assemble)
    }
}
