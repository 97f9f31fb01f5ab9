//! Benchmark of the cluster's self-healing and deploy speed, run by
//! `scripts/bench-cluster.sh`: time from SIGKILL of a worker to its
//! replacement's `ready`, idle rolling-restart time for 2 and 4 workers, and
//! a 2-worker rolling restart under keep-alive load (with the client's count
//! of failed requests, which must be 0).
//!
//! Usage: `bench_cluster <path to reference-server> [rounds]`. Times are taken
//! on this side: the signal is sent at T0 and the master's lifecycle line
//! (`... ready in`, `rolling restart end`) is timestamped when it arrives on
//! the master's stderr pipe.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

struct Master {
    child: Child,
    public: SocketAddr,
    admin: SocketAddr,
    lines: Receiver<(Instant, String)>,
    _dir: tempfile::TempDir,
}

impl Master {
    fn start(bin: &Path, workers: usize) -> Result<Master> {
        let dir = tempfile::tempdir().context("temp dir")?;
        let mut child = Command::new(bin)
            .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--workers", &workers.to_string()])
            // A kill 300 ms after ready is not an early crash: no backoff.
            .args(["--min-uptime", "200ms"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr pipe"))?;
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        let mut m = Master { child, public: "0.0.0.0:0".parse()?, admin: "0.0.0.0:0".parse()?, lines, _dir: dir };
        let (_, line) = m.wait_line(|l| l.contains("listening on "), Duration::from_secs(30))?;
        let addr_after = |key: &str| -> Result<SocketAddr> {
            let rest = line.split(key).nth(1).ok_or_else(|| anyhow!("no '{key}' in {line}"))?;
            rest.split([',', ' ']).next().unwrap_or_default().parse().with_context(|| format!("address after '{key}'"))
        };
        m.public = addr_after("listening on ")?;
        m.admin = addr_after("admin on ")?;
        m.wait_ready(workers)?;
        Ok(m)
    }

    fn wait_line(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> Result<(Instant, String)> {
        let until = Instant::now() + timeout;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let (at, line) = self.lines.recv_timeout(left).context("waiting for a master log line")?;
            if pred(&line) {
                return Ok((at, line));
            }
        }
    }

    fn workers(&self) -> Result<serde_json::Value> {
        let mut s = TcpStream::connect(self.admin).context("admin connect")?;
        s.write_all(b"GET /workers HTTP/1.1\r\nHost: bench\r\n\r\n")?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        let body = text.split("\r\n\r\n").nth(1).ok_or_else(|| anyhow!("bad admin response"))?;
        Ok(serde_json::from_str(body)?)
    }

    /// Pids of ready workers, once exactly `n` are ready and nothing rolls.
    fn wait_ready(&self, n: usize) -> Result<Vec<i32>> {
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            let w = self.workers()?;
            let all = w["workers"].as_array().cloned().unwrap_or_default();
            let ready: Vec<i32> = all
                .iter()
                .filter(|w| w["state"] == "ready")
                .filter_map(|w| w["pid"].as_i64())
                .map(|p| p as i32)
                .collect();
            if ready.len() == n && all.len() == n && w["rolling_restart"] == false {
                return Ok(ready);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        bail!("{n} workers never became ready")
    }

    fn signal(&self, sig: Signal) -> Result<()> {
        kill(Pid::from_raw(self.child.id() as i32), sig).context("signalling the master")
    }

    fn drain_lines(&self) {
        while self.lines.try_recv().is_ok() {}
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        let _ = self.signal(Signal::SIGINT);
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn summary(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    let pick = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    println!(
        "{name:<36} n={:<3} min {:>7.1} ms  median {:>7.1} ms  p90 {:>7.1} ms  max {:>7.1} ms",
        ms.len(),
        pick(0.0),
        pick(0.5),
        pick(0.9),
        pick(1.0)
    );
}

fn kill_to_ready(bin: &Path, rounds: usize) -> Result<Vec<f64>> {
    let m = Master::start(bin, 2)?;
    let mut out = Vec::new();
    for _ in 0..rounds {
        let pids = m.wait_ready(2)?;
        std::thread::sleep(Duration::from_millis(300));
        m.drain_lines();
        let t0 = Instant::now();
        kill(Pid::from_raw(pids[0]), Signal::SIGKILL).context("SIGKILL to a worker")?;
        let (at, _) = m.wait_line(|l| l.contains(" ready in "), Duration::from_secs(30))?;
        out.push(at.duration_since(t0).as_secs_f64() * 1000.0);
    }
    Ok(out)
}

fn rolling(bin: &Path, workers: usize, rounds: usize) -> Result<Vec<f64>> {
    let m = Master::start(bin, workers)?;
    let mut out = Vec::new();
    for _ in 0..rounds {
        m.wait_ready(workers)?;
        std::thread::sleep(Duration::from_millis(100));
        m.drain_lines();
        let t0 = Instant::now();
        m.signal(Signal::SIGHUP)?;
        let (at, _) = m.wait_line(|l| l.contains("rolling restart end"), Duration::from_secs(60))?;
        out.push(at.duration_since(t0).as_secs_f64() * 1000.0);
    }
    Ok(out)
}

/// Keep-alive GETs in a loop until `stop`; returns (ok, failed).
fn keepalive_client(addr: SocketAddr, stop: &AtomicBool) -> (u64, u64) {
    let (mut ok, mut failed) = (0, 0);
    let mut conn: Option<BufReader<TcpStream>> = None;
    while !stop.load(Ordering::Relaxed) {
        let mut c = match conn.take() {
            Some(c) => c,
            None => match TcpStream::connect(addr) {
                Ok(s) => {
                    // A stuck request fails the run instead of hanging it.
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    BufReader::new(s)
                }
                Err(_) => {
                    failed += 1;
                    continue;
                }
            },
        };
        match get_once(&mut c) {
            Ok(close) => {
                ok += 1;
                if !close {
                    conn = Some(c);
                }
            }
            Err(_) => failed += 1,
        }
    }
    (ok, failed)
}

/// One `GET /slow?ms=5`; Ok(true) when the server asked to close.
fn get_once(c: &mut BufReader<TcpStream>) -> Result<bool> {
    c.get_mut().write_all(b"GET /slow?ms=5 HTTP/1.1\r\nHost: bench\r\n\r\n")?;
    let (mut len, mut close, mut status) = (0usize, false, String::new());
    let mut line = String::new();
    loop {
        line.clear();
        if c.read_line(&mut line)? == 0 {
            bail!("closed before a full response");
        }
        let l = line.trim_end().to_ascii_lowercase();
        if status.is_empty() {
            status = l;
            continue;
        }
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.strip_prefix("content-length:") {
            len = v.trim().parse()?;
        }
        close |= l == "connection: close";
    }
    let mut body = vec![0; len];
    c.read_exact(&mut body)?;
    if !status.starts_with("http/1.1 2") {
        bail!("{status}");
    }
    Ok(close)
}

/// Rolling restart of 2 workers while `clients` keep-alive loops run.
fn rolling_under_load(bin: &Path, clients: usize, rounds: usize) -> Result<(Vec<f64>, u64, u64)> {
    let m = Master::start(bin, 2)?;
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let stop = Arc::clone(&stop);
            let addr = m.public;
            std::thread::spawn(move || keepalive_client(addr, &stop))
        })
        .collect();
    let mut out = Vec::new();
    for _ in 0..rounds {
        m.wait_ready(2)?;
        std::thread::sleep(Duration::from_millis(200));
        m.drain_lines();
        let t0 = Instant::now();
        m.signal(Signal::SIGHUP)?;
        let (at, _) = m.wait_line(|l| l.contains("rolling restart end"), Duration::from_secs(60))?;
        out.push(at.duration_since(t0).as_secs_f64() * 1000.0);
    }
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut failed) = (0, 0);
    for h in handles {
        let (o, f) = h.join().map_err(|_| anyhow!("a client thread panicked"))?;
        ok += o;
        failed += f;
    }
    Ok((out, ok, failed))
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let bin =
        PathBuf::from(args.next().ok_or_else(|| anyhow!("usage: bench_cluster <reference-server binary> [rounds]"))?);
    let rounds: usize = match args.next() {
        Some(r) => r.parse().with_context(|| format!("rounds '{r}' is not a number"))?,
        None => 20,
    };
    if rounds == 0 {
        bail!("rounds must be at least 1");
    }
    summary("SIGKILL -> replacement ready", kill_to_ready(&bin, rounds)?);
    summary("idle rolling restart, 2 workers", rolling(&bin, 2, rounds)?);
    summary("idle rolling restart, 4 workers", rolling(&bin, 4, rounds)?);
    let clients = 8;
    let (ms, ok, failed) = rolling_under_load(&bin, clients, rounds.min(10))?;
    summary("rolling restart, 2 workers, loaded", ms);
    println!("  (under {clients} keep-alive clients looping GET /slow?ms=5: {ok} ok, {failed} failed)");
    Ok(())
}
