//! `reference-server`: parse flags, run, map the result to an exit code.

use std::process::ExitCode;

use clap::Parser;
use reference_server::cli::Cli;

fn main() -> ExitCode {
    // Bad flags: clap prints one usage error and exits 2 (= exit::STARTUP).
    let cli = Cli::parse();
    match reference_server::run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let who = if std::env::var_os(reference_server::worker::ENV_ID).is_some() {
                "worker"
            } else {
                "reference-server"
            };
            reference_server::log_line(&format!("{who}: error: {e:#}"));
            ExitCode::from(reference_server::exit_code(&e))
        }
    }
}
