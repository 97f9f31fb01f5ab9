//! The machine under a run: how much of its CPU went to work that is neither
//! the target nor the harness (other processes, and steal: time the
//! hypervisor gave to other guests), second by second, so that a run on a
//! busy machine is called inconclusive instead of red (gates.rs decides
//! with [`Assessment`]).
//!
//! All /proc reading of CPU time lives here: the calibration's CPU figures
//! (calibrate.rs) and the run's per-second sampler use the same counters.
//! The sampler is a plain thread, off the async runtime and the request
//! path; it reads /proc/stat and every /proc/<pid>/stat once a second (about
//! a millisecond for a few hundred processes).
//!
//! Other work = (user + nice + system of the whole machine, /proc/stat) minus
//! the user + system time of the harness's and the target's process trees.
//! Taking the machine's total (rather than summing the other processes)
//! counts short-lived processes too (a compiler job that starts and exits
//! within a second never shows in a /proc listing). irq and softirq time are
//! left out: on loopback most of it is the run's own network traffic.
//!
//! Not for: judging gates (gates.rs), the target's process tree as chaos
//! sees it (procs.rs), nor drawing (report/).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::host::procs::{self, Pid, ProcInfo};
use crate::scenario::Environment;

/// Clock ticks per second of /proc CPU times: USER_HZ, 100 on every Linux
/// architecture the harness runs on (proc(5)).
pub const USER_HZ: f64 = 100.0;
/// The per-second file in a run folder.
pub const MACHINE_FILE: &str = "machine.csv";
/// The threshold applies to the busiest window of this many seconds (the
/// mean of each run of consecutive seconds, then the highest). See
/// [`assess`] for why neither the whole-run mean nor one second.
pub const WINDOW_S: usize = 5;
/// On a busy machine a gate that passed stands only if the harness kept its
/// schedule: p99 slip within this. Not the 10 ms above which the harness
/// calls itself the bottleneck (summary.rs): that is about latency figures,
/// which count from the planned send time, so a late harness only makes the
/// server look worse. What could make a pass hollow is load that never
/// arrived when planned; within a tenth of a second, every second's
/// arrivals still reach the server in that second or the next. (Measured: a
/// light run with three busy loops on 2 CPUs slipped 21 to 39 ms at p99.)
pub const KEPT_SCHEDULE_SLIP_P99_MS: f64 = 100.0;
/// Calibration bursts retried on a busy machine before giving up.
pub const CALIBRATION_TRIES: usize = 3;

/// The machine's CPU counters: the aggregate `cpu` line of /proc/stat, in ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuStat {
    /// user + nice + system: time spent running processes.
    pub busy: u64,
    pub steal: u64,
    /// Every field (user .. steal): the capacity that elapsed.
    pub total: u64,
}

/// Parse /proc/stat's first line: `cpu user nice system idle iowait irq softirq steal ...`.
pub fn parse_proc_stat(text: &str) -> Result<CpuStat, String> {
    let line = text.lines().find(|l| l.starts_with("cpu ")).ok_or("no aggregate 'cpu' line")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse::<u64>().map_err(|e| format!("{x:?}: {e}")))
        .collect::<Result<_, _>>()?;
    if f.len() < 8 {
        return Err(format!("{} fields on the cpu line, expected at least 8", f.len()));
    }
    // guest and guest_nice (fields 9, 10) are already counted in user and nice.
    Ok(CpuStat { busy: f[0] + f[1] + f[2], steal: f[7], total: f[..8].iter().sum() })
}

pub fn read_cpu_stat() -> Result<CpuStat, String> {
    let text = std::fs::read_to_string("/proc/stat").map_err(|e| format!("cannot read /proc/stat: {e}"))?;
    parse_proc_stat(&text).map_err(|e| format!("cannot parse /proc/stat: {e}"))
}

/// Pids of `roots` and all their live descendants in a snapshot.
pub fn trees_in(all: &BTreeMap<Pid, ProcInfo>, roots: &[Pid]) -> Vec<Pid> {
    let mut out: Vec<Pid> = Vec::new();
    for &r in roots {
        if all.contains_key(&r) {
            out.push(r);
        }
        out.extend(procs::descendants_in(all, r).iter().map(|p| p.pid));
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// CPU seconds of `pid` and its descendants (a master and its workers).
pub fn tree_cpu_s(pid: Pid) -> Option<f64> {
    let all = procs::snapshot().ok()?;
    all.get(&pid)?;
    let ticks: u64 = trees_in(&all, &[pid]).iter().filter_map(|p| all.get(p)).map(|p| p.cpu_ticks).sum();
    Some(ticks as f64 / USER_HZ)
}

/// CPU seconds this process has used (all threads).
pub fn own_cpu_s() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_SELF)
        .map(|u| {
            let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
            t(u.user_time()) + t(u.system_time())
        })
        .unwrap_or(0.0)
}

/// A process as seen in two readings: a pid reused by a new process has another start time.
type ProcKey = (Pid, u64);

/// The machine and every process at one instant.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    pub stat: CpuStat,
    /// CPU ticks and name of every process, and which ones are ours.
    procs: BTreeMap<ProcKey, (String, u64)>,
    harness: Vec<ProcKey>,
    target: Vec<ProcKey>,
}

impl Reading {
    /// Read the machine; `target`: the target's top process, if there is one.
    /// A process that the harness launched is in both trees; it counts as target.
    pub fn take(target: Option<Pid>) -> Result<Reading, String> {
        let stat = read_cpu_stat()?;
        let all = procs::snapshot().map_err(|e| e.to_string())?;
        let key = |pid: &Pid| all.get(pid).map(|p| (p.pid, p.start_ticks));
        let target_pids = target.map(|t| trees_in(&all, &[t])).unwrap_or_default();
        let me = std::process::id() as Pid;
        let harness: Vec<ProcKey> =
            trees_in(&all, &[me]).iter().filter(|p| !target_pids.contains(p)).filter_map(key).collect();
        let target: Vec<ProcKey> = target_pids.iter().filter_map(key).collect();
        let procs = all.values().map(|p| ((p.pid, p.start_ticks), (p.comm.clone(), p.cpu_ticks))).collect();
        Ok(Reading { stat, procs, harness, target })
    }
}

/// What the machine did between two readings, as fractions of its CPU
/// capacity over that time (1.0 = every CPU busy the whole time).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Interval {
    pub other_cpu: f64,
    pub steal: f64,
    pub target_cpu: f64,
    pub harness_cpu: f64,
    /// The other processes that used the most, highest first, with their share.
    pub busiest: Vec<(String, f64)>,
}

impl Interval {
    /// Other processes and steal together: the work that was not this run's.
    pub fn interference(&self) -> f64 {
        self.other_cpu + self.steal
    }

    pub fn between(a: &Reading, b: &Reading) -> Interval {
        let total = b.stat.total.saturating_sub(a.stat.total);
        if total == 0 {
            return Interval::default();
        }
        // A process's ticks since `a`, or all of them if it started after `a`.
        let used = |k: &ProcKey| -> u64 {
            let now = b.procs.get(k).map_or(0, |p| p.1);
            now.saturating_sub(a.procs.get(k).map_or(0, |p| p.1))
        };
        let sum = |keys: &[ProcKey]| keys.iter().map(used).sum::<u64>();
        let (target, harness) = (sum(&b.target), sum(&b.harness));
        let busy = b.stat.busy.saturating_sub(a.stat.busy);
        let other = busy.saturating_sub(target + harness);
        let share = |t: u64| round3(t as f64 / total as f64);
        let mut by_name: BTreeMap<&str, u64> = BTreeMap::new();
        for (k, (name, _)) in &b.procs {
            if !b.target.contains(k) && !b.harness.contains(k) {
                *by_name.entry(name.as_str()).or_default() += used(k);
            }
        }
        let mut busiest: Vec<(String, f64)> =
            by_name.into_iter().filter(|(_, t)| *t > 0).map(|(n, t)| (n.to_string(), share(t))).collect();
        busiest.sort_by(|x, y| y.1.total_cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
        busiest.truncate(3);
        Interval {
            other_cpu: share(other),
            steal: share(b.stat.steal.saturating_sub(a.stat.steal)),
            target_cpu: share(target),
            harness_cpu: share(harness),
            busiest,
        }
    }

    /// "cc1 41%, rustc 12%" (empty when nothing else ran).
    pub fn busiest_text(&self) -> String {
        self.busiest
            .iter()
            .filter(|(_, s)| *s >= 0.01)
            .map(|(n, s)| format!("{n} {:.0}%", s * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// One second of a run in `machine.csv`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SecondSample {
    /// Seconds since the run clock's zero at the end of the second.
    pub t_s: f64,
    pub cpu: Interval,
}

/// A plain thread that calls a sampling function every period and keeps
/// what it returns, off the async runtime and the request path. Stop it
/// with [`Periodic::finish`]. The machine's per-second CPU sampler and the
/// resource sampler (resources.rs) are two of these.
pub struct Periodic<T> {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<T>>>,
}

impl<T: Send + 'static> Periodic<T> {
    /// Call `tick` every `every` on a thread named `name`; the first call
    /// now when `at_start`, else after one period; one more at the end when
    /// `at_end`. A tick that returns None (nothing readable) is skipped.
    pub fn start(
        name: &str,
        every: Duration,
        at_start: bool,
        at_end: bool,
        mut tick: impl FnMut() -> Option<T> + Send + 'static,
    ) -> Periodic<T> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let mut out = Vec::new();
                let mut next = if at_start { Instant::now() } else { Instant::now() + every };
                while !flag.load(Ordering::Relaxed) {
                    // Short naps, so finish() does not wait a whole period.
                    let now = Instant::now();
                    if now < next {
                        std::thread::sleep((next - now).min(Duration::from_millis(50)));
                        continue;
                    }
                    next += every;
                    out.extend(tick());
                }
                if at_end {
                    out.extend(tick());
                }
                out
            })
            .ok();
        Periodic { stop, handle }
    }

    /// Stop and return the samples (none if the thread could not start).
    pub fn finish(mut self) -> Vec<T> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().and_then(|h| h.join().ok()).unwrap_or_default()
    }
}

impl<T> Drop for Periodic<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The per-second sampler. Stop it with [`Sampler::finish`].
pub struct Sampler(Periodic<SecondSample>);

/// Where the target is now (a deploy may replace its master); None when
/// there is no process to watch (an external target).
pub type TargetPid = Arc<dyn Fn() -> Option<Pid> + Send + Sync>;

impl Sampler {
    /// Start sampling every `every`, with `zero` as the run clock's zero.
    pub fn start(target: TargetPid, zero: Instant, every: Duration) -> Sampler {
        // Each second is measured against the reading before it.
        let mut last = Reading::take(target()).ok();
        Sampler(Periodic::start("machine-sampler", every, false, false, move || {
            let r = Reading::take(target()).ok()?;
            let sample =
                SecondSample { t_s: round3(zero.elapsed().as_secs_f64()), cpu: Interval::between(last.as_ref()?, &r) };
            last = Some(r);
            Some(sample)
        }))
    }

    /// Stop and return the samples (none if the thread could not start or /proc is unreadable).
    pub fn finish(self) -> Vec<SecondSample> {
        self.0.finish()
    }
}

/// `machine.csv`: one line per second. `slip_max_ms`: the run's own schedule
/// slip per second (the recorder's series), joined by second.
pub fn write_csv(dir: &Path, samples: &[SecondSample], slip_max_ms: &BTreeMap<u64, f64>) -> std::io::Result<()> {
    let mut text = String::from("t_s,other_cpu,steal,target_cpu,harness_cpu,slip_max_ms,busiest_other\n");
    for s in samples {
        let second = (s.t_s - 1.0).max(0.0).round() as u64;
        let slip = slip_max_ms.get(&second).map(|v| format!("{v:.3}")).unwrap_or_default();
        // Process names may hold anything but a NUL; keep the CSV plain.
        let busiest: String =
            s.cpu.busiest_text().chars().map(|c| if matches!(c, ',' | '"' | '\n' | '\r') { '_' } else { c }).collect();
        let c = &s.cpu;
        let _ = writeln!(
            text,
            "{:.3},{:.3},{:.3},{:.3},{:.3},{slip},{busiest}",
            s.t_s, c.other_cpu, c.steal, c.target_cpu, c.harness_cpu
        );
    }
    std::fs::write(dir.join(MACHINE_FILE), text)
}

/// What summary.json says about the machine during a run (`environment`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assessment {
    /// The limit that applied (`environment.max_other_cpu`).
    pub max_other_cpu: f64,
    pub window_s: u64,
    /// Mean over the run of other processes' CPU and of steal (fractions of the machine).
    pub other_cpu_mean: f64,
    pub steal_mean: f64,
    /// Other work (other processes + steal) in the busiest window.
    pub interference_peak: f64,
    /// When that window started (seconds from run start); null without samples.
    pub interference_peak_at_s: Option<f64>,
    /// Seconds in which other work alone exceeded the limit.
    pub seconds_over: u64,
    pub seconds_sampled: u64,
    /// The busiest other processes over the whole run, e.g. "cc1 41%".
    pub busiest_other: String,
    /// `interference_peak > max_other_cpu`: a failed capacity gate is then unknown.
    pub noisy: bool,
    /// One sentence for the banner and the console; empty when quiet.
    pub reason: String,
    /// The per-second file in the run folder.
    pub file: String,
    /// Gates this run could not decide because of the noise (gates.rs,
    /// `undecided`); filled by the run's conclusion.
    #[serde(default)]
    pub undecided_gates: Vec<String>,
}

impl Assessment {
    /// One console line: "other work 12% of the CPU in the busiest 5 s, ...".
    pub fn line(&self) -> String {
        format!(
            "other work {:.0}% of the CPU in the busiest {} s, {:.0}% mean, steal {:.0}% mean (limit {:.0}%){}",
            self.interference_peak * 100.0,
            self.window_s,
            self.other_cpu_mean * 100.0,
            self.steal_mean * 100.0,
            self.max_other_cpu * 100.0,
            if self.noisy { format!(": BUSY, {}", self.reason) } else { String::new() }
        )
    }
}

/// Judge a run's machine. The limit applies to the busiest [`WINDOW_S`]
/// seconds, not to the whole-run mean and not to one second: a gate on p99
/// latency or on drops is broken by a few seconds of stolen CPU at the peak
/// (a 10-second compile in a 100-second run moves p99 but only 10% of the
/// mean), while one second is too short to matter to the server (its queue
/// builds over the step timeout, seconds) and too coarse to measure (100
/// ticks per CPU, so a second's share is only good to a few percent).
/// Runs shorter than the window use their whole length.
pub fn assess(samples: &[SecondSample], limits: Environment) -> Assessment {
    let n = samples.len();
    let load: Vec<f64> = samples.iter().map(|s| s.cpu.interference()).collect();
    let mean = |f: &dyn Fn(&SecondSample) -> f64| {
        if n == 0 { 0.0 } else { round3(samples.iter().map(f).sum::<f64>() / n as f64) }
    };
    let w = WINDOW_S.min(n).max(1);
    let (peak, at) = load
        .windows(w)
        .enumerate()
        .map(|(i, win)| (win.iter().sum::<f64>() / w as f64, i))
        .fold((0.0f64, None), |(best, at), (v, i)| if v > best { (v, Some(i)) } else { (best, at) });
    let peak = round3(peak);
    let at_s = at.map(|i| round3((samples[i].t_s - 1.0).max(0.0)));
    let mut names: BTreeMap<&str, f64> = BTreeMap::new();
    for s in samples {
        for (name, share) in &s.cpu.busiest {
            *names.entry(name).or_default() += share / n as f64;
        }
    }
    let mut names: Vec<(&str, f64)> = names.into_iter().collect();
    names.sort_by(|a, b| b.1.total_cmp(&a.1));
    let busiest = names
        .iter()
        .filter(|(_, s)| *s >= 0.01)
        .take(3)
        .map(|(n, s)| format!("{n} {:.0}%", s * 100.0))
        .collect::<Vec<_>>()
        .join(", ");
    let noisy = peak > limits.max_other_cpu;
    let reason = if noisy {
        format!(
            "other work on this machine took {:.0}% of its CPU for {w} s from {:.0} s (limit {:.0}%, \
             environment.max_other_cpu){}",
            peak * 100.0,
            at_s.unwrap_or(0.0),
            limits.max_other_cpu * 100.0,
            if busiest.is_empty() { String::new() } else { format!("; busiest: {busiest}") }
        )
    } else {
        String::new()
    };
    Assessment {
        max_other_cpu: limits.max_other_cpu,
        window_s: w as u64,
        other_cpu_mean: mean(&|s| s.cpu.other_cpu),
        steal_mean: mean(&|s| s.cpu.steal),
        interference_peak: peak,
        interference_peak_at_s: at_s,
        seconds_over: load.iter().filter(|l| **l > limits.max_other_cpu).count() as u64,
        seconds_sampled: n as u64,
        busiest_other: busiest,
        noisy,
        reason,
        file: MACHINE_FILE.into(),
        undecided_gates: Vec::new(),
    }
}

/// Read `machine.csv` back (the report's band): (second start, other work) pairs.
pub fn read_csv(dir: &Path) -> Vec<(f64, f64)> {
    let Ok(text) = std::fs::read_to_string(dir.join(MACHINE_FILE)) else { return Vec::new() };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split(',');
            let t: f64 = f.next()?.parse().ok()?;
            let other: f64 = f.next()?.parse().ok()?;
            let steal: f64 = f.next()?.parse().ok()?;
            Some(((t - 1.0).max(0.0), other + steal))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sec(t: f64, other: f64, steal: f64) -> SecondSample {
        SecondSample { t_s: t, cpu: Interval { other_cpu: other, steal, ..Default::default() } }
    }

    #[test]
    fn parses_the_cpu_line() {
        let s = parse_proc_stat("cpu  37881 5 6401 8838 124 7 23 33 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n").unwrap();
        assert_eq!(
            s,
            CpuStat { busy: 37881 + 5 + 6401, steal: 33, total: 37881 + 5 + 6401 + 8838 + 124 + 7 + 23 + 33 }
        );
        assert!(parse_proc_stat("cpu 1 2 3\n").unwrap_err().contains("3 fields"));
        assert!(parse_proc_stat("intr 5\n").is_err());
        assert!(parse_proc_stat("cpu a b c d e f g h\n").is_err());
    }

    #[test]
    fn other_work_is_the_machine_minus_our_trees() {
        let reading = |busy: u64, total: u64, ours: u64, theirs: u64| Reading {
            stat: CpuStat { busy, steal: 0, total },
            procs: BTreeMap::from([
                ((10, 1), ("harness".to_string(), ours)),
                ((11, 2), ("server".to_string(), ours)),
                ((50, 3), ("cc1".to_string(), theirs)),
            ]),
            harness: vec![(10, 1)],
            target: vec![(11, 2)],
        };
        // 200 ticks of capacity; 120 busy: 20 harness, 30 server, the other 70 someone else's.
        let a = reading(1000, 5000, 100, 0);
        let mut b = reading(1120, 5200, 120, 60);
        b.procs.insert((11, 2), ("server".into(), 130));
        let i = Interval::between(&a, &b);
        assert_eq!((i.harness_cpu, i.target_cpu, i.other_cpu), (0.1, 0.15, 0.35));
        assert_eq!(i.busiest, vec![("cc1".to_string(), 0.3)]);
        assert_eq!(i.busiest_text(), "cc1 30%");
        // Counters that did not move (or went back, e.g. a reused pid) are zero, not negative.
        assert_eq!(Interval::between(&b, &a), Interval::default());
    }

    #[test]
    fn the_limit_applies_to_the_busiest_window_not_one_second_nor_the_mean() {
        let limits = Environment { max_other_cpu: 0.15 };
        let quiet: Vec<_> = (1..=30).map(|t| sec(t as f64, 0.02, 0.0)).collect();
        let a = assess(&quiet, limits);
        assert!(!a.noisy && a.reason.is_empty(), "{a:?}");
        assert_eq!((a.other_cpu_mean, a.seconds_sampled, a.window_s), (0.02, 30, 5));

        // One second at 50% (a blip) averages to (0.5 + 4 * 0.02) / 5 = 0.116 in its window: below.
        let mut blip = quiet.clone();
        blip[10] = sec(11.0, 0.5, 0.0);
        assert!(!assess(&blip, limits).noisy);
        assert_eq!(assess(&blip, limits).seconds_over, 1);

        // Ten busy seconds in thirty: the mean (0.21) and the window (0.6) both over.
        let mut burst = quiet.clone();
        for s in burst.iter_mut().skip(10).take(10) {
            *s = sec(s.t_s, 0.4, 0.2);
        }
        let b = assess(&burst, limits);
        assert!(b.noisy, "{b:?}");
        assert_eq!((b.interference_peak, b.interference_peak_at_s, b.seconds_over), (0.6, Some(10.0), 10));
        assert!(b.reason.contains("took 60% of its CPU for 5 s from 10 s (limit 15%"), "{}", b.reason);

        // Five busy seconds in a long run: the mean hides them, the window does not.
        let mut long: Vec<_> = (1..=200).map(|t| sec(t as f64, 0.0, 0.0)).collect();
        for s in long.iter_mut().skip(100).take(5) {
            s.cpu.other_cpu = 0.5;
        }
        let l = assess(&long, limits);
        assert!(l.other_cpu_mean < 0.02 && l.noisy, "{l:?}");

        // A run shorter than the window uses its length; no samples: quiet.
        assert_eq!(assess(&[sec(1.0, 0.3, 0.0)], limits).window_s, 1);
        assert!(assess(&[sec(1.0, 0.3, 0.0)], limits).noisy);
        assert!(!assess(&[], limits).noisy);
        // At the limit is not over it.
        assert!(!assess(&[sec(1.0, 0.15, 0.0)], limits).noisy);
    }

    #[test]
    fn the_csv_round_trips_the_band() {
        let dir = std::env::temp_dir().join(format!("machine-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = sec(1.0, 0.25, 0.05);
        s.cpu.busiest = vec![("a,b\"c".into(), 0.25)];
        write_csv(&dir, &[s, sec(2.0, 0.0, 0.0)], &BTreeMap::from([(0, 1.5)])).unwrap();
        let text = std::fs::read_to_string(dir.join(MACHINE_FILE)).unwrap();
        assert!(text.contains("\n1.000,0.250,0.050,0.000,0.000,1.500,a_b_c 25%\n"), "{text}");
        assert_eq!(read_csv(&dir), vec![(0.0, 0.3), (1.0, 0.0)]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_this_machine() {
        let a = Reading::take(Some(std::process::id() as Pid)).unwrap();
        let mut x = 0u64;
        for i in 0..3_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        std::thread::sleep(Duration::from_millis(30));
        let b = Reading::take(Some(std::process::id() as Pid)).unwrap();
        let i = Interval::between(&a, &b);
        assert!((0.0..=1.0).contains(&i.other_cpu) && i.harness_cpu == 0.0, "{i:?}");
        assert!(tree_cpu_s(std::process::id() as Pid).is_some_and(|s| s > 0.0));
        assert!(own_cpu_s() > 0.0);
    }
}
