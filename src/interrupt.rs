//! SIGINT and SIGTERM: the first asks the run to stop, the second ends it.
//!
//! The handler only records the signal. Work checks it where bytes flow
//! (every hashed write and verified read, so building, writing, pulling
//! and pushing all notice within one buffer) and fails with an I/O error
//! that unwinds like any other: the temp files and staging folders the
//! run made are removed by their guards on the way out, and nothing is
//! renamed into place. The binary then exits 128 + the signal's number.
//! A second signal exits at once, so a stuck run never needs `kill -9`;
//! what it leaves, the next build removes (see `build/staging.rs`).

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// The signal received first, 0 for none.
static SIGNAL: AtomicUsize = AtomicUsize::new(0);
/// Whether any was: arms the immediate exit on the next.
static ARMED: AtomicBool = AtomicBool::new(false);

/// The signals a run stops on.
const SIGNALS: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

/// Installs the handlers; a program calls this once, early. Until then
/// the signals keep their default action (a library user's own handling
/// is left alone).
pub fn install() -> io::Result<()> {
    for signal in SIGNALS {
        // The exit must be registered first: on the first signal ARMED is
        // still false when it runs.
        signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, &ARMED)?;
        let number = usize::try_from(signal).unwrap_or_default();
        signal_hook::flag::register_usize(signal, &SIGNAL, number)?;
        signal_hook::flag::register(signal, &ARMED)?;
    }
    Ok(())
}

/// The signal that asked the run to stop, if one did.
pub fn received() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        n => i32::try_from(n).ok(),
    }
}

/// The error work fails with once a signal has arrived.
#[derive(Debug, thiserror::Error)]
#[error("interrupted by {}", name(*.0))]
pub struct Interrupted(pub i32);

/// `SIGINT`, `SIGTERM`, for messages.
pub fn name(signal: i32) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

/// Fails once a signal has arrived. The error's kind is `Other`, not
/// `Interrupted`: std's copy loops retry an `Interrupted` error.
pub fn check() -> io::Result<()> {
    match received() {
        None => Ok(()),
        Some(signal) => Err(io::Error::other(Interrupted(signal))),
    }
}

/// Resolves once a signal has arrived: to race async work against
/// (`tokio::select!`), which is dropped, and so cleans up, when it loses.
pub async fn signalled() -> Interrupted {
    loop {
        if let Some(signal) = received() {
            return Interrupted(signal);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
