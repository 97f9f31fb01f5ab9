//! `harness`: parse arguments, run, exit with the documented code
//! (docs/EXIT_CODES.md).

use clap::Parser;

fn main() {
    let cli = harness::cli::Cli::parse();
    std::process::exit(harness::cli::main_with(cli));
}
