//! zstd on threads shared by every layer: each layer's stream is one frame
//! compressed by zstd's multithreaded mode (`zstdmt`) in jobs of a fixed
//! size, whose output depends on the job size and not on the number of
//! workers, as long as there is one (facebook/zstd#2238, #2327; with none
//! zstd compresses on the calling thread, into other bytes). The jobs of
//! all layers run on one zstd thread pool of `--jobs` threads
//! (`ZSTD_CCtx_refThreadPool`), so layers built at once do not each start
//! their own.

use std::io::{self, Write};
use std::sync::{Mutex, PoisonError};

use zstd::zstd_safe::zstd_sys::ZSTD_EndDirective;
use zstd::zstd_safe::{CCtx, CParameter, InBuffer, OutBuffer, ThreadPool};

/// The uncompressed size of one zstd job: fixed, so that where the jobs
/// are cut, and so the bytes, depend on neither the threads nor zstd's
/// default for a level. At level 3, 4 MiB (half zstd's default there)
/// gave 107.48 MB for a 303 MB tar of libraries and Python sources where
/// 8 MiB gave 107.41 MB, and lets a 16 MB layer use four threads.
pub const ZSTD_JOB_SIZE: u32 = 4 << 20;

/// The zstd thread pool of `threads` threads. A context may only use a
/// pool that outlives it, and one pool serves any number of contexts at
/// once, so each size asked for is started once and kept for the life of
/// the process (a build asks for one).
fn shared_pool(threads: usize) -> io::Result<&'static ThreadPool> {
    static POOLS: Mutex<Vec<(usize, &'static ThreadPool)>> = Mutex::new(Vec::new());
    let mut pools = POOLS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, pool)) = pools.iter().find(|(size, _)| *size == threads) {
        return Ok(pool);
    }
    let pool = ThreadPool::try_new(threads)
        .ok_or_else(|| io::Error::other(format!("cannot start {threads} zstd threads")))?;
    let pool: &'static ThreadPool = Box::leak(Box::new(pool));
    pools.push((threads, pool));
    Ok(pool)
}

fn zstd_error(code: usize) -> io::Error {
    io::Error::other(format!("zstd: {}", zstd::zstd_safe::get_error_name(code)))
}

/// A writer that zstd-compresses its stream, as one frame, into `inner`.
/// `flush` flushes only `inner`: flushing zstd would end a block early and
/// change the bytes.
pub(crate) struct ZstdWriter<W: Write> {
    inner: W,
    context: CCtx<'static>,
    buffer: Vec<u8>,
}

impl<W: Write> ZstdWriter<W> {
    /// Compresses at `level` into `inner`, with `threads` workers (at
    /// least one) of the shared pool.
    pub(crate) fn new(inner: W, level: i32, threads: usize) -> io::Result<Self> {
        let threads = threads.max(1);
        let mut context =
            CCtx::try_create().ok_or_else(|| io::Error::other("zstd: out of memory"))?;
        let workers = u32::try_from(threads).unwrap_or(u32::MAX);
        for parameter in [
            CParameter::CompressionLevel(level),
            CParameter::NbWorkers(workers),
            CParameter::JobSize(ZSTD_JOB_SIZE),
        ] {
            context.set_parameter(parameter).map_err(zstd_error)?;
        }
        context
            .ref_thread_pool(shared_pool(threads)?)
            .map_err(zstd_error)?;
        Ok(ZstdWriter {
            inner,
            context,
            buffer: vec![0; CCtx::out_size()],
        })
    }

    /// One call of zstd's streaming function, its output written to
    /// `inner`; returns what zstd says is left to flush.
    fn step(
        &mut self,
        input: &mut InBuffer<'_>,
        directive: ZSTD_EndDirective,
    ) -> io::Result<usize> {
        let mut output = OutBuffer::around(self.buffer.as_mut_slice());
        let left = self
            .context
            .compress_stream2(&mut output, input, directive)
            .map_err(zstd_error)?;
        let written = output.pos();
        self.inner.write_all(&self.buffer[..written])?;
        Ok(left)
    }

    /// Ends the frame and returns `inner`.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        while self.step(&mut InBuffer::around(&[]), ZSTD_EndDirective::ZSTD_e_end)? > 0 {}
        Ok(self.inner)
    }
}

impl<W: Write> Write for ZstdWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut input = InBuffer::around(buf);
        while input.pos() < buf.len() {
            self.step(&mut input, ZSTD_EndDirective::ZSTD_e_continue)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zstd(data: &[u8], threads: usize, piece: usize) -> Vec<u8> {
        let mut writer = ZstdWriter::new(Vec::new(), 3, threads).unwrap();
        for part in data.chunks(piece) {
            writer.write_all(part).unwrap();
        }
        writer.finish().unwrap()
    }

    #[test]
    fn the_bytes_do_not_depend_on_the_threads_and_are_zstds_multithreaded_ones() {
        // Text with some noise, over three jobs.
        let data: Vec<u8> = (0..ZSTD_JOB_SIZE as usize * 5 / 2)
            .map(|i| {
                if i % 7 == 0 {
                    (i * 31 % 251) as u8
                } else {
                    b'a' + (i % 13) as u8
                }
            })
            .collect();
        let one = zstd(&data, 1, 1 << 16);
        assert_eq!(zstd(&data, 4, 1000), one);
        assert_eq!(zstd(&data, 2, data.len()), one);
        assert_eq!(zstd::decode_all(one.as_slice()).unwrap(), data);
        // The same bytes as the zstd crate's own multithreaded encoder.
        let mut theirs = zstd::Encoder::new(Vec::new(), 3).unwrap();
        theirs.multithread(3).unwrap();
        theirs
            .set_parameter(CParameter::JobSize(ZSTD_JOB_SIZE))
            .unwrap();
        theirs.write_all(&data).unwrap();
        assert_eq!(theirs.finish().unwrap(), one);
        // Without workers, zstd writes other bytes: hence one at least.
        let mut single = zstd::Encoder::new(Vec::new(), 3).unwrap();
        single.write_all(&data).unwrap();
        assert_ne!(single.finish().unwrap(), one);
    }

    #[test]
    fn an_empty_stream_is_one_empty_frame() {
        let empty = zstd(&[], 1, 1);
        assert_eq!(&empty[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
        assert!(zstd::decode_all(empty.as_slice()).unwrap().is_empty());
    }
}
