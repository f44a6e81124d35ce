//! What a pull or a push tells its caller while layers move, so that a
//! front end can show progress (bytes and layers); the registry code
//! itself never prints.

use std::io::Read;

use crate::digest::Digest;

/// Which way layers move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From a registry into the blob store.
    Pull,
    /// From an image to a registry.
    Push,
}

/// What became of one layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerOutcome {
    /// Its bytes were downloaded.
    Downloaded,
    /// The blob store had it: nothing was downloaded.
    Stored,
    /// Its bytes were sent.
    Uploaded,
    /// Mounted from another repository of the same registry.
    Mounted,
    /// The repository had it already.
    Existing,
}

impl LayerOutcome {
    /// Whether the layer's bytes crossed the network (and were counted by
    /// [`Transfers::moved`] as they did).
    pub fn moved_bytes(self) -> bool {
        matches!(self, LayerOutcome::Downloaded | LayerOutcome::Uploaded)
    }
}

/// Hears how a pull or push goes. Calls come from worker threads.
pub trait Transfers: Sync {
    /// `layers` layers of `bytes` bytes in all are about to move.
    fn begin(&self, _direction: Direction, _layers: usize, _bytes: u64) {}
    /// `bytes` more bytes of a layer crossed the network.
    fn moved(&self, _bytes: u64) {}
    /// A broken transfer starts again: `bytes` already counted by
    /// [`Transfers::moved`] will cross again.
    fn rewound(&self, _bytes: u64) {}
    /// One layer is done, or needed no transfer.
    fn layer_done(&self, _digest: &Digest, _size: u64, _outcome: LayerOutcome) {}
    /// Every layer is done.
    fn end(&self) {}
}

/// Hears nothing: for pulls and pushes no one watches.
pub struct Unwatched;

impl Transfers for Unwatched {}

/// How many bytes a [`Counted`] reader gathers before it tells
/// [`Transfers::moved`]: a bar need not hear of every 8 KiB read.
const REPORT_EVERY: u64 = 1 << 20;

/// A reader that tells [`Transfers::moved`] of what it reads (every
/// [`REPORT_EVERY`] bytes, and at the end), and keeps count so that a
/// broken try can be taken back.
pub(super) struct Counted<'a, R> {
    inner: R,
    progress: &'a dyn Transfers,
    reported: u64,
    pending: u64,
}

impl<'a, R> Counted<'a, R> {
    pub(super) fn new(inner: R, progress: &'a dyn Transfers) -> Self {
        Counted {
            inner,
            progress,
            reported: 0,
            pending: 0,
        }
    }

    /// The reader counted.
    pub(super) fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The bytes told to [`Transfers::moved`] so far.
    pub(super) fn reported(&self) -> u64 {
        self.reported
    }
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pending += n as u64;
        if (n == 0 && self.pending > 0) || self.pending >= REPORT_EVERY {
            self.progress.moved(self.pending);
            self.reported += self.pending;
            self.pending = 0;
        }
        Ok(n)
    }
}
