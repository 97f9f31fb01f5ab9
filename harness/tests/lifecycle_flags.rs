//! `harness run`'s target flags with real processes (a Python pre-fork
//! server): `--launch` starts the target, `--attach-pid` and `--pid-file`
//! attach to a running one (and leave it running), conflicting flags are
//! refused, and a target not healthy again within `--health-timeout` makes the
//! run invalid (exit 2), never a pass.
#![allow(clippy::unwrap_used)]

mod chaos_support;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use chaos_support::*;
use serde_json::{Value, json};

/// Runs the harness binary; (exit code, stdout + stderr).
fn harness(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_harness")).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// A short scenario against `port` with `chaos`; no launch command of its own
/// unless `stop_timeout` is given (then a placeholder `--launch` replaces,
/// keeping the stop timeout).
fn scenario_file(dir: &Path, port: u16, chaos: Value, stop_timeout: Option<&str>) -> String {
    let mut doc = foreign_scenario(port, 40, 20.0);
    if let Some(t) = stop_timeout {
        doc["target"]["launch"] = json!({ "argv": ["false"], "stop_signal": "SIGTERM", "stop_timeout": t });
    }
    doc["journeys"][0]["steps"][0]["timeout"] = json!("500ms");
    doc["chaos"] = chaos;
    let path = dir.join("scenario.json");
    std::fs::write(&path, doc.to_string()).unwrap();
    path.to_string_lossy().into_owned()
}

fn kill_a_worker() -> Value {
    json!([{ "name": "kill", "at": "800ms", "action": "kill_worker", "pick": "oldest" }])
}

fn chaos_json(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("chaos.json")).unwrap()).unwrap()
}

/// A pre-fork server the test starts itself (own process group), killed with
/// its workers on drop.
struct Running(Child);

impl Running {
    fn start(dir: &Path, port: u16, workers: usize) -> Running {
        let script = dir.join("prefork.py");
        std::fs::write(&script, PREFORK_PY).unwrap();
        let child = Command::new("python3")
            .args([script.to_str().unwrap(), &port.to_string(), &workers.to_string()])
            .process_group(0)
            .spawn()
            .unwrap();
        Running(child)
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    fn alive(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(self.pid()), nix::sys::signal::Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

#[test]
fn launch_flag_starts_the_target_and_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let file = scenario_file(dir.path(), port, kill_a_worker(), None);
    let script = dir.path().join("prefork.py");
    std::fs::write(&script, PREFORK_PY).unwrap();
    let out = dir.path().join("out");
    let cmd = format!("python3 -u '{}' {port} 2", script.display());
    let (code, text) = harness(&["run", &file, "--quiet", "--out", out.to_str().unwrap(), "--launch", &cmd]);
    assert_eq!(code, 0, "{text}");
    let chaos = chaos_json(&out);
    // The kill needs the target's pid: only a launched (or attached) target has one.
    assert_eq!(chaos["faults"][0]["outcome"], "ok", "{chaos:#}");
    assert!(chaos["target_stop"].as_str().unwrap().starts_with("stopped gracefully"), "{chaos:#}");
    assert!(out.join("target-stderr.log").is_file());
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["faults"][0]["name"], "kill", "{summary:#}");

    // A command line that cannot be split is a start error naming the flag.
    let (code, text) = harness(&["run", &file, "--quiet", "--out", out.to_str().unwrap(), "--launch", "python3 'oops"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("--launch"), "{text}");
}

#[test]
fn attach_pid_and_pid_file_attach_to_a_running_target_and_leave_it_running() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = Running::start(dir.path(), port, 2);
    let file = scenario_file(dir.path(), port, kill_a_worker(), None);
    let pid = server.pid().to_string();
    let pid_file = dir.path().join("server.pid");
    std::fs::write(&pid_file, &pid).unwrap();

    for (flag, value) in [("--attach-pid", pid.clone()), ("--pid-file", pid_file.to_string_lossy().into_owned())] {
        let out = dir.path().join(flag.trim_start_matches('-'));
        let (code, text) = harness(&["run", &file, "--quiet", "--out", out.to_str().unwrap(), flag, &value]);
        assert_eq!(code, 0, "{flag}: {text}");
        let chaos = chaos_json(&out);
        let fault = &chaos["faults"][0];
        assert_eq!(fault["outcome"], "ok", "{flag}: {chaos:#}");
        // The killed worker was one of our server's children.
        let killed = fault["pids"][0].as_i64().unwrap();
        assert_ne!(killed, server.pid() as i64, "{chaos:#}");
        assert!(!chaos["target_stop"].as_str().unwrap().starts_with("stopped gracefully"), "{chaos:#}");
        assert!(server.alive(), "{flag}: the harness stopped a target it did not start");
    }

    // Two ways to find the target at once: refused before anything runs.
    let out = dir.path().join("both");
    let (code, text) =
        harness(&["run", &file, "--quiet", "--out", out.to_str().unwrap(), "--attach-pid", &pid, "--launch", "true"]);
    assert_eq!(code, 2, "{text}");
    assert!(!out.join("summary.json").exists());
    let (code, text) = harness(&["run", &file, "--quiet", "--attach-pid", "0"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("--attach-pid"), "{text}");
}

#[test]
fn a_target_never_healthy_again_makes_the_run_invalid_within_the_health_timeout() {
    // SIGSTOP to a single-process server: it stops answering and nothing in
    // the harness resumes it (it was not a hang the harness scheduled).
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let chaos = json!([{ "name": "freeze", "at": "300ms", "action": "signal_master", "signal": "SIGSTOP" }]);
    let file = scenario_file(dir.path(), port, chaos, Some("1s"));
    let script = dir.path().join("prefork.py");
    std::fs::write(&script, PREFORK_PY).unwrap();
    let out = dir.path().join("out");
    let cmd = format!("python3 -u '{}' {port} 0", script.display());
    let started = Instant::now();
    let (code, text) = harness(&[
        "run",
        &file,
        "--quiet",
        "--out",
        out.to_str().unwrap(),
        "--launch",
        &cmd,
        "--recovery-timeout",
        "1",
        "--health-timeout",
        "1.5",
    ]);
    let took = started.elapsed();
    assert_eq!(code, 2, "{text}");
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["verdict"], "invalid", "{summary:#}");
    let problems = summary["validity"]["problems"].to_string();
    assert!(problems.contains("not healthy again within 1.5s"), "{problems}");
    assert_eq!(summary["faults"][0]["recovered_ms"], Value::Null, "{summary:#}");
    // Bounded by the flags, not by the 60 s defaults (generous: a loaded box).
    assert!(took < Duration::from_secs(45), "took {took:?}");
    // The frozen target was still stopped (forced after the 1 s stop timeout).
    let chaos = chaos_json(&out);
    assert!(chaos["target_stop"].as_str().unwrap().contains("SIGKILL"), "{chaos:#}");

    let (code, text) = harness(&["run", &file, "--quiet", "--health-timeout=-1"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("--health-timeout"), "{text}");
}
