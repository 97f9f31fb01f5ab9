//! The report page in a real browser (headless Chromium, Debian package
//! `chromium`): it renders with every chart in the DOM, loads nothing but the
//! page itself, and scripts/screenshot-report.sh makes a real (not blank)
//! picture of it. Fails, rather than skips, when Chromium is missing.

// Test helpers panic on purpose: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

#[path = "report_support/demo.rs"]
mod demo;

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use harness::report;

/// Flags for a browser that stays off the network: the page is
/// self-contained, and Chromium's own background services (updates, sync,
/// accounts) must not reach out, so every host name resolves to "not found".
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--no-pings",
    "--host-resolver-rules=MAP * ~NOTFOUND",
];
const TIMEOUT: Duration = Duration::from_secs(120);

/// One browser at a time: the tests run in parallel threads, and three
/// Chromiums at once on a loaded 2-core machine only make each slower.
static BROWSER: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "headless Chromium is needed for the report's browser test and was not found on PATH: \
         apt-get install chromium (Debian), or set CHROMIUM=/path/to/chromium"
    );
}

/// Kills the whole process group (Chromium forks helpers) when dropped.
struct Group(i32);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(self.0), nix::sys::signal::Signal::SIGKILL);
    }
}

/// Run a command in its own process group with a deadline; stdout and
/// stderr go to files in `dir` (pipes could fill up and stall it).
fn run(mut cmd: Command, dir: &Path, name: &str) -> (ExitStatus, String, String) {
    use std::os::unix::process::CommandExt;
    let out = dir.join(format!("{name}.stdout"));
    let err = dir.join(format!("{name}.stderr"));
    cmd.stdin(Stdio::null()).stdout(File::create(&out).unwrap()).stderr(File::create(&err).unwrap()).process_group(0);
    let _one_at_a_time = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("starting {name}: {e}"));
    let _group = Group(child.id() as i32);
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < TIMEOUT, "{name} did not finish within {TIMEOUT:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, std::fs::read_to_string(out).unwrap(), std::fs::read_to_string(err).unwrap())
}

/// Load `page` in Chromium; returns the rendered DOM and every file URL the
/// browser opened while loading it (Chromium logs each one at --v=1).
fn load(page: &Path, work: &Path, name: &str) -> (String, Vec<String>) {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(chromium());
    cmd.args(FLAGS)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--enable-logging=stderr", "--v=1", "--dump-dom"])
        .arg(format!("file://{}", page.display()));
    let (status, dom, log) = run(cmd, work, name);
    assert!(status.success(), "chromium --dump-dom failed ({status}):\n{log}");
    let loads = log
        .lines()
        .filter_map(|l| l.split_once("FileURLLoader::Start: ").map(|(_, url)| url.trim().to_string()))
        .collect();
    (dom, loads)
}

#[test]
fn report_renders_in_chromium_and_loads_nothing_else() {
    let work = tempfile::tempdir().unwrap();
    let run_dir = work.path().join("run");
    let data = demo::synthetic(60, 11);
    let page = report::write(&run_dir, &data).unwrap().index_html.canonicalize().unwrap();

    let (dom, loads) = load(&page, work.path(), "dump");
    assert_eq!(loads, vec![format!("file://{}", page.display())], "the page loaded more than itself");
    let charts = 6 * data.runs.len() + 1 + report::server_charts::titles(&data.runs).len() * data.runs.len();
    assert_eq!(dom.matches("<svg").count(), charts, "charts missing from the rendered DOM");
    assert!(dom.matches("<polyline").count() >= 2 * data.runs.len(), "chart lines missing from the rendered DOM");
    for must in [
        "id=\"verdict\"",
        "UNKNOWN: 1 of 5 gates could not be decided",
        "Latency by percentile",
        "kill-1",
        "Memory and file descriptors",
        "What the servers did",
        "data-server-chart=\"worker restarts by reason\"",
        "reason=crash",
    ] {
        assert!(dom.contains(must), "rendered DOM lacks {must:?}");
    }
}

#[test]
fn the_load_check_sees_a_missing_file() {
    // The check above must be able to fail: a page with an image and a script
    // that do not exist shows both as extra loads.
    let work = tempfile::tempdir().unwrap();
    let page = work.path().join("bad.html");
    std::fs::write(&page, "<!DOCTYPE html><p>x</p><img src=\"missing.png\"><script src=\"nope.js\"></script>").unwrap();
    let page = page.canonicalize().unwrap();
    let (_, loads) = load(&page, work.path(), "bad");
    let dir = page.parent().unwrap().display().to_string();
    for extra in ["missing.png", "nope.js"] {
        assert!(loads.contains(&format!("file://{dir}/{extra}")), "{extra} not seen in {loads:?}");
    }
}

struct Picture {
    width: u32,
    height: u32,
    rgb: Vec<[u8; 3]>,
}

fn decode(path: &Path) -> Picture {
    let mut reader = png::Decoder::new(File::open(path).unwrap()).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let samples = info.color_type.samples();
    assert!(samples >= 3, "unexpected colour type {:?}", info.color_type);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let rgb = buf[..info.buffer_size()].chunks_exact(samples).map(|p| [p[0], p[1], p[2]]).collect();
    Picture { width: info.width, height: info.height, rgb }
}

#[test]
fn screenshot_script_makes_a_real_picture() {
    let _ = chromium(); // fail with the install hint before anything else
    let work = tempfile::tempdir().unwrap();
    let run_dir = work.path().join("run");
    report::write(&run_dir, &demo::synthetic(60, 11)).unwrap();
    let shot = work.path().join("shot.png");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/screenshot-report.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script).arg(&run_dir).arg(&shot).arg("1400x3000");
    let (status, _, err) = run(cmd, work.path(), "screenshot");
    assert!(status.success(), "screenshot-report.sh failed ({status}):\n{err}");

    let pic = decode(&shot);
    assert_eq!((pic.width, pic.height), (1400, 3000));
    let distinct: HashSet<[u8; 3]> = pic.rgb.iter().copied().collect();
    assert!(distinct.len() > 200, "only {} colours: a blank or broken page", distinct.len());
    let count = |c: [u8; 3]| pic.rgb.iter().filter(|p| **p == c).count();
    // The verdict banner (unknown: #9a6700) is drawn by the inline CSS...
    assert!(count([0x9a, 0x67, 0x00]) > 10_000, "verdict banner not painted");
    // ...and the p50 line (#1f77b4) and the ok area by the inline SVG.
    assert!(count([31, 119, 180]) > 100, "p50 latency line not painted");
    let white = count([255, 255, 255]);
    assert!(white < pic.rgb.len() * 95 / 100, "page is almost all white");

    // Bad arguments get a clear message, not a browser run.
    let mut cmd = Command::new("bash");
    cmd.arg(&script).arg(work.path().join("nope")).arg(&shot);
    let (status, _, err) = run(cmd, work.path(), "screenshot-bad");
    assert!(!status.success());
    assert!(err.contains("index.html not found"), "{err}");
}
