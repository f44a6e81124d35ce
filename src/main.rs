//! The `conda-docker` binary: parse, run, report.

use std::io::IsTerminal;
use std::process::ExitCode;

use conda_docker::cli::{self, Cli};
use conda_docker::invocation::Invocation;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so writing into a closed pipe (`man | head`)
    // is an error at every print; a command-line tool should just end.
    // SAFETY: called first, before any thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // SIGINT/SIGTERM stop the run cleanly (see conda_docker::interrupt);
    // without the handlers they would still end it, only less tidily.
    if let Err(e) = conda_docker::interrupt::install() {
        eprintln!("warning: cannot handle SIGINT/SIGTERM: {e}");
    }
    let invocation = Invocation::detect();
    invocation.set_current();
    let cli = Cli::parse_as(invocation);
    // Our own warnings always show; the libraries' (rattler's) only from
    // -v on: what they warn of reaches the user as our error, with the fix.
    let filter = match cli.verbose {
        0 => "off,conda_docker=warn",
        1 => "info,rustls_platform_verifier=off,rattler_repodata_gateway=error",
        2 => "debug,rustls_platform_verifier=off",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
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
        // Whatever error the stop surfaced as, the cause is the signal;
        // 128 + its number, as a shell reports a process it ended.
        Err(_) if let Some(signal) = conda_docker::interrupt::received() => {
            eprintln!(
                "error: {}; the output was not written",
                conda_docker::interrupt::Interrupted(signal)
            );
            ExitCode::from(u8::try_from(128 + signal).unwrap_or(1))
        }
        Err(error) => {
            match error.keeps_lines() {
                true => eprintln!("error: {error}"),
                false => eprintln!("error: {}", conda_docker::error_line(&error)),
            }
            ExitCode::FAILURE
        }
    }
}
