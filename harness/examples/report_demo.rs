//! Writes a report from synthetic data (nothing is measured) so the page can
//! be looked at while developing: `cargo run -p harness --example report_demo -- OUT_DIR`.

#[path = "../tests/report_support/demo.rs"]
mod demo;

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let out = std::env::args_os().nth(1).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("reports/demo"));
    let data = demo::synthetic(90, 7);
    let written = harness::report::write(&out, &data)?;
    println!("{}", written.index_html.display());
    Ok(())
}
