//! The report files from synthetic data: index.html is self-contained (no
//! external loads, no scripts), has every chart and escapes text; junit.xml is
//! well-formed; `regenerate` rebuilds the page from report.json alone.

// Test helpers panic on purpose: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use harness::judge::baseline;
use harness::report::model::{GateRow, Status};
use harness::report::{self, ReportData};

#[path = "report_support/demo.rs"]
mod demo;

fn sample() -> ReportData {
    demo::synthetic(40, 3)
}

/// Everything in the page that would make the browser fetch something.
/// All text in the page is escaped, so every literal `<` opens a tag: look at
/// tag names and attributes, and at the CSS.
fn external_references(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for tag in html.split('<').skip(1) {
        let tag = tag.split('>').next().unwrap_or("").to_ascii_lowercase();
        let name = tag.split_whitespace().next().unwrap_or("");
        if ["script", "link", "iframe", "object", "embed", "img", "image", "use", "audio", "video", "source"]
            .contains(&name)
        {
            found.push(format!("<{name}>"));
        }
        // The SVG namespace is an identifier, never fetched.
        let attrs = tag.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
        for attr in ["src=", "srcset=", "data=", "action=", "poster=", "background="] {
            if attrs.split_whitespace().any(|a| a.starts_with(attr)) {
                found.push(format!("{attr} in <{name}>"));
            }
        }
        for a in attrs.split_whitespace().filter(|a| a.starts_with("href=") || a.starts_with("xlink:href=")) {
            let value = a.split_once('=').map(|(_, v)| v).unwrap_or("");
            if !(value.starts_with("\"#") || value.starts_with("'#")) {
                found.push(format!("{a} in <{name}>"));
            }
        }
        if attrs.contains("http:") || attrs.contains("https:") || attrs.contains("url(") {
            found.push(format!("a URL in <{name}>"));
        }
    }
    for css in html.split("<style>").skip(1).map(|s| s.split("</style>").next().unwrap_or("")) {
        for needle in ["url(", "@import", "@font-face"] {
            if css.contains(needle) {
                found.push(format!("{needle} in CSS"));
            }
        }
    }
    found
}

#[test]
fn page_is_self_contained_with_every_chart() {
    let data = sample();
    let html = report::html::render(&data).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(external_references(&html), Vec::<String>::new());
    // 4 time charts per run, memory and descriptors per run, the spectrum,
    // and per server chart title one per run.
    let titles = harness::report::server_charts::titles(&data.runs).len();
    assert_eq!(titles, 5, "workers, restarts, in-flight, connections, requests");
    let charts = 6 * data.runs.len() + 1 + titles * data.runs.len();
    assert_eq!(html.matches("<svg").count(), charts);
    assert_eq!(html.matches("</svg>").count(), charts);
    // The server's side: its section, a chart per title, the run without
    // scrapes says so, and the gap is stated in words too.
    assert!(html.contains("What the servers did"));
    assert!(html.contains("data-server-chart=\"workers up and draining\""));
    assert!(html.contains("not scraped for this run"));
    assert!(html.contains("cluster: 2 of"), "the gap sentence");
    assert!(html.contains("no data (scrape failed)"), "the gap in the chart's legend");
    for must in [
        "id=\"verdict\"",
        "id=\"key-numbers\"",
        "id=\"spectrum\"",
        "Latency by percentile",
        "Per endpoint",
        "Memory and file descriptors",
        "MiB/h, bound 50 MiB/h",
        "Faults",
        "Audit",
        "schedule slip",
        "How the load was scaled to this machine",
        "The cluster dropped 0 of",
        "2 worker kills, 1 rolling restart and 1 hang",
        &data.machine.cpu_model,
    ] {
        assert!(html.contains(must), "page lacks {must:?}");
    }
    // Every fault is named on its run's time charts (4 charts each, memory and descriptors, and the server's).
    for run in &data.runs {
        for f in &run.faults {
            let label = format!("\n{}\n</text>", f.name);
            let n = html.matches(&label).count();
            assert_eq!(n, 6 + titles, "fault {} not marked on every chart of {}", f.name, run.label);
        }
    }
}

#[test]
fn the_checker_finds_external_references() {
    // The self-containment check itself must be able to fail.
    let bad = "<html><img src=\"a.png\"><a href=\"https://x.example/\">x</a><style>b{background:url(x.png)}</style>\
               <script src=\"y.js\"></script><a href=\"#verdict\">ok</a></html>";
    let found = external_references(bad);
    for expected in ["<img>", "src= in <img>", "<script>", "src= in <script>", "url( in CSS", "a URL in <a>"] {
        assert!(found.contains(&expected.to_string()), "{expected} not found in {found:?}");
    }
    assert!(found.iter().any(|f| f.starts_with("href=\"https")), "{found:?}");
    assert!(!found.iter().any(|f| f.contains("#verdict")), "{found:?}");
    // Escaped text that merely mentions a URL is not a load.
    assert_eq!(external_references("<p>see &lt;img src=x&gt; at https://example.org</p>"), Vec::<String>::new());
}

#[test]
fn all_text_is_escaped() {
    let mut data = sample();
    data.title = "<script>alert(1)</script> & co".into();
    data.scenario.description = "<img src=x onerror=alert(2)>".into();
    data.runs[0].label = "single \"<b>\"".into();
    data.runs[0].faults[0].name = "<kill>&".into();
    data.verdict.push(GateRow { gate: "<gate>".into(), status: Status::Fail, detail: "a < b & c > d".into() });
    let html = report::html::render(&data).unwrap();
    for raw in ["<script>alert(1)", "<img src=x", "<b>", "<kill>", "<gate>", "a < b"] {
        assert!(!html.contains(raw), "unescaped {raw:?} in page");
    }
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; co"));
    assert!(html.contains("&lt;kill&gt;&amp;"));
    assert!(html.contains("FAIL: 1 of 6 gates failed"));
    assert_eq!(external_references(&html), Vec::<String>::new());
}

#[test]
fn write_then_regenerate_from_report_json() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let data = sample();
    let written = report::write(&run_dir, &data).unwrap();
    let first = std::fs::read_to_string(&written.index_html).unwrap();
    let saved: ReportData = serde_json::from_str(&std::fs::read_to_string(&written.report_json).unwrap()).unwrap();
    assert_eq!(saved, data);

    std::fs::remove_file(&written.index_html).unwrap();
    let path = report::regenerate(&run_dir).unwrap();
    assert_eq!(path, written.index_html);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), first, "regenerated page differs");

    let junit = std::fs::read_to_string(&written.junit_xml).unwrap();
    assert!(junit.starts_with("<?xml"));
    assert_eq!(junit.matches("<testcase").count(), data.verdict.len());
    assert_eq!(junit.matches("<error").count(), 1, "the unknown baseline gate is an error: {junit}");
}

#[test]
fn regenerate_names_the_missing_or_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = format!("{:#}", report::regenerate(dir.path()).unwrap_err());
    let folder = dir.path().display().to_string();
    assert!(err.contains("report.json") && err.contains(&format!("is {folder} a run folder")), "{err}");
    std::fs::write(dir.path().join("report.json"), "{\"title\": 3}").unwrap();
    let err = format!("{:#}", report::regenerate(dir.path()).unwrap_err());
    assert!(err.contains("not valid report data") && err.contains("title"), "{err}");
}

#[test]
fn baseline_files_are_compared_and_bad_ones_named() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let old = write("old.json", r#"{"totals": {"dropped": 0}, "latency": {"overall": {"p99_ms": 100.0}}}"#);
    let new = write("new.json", r#"{"totals": {"dropped": 4}, "latency": {"overall": {"p99_ms": 90.0}}}"#);
    let options = baseline::BaselineOptions::default();
    let cmp = baseline::compare(&baseline::read(&new).unwrap(), &baseline::read(&old).unwrap(), &options);
    assert_eq!(cmp.status(), Status::Fail);
    let failed: Vec<&str> = cmp.failures().map(|c| c.detail.as_str()).collect();
    assert_eq!(failed, ["dropped requests increased from 0 to 4"]);

    let bad = write("bad.json", "{not json");
    let err = format!("{:#}", baseline::read(&bad).unwrap_err());
    assert!(err.contains("bad.json is not JSON"), "{err}");
    let err = format!("{:#}", baseline::read(&dir.path().join("nope.json")).unwrap_err());
    assert!(err.contains("reading") && err.contains("nope.json"), "{err}");
}

#[test]
fn runs_without_data_still_render() {
    let mut data = sample();
    data.verdict.clear();
    for run in &mut data.runs {
        run.seconds.clear();
        run.spectrum.clear();
        run.endpoints.clear();
        run.faults.clear();
        run.audit = None;
        run.resources = None;
        run.server.clear();
    }
    let html = report::html::render(&data).unwrap();
    assert!(!html.contains("Memory and file descriptors"), "no samples, no section");
    assert!(html.contains("UNKNOWN: no gates were checked"));
    assert!(html.contains("no failed attempts"));
    assert!(html.contains("no ok requests recorded"));
    assert!(html.contains("No faults were injected in this run."));
    assert_eq!(html.matches("<svg").count(), 4 * data.runs.len() + 1);

    data.runs.truncate(1);
    let html = report::html::render(&data).unwrap();
    assert_eq!(html.matches("<svg").count(), 5);
    assert!(!html.contains("'s p99 latency ("), "a single run has no comparison sentence");
}

#[test]
fn per_host_table_only_for_a_fleet() {
    use harness::outcome::FailureClass;
    use harness::report::model::HostLine;
    let mut data = sample();
    let plain = report::html::render(&data).unwrap();
    assert!(!plain.contains("Per host"), "no hosts, no table");

    let line = |host: Option<&str>, failures: Vec<(FailureClass, u64)>, p99_ms| HostLine {
        key: host.map(str::to_string),
        attempts: 1200,
        ok: 1100,
        refused: 100 - failures.iter().map(|(_, n)| n).sum::<u64>(),
        failures: failures.into_iter().collect(),
        p99_ms,
    };
    data.runs[0].hosts = vec![
        line(Some("a"), vec![(FailureClass::ServerError, 3)], Some(42.0)),
        line(Some("<b>"), vec![], Some(7.5)),
        line(None, vec![(FailureClass::ConnectRefused, 5)], None),
    ];
    let html = report::html::render(&data).unwrap();
    let at = |s: &str| html.find(s).unwrap_or_else(|| panic!("{s:?} not in page"));
    assert!(at("Per endpoint") < at("Per host"), "the host table comes under the endpoint table");
    let table = &html[at("Per host")..];
    for s in ["1,200", "3 server_error", "5 connect_refused", "no response", "&lt;b&gt;"] {
        assert!(table.contains(s), "{s:?} not in the host table");
    }
    assert!(!html.contains("<b>"), "host names are escaped");
}
