//! conda-docker: turn a conda environment into a layered container image,
//! without Docker.
//!
//! Data flows one way: [`layer`] builds layer blobs, [`image`] holds an
//! image (config + layers) and reads and writes its formats.
#![deny(missing_docs)]

pub mod atomic;
pub mod blob;
pub mod build;
pub mod cli;
pub mod conda;
pub mod digest;
pub mod dirs;
pub mod image;
pub mod invocation;
pub mod layer;
pub mod parallel;
pub mod platform;
pub mod reference;
pub mod registry;

pub use image::{Image, ImageDestination, ImageError, ImageSource};

/// An error and its causes on one line (`what: why: deeper why`), the
/// form the CLI and the examples print.
pub fn error_line(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        line.push_str(": ");
        line.push_str(&inner.to_string());
        cause = inner.source();
    }
    // One line even when a cause quotes multi-line input.
    line.replace(['\n', '\r'], " ")
}
