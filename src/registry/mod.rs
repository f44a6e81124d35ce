//! Registries: pulling images from and pushing images to any registry that
//! speaks the OCI distribution API (Docker Hub, ghcr, quay, a company's).
//!
//! Like go-containerregistry's `remote`, this is one more place an image
//! comes from or goes to. `client` speaks HTTP (scheme, TLS, retries,
//! auth challenges and tokens), `credentials` finds the user's logins the
//! way docker and podman do, `store` keeps pulled blobs by digest on disk,
//! and `pull`/`push` move images. Credentials never reach a log line, an
//! error or an output.

mod client;
mod credentials;
mod layer_cache;
mod open;
mod progress;
mod pull;
mod push;
mod referrers;
mod store;
mod tls;

use std::path::PathBuf;

use crate::digest::Digest;

pub use credentials::{Credentials, Login, Origin, login, logout};
pub(crate) use layer_cache::SharedLayers;
pub use layer_cache::{CacheRepo, LAYER_ARTIFACT_TYPE};
pub use open::{OpenOptions, open, open_layers, open_with};
pub use progress::{Direction, LayerOutcome, Transfers, Unwatched};
pub use pull::{LayerPick, pull, pull_layers, pull_with};
pub use push::{PushReport, PushTarget, push};
pub use referrers::ReferrersVia;

use crate::image::ImageError;

/// How to reach registries.
#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    /// Accept plain HTTP and certificates that fail verification
    /// (`--insecure`).
    pub insecure: bool,
    /// A directory of extra CA certificates (`*.crt`, as skopeo's
    /// `--cert-dir` has `ca.crt`) to trust besides the system's and those
    /// docker and podman keep for the registry in their `certs.d`.
    pub cert_dir: Option<PathBuf>,
    /// How long a registry may send nothing before the transfer counts as
    /// broken and is tried again: conda's `remote_read_timeout_secs`;
    /// `None`: 60 s, conda's default.
    pub read_timeout: Option<std::time::Duration>,
}

/// What can go wrong talking to a registry. Each message names the
/// registry or image, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No connection could be made (after retries).
    #[error("cannot reach registry {host}")]
    Unreachable {
        /// The registry.
        host: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// A TLS certificate that does not verify.
    #[error(
        "the TLS certificate of {host} is not trusted: add its CA with --cert-dir DIR (a directory holding ca.crt) or as /etc/containers/certs.d/{host}/ca.crt, or use --insecure"
    )]
    Untrusted {
        /// The registry.
        host: String,
        /// The verification failure.
        #[source]
        source: reqwest::Error,
    },
    /// Plain HTTP off this machine without `--insecure`: a registry that
    /// answers only that, or a token service at an `http://` URL.
    #[error(
        "{host}: {what}; plain HTTP is used only on this machine (localhost) or with --insecure"
    )]
    PlainHttp {
        /// The registry.
        host: String,
        /// What is plain HTTP.
        what: String,
    },
    /// A redirect that is not followed (too many, or to plain HTTP off
    /// this machine without `--insecure`).
    #[error("{host}: a redirect was not followed")]
    Redirect {
        /// The registry.
        host: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// Refused by the registry or its token service.
    #[error("not authorised to {action} {target}{hint}")]
    NotAuthorised {
        /// `pull from` or `push to`.
        action: &'static str,
        /// `registry/repository`.
        target: String,
        /// What to try.
        hint: String,
    },
    /// `login` with a user name and password the registry refused.
    #[error("login failed for {host}: wrong user name or password")]
    LoginFailed {
        /// The registry.
        host: String,
    },
    /// A manifest or blob the registry does not have.
    #[error("{what} not found in {target}")]
    NotFound {
        /// What was asked for.
        what: String,
        /// `registry/repository`.
        target: String,
    },
    /// Any other answer that is not what the protocol says.
    #[error("{host}: {what}: HTTP {status}{detail}")]
    Status {
        /// The registry.
        host: String,
        /// What was being done.
        what: String,
        /// The status code.
        status: u16,
        /// The registry's error message, if it sent one.
        detail: String,
    },
    /// A registry that kept sending nothing, however often it was asked.
    #[error(
        "{host}: {what}: nothing arrived for {} s, {tries} times; if the registry is only slow, allow it longer with remote_read_timeout_secs in .condarc or CONDA_REMOTE_READ_TIMEOUT_SECS",
        after.as_secs_f64()
    )]
    Stalled {
        /// The registry.
        host: String,
        /// What was being done.
        what: String,
        /// The read timeout.
        after: std::time::Duration,
        /// How many tries stalled.
        tries: u32,
    },
    /// A transfer that broke off.
    #[error("{host}: {what}")]
    Transfer {
        /// The registry.
        host: String,
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Bytes that are not what their digest says.
    #[error("{what} from {target} does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch {
        /// Which manifest or blob.
        what: String,
        /// `registry/repository`.
        target: String,
        /// What it should be.
        expected: Digest,
        /// What arrived.
        actual: Digest,
    },
    /// TLS that cannot be set up: CA certificates that cannot be read, or
    /// a client that cannot be built with them.
    #[error("{what}")]
    Tls {
        /// What failed, naming the directory or file.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A blob that arrived shorter than its descriptor says.
    #[error("{what} from {target} has {actual} bytes, but its descriptor states {expected}")]
    SizeMismatch {
        /// Which blob.
        what: String,
        /// `registry/repository`.
        target: String,
        /// The size its descriptor states.
        expected: u64,
        /// The bytes that arrived.
        actual: u64,
    },
    /// A manifest or blob larger than it may be: refused before it is read
    /// whole, or stopped as soon as it grew past its bound.
    #[error("{what} from {reference} is larger than {limit}; refused")]
    TooLarge {
        /// Which manifest or blob.
        what: String,
        /// The image, `registry/repository:tag`.
        reference: String,
        /// The bound: the cap for its kind, or the size its descriptor
        /// declares.
        limit: String,
    },
    /// A valid image that cannot be used here.
    #[error("{reference}: {reason}")]
    Unsupported {
        /// The image.
        reference: String,
        /// Why, and what to do.
        reason: String,
    },
    /// An image with no entry for the platform asked for.
    #[error(
        "{reference} has no image for {wanted} (it offers: {available}); pick one with --platform"
    )]
    NoPlatform {
        /// The image.
        reference: String,
        /// The platform asked for.
        wanted: String,
        /// What the index lists.
        available: String,
    },
    /// The credential store could not be read or written.
    #[error("{what}")]
    Credentials {
        /// What failed, naming the file or helper.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The blob store under the cache directory.
    #[error("cannot use the blob cache {}", path.display())]
    Cache {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The image read from the registry, or being pushed.
    #[error(transparent)]
    Image(#[from] ImageError),
}
