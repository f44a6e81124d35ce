//! Command-line definitions (clap only: no logic here) and the commands
//! they run.

use clap::{ArgAction, Parser, Subcommand};
use serde_json::json;

use crate::image::{Image, ImageDestination, ImageError, ImageSource};

/// Turn a conda environment into a layered container image, without Docker.
#[derive(Debug, Parser)]
#[command(name = "conda-docker", version, about, long_about = None)]
pub struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print an image's id, manifest digest and layers as JSON.
    Inspect {
        /// The image: `scratch`, `docker-archive:PATH`, `oci:DIR[:TAG]`,
        /// `oci-archive:PATH[:TAG]` or a path.
        source: ImageSource,
    },
    /// Copy an image to another format, keeping every blob as it is.
    Copy {
        /// The image to read (as for `inspect`).
        source: ImageSource,
        /// Where to write it: `docker-archive:PATH`, `oci:DIR[:TAG]` or
        /// `oci-archive:PATH[:TAG]`.
        destination: ImageDestination,
        /// Name the copy `NAME[:TAG]` (kept from the source if omitted).
        #[arg(short = 'i', long = "image")]
        name: Option<String>,
    },
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), ImageError> {
    match cli.command {
        Command::Inspect { source } => {
            let image = source.open()?;
            println!(
                "{}",
                serde_json::to_string_pretty(&summary(&image)).unwrap_or_default()
            );
            Ok(())
        }
        Command::Copy {
            source,
            destination,
            name,
        } => {
            let mut image = source.open()?;
            if let Some(name) = name {
                image.set_name(&name)?;
            }
            image.write_to(&destination)
        }
    }
}

/// What `inspect` prints.
fn summary(image: &Image) -> serde_json::Value {
    let layers: Vec<_> = image
        .layers()
        .iter()
        .map(|l| {
            json!({
                "digest": l.digest(),
                "diff_id": l.diff_id().0,
                "size": l.size(),
                "media_type": l.media_type().to_string(),
            })
        })
        .collect();
    json!({
        "name": image.name().map(|n| n.to_string()),
        "id": image.config_digest(),
        "manifest_digest": image.manifest_digest(),
        "os": image.config().os(),
        "architecture": image.config().architecture(),
        "layers": layers,
    })
}
