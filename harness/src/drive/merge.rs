//! `harness merge OUT DIR...`: the shard folders of one sharded run and the
//! chaos runner's folder become one run folder, judged as one run. First
//! every input is checked (one scenario, one seed, one N, one start instant,
//! every shard index exactly once, every shard valid, a chaos runner when the
//! scenario has faults) and a merge that cannot be exact is refused (exit 2)
//! with the problem named. Then:
//!
//! - the ledgers are merged k-way by attempt end time, streamed (one record
//!   per shard in memory), operation ids renumbered `op * N + K` so they stay
//!   unique; each record also goes into one `Recorder`, exactly as the
//!   engine recorded it (latency and slip are the ledger's run-clock
//!   microseconds), so the histograms, interval logs and time series are
//!   the ones one process would have written; the counts are the sum of the
//!   shards' totals, checked against the lines read (a truncated ledger
//!   makes the merged run invalid);
//! - the event logs are merged by time, each event tagged with its source;
//! - then the single run's judge (drive/lifecycle.rs `judge`: attribution
//!   against the chaos runner's windows, affinity, budgets, the audit
//!   fetched once now that every shard has finished, gates, summary.json)
//!   and the single run's report, plus a `shards` table.
//!
//! Not for: playing traffic or faults.

use std::collections::BinaryHeap;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use serde_json::Value;

use crate::chaos::faults::ChaosReport;
use crate::drive::chaos_only::{CHAOS_RUNNER_FILE, ChaosRunnerRecord};
use crate::drive::lifecycle::{self, FullRun, LifecycleOptions};
use crate::drive::run::{self, Executed, RunOptions};
use crate::drive::shard::{ShardInfo, ShardRow};
use crate::judge::summary::{SUMMARY_FILE, Summary};
use crate::judge::verdict::EXIT_INVALID;
use crate::record::events::{EVENTS_FILE, EventLog};
use crate::record::ledger::{AttemptRecord, LEDGER_FILE, Ledger, Totals};
use crate::record::recorder::Recorder;
use crate::scenario;
use crate::traffic::engine::{self, Book, EngineOutcome, Live};

/// The copy of the scenario file a shard keeps in its folder (the merge judges with it).
pub const SCENARIO_COPY: &str = "scenario.json";

/// `harness merge`'s arguments.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The merged run folder (created).
    pub out: PathBuf,
    /// The shard folders and the chaos runner's folder, in any order.
    #[arg(required = true, num_args = 1..)]
    pub dirs: Vec<PathBuf>,
    /// Base URL of the target for the audit, replacing the shards' target.
    #[arg(long)]
    pub target: Option<String>,
    /// Allow a target that is not on loopback.
    #[arg(long)]
    pub allow_remote: bool,
    #[command(flatten)]
    pub baseline: crate::cli::BaselineArgs,
}

/// One shard folder as found.
struct ShardDir {
    dir: PathBuf,
    info: ShardInfo,
    summary: Summary,
}

/// The checked inputs.
struct Inputs {
    shards: Vec<ShardDir>,
    chaos: Option<(PathBuf, ChaosRunnerRecord)>,
    scenario: scenario::Scenario,
}

/// Why a merge was refused (exit 2, nothing written).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(String);

fn refuse<T>(msg: impl Into<String>) -> Result<T, Refused> {
    Err(Refused(msg.into()))
}

/// Reads and checks every input folder.
fn inputs(out: &Path, dirs: &[PathBuf]) -> Result<Inputs, Refused> {
    // Writing the merged ledger over a shard's would destroy what is read.
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if let Some(d) = dirs.iter().find(|d| same(d, out)) {
        return refuse(format!("OUT {} is also an input folder: give the merged run its own folder", d.display()));
    }
    let mut shards: Vec<ShardDir> = Vec::new();
    let mut chaos: Option<(PathBuf, ChaosRunnerRecord)> = None;
    for dir in dirs {
        let runner = dir.join(CHAOS_RUNNER_FILE);
        let summary_path = dir.join(SUMMARY_FILE);
        if runner.is_file() {
            let text = std::fs::read_to_string(&runner).map_err(|e| Refused(format!("{}: {e}", runner.display())))?;
            let rec: ChaosRunnerRecord = serde_json::from_str(&text)
                .map_err(|e| Refused(format!("{}: not a chaos runner's record: {e}", runner.display())))?;
            if let Some((other, _)) = &chaos {
                return refuse(format!(
                    "two chaos runner folders ({} and {}): a sharded run has one chaos runner",
                    other.display(),
                    dir.display()
                ));
            }
            chaos = Some((dir.clone(), rec));
        } else if summary_path.is_file() {
            let text = std::fs::read_to_string(&summary_path)
                .map_err(|e| Refused(format!("{}: {e}", summary_path.display())))?;
            let summary: Summary = serde_json::from_str(&text)
                .map_err(|e| Refused(format!("{}: not a run's summary.json: {e}", summary_path.display())))?;
            let Some(info) = summary.shard.clone() else {
                return refuse(format!(
                    "{}: a run that was not sharded (its summary.json has no `shard`); merge takes the folders of `harness run --shard K/N`",
                    dir.display()
                ));
            };
            shards.push(ShardDir { dir: dir.clone(), info, summary });
        } else {
            return refuse(format!(
                "{}: neither a shard's run folder (summary.json) nor a chaos runner's folder ({CHAOS_RUNNER_FILE})",
                dir.display()
            ));
        }
    }
    let scenario = check_shards(&mut shards, &chaos)?;
    Ok(Inputs { shards, chaos, scenario })
}

/// One scenario file, seed, N and start instant; every index once; every
/// shard valid; a chaos runner of the same run when there are faults.
/// Sorts the shards by index; returns the scenario they played.
fn check_shards(
    shards: &mut [ShardDir],
    chaos: &Option<(PathBuf, ChaosRunnerRecord)>,
) -> Result<scenario::Scenario, Refused> {
    let Some(first) = shards.first() else {
        return refuse("no shard folder among the inputs (only a chaos runner's)");
    };
    let (n, hash, seed, at) =
        (first.info.count, first.info.scenario_hash.clone(), first.info.seed, first.info.start_at_unix_ms);
    for s in shards.iter() {
        let d = s.dir.display();
        if s.info.scenario_hash != hash {
            return refuse(format!(
                "{d}: shard of a different scenario file (fingerprint {} vs {hash} in {})",
                s.info.scenario_hash,
                first.dir.display()
            ));
        }
        if s.info.seed != seed {
            return refuse(format!("{d}: seed {} differs from {seed} in {}", s.info.seed, first.dir.display()));
        }
        if s.info.count != n {
            return refuse(format!("{d}: shard of N={} but {} is of N={n}", s.info.count, first.dir.display()));
        }
        if s.info.start_at_unix_ms != at {
            return refuse(format!(
                "{d}: --start-at {} ms differs from {at} ms in {}: shards of one run share one start instant",
                s.info.start_at_unix_ms,
                first.dir.display()
            ));
        }
    }
    for k in 0..n {
        let with: Vec<&ShardDir> = shards.iter().filter(|s| s.info.index == k).collect();
        match with.as_slice() {
            [] => return refuse(format!("shard {k}/{n} is missing: give all {n} shard folders")),
            [_] => {}
            [a, b, ..] => {
                return refuse(format!("shard {k}/{n} given twice ({} and {})", a.dir.display(), b.dir.display()));
            }
        }
    }
    if let Some(bad) = shards.iter().find(|s| !s.summary.validity.valid) {
        return refuse(format!(
            "shard {}/{n} ({}) did not run validly, so the merged run cannot be valid: {}",
            bad.info.index,
            bad.dir.display(),
            bad.summary.validity.problems.join("; ")
        ));
    }
    shards.sort_by_key(|s| s.info.index);
    let scenario_path = first_dir(shards).join(SCENARIO_COPY);
    match crate::drive::shard::scenario_hash(&scenario_path) {
        Ok(h) if h == hash => {}
        Ok(h) => return refuse(format!("{}: fingerprint {h}, but the shard recorded {hash}", scenario_path.display())),
        Err(e) => return refuse(format!("{}: {e} (a shard keeps its scenario file there)", scenario_path.display())),
    }
    let mut scenario = scenario::load(&scenario_path).map_err(|e| Refused(format!("{e}")))?;
    scenario.seed = seed;
    match chaos {
        None if !scenario.chaos.is_empty() => {
            return refuse(format!(
                "the scenario has {} fault(s) but no chaos runner's folder was given (harness chaos --out DIR)",
                scenario.chaos.len()
            ));
        }
        Some((dir, rec)) if rec.scenario_hash != hash || rec.seed != seed || rec.start_at_unix_ms != at => {
            return refuse(format!(
                "{}: the chaos runner played another scenario, seed or start instant than the shards",
                dir.display()
            ));
        }
        _ => {}
    }
    Ok(scenario)
}

fn first_dir(shards: &[ShardDir]) -> &Path {
    shards.first().map_or(Path::new("."), |s| s.dir.as_path())
}

/// The chaos runner's faults as the single run's fault runner reports them.
fn chaos_report(chaos: &Option<(PathBuf, ChaosRunnerRecord)>, problems: &mut Vec<String>) -> ChaosReport {
    match chaos {
        Some((dir, rec)) => {
            problems.extend(rec.problems.iter().map(|p| format!("chaos runner ({}): {p}", dir.display())));
            ChaosReport {
                faults: rec.faults.clone(),
                skipped: rec.skipped.clone(),
                healthy_at_end: rec.healthy_at_end,
                end_health: rec.end_health.clone(),
            }
        }
        // No faults in the scenario: nothing could have left it unhealthy.
        None => ChaosReport { healthy_at_end: true, ..ChaosReport::default() },
    }
}

/// The environment of the shard whose machine was busiest, its reason
/// naming the shard: a merged run is as trustworthy as its most disturbed
/// generator (the merge itself samples no machine: it plays nothing).
fn busiest_generator(shards: &[ShardDir]) -> Option<crate::host::machine::Assessment> {
    let (s, env) = shards
        .iter()
        .filter_map(|s| s.summary.environment.as_ref().map(|e| (s, e)))
        .max_by(|a, b| a.1.interference_peak.total_cmp(&b.1.interference_peak))?;
    let mut env = env.clone();
    if !env.reason.is_empty() {
        env.reason = format!("shard {} ({}): {}", s.info.index, s.info.host, env.reason);
    }
    env.undecided_gates.clear();
    Some(env)
}

/// One shard's ledger being read, with its next record.
struct Cursor {
    shard: u64,
    rdr: csv::Reader<std::fs::File>,
    headers: csv::ByteRecord,
    line: csv::ByteRecord,
    path: PathBuf,
}

impl Cursor {
    fn next(&mut self) -> Result<Option<AttemptRecord>, String> {
        let err = |e: csv::Error| format!("{}: {e}", self.path.display());
        if !self.rdr.read_byte_record(&mut self.line).map_err(err)? {
            return Ok(None);
        }
        self.line.deserialize(Some(&self.headers)).map(Some).map_err(err)
    }
}

/// A record waiting in the k-way merge, ordered by end time (then shard).
struct Head(AttemptRecord, usize);

impl PartialEq for Head {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == std::cmp::Ordering::Equal
    }
}
impl Eq for Head {}
impl PartialOrd for Head {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Head {
    // Reversed: BinaryHeap is a max-heap and the earliest end comes first.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        o.0.end_ms.total_cmp(&self.0.end_ms).then(o.1.cmp(&self.1))
    }
}

/// Merges the shards' ledgers into `ledger` and `recorder`; returns how many
/// records each shard's ledger held.
fn merge_ledgers(shards: &[ShardDir], ledger: &mut Ledger, recorder: &mut Recorder) -> Result<Vec<u64>, String> {
    let n = shards.len() as u64;
    let mut cursors = Vec::with_capacity(shards.len());
    for s in shards {
        let path = s.dir.join(LEDGER_FILE);
        let err = |e: csv::Error| format!("{}: {e}", path.display());
        let mut rdr = csv::Reader::from_path(&path).map_err(err)?;
        let headers = rdr.byte_headers().map_err(err)?.clone();
        cursors.push(Cursor { shard: s.info.index, rdr, headers, line: csv::ByteRecord::new(), path });
    }
    let steps: Vec<String> = recorder.step_names().to_vec();
    let mut heap = BinaryHeap::with_capacity(cursors.len());
    for (i, c) in cursors.iter_mut().enumerate() {
        if let Some(r) = c.next()? {
            heap.push(Head(r, i));
        }
    }
    let mut counts = vec![0u64; cursors.len()];
    let us = |ms: f64| (ms * 1000.0).round().max(0.0) as u64;
    while let Some(Head(mut r, i)) = heap.pop() {
        counts[i] += 1;
        r.op = r.op * n + cursors[i].shard;
        ledger.write_record(&r.view());
        // The engine's own values: run-clock microseconds (traffic/engine.rs).
        let latency = us(r.end_ms).saturating_sub(us(r.intended_ms));
        let slip = us(r.start_ms).saturating_sub(us(r.intended_ms));
        let step = steps
            .iter()
            .position(|s| *s == r.step)
            .ok_or_else(|| format!("{}: step {:?} is not in the scenario", cursors[i].path.display(), r.step))?;
        recorder.record(step, r.outcome(), latency, slip, r.end_ms);
        if let Some(next) = cursors[i].next()? {
            heap.push(Head(next, i));
        }
    }
    Ok(counts)
}

/// Merges the event logs (shards' and the chaos runner's) by time into
/// `out`, each event tagged with `source` ("shard K" or "chaos").
fn merge_events(inputs: &Inputs, out: &Path) -> Result<(), String> {
    let mut sources: Vec<(String, PathBuf)> =
        inputs.shards.iter().map(|s| (format!("shard {}", s.info.index), s.dir.join(EVENTS_FILE))).collect();
    if let Some((dir, _)) = &inputs.chaos {
        sources.push(("chaos".into(), dir.join(EVENTS_FILE)));
    }
    let mut readers = Vec::new();
    for (name, path) in &sources {
        let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        readers.push((name.clone(), BufReader::new(f).lines()));
    }
    let mut next = |i: usize| -> Option<(f64, Value)> {
        for line in readers[i].1.by_ref() {
            let Ok(line) = line else { return None };
            if let Ok(mut v) = serde_json::from_str::<Value>(&line) {
                let t = v.get("t_ms").and_then(Value::as_f64).unwrap_or(0.0);
                if let Some(o) = v.as_object_mut() {
                    o.insert("source".into(), Value::String(readers[i].0.clone()));
                }
                return Some((t, v));
            }
        }
        None
    };
    let mut heads: Vec<Option<(f64, Value)>> = (0..sources.len()).map(&mut next).collect();
    let file = std::fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut w = BufWriter::new(file);
    loop {
        let pick = heads
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.as_ref().map(|(t, _)| (i, *t)))
            .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        let Some((i, _)) = pick else { break };
        if let Some((_, v)) = heads[i].take() {
            serde_json::to_writer(&mut w, &v).map_err(|e| format!("{}: {e}", out.display()))?;
            w.write_all(b"\n").map_err(|e| format!("{}: {e}", out.display()))?;
        }
        heads[i] = next(i);
    }
    w.flush().map_err(|e| format!("{}: {e}", out.display()))
}

/// The merge, start to finish; `Err` is a refusal (nothing judged).
pub async fn merge(a: &MergeArgs) -> Result<(FullRun, scenario::Scenario), Refused> {
    let inputs = inputs(&a.out, &a.dirs)?;
    let first = &inputs.shards[0];
    let opts = RunOptions {
        target: Some(a.target.clone().unwrap_or_else(|| first.summary.scenario.target.clone())),
        out: Some(a.out.clone()),
        rate_scale: first.summary.scenario.rate_scale,
        allow_remote: a.allow_remote,
        seed: Some(first.info.seed),
        baseline: a.baseline.load().map_err(Refused)?,
        judge_only: true,
        ..RunOptions::default()
    };
    let report_scenario = {
        let mut s = inputs.scenario.clone();
        s.seed = first.info.seed;
        s
    };
    let p = run::prepare(inputs.scenario.clone(), &opts).map_err(|e| Refused(e.to_string()))?;
    let mut problems = Vec::new();
    let chaos_report = chaos_report(&inputs.chaos, &mut problems);

    let mut totals = Totals::default();
    for s in &inputs.shards {
        totals.add(&s.summary.totals);
    }
    let ledger_path = p.dir.join(LEDGER_FILE);
    let mut ledger = Ledger::create(&ledger_path).map_err(|e| Refused(format!("{}: {e}", ledger_path.display())))?;
    let mut recorder = Recorder::new(engine::step_names(&p.scenario));
    match merge_ledgers(&inputs.shards, &mut ledger, &mut recorder) {
        Ok(counts) => {
            for (s, got) in inputs.shards.iter().zip(counts) {
                if got != s.summary.totals.attempts {
                    problems.push(format!(
                        "shard {} ({}): its ledger has {got} attempt(s) but its summary counts {}: the ledger is incomplete",
                        s.info.index,
                        s.dir.display(),
                        s.summary.totals.attempts
                    ));
                }
            }
        }
        Err(e) => problems.push(format!("cannot merge the ledgers: {e}")),
    }
    ledger.set_totals(totals);
    let end_ms = inputs.shards.iter().map(|s| s.summary.run.duration_s * 1000.0).fold(0.0, f64::max);
    recorder.finish(end_ms);
    for s in &inputs.shards {
        for row in &s.summary.series {
            recorder.add_active_shoppers(row.t_s, row.active_shoppers);
        }
    }
    let events_path = p.dir.join(EVENTS_FILE);
    if let Err(e) = merge_events(&inputs, &events_path) {
        problems.push(format!("cannot merge the event logs: {e}"));
    }
    let start_at = UNIX_EPOCH + Duration::from_micros((first.info.start_at_unix_ms * 1000.0) as u64);
    // The merged log's clock: its zero is T; events the merge adds carry
    // times relative to now, which is after every shard's end.
    let zero = Instant::now()
        .checked_sub(SystemTime::now().duration_since(start_at).unwrap_or_default())
        .unwrap_or_else(Instant::now);
    let events =
        EventLog::append_at(&events_path, zero).map_err(|e| Refused(format!("{}: {e}", events_path.display())))?;
    let live = Arc::new(Live::default());
    let arrived: u64 = inputs.shards.iter().map(|s| s.summary.run.shoppers_arrived).sum();
    live.arrived.store(arrived, Ordering::Relaxed);
    let ex = Executed {
        outcome: EngineOutcome {
            book: Book { ledger, recorder },
            cut_off_shoppers: inputs.shards.iter().map(|s| s.summary.run.cut_off_shoppers).sum(),
            interrupted: inputs.shards.iter().any(|s| s.summary.run.interrupted),
            end_ms,
            peak_active_shoppers: inputs.shards.iter().map(|s| s.summary.run.peak_active_shoppers).sum(),
        },
        events,
        wall_start: start_at,
        ledger_path,
        live,
        problems,
        extra_gates: Vec::new(),
        chaos: Default::default(),
        traffic_peak_rss_mb: inputs.shards.iter().filter_map(|s| s.summary.run.traffic_peak_rss_mb).reduce(f64::max),
        // The generators' CPU together (each shard's own in its summary).
        traffic_cpu_s: inputs.shards.iter().filter_map(|s| s.summary.run.traffic_cpu_s).reduce(|a, b| a + b),
        machine: Vec::new(),
        // No process of the target was the shards' to read (they launch
        // nothing): a resource gate on a merged run fails as not observed.
        resources: Vec::new(),
        resources_every: crate::host::resources::period_for(p.schedule.duration),
        // Every shard scraped the same endpoints on the same clock (T is
        // zero): the lowest shard's scrapes are the run's.
        scrapes: inputs
            .shards
            .iter()
            .min_by_key(|s| s.info.index)
            .and_then(|s| crate::scrape::read(&s.dir).ok())
            .unwrap_or_default(),
        start_offset_ms: None,
        environment: busiest_generator(&inputs.shards),
        shards: inputs
            .shards
            .iter()
            .map(|s| ShardRow {
                index: s.info.index,
                host: s.info.host.clone(),
                shoppers: s.info.shoppers,
                operations: s.summary.totals.operations,
                slip_p99_ms: s.summary.schedule_slip.p99_ms,
                start_offset_ms: s.info.start_offset_ms,
                dir: s.dir.display().to_string(),
            })
            .collect(),
    };
    let lo = LifecycleOptions::default();
    let judged = lifecycle::judge(&p, ex, chaos_report, &lo).await;
    let target_stop = match &inputs.chaos {
        Some((_, rec)) => format!("by the chaos runner: {}", rec.target_stop),
        None => "not started or stopped by the shards or the merge".to_string(),
    };
    let full = judged.finish(&p.dir, target_stop).map_err(|e| Refused(e.to_string()))?;
    Ok((full, report_scenario))
}

/// `harness merge`: returns the exit code (0 pass, 1 gates failed, 2 invalid or refused).
pub fn main(a: MergeArgs) -> i32 {
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("harness: cannot start the async runtime: {e}");
            return EXIT_INVALID;
        }
    };
    let (full, scenario) = match rt.block_on(merge(&a)) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("harness: merge refused: {e}");
            println!("verdict: invalid (exit {EXIT_INVALID}): nothing merged");
            return EXIT_INVALID;
        }
    };
    let s = &full.summary;
    for p in &s.validity.problems {
        println!("  INVALID: {p}");
    }
    for g in &s.gates {
        println!("  gate {}: {} ({})", g.name, if g.passed { "pass" } else { "FAIL" }, g.detail);
    }
    let target = format!("{} (merged from {} shards)", s.scenario.target, s.shards.len());
    match crate::report::write_for_run(&a.out, &scenario, "merged run", &target, full.chaos.audit.as_ref()) {
        Ok(w) => {
            println!("  report: {}", w.index_html.display());
            println!("verdict: {} (exit {}); merged run in {}", s.verdict.as_str(), s.exit_code, a.out.display());
            s.exit_code
        }
        Err(e) => {
            eprintln!("harness: the merge finished but its report could not be written: {e:#}");
            EXIT_INVALID
        }
    }
}

/// Where a shard keeps its copy of the scenario file (so the merge judges
/// with the very file the shards played; its fingerprint is checked).
pub fn keep_scenario_copy(scenario_file: &Path, run_dir: &Path) -> std::io::Result<()> {
    std::fs::copy(scenario_file, run_dir.join(SCENARIO_COPY)).map(|_| ())
}
