//! Command-line definitions (clap only: no logic here) and the commands
//! they run.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use serde_json::json;

use crate::build::{BuildError, BuildOptions, LayerReport, Reporter, build};
use crate::conda::CondaError;
use crate::conda::env::EnvSelector;
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
    /// Build an image from a conda environment: one layer per package, from
    /// the package caches you already have.
    Build(Box<BuildArgs>),
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

/// The output formats of `build`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    /// A `docker load` / `podman load` archive.
    DockerArchive,
    /// An OCI image layout directory.
    Oci,
    /// An OCI image layout in a tar.
    OciArchive,
}

/// `conda-docker build` flags.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The environment at PATH.
    #[arg(short = 'p', long = "prefix", value_name = "PATH")]
    pub prefix: Option<PathBuf>,
    /// The environment called NAME (found in conda's envs dirs).
    #[arg(short = 'n', long = "name", value_name = "NAME")]
    pub name: Option<String>,
    /// An `@EXPLICIT` spec (`conda list --explicit --md5`); its packages
    /// must be in a package cache.
    #[arg(long = "file", value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// The base image: `scratch`, `docker-archive:PATH`, `oci:DIR[:TAG]`,
    /// `oci-archive:PATH[:TAG]` or a path.
    #[arg(short = 'b', long = "base", value_name = "SOURCE")]
    pub base: ImageSource,
    /// Where to write the image.
    #[arg(short = 'o', long = "output", value_name = "PATH")]
    pub output: PathBuf,
    /// The output format.
    #[arg(long, value_enum, default_value = "docker-archive")]
    pub format: Format,
    /// The image's name.
    #[arg(
        short = 'i',
        long = "image",
        value_name = "NAME:TAG",
        default_value = "conda-docker:latest"
    )]
    pub image: String,
    /// Where the environment lives inside the image.
    #[arg(long, value_name = "PATH", default_value = "/opt/conda")]
    pub prefix_in_image: String,
    /// Set a variable in the image (repeatable).
    #[arg(long = "env", value_name = "K=V", value_parser = key_value)]
    pub env: Vec<(String, String)>,
    /// Add a label (repeatable).
    #[arg(long = "label", value_name = "K=V", value_parser = key_value)]
    pub label: Vec<(String, String)>,
    /// The entrypoint: a JSON array (`["python", "-m", "app"]`) or words.
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,
    /// The default command: a JSON array or words.
    #[arg(long, value_name = "CMD")]
    pub cmd: Option<String>,
    /// The working directory.
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// The user (`name`, `uid` or `uid:gid`).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Most layers in the image, the base's included; past it the largest
    /// packages keep their own layers and the others are grouped.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub max_layers: usize,
    /// `per-package` (one layer each) or `single` (one layer for all).
    #[arg(long, value_enum, default_value = "per-package")]
    pub layering: Layering,
    /// Leave out files no package owns (pip installs, your own files).
    #[arg(long)]
    pub no_untracked: bool,
    /// Add a host file or folder as a layer of its own, above the
    /// environment: `SRC:DEST` (repeatable).
    #[arg(long = "add", value_name = "SRC:DEST", value_parser = source_destination)]
    pub add: Vec<(PathBuf, String)>,
    /// Print nothing but errors.
    #[arg(short, long)]
    pub quiet: bool,
    /// Print the image id, manifest digest and layers as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// How packages are spread over layers.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Layering {
    /// One layer per package (cycles share one), within `--max-layers`.
    PerPackage,
    /// One layer for the whole environment.
    Single,
}

fn source_destination(text: &str) -> Result<(PathBuf, String), String> {
    match text.rsplit_once(':') {
        Some((src, dest)) if !src.is_empty() && dest.starts_with('/') => {
            Ok((src.into(), dest.to_owned()))
        }
        _ => Err(format!(
            "`{text}` is not of the form SRC:/absolute/destination"
        )),
    }
}

fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("`{text}` is not of the form KEY=VALUE")),
    }
}

/// `["a", "b"]` as JSON, or whitespace-separated words.
fn command_words(text: &str) -> Result<Vec<String>, CliError> {
    if text.trim_start().starts_with('[') {
        serde_json::from_str(text)
            .map_err(|_| CliError::Usage(format!("`{text}` is not a JSON array of strings")))
    } else {
        Ok(text.split_whitespace().map(str::to_owned).collect())
    }
}

/// Errors of the commands.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Reading or writing images.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// Building.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// Flags that do not fit together.
    #[error("{0}")]
    Usage(String),
}

fn run_build(args: BuildArgs) -> Result<(), CliError> {
    let mut sources: Vec<(&str, EnvSelector)> = Vec::new();
    sources.extend(args.prefix.map(|p| ("-p", EnvSelector::Prefix(p))));
    sources.extend(args.name.map(|n| ("-n", EnvSelector::Name(n))));
    sources.extend(args.file.map(|f| ("--file", EnvSelector::Explicit(f))));
    let env = match sources.len() {
        0 => EnvSelector::Active,
        1 => sources.remove(0).1,
        _ => {
            let given: Vec<&str> = sources.iter().map(|(flag, _)| *flag).collect();
            return Err(BuildError::from(CondaError::TwoSources(given.join(" and "))).into());
        }
    };
    let options = BuildOptions {
        env,
        base: args.base,
        image_prefix: args.prefix_in_image,
        name: args.image,
        env_vars: args.env,
        labels: args.label,
        entrypoint: args.entrypoint.as_deref().map(command_words).transpose()?,
        cmd: args.cmd.as_deref().map(command_words).transpose()?,
        workdir: args.workdir,
        user: args.user,
        max_layers: args.max_layers,
        single_layer: matches!(args.layering, Layering::Single),
        untracked: !args.no_untracked,
        add: args.add,
        ..BuildOptions::default()
    };
    let destination = match args.format {
        Format::DockerArchive => ImageDestination::DockerArchive(args.output),
        Format::Oci => ImageDestination::Oci {
            dir: args.output,
            tag: None,
        },
        Format::OciArchive => ImageDestination::OciArchive {
            path: args.output,
            tag: None,
        },
    };
    let output = match &destination {
        ImageDestination::DockerArchive(path) | ImageDestination::OciArchive { path, .. } => path,
        ImageDestination::Oci { dir, .. } => dir,
    };
    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    if !parent.is_dir() {
        return Err(CliError::Usage(format!(
            "cannot write {}: {} is not a directory",
            output.display(),
            parent.display()
        )));
    }
    let progress = Progress::new(args.quiet);
    let (image, layers) = build(&options, &progress)?;
    image.write_to(&destination)?;
    if args.json {
        let mut summary = summary(&image);
        summary["conda_layers"] = json!(layers);
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).unwrap_or_default()
        );
    } else if !args.quiet {
        eprintln!(
            "wrote {destination}: {} layers, {} packages, id {}",
            image.layers().len(),
            layers.iter().map(|l| l.packages.len()).sum::<usize>(),
            image.config_digest()
        );
    }
    Ok(())
}

/// Progress on stderr: a bar on a terminal, a line per layer otherwise,
/// nothing with `-q`.
struct Progress {
    quiet: bool,
    bar: std::sync::OnceLock<indicatif::ProgressBar>,
    total: AtomicUsize,
    done: AtomicUsize,
}

impl Progress {
    fn new(quiet: bool) -> Self {
        Progress {
            quiet,
            bar: std::sync::OnceLock::new(),
            total: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
        }
    }
}

impl Reporter for Progress {
    fn start(&self, packages: usize) {
        self.total.store(packages, Ordering::SeqCst);
        if self.quiet || !std::io::stderr().is_terminal() {
            return;
        }
        let bar = indicatif::ProgressBar::new(packages as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} {pos}/{len} packages [{bar:30}] {elapsed} {wide_msg}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        let _ = self.bar.set(bar);
    }

    fn layer_built(&self, layer: &LayerReport) {
        let n = layer.packages.len();
        let done = self.done.fetch_add(n, Ordering::SeqCst) + n;
        let what = layer.packages.join(" ");
        match self.bar.get() {
            Some(bar) => {
                bar.inc(n as u64);
                bar.set_message(what);
            }
            None if !self.quiet => eprintln!(
                "[{done}/{}] {what} ({:.1} MB)",
                self.total.load(Ordering::SeqCst),
                layer.size as f64 / 1e6
            ),
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(bar) = self.bar.get() {
            bar.finish_and_clear();
        }
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Build(args) => run_build(*args),
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
            Ok(image.write_to(&destination)?)
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
