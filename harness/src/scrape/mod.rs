//! The server's side of a run: the target's Prometheus metrics, scraped
//! while the shoppers play, saved as `server_metrics.jsonl` in the run
//! folder, and turned into the report's series (rates, restart markers,
//! gaps) by [`series`].
//!
//! The scraper runs on threads of its own (one per endpoint) with blocking
//! sockets, never on the run's async runtime and never through the shoppers'
//! connection pool, so a slow or stalled endpoint cannot delay the schedule:
//! each scrape has one deadline (the endpoint's interval) and a scrape that
//! fails, times out or returns garbage is written down as a gap, never as
//! zero. Not for: judging anything (no gate reads these series) nor drawing
//! (report/charts.rs).

pub mod fetch;
pub mod parse;
pub mod series;

use std::collections::BTreeMap;
use std::io::{BufRead, Write as _};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::scenario::{MetricsEndpoint, SeriesKind, SeriesSpec};

/// The per-run file.
pub const METRICS_FILE: &str = "server_metrics.jsonl";

/// One picked sample of one scrape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// One scrape of one endpoint: its samples, or why there are none (a gap).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScrapeRecord {
    /// When the scrape started, ms since the run's zero (the ledger's clock).
    pub t_ms: f64,
    pub endpoint: String,
    pub took_ms: f64,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub samples: Vec<Sample>,
}

/// A series as the file records it (the scenario's, so the report needs no scenario).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesInfo {
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(rename = "as")]
    pub kind: String,
    pub title: String,
}

impl SeriesInfo {
    pub fn spec(&self) -> Option<SeriesSpec> {
        Some(SeriesSpec {
            name: self.name.clone(),
            labels: self.labels.clone(),
            kind: SeriesKind::from_name(&self.kind)?,
            title: self.title.clone(),
        })
    }
}

/// An endpoint as the file records it, with what scraping it cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointInfo {
    pub label: String,
    pub url: String,
    pub interval_ms: u64,
    pub series: Vec<SeriesInfo>,
    pub scrapes: u64,
    pub gaps: u64,
    /// CPU time of the endpoint's scraper thread (connect, read, parse).
    pub scraper_cpu_ms: f64,
    /// Why scrapes failed, each distinct reason once (at most [`MAX_REASONS`]).
    #[serde(default)]
    pub gap_reasons: Vec<String>,
}

/// Distinct gap reasons kept per endpoint.
pub const MAX_REASONS: usize = 5;

/// A line of the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    Endpoint(EndpointInfo),
    Scrape(ScrapeRecord),
}

/// Everything one run scraped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScrapeLog {
    pub endpoints: Vec<EndpointInfo>,
    /// In time order per endpoint; endpoints one after another.
    pub records: Vec<ScrapeRecord>,
}

/// An endpoint to scrape, resolved before the run.
#[derive(Debug, Clone)]
pub struct Target {
    pub spec: MetricsEndpoint,
    pub at: fetch::Endpoint,
}

/// The running scraper. Stop it with [`Scraper::finish`].
pub struct Scraper {
    stop: Arc<AtomicBool>,
    threads: Vec<Running>,
}

/// One endpoint's thread and what the file will say about it.
struct Running {
    info: EndpointInfo,
    handle: Option<JoinHandle<Scraped>>,
}

/// What one endpoint's thread did.
#[derive(Default)]
struct Scraped {
    records: Vec<ScrapeRecord>,
    cpu_ms: f64,
}

/// CPU time of the calling thread, ms.
fn thread_cpu_ms() -> f64 {
    use nix::time::{ClockId, clock_gettime};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(|t| t.tv_sec() as f64 * 1e3 + t.tv_nsec() as f64 / 1e6)
        .unwrap_or(0.0)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// One scrape of `t`, stamped on the clock whose zero is `zero`.
pub fn scrape_once(t: &Target, zero: Instant) -> ScrapeRecord {
    let started = Instant::now();
    let t_ms = round3(started.saturating_duration_since(zero).as_secs_f64() * 1e3);
    let got = fetch::get(&t.at, t.spec.interval).and_then(|body| parse::samples(&body, &t.spec.series));
    let took_ms = round3(started.elapsed().as_secs_f64() * 1e3);
    let endpoint = t.spec.label.clone();
    match got {
        Ok(samples) => ScrapeRecord { t_ms, endpoint, took_ms, ok: true, error: None, samples },
        Err(e) => ScrapeRecord { t_ms, endpoint, took_ms, ok: false, error: Some(e), samples: Vec::new() },
    }
}

impl Scraper {
    /// Start one thread per endpoint; the first scrape is at once, then one
    /// per interval on a fixed grid (a slow scrape does not shift the next).
    pub fn start(targets: &[Target], zero: Instant) -> Scraper {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = targets
            .iter()
            .map(|t| {
                let info = EndpointInfo {
                    label: t.spec.label.clone(),
                    url: t.spec.url.clone(),
                    interval_ms: t.spec.interval.as_millis() as u64,
                    series: t
                        .spec
                        .series
                        .iter()
                        .map(|s| SeriesInfo {
                            name: s.name.clone(),
                            labels: s.labels.clone(),
                            kind: s.kind.as_str().into(),
                            title: s.title.clone(),
                        })
                        .collect(),
                    scrapes: 0,
                    gaps: 0,
                    scraper_cpu_ms: 0.0,
                    gap_reasons: Vec::new(),
                };
                let (t, flag) = (t.clone(), Arc::clone(&stop));
                let handle = std::thread::Builder::new()
                    .name(format!("scrape-{}", t.spec.label))
                    .spawn(move || {
                        let mut out = Vec::new();
                        let mut next = Instant::now();
                        while !flag.load(Ordering::Relaxed) {
                            let now = Instant::now();
                            if now < next {
                                // Short naps, so finish() does not wait a whole interval.
                                std::thread::sleep((next - now).min(Duration::from_millis(50)));
                                continue;
                            }
                            out.push(scrape_once(&t, zero));
                            while next <= Instant::now() {
                                next += t.spec.interval;
                            }
                        }
                        Scraped { records: out, cpu_ms: thread_cpu_ms() }
                    })
                    .ok();
                Running { info, handle }
            })
            .collect();
        Scraper { stop, threads }
    }

    /// Stop every thread (each finishes the scrape it is in, at most one
    /// interval) and gather what they scraped.
    pub fn finish(mut self) -> ScrapeLog {
        self.stop.store(true, Ordering::Relaxed);
        let mut log = ScrapeLog::default();
        for Running { mut info, handle } in std::mem::take(&mut self.threads) {
            let Scraped { records, cpu_ms: cpu } = handle.and_then(|h| h.join().ok()).unwrap_or_default();
            info.scrapes = records.len() as u64;
            info.gaps = records.iter().filter(|r| !r.ok).count() as u64;
            info.scraper_cpu_ms = round3(cpu);
            for r in records.iter().filter_map(|r| r.error.as_ref()) {
                if info.gap_reasons.len() < MAX_REASONS && !info.gap_reasons.contains(r) {
                    info.gap_reasons.push(r.clone());
                }
            }
            log.endpoints.push(info);
            log.records.extend(records);
        }
        log
    }
}

impl Drop for Scraper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Write the log as `server_metrics.jsonl` (nothing when no endpoint was scraped).
pub fn write(dir: &Path, log: &ScrapeLog) -> std::io::Result<()> {
    if log.endpoints.is_empty() {
        return Ok(());
    }
    let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join(METRICS_FILE))?);
    let lines = log.endpoints.iter().cloned().map(Line::Endpoint).chain(log.records.iter().cloned().map(Line::Scrape));
    for line in lines {
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Read a run folder's `server_metrics.jsonl`; an empty log when there is none.
pub fn read(dir: &Path) -> Result<ScrapeLog, String> {
    let path = dir.join(METRICS_FILE);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ScrapeLog::default()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut log = ScrapeLog::default();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(&line).map_err(|e| format!("{} line {}: {e}", path.display(), i + 1))? {
            Line::Endpoint(e) => log.endpoints.push(e),
            Line::Scrape(r) => log.records.push(r),
        }
    }
    Ok(log)
}
