//! The run report: a self-contained HTML page (inline CSS and SVG charts, no
//! external anything) for stakeholders, a JUnit XML file for CI, and the
//! baseline comparison. Input is [`model::ReportData`], saved next to the page
//! as `report.json` so the page can be rebuilt without re-running
//! (`harness report RUN_DIR` calls [`regenerate`]).
//!
//! Not for: measuring or judging a run (record/ and judge/ do that).

pub mod build;
pub mod charts;
pub mod html;
pub mod junit;
pub mod model;
pub mod resources;
pub mod rundir;
pub mod server_charts;
pub mod single;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub use model::ReportData;
pub use single::write_for_run;

/// File names inside a run folder.
pub const REPORT_JSON: &str = "report.json";
pub const INDEX_HTML: &str = "index.html";
pub const JUNIT_XML: &str = "junit.xml";

/// What [`write`] produced.
#[derive(Debug, Clone)]
pub struct Written {
    pub report_json: PathBuf,
    pub index_html: PathBuf,
    pub junit_xml: PathBuf,
}

/// Write `report.json`, `index.html` and `junit.xml` into `run_dir` (created if missing).
pub fn write(run_dir: &Path, data: &ReportData) -> Result<Written> {
    std::fs::create_dir_all(run_dir).with_context(|| format!("creating report folder {}", run_dir.display()))?;
    let report_json = run_dir.join(REPORT_JSON);
    let json = serde_json::to_string_pretty(data).context("serialising report data")?;
    write_file(&report_json, json.as_bytes())?;
    let index_html = write_html(run_dir, data)?;
    let junit_xml = run_dir.join(JUNIT_XML);
    write_file(&junit_xml, junit::render(&data.scenario.name, &data.generated, &data.verdict)?.as_bytes())?;
    Ok(Written { report_json, index_html, junit_xml })
}

/// Rebuild `index.html` from the run folder's `report.json` without re-running.
pub fn regenerate(run_dir: &Path) -> Result<PathBuf> {
    let path = run_dir.join(REPORT_JSON);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {} (is {} a run folder?)", path.display(), run_dir.display()))?;
    let de = &mut serde_json::Deserializer::from_str(&text);
    let data: ReportData = serde_path_to_error::deserialize(de).map_err(|e| {
        anyhow::anyhow!("{} is not valid report data: at `{}`: {}", path.display(), e.path(), e.inner())
    })?;
    write_html(run_dir, &data)
}

fn write_html(run_dir: &Path, data: &ReportData) -> Result<PathBuf> {
    let path = run_dir.join(INDEX_HTML);
    write_file(&path, html::render(data)?.as_bytes())?;
    Ok(path)
}

/// Write via a temporary file and rename, so a reader never sees half a page.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::judge::summary::write_atomically(path, bytes).with_context(|| format!("writing {}", path.display()))
}
