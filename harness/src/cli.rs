//! Command-line interface: argument parsing and the mapping of results to
//! exit codes (docs/EXIT_CODES.md). Everything else is in the library.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::{Args, Parser, Subcommand};

use crate::chaos::faults::ChaosOptions;
use crate::chaos::target::launch_from_command_line;
use crate::drive::lifecycle::{self, LifecycleOptions};
use crate::drive::run::RunOptions;
use crate::drive::shard::{self, Shard};
use crate::judge::verdict::{EXIT_INVALID, EXIT_PASS};
use crate::scenario;
use crate::traffic::engine::EngineOptions;

#[derive(Debug, Parser)]
#[command(name = "harness", version, about = "Black Friday load-and-chaos harness")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// `harness run`'s arguments.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The scenario file (JSON).
    pub scenario: PathBuf,
    /// Base URL of the target, replacing the scenario's (e.g. http://127.0.0.1:8080).
    #[arg(long)]
    pub target: Option<String>,
    /// Output folder (default reports/<scenario name>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Multiply every arrival rate by this factor.
    #[arg(long, default_value_t = 1.0)]
    pub rate_scale: f64,
    /// Allow a target that is not on loopback.
    #[arg(long)]
    pub allow_remote: bool,
    /// Replace the scenario's random seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// No live progress line.
    #[arg(long)]
    pub quiet: bool,
    /// Seconds shoppers may still run after the last arrival before the
    /// run is cut off (and invalid). Default: the longest journey the
    /// scenario's timeouts allow, plus 5 s.
    #[arg(long)]
    pub drain_timeout: Option<f64>,
    #[command(flatten)]
    pub target_process: TargetArgs,
    /// Play only shard K of N (0 <= K < N): shoppers i with i mod N = K.
    /// A shard runs no faults, no audit and no gates; its exit code says
    /// only whether it ran validly (docs/DISTRIBUTED.md).
    #[arg(long, value_name = "K/N", requires = "start_at", conflicts_with_all = ["launch", "attach_pid", "pid_file"])]
    pub shard: Option<Shard>,
    /// Start the run clock at this instant (Unix ms or RFC 3339 in UTC) and
    /// wait until then; shards of one run share it.
    #[arg(long, value_name = "T", value_parser = shard::parse_start_at)]
    pub start_at: Option<SystemTime>,
    #[command(flatten)]
    pub baseline: BaselineArgs,
}

/// `--baseline` and its options, as `harness run` and `harness merge` take them.
#[derive(Debug, Args)]
pub struct BaselineArgs {
    /// A previous run's summary.json (of run, merge or compare): fail a gate
    /// when dropped requests increased or the percentile got slower by more
    /// than --max-regression.
    #[arg(long, value_name = "OLD/summary.json")]
    pub baseline: Option<PathBuf>,
    /// Percentile the baseline check compares: p50, p90, p99, p99_9 or max.
    #[arg(long, default_value = "p99")]
    pub baseline_percentile: String,
    /// Largest allowed slowdown against the baseline, as a fraction (0.2 = 20%).
    #[arg(long, default_value_t = 0.2)]
    pub max_regression: f64,
}

impl BaselineArgs {
    /// The baseline to gate against, read and checked; errors name the flag or file.
    pub fn load(&self) -> Result<Option<crate::judge::baseline::Baseline>, String> {
        let Some(path) = &self.baseline else { return Ok(None) };
        let options = crate::judge::baseline::BaselineOptions {
            percentile: self.baseline_percentile.clone(),
            max_regression: self.max_regression,
            ..Default::default()
        };
        crate::judge::baseline::check_options(&options).map_err(|e| e.to_string())?;
        let old = crate::judge::baseline::read(path).map_err(|e| format!("--baseline: {e:#}"))?;
        Ok(Some(crate::judge::baseline::Baseline { old, options }))
    }
}

/// `harness chaos`'s arguments.
#[derive(Debug, Args)]
pub struct ChaosArgs {
    /// The scenario file (JSON): the same file the shards play.
    pub scenario: PathBuf,
    /// The shared start instant (Unix ms or RFC 3339 in UTC).
    #[arg(long, value_name = "T", value_parser = shard::parse_start_at)]
    pub start_at: SystemTime,
    /// Folder for the fault windows and the target's lifecycle events.
    #[arg(long)]
    pub out: PathBuf,
    /// Base URL of the target, replacing the scenario's.
    #[arg(long)]
    pub target: Option<String>,
    /// Allow a target that is not on loopback.
    #[arg(long)]
    pub allow_remote: bool,
    /// Seconds a launched target stays up after the faults, for shards
    /// still playing (default: the longest journey the scenario allows + 5 s).
    #[arg(long, value_name = "SECONDS")]
    pub hold: Option<f64>,
    #[command(flatten)]
    pub target_process: TargetArgs,
}

/// How `harness run` and `harness chaos` reach the target's processes, and
/// how long it may take to recover.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Launch the target with this command line (split like a shell),
    /// replacing the scenario's target.launch; its environment, stop
    /// signal and stop timeout still come from the scenario.
    #[arg(long, value_name = "CMD", conflicts_with_all = ["attach_pid", "pid_file"])]
    pub launch: Option<String>,
    /// Attach to the running target whose master has this pid (faults
    /// act on its process tree; it is not stopped at the end).
    #[arg(long, value_name = "PID", conflicts_with = "pid_file")]
    pub attach_pid: Option<i32>,
    /// Attach to the running target whose master pid is in this file
    /// (re-read when a deploy replaces the master).
    #[arg(long, value_name = "PATH")]
    pub pid_file: Option<PathBuf>,
    /// Seconds the target may take to be healthy again after the run
    /// (paused workers resumed, worker count back); still unhealthy
    /// then makes the run invalid.
    #[arg(long, value_name = "SECONDS", default_value_t = lifecycle::DEFAULT_HEALTH_TIMEOUT.as_secs_f64())]
    pub health_timeout: f64,
    /// Seconds a fault may take to recover (back to steady state) before
    /// it is recorded as unrecovered; its window then lasts to the end.
    #[arg(long, value_name = "SECONDS", default_value_t = ChaosOptions::default().recovery_timeout.as_secs_f64())]
    pub recovery_timeout: f64,
}

impl TargetArgs {
    /// The lifecycle's options from these flags; errors name the flag.
    fn lifecycle(self, s: &scenario::Scenario) -> Result<LifecycleOptions, String> {
        let health_timeout = seconds("--health-timeout", self.health_timeout)?;
        let recovery_timeout = seconds("--recovery-timeout", self.recovery_timeout)?;
        let launch = self
            .launch
            .map(|cmd| launch_from_command_line(&cmd, s.target.launch.as_ref()))
            .transpose()
            .map_err(|e| format!("--launch: {e}"))?;
        if let Some(pid) = self.attach_pid.filter(|p| *p <= 0) {
            return Err(format!("--attach-pid {pid}: not a process id"));
        }
        Ok(LifecycleOptions {
            launch,
            attach_pid: self.attach_pid,
            pid_file: self.pid_file,
            health_timeout,
            chaos: ChaosOptions { recovery_timeout, ..ChaosOptions::default() },
            ..LifecycleOptions::default()
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Play a scenario against its target and write reports/<run>/.
    Run(RunArgs),
    /// Check a scenario file and say what is wrong with it.
    Validate {
        /// The scenario file (JSON).
        file: PathBuf,
    },
    /// Play a scenario against one process and against a cluster; one report
    /// with both side by side (OUT/index.html, summary.json, junit.xml).
    Compare(crate::drive::compare::CompareArgs),
    /// Play only the scenario's faults on a sharded run's shared clock
    /// (docs/DISTRIBUTED.md); writes OUT/chaos-runner.json and events.jsonl.
    Chaos(ChaosArgs),
    /// Merge the shard folders and the chaos runner's folder into one run
    /// folder in OUT, judged as one run (docs/DISTRIBUTED.md).
    Merge(crate::drive::merge::MergeArgs),
    /// Rebuild a run folder's index.html from its report.json, without re-running.
    Report {
        /// The run folder (holds report.json).
        run_dir: PathBuf,
    },
}

/// Runs the command; returns the process exit code.
pub fn main_with(cli: Cli) -> i32 {
    match cli.command {
        Command::Compare(args) => crate::drive::compare::main(args),
        Command::Report { run_dir } => match crate::report::regenerate(&run_dir) {
            Ok(page) => {
                println!("{}", page.display());
                EXIT_PASS
            }
            Err(e) => {
                eprintln!("harness: report: {e:#}");
                EXIT_INVALID
            }
        },
        Command::Validate { file } => match scenario::load(&file) {
            Ok(s) => {
                println!(
                    "{}: ok (scenario {:?}, {} shoppers, {} journeys, {} faults)",
                    file.display(),
                    s.name,
                    s.shoppers,
                    s.journeys.len(),
                    s.chaos.len()
                );
                EXIT_PASS
            }
            Err(e) => {
                eprintln!("harness: {e}");
                EXIT_INVALID
            }
        },
        Command::Run(args) => run(args),
        Command::Chaos(args) => chaos(args),
        Command::Merge(args) => crate::drive::merge::main(args),
    }
}

/// `harness chaos`: exit 0 when every fault ran and the target was healthy
/// after them, 2 otherwise (the merge will then be invalid too).
fn chaos(a: ChaosArgs) -> i32 {
    let s = match scenario::load(&a.scenario) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("harness: {e}");
            return EXIT_INVALID;
        }
    };
    let opts = match chaos_options(a, &s) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("harness: {e}");
            return EXIT_INVALID;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("harness: cannot start the async runtime: {e}");
            return EXIT_INVALID;
        }
    };
    match rt.block_on(crate::drive::chaos_only::run(s, &opts)) {
        Ok(r) => {
            for f in &r.faults {
                println!("  fault {} ({}) at {:.0} ms: {}", f.label, f.action, f.start_ms, f.outcome);
            }
            for p in &r.problems {
                println!("  INVALID: {p}");
            }
            println!("chaos runner: {} faults, target {}; in {}", r.faults.len(), r.target_stop, opts.out.display());
            if r.problems.is_empty() { EXIT_PASS } else { EXIT_INVALID }
        }
        Err(e) => {
            eprintln!("harness: chaos: {e}");
            EXIT_INVALID
        }
    }
}

fn chaos_options(a: ChaosArgs, s: &scenario::Scenario) -> Result<crate::drive::chaos_only::ChaosRunOptions, String> {
    Ok(crate::drive::chaos_only::ChaosRunOptions {
        start_at: a.start_at,
        scenario_hash: shard::scenario_hash(&a.scenario).map_err(|e| format!("{}: {e}", a.scenario.display()))?,
        out: a.out,
        target: a.target,
        allow_remote: a.allow_remote,
        hold: a.hold.map(|x| seconds("--hold", x)).transpose()?,
        lifecycle: a.target_process.lifecycle(s)?,
    })
}

/// `harness run`: the full lifecycle (launch or attach to the target and
/// wait for it, faults alongside the traffic, attribution, audit, stop),
/// then the run's report. Returns the exit code the judge gave the run.
fn run(a: RunArgs) -> i32 {
    let mut s = match scenario::load(&a.scenario) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("harness: {e}");
            return EXIT_INVALID;
        }
    };
    if a.shard.is_some() {
        shard::shard_only_traffic(&mut s);
    }
    let scenario_file = a.scenario.clone();
    let (opts, lo) = match run_options(a, &s) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("harness: {e}");
            return EXIT_INVALID;
        }
    };
    let dir = opts.out.clone().unwrap_or_else(|| PathBuf::from("reports").join(&s.name));
    let report_target = report_target(&s, &opts, &lo);
    let report_scenario = s.clone();
    let sharded = opts.shard.is_some();
    match lifecycle::run_blocking(s, &opts, &lo) {
        Ok(full) => {
            if sharded && let Err(e) = crate::drive::merge::keep_scenario_copy(&scenario_file, &dir) {
                eprintln!("harness: cannot keep the scenario file in {}: {e}", dir.display());
                println!("verdict: invalid (exit {EXIT_INVALID}): the shard's folder is incomplete");
                return EXIT_INVALID;
            }
            print_result(&full.summary);
            // Without its report the run's output is incomplete: say
            // so and call it invalid rather than keep a silent verdict;
            // the verdict line comes last, with the code the process exits
            // with (issue 18: "verdict: pass (exit 0)", then exit 2).
            let s = &full.summary;
            let audit = full.chaos.audit.as_ref();
            match crate::report::write_for_run(&dir, &report_scenario, "run", &report_target, audit) {
                Ok(w) => {
                    println!("  report: {}", w.index_html.display());
                    println!("verdict: {} (exit {}); report in {}", s.verdict.as_str(), s.exit_code, dir.display());
                    s.exit_code
                }
                Err(e) => {
                    eprintln!("harness: the run finished but its report could not be written: {e:#}");
                    println!(
                        "verdict: invalid (exit {EXIT_INVALID}): the gates said {}, but the run's output in {} is incomplete",
                        s.verdict.as_str(),
                        dir.display()
                    );
                    EXIT_INVALID
                }
            }
        }
        Err(e @ crate::drive::run::StartError::Output { .. }) => {
            eprintln!("harness: the run's files could not be written: {e}");
            println!("verdict: invalid (exit {EXIT_INVALID}): the run's output is incomplete");
            EXIT_INVALID
        }
        Err(e) => {
            eprintln!("harness: cannot run: {e}");
            EXIT_INVALID
        }
    }
}

/// The run's and the lifecycle's options from the arguments; errors name the flag.
fn run_options(a: RunArgs, s: &scenario::Scenario) -> Result<(RunOptions, LifecycleOptions), String> {
    let drain_timeout = a.drain_timeout.map(|x| seconds("--drain-timeout", x)).transpose()?;
    let lo = a.target_process.lifecycle(s)?;
    let scenario_hash = match a.shard {
        Some(_) => shard::scenario_hash(&a.scenario).map_err(|e| format!("{}: {e}", a.scenario.display()))?,
        None => String::new(),
    };
    let opts = RunOptions {
        target: a.target,
        out: a.out,
        rate_scale: a.rate_scale,
        allow_remote: a.allow_remote,
        seed: a.seed,
        progress: !a.quiet,
        engine: EngineOptions { drain_timeout },
        shard: a.shard,
        start_at: a.start_at,
        scenario_hash,
        baseline: a.baseline.load()?,
        judge_only: false,
    };
    Ok((opts, lo))
}

/// For the report page: how the target was reached or started.
fn report_target(s: &scenario::Scenario, opts: &RunOptions, lo: &LifecycleOptions) -> String {
    let url = opts.target.clone().unwrap_or_else(|| s.target.base_url.clone());
    let attached = lo.attach_pid.is_some() || lo.pid_file.is_some();
    let launched = if attached { None } else { lo.launch.as_ref().or(s.target.launch.as_ref()) };
    match launched {
        Some(l) => format!(
            "{url}, started as {}",
            shlex::try_join(l.argv.iter().map(String::as_str)).unwrap_or_else(|_| l.argv.join(" "))
        ),
        None => url,
    }
}

/// A command-line number of seconds as a duration, or why it is not one.
fn seconds(flag: &str, x: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(x).map_err(|_| format!("{flag} {x}: must be a number of seconds >= 0"))
}

fn print_result(s: &crate::judge::summary::Summary) {
    let t = &s.totals;
    println!("{}: {}; {:.0} ops/s", s.scenario.name, s.totals_line(), s.throughput.goodput_per_s);
    if let Some(tls) = &s.tls {
        println!(
            "  {}; handshakes {} full, {} resumed; {} connection(s) closed without close_notify",
            tls.header(),
            tls.handshakes_full,
            tls.handshakes_resumed,
            tls.unclean_closes
        );
    }
    for (class, n) in t.attempts_failed_by_class.iter().filter(|(_, n)| **n > 0) {
        println!("  failed attempts {}: {n}", class.as_str());
    }
    if s.schedule_slip.harness_limited {
        println!(
            "  WARNING: the harness fell behind its schedule (slip p99 {:.1} ms > {} ms): latencies include its own lateness",
            s.schedule_slip.p99_ms, s.schedule_slip.limit_ms
        );
    }
    for f in &s.chaos.faults {
        let recovery = f.recovery_ms.map_or("never recovered".to_string(), |ms| format!("recovered in {ms:.0} ms"));
        println!(
            "  fault {} ({}, {}): {recovery}; {} first-attempt failures, {} recovered, {} dropped",
            f.label, f.action, f.outcome, f.failures.first_attempt_failures, f.failures.recovered, f.failures.dropped
        );
    }
    if let Some(o) =
        s.chaos.failures_outside_faults.as_ref().filter(|o| o.first_attempt_failures + o.retry_failures > 0)
    {
        println!(
            "  OUTSIDE any fault window: {} first-attempt failures, {} failed retries, {} recovered, {} dropped",
            o.first_attempt_failures, o.retry_failures, o.recovered, o.dropped
        );
    }
    if let Some(a) = &s.chaos.audit {
        println!(
            "  audit {}: {} lost, {} duplicates, {} failed-but-applied, {} oversold {}",
            a.verdict, a.lost, a.duplicates, a.failed_but_applied, a.oversold, a.reason
        );
    }
    let undecided = s.environment.as_ref().map(|e| e.undecided_gates.as_slice()).unwrap_or_default();
    for g in &s.gates {
        let status = match (g.passed, undecided.contains(&g.name)) {
            (_, true) => "UNKNOWN (busy machine)",
            (true, false) => "pass",
            (false, false) => "FAIL",
        };
        println!("  gate {}: {status} ({})", g.name, g.detail);
    }
    if let Some(e) = &s.environment {
        println!("  machine: {}", e.line());
    }
    for p in &s.validity.problems {
        println!("  INVALID: {p}");
    }
}
