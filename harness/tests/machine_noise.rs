//! A run on a machine busy with other work (issue 20): CPU burners in separate
//! processes during a short run near one reference-server process's capacity
//! make it inconclusive (exit 2, the band on the chart, the reason in
//! summary.json), while the same run on a quiet machine passes and a light
//! run under the same noise still passes.
//! Needs `cargo build -p reference-server` in the same target dir.
#![allow(clippy::unwrap_used)]

mod chaos_support;
mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use chaos_support::*;
use serde_json::{Value, json};

/// Busy loops in their own processes (not in the harness's or the target's
/// tree), killed and reaped on drop.
struct Burners(Vec<Child>);

impl Burners {
    fn start(n: usize) -> Burners {
        Burners(
            (0..n)
                .map(|_| {
                    Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .unwrap()
                })
                .collect(),
        )
    }
}

impl Drop for Burners {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn smoke() -> Value {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/smoke.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The smoke journeys at a constant `rate` of shoppers/s for 4 s against a
/// fresh single-process reference server (at most one CPU: its capacity is
/// what the calibration measures), gated on drops and p99 only (no audit:
/// this test is about speed).
fn scenario(dir: &Path, rate: f64) -> Value {
    let mut s = smoke();
    let (port, admin) = (free_port(), free_port());
    s["target"]["base_url"] = json!(format!("http://127.0.0.1:{port}"));
    s["target"]["launch"] = launch_json(&reference_launch(dir, port, admin, 0, &[]));
    s["arrival"] = json!([{"duration": "4s", "rate": rate}]);
    s["shoppers"] = json!((rate * 4.0).floor() as u64);
    s.as_object_mut().unwrap().remove("audit");
    s["gates"] = json!({"max_dropped": 0, "latency": [{"percentile": 99, "max": "1s"}], "audit_must_pass": false});
    s["environment"] = json!({"max_other_cpu": 0.15});
    s
}

struct Played {
    code: i32,
    summary: Value,
    html: String,
    dir: std::path::PathBuf,
}

fn play(dir: &Path, name: &str, rate: f64) -> Played {
    let sub = dir.join(name);
    std::fs::create_dir_all(&sub).unwrap();
    let file = sub.join("scenario.json");
    std::fs::write(&file, scenario(&sub, rate).to_string()).unwrap();
    let out = sub.join("run");
    let o = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["run", file.to_str().unwrap(), "--quiet", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let Ok(text) = std::fs::read_to_string(out.join("summary.json")) else {
        panic!("{name}: no summary.json; exit {:?}: {}", o.status.code(), String::from_utf8_lossy(&o.stderr));
    };
    let summary: Value = serde_json::from_str(&text).unwrap();
    let html = std::fs::read_to_string(out.join("index.html")).unwrap_or_default();
    eprintln!(
        "{name} at {rate:.0}/s: exit {:?}, verdict {}, environment {}, gates {}\n{}",
        o.status.code(),
        summary["verdict"],
        summary["environment"],
        summary["gates"],
        String::from_utf8_lossy(&o.stdout)
    );
    Played { code: o.status.code().unwrap_or(-1), summary, html, dir: out }
}

/// One process's capacity (shoppers/s) for the smoke mix, measured the way
/// `harness compare --calibrate` does, with the busy check off (a shared
/// machine may be busy now; this figure only sizes the test's load).
async fn capacity(dir: &Path) -> f64 {
    let mut s = harness::scenario::parse(&scenario(dir, 10.0).to_string()).unwrap();
    s.environment.max_other_cpu = 1.0;
    let launch = s.target.launch.clone().unwrap();
    let m = harness::drive::calibrate::measure(&s, &launch, &dir.join("calibration")).await.unwrap();
    let one = m.shoppers as f64 / m.server_cpu_s;
    eprintln!("calibration: {m:?}; one process serves at most {one:.0} shoppers/s");
    one
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_work_makes_a_run_near_capacity_inconclusive_and_leaves_a_light_one_passing() {
    let dir = tempfile::tempdir().unwrap();
    let cap = capacity(dir.path()).await;
    let near = (cap * 0.7).max(20.0);
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);

    // Quiet (as far as this test controls the machine): the run passes. On a
    // machine that other people share, the harness may see their work and
    // call the run inconclusive; it must never call it failed.
    let quiet = play(dir.path(), "quiet", near);
    if quiet.summary["environment"]["noisy"] == json!(false) {
        assert_eq!(quiet.code, 0, "a quiet run near capacity passes");
        assert_eq!(quiet.summary["verdict"], "pass");
    } else {
        eprintln!("NOTE: the machine was busy with someone else's work during the quiet run");
        assert_ne!(quiet.code, 1, "a busy machine never turns a run red on speed alone");
    }

    // Other work on every CPU and then some.
    let burners = Burners::start(cpus + 1);
    let noisy = play(dir.path(), "noisy", near);
    let light = play(dir.path(), "light", (cap * 0.05).max(5.0));
    let calibration = calibrate_busy(dir.path());
    drop(burners);

    let env = &noisy.summary["environment"];
    assert_eq!(env["noisy"], true, "{env}");
    assert_eq!(noisy.summary["verdict"], "inconclusive", "{}", noisy.summary["gates"]);
    assert_eq!((noisy.code, noisy.summary["exit_code"].as_i64()), (2, Some(2)));
    assert!(env["reason"].as_str().unwrap().contains("other work on this machine took"), "{env}");
    assert!(!env["undecided_gates"].as_array().unwrap().is_empty(), "{env}");
    assert!(env["busiest_other"].as_str().unwrap().contains("sh"), "{env}");
    let failed: Vec<&Value> =
        noisy.summary["gates"].as_array().unwrap().iter().filter(|g| g["passed"] == false).collect();
    assert!(failed.iter().all(|g| g["capacity_dependent"] == true), "{failed:?}");
    // The band on the charts, the reason on the banner, the figures per second.
    assert!(noisy.html.contains("other work on this machine"), "no band in the report");
    assert!(noisy.html.contains("INCONCLUSIVE"), "no inconclusive banner");
    let csv = std::fs::read_to_string(noisy.dir.join("machine.csv")).unwrap();
    assert!(csv.starts_with("t_s,other_cpu,steal,target_cpu,harness_cpu,slip_max_ms,busiest_other\n"), "{csv}");
    assert!(csv.lines().count() > 3, "{csv}");
    let errors = support::summary_schema_errors(&noisy.summary);
    assert!(errors.is_empty(), "{errors:?}");

    // Calibration on the busy machine gives up and says what was busy.
    assert_eq!(calibration.status.code(), Some(2));
    let err = String::from_utf8_lossy(&calibration.stderr);
    assert!(err.contains("this machine is busy with other work") && err.contains("(sh "), "{err}");

    // The same noise under a light load: the server kept up, so the gates stand.
    assert_eq!(light.summary["environment"]["noisy"], true, "{}", light.summary["environment"]);
    assert_eq!((light.code, light.summary["verdict"].as_str()), (0, Some("pass")), "{}", light.summary["gates"]);
}

/// `harness compare --calibrate` on the test's scenario (the reference server
/// next to the harness binary); it should stop at the first measuring burst.
fn calibrate_busy(dir: &Path) -> std::process::Output {
    let sub = dir.join("calibrate");
    std::fs::create_dir_all(&sub).unwrap();
    let file = sub.join("scenario.json");
    std::fs::write(&file, scenario(&sub, 10.0).to_string()).unwrap();
    let out = sub.join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["compare", file.to_str().unwrap(), "--calibrate", "--quiet", "--workers", "1"])
        .args(["--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    eprintln!("compare --calibrate: exit {:?}\n{}", o.status.code(), String::from_utf8_lossy(&o.stderr));
    o
}
