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
//! A network body is read through [`Interruptible`], and a request sent
//! with [`send`], so a read or an answer that stalls does not keep the
//! first signal waiting.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
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

/// Sends `request` on a thread of its own and waits for its answer in
/// short turns, checking the flag between them, so a server that sends
/// nothing (no answer's head, or an upload it stops reading) does not keep
/// the first signal waiting. On a signal this fails as [`check`] does; the
/// thread is left to end with the request's own timeout.
pub fn send(
    request: reqwest::blocking::RequestBuilder,
) -> io::Result<reqwest::Result<reqwest::blocking::Response>> {
    check()?;
    let (sender, answer) = sync_channel(1);
    std::thread::Builder::new()
        .name("conda-docker-request".into())
        .spawn(move || {
            let _ = sender.send(request.send());
        })?;
    loop {
        match answer.recv_timeout(POLL) {
            Ok(answered) => return Ok(answered),
            Err(RecvTimeoutError::Timeout) => check()?,
            Err(RecvTimeoutError::Disconnected) => {
                return Err(io::Error::other("the request's thread ended unexpectedly"));
            }
        }
    }
}

/// Whether `error` or one of its causes is a network read that timed
/// out (the client's read timeout): what a stalled body, read through
/// [`Interruptible`] or not, fails with, to be told apart from a
/// connection that broke.
pub fn is_stall(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.downcast_ref::<reqwest::Error>()
            .is_some_and(reqwest::Error::is_timeout)
        {
            return true;
        }
        // An I/O error's `source` is its inner error's source, skipping
        // the inner error itself: step into it by hand.
        cause = match e.downcast_ref::<io::Error>() {
            Some(e) if e.kind() == io::ErrorKind::TimedOut => return true,
            Some(e) => e
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    false
}

/// How often a reader waiting for the network looks at the flag.
const POLL: Duration = Duration::from_millis(50);

/// The size of the pieces [`Interruptible`] passes on.
const PIECE: usize = 64 << 10;

/// A reader of a network body that fails as soon as a signal arrives,
/// even while the network sends nothing: the blocking reads happen on a
/// thread of their own, and this side waits for their bytes in short
/// turns, checking the flag between them. A blocked read cannot be
/// cancelled, so when this is dropped first the thread ends with its next
/// read (which the client's read timeout bounds), dropping the body.
pub struct Interruptible {
    pieces: Receiver<io::Result<Vec<u8>>>,
    piece: Vec<u8>,
    at: usize,
    done: bool,
}

impl Interruptible {
    /// Starts reading `inner` on a thread of its own.
    pub fn new<R: Read + Send + 'static>(inner: R) -> io::Result<Self> {
        // Two pieces in flight: the network keeps going while the last
        // one is hashed and written, and memory stays bounded.
        let (sender, pieces) = sync_channel(2);
        std::thread::Builder::new()
            .name("conda-docker-body".into())
            .spawn(move || pump(inner, &sender))?;
        Ok(Interruptible {
            pieces,
            piece: Vec::new(),
            at: 0,
            done: false,
        })
    }
}

/// Reads `inner` to its end or first error, passing each piece on; stops
/// early when nobody takes them any more.
fn pump<R: Read>(mut inner: R, sender: &SyncSender<io::Result<Vec<u8>>>) {
    loop {
        let mut piece = vec![0; PIECE];
        let read = loop {
            match inner.read(&mut piece) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => break other,
            }
        };
        let last = !matches!(read, Ok(n) if n > 0);
        let sent = read.map(|n| {
            piece.truncate(n);
            piece
        });
        if sender.send(sent).is_err() || last {
            return;
        }
    }
}

impl Read for Interruptible {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.piece.len() {
            if self.done {
                return Ok(0);
            }
            check()?;
            match self.pieces.recv_timeout(POLL) {
                Ok(Ok(piece)) => {
                    self.done = piece.is_empty();
                    self.piece = piece;
                    self.at = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.done = true;
                    return Err(io::Error::other("the body's reader ended unexpectedly"));
                }
            }
        }
        let n = buf.len().min(self.piece.len() - self.at);
        buf[..n].copy_from_slice(&self.piece[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::Interruptible;
    use std::io::Read;

    #[test]
    fn passes_every_byte_and_the_error() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut read = Vec::new();
        Interruptible::new(std::io::Cursor::new(data.clone()))
            .unwrap()
            .read_to_end(&mut read)
            .unwrap();
        assert_eq!(read, data);

        let failing = std::io::Cursor::new(vec![1u8; 10]).chain(Failing);
        let mut reader = Interruptible::new(failing).unwrap();
        let mut read = Vec::new();
        let error = reader.read_to_end(&mut read).unwrap_err();
        assert_eq!(error.to_string(), "broken");
        assert_eq!(read, [1; 10]);
    }

    struct Failing;

    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("broken"))
        }
    }
}
