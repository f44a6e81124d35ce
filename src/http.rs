//! What a failed HTTP request says about sending it again, for the
//! registry client, the channel downloads and the wheel download alike:
//! how long a server may send nothing before a transfer counts as broken,
//! and which failures (a certificate that does not verify, a server
//! without TLS) would only fail the same way, and are reported at once
//! instead of retried.

use std::time::Duration;

/// conda's default `remote_read_timeout_secs`: how long a server may send
/// nothing before a transfer counts as broken (and is tried again).
pub(crate) const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether a failure is a certificate that did not verify (as opposed to
/// no TLS at all, or no connection): rustls's own error, found in the
/// chain of causes (directly, or inside the I/O errors hyper wraps it in).
pub(crate) fn is_certificate_error(error: &reqwest::Error) -> bool {
    let mut cause: Option<&dyn std::error::Error> = Some(error);
    while let Some(e) = cause {
        if matches!(
            rustls_error(e),
            Some(
                rustls::Error::InvalidCertificate(_)
                    | rustls::Error::NoCertificatesPresented
                    | rustls::Error::UnsupportedNameType
            )
        ) {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Whether a failed request would fail the same way if sent again: a
/// certificate that does not verify, a server that does not speak TLS, a
/// redirect that may not be followed or a request that cannot be built.
/// The registry client stops at these, and so do wheel downloads.
pub(crate) fn fails_again(error: &reqwest::Error) -> bool {
    error.is_builder()
        || error.is_redirect()
        || is_certificate_error(error)
        || is_plain_http_answer(error)
}

/// Whether a failure is a server that answered a TLS hello with something
/// other than TLS: a server that speaks plain HTTP only.
pub(crate) fn is_plain_http_answer(error: &reqwest::Error) -> bool {
    let mut cause: Option<&dyn std::error::Error> = Some(error);
    while let Some(e) = cause {
        if matches!(rustls_error(e), Some(rustls::Error::InvalidMessage(_))) {
            return true;
        }
        cause = e.source();
    }
    false
}

/// The rustls error `error` is, or holds inside (nested) I/O errors.
fn rustls_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = error.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    let inner = error.downcast_ref::<std::io::Error>()?.get_ref()?;
    rustls_error(inner)
}
