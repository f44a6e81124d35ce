//! Build an image from package specs, as the original conda-docker README's
//! `build_docker_environment(base_image, output_image, packages,
//! output_filename)`:
//!
//! ```text
//! cargo run --example build_env -- frolvlad/alpine-glibc:latest example-image:123456 demo.tar numpy numba flask
//! cargo run --example build_env -- -c https://my.channel/x scratch app:1 app.tar mypkg
//! ```
//!
//! Solves the packages for linux-64 (channels from `-c`, else `.condarc`,
//! else conda-forge), fetches what the package caches lack, and writes a
//! `docker load`-able archive.

use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!(
        "usage: build_env [-c CHANNEL]... BASE_IMAGE OUTPUT_IMAGE OUTPUT_FILENAME PACKAGE..."
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut channels = Vec::new();
    let mut rest = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-c" | "--channel" => channels.extend(args.next()),
            _ => rest.push(arg),
        }
    }
    let [base_image, output_image, output_filename, packages @ ..] = rest.as_slice() else {
        return usage();
    };
    if packages.is_empty() {
        return usage();
    }
    let packages: Vec<&str> = packages.iter().map(String::as_str).collect();
    let channels: Vec<&str> = channels.iter().map(String::as_str).collect();
    match conda_docker::build::build_docker_environment(
        base_image,
        output_image,
        &packages,
        output_filename,
        &channels,
    ) {
        Ok(image) => {
            println!(
                "{output_image} -> {output_filename}: {} layers, id {}",
                image.layers().len(),
                image.config_digest()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {}", conda_docker::error_line(&error));
            ExitCode::FAILURE
        }
    }
}
