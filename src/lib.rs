//! conda-docker: turn a conda environment into a layered container image,
//! without Docker.
//!
//! The library behind the `conda-docker` binary. The three examples of the
//! original Python conda-docker (also in `examples/`): pull an image,
//! modify one, and build an environment image.
//!
//! ```no_run
//! use conda_docker::build::build_docker_environment;
//! use conda_docker::{Image, platform::Platform, reference::Reference, registry};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // pull_image('frolvlad/alpine-glibc', 'latest')
//! let reference: Reference = "frolvlad/alpine-glibc:latest".parse()?;
//! let image = registry::pull(&reference, &Platform::default(), &Default::default())?;
//! image.write_file("alpine.tar")?; // a docker-archive; layers are never recompressed
//!
//! // Modify an image.
//! let mut image = Image::open("docker-archive:alpine.tar")?;
//! image.set_name("this-is-a-test")?;
//! image.add_layer_contents([("this/is/a/test1", b"this is test 1".as_slice())])?;
//! image.config_mut().append_env("FOO=BAR")?;
//! image.write("oci:layout:v1")?;
//!
//! // build_docker_environment(base_image, output_image, packages, output_filename)
//! build_docker_environment(
//!     "frolvlad/alpine-glibc:latest",
//!     "example-image:123456",
//!     &["numpy", "numba", "flask"],
//!     "demo.tar",
//!     &[], // channels; none: .condarc's, else conda-forge
//! )?;
//! # Ok(())
//! # }
//! ```
//!
//! [`build::build`] with [`build::BuildOptions`] is the whole of
//! `conda docker build`; [`registry::PushTarget`] pushes an [`Image`].
//! Data flows one way: [`layer`] builds layer blobs, [`image`] holds an
//! image (config + layers) and reads and writes its formats, [`registry`]
//! moves images over the distribution API, [`conda`] reads environments
//! and packages, and [`build`] ties them together; [`contents`] reads the
//! environments of an image back.
#![deny(missing_docs)]
// Short functions that read alone (clippy.toml sets the bound: 80 lines).
#![warn(clippy::too_many_lines)]

pub(crate) mod atomic;
pub mod blob;
pub mod build;
pub mod cli;
pub mod conda;
pub mod contents;
pub mod digest;
pub(crate) mod dirs;
pub(crate) mod http;
pub mod image;
pub mod interrupt;
pub mod invocation;
pub mod layer;
pub(crate) mod parallel;
pub mod platform;
pub mod pypi;
pub mod reference;
pub mod registry;
pub mod sbom;

pub use image::{Image, ImageDestination, ImageError, ImageSource};

/// The parsers of untrusted input, for fuzz targets only (`--features
/// fuzzing`): not part of the library's stable API.
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    pub use crate::conda::contained::{ContainedPath, DistName, Unsafe, check_record};
    pub use crate::conda::envfile::{read_environment_yaml, read_lock_file};
    pub use crate::conda::explicit::read_explicit;
    pub use crate::conda::glibc_needs::elf_interpreter;
    pub use crate::conda::input::read_yaml;
    pub use crate::conda::layer_records::LayerRecords;
}

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
