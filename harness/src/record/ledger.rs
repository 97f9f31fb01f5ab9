//! The ledger: one record per attempt, and the counts that must add up.
//!
//! Every attempt ends in exactly one [`Outcome`]. An *operation* is one step
//! of one shopper's journey with all its retries; it ends ok, refused (an
//! expected business refusal) or dropped (every attempt failed, or a failure
//! the retry policy does not cover). The invariant checked at the end of every
//! run is `operations = ok + refused + dropped` with nothing still open; a run
//! that ends with an attempt or operation still open is invalid, never passed.
//! First-attempt failures are counted on their own, so a retry that recovers
//! ("recovered") never hides that the first attempt failed.
//!
//! Records are streamed to `ledger.csv` as they complete (so memory does not
//! grow with the run) and are read back one at a time with
//! [`for_each_record`] by the audit, the chaos attribution, the affinity
//! check, the per-host breakdown and the report. Not for latency (recorder.rs) nor for deciding
//! pass/fail (gates.rs).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use std::net::SocketAddr;

use crate::outcome::{FailureClass, Handshake, Outcome};

/// File name of the ledger inside a run folder.
pub const LEDGER_FILE: &str = "ledger.csv";

/// The outcome's kind as written in the ledger's `outcome` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    Ok,
    Refused,
    Failed,
}

/// One attempt. Times are milliseconds since run start (`EventLog` clock).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// Operation id: unique per (shopper, step execution); retries share it.
    pub op: u64,
    pub shopper: u64,
    pub step: String,
    /// 1-based.
    pub attempt: u32,
    /// When the attempt was meant to be sent (arrival, previous step end +
    /// think, or previous attempt end + backoff). Latency is measured from here.
    pub intended_ms: f64,
    /// When the harness actually started it (after waking; before waiting for
    /// a pool connection). `start_ms - intended_ms` is the harness's slip.
    pub start_ms: f64,
    pub end_ms: f64,
    pub outcome: OutcomeKind,
    /// The failure class when `outcome` is `failed`.
    pub class: Option<FailureClass>,
    pub status: Option<u16>,
    /// Sent on a keep-alive connection that had served earlier requests.
    pub reused: bool,
    /// The TLS handshake the attempt paid: `full`, `resumed`, or `none`
    /// (a reused connection, or plain http). Ledgers written before the
    /// column existed read as `none`.
    #[serde(default)]
    pub handshake: Handshake,
    /// The `X-Worker-Id` response header.
    pub worker: Option<String>,
    /// The target address the attempt went to (one of the name's DNS
    /// answers); empty when it never got that far.
    #[serde(default)]
    pub addr: Option<SocketAddr>,
    /// The Idempotency-Key sent, if any.
    pub idem: Option<String>,
    /// For checkout steps (`AuditSpec::checkout_steps`): the `order_id` of the response.
    pub order_id: Option<i64>,
}

impl AttemptRecord {
    pub fn outcome(&self) -> Outcome {
        join(self.outcome, self.class)
    }

    /// A record with only its identity, times and outcome (shopper = op; no
    /// status, worker, key or order id), for unit tests.
    #[cfg(test)]
    pub(crate) fn for_test(op: u64, step: &str, attempt: u32, o: Outcome, times_ms: (f64, f64, f64)) -> Self {
        let (outcome, class) = split(o);
        let (intended_ms, start_ms, end_ms) = times_ms;
        AttemptRecord {
            op,
            shopper: op,
            step: step.into(),
            attempt,
            intended_ms,
            start_ms,
            end_ms,
            outcome,
            class,
            status: None,
            reused: false,
            handshake: Handshake::None,
            worker: None,
            addr: None,
            idem: None,
            order_id: None,
        }
    }

    pub fn set_outcome(&mut self, o: Outcome) {
        (self.outcome, self.class) = split(o);
    }

    /// Milliseconds from intended send to end: the latency the recorder uses.
    pub fn latency_ms(&self) -> f64 {
        (self.end_ms - self.intended_ms).max(0.0)
    }
}

/// The outcome of a record's `outcome` and `class` columns (the inverse of
/// [`split`]); a failure without a class reads as a local error.
fn join(kind: OutcomeKind, class: Option<FailureClass>) -> Outcome {
    match (kind, class) {
        (OutcomeKind::Ok, _) => Outcome::Ok,
        (OutcomeKind::Refused, _) => Outcome::Refused,
        (OutcomeKind::Failed, Some(c)) => Outcome::Failed(c),
        (OutcomeKind::Failed, None) => Outcome::Failed(FailureClass::LocalError),
    }
}

pub fn split(o: Outcome) -> (OutcomeKind, Option<FailureClass>) {
    match o {
        Outcome::Ok => (OutcomeKind::Ok, None),
        Outcome::Refused => (OutcomeKind::Refused, None),
        Outcome::Failed(c) => (OutcomeKind::Failed, Some(c)),
    }
}

/// Which operations ended dropped (their last attempt failed), learned from
/// the records one at a time. Only operations with a failed attempt are
/// kept, so memory follows the failures, not the run's length. Records of one
/// operation come in attempt order (its attempts are sequential), but any
/// order is handled: the highest attempt number decides. An operation still
/// open when the run ended counts by the last attempt it finished.
#[derive(Debug, Default)]
pub struct FailedOps {
    /// op -> (highest attempt seen, whether it failed).
    last: HashMap<u64, (u32, bool)>,
}

impl FailedOps {
    pub fn add(&mut self, r: &AttemptRecord) {
        let failed = r.outcome == OutcomeKind::Failed;
        match self.last.get_mut(&r.op) {
            Some(e) if r.attempt >= e.0 => *e = (r.attempt, failed),
            Some(_) => {}
            // An operation whose attempts so far all ended ok or refused
            // is not dropped unless a later attempt fails.
            None if failed => {
                self.last.insert(r.op, (r.attempt, true));
            }
            None => {}
        }
    }

    /// Whether `op` ended dropped.
    pub fn dropped(&self, op: u64) -> bool {
        self.last.get(&op).is_some_and(|&(_, failed)| failed)
    }
}

/// The counts, as `summary.json` carries them (`totals`, docs/SUMMARY.md):
/// the one totals type, from the ledger to the judge, the console and the
/// report. Attempt counts and operation counts are kept apart. Every
/// failure class appears in the `*_by_class` maps on disk, with 0 if none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Operations invoked (begun).
    pub operations: u64,
    pub ok: u64,
    pub refused: u64,
    pub dropped: u64,
    /// Dropped operations by the class of their last attempt.
    #[serde(with = "crate::outcome::by_class")]
    pub dropped_by_class: BTreeMap<FailureClass, u64>,
    /// Dropped operations by step name (steps with none are absent).
    #[serde(default)]
    pub dropped_by_step: BTreeMap<String, u64>,
    /// Operations whose first attempt failed (whatever happened next).
    pub first_attempt_failures: u64,
    #[serde(with = "crate::outcome::by_class")]
    pub first_attempt_failures_by_class: BTreeMap<FailureClass, u64>,
    /// First attempt failed, a later attempt ended ok or refused.
    pub recovered: u64,
    /// Attempts beyond the first that followed a failure (the retry policy).
    pub retries: u64,
    pub attempts: u64,
    pub attempts_ok: u64,
    pub attempts_refused: u64,
    pub attempts_failed: u64,
    #[serde(with = "crate::outcome::by_class")]
    pub attempts_failed_by_class: BTreeMap<FailureClass, u64>,
    /// Failed attempts that were sent on a reused keep-alive connection.
    pub attempts_failed_on_reused_connection: u64,
    /// Begun and not ended: non-zero at the end of a run makes it invalid.
    pub open_attempts: u64,
    pub open_operations: u64,
    /// Requests of a stream step sent because the server ended the previous
    /// one with `event: reconnect` (not failures, not retries): attempts
    /// beyond the first that followed an ok one. So `attempts = operations
    /// + retries + reconnects` once nothing is open.
    #[serde(default)]
    pub reconnects: u64,
}

impl Totals {
    /// Adds another run's counts (shards of one run add up to the run).
    pub fn add(&mut self, o: &Totals) {
        fn add_map<K: Ord + Clone>(a: &mut BTreeMap<K, u64>, b: &BTreeMap<K, u64>) {
            for (k, v) in b {
                *a.entry(k.clone()).or_default() += v;
            }
        }
        self.operations += o.operations;
        self.ok += o.ok;
        self.refused += o.refused;
        self.dropped += o.dropped;
        add_map(&mut self.dropped_by_class, &o.dropped_by_class);
        add_map(&mut self.dropped_by_step, &o.dropped_by_step);
        self.first_attempt_failures += o.first_attempt_failures;
        add_map(&mut self.first_attempt_failures_by_class, &o.first_attempt_failures_by_class);
        self.recovered += o.recovered;
        self.retries += o.retries;
        self.attempts += o.attempts;
        self.attempts_ok += o.attempts_ok;
        self.attempts_refused += o.attempts_refused;
        self.attempts_failed += o.attempts_failed;
        add_map(&mut self.attempts_failed_by_class, &o.attempts_failed_by_class);
        self.attempts_failed_on_reused_connection += o.attempts_failed_on_reused_connection;
        self.open_attempts += o.open_attempts;
        self.open_operations += o.open_operations;
        self.reconnects += o.reconnects;
    }

    /// The end-of-run check. `Err` says which count does not add up.
    pub fn check(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.open_attempts != 0 {
            problems.push(format!("{} attempt(s) still open at the end of the run", self.open_attempts));
        }
        if self.open_operations != 0 {
            problems.push(format!("{} operation(s) still open at the end of the run", self.open_operations));
        }
        if self.operations != self.ok + self.refused + self.dropped + self.open_operations {
            problems.push(format!(
                "operations {} != ok {} + refused {} + dropped {} + open {}",
                self.operations, self.ok, self.refused, self.dropped, self.open_operations
            ));
        }
        let by_class: u64 = self.attempts_failed_by_class.values().sum();
        if self.attempts != self.attempts_ok + self.attempts_refused + self.attempts_failed + self.open_attempts
            || by_class != self.attempts_failed
        {
            problems.push(format!(
                "attempts {} != ok {} + refused {} + failed {} (by class {}) + open {}",
                self.attempts,
                self.attempts_ok,
                self.attempts_refused,
                self.attempts_failed,
                by_class,
                self.open_attempts
            ));
        }
        if self.recovered > self.first_attempt_failures {
            problems
                .push(format!("recovered {} > first-attempt failures {}", self.recovered, self.first_attempt_failures));
        }
        if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
    }
}

/// One attempt's fields, borrowed: what [`Ledger::end_attempt_of`] writes
/// as one line of `ledger.csv`. The engine builds it from the step and
/// shopper it already holds, so ending an attempt copies no strings.
#[derive(Debug, Clone, Copy)]
pub struct AttemptRef<'a> {
    pub op: u64,
    pub shopper: u64,
    pub step: &'a str,
    pub attempt: u32,
    pub intended_ms: f64,
    pub start_ms: f64,
    pub end_ms: f64,
    pub outcome: OutcomeKind,
    pub class: Option<FailureClass>,
    pub status: Option<u16>,
    pub reused: bool,
    pub handshake: Handshake,
    pub worker: Option<&'a str>,
    pub addr: Option<SocketAddr>,
    pub idem: Option<&'a str>,
    pub order_id: Option<i64>,
}

impl AttemptRef<'_> {
    pub fn outcome(&self) -> Outcome {
        join(self.outcome, self.class)
    }
}

impl AttemptRecord {
    pub fn view(&self) -> AttemptRef<'_> {
        AttemptRef {
            op: self.op,
            shopper: self.shopper,
            step: &self.step,
            attempt: self.attempt,
            intended_ms: self.intended_ms,
            start_ms: self.start_ms,
            end_ms: self.end_ms,
            outcome: self.outcome,
            class: self.class,
            status: self.status,
            reused: self.reused,
            handshake: self.handshake,
            worker: self.worker.as_deref(),
            addr: self.addr,
            idem: self.idem.as_deref(),
            order_id: self.order_id,
        }
    }
}

/// The header line `csv::Writer::serialize` writes for [`AttemptRecord`]
/// (its field names, in order).
const HEADER: &[u8] =
    b"op,shopper,step,attempt,intended_ms,start_ms,end_ms,outcome,class,status,reused,handshake,worker,addr,idem,order_id\n";

impl OutcomeKind {
    /// The name serde gives it (`rename_all = "snake_case"`).
    fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Ok => "ok",
            OutcomeKind::Refused => "refused",
            OutcomeKind::Failed => "failed",
        }
    }
}

/// Appends one record as the line `csv::Writer::serialize` (default
/// configuration: `,`, `"` doubled, `\n` terminator, quoting only when
/// needed) writes for it: integers in decimal, floats as ryu prints them,
/// `None` as an empty field, enums by their serde names. Written by hand
/// because serde + csv cost about 4,000 instructions per attempt; the test
/// `hand_written_lines_match_the_csv_crate` holds the two byte for byte.
fn write_line(out: &mut Vec<u8>, r: &AttemptRef<'_>) {
    fn int(out: &mut Vec<u8>, v: impl itoa::Integer) {
        out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }
    fn text(out: &mut Vec<u8>, s: &str) {
        // The bytes for which the csv crate quotes a field: delimiter,
        // quote, and both line-break bytes (the reader ends records at '\r').
        if !s.bytes().any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n')) {
            out.extend_from_slice(s.as_bytes());
            return;
        }
        out.push(b'"');
        for b in s.bytes() {
            if b == b'"' {
                out.push(b'"');
            }
            out.push(b);
        }
        out.push(b'"');
    }
    int(out, r.op);
    out.push(b',');
    int(out, r.shopper);
    out.push(b',');
    text(out, r.step);
    out.push(b',');
    int(out, r.attempt);
    out.push(b',');
    write_ms(out, r.intended_ms);
    out.push(b',');
    write_ms(out, r.start_ms);
    out.push(b',');
    write_ms(out, r.end_ms);
    out.push(b',');
    out.extend_from_slice(r.outcome.as_str().as_bytes());
    out.push(b',');
    if let Some(c) = r.class {
        out.extend_from_slice(c.as_str().as_bytes());
    }
    out.push(b',');
    if let Some(s) = r.status {
        int(out, s);
    }
    out.push(b',');
    out.extend_from_slice(if r.reused { b"true" } else { b"false" });
    out.push(b',');
    out.extend_from_slice(r.handshake.as_str().as_bytes());
    out.push(b',');
    if let Some(w) = r.worker {
        text(out, w);
    }
    out.push(b',');
    if let Some(a) = r.addr {
        // Digits, dots, colons and brackets: never quoted.
        let _ = write!(out, "{a}");
    }
    out.push(b',');
    if let Some(k) = r.idem {
        text(out, k);
    }
    out.push(b',');
    if let Some(id) = r.order_id {
        int(out, id);
    }
    out.push(b'\n');
}

/// Appends `v` as ryu prints it (and so the csv crate). The run clock's
/// times are whole microseconds in milliseconds (`EventLog::ms_at`:
/// µs / 1000.0); for those, ryu's shortest round-trip form is the decimal
/// µs / 1000 with its trailing zeros dropped (one decimal at least), which
/// is written directly: below 10^9 ms an f64's spacing is under 2^-23, far
/// below 0.001, so no other decimal of at most three places, and no shorter
/// one, rounds to the same f64. Any other value goes through ryu.
fn write_ms(out: &mut Vec<u8>, v: f64) {
    if v.is_sign_positive() && v < 1e9 {
        // The nearest whole microsecond (a wrong guess fails the check below).
        let us = (v * 1000.0 + 0.5) as u64;
        if us as f64 / 1000.0 == v {
            // Written backwards into one buffer: three decimals, the point,
            // the whole milliseconds; then the trailing zeros dropped.
            let mut buf = [0u8; 24];
            let mut i = buf.len();
            let mut n = us;
            for _ in 0..3 {
                i -= 1;
                buf[i] = b'0' + (n % 10) as u8;
                n /= 10;
            }
            i -= 1;
            buf[i] = b'.';
            loop {
                i -= 1;
                buf[i] = b'0' + (n % 10) as u8;
                n /= 10;
                if n == 0 {
                    break;
                }
            }
            let mut end = buf.len();
            while end > buf.len() - 2 && buf[end - 1] == b'0' {
                end -= 1;
            }
            out.extend_from_slice(&buf[i..end]);
            return;
        }
    }
    out.extend_from_slice(ryu::Buffer::new().format(v).as_bytes());
}

/// The ledger of one run: counts plus the streamed records.
pub struct Ledger {
    totals: Totals,
    writer: Option<BufWriter<File>>,
    /// The CSV header goes before the first record (as the csv crate
    /// writes it: a run without attempts leaves an empty file).
    header_written: bool,
    /// The line being written, reused.
    line: Vec<u8>,
    write_error: Option<String>,
    next_op: u64,
}

impl Ledger {
    /// A ledger that writes its records to `path` (CSV with a header).
    pub fn create(path: &Path) -> io::Result<Self> {
        let file = File::create(path)?;
        Ok(Ledger {
            writer: Some(BufWriter::with_capacity(1 << 16, file)),
            line: Vec::with_capacity(256),
            ..Ledger::in_memory()
        })
    }

    /// A ledger that only counts (unit tests).
    pub fn in_memory() -> Self {
        Ledger {
            totals: Totals::default(),
            writer: None,
            header_written: false,
            line: Vec::new(),
            write_error: None,
            next_op: 0,
        }
    }

    /// Starts an operation; returns its id.
    pub fn begin_operation(&mut self) -> u64 {
        self.totals.operations += 1;
        self.totals.open_operations += 1;
        self.next_op += 1;
        self.next_op - 1
    }

    pub fn begin_attempt(&mut self) {
        self.totals.attempts += 1;
        self.totals.open_attempts += 1;
    }

    /// Ends an attempt begun with `begin_attempt`.
    pub fn end_attempt(&mut self, rec: &AttemptRecord) {
        self.end_attempt_of(&rec.view(), false);
    }

    /// Ends an attempt from its borrowed fields; `reconnect`: a stream's
    /// request sent because the server asked the client to come back
    /// (counted in `reconnects`, not in `retries`).
    pub fn end_attempt_of(&mut self, rec: &AttemptRef<'_>, reconnect: bool) {
        let t = &mut self.totals;
        t.open_attempts = t.open_attempts.saturating_sub(1);
        if reconnect {
            t.reconnects += 1;
        } else if rec.attempt > 1 {
            t.retries += 1;
        }
        match rec.outcome() {
            Outcome::Ok => t.attempts_ok += 1,
            Outcome::Refused => t.attempts_refused += 1,
            Outcome::Failed(c) => {
                t.attempts_failed += 1;
                *t.attempts_failed_by_class.entry(c).or_default() += 1;
                if rec.reused {
                    t.attempts_failed_on_reused_connection += 1;
                }
                if rec.attempt == 1 {
                    t.first_attempt_failures += 1;
                    *t.first_attempt_failures_by_class.entry(c).or_default() += 1;
                }
            }
        }
        self.write_record(rec);
    }

    /// Writes one attempt's line without counting it: the merge writes the
    /// shards' records and takes the counts from their totals
    /// ([`Ledger::set_totals`]), checking that the lines add up to them.
    pub fn write_record(&mut self, rec: &AttemptRef<'_>) {
        if let Some(w) = self.writer.as_mut() {
            let line = &mut self.line;
            line.clear();
            if !self.header_written {
                line.extend_from_slice(HEADER);
                self.header_written = true;
            }
            write_line(line, rec);
            if let Err(e) = w.write_all(line) {
                // The counts stay right; the run is marked invalid because the
                // per-attempt record (needed by audit and attribution) is incomplete.
                self.write_error.get_or_insert_with(|| format!("cannot write the ledger: {e}"));
                self.writer = None;
            }
        }
    }

    /// Ends an operation of step `step` with the outcome of its last attempt.
    /// `first_failed`: its first attempt failed.
    pub fn end_operation(&mut self, step: &str, last: Outcome, first_failed: bool) {
        let t = &mut self.totals;
        t.open_operations = t.open_operations.saturating_sub(1);
        match last {
            Outcome::Ok => t.ok += 1,
            Outcome::Refused => t.refused += 1,
            Outcome::Failed(c) => {
                t.dropped += 1;
                *t.dropped_by_class.entry(c).or_default() += 1;
                // A string per dropped operation only: rare, and never on the ok path.
                match t.dropped_by_step.get_mut(step) {
                    Some(n) => *n += 1,
                    None => {
                        t.dropped_by_step.insert(step.to_string(), 1);
                    }
                }
            }
        }
        if first_failed && !matches!(last, Outcome::Failed(_)) {
            t.recovered += 1;
        }
    }

    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    /// Replaces the counts (the merge: the sum of the shards' totals).
    pub fn set_totals(&mut self, totals: Totals) {
        self.totals = totals;
    }

    /// Flushes the file; returns the first write error, if any happened.
    pub fn finish(&mut self) -> Result<(), String> {
        if let Some(w) = self.writer.as_mut()
            && let Err(e) = w.flush()
        {
            self.write_error.get_or_insert_with(|| format!("cannot write the ledger: {e}"));
        }
        match &self.write_error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }
}

/// Reads a ledger file back one record at a time, in the order attempts
/// completed, so that a pass over a long run's ledger holds one record, not
/// the run. Returns how many records were read; an unreadable line names the
/// file and stops the pass.
pub fn for_each_record(path: &Path, mut f: impl FnMut(&AttemptRecord)) -> Result<u64, String> {
    let err = |e: csv::Error| format!("{}: {e}", path.display());
    let mut rdr = csv::Reader::from_path(path).map_err(err)?;
    let headers = rdr.byte_headers().map_err(err)?.clone();
    let mut line = csv::ByteRecord::new();
    let mut n = 0;
    while rdr.read_byte_record(&mut line).map_err(err)? {
        let rec: AttemptRecord = line.deserialize(Some(&headers)).map_err(err)?;
        f(&rec);
        n += 1;
    }
    Ok(n)
}

/// Reads a whole ledger file back into memory, in the order attempts
/// completed. The run's own passes use [`for_each_record`]; integration
/// tests have their own copy in tests/support.
#[cfg(test)]
fn read_records(path: &Path) -> Result<Vec<AttemptRecord>, String> {
    let mut out = Vec::new();
    for_each_record(path, |r| out.push(r.clone()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(op: u64, attempt: u32, o: Outcome) -> AttemptRecord {
        let (outcome, class) = split(o);
        AttemptRecord {
            op,
            shopper: 7,
            step: "checkout, with comma".into(),
            attempt,
            intended_ms: 1.0,
            start_ms: 1.5,
            end_ms: 3.25,
            outcome,
            class,
            status: Some(201),
            reused: attempt > 1,
            handshake: if attempt > 1 { Handshake::None } else { Handshake::Full },
            worker: Some("w1".into()),
            addr: Some("127.0.0.1:8080".parse().unwrap()),
            idem: Some("7-checkout-00ff".into()),
            order_id: Some(42),
        }
    }

    #[test]
    fn recovered_retry_counts_as_first_attempt_failure_and_not_dropped() {
        let mut l = Ledger::in_memory();
        let op = l.begin_operation();
        l.begin_attempt();
        l.end_attempt(&rec(op, 1, Outcome::Failed(FailureClass::ResetBeforeResponse)));
        l.begin_attempt();
        l.end_attempt(&rec(op, 2, Outcome::Ok));
        l.end_operation("s", Outcome::Ok, true);
        let op2 = l.begin_operation();
        l.begin_attempt();
        l.end_attempt(&rec(op2, 1, Outcome::Failed(FailureClass::ServerError)));
        l.end_operation("s", Outcome::Failed(FailureClass::ServerError), true);
        let t = l.totals();
        assert_eq!((t.operations, t.ok, t.refused, t.dropped), (2, 1, 0, 1));
        assert_eq!(t.first_attempt_failures, 2);
        assert_eq!(t.recovered, 1);
        assert_eq!(t.retries, 1);
        assert_eq!(t.attempts_failed_by_class[&FailureClass::ResetBeforeResponse], 1);
        assert_eq!(t.dropped_by_class[&FailureClass::ServerError], 1);
        assert_eq!(t.dropped_by_step["s"], 1);
        t.check().unwrap();
    }

    #[test]
    fn a_stream_reconnect_is_neither_a_retry_nor_a_failure() {
        let mut l = Ledger::in_memory();
        let op = l.begin_operation();
        // ok (the server asked to reconnect), reconnect cut (truncated),
        // retry ok.
        for (attempt, o, reconnect) in
            [(1, Outcome::Ok, false), (2, Outcome::Failed(FailureClass::TruncatedBody), true), (3, Outcome::Ok, false)]
        {
            l.begin_attempt();
            let r = rec(op, attempt, o);
            l.end_attempt_of(&r.view(), reconnect);
        }
        l.end_operation("s", Outcome::Ok, false);
        let t = l.totals();
        assert_eq!((t.attempts, t.reconnects, t.retries, t.first_attempt_failures), (3, 1, 1, 0));
        assert_eq!(t.attempts, t.operations + t.retries + t.reconnects);
        assert_eq!((t.ok, t.dropped), (1, 0));
        t.check().unwrap();
    }

    #[test]
    fn failed_ops_keep_only_operations_that_failed_and_the_last_attempt_decides() {
        let mut f = FailedOps::default();
        let cut = Outcome::Failed(FailureClass::TruncatedBody);
        for r in [
            rec(1, 1, Outcome::Ok),
            // A stream: ok, its reconnect cut, the retry ok: recovered.
            rec(2, 1, Outcome::Ok),
            rec(2, 2, cut),
            rec(2, 3, Outcome::Ok),
            // Out of order: the later attempt still decides.
            rec(3, 2, cut),
            rec(3, 1, Outcome::Refused),
            rec(4, 1, cut),
        ] {
            f.add(&r);
        }
        assert_eq!(f.last.len(), 3, "op 1 never failed and is not kept");
        assert!(!f.dropped(1) && !f.dropped(2));
        assert!(f.dropped(3) && f.dropped(4));
        assert!(!f.dropped(99));
    }

    #[test]
    fn a_bad_ledger_line_names_the_file_and_stops_the_pass() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LEDGER_FILE);
        let mut l = Ledger::create(&path).unwrap();
        l.begin_attempt();
        l.end_attempt(&rec(0, 1, Outcome::Ok));
        l.finish().unwrap();
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("1,7,x,not-a-number,1,1,1,ok,,,false,,,\n");
        std::fs::write(&path, text).unwrap();
        let mut seen = 0;
        let err = for_each_record(&path, |_| seen += 1).unwrap_err();
        assert_eq!(seen, 1);
        assert!(err.contains(LEDGER_FILE), "{err}");
    }

    #[test]
    fn open_work_makes_the_check_fail() {
        let mut l = Ledger::in_memory();
        l.begin_operation();
        l.begin_attempt();
        let err = l.totals().check().unwrap_err();
        assert!(err.contains("1 attempt(s) still open"), "{err}");
        assert!(err.contains("1 operation(s) still open"), "{err}");
    }

    /// The csv crate's bytes for `records` (what `Ledger` wrote before its
    /// line was written by hand).
    fn csv_crate_bytes(records: &[AttemptRecord]) -> Vec<u8> {
        let mut w = csv::WriterBuilder::new().has_headers(true).from_writer(Vec::new());
        for r in records {
            w.serialize(r).unwrap();
        }
        w.into_inner().unwrap()
    }

    fn ledger_bytes(records: &[AttemptRecord]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LEDGER_FILE);
        let mut l = Ledger::create(&path).unwrap();
        for r in records {
            l.begin_attempt();
            l.end_attempt(r);
        }
        l.finish().unwrap();
        drop(l);
        std::fs::read(&path).unwrap()
    }

    /// Records with every awkward field: texts that need quoting (or look
    /// like they might), `None`s, every outcome and class, extreme integers
    /// and floats that print in ryu's different notations.
    fn awkward_records() -> Vec<AttemptRecord> {
        let texts = [
            "plain",
            "with, comma",
            "with \"quotes\"",
            "\"",
            "\"\"",
            "line\nbreak",
            "cr\rhere",
            "crlf\r\n",
            "",
            " spaced ",
            "#hash",
            "tab\there",
            "semi;colon",
            "ünïcödé ✓",
            "'single'",
            "a,\"b\"\n,c",
        ];
        let floats = [
            0.0,
            -0.0,
            1.0,
            0.1,
            1e-7,
            1.5e-7,
            3.25,
            123.456,
            1e15,
            1e16,
            1.2345678901234567e17,
            9007199254740993.0,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            -2.5,
            1_771_000_000_000.125,
            0.30000000000000004,
            59_999.999,
        ];
        let outcomes: Vec<Outcome> = [Outcome::Ok, Outcome::Refused]
            .into_iter()
            .chain(FailureClass::ALL.into_iter().map(Outcome::Failed))
            .collect();
        let mut out = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            for (j, o) in outcomes.iter().enumerate() {
                let n = i * outcomes.len() + j;
                let (outcome, class) = split(*o);
                out.push(AttemptRecord {
                    op: if n % 7 == 0 { u64::MAX } else { n as u64 },
                    shopper: (n as u64) * 1_000_003,
                    step: t.to_string(),
                    attempt: [1, 2, 9, 10, u32::MAX][n % 5],
                    intended_ms: floats[n % floats.len()],
                    start_ms: floats[(n + 3) % floats.len()],
                    end_ms: floats[(n + 7) % floats.len()],
                    outcome,
                    class,
                    status: [None, Some(0), Some(200), Some(503), Some(u16::MAX)][n % 5],
                    reused: n % 2 == 0,
                    handshake: [Handshake::None, Handshake::Full, Handshake::Resumed][n % 3],
                    worker: [None, Some(t.to_string()), Some("w-1".to_string())][n % 3].clone(),
                    addr: [None, Some("127.0.0.1:8080".parse().unwrap()), Some("[::1]:443".parse().unwrap())][n % 3],
                    idem: [Some(texts[(i + 1) % texts.len()].to_string()), None][n % 2].clone(),
                    order_id: [None, Some(0), Some(-1), Some(i64::MIN), Some(i64::MAX), Some(42)][n % 6],
                });
            }
        }
        out
    }

    #[test]
    fn hand_written_lines_match_the_csv_crate() {
        let records = awkward_records();
        let ours = ledger_bytes(&records);
        let theirs = csv_crate_bytes(&records);
        assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&theirs));
        assert_eq!(ours, theirs);
        // Read back equal (the reader side is the csv crate's, which reads
        // an empty optional text as `None`).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LEDGER_FILE);
        std::fs::write(&path, &ours).unwrap();
        let mut expected = records.clone();
        for r in &mut expected {
            r.worker = r.worker.take().filter(|w| !w.is_empty());
            r.idem = r.idem.take().filter(|k| !k.is_empty());
        }
        assert_eq!(read_records(&path).unwrap(), expected);
        // Non-finite times (never produced, but written the same way).
        let mut odd = records[..3].to_vec();
        (odd[0].intended_ms, odd[1].start_ms, odd[2].end_ms) = (f64::NAN, f64::INFINITY, f64::NEG_INFINITY);
        assert_eq!(ledger_bytes(&odd), csv_crate_bytes(&odd));
        // No attempts: no header either, as the csv crate writes it.
        assert_eq!(ledger_bytes(&[]), csv_crate_bytes(&[]));
        assert!(ledger_bytes(&[]).is_empty());
    }

    #[test]
    fn milliseconds_are_written_as_ryu_writes_them() {
        let check = |v: f64| {
            let mut ours = Vec::new();
            write_ms(&mut ours, v);
            assert_eq!(String::from_utf8(ours).unwrap(), ryu::Buffer::new().format(v), "{v:e}");
        };
        // Every time of the first 2 s to the microsecond, as EventLog::ms_at makes them.
        for us in 0..2_000_000u64 {
            check(us as f64 / 1000.0);
        }
        // Spread over the whole fast range and past it.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..1_000_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let us = x % 2_000_000_000_000;
            check(us as f64 / 1000.0);
            check((x % 1_000_000_000) as f64 / 1000.0);
        }
        for us in [999_999_999_999u64, 1_000_000_000_000, 1_000_000_000_001, 9_007_199_254_740_993, u64::MAX] {
            check(us as f64 / 1000.0);
        }
        // Anything else goes through ryu.
        for v in [
            -0.0,
            -1.0,
            0.1 + 0.2,
            1e-7,
            0.0001,
            0.0005,
            1.0005,
            2.5e-4,
            1e9,
            1e15,
            1e16,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            123.4567,
            1.0 / 3.0,
        ] {
            check(v);
        }
    }

    #[test]
    fn records_roundtrip_through_the_csv_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LEDGER_FILE);
        let mut l = Ledger::create(&path).unwrap();
        let a = rec(0, 1, Outcome::Failed(FailureClass::ClosedBeforeResponse));
        let mut b = rec(0, 2, Outcome::Refused);
        b.worker = None;
        b.order_id = None;
        for r in [&a, &b] {
            l.begin_attempt();
            l.end_attempt(r);
        }
        l.finish().unwrap();
        let back = read_records(&path).unwrap();
        assert_eq!(back, vec![a, b]);
        assert_eq!(back[0].outcome(), Outcome::Failed(FailureClass::ClosedBeforeResponse));
    }
}
