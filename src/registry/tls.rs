//! Trusting the certificates of `--cert-dir` and of docker's and podman's
//! `certs.d` directories, as docker and podman do.
//!
//! For a registry `HOST[:PORT]`, the `*.crt` files of `--cert-dir` and of
//! `~/.config/containers/certs.d/HOST[:PORT]/`,
//! `/etc/containers/certs.d/HOST[:PORT]/` and
//! `/etc/docker/certs.d/HOST[:PORT]/` are all trusted (containers/image
//! takes the first of the three that exists, docker only its own; trusting
//! each is the same for every setup those tools accept). Client
//! certificates (`*.cert`, `*.key`) there are not used.
//!
//! The system's verifier (rustls-platform-verifier) gets the extra roots.
//! On top, a server certificate that is byte for byte one of the given
//! certificates is accepted: docker's own recipe for a registry
//! certificate (`openssl req -x509 ...`) makes a self-signed CA
//! certificate, which webpki refuses as a server's ("CaUsedAsEndEntity")
//! while Go, and so docker, accepts it. Pinning the exact bytes the user
//! put in the directory accepts that and nothing more.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::RegistryError;
use crate::dirs::home;

/// The system's verifier, plus certificates trusted as they are.
#[derive(Debug)]
struct Pinned {
    inner: rustls_platform_verifier::Verifier,
    pinned: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(verified) => Ok(verified),
            Err(_)
                if self
                    .pinned
                    .iter()
                    .any(|c| c.as_ref() == end_entity.as_ref()) =>
            {
                Ok(ServerCertVerified::assertion())
            }
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// docker's and podman's directories of CAs for `registry`, those that
/// exist, in containers/image's order.
pub(crate) fn certs_d_dirs(registry: &str) -> Vec<PathBuf> {
    let mut roots = Vec::new();
    roots.extend(home().map(|h| h.join(".config/containers/certs.d")));
    roots.push(PathBuf::from("/etc/containers/certs.d"));
    roots.push(PathBuf::from("/etc/docker/certs.d"));
    roots
        .into_iter()
        .map(|root| root.join(registry))
        .filter(|dir| dir.is_dir())
        .collect()
}

/// The certificates in the `*.crt` files of `dir`.
fn read_certs(dir: &Path) -> std::io::Result<Vec<CertificateDer<'static>>> {
    let mut certs = Vec::new();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "crt") {
            files.push(path);
        }
    }
    files.sort();
    for path in files {
        let pem = std::fs::read(&path)?;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            certs
                .push(cert.map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?);
        }
    }
    Ok(certs)
}

/// A TLS client config for `registry` trusting the system's CAs and the
/// certificates of `cert_dir` and of the `certs.d` directories for it;
/// `None` when there are none of those (reqwest's default then does).
pub(crate) fn config_for(
    registry: &str,
    cert_dir: Option<&Path>,
) -> Result<Option<rustls::ClientConfig>, RegistryError> {
    let mut certs = Vec::new();
    if let Some(dir) = cert_dir {
        let found = read_certs(dir).and_then(|certs| match certs.is_empty() {
            true => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no certificate in a *.crt file there",
            )),
            false => Ok(certs),
        });
        certs.extend(found.map_err(|source| RegistryError::Tls {
            what: format!(
                "--cert-dir {}: expected a directory of PEM certificates (ca.crt)",
                dir.display()
            ),
            source,
        })?);
    }
    for dir in certs_d_dirs(registry) {
        let found = read_certs(&dir).map_err(|source| RegistryError::Tls {
            what: format!("cannot read the CA certificates in {}", dir.display()),
            source,
        })?;
        tracing::debug!(
            "{registry}: trusting {} certificate(s) from {}",
            found.len(),
            dir.display()
        );
        certs.extend(found);
    }
    if certs.is_empty() {
        return Ok(None);
    }
    config_with_certs(certs)
        .map(Some)
        .map_err(|source| RegistryError::Tls {
            what: "cannot set up HTTPS with the extra CA certificates".into(),
            source,
        })
}

/// A TLS client config trusting the system's CAs and `certs`.
fn config_with_certs(certs: Vec<CertificateDer<'static>>) -> std::io::Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let inner =
        rustls_platform_verifier::Verifier::new_with_extra_roots(certs.clone(), provider.clone())
            .map_err(std::io::Error::other)?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned {
            inner,
            pinned: certs,
        }))
        .with_no_client_auth();
    Ok(config)
}
