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

use crate::outcome::{FailureClass, Outcome};

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
pub fn record_value(h: &mut Histogram<u64>, v: u64) {
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
    /// Latency of the ok attempts that ended in this second; null when none
    /// did (the report's latency chart shows ok requests only).
    #[serde(default)]
    pub ok_p50_ms: Option<f64>,
    #[serde(default)]
    pub ok_p99_ms: Option<f64>,
    #[serde(default)]
    pub ok_max_ms: Option<f64>,
    /// The slowest failed attempt that ended in this second (a timeout shows
    /// as the time it took to give up); null when none failed.
    #[serde(default)]
    pub failed_max_ms: Option<f64>,
}

/// One point of a latency spectrum: the latency at a percentile.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SpectrumPoint {
    /// 50.0 .. 100.0.
    pub percentile: f64,
    pub latency_ms: f64,
}

/// Quantiles at which the spectrum is sampled: evenly spaced on the "nines"
/// axis x = 1/(1-q), 20 samples per decade, from the median up to the last
/// quantile the sample count can resolve, then the maximum.
pub fn spectrum(hist: &Histogram<u64>) -> Vec<SpectrumPoint> {
    let mut out = Vec::new();
    if hist.is_empty() {
        return out;
    }
    let len = hist.len() as f64;
    let mut k = 0u32;
    loop {
        // x from 2 (the median) upwards.
        let x = 2.0 * 10f64.powf(f64::from(k) / 20.0);
        // The median is always shown, even from a single sample.
        if k > 0 && (x > len || x > 1e7) {
            break;
        }
        let q = 1.0 - 1.0 / x;
        out.push(SpectrumPoint { percentile: q * 100.0, latency_ms: us_to_ms(hist.value_at_quantile(q)) });
        k += 1;
    }
    out.push(SpectrumPoint { percentile: 100.0, latency_ms: us_to_ms(hist.max()) });
    out
}

/// One step's histograms: all its attempts, and split by outcome key.
pub struct StepHistograms<'a> {
    pub name: &'a str,
    pub all: Histogram<u64>,
    pub by_outcome: BTreeMap<&'static str, &'a Histogram<u64>>,
}

/// Outcome keys: `ok`, `refused`, then one per failure class.
const KEYS: usize = 2 + FailureClass::ALL.len();

/// An outcome's index among the [`KEYS`] (the inverse of [`key_outcome`]).
fn key_index(o: Outcome) -> usize {
    match o {
        Outcome::Ok => 0,
        Outcome::Refused => 1,
        Outcome::Failed(c) => 2 + c as usize,
    }
}

fn key_outcome(k: usize) -> Outcome {
    match k {
        0 => Outcome::Ok,
        1 => Outcome::Refused,
        _ => Outcome::Failed(FailureClass::ALL[k - 2]),
    }
}

/// The histogram that recording all the values of `parts` into one
/// histogram would have given: the same counts, and the same size (highest
/// trackable value, which the serialized form carries) because it starts
/// as a copy of the part that grew largest (an auto-resizing histogram
/// grows to fit the largest value it has seen, and keeps its size when
/// reset) and the others fit in it. (Adding into a fresh histogram would
/// size it to the largest value instead, and serialize differently.)
fn merged<'a>(parts: impl Iterator<Item = &'a Histogram<u64>>) -> Histogram<u64> {
    let parts: Vec<&Histogram<u64>> = parts.collect();
    let Some(big) = (0..parts.len()).max_by_key(|&i| parts[i].high()) else {
        return new_histogram();
    };
    let mut m = parts[big].clone();
    for (i, h) in parts.iter().enumerate() {
        if i != big && m.add(*h).is_err() {
            // Cannot happen (`m` holds every value of `h` without growing);
            // if it did, record value by value, growing as recording would.
            for v in h.iter_recorded() {
                let _ = m.record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
    }
    m
}

struct Interval {
    sec: u64,
    /// Per step; the interval's `all` is their merge (see [`merged`]).
    steps: Vec<Histogram<u64>>,
    row: SecondRow,
    slip_max_us: u64,
    /// Ok attempts of this second (the report's latency chart).
    ok: Histogram<u64>,
    failed_max_us: Option<u64>,
}

/// Records every attempt's latency. Steps are addressed by index (the order
/// given to [`Recorder::new`]) so recording does no string work.
///
/// Only what cannot be derived is recorded (two histograms per attempt):
/// latency per (step, outcome) and per step for the current second, and the
/// slip. The whole run's histograms (overall, per step, per outcome) and
/// each second's `all` are merged from them when read, identical to the
/// histograms recording every value into each would have given.
pub struct Recorder {
    steps: Vec<String>,
    /// Per (step, outcome key), at `step * KEYS + key`; `None` until the
    /// first such attempt.
    by_step_outcome: Vec<Option<Histogram<u64>>>,
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
            by_step_outcome: (0..n * KEYS).map(|_| None).collect(),
            steps,
            slip: new_histogram(),
            cur: Interval {
                sec: 0,
                steps: (0..n).map(|_| new_histogram()).collect(),
                row: SecondRow::default(),
                slip_max_us: 0,
                ok: new_histogram(),
                failed_max_us: None,
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
    /// `step` must be an index into the names given to [`Recorder::new`]
    /// (the attempt's latency is not recorded otherwise).
    pub fn record(&mut self, step: usize, outcome: Outcome, latency_us: u64, slip_us: u64, end_ms: f64) {
        let sec = (end_ms.max(0.0) / 1000.0) as u64;
        if sec > self.cur.sec {
            self.roll_to(sec);
        }
        record_value(&mut self.slip, slip_us);
        let cur = &mut self.cur;
        if let Some(h) = cur.steps.get_mut(step) {
            record_value(h, latency_us);
            let h = self.by_step_outcome[step * KEYS + key_index(outcome)].get_or_insert_with(new_histogram);
            record_value(h, latency_us);
        }
        cur.slip_max_us = cur.slip_max_us.max(slip_us);
        match outcome {
            Outcome::Ok => {
                cur.row.ok += 1;
                record_value(&mut cur.ok, latency_us);
            }
            Outcome::Refused => cur.row.refused += 1,
            Outcome::Failed(c) => {
                cur.row.failed += 1;
                cur.failed_max_us = Some(cur.failed_max_us.unwrap_or(0).max(latency_us));
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
        let all = merged(cur.steps.iter());
        let p = Percentiles::of(&all);
        row.p50_ms = p.p50_ms;
        row.p99_ms = p.p99_ms;
        row.max_ms = p.max_ms;
        row.slip_max_ms = us_to_ms(cur.slip_max_us);
        cur.slip_max_us = 0;
        if !cur.ok.is_empty() {
            let ok = Percentiles::of(&cur.ok);
            (row.ok_p50_ms, row.ok_p99_ms, row.ok_max_ms) = (Some(ok.p50_ms), Some(ok.p99_ms), Some(ok.max_ms));
            cur.ok.reset();
        }
        row.failed_max_ms = cur.failed_max_us.take().map(us_to_ms);
        if !all.is_empty() {
            let mut buf = Vec::new();
            if self.serializer.serialize(&all, &mut buf).is_ok() {
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
        }
        self.series.push(row);
    }

    /// Closes the last (partial) second. Call once after the run.
    pub fn finish(&mut self, end_ms: f64) {
        self.tick(end_ms, self.active);
        self.close_current();
        self.cur.sec += 1;
    }

    /// The (step, outcome key) histograms of step `i`, by key.
    fn step_outcomes(&self, i: usize) -> impl Iterator<Item = (&'static str, &Histogram<u64>)> {
        self.by_step_outcome[i * KEYS..(i + 1) * KEYS]
            .iter()
            .enumerate()
            .filter_map(|(k, h)| h.as_ref().map(|h| (outcome_key(key_outcome(k)), h)))
    }

    /// All attempts (merged from the per step and outcome histograms).
    pub fn overall(&self) -> Histogram<u64> {
        merged(self.by_step_outcome.iter().flatten())
    }

    pub fn slip(&self) -> &Histogram<u64> {
        &self.slip
    }

    /// The histogram of all attempts of the named step.
    pub fn step(&self, name: &str) -> Option<Histogram<u64>> {
        self.steps.iter().position(|s| s == name).map(|i| merged(self.step_outcomes(i).map(|(_, h)| h)))
    }

    /// Per step name: (all outcomes, by outcome key).
    pub fn per_step(&self) -> Vec<StepHistograms<'_>> {
        self.steps
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let by: BTreeMap<&'static str, &Histogram<u64>> = self.step_outcomes(i).collect();
                StepHistograms { name: name.as_str(), all: merged(by.values().copied()), by_outcome: by }
            })
            .collect()
    }

    /// Per outcome key, all steps.
    pub fn per_outcome(&self) -> BTreeMap<&'static str, Histogram<u64>> {
        (0..KEYS)
            .filter_map(|k| {
                let mut parts = self.by_step_outcome.iter().skip(k).step_by(KEYS).flatten().peekable();
                parts.peek()?;
                Some((outcome_key(key_outcome(k)), merged(parts)))
            })
            .collect()
    }

    /// Adds `n` shoppers to second `t_s`'s active count (the merge sums
    /// the shards' counts, which only each shard's engine could see).
    pub fn add_active_shoppers(&mut self, t_s: u64, n: u64) {
        if let Some(row) = self.series.iter_mut().find(|r| r.t_s == t_s) {
            row.active_shoppers += n;
        }
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
        put(&self.overall(), "all")?;
        put(&self.slip, "slip")?;
        for (k, h) in &self.per_outcome() {
            put(h, &format!("outcome:{k}"))?;
        }
        for s in self.per_step() {
            let name = tag_safe(s.name);
            put(&s.all, &format!("step:{name}"))?;
            for (k, h) in &s.by_outcome {
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

    #[test]
    fn spectrum_rises_and_ends_at_the_max() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        for v in 1..=10_000u64 {
            h.record(v * 100).unwrap(); // 0.1 ms .. 1000 ms in µs
        }
        let s = spectrum(&h);
        assert!(s.len() > 40, "{}", s.len());
        assert!((s[0].percentile - 50.0).abs() < 1e-9);
        assert!((s[0].latency_ms - 500.0).abs() < 1.0, "{:?}", s[0]);
        assert!(s.windows(2).all(|w| w[0].percentile < w[1].percentile && w[0].latency_ms <= w[1].latency_ms));
        let last = s.last().unwrap();
        assert_eq!(last.percentile, 100.0);
        assert!((last.latency_ms - 1000.0).abs() < 1.0);
        // Never beyond what 10,000 samples can resolve (99.99 %), apart from the max.
        assert!(s[s.len() - 2].percentile <= 99.99 + 1e-9);
        assert!(spectrum(&Histogram::<u64>::new(3).unwrap()).is_empty());
        let mut one = Histogram::<u64>::new(3).unwrap();
        one.record(2000).unwrap();
        let s = spectrum(&one);
        assert_eq!(s.iter().map(|p| p.percentile).collect::<Vec<_>>(), [50.0, 100.0]);
    }

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

    fn ser(h: &Histogram<u64>) -> Vec<u8> {
        let mut buf = Vec::new();
        V2DeflateSerializer::new().serialize(h, &mut buf).unwrap();
        buf
    }

    fn assert_same(what: &str, merged: &Histogram<u64>, direct: &Histogram<u64>) {
        assert_eq!(merged, direct, "{what}");
        assert_eq!(merged.high(), direct.high(), "{what}: size");
        assert_eq!(
            (merged.max(), merged.min(), merged.min_nz()),
            (direct.max(), direct.min(), direct.min_nz()),
            "{what}"
        );
        assert_eq!(Percentiles::of(merged), Percentiles::of(direct), "{what}");
        assert_eq!(ser(merged), ser(direct), "{what}: serialized");
    }

    /// The merged histograms are the ones recording every value into each
    /// (as the recorder did before it recorded only per step and outcome):
    /// equal, same size, same serialized bytes, per second too.
    #[test]
    fn merged_histograms_are_identical_to_recording_into_each() {
        let names: Vec<String> = vec!["a".into(), "b".into(), "c".into()];
        let mut r = Recorder::new(names.clone());
        let mut overall = new_histogram();
        let mut per_step: Vec<Histogram<u64>> = (0..3).map(|_| new_histogram()).collect();
        let mut per_step_outcome: BTreeMap<(usize, &'static str), Histogram<u64>> = BTreeMap::new();
        let mut per_outcome: BTreeMap<&'static str, Histogram<u64>> = BTreeMap::new();
        let mut all = new_histogram();
        let mut all_intervals: Vec<(u64, Vec<u8>, Percentiles)> = Vec::new();
        let mut sec = 0u64;
        let close = |sec: u64, all: &mut Histogram<u64>, out: &mut Vec<(u64, Vec<u8>, Percentiles)>| {
            if !all.is_empty() {
                out.push((sec, ser(all), Percentiles::of(all)));
                all.reset();
            }
        };
        let outcomes: Vec<Outcome> = (0..KEYS).map(key_outcome).collect();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut t_ms = 0.0;
        for i in 0..30_000u64 {
            // Phases: small values only (no histogram grows), then growing
            // ranges, a few huge values early in some steps only, then small
            // values again in later seconds (reset histograms keep their size).
            let range = match i / 5_000 {
                0 => 2_000,
                1 => 100_000,
                2 => [3_000, 1_000_000, 50_000_000_000][rnd(3) as usize],
                3 => 5_000,
                4 => [2_047, 2_048, 2_049, 4_095, 4_096][rnd(5) as usize] + 1,
                _ => 300_000,
            };
            let v = rnd(range);
            let step = if i / 5_000 == 2 { rnd(2) as usize } else { rnd(3) as usize };
            let o = outcomes[[0, 0, 0, 1, rnd(KEYS as u64) as usize][rnd(5) as usize]];
            let slip = rnd(10_000);
            t_ms += rnd(1_000) as f64 / 10.0;
            let s = (t_ms / 1000.0) as u64;
            while sec < s {
                close(sec, &mut all, &mut all_intervals);
                sec += 1;
            }
            r.record(step, o, v, slip, t_ms);
            for h in [&mut overall, &mut per_step[step], &mut all] {
                record_value(h, v);
            }
            let k = outcome_key(o);
            record_value(per_step_outcome.entry((step, k)).or_insert_with(new_histogram), v);
            record_value(per_outcome.entry(k).or_insert_with(new_histogram), v);
        }
        r.finish(t_ms);
        close(sec, &mut all, &mut all_intervals);

        assert_same("overall", &r.overall(), &overall);
        let per = r.per_step();
        for (i, s) in per.iter().enumerate() {
            assert_eq!(s.name, names[i]);
            assert_same(s.name, &s.all, &per_step[i]);
            assert_same(s.name, &r.step(s.name).unwrap(), &per_step[i]);
            let direct: Vec<_> = per_step_outcome.iter().filter(|((j, _), _)| *j == i).collect();
            assert_eq!(
                s.by_outcome.keys().copied().collect::<Vec<_>>(),
                direct.iter().map(|((_, k), _)| *k).collect::<Vec<_>>()
            );
            for ((_, k), h) in direct {
                assert_same(k, s.by_outcome[k], h);
            }
        }
        let po = r.per_outcome();
        assert_eq!(po.keys().collect::<Vec<_>>(), per_outcome.keys().collect::<Vec<_>>());
        for (k, h) in &per_outcome {
            assert_same(k, &po[k], h);
        }
        // Each second's `all`: serialized interval and the series' percentiles.
        let ours: Vec<(u64, &Vec<u8>)> =
            r.intervals.iter().filter(|(_, tag, _)| *tag == 0).map(|(s, _, b)| (*s, b)).collect();
        assert_eq!(ours.len(), all_intervals.len());
        assert!(ours.len() > 100, "{}", ours.len());
        for ((s, bytes), (ds, dbytes, p)) in ours.iter().zip(&all_intervals) {
            assert_eq!((s, *bytes), (ds, dbytes), "second {s}");
            let row = &r.series()[*s as usize];
            assert_eq!((row.p50_ms, row.p99_ms, row.max_ms), (p.p50_ms, p.p99_ms, p.max_ms), "second {s}");
        }
        // No attempt at all: empty histograms, as recorded directly.
        let r = Recorder::new(names);
        assert_same("empty", &r.overall(), &new_histogram());
        assert!(r.per_outcome().is_empty());
    }

    #[test]
    fn outcome_keys_index_both_ways() {
        for (i, c) in FailureClass::ALL.into_iter().enumerate() {
            assert_eq!(c as usize, i);
        }
        for k in 0..KEYS {
            assert_eq!(key_index(key_outcome(k)), k);
        }
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
