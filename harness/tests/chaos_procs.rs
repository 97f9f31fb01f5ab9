//! Process-tree discovery (procs.rs) against real processes the test spawns: a
//! shell "master" with two sleeping "workers", oldest/busiest picks, liveness.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use harness::host::procs::{self, Pid};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid as NixPid;

/// Kills the whole process group it started, even when an assertion fails.
struct Group(Child);

impl Group {
    fn spawn(script: &str) -> Group {
        let child = Command::new("sh").arg("-c").arg(script).process_group(0).spawn().expect("spawn sh");
        Group(child)
    }
    fn pid(&self) -> Pid {
        self.0.id() as Pid
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let _ = killpg(NixPid::from_raw(self.pid()), Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

/// Poll until `f` returns Some, for at most 10 s.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn finds_two_workers_of_a_shell_master() {
    let g = Group::spawn("sleep 30 & sleep 30 & wait");
    let tree = eventually("two workers", || {
        let t = procs::worker_tree(g.pid()).unwrap();
        (t.workers.len() == 2).then_some(t)
    });
    assert_eq!(tree.master, g.pid());
    assert!(tree.workers.iter().all(|w| w.ppid == g.pid() && w.comm == "sleep"), "{tree:?}");
    // The first one started is the oldest (or both started in the same tick:
    // then the lower pid, which is the first one forked).
    let oldest = procs::oldest(&tree.workers).unwrap();
    assert!(tree.pids().contains(&oldest));

    // Kill one: it is no longer alive nor a worker once its parent reaps it.
    let victim = tree.workers[1].pid;
    nix::sys::signal::kill(NixPid::from_raw(victim), Signal::SIGKILL).unwrap();
    eventually("victim gone", || (!procs::is_alive(victim)).then_some(()));
    eventually("one worker left", || {
        let t = procs::worker_tree(g.pid()).unwrap();
        (t.pids() == vec![tree.workers[0].pid]).then_some(())
    });
}

#[test]
fn busiest_is_the_one_burning_cpu() {
    // One worker spins, the other sleeps.
    let g = Group::spawn("sleep 30 & (while :; do :; done) & wait");
    let before = eventually("two workers", || {
        let t = procs::worker_tree(g.pid()).unwrap();
        (t.workers.len() == 2).then_some(t.workers)
    });
    let spinner = eventually("spinner found", || {
        std::thread::sleep(Duration::from_millis(300));
        let after = procs::worker_tree(g.pid()).unwrap().workers;
        let busy = procs::busiest(&before, &after)?;
        let delta = after.iter().find(|p| p.pid == busy)?.cpu_ticks - before.iter().find(|p| p.pid == busy)?.cpu_ticks;
        (delta > 0).then_some(busy)
    });
    let info = procs::read(spinner).unwrap().unwrap();
    assert_ne!(info.comm, "sleep", "busiest picked the sleeping worker");
}

#[test]
fn a_wrapper_shell_is_seen_through() {
    // sh (wrapper) -> sh (master) -> 2 sleeps
    let g = Group::spawn("sh -c 'sleep 30 & sleep 30 & wait'; exit 0");
    let tree = eventually("master below the wrapper", || {
        let t = procs::worker_tree(g.pid()).unwrap();
        (t.workers.len() == 2).then_some(t)
    });
    assert_ne!(tree.master, g.pid());
    assert_eq!(procs::read(tree.master).unwrap().unwrap().ppid, g.pid());
}
