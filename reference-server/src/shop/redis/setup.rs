//! Seeding the Redis database, once, before any worker starts; and saying
//! on stderr when Redis is not configured to keep an acknowledged order.

use std::time::Duration;

use anyhow::Context;
use redis::Connection;

use super::{INITIAL, META, ORDER_SEQ, ORDERS, RedisTarget, SKUS, STOCK, connect, product_key, store_err};
use crate::shop::catalog::{self, Catalog};

/// Products per command when seeding (RPUSH/HSET take many at once).
const CHUNK: usize = 1000;

/// Seed the catalog unless the database already holds one (kept as it is,
/// orders, carts and stock included; a line on stderr if the seed flags
/// differ). With `reset`, every `shop:` key is deleted first. Seeding is
/// one MULTI guarded by WATCH on `shop:meta`, so two masters starting on
/// one Redis seed it once, and a seed interrupted half-way never happened.
pub fn prepare(target: &RedisTarget, catalog: &Catalog, reset: bool, timeout: Duration) -> anyhow::Result<()> {
    catalog::check(&catalog.products)?;
    let client = target.client()?;
    let mut conn = connect(&client, timeout)
        .map_err(store_err)
        .with_context(|| format!("connecting to the Redis store at {target}"))?;
    warn_durability(&mut conn, target);
    if reset {
        delete_shop_keys(&mut conn).with_context(|| format!("--reset-db: deleting the shop's keys in {target}"))?;
    }
    let kept: Option<String> = redis::transaction(&mut conn, &[META], |c, pipe| {
        let seed: Option<String> = redis::cmd("HGET").arg(META).arg("seed").query(c)?;
        if let Some(seed) = seed {
            return Ok(Some(Some(seed)));
        }
        pipe.cmd("DEL").arg(&[SKUS, STOCK, INITIAL, ORDERS, ORDER_SEQ]).ignore();
        for chunk in catalog.products.chunks(CHUNK) {
            pipe.cmd("RPUSH").arg(SKUS).arg(chunk.iter().map(|p| p.sku.as_str()).collect::<Vec<_>>()).ignore();
            let stock: Vec<(&str, i64)> = chunk.iter().map(|p| (p.sku.as_str(), p.stock)).collect();
            pipe.cmd("HSET").arg(STOCK).arg(&stock).ignore();
            pipe.cmd("HSET").arg(INITIAL).arg(&stock).ignore();
            for p in chunk {
                let door = if p.doorbuster { "1" } else { "0" };
                pipe.cmd("DEL").arg(product_key(&p.sku)).ignore();
                pipe.cmd("HSET")
                    .arg(product_key(&p.sku))
                    .arg("name")
                    .arg(&p.name)
                    .arg("price_cents")
                    .arg(p.price_cents)
                    .arg("doorbuster")
                    .arg(door)
                    .ignore();
            }
        }
        pipe.cmd("HSET").arg(META).arg("seed").arg(&catalog.describe).ignore();
        // None (EXEC refused: another master seeded meanwhile) goes round again.
        pipe.query::<Option<()>>(c).map(|done| done.map(|()| None))
    })
    .map_err(store_err)
    .with_context(|| format!("seeding the Redis store at {target}"))?;
    if let Some(old) = kept {
        if old != catalog.describe {
            eprintln!(
                "[shop] keeping the existing catalog in {target} ({old}); flags ask for {}; pass --reset-db to reseed",
                catalog.describe
            );
        }
    }
    Ok(())
}

/// UNLINK every `shop:` key of this database, in batches (SCAN, never KEYS,
/// so a large database is not blocked for the whole walk).
fn delete_shop_keys(conn: &mut Connection) -> anyhow::Result<()> {
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) =
            redis::cmd("SCAN").arg(cursor).arg("MATCH").arg("shop:*").arg("COUNT").arg(CHUNK).query(conn)?;
        if !keys.is_empty() {
            redis::cmd("UNLINK").arg(&keys).exec(conn)?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// One line on stderr unless every acknowledged order survives a crash of
/// redis-server (appendonly yes + appendfsync always). Silent when CONFIG
/// is not allowed (managed Redis): the operator knows its settings.
fn warn_durability(conn: &mut Connection, target: &RedisTarget) {
    let get = |conn: &mut Connection, name: &str| -> Option<String> {
        let pair: Vec<String> = redis::cmd("CONFIG").arg("GET").arg(name).query(conn).ok()?;
        pair.into_iter().nth(1)
    };
    let (Some(aof), Some(fsync)) = (get(conn, "appendonly"), get(conn, "appendfsync")) else { return };
    let loses = match (aof.as_str(), fsync.as_str()) {
        ("yes", "always") => return,
        ("yes", "everysec") => "the last second of acknowledged orders may be lost if redis-server dies",
        ("yes", _) => "acknowledged orders the OS has not written yet may be lost if redis-server dies",
        _ => "acknowledged orders since the last snapshot are lost if redis-server dies",
    };
    eprintln!("[shop] {target} runs with appendonly {aof}, appendfsync {fsync}: {loses} (docs/SHOP_API.md, \"Redis\")");
}
