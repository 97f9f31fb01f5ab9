//! What the store is seeded with: the generated catalog the flags describe
//! (doorbusters `door-1..`, then `sku-0001..`), or a catalog file. Pure: no
//! database here (see `sqlite::prepare`).

use std::collections::HashSet;
use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;

use super::model;

/// One product to seed, with its initial stock.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedProduct {
    pub sku: String,
    pub name: String,
    pub price_cents: i64,
    pub stock: i64,
    #[serde(default)]
    pub doorbuster: bool,
}

/// A catalog and a one-line description of where it came from (stored in
/// the database, so a restart with other flags can say what it kept).
#[derive(Debug, Clone)]
pub struct Catalog {
    pub products: Vec<SeedProduct>,
    pub describe: String,
}

const ADJECTIVES: [&str; 8] = ["Cozy", "Turbo", "Classic", "Smart", "Mini", "Deluxe", "Eco", "Pro"];
const NOUNS: [&str; 8] = ["Blanket", "Blender", "Headphones", "Kettle", "Lamp", "Backpack", "Drone", "Sneakers"];
const DOORBUSTERS: [&str; 5] = ["65\" OLED TV", "Game Console", "Robot Vacuum", "Laptop", "Espresso Machine"];

/// The catalog the flags describe; names and prices are deterministic per index.
pub fn generated(catalog_size: u64, stock: i64, doorbusters: u64, doorbuster_stock: i64) -> Catalog {
    let mut products = Vec::with_capacity((catalog_size + doorbusters) as usize);
    for i in 1..=doorbusters {
        products.push(SeedProduct {
            sku: model::doorbuster_sku(i),
            name: format!("Doorbuster {} #{i}", DOORBUSTERS[(i as usize - 1) % DOORBUSTERS.len()]),
            price_cents: 9_900 + 10_000 * ((i as i64 - 1) % 5),
            stock: doorbuster_stock,
            doorbuster: true,
        });
    }
    for i in 1..=catalog_size {
        let n = i as usize;
        products.push(SeedProduct {
            sku: model::regular_sku(i),
            name: format!("{} {} {i:04}", ADJECTIVES[n % 8], NOUNS[(n / 8) % 8]),
            // Prices spread over 1.99 .. 199.99.
            price_cents: 199 + (i as i64 * 7_919) % 19_801,
            stock,
            doorbuster: false,
        });
    }
    Catalog {
        products,
        describe: format!(
            "catalog={catalog_size} stock={stock} doorbusters={doorbusters} doorbuster_stock={doorbuster_stock}"
        ),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    products: Vec<SeedProduct>,
}

/// A catalog file: `{"products": [{"sku", "name", "price_cents", "stock", "doorbuster"?}]}`,
/// listed in file order.
pub fn from_file(path: &Path) -> anyhow::Result<Catalog> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the catalog file {}", path.display()))?;
    let file: CatalogFile =
        serde_json::from_str(&text).with_context(|| format!("{}: not a catalog file", path.display()))?;
    let products = file.products;
    check(&products).with_context(|| format!("{}: bad catalog", path.display()))?;
    Ok(Catalog { describe: format!("file {} ({} products)", path.display(), products.len()), products })
}

/// Every SKU usable in a URL and unique; no negative price or stock; not empty.
pub fn check(products: &[SeedProduct]) -> anyhow::Result<()> {
    if products.is_empty() {
        bail!("the catalog is empty (no products to sell)");
    }
    let mut seen = HashSet::new();
    for (i, p) in products.iter().enumerate() {
        if !model::valid_id(&p.sku) {
            bail!("products[{i}].sku {:?}: must be 1 to 128 visible ASCII characters without '/'", p.sku);
        }
        if !seen.insert(p.sku.as_str()) {
            bail!("products[{i}].sku {:?}: listed twice", p.sku);
        }
        if p.price_cents < 0 {
            bail!("products[{i}].price_cents: {} is negative", p.price_cents);
        }
        if p.stock < 0 {
            bail!("products[{i}].stock: {} is negative", p.stock);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_catalog_lists_doorbusters_first() {
        let c = generated(3, 10, 2, 1);
        let skus: Vec<&str> = c.products.iter().map(|p| p.sku.as_str()).collect();
        assert_eq!(skus, ["door-1", "door-2", "sku-0001", "sku-0002", "sku-0003"]);
        assert!(c.products[0].doorbuster && !c.products[2].doorbuster);
        assert_eq!((c.products[1].stock, c.products[4].stock), (1, 10));
        check(&c.products).unwrap();
    }

    #[test]
    fn bad_catalogs_name_the_entry() {
        let p = |sku: &str, price, stock| SeedProduct {
            sku: sku.into(),
            name: "x".into(),
            price_cents: price,
            stock,
            doorbuster: false,
        };
        let msg = |ps: &[SeedProduct]| check(ps).unwrap_err().to_string();
        assert!(msg(&[]).contains("empty"));
        assert!(msg(&[p("a", 1, 1), p("a", 1, 1)]).starts_with("products[1].sku \"a\": listed twice"));
        assert!(msg(&[p("a/b", 1, 1)]).contains("products[0].sku"));
        assert!(msg(&[p("a", -1, 1)]).contains("products[0].price_cents"));
        assert!(msg(&[p("a", 1, -5)]).contains("products[0].stock"));
    }
}
