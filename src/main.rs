//! The `conda-docker` binary: parse, run, report.

use std::io::IsTerminal;
use std::process::ExitCode;

use conda_docker::cli::{self, Cli};
use conda_docker::invocation::Invocation;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let invocation = Invocation::detect();
    invocation.set_current();
    let cli = Cli::parse_as(invocation);
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            // Its failures reach the user as our error, with the fix.
            "{level},rustls_platform_verifier=off,rattler_repodata_gateway=error"
        ))
    });
    // Colours only for a person at a terminal who has not asked for none.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", conda_docker::error_line(&error));
            ExitCode::FAILURE
        }
    }
}
