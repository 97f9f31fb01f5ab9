//! Memory and file descriptors over a run: the harness's own process and the
//! target's process tree (master and workers), sampled on a plain thread off
//! the request path, written to `resources.csv`, and summed up as a trend
//! (a least-squares slope per hour) that a soak judges "flat" by.
//!
//! Why a slope and not first-vs-last: a cluster under faults replaces
//! workers every minute, so its resident memory saw-tooths (a fresh worker
//! is small, a rolling restart briefly doubles the tree). A leak is what
//! survives those teeth: the line fitted through every sample after the
//! warm-up. The warm-up (the first [`WARMUP_SHARE`] of the samples) is left
//! out because pools, caches and allocator arenas fill once at the start.
//!
//! Sampling period: [`period_for`] a run's length, 10 s for a soak (what
//! `make soak` promises), down to 1 s for a short run so that it still has
//! enough points for a slope.
//!
//! Not for: CPU (machine.rs), judging (the gates are in judge/resources.rs),
//! drawing (report/).

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::host::machine::{Periodic, TargetPid, trees_in};
use crate::host::procs::{self, Pid};

/// The file in a run folder.
pub const RESOURCES_FILE: &str = "resources.csv";
/// Samples before this share of the run are warm-up, left out of the slope.
pub const WARMUP_SHARE: f64 = 0.1;
/// Fewer samples than this after the warm-up: no slope (not observed).
pub const MIN_SAMPLES: usize = 5;

/// Sampling period for a run of `planned` length: about 30 samples, at
/// least one a second, at most one every 10 s.
pub fn period_for(planned: Duration) -> Duration {
    Duration::from_secs_f64((planned.as_secs_f64() / 30.0).clamp(1.0, 10.0))
}

/// Resident memory and open descriptors of a set of processes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub rss_kib: u64,
    pub fds: u64,
    pub processes: u64,
}

/// One sample: the harness, and the target when there is one to watch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Seconds since the run clock's zero.
    pub t_s: f64,
    pub harness: Usage,
    pub server: Option<Usage>,
}

/// Resident set of one process, KiB (`VmRSS` in /proc/PID/status).
pub fn rss_kib(pid: Pid) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()
}

/// Open file descriptors of one process (entries of /proc/PID/fd).
pub fn open_fds(pid: Pid) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// Sum of [`rss_kib`] and [`open_fds`] over `pids`; processes that vanished
/// meanwhile (a worker replaced) are skipped.
pub fn usage_of(pids: &[Pid]) -> Usage {
    let mut u = Usage::default();
    for &pid in pids {
        if let (Some(rss), Some(fds)) = (rss_kib(pid), open_fds(pid)) {
            u.rss_kib += rss;
            u.fds += fds;
            u.processes += 1;
        }
    }
    u
}

/// One sample now. The harness is this process alone (not a target it
/// launched: that one is the server).
pub fn sample(t_s: f64, target: Option<Pid>) -> Sample {
    let me = std::process::id() as Pid;
    let server = target.and_then(|t| {
        let all = procs::snapshot().ok()?;
        let pids = trees_in(&all, &[t]);
        let u = usage_of(&pids);
        (u.processes > 0).then_some(u)
    });
    Sample { t_s, harness: usage_of(&[me]), server }
}

/// The sampler thread (a [`Periodic`]): a sample at the start, every
/// period, and one at the end, so the trend covers the whole run.
pub fn start_sampler(target: TargetPid, zero: Instant, every: Duration) -> Periodic<Sample> {
    Periodic::start("resource-sampler", every, true, true, move || {
        Some(sample(round3(zero.elapsed().as_secs_f64()), target()))
    })
}

/// `resources.csv`: one line per sample; the server's columns are empty
/// when there was no target process to read.
pub fn write_csv(dir: &Path, samples: &[Sample]) -> std::io::Result<()> {
    let mut text = String::from("t_s,harness_rss_kib,harness_fds,server_rss_kib,server_fds,server_processes\n");
    for s in samples {
        let server = s.server.map(|u| format!("{},{},{}", u.rss_kib, u.fds, u.processes)).unwrap_or(",,".into());
        let _ = writeln!(text, "{:.3},{},{},{server}", s.t_s, s.harness.rss_kib, s.harness.fds);
    }
    crate::judge::summary::write_atomically(&dir.join(RESOURCES_FILE), text.as_bytes())
}

/// Reads `resources.csv` back (the report draws from it); empty if absent.
pub fn read_csv(dir: &Path) -> Vec<Sample> {
    let Ok(text) = std::fs::read_to_string(dir.join(RESOURCES_FILE)) else { return Vec::new() };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            if f.len() != 6 {
                return None;
            }
            let n = |i: usize| f[i].parse::<u64>().ok();
            let server = match (n(3), n(4), n(5)) {
                (Some(rss_kib), Some(fds), Some(processes)) => Some(Usage { rss_kib, fds, processes }),
                _ => None,
            };
            Some(Sample {
                t_s: f[0].parse().ok()?,
                harness: Usage { rss_kib: n(1)?, fds: n(2)?, processes: 1 },
                server,
            })
        })
        .collect()
}

/// One side's resource use over a run, for summary.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trend {
    /// Samples the slope was fitted through (after the warm-up, while
    /// shoppers arrived).
    pub samples: usize,
    /// The first sample the slope uses, seconds since run start.
    pub from_s: f64,
    pub rss_first_mib: f64,
    pub rss_last_mib: f64,
    pub rss_max_mib: f64,
    /// Least-squares slope of resident memory, MiB per hour; None with
    /// fewer than [`MIN_SAMPLES`] samples after the warm-up.
    pub rss_slope_mib_per_hour: Option<f64>,
    pub fds_first: u64,
    pub fds_last: u64,
    pub fds_max: u64,
    /// Least-squares slope of open descriptors, per hour.
    pub fds_slope_per_hour: Option<f64>,
}

/// summary.json's `resources`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// Seconds between samples.
    pub interval_s: f64,
    /// This process.
    pub harness: Option<Trend>,
    /// The target's process tree; None when the harness had no process to
    /// read (an external target) or could not read it.
    pub server: Option<Trend>,
}

/// The trend of one side's samples (`(t_s, usage)`) while shoppers
/// arrived (up to `until_s`), warm-up left out. After the arrivals the load
/// winds down and the pool closes its connections: that fall is the end of
/// the run, not a trend, and would hide a leak's growth.
pub fn trend(points: &[(f64, Usage)], until_s: f64) -> Option<Trend> {
    let first = points.first()?;
    let within: Vec<&(f64, Usage)> = points.iter().filter(|(t, _)| *t <= until_s).collect();
    let last = *within.last().unwrap_or(&first);
    let span = last.0 - first.0;
    let from = first.0 + span * WARMUP_SHARE;
    let kept: Vec<&(f64, Usage)> = within.into_iter().filter(|(t, _)| *t >= from).collect();
    let mib = |kib: u64| round3(kib as f64 / 1024.0);
    let fit = |f: &dyn Fn(&Usage) -> f64| -> Option<f64> {
        (kept.len() >= MIN_SAMPLES)
            .then(|| slope_per_s(&kept.iter().map(|(t, u)| (*t, f(u))).collect::<Vec<_>>()))
            .flatten()
            .map(|s| round3(s * 3600.0))
    };
    Some(Trend {
        samples: kept.len(),
        from_s: kept.first().map_or(first.0, |p| p.0),
        rss_first_mib: mib(kept.first().map_or(first.1.rss_kib, |p| p.1.rss_kib)),
        rss_last_mib: mib(last.1.rss_kib),
        rss_max_mib: mib(points.iter().map(|p| p.1.rss_kib).max().unwrap_or(0)),
        rss_slope_mib_per_hour: fit(&|u| u.rss_kib as f64 / 1024.0),
        fds_first: kept.first().map_or(first.1.fds, |p| p.1.fds),
        fds_last: last.1.fds,
        fds_max: points.iter().map(|p| p.1.fds).max().unwrap_or(0),
        fds_slope_per_hour: fit(&|u| u.fds as f64),
    })
}

/// Both sides' trends from the samples; `arrivals`: how long shoppers arrived.
pub fn summarize(samples: &[Sample], interval: Duration, arrivals: Duration) -> Resources {
    let until = arrivals.as_secs_f64();
    let harness: Vec<(f64, Usage)> = samples.iter().map(|s| (s.t_s, s.harness)).collect();
    let server: Vec<(f64, Usage)> = samples.iter().filter_map(|s| s.server.map(|u| (s.t_s, u))).collect();
    Resources {
        interval_s: round3(interval.as_secs_f64()),
        harness: trend(&harness, until),
        server: trend(&server, until),
    }
}

/// Ordinary least squares slope of y over x; None when x does not vary.
pub fn slope_per_s(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if n < 2.0 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(rss_kib: u64, fds: u64) -> Usage {
        Usage { rss_kib, fds, processes: 1 }
    }

    #[test]
    fn slope_of_a_line_and_of_a_flat_saw_tooth() {
        let line: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 3.0 * i as f64 + 1.0)).collect();
        assert!((slope_per_s(&line).unwrap() - 3.0).abs() < 1e-9);
        // Workers replaced every 6 samples: teeth, no growth.
        let teeth: Vec<(f64, f64)> = (0..60).map(|i| (i as f64, 100.0 + (i % 6) as f64 * 10.0)).collect();
        assert!(slope_per_s(&teeth).unwrap().abs() < 0.2, "{:?}", slope_per_s(&teeth));
        assert_eq!(slope_per_s(&[(1.0, 2.0)]), None);
        assert_eq!(slope_per_s(&[(1.0, 2.0), (1.0, 5.0)]), None);
    }

    #[test]
    fn trend_leaves_out_the_warm_up_and_scales_to_hours() {
        // Warm-up jump from 10 MiB to 100 MiB in the first second, then 1 MiB
        // and one descriptor per 10 s = 360 MiB/h, 360 fds/h.
        let mut points = vec![(0.0, u(10 * 1024, 5))];
        for i in 1..=100 {
            points.push((i as f64, u(100 * 1024 + i * 1024 / 10, 50 + i / 10)));
        }
        let t = trend(&points, 100.0).unwrap();
        assert_eq!(t.from_s, 10.0);
        assert_eq!(t.samples, 91);
        assert!((t.rss_slope_mib_per_hour.unwrap() - 360.0).abs() < 5.0, "{t:?}");
        assert!((t.fds_slope_per_hour.unwrap() - 360.0).abs() < 40.0, "{t:?}");
        assert_eq!(t.rss_max_mib, 110.0);
        assert_eq!((t.fds_first, t.fds_last, t.fds_max), (51, 60, 60));
    }

    #[test]
    fn the_wind_down_after_the_arrivals_is_not_part_of_the_trend() {
        // One descriptor a second while shoppers arrive (60 s), then the
        // pool closes 300 connections: still +3600/h.
        let mut points: Vec<(f64, Usage)> = (0..=60).map(|i| (i as f64, u(1024, 400 + i))).collect();
        points.push((65.0, u(1024, 160)));
        let t = trend(&points, 60.0).unwrap();
        assert!((t.fds_slope_per_hour.unwrap() - 3600.0).abs() < 1.0, "{t:?}");
        assert_eq!((t.fds_last, t.fds_max), (460, 460));
    }

    #[test]
    fn too_few_samples_have_no_slope() {
        let points: Vec<(f64, Usage)> = (0..4).map(|i| (i as f64, u(1024, 3))).collect();
        let t = trend(&points, 10.0).unwrap();
        assert_eq!((t.rss_slope_mib_per_hour, t.fds_slope_per_hour), (None, None));
        assert!(trend(&[], 1.0).is_none());
    }

    #[test]
    fn period_is_about_thirty_samples_between_one_and_ten_seconds() {
        assert_eq!(period_for(Duration::from_secs(5)), Duration::from_secs(1));
        assert_eq!(period_for(Duration::from_secs(90)), Duration::from_secs(3));
        assert_eq!(period_for(Duration::from_secs(1800)), Duration::from_secs(10));
    }

    #[test]
    fn csv_round_trips_with_and_without_a_server() {
        let dir = tempfile::tempdir().unwrap();
        let samples = vec![
            Sample { t_s: 0.0, harness: u(2048, 9), server: None },
            Sample { t_s: 1.5, harness: u(4096, 10), server: Some(Usage { rss_kib: 9000, fds: 40, processes: 3 }) },
        ];
        write_csv(dir.path(), &samples).unwrap();
        assert_eq!(read_csv(dir.path()), samples);
    }

    #[test]
    fn this_process_can_be_read() {
        let s = sample(0.0, Some(std::process::id() as Pid));
        assert!(s.harness.rss_kib > 0 && s.harness.fds > 0, "{s:?}");
        assert!(s.server.unwrap().processes >= 1);
    }
}
