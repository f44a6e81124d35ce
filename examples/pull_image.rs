//! Pull an image from a registry without Docker, as in the original
//! conda-docker README's `pull_image('frolvlad/alpine-glibc', 'latest')`:
//!
//! ```text
//! cargo run --example pull_image -- frolvlad/alpine-glibc latest OUT.tar
//! ```
//!
//! Pulls NAME:TAG for linux/amd64 (your docker or podman login is used if
//! the registry asks for one), prints its layers and writes a
//! docker-archive to OUT.tar. Blobs land in the blob cache, so a second
//! run downloads nothing new.

use std::process::ExitCode;

use conda_docker::platform::Platform;
use conda_docker::reference::Reference;
use conda_docker::registry::{self, RegistryError, RegistryOptions};

fn pull_image(name: &str, tag: &str, out: &str) -> Result<(), RegistryError> {
    let reference: Reference = format!("{name}:{tag}")
        .parse()
        .map_err(conda_docker::ImageError::from)?;
    let image = registry::pull(
        &reference,
        &Platform::default(),
        &RegistryOptions::default(),
    )?;
    for layer in image.layers() {
        println!("{} {:>12} bytes", layer.digest(), layer.size());
    }
    image.write_file(out)?;
    println!("{reference} -> {out} (id {})", image.config_digest());
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [name, tag, out] = args.as_slice() else {
        eprintln!("usage: pull_image NAME TAG OUT.tar");
        return ExitCode::from(2);
    };
    match pull_image(name, tag, out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", conda_docker::error_line(&error));
            ExitCode::FAILURE
        }
    }
}
