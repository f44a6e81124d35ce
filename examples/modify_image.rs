//! Modify an image without Docker, as in the original conda-docker README:
//!
//! ```text
//! cargo run --example modify_image -- BASE OUT.tar
//! ```
//!
//! Opens BASE (`docker-archive:X.tar`, `oci:DIR[:TAG]`, `oci-archive:X[:TAG]`,
//! `scratch` or a path), removes its top layer, adds the current directory
//! and two in-memory files as layers, appends `FOO=BAR` to its environment,
//! names it `this-is-a-test:latest` and writes a docker-archive to OUT.tar.

use std::process::ExitCode;

use conda_docker::{Image, ImageError};

fn modify(base: &str, out: &str) -> Result<(), ImageError> {
    let mut image = Image::open(base)?;
    image.remove_layer()?;
    image.set_name("this-is-a-test")?;
    image.add_layer_path("./", "/", None)?;
    image.add_layer_contents([
        ("this/is/a/test1", b"this is test 1".as_slice()),
        ("this/is/a/test2", b"this is test 2".as_slice()),
    ])?;
    image.config_mut().append_env("FOO=BAR")?;
    image.write_file(out)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, out] = args.as_slice() else {
        eprintln!("usage: modify_image BASE OUT.tar");
        return ExitCode::from(2);
    };
    match modify(base, out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", conda_docker::error_line(&error));
            ExitCode::FAILURE
        }
    }
}
