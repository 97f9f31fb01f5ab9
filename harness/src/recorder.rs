//! Latency recording: HdrHistograms per step and outcome, overall, the
//! harness's own schedule slip, per-second intervals (written as an HdrHistogram
//! interval log, V2 serialization, so runs and shards can be merged) and a
//! per-second time series for the report.
//!
//! Latency is the time from an attempt's *intended* send time to its end, in
//! microseconds, so a server that falls behind shows in the numbers even when
//! the harness had to wait for a connection (no coordinated omission).
//! Percentiles always come from histograms, never from averaging percentiles.
//!
//! Not for counting outcomes for the invariant (ledger.rs) nor judging (gates.rs).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

use crate::outcome::Outcome;

/// Interval log with one histogram per second (tags `all` and `step:NAME`).
pub const INTERVALS_FILE: &str = "latency-intervals.hlog";
/// Interval log with one histogram per tag for the whole run (`all`,
/// `step:NAME`, `step:NAME:OUTCOME`, `outcome:OUTCOME`, `slip`).
pub const TOTALS_FILE: &str = "latency-totals.hlog";

pub fn new_histogram() -> Histogram<u64> {
    // Auto-resizing, 3 significant figures: 0.1% resolution at any latency.
    Histogram::new(3).expect("3 significant figures is a valid histogram precision")
}

/// Percentiles of a histogram of microseconds, reported in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p99_9_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        let q = |x: f64| if h.is_empty() { 0.0 } else { us_to_ms(h.value_at_quantile(x)) };
        Percentiles {
            count: h.len(),
            p50_ms: q(0.50),
            p90_ms: q(0.90),
            p99_ms: q(0.99),
            p99_9_ms: q(0.999),
            max_ms: if h.is_empty() { 0.0 } else { us_to_ms(h.max()) },
            mean_ms: if h.is_empty() { 0.0 } else { h.mean().round() / 1000.0 },
        }
    }
}

/// Records `v`, growing the histogram as needed. (`saturating_record` would
/// clamp to the current top instead of growing an auto-resizing histogram.)
fn record_value(h: &mut Histogram<u64>, v: u64) {
    if h.record(v).is_err() {
        h.saturating_record(v);
    }
}

fn us_to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// The key of an outcome in tags and maps: `ok`, `refused` or the class name.
pub fn outcome_key(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "ok",
        Outcome::Refused => "refused",
        Outcome::Failed(c) => c.as_str(),
    }
}

/// One second of the run, for time-series charts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SecondRow {
    /// Seconds since run start at the beginning of this second.
    pub t_s: u64,
    /// Attempts that ended in this second, by outcome.
    pub ok: u64,
    pub refused: u64,
    pub failed: u64,
    pub failed_by_class: BTreeMap<String, u64>,
    /// Latency of the attempts that ended in this second (all outcomes).
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Shoppers in their journey at the end of the second.
    pub active_shoppers: u64,
    /// Largest schedule slip among the attempts that ended in this second
    /// (attempts are filed by their end).
    pub slip_max_ms: f64,
}

/// One step's histograms: all its attempts, and split by outcome key.
pub struct StepHistograms<'a> {
    pub name: &'a str,
    pub all: &'a Histogram<u64>,
    pub by_outcome: BTreeMap<&'static str, &'a Histogram<u64>>,
}

struct Interval {
    sec: u64,
    all: Histogram<u64>,
    steps: Vec<Histogram<u64>>,
    row: SecondRow,
    slip_max_us: u64,
}

/// Records every attempt's latency. Steps are addressed by index (the order
/// given to [`Recorder::new`]) so recording does no string work.
pub struct Recorder {
    steps: Vec<String>,
    overall: Histogram<u64>,
    per_step: Vec<Histogram<u64>>,
    per_step_outcome: BTreeMap<(usize, &'static str), Histogram<u64>>,
    per_outcome: BTreeMap<&'static str, Histogram<u64>>,
    slip: Histogram<u64>,
    cur: Interval,
    // Closed intervals, V2-deflate serialized: (second, tag index: 0 = all, 1+i = step i, bytes).
    intervals: Vec<(u64, usize, Vec<u8>)>,
    series: Vec<SecondRow>,
    active: u64,
    serializer: V2DeflateSerializer,
}

impl Recorder {
    pub fn new(steps: Vec<String>) -> Self {
        let n = steps.len();
        Recorder {
            per_step: (0..n).map(|_| new_histogram()).collect(),
            steps,
            overall: new_histogram(),
            per_step_outcome: BTreeMap::new(),
            per_outcome: BTreeMap::new(),
            slip: new_histogram(),
            cur: Interval {
                sec: 0,
                all: new_histogram(),
                steps: (0..n).map(|_| new_histogram()).collect(),
                row: SecondRow::default(),
                slip_max_us: 0,
            },
            intervals: Vec::new(),
            series: Vec::new(),
            active: 0,
            serializer: V2DeflateSerializer::new(),
        }
    }

    pub fn step_names(&self) -> &[String] {
        &self.steps
    }

    /// Records one attempt of step `step` that ended at `end_ms` (run clock).
    pub fn record(&mut self, step: usize, outcome: Outcome, latency_us: u64, slip_us: u64, end_ms: f64) {
        let sec = (end_ms.max(0.0) / 1000.0) as u64;
        if sec > self.cur.sec {
            self.roll_to(sec);
        }
        let key = outcome_key(outcome);
        record_value(&mut self.overall, latency_us);
        record_value(&mut self.slip, slip_us);
        if let Some(h) = self.per_step.get_mut(step) {
            record_value(h, latency_us);
        }
        record_value(self.per_step_outcome.entry((step, key)).or_insert_with(new_histogram), latency_us);
        record_value(self.per_outcome.entry(key).or_insert_with(new_histogram), latency_us);
        let cur = &mut self.cur;
        record_value(&mut cur.all, latency_us);
        if let Some(h) = cur.steps.get_mut(step) {
            record_value(h, latency_us);
        }
        cur.slip_max_us = cur.slip_max_us.max(slip_us);
        match outcome {
            Outcome::Ok => cur.row.ok += 1,
            Outcome::Refused => cur.row.refused += 1,
            Outcome::Failed(c) => {
                cur.row.failed += 1;
                *cur.row.failed_by_class.entry(c.as_str().to_string()).or_default() += 1;
            }
        }
    }

    /// Called periodically with the run clock and the number of shoppers in
    /// their journey: closes the seconds that are over, so quiet seconds still
    /// appear in the time series.
    pub fn tick(&mut self, now_ms: f64, active_shoppers: u64) {
        self.active = active_shoppers;
        let sec = (now_ms.max(0.0) / 1000.0) as u64;
        if sec > self.cur.sec {
            self.roll_to(sec);
        }
    }

    fn roll_to(&mut self, sec: u64) {
        while self.cur.sec < sec {
            self.close_current();
            self.cur.sec += 1;
        }
    }

    fn close_current(&mut self) {
        let cur = &mut self.cur;
        let mut row = std::mem::take(&mut cur.row);
        row.t_s = cur.sec;
        row.active_shoppers = self.active;
        let p = Percentiles::of(&cur.all);
        row.p50_ms = p.p50_ms;
        row.p99_ms = p.p99_ms;
        row.max_ms = p.max_ms;
        row.slip_max_ms = us_to_ms(cur.slip_max_us);
        cur.slip_max_us = 0;
        if !cur.all.is_empty() {
            let mut buf = Vec::new();
            if self.serializer.serialize(&cur.all, &mut buf).is_ok() {
                self.intervals.push((cur.sec, 0, buf));
            }
            for (i, h) in cur.steps.iter_mut().enumerate() {
                if !h.is_empty() {
                    let mut buf = Vec::new();
                    if self.serializer.serialize(h, &mut buf).is_ok() {
                        self.intervals.push((cur.sec, i + 1, buf));
                    }
                    h.reset();
                }
            }
            cur.all.reset();
        }
        self.series.push(row);
    }

    /// Closes the last (partial) second. Call once after the run.
    pub fn finish(&mut self, end_ms: f64) {
        self.tick(end_ms, self.active);
        self.close_current();
        self.cur.sec += 1;
    }

    pub fn overall(&self) -> &Histogram<u64> {
        &self.overall
    }

    pub fn slip(&self) -> &Histogram<u64> {
        &self.slip
    }

    /// The histogram of all attempts of the named step.
    pub fn step(&self, name: &str) -> Option<&Histogram<u64>> {
        self.steps.iter().position(|s| s == name).and_then(|i| self.per_step.get(i))
    }

    /// Per step name: (all outcomes, by outcome key).
    pub fn per_step(&self) -> Vec<StepHistograms<'_>> {
        self.steps
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let by: BTreeMap<&'static str, &Histogram<u64>> = self
                    .per_step_outcome
                    .range((i, "")..)
                    .take_while(|((s, _), _)| *s == i)
                    .map(|((_, k), h)| (*k, h))
                    .collect();
                StepHistograms { name: name.as_str(), all: &self.per_step[i], by_outcome: by }
            })
            .collect()
    }

    pub fn per_outcome(&self) -> &BTreeMap<&'static str, Histogram<u64>> {
        &self.per_outcome
    }

    pub fn series(&self) -> &[SecondRow] {
        &self.series
    }

    /// Writes the per-second interval log and the whole-run log into `dir`.
    /// `wall_start` is the wall-clock time of the run clock's zero.
    pub fn write_logs(&self, dir: &Path, wall_start: SystemTime) -> io::Result<()> {
        let tags: Vec<String> = std::iter::once("all".to_string())
            .chain(self.steps.iter().map(|s| format!("step:{}", tag_safe(s))))
            .collect();
        // Intervals: stored serialized; decode each and write it in order.
        let mut out = BufWriter::new(File::create(dir.join(INTERVALS_FILE))?);
        let mut ser = V2DeflateSerializer::new();
        let mut w = IntervalLogWriterBuilder::new()
            .add_comment("harness per-second latency intervals, microseconds from intended send time")
            .with_start_time(wall_start)
            .with_base_time(wall_start)
            .begin_log_with(&mut out, &mut ser)?;
        let mut de = Deserializer::new();
        for (sec, tag, bytes) in &self.intervals {
            let h: Histogram<u64> =
                de.deserialize(&mut bytes.as_slice()).map_err(|e| io::Error::other(format!("{e:?}")))?;
            w.write_histogram(&h, Duration::from_secs(*sec), Duration::from_secs(1), Tag::new(&tags[*tag]))
                .map_err(|e| io::Error::other(e.to_string()))?;
        }
        drop(w);
        out.flush()?;

        let run_len = Duration::from_secs(self.cur.sec.max(1));
        let mut out = BufWriter::new(File::create(dir.join(TOTALS_FILE))?);
        let mut ser = V2DeflateSerializer::new();
        let mut w = IntervalLogWriterBuilder::new()
            .add_comment("harness whole-run latency histograms, microseconds from intended send time")
            .with_start_time(wall_start)
            .with_base_time(wall_start)
            .begin_log_with(&mut out, &mut ser)?;
        let mut put = |h: &Histogram<u64>, tag: &str| {
            w.write_histogram(h, Duration::ZERO, run_len, Tag::new(tag)).map_err(|e| io::Error::other(e.to_string()))
        };
        put(&self.overall, "all")?;
        put(&self.slip, "slip")?;
        for (k, h) in &self.per_outcome {
            put(h, &format!("outcome:{k}"))?;
        }
        for (i, name) in self.steps.iter().enumerate() {
            let name = tag_safe(name);
            put(&self.per_step[i], &format!("step:{name}"))?;
            for ((s, k), h) in self.per_step_outcome.range((i, "")..).take_while(|((s, _), _)| *s == i) {
                debug_assert_eq!(*s, i);
                put(h, &format!("step:{name}:{k}"))?;
            }
        }
        drop(w);
        out.flush()
    }
}

/// Interval-log tags may not contain commas, spaces or line breaks.
fn tag_safe(s: &str) -> String {
    s.chars().map(|c| if c == ',' || c.is_whitespace() { '_' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::FailureClass;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

    #[test]
    fn seconds_are_filed_by_end_time_and_quiet_seconds_appear() {
        let mut r = Recorder::new(vec!["browse".into(), "checkout now".into()]);
        r.record(0, Outcome::Ok, 20_000, 100, 10.0);
        r.record(1, Outcome::Failed(FailureClass::ServerError), 5_000, 0, 900.0);
        r.tick(1500.0, 3);
        r.record(1, Outcome::Refused, 1_000_000, 2_000, 3100.0);
        r.finish(3200.0);
        let s = r.series();
        assert_eq!(s.len(), 4, "{s:?}");
        assert_eq!((s[0].ok, s[0].failed, s[0].failed_by_class["server_error"]), (1, 1, 1));
        assert_eq!((s[1].ok, s[2].ok), (0, 0));
        assert_eq!(s[3].refused, 1);
        assert!((s[3].p50_ms - 1000.0).abs() < 2.0, "{}", s[3].p50_ms);
        assert_eq!(s[3].slip_max_ms, 2.0);
        assert_eq!(r.overall().len(), 3);
        assert_eq!(r.step("checkout now").unwrap().len(), 2);
        let per = r.per_step();
        assert_eq!(per[1].by_outcome.keys().copied().collect::<Vec<_>>(), vec!["refused", "server_error"]);
    }

    #[test]
    fn interval_logs_parse_back_and_merge_to_the_totals() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Recorder::new(vec!["a".into()]);
        for i in 0..3000u64 {
            r.record(0, Outcome::Ok, 1000 + i, 0, i as f64);
        }
        r.finish(3000.0);
        r.write_logs(dir.path(), SystemTime::now()).unwrap();
        let text = std::fs::read(dir.path().join(INTERVALS_FILE)).unwrap();
        let mut merged = new_histogram();
        let mut de = Deserializer::new();
        let mut n = 0;
        for e in IntervalLogIterator::new(&text) {
            if let Ok(LogEntry::Interval(ilh)) = e {
                if ilh.tag().map(|t| t.as_str()) == Some("all") {
                    let bytes = base64_decode(ilh.encoded_histogram());
                    let h: Histogram<u64> = de.deserialize(&mut bytes.as_slice()).unwrap();
                    merged.add(&h).unwrap();
                    n += 1;
                }
            }
        }
        assert_eq!(n, 3);
        assert_eq!(merged.len(), 3000);
        assert_eq!(merged.max(), r.overall().max());
        assert_eq!(merged.value_at_quantile(0.5), r.overall().value_at_quantile(0.5));
        let totals = std::fs::read_to_string(dir.path().join(TOTALS_FILE)).unwrap();
        assert!(totals.contains("Tag=step:a:ok,"), "{totals}");
    }

    fn base64_decode(s: &str) -> Vec<u8> {
        // Tiny standard-alphabet decoder, test only.
        let val = |c: u8| match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            _ => 63,
        };
        let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
        let mut out = Vec::new();
        for chunk in bytes.chunks(4) {
            let mut acc = 0u32;
            for (i, &c) in chunk.iter().enumerate() {
                acc |= (val(c) as u32) << (18 - 6 * i);
            }
            let n = chunk.len() * 6 / 8;
            for i in 0..n {
                out.push((acc >> (16 - 8 * i)) as u8);
            }
        }
        out
    }
}
