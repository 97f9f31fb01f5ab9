//! The `harness` binary's exit codes (docs/EXIT_CODES.md): 0 pass, 1 a gate
//! failed, 2 invalid or could not start (bad file, non-loopback target,
//! unreachable target); a finished run's folder holds its report.

mod support;

use std::process::Command;

use support::{Behavior, TestServer, scenario};

#[allow(clippy::unwrap_used)] // test helper: a panic is a test failure
fn harness(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_harness")).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[allow(clippy::unwrap_used)] // test helper
fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

#[test]
fn validate_and_start_failures_exit_2_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(dir.path(), "bad.json", r#"{"name": 3}"#);
    let (code, text) = harness(&["validate", &bad]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("name"), "{text}");

    let good = scenario("http://127.0.0.1:9", 5, 50.0, r#"{"model": "pool", "size": 2}"#, r#""path": "/""#);
    let good = write(dir.path(), "good.json", &good);
    let (code, text) = harness(&["validate", &good]);
    assert_eq!(code, 0, "{text}");

    let out = dir.path().join("out").to_string_lossy().into_owned();
    let (code, text) = harness(&["run", &good, "--quiet", "--out", &out, "--target", "http://192.0.2.1:80"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("--allow-remote"), "{text}");

    // One connection per shopper for 100,000 shoppers arriving within a
    // second: more file descriptors than any hard limit here allows.
    let many = scenario("http://127.0.0.1:9", 100_000, 100_000.0, r#"{"model": "per_shopper"}"#, r#""path": "/""#);
    let many = write(dir.path(), "many.json", &many);
    let (code, text) = harness(&["run", &many, "--quiet", "--out", &out]);
    assert_eq!(code, 2, "{text}");
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    if hard < 100_064 {
        assert!(text.contains("file descriptors") && text.contains("hard limit"), "{text}");
    }

    // Nothing listens on port 9 of loopback: the target never becomes ready.
    let (code, text) = harness(&["run", &good, "--quiet", "--out", &out]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("not ready") || text.contains("ready"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passing_run_exits_0_and_a_failed_gate_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out").to_string_lossy().into_owned();

    let ok = TestServer::start(Behavior::Delay(std::time::Duration::ZERO)).await;
    let text = scenario(&ok.url(), 20, 50.0, r#"{"model": "pool", "size": 2}"#, r#""path": "/""#).replacen(
        "\"journeys\"",
        "\"gates\": {\"max_dropped\": 0},\n  \"journeys\"",
        1,
    );
    let file = write(dir.path(), "pass.json", &text);
    let run_dir = std::path::PathBuf::from(&out);
    let (code, text) =
        tokio::task::spawn_blocking(move || harness(&["run", &file, "--quiet", "--out", &out])).await.unwrap();
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("verdict: pass"), "{text}");
    // `harness run` writes the single-run report next to its own files.
    let page = std::fs::read_to_string(run_dir.join("index.html")).unwrap();
    assert!(page.contains("<svg"), "index.html has no chart: {page}");
    let junit = std::fs::read_to_string(run_dir.join("junit.xml")).unwrap();
    assert!(junit.contains("max_dropped") && !junit.contains("<failure"), "{junit}");
    assert!(run_dir.join("report.json").is_file());

    // Same healthy server, but the step expects 201: every 200 is an
    // unexpected status, so operations drop and the gate fails.
    let out = dir.path().join("out2").to_string_lossy().into_owned();
    let text = scenario(&ok.url(), 20, 50.0, r#"{"model": "pool", "size": 2}"#, r#""path": "/", "expect": [201]"#)
        .replacen("\"journeys\"", "\"gates\": {\"max_dropped\": 0},\n  \"journeys\"", 1);
    let file = write(dir.path(), "fail.json", &text);
    let run_dir = std::path::PathBuf::from(&out);
    let (code, text) =
        tokio::task::spawn_blocking(move || harness(&["run", &file, "--quiet", "--out", &out])).await.unwrap();
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("gate max_dropped: FAIL"), "{text}");
    // The failed gate is a JUnit failure, so CI lists it as a failed test.
    let junit = std::fs::read_to_string(run_dir.join("junit.xml")).unwrap();
    assert!(junit.contains("<failure"), "{junit}");
}

/// Regressions from the adversarial probe (issue 18): a run that played
/// nothing is invalid, not a pass; `--out` naming a file says so; a
/// base_url with a path is refused with its field path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_observed_nothing_or_cannot_write_is_never_a_pass() {
    let dir = tempfile::tempdir().unwrap();
    let ok = TestServer::start(Behavior::Delay(std::time::Duration::ZERO)).await;
    let text = scenario(&ok.url(), 20, 50.0, r#"{"model": "pool", "size": 2}"#, r#""path": "/""#).replacen(
        "\"journeys\"",
        "\"gates\": {\"max_dropped\": 0},\n  \"journeys\"",
        1,
    );
    let file = write(dir.path(), "s.json", &text);
    let out = dir.path().join("out").to_string_lossy().into_owned();
    let (f, o) = (file.clone(), out.clone());
    let (code, text) =
        tokio::task::spawn_blocking(move || harness(&["run", &f, "--quiet", "--out", &o, "--rate-scale", "1e-300"]))
            .await
            .unwrap();
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("no operation was played") && text.contains("verdict: invalid (exit 2)"), "{text}");

    let (code, text) =
        tokio::task::spawn_blocking(move || harness(&["run", &file, "--quiet", "--out", "/dev/null"])).await.unwrap();
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("/dev/null") && text.contains("not a directory"), "{text}");

    let with_path =
        scenario(&format!("{}/api", ok.url()), 5, 50.0, r#"{"model": "pool", "size": 2}"#, r#""path": "/""#);
    let with_path = write(dir.path(), "path.json", &with_path);
    let (code, text) = harness(&["validate", &with_path]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("target.base_url") && text.contains("\"/api\""), "{text}");
}
