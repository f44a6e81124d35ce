//! gzip on several threads, with bytes that do not depend on how many: the
//! tar stream is cut at fixed uncompressed offsets into chunks of
//! [`GZIP_CHUNK_SIZE`], each compressed on its own into a complete gzip
//! member, and the members are written in order. A file of several
//! members is one gzip stream (RFC 1952, 2.2), read whole by gunzip, Go's
//! `compress/gzip`, containers/image and flate2's `MultiGzDecoder`;
//! eStargz layers are made the same way.
//!
//! The chunks go to a pool of threads shared by every layer of a build, so
//! `--jobs` bounds the compressing threads however many layers are written
//! at once; a fixed number of chunks per thread may be in flight (queued,
//! compressed, or waiting to be written), which bounds the memory.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};

use libdeflater::{CompressionLvl, Compressor};

/// The uncompressed bytes of one gzip member. Measured on a 303 MB tar of
/// shared libraries and Python sources at level 6: 256 KiB chunks gave
/// 109.08 MB, 1 MiB 108.60 MB and 4 MiB 108.49 MB (`pigz -6`: 109.98 MB),
/// at the same speed; 1 MiB keeps the memory small and spreads any layer
/// over 2 MiB across two threads.
pub const GZIP_CHUNK_SIZE: usize = 1 << 20;

/// The deflate implementation, which decides the bytes for one input and
/// level: libdeflate took 3.1 s of CPU for the tar above where zlib-rs
/// (flate2) took 4.2 s and wrote 4.6% more bytes.
pub const GZIP_IMPLEMENTATION: &str = "libdeflate 1.26";

/// Chunks in flight per thread: one being compressed and one waiting to
/// be written while the layer's tar fills the next.
const IN_FLIGHT_PER_THREAD: usize = 2;

/// A pool of threads that gzip chunks for any number of writers.
pub(crate) struct GzipThreads {
    threads: usize,
    /// The queue the threads take chunks from, once started; `None` when
    /// not one thread could be started (chunks are then compressed by
    /// their writer).
    queue: OnceLock<Option<Sender<Job>>>,
    permits: Arc<Permits>,
}

/// One chunk to compress, and where to send it back.
struct Job {
    input: Vec<u8>,
    level: u32,
    permit: Permit,
    reply: SyncSender<Compressed>,
}

/// A compressed chunk; its permit is given back when it is dropped, that
/// is once its writer wrote it.
struct Compressed {
    member: io::Result<Vec<u8>>,
    _permit: Permit,
}

/// How many more chunks may be put in flight.
struct Permits {
    free: Mutex<usize>,
    freed: Condvar,
}

/// The right to put one chunk in flight.
struct Permit(Arc<Permits>);

impl Drop for Permit {
    fn drop(&mut self) {
        *lock(&self.0.free) += 1;
        self.0.freed.notify_one();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl GzipThreads {
    /// A pool of `threads` threads, started at the first chunk.
    pub(crate) fn new(threads: usize) -> Self {
        let threads = threads.max(1);
        GzipThreads {
            threads,
            queue: OnceLock::new(),
            permits: Arc::new(Permits {
                free: Mutex::new(threads * IN_FLIGHT_PER_THREAD),
                freed: Condvar::new(),
            }),
        }
    }

    fn try_permit(&self) -> Option<Permit> {
        let mut free = lock(&self.permits.free);
        (*free > 0).then(|| {
            *free -= 1;
            Permit(self.permits.clone())
        })
    }

    fn wait_permit(&self) -> Permit {
        let mut free = lock(&self.permits.free);
        while *free == 0 {
            free = self
                .permits
                .freed
                .wait(free)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *free -= 1;
        Permit(self.permits.clone())
    }

    /// Queues `input` and returns where its member will arrive.
    fn compress(&self, input: Vec<u8>, level: u32, permit: Permit) -> Receiver<Compressed> {
        let (reply, member) = mpsc::sync_channel(1);
        let job = Job {
            input,
            level,
            permit,
            reply,
        };
        let unsent = match self.queue.get_or_init(|| self.start()) {
            Some(queue) => queue.send(job).err().map(|e| e.0),
            None => Some(job),
        };
        if let Some(job) = unsent {
            let member = gzip_member(&mut None, &job.input, job.level);
            let _ = job.reply.send(Compressed {
                member,
                _permit: job.permit,
            });
        }
        member
    }

    fn start(&self) -> Option<Sender<Job>> {
        let (queue, jobs) = mpsc::channel::<Job>();
        let jobs = Arc::new(Mutex::new(jobs));
        let started = (0..self.threads)
            .filter(|_| {
                let jobs = jobs.clone();
                std::thread::Builder::new()
                    .name("gzip".into())
                    .spawn(move || work(&jobs))
                    .is_ok()
            })
            .count();
        (started > 0).then_some(queue)
    }
}

/// A thread of the pool: compresses chunks until the pool is dropped,
/// keeping its compressor (whose tables cost more to set up than a small
/// chunk takes to compress).
fn work(jobs: &Mutex<Receiver<Job>>) {
    let mut compressor = None;
    loop {
        let next = lock(jobs).recv();
        let Ok(job) = next else { return };
        let member = gzip_member(&mut compressor, &job.input, job.level);
        let _ = job.reply.send(Compressed {
            member,
            _permit: job.permit,
        });
    }
}

/// `input` as one gzip member: no file name, mtime 0, so nothing of the
/// host or the clock is in it.
fn gzip_member(
    compressor: &mut Option<(u32, Compressor)>,
    input: &[u8],
    level: u32,
) -> io::Result<Vec<u8>> {
    let compressor = match compressor {
        Some((kept, compressor)) if *kept == level => compressor,
        _ => {
            let lvl = i32::try_from(level)
                .ok()
                .and_then(|l| CompressionLvl::new(l).ok())
                .ok_or_else(|| io::Error::other(format!("no gzip level {level}")))?;
            &mut compressor.insert((level, Compressor::new(lvl))).1
        }
    };
    let mut member = vec![0; compressor.gzip_compress_bound(input.len())];
    let len = compressor
        .gzip_compress(input, &mut member)
        .map_err(|e| io::Error::other(format!("gzip: {e:?}")))?;
    member.truncate(len);
    Ok(member)
}

/// A writer that gzips its stream in chunks on a [`GzipThreads`] pool and
/// writes the members, in order, to `inner`. `flush` writes only the
/// members already made: a chunk is never cut short before the end.
pub(crate) struct ChunkedGzip<W: Write> {
    inner: W,
    level: u32,
    threads: Arc<GzipThreads>,
    chunk: Vec<u8>,
    in_flight: VecDeque<Receiver<Compressed>>,
    members: u64,
}

impl<W: Write> ChunkedGzip<W> {
    /// Compresses at `level` (0-9) into `inner`.
    pub(crate) fn new(inner: W, level: u32, threads: Arc<GzipThreads>) -> Self {
        ChunkedGzip {
            inner,
            level,
            threads,
            chunk: Vec::with_capacity(GZIP_CHUNK_SIZE),
            in_flight: VecDeque::new(),
            members: 0,
        }
    }

    /// Compresses the last chunk (an empty stream is one empty member, a
    /// valid gzip file), writes every member and returns `inner`.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        if !self.chunk.is_empty() || self.members == 0 {
            self.send_chunk()?;
        }
        while !self.in_flight.is_empty() {
            self.write_oldest()?;
        }
        Ok(self.inner)
    }

    /// Hands the chunk to the pool once a permit is free; until then,
    /// writes this writer's own oldest member (which frees one).
    fn send_chunk(&mut self) -> io::Result<()> {
        let input = std::mem::replace(&mut self.chunk, Vec::with_capacity(GZIP_CHUNK_SIZE));
        let permit = loop {
            if let Some(permit) = self.threads.try_permit() {
                break permit;
            }
            if self.in_flight.is_empty() {
                break self.threads.wait_permit();
            }
            self.write_oldest()?;
        };
        let member = self.threads.compress(input, self.level, permit);
        self.in_flight.push_back(member);
        self.members += 1;
        self.write_ready()
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        if let Some(member) = self.in_flight.pop_front() {
            let compressed = member.recv().map_err(|_| stopped())?;
            self.inner.write_all(&compressed.member?)?;
        }
        Ok(())
    }

    /// Writes the members at the front that are done, without waiting.
    fn write_ready(&mut self) -> io::Result<()> {
        while let Some(member) = self.in_flight.front() {
            match member.try_recv() {
                Ok(compressed) => {
                    self.in_flight.pop_front();
                    self.inner.write_all(&compressed.member?)?;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Err(stopped()),
            }
        }
        Ok(())
    }
}

fn stopped() -> io::Error {
    io::Error::other("a gzip thread stopped before compressing its chunk")
}

impl<W: Write> Write for ChunkedGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(GZIP_CHUNK_SIZE - self.chunk.len());
        self.chunk.extend_from_slice(&buf[..n]);
        if self.chunk.len() == GZIP_CHUNK_SIZE {
            self.send_chunk()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_ready()?;
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    /// Bytes that compress somewhat: a counter's text, with some noise.
    fn sample(len: usize) -> Vec<u8> {
        let mut seed = 7u64;
        (0..len)
            .map(|i| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                if i % 3 == 0 {
                    (seed >> 56) as u8
                } else {
                    b'a' + (i % 17) as u8
                }
            })
            .collect()
    }

    fn gzip(data: &[u8], threads: usize, piece: usize) -> Vec<u8> {
        let pool = Arc::new(GzipThreads::new(threads));
        let mut writer = ChunkedGzip::new(Vec::new(), 6, pool);
        for part in data.chunks(piece.max(1)) {
            writer.write_all(part).unwrap();
        }
        writer.finish().unwrap()
    }

    #[test]
    fn members_are_cut_at_fixed_offsets_whatever_the_threads_and_writes() {
        let data = sample(3 * GZIP_CHUNK_SIZE + 12345);
        let one = gzip(&data, 1, 1 << 16);
        assert_eq!(gzip(&data, 4, 1000), one);
        assert_eq!(gzip(&data, 2, GZIP_CHUNK_SIZE * 2), one);
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(one.as_slice())
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        // Four members, each a gzip header with no name and mtime 0.
        let mut members = 0;
        let mut rest = one.as_slice();
        while !rest.is_empty() {
            assert_eq!(&rest[..8], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0]);
            let mut decoder = flate2::bufread::GzDecoder::new(rest);
            io::copy(&mut decoder, &mut io::sink()).unwrap();
            rest = decoder.into_inner();
            members += 1;
        }
        assert_eq!(members, 4);
    }

    #[test]
    fn an_empty_stream_is_one_empty_member() {
        let empty = gzip(&[], 2, 1);
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(empty.as_slice())
            .read_to_end(&mut back)
            .unwrap();
        assert!(back.is_empty());
        assert_eq!(&empty[..2], &[0x1f, 0x8b]);
    }

    #[test]
    fn writers_sharing_one_thread_all_finish() {
        let pool = Arc::new(GzipThreads::new(1));
        let data = sample(5 * GZIP_CHUNK_SIZE / 2);
        let expected = gzip(&data, 1, 1 << 20);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let pool = pool.clone();
                    let data = &data;
                    scope.spawn(move || {
                        let mut writer = ChunkedGzip::new(Vec::new(), 6, pool);
                        for part in data.chunks(4096) {
                            writer.write_all(part).unwrap();
                        }
                        writer.finish().unwrap()
                    })
                })
                .collect();
            for handle in handles {
                assert_eq!(handle.join().unwrap(), expected);
            }
        });
    }
}
