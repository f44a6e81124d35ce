//! Fetching a wheel from its lock URL into our cache, named by its
//! sha256: the hash is checked while the bytes stream to a temp file, so
//! wrong bytes never take the cache's name.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::atomic::{publish, temp_beside};
use crate::conda::condarc::CondaRc;
use crate::conda::envfile::LockedWheel;
use crate::digest::Hasher;

use super::PypiError;

/// The largest wheel fetched: a bound on what a server may send.
const MAX_WHEEL_BYTES: u64 = 8 << 30;

/// How long a connection may take to open.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Reads the body on a thread of its own so a signal is not kept waiting by
/// a server that sends nothing; checks the flag at every piece, as every
/// hashed write does.
fn body(response: reqwest::blocking::Response) -> std::io::Result<impl Read> {
    Ok(crate::interrupt::Interruptible::new(response)?.take(MAX_WHEEL_BYTES + 1))
}

/// How often a wheel is fetched before its failure is reported: a broken
/// or stalled transfer, a server error, or wrong bytes may pass.
const TRIES: u32 = 3;

/// The cached file of `wheel` under `dir` (`<sha256>.whl`), fetched from
/// its URL first unless it is there already.
pub(crate) fn fetch(wheel: &LockedWheel, dir: &Path) -> Result<PathBuf, PypiError> {
    let path = dir.join(format!("{}.whl", hex::encode(wheel.sha256)));
    if path.is_file() {
        return Ok(path);
    }
    let io = |source| PypiError::Io {
        path: path.clone(),
        source,
    };
    fs_err::create_dir_all(dir).map_err(io)?;
    let read_timeout = CondaRc::load().read_timeout();
    // The blocking client's timeout bounds each wait (for the answer, then
    // for each read of the body), not the whole download.
    let client = reqwest::blocking::Client::builder()
        .connect_timeout(TIMEOUT)
        .timeout(read_timeout)
        .build()
        .map_err(|e| failed(wheel, e.into()))?;
    let mut tries = 0;
    loop {
        tries += 1;
        match download(&client, wheel, &path, read_timeout) {
            Ok(file) => {
                publish(file, &path, 0o644).map_err(io)?;
                return Ok(path);
            }
            Err(Failure::Passing(e)) if tries < TRIES && crate::interrupt::received().is_none() => {
                let wait = Duration::from_millis(500 << (tries - 1));
                tracing::info!("{e}; trying again in {:.1} s", wait.as_secs_f64());
                std::thread::sleep(wait);
            }
            Err(Failure::Passing(e) | Failure::Lasting(e)) => return Err(e),
        }
    }
}

/// A failed download: one that may pass when tried again (a broken,
/// stalled or refused transfer, a server error, wrong bytes), or one
/// that will not (a 4xx answer, our own disk).
enum Failure {
    Passing(PypiError),
    Lasting(PypiError),
}

fn failed(wheel: &LockedWheel, source: Box<dyn std::error::Error + Send + Sync>) -> PypiError {
    PypiError::Fetch {
        wheel: wheel.file_name.clone(),
        url: wheel.url.to_string(),
        source,
    }
}

/// One download of `wheel` into a temp file beside `path`, hashed as it
/// streams: the file is returned only when its sha256 is the lock's.
fn download(
    client: &reqwest::blocking::Client,
    wheel: &LockedWheel,
    path: &Path,
    read_timeout: Duration,
) -> Result<tempfile::NamedTempFile, Failure> {
    let stalled = || failed(wheel, crate::conda::condarc::stalled(read_timeout).into());
    let failed_read = |e: std::io::Error| match crate::interrupt::is_stall(&e) {
        true => Failure::Passing(stalled()),
        false => Failure::Passing(failed(wheel, e.into())),
    };
    let response = crate::interrupt::send(client.get(wheel.url.clone()))
        .map_err(failed_read)?
        .and_then(reqwest::blocking::Response::error_for_status)
        .map_err(|e| match e.status() {
            _ if e.is_timeout() => Failure::Passing(stalled()),
            None if crate::http::fails_again(&e) => {
                Failure::Lasting(failed(wheel, e.without_url().into()))
            }
            Some(s) if s.is_client_error() && s.as_u16() != 429 => {
                Failure::Lasting(failed(wheel, e.without_url().into()))
            }
            _ => Failure::Passing(failed(wheel, e.without_url().into())),
        })?;
    let io = |source| {
        Failure::Lasting(PypiError::Io {
            path: path.to_owned(),
            source,
        })
    };
    let mut file = temp_beside(path).map_err(io)?;
    let mut hasher = Hasher::default();
    let mut body = body(response).map_err(failed_read)?;
    let mut buffer = vec![0; 1 << 16];
    loop {
        crate::interrupt::check().map_err(failed_read)?;
        let n = body.read(&mut buffer).map_err(failed_read)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        file.write_all(&buffer[..n]).map_err(io)?;
    }
    let (actual, size) = hasher.finish();
    if size > MAX_WHEEL_BYTES {
        return Err(Failure::Lasting(failed(
            wheel,
            format!("it is larger than {MAX_WHEEL_BYTES} bytes").into(),
        )));
    }
    let expected = hex::encode(wheel.sha256);
    if actual.hex() != expected {
        return Err(Failure::Passing(PypiError::Hash {
            wheel: wheel.file_name.clone(),
            url: wheel.url.to_string(),
            expected,
            actual: actual.hex(),
        }));
    }
    Ok(file)
}
