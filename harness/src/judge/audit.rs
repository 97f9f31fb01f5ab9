//! The data audit, a Jepsen-style check of the shop's data after the run:
//! read the shop's audit document (docs/SHOP_API.md, `GET /audit` on
//! the admin address) and check it against the checkouts the ledger saw.
//!
//! - lost: a checkout acknowledged (2xx) to a shopper but missing from the audit;
//! - duplicate: more than one order for one idempotency key;
//! - failed-but-applied: a checkout the harness saw fail definitively (refused,
//!   connect refused, 5xx, ...) whose order exists anyway. Failures whose
//!   outcome is unknown (`FailureClass::outcome_unknown`: timeouts, resets)
//!   are allowed either way and counted as "recovered" when the order exists;
//! - oversold: sold > initial, left < 0, initial != left + sold, or sold !=
//!   the sum of the orders' lines for that sku.
//!
//! The verdict is pass, fail or unknown (audit unreachable, run incomplete,
//! an acknowledged checkout the ledger cannot identify); unknown is never a
//! pass. `check` is pure and unit-tested with hand-made documents; `fetch`
//! does the one GET. Not the gates (gates.rs turns the verdict into one).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::judge::verdict::Status;
use crate::outcome::Outcome;

/// The shop's audit document.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct AuditDoc {
    pub orders: Vec<AuditOrder>,
    pub stock: Vec<StockRow>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AuditOrder {
    pub order_id: i64,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// A string in the reference shop; other shops may use numbers.
    #[serde(default, deserialize_with = "string_or_number")]
    pub cart_id: Option<String>,
    pub lines: Vec<OrderLine>,
    #[serde(default)]
    pub total_cents: Option<i64>,
    #[serde(default)]
    pub created_ms: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct OrderLine {
    pub sku: String,
    pub qty: i64,
    #[serde(default)]
    pub unit_price_cents: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StockRow {
    pub sku: String,
    pub initial: i64,
    pub left: i64,
    pub sold: i64,
}

fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    })
}

/// One checkout operation from the ledger: every attempt of one checkout
/// step of one shopper, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckoutView {
    /// Ledger operation id, to point back at the ledger in reports.
    pub op: u64,
    pub step: String,
    /// The Idempotency-Key sent (the same on every retry), if any.
    pub idempotency_key: Option<String>,
    /// The cart checked out, if known; used to find the order of a failed
    /// checkout that sent no idempotency key.
    pub cart_id: Option<String>,
    /// The outcome of each attempt, first to last.
    pub attempts: Vec<Outcome>,
    /// The `order_id` from the acknowledging response, when there was one.
    pub order_id: Option<i64>,
}

/// What the harness knows about whether a checkout created an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// A 2xx came back: an order must exist.
    Acknowledged,
    /// Every attempt failed (or was refused) in a way that means nothing was
    /// done: no order may exist.
    DefinitelyNotApplied,
    /// At least one attempt may have been acted on unseen (timeout, reset).
    Unknown,
}

fn seen(c: &CheckoutView) -> Seen {
    if c.attempts.iter().any(|o| matches!(o, Outcome::Ok)) {
        Seen::Acknowledged
    } else if c.attempts.iter().any(|o| matches!(o, Outcome::Failed(class) if class.outcome_unknown())) {
        Seen::Unknown
    } else {
        Seen::DefinitelyNotApplied
    }
}

/// A checkout the report points at.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckoutRef {
    pub op: u64,
    pub step: String,
    pub idempotency_key: Option<String>,
    pub order_id: Option<i64>,
    /// The audit's order ids involved (for failed-but-applied).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub found_orders: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Duplicate {
    pub idempotency_key: String,
    pub order_ids: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StockProblem {
    pub sku: String,
    /// What does not add up, e.g. "sold 101 > initial 100".
    pub problem: String,
}

/// The audit's findings. Lists are complete; the report may shorten them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditReport {
    pub verdict: Status,
    /// Why the verdict is unknown or fail, in one line.
    pub reason: String,
    pub orders_in_audit: usize,
    pub checkouts: usize,
    pub acknowledged: usize,
    pub lost: Vec<CheckoutRef>,
    pub duplicates: Vec<Duplicate>,
    pub failed_but_applied: Vec<CheckoutRef>,
    /// Unknown-outcome checkouts whose order exists (the shop did it although
    /// the shopper never heard): allowed.
    pub recovered: usize,
    /// Unknown-outcome checkouts with no order: allowed.
    pub unknown_not_applied: usize,
    /// Acknowledged checkouts with neither an idempotency key nor an order id:
    /// the audit cannot say whether they were kept, so the verdict is unknown.
    pub unverifiable: Vec<CheckoutRef>,
    pub oversold: Vec<StockProblem>,
    /// Orders no checkout of this run accounts for (earlier runs on the same
    /// database, other clients). Informational.
    pub unclaimed_orders: usize,
}

impl AuditReport {
    /// The report when the audit could not be read: verdict unknown.
    pub fn unreachable(reason: impl Into<String>, checkouts: usize) -> AuditReport {
        AuditReport {
            verdict: Status::Unknown,
            reason: reason.into(),
            orders_in_audit: 0,
            checkouts,
            acknowledged: 0,
            lost: vec![],
            duplicates: vec![],
            failed_but_applied: vec![],
            recovered: 0,
            unknown_not_applied: 0,
            unverifiable: vec![],
            oversold: vec![],
            unclaimed_orders: 0,
        }
    }
}

fn reference(c: &CheckoutView, found_orders: Vec<i64>) -> CheckoutRef {
    CheckoutRef {
        op: c.op,
        step: c.step.clone(),
        idempotency_key: c.idempotency_key.clone(),
        order_id: c.order_id,
        found_orders,
    }
}

/// Check the audit document against the run's checkouts. `run_complete` is
/// false when the run was cut short or left requests open: then a clean
/// audit is `unknown`, not `pass` (a violation found is still a `fail`).
pub fn check(doc: &AuditDoc, checkouts: &[CheckoutView], run_complete: bool) -> AuditReport {
    let mut by_key: HashMap<&str, Vec<i64>> = HashMap::new();
    let mut by_id: HashMap<i64, &AuditOrder> = HashMap::new();
    let mut by_cart: HashMap<&str, Vec<i64>> = HashMap::new();
    for o in &doc.orders {
        if let Some(k) = &o.idempotency_key {
            by_key.entry(k.as_str()).or_default().push(o.order_id);
        }
        if let Some(c) = &o.cart_id {
            by_cart.entry(c.as_str()).or_default().push(o.order_id);
        }
        by_id.insert(o.order_id, o);
    }

    let mut report = AuditReport::unreachable(String::new(), checkouts.len());
    report.orders_in_audit = doc.orders.len();

    let mut duplicates: Vec<Duplicate> = by_key
        .iter()
        .filter(|(_, ids)| ids.len() > 1)
        .map(|(k, ids)| {
            let mut order_ids = ids.clone();
            order_ids.sort_unstable();
            Duplicate { idempotency_key: (*k).to_string(), order_ids }
        })
        .collect();
    duplicates.sort_by(|a, b| a.idempotency_key.cmp(&b.idempotency_key));
    report.duplicates = duplicates;

    // Orders accounted for by a checkout of this run.
    let mut claimed: HashSet<i64> = HashSet::new();
    // Orders of a checkout found by its key (or, failing that, its order id).
    let orders_of = |c: &CheckoutView| -> Vec<i64> {
        let mut ids: Vec<i64> = c.idempotency_key.as_deref().and_then(|k| by_key.get(k)).cloned().unwrap_or_default();
        if let Some(id) = c.order_id.filter(|id| by_id.contains_key(id) && !ids.contains(id)) {
            ids.push(id);
        }
        ids.sort_unstable();
        ids
    };

    // Acknowledged checkouts first, so that the cart fallback below never
    // blames a failed checkout for an order an acknowledged one explains.
    let mut not_acknowledged = Vec::new();
    for c in checkouts {
        if seen(c) != Seen::Acknowledged {
            not_acknowledged.push(c);
            continue;
        }
        report.acknowledged += 1;
        if c.idempotency_key.is_none() && c.order_id.is_none() {
            report.unverifiable.push(reference(c, vec![]));
            continue;
        }
        let found = orders_of(c);
        if found.is_empty() {
            report.lost.push(reference(c, vec![]));
        }
        claimed.extend(found);
    }
    for c in not_acknowledged {
        let mut found = orders_of(c);
        if found.is_empty() && c.idempotency_key.is_none() {
            // No key and never acknowledged: the only link left is the cart.
            if let Some(ids) = c.cart_id.as_deref().and_then(|cart| by_cart.get(cart)) {
                found = ids.iter().copied().filter(|id| !claimed.contains(id)).collect();
            }
        }
        match seen(c) {
            Seen::Unknown if found.is_empty() => report.unknown_not_applied += 1,
            Seen::Unknown => report.recovered += 1,
            Seen::DefinitelyNotApplied if !found.is_empty() => {
                report.failed_but_applied.push(reference(c, found.clone()))
            }
            _ => {}
        }
        claimed.extend(found);
    }
    report.unclaimed_orders = doc.orders.iter().filter(|o| !claimed.contains(&o.order_id)).count();
    report.oversold = stock_problems(doc);

    let mut problems = Vec::new();
    for (n, what) in [
        (report.lost.len(), "lost"),
        (report.duplicates.len(), "duplicate idempotency keys"),
        (report.failed_but_applied.len(), "failed-but-applied"),
        (report.oversold.len(), "stock problems"),
    ] {
        if n > 0 {
            problems.push(format!("{n} {what}"));
        }
    }
    (report.verdict, report.reason) = if !problems.is_empty() {
        (Status::Fail, problems.join(", "))
    } else if !report.unverifiable.is_empty() {
        let n = report.unverifiable.len();
        (Status::Unknown, format!("{n} acknowledged checkouts carry neither an idempotency key nor an order id"))
    } else if !run_complete {
        (Status::Unknown, "the run did not complete, so the ledger is not the whole story".to_string())
    } else {
        (Status::Pass, String::new())
    };
    report
}

/// Stock that does not add up, per sku (sorted by sku).
fn stock_problems(doc: &AuditDoc) -> Vec<StockProblem> {
    let mut ordered: BTreeMap<&str, i64> = BTreeMap::new();
    for o in &doc.orders {
        for l in &o.lines {
            *ordered.entry(l.sku.as_str()).or_default() += l.qty;
        }
    }
    let mut out = Vec::new();
    let mut listed: HashSet<&str> = HashSet::new();
    for row in &doc.stock {
        let mut say = |problem: String| out.push(StockProblem { sku: row.sku.clone(), problem });
        if !listed.insert(row.sku.as_str()) {
            say("listed more than once in the stock table".into());
            continue;
        }
        if row.sold > row.initial {
            say(format!("oversold: sold {} > initial {}", row.sold, row.initial));
        }
        if row.left < 0 {
            say(format!("negative stock: left {}", row.left));
        }
        if row.initial != row.left + row.sold {
            say(format!("initial {} != left {} + sold {}", row.initial, row.left, row.sold));
        }
        let in_orders = ordered.get(row.sku.as_str()).copied().unwrap_or(0);
        if row.sold != in_orders {
            say(format!("sold {} != {} units in orders", row.sold, in_orders));
        }
    }
    for (sku, qty) in ordered {
        if !listed.contains(sku) {
            out.push(StockProblem {
                sku: sku.to_string(),
                problem: format!("{qty} units ordered, not in the stock table"),
            });
        }
    }
    out
}

/// The checkout operations of a ledger: every attempt of a step named in
/// `checkout_steps`, grouped by operation, in attempt order. Fed the records
/// one at a time; keeps only checkout attempts. The ledger does not record
/// the cart id, so keyless failed checkouts cannot be linked by cart.
pub struct Checkouts<'s> {
    checkout_steps: &'s [String],
    /// op -> (step, attempts as (number, outcome, key, order id)).
    ops: BTreeMap<u64, (String, Vec<CheckoutAttempt>)>,
}

type CheckoutAttempt = (u32, Outcome, Option<String>, Option<i64>);

impl<'s> Checkouts<'s> {
    pub fn new(checkout_steps: &'s [String]) -> Self {
        Checkouts { checkout_steps, ops: BTreeMap::new() }
    }

    pub fn add(&mut self, r: &crate::record::ledger::AttemptRecord) {
        if !self.checkout_steps.contains(&r.step) {
            return;
        }
        let (_, attempts) = self.ops.entry(r.op).or_insert_with(|| (r.step.clone(), Vec::new()));
        attempts.push((r.attempt, r.outcome(), r.idem.clone(), r.order_id));
    }

    pub fn finish(self) -> Vec<CheckoutView> {
        self.ops
            .into_iter()
            .map(|(op, (step, mut attempts))| {
                attempts.sort_by_key(|a| a.0);
                CheckoutView {
                    op,
                    step,
                    idempotency_key: attempts.iter().find_map(|a| a.2.clone()),
                    cart_id: None,
                    order_id: attempts.iter().find_map(|a| a.3),
                    attempts: attempts.iter().map(|a| a.1).collect(),
                }
            })
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit url {url}: {why}")]
    Url { url: String, why: String },
    #[error("GET {url}: {why}")]
    Http { url: String, why: String },
    #[error("GET {url}: status {status}, expected 200")]
    Status { url: String, status: u16 },
    #[error("GET {url}: the body is not an audit document: {why}")]
    Body { url: String, why: String },
}

/// Parse the audit body; the error names the JSON path that was wrong.
pub fn parse(body: &[u8]) -> Result<AuditDoc, String> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| format!("at {}: {}", e.path(), e.inner()))
}

/// GET the audit document.
pub async fn fetch(url: &str, timeout: Duration) -> Result<AuditDoc, AuditError> {
    let resp = crate::chaos::target::http_get(url, timeout, true).await.map_err(|e| match e {
        crate::chaos::target::GetError::Url(why) => AuditError::Url { url: url.to_string(), why },
        crate::chaos::target::GetError::Http(why) => AuditError::Http { url: url.to_string(), why },
    })?;
    if resp.status != 200 {
        return Err(AuditError::Status { url: url.to_string(), status: resp.status });
    }
    parse(resp.body.as_deref().unwrap_or_default()).map_err(|why| AuditError::Body { url: url.to_string(), why })
}

/// Fetch (a few tries, the shop may still be settling) and check. An
/// unreachable or unreadable audit gives verdict unknown with the error as
/// the reason.
pub async fn run(url: &str, checkouts: &[CheckoutView], run_complete: bool, timeout: Duration) -> AuditReport {
    let mut last = String::new();
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        match fetch(url, timeout).await {
            Ok(doc) => return check(&doc, checkouts, run_complete),
            // A document that does not parse will not parse on a retry either.
            Err(e @ (AuditError::Body { .. } | AuditError::Url { .. })) => {
                return AuditReport::unreachable(e.to_string(), checkouts.len());
            }
            Err(e) => last = e.to_string(),
        }
    }
    AuditReport::unreachable(format!("audit unreachable: {last}"), checkouts.len())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// The audit's findings as one row per check, for the report and the
/// compare verdict ([`checks`]).
pub struct AuditChecks {
    pub status: Status,
    pub rows: Vec<AuditCheck>,
}

/// One check of the post-run audit (orders vs acknowledgements, stock conservation...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditCheck {
    pub check: String,
    pub status: Status,
    /// The numbers behind the result, e.g. {"acknowledged": 812, "found": 812}.
    #[serde(default)]
    pub counts: BTreeMap<String, u64>,
    #[serde(default)]
    pub detail: String,
}

fn pass_if(ok: bool) -> Status {
    if ok { Status::Pass } else { Status::Fail }
}

/// Up to a few examples, so a long list does not swamp the table.
fn examples<T>(items: &[T], show: impl Fn(&T) -> String) -> String {
    const MAX: usize = 5;
    let mut parts: Vec<String> = items.iter().take(MAX).map(show).collect();
    if items.len() > MAX {
        parts.push(format!("and {} more", items.len() - MAX));
    }
    parts.join("; ")
}

/// The audit's findings as one row per check.
pub fn checks(a: &AuditReport) -> AuditChecks {
    let count = |pairs: &[(&str, usize)]| -> BTreeMap<String, u64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v as u64)).collect()
    };
    let key = |c: &CheckoutRef| {
        format!(
            "op {} ({}){}",
            c.op,
            c.step,
            c.idempotency_key.as_deref().map(|k| format!(" key {k}")).unwrap_or_default()
        )
    };
    let mut rows = Vec::new();
    if a.verdict == Status::Unknown && a.orders_in_audit == 0 && a.acknowledged == 0 && !a.reason.is_empty() {
        rows.push(AuditCheck {
            check: "the shop's audit could be read".into(),
            status: Status::Unknown,
            counts: count(&[("checkouts", a.checkouts)]),
            detail: a.reason.clone(),
        });
        return AuditChecks { status: a.verdict, rows };
    }
    rows.push(AuditCheck {
        check: "every acknowledged checkout has its order".into(),
        status: pass_if(a.lost.is_empty()),
        counts: count(&[("acknowledged", a.acknowledged), ("lost", a.lost.len())]),
        detail: examples(&a.lost, key),
    });
    rows.push(AuditCheck {
        check: "no idempotency key ordered twice".into(),
        status: pass_if(a.duplicates.is_empty()),
        counts: count(&[("duplicates", a.duplicates.len())]),
        detail: examples(&a.duplicates, |d| format!("key {} -> orders {:?}", d.idempotency_key, d.order_ids)),
    });
    rows.push(AuditCheck {
        check: "no order for a checkout the shopper was told failed".into(),
        status: pass_if(a.failed_but_applied.is_empty()),
        counts: count(&[("failed but applied", a.failed_but_applied.len())]),
        detail: examples(&a.failed_but_applied, key),
    });
    rows.push(AuditCheck {
        check: "no stock oversold (initial = left + sold)".into(),
        status: pass_if(a.oversold.is_empty()),
        counts: count(&[("oversold skus", a.oversold.len())]),
        detail: examples(&a.oversold, |s| format!("{}: {}", s.sku, s.problem)),
    });
    rows.push(AuditCheck {
        check: "acknowledged checkouts can be verified".into(),
        status: if a.unverifiable.is_empty() { Status::Pass } else { Status::Unknown },
        counts: count(&[("unverifiable", a.unverifiable.len())]),
        detail: examples(&a.unverifiable, key),
    });
    rows.push(AuditCheck {
        check: "checkouts with an unknown outcome (allowed either way)".into(),
        status: Status::Pass,
        counts: count(&[
            ("applied", a.recovered),
            ("not applied", a.unknown_not_applied),
            ("orders in audit", a.orders_in_audit),
            ("unclaimed orders", a.unclaimed_orders),
        ]),
        detail: "the shopper saw no answer; the shop may or may not have acted, and either is consistent".into(),
    });
    AuditChecks { status: a.verdict, rows }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::FailureClass::*;

    fn order(id: i64, key: Option<&str>, cart: &str, lines: &[(&str, i64)]) -> AuditOrder {
        AuditOrder {
            order_id: id,
            idempotency_key: key.map(String::from),
            cart_id: Some(cart.into()),
            lines: lines
                .iter()
                .map(|(s, q)| OrderLine { sku: s.to_string(), qty: *q, unit_price_cents: Some(100) })
                .collect(),
            total_cents: None,
            created_ms: None,
        }
    }

    fn stock(sku: &str, initial: i64, left: i64, sold: i64) -> StockRow {
        StockRow { sku: sku.into(), initial, left, sold }
    }

    fn co(op: u64, key: Option<&str>, cart: &str, attempts: &[Outcome], order_id: Option<i64>) -> CheckoutView {
        CheckoutView {
            op,
            step: "checkout".into(),
            idempotency_key: key.map(String::from),
            cart_id: Some(cart.into()),
            attempts: attempts.to_vec(),
            order_id,
        }
    }

    /// A consistent shop: two orders for door-1 (stock 10).
    fn clean_doc() -> AuditDoc {
        AuditDoc {
            orders: vec![order(1, Some("k1"), "c1", &[("door-1", 2)]), order(2, Some("k2"), "c2", &[("door-1", 1)])],
            stock: vec![stock("door-1", 10, 7, 3), stock("sku-0001", 5, 5, 0)],
        }
    }

    #[test]
    fn consistent_shop_passes() {
        let cs = [
            co(1, Some("k1"), "c1", &[Outcome::Ok], Some(1)),
            // timed out, retried with the same key, acknowledged
            co(2, Some("k2"), "c2", &[Outcome::Failed(ResponseTimeout), Outcome::Ok], Some(2)),
            co(3, Some("k3"), "c3", &[Outcome::Refused], None),
        ];
        let r = check(&clean_doc(), &cs, true);
        assert_eq!(r.verdict, Status::Pass, "{r:?}");
        assert_eq!((r.acknowledged, r.checkouts, r.orders_in_audit, r.unclaimed_orders), (2, 3, 2, 0));
        // The same data with an incomplete run is unknown, never pass.
        assert_eq!(check(&clean_doc(), &cs, false).verdict, Status::Unknown);
    }

    #[test]
    fn lost_acknowledged_checkout_fails() {
        let cs = [co(9, Some("k9"), "c9", &[Outcome::Ok], Some(99))];
        let r = check(&clean_doc(), &cs, true);
        assert_eq!(r.verdict, Status::Fail);
        assert_eq!(r.lost.len(), 1);
        assert_eq!(r.lost[0].op, 9);
        assert!(r.reason.contains("1 lost"), "{}", r.reason);
        // Without a key the order id is the link: order 1 exists, not lost.
        let keyless = [co(1, None, "c1", &[Outcome::Ok], Some(1))];
        assert!(check(&clean_doc(), &keyless, true).lost.is_empty());
    }

    #[test]
    fn duplicate_key_fails() {
        let mut doc = clean_doc();
        doc.orders.push(order(3, Some("k1"), "c1", &[]));
        let r = check(&doc, &[], true);
        assert_eq!(r.verdict, Status::Fail);
        assert_eq!(r.duplicates, vec![Duplicate { idempotency_key: "k1".into(), order_ids: vec![1, 3] }]);
    }

    #[test]
    fn definitive_failure_that_was_applied_fails_but_unknown_is_allowed() {
        // Order 1 (key k1) exists although the harness saw a 503 and then a refusal.
        let bad = [co(1, Some("k1"), "c1", &[Outcome::Failed(ServerError), Outcome::Failed(ConnectRefused)], None)];
        let r = check(&clean_doc(), &bad, true);
        assert_eq!(r.verdict, Status::Fail);
        assert_eq!(r.failed_but_applied[0].found_orders, vec![1]);

        // A timeout (outcome unknown) followed by a refused connect: allowed, counted as recovered.
        let unknown = [
            co(1, Some("k1"), "c1", &[Outcome::Failed(ResponseTimeout), Outcome::Failed(ConnectRefused)], None),
            co(2, Some("k2"), "c2", &[Outcome::Ok], Some(2)),
            co(5, Some("k5"), "c5", &[Outcome::Failed(ResetBeforeResponse)], None),
        ];
        let r = check(&clean_doc(), &unknown, true);
        assert_eq!(r.verdict, Status::Pass, "{r:?}");
        assert_eq!((r.recovered, r.unknown_not_applied), (1, 1));
    }

    #[test]
    fn keyless_failure_is_linked_by_cart_unless_an_ack_explains_the_order() {
        let doc = clean_doc();
        // Cart c1 has order 1; the failed keyless checkout of c1 is blamed for it...
        let r = check(&doc, &[co(7, None, "c1", &[Outcome::Failed(ServerError)], None)], true);
        assert_eq!(r.failed_but_applied.len(), 1);
        // ...unless an acknowledged checkout of the same cart owns order 1.
        let cs = [co(7, None, "c1", &[Outcome::Failed(ServerError)], None), co(8, None, "c1", &[Outcome::Ok], Some(1))];
        let r = check(&doc, &cs, true);
        assert!(r.failed_but_applied.is_empty(), "{r:?}");
    }

    #[test]
    fn stock_that_does_not_add_up_fails() {
        let mut doc = clean_doc();
        doc.stock = vec![
            stock("door-1", 2, -1, 3),  // oversold and negative
            stock("sku-0001", 5, 5, 1), // sold but no order lines, and 5 != 5 + 1
        ];
        doc.orders.push(order(4, Some("k4"), "c4", &[("sku-9999", 1)]));
        let r = check(&doc, &[], true);
        assert_eq!(r.verdict, Status::Fail);
        let problems: Vec<String> = r.oversold.iter().map(|p| format!("{}: {}", p.sku, p.problem)).collect();
        assert!(problems.contains(&"door-1: oversold: sold 3 > initial 2".to_string()), "{problems:?}");
        assert!(problems.contains(&"door-1: negative stock: left -1".to_string()), "{problems:?}");
        assert!(problems.contains(&"sku-0001: initial 5 != left 5 + sold 1".to_string()), "{problems:?}");
        assert!(problems.contains(&"sku-0001: sold 1 != 0 units in orders".to_string()), "{problems:?}");
        assert!(problems.iter().any(|p| p.starts_with("sku-9999: 1 units ordered")), "{problems:?}");
        // door-1: 3 units in orders (2 + 1) = sold 3, so no line-sum problem for it.
        assert!(!problems.iter().any(|p| p.starts_with("door-1: sold")), "{problems:?}");
    }

    #[test]
    fn unidentifiable_ack_is_unknown_not_pass() {
        let r = check(&clean_doc(), &[co(3, None, "c3", &[Outcome::Ok], None)], true);
        assert_eq!(r.verdict, Status::Unknown);
        assert_eq!(r.unverifiable.len(), 1);
    }

    #[test]
    fn parses_contract_document_and_names_bad_fields() {
        let body = br#"{"orders":[{"order_id":7,"idempotency_key":null,"cart_id":"c-7","lines":[{"sku":"door-1","qty":1,"unit_price_cents":999}],"total_cents":999,"created_ms":12.5}],
                       "stock":[{"sku":"door-1","initial":100,"left":99,"sold":1}]}"#;
        let doc = parse(body).unwrap();
        assert_eq!(doc.orders[0].cart_id.as_deref(), Some("c-7"));
        assert_eq!(check(&doc, &[], true).verdict, Status::Pass);
        let err = parse(br#"{"orders":[{"order_id":"x","lines":[]}],"stock":[]}"#).unwrap_err();
        assert!(err.contains("orders[0].order_id"), "{err}");
        assert!(parse(b"<html>").is_err());
    }

    #[test]
    fn ledger_records_group_into_checkouts() {
        use crate::record::ledger::{AttemptRecord, split};
        let rec = |op: u64, step: &str, attempt: u32, o: Outcome, order_id: Option<i64>| {
            let (outcome, class) = split(o);
            AttemptRecord {
                op,
                shopper: 1,
                step: step.into(),
                attempt,
                intended_ms: 0.0,
                start_ms: 0.0,
                end_ms: 1.0,
                outcome,
                class,
                status: None,
                reused: false,
                handshake: Default::default(),
                worker: None,
                addr: None,
                idem: Some(format!("key-{op}")),
                order_id,
            }
        };
        let recs = [
            rec(5, "checkout", 2, Outcome::Ok, Some(77)),
            rec(4, "add", 1, Outcome::Ok, None),
            rec(5, "checkout", 1, Outcome::Failed(ResponseTimeout), None),
        ];
        let steps = ["checkout".to_string()];
        let mut c = Checkouts::new(&steps);
        recs.iter().for_each(|r| c.add(r));
        let cs = c.finish();
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].attempts, vec![Outcome::Failed(ResponseTimeout), Outcome::Ok]);
        assert_eq!((cs[0].order_id, cs[0].idempotency_key.as_deref()), (Some(77), Some("key-5")));
    }

    #[test]
    fn unreachable_is_unknown() {
        let r = AuditReport::unreachable("connect refused", 4);
        assert_eq!(r.verdict, Status::Unknown);
        assert_eq!(serde_json::to_value(&r).unwrap()["verdict"], "unknown");
    }

    #[test]
    fn audit_rows_follow_the_findings() {
        let mut a = AuditReport::unreachable("GET http://127.0.0.1:1/audit: connection refused", 12);
        let d = checks(&a);
        assert_eq!((d.status, d.rows.len()), (Status::Unknown, 1));
        assert!(d.rows[0].detail.contains("connection refused"));

        a.verdict = Status::Fail;
        a.acknowledged = 10;
        a.orders_in_audit = 10;
        a.oversold.push(StockProblem { sku: "door-1".into(), problem: "sold 101 > initial 100".into() });
        let d = checks(&a);
        assert_eq!(d.status, Status::Fail);
        let by_check: BTreeMap<&str, Status> = d.rows.iter().map(|r| (r.check.as_str(), r.status)).collect();
        assert_eq!(by_check["no stock oversold (initial = left + sold)"], Status::Fail);
        assert_eq!(by_check["every acknowledged checkout has its order"], Status::Pass);
        assert!(d.rows.iter().any(|r| r.detail.contains("door-1: sold 101 > initial 100")));
    }
}
