//! Command-line definitions (clap only: no logic here) and the commands
//! they run.

mod progress;
mod read_back;
mod sbom;
mod several;

use progress::Progress;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use serde_json::json;

use crate::build::{BuildError, BuildOptions, DEFAULT_BASE, LayerReport, build_with_output};
use crate::conda::CondaError;
use crate::conda::env::{EnvFlags, EnvSelector, SolveOptions};
use crate::contents::{ContentsError, LockFormat, ReadMode};
use crate::image::{Image, ImageDestination, ImageError, ImageSource};
use crate::invocation::Invocation;
use crate::layer::Compression;
use crate::layer::cache::CacheLock;
use crate::layer::cache::prune::{self, PruneOptions, parse_days, parse_size};
use crate::platform::Platform;
use crate::reference::Reference;
use crate::registry::{
    self, CacheRepo, Login, OpenOptions, PushReport, PushTarget, RegistryError, RegistryOptions,
    login,
};

/// Turn a conda environment into a layered container image, without Docker.
#[derive(Debug, Parser)]
#[command(
    name = "conda-docker",
    version,
    about,
    long_about = None,
    after_long_help = ENVIRONMENT_HELP,
    arg_required_else_help = true
)]
pub struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The variables read, for `--help` and the man page. The conda plugin
/// sets the `CONDA_*` ones from conda's resolved configuration.
const ENVIRONMENT_HELP: &str = "\
Environment:
  CONDA_PREFIX              the environment built when none is named
  CONDA_ROOT_PREFIX, CONDA_ROOT, CONDA_EXE
                            conda's root prefix (its envs/ and pkgs/ are searched)
  CONDA_ENVS_DIRS           folders of named environments, `:`-separated, searched first
  CONDA_PKGS_DIRS           package caches, `,`-separated, searched first
  CONDA_CHANNELS            channels, `,`-separated, before .condarc's
  CONDA_CHANNEL_ALIAS       the URL channel names resolve against
  CONDARC                   one more .condarc to read
  CONDA_REMOTE_READ_TIMEOUT_SECS
                            seconds a registry or channel may send nothing before the
                            transfer is tried again (default 60; remote_read_timeout_secs)
  RATTLER_CACHE_DIR         rattler's cache: downloaded packages go to its pkgs/
  CONDA_DOCKER_CACHE_DIR    where built layers and pulled base image blobs are kept
                            (see `cache info`)
  CONDA_DOCKER_REGISTRY_USER, CONDA_DOCKER_REGISTRY_PASSWORD
                            the login --push (and a --cache-repo there) uses, before
                            docker's and podman's
  SOURCE_DATE_EPOCH         the timestamp of every file and history entry (default 0)
  PIXI_PROJECT_MANIFEST     the pixi project `pixi docker` builds (else found from the
                            current directory up)
  RUST_LOG                  log filter, overriding -v

`conda docker ...` (the conda plugin) sets the CONDA_* variables from conda's own
configuration; `pixi docker ...` runs this binary as pixi-docker.";

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from a conda environment: one layer per package, from
    /// the package caches you already have.
    Build(Box<BuildArgs>),
    /// Print an image's id, manifest digest and layers as JSON, from its
    /// metadata: layers are not read or checked against their diff ids
    /// (`copy` does that).
    Inspect {
        /// The image: a reference (`debian:stable-slim`, `docker://REF`),
        /// `scratch`, `docker-archive:PATH`, `oci:DIR[:TAG]`,
        /// `oci-archive:PATH[:TAG]` or a path.
        source: ImageSource,
        /// How to pick and reach it.
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// List the conda packages inside an image (ours, or any with a conda
    /// prefix), read from its `conda-meta/` records with the layer each
    /// came in.
    Packages {
        /// The image (as for `inspect`).
        source: ImageSource,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Which layers to read.
        #[command(flatten)]
        read: ReadArgs,
        /// How to pick and reach it.
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Write an image's environment as a file to build or create it from
    /// again: an `@EXPLICIT` spec with sha256 hashes (`build --file`,
    /// `conda create --file`) or an environment.yml.
    Lock {
        /// The image (as for `inspect`).
        source: ImageSource,
        /// The file to write.
        #[arg(short = 'o', long = "output", value_name = "PATH")]
        output: PathBuf,
        /// The environment, when the image has several (`/opt/conda`).
        #[arg(long = "prefix", value_name = "PATH")]
        prefix: Option<String>,
        /// The kind of file.
        #[arg(long, value_enum, default_value = "explicit")]
        format: LockFormat,
        /// Which layers to read.
        #[command(flatten)]
        read: ReadArgs,
        /// How to pick and reach it.
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Compare two images: conda packages added, removed and changed, and
    /// the layer bytes they share.
    Diff {
        /// The first image (as for `inspect`).
        first: ImageSource,
        /// The second.
        second: ImageSource,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Which layers to read.
        #[command(flatten)]
        read: ReadArgs,
        /// How to pick and reach them.
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Copy an image to another format or registry, keeping every blob as
    /// it is.
    Copy {
        /// The image to read (as for `inspect`).
        source: ImageSource,
        /// Where to write it: `docker://REF` (push), `docker-archive:PATH`,
        /// `oci:DIR[:TAG]` or `oci-archive:PATH[:TAG]`.
        destination: Target,
        /// Name the copy `NAME[:TAG]` (kept from the source if omitted).
        #[arg(short = 'i', long = "image")]
        name: Option<String>,
        /// Compress the layers stored as plain tars (as `docker save`
        /// stores them), as --compression says: about a third of the bytes
        /// to push or write, but those layers' digests change (the image id
        /// does not).
        #[arg(long)]
        compress_layers: bool,
        /// How --compress-layers compresses.
        #[command(flatten)]
        compression: CompressionArgs,
        /// How to pick and reach images.
        #[command(flatten)]
        remote: RemoteArgs,
        /// Print nothing but errors (and the pushed `NAME@DIGEST`).
        #[arg(short, long)]
        quiet: bool,
    },
    /// Pull an image from a registry into a file, like the original
    /// `pull_image(name, tag)`.
    Pull {
        /// The image: `debian`, `ghcr.io/org/img:tag`, `name@sha256:...`.
        reference: Reference,
        /// Where to write it: `docker-archive:PATH`, `oci:DIR[:TAG]`,
        /// `oci-archive:PATH[:TAG]`, or a PATH written as --format says.
        #[arg(short = 'o', long = "output", value_name = "PATH")]
        output: String,
        /// How to write a plain -o PATH (default docker-archive).
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// How to pick and reach the image.
        #[command(flatten)]
        remote: RemoteArgs,
        /// Print nothing but errors.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Log in to a registry (asking for the user name and password, or the
    /// password or token on stdin) and store the login where docker keeps
    /// it.
    Login {
        /// The registry: `docker.io`, `ghcr.io`, `host:port`.
        registry: String,
        /// The user name (asked for on a terminal if left out).
        #[arg(short, long)]
        username: Option<String>,
        /// Read the password from stdin, for scripts; else it is asked for
        /// on the terminal, without echo.
        #[arg(long)]
        password_stdin: bool,
        /// How to reach the registry.
        #[command(flatten)]
        registry_args: RegistryArgs,
    },
    /// Remove a registry's login from where docker keeps it (the
    /// counterpart of `login`).
    Logout {
        /// The registry: `docker.io`, `ghcr.io`, `host:port`.
        registry: String,
    },
    /// Show or prune the cache of built layers and pulled image blobs
    /// (CONDA_DOCKER_CACHE_DIR).
    Cache {
        /// What to do.
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// Print a shell completion script: `source <(conda-docker completions
    /// bash)`, or save it where your shell looks.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page, or write one page per command into DIR.
    Man {
        /// Where to write `conda-docker.1`, `conda-docker-build.1`, ...
        #[arg(value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// `cache` subcommands.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Where the cache is, its size and what it holds.
    Info {
        /// Print it as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Remove what builds no longer use, least recently used first.
    ///
    /// Removes layer entries and pulled images last used longer ago than
    /// --older-than, then the least recently used ones until the cache fits
    /// in --max-size, with every blob nothing left refers to and what
    /// killed runs left behind. Waits for running builds to finish first.
    Prune {
        /// Keep at most SIZE: bytes, or with a unit (500MB, 10GB, 2GiB).
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        max_size: Option<u64>,
        /// Remove what was last used more than DAYS days ago.
        #[arg(long, value_name = "DAYS", value_parser = parse_days)]
        older_than: Option<Duration>,
        /// How long to wait for running builds, in seconds, before giving up.
        #[arg(long, value_name = "SECONDS", default_value_t = 600)]
        timeout: u64,
        /// Print what was removed as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
}

impl Cli {
    /// Parses the process's arguments for `invocation`: help and usage
    /// errors show the command the user typed, and a conda flag we do not
    /// take gets a tip saying so. Exits on `--help` or a
    /// usage error (code 2, as conda's argparse does).
    pub fn parse_as(invocation: Invocation) -> Self {
        let mut command = Cli::command_as(invocation);
        command
            .try_get_matches_from_mut(std::env::args_os())
            .and_then(|matches| Cli::from_arg_matches(&matches))
            .unwrap_or_else(|error| conda_flag_tip(error.format(&mut command)).exit())
    }

    /// The clap definition under the name of `invocation`.
    pub fn command_as(invocation: Invocation) -> clap::Command {
        Cli::command().bin_name(invocation.command())
    }
}

/// Flags of conda's `create`/`install` that people type by habit and that
/// mean nothing here.
const CONDA_ONLY_FLAGS: &[&str] = &[
    "-y",
    "--yes",
    "-d",
    "--dry-run",
    "--offline",
    "--use-local",
    "--solver",
    "--repodata-fn",
    "-C",
    "--use-index-cache",
    "-k",
    "--no-deps",
    "--only-deps",
    "--copy",
    "--clobber",
    "--strict-channel-priority",
    "--no-channel-priority",
    "--download-only",
    "--no-plugins",
    "--console",
    "--debug",
    "--subdir",
];

/// Adds a tip to clap's "unexpected argument" error when the argument is
/// one of conda's own flags.
fn conda_flag_tip(mut error: clap::Error) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if error.kind() != ErrorKind::UnknownArgument {
        return error;
    }
    let Some(ContextValue::String(arg)) = error.get(ContextKind::InvalidArg) else {
        return error;
    };
    let flag = arg.split('=').next().unwrap_or_default();
    if !CONDA_ONLY_FLAGS.contains(&flag) && flag != "--environment-file" {
        return error;
    }
    let tip = if flag == "--environment-file" {
        "did you mean --file? (an environment.yml, a lock file or an explicit spec)".to_owned()
    } else if flag == "--subdir" {
        "conda's `--subdir` is `--platform` here".to_owned()
    } else if flag == "--debug" {
        "for more output use -v, -vv or -vvv".to_owned()
    } else {
        format!(
            "`{flag}` is a flag of conda's own; {} does not take it (see --help)",
            crate::invocation::command()
        )
    };
    error.insert(
        ContextKind::Suggested,
        ContextValue::StyledStrs(vec![tip.into()]),
    );
    error
}

/// TLS and plain-HTTP settings for registries.
#[derive(Clone, Debug, Args)]
pub struct RegistryArgs {
    /// Also trust the CA certificates (`*.crt`, e.g. `ca.crt`) in DIR,
    /// besides those in docker's and podman's certs.d.
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// Allow plain HTTP and TLS certificates that do not verify.
    #[arg(long)]
    pub insecure: bool,
}

impl From<RegistryArgs> for RegistryOptions {
    fn from(args: RegistryArgs) -> Self {
        RegistryOptions {
            insecure: args.insecure,
            cert_dir: args.cert_dir,
            read_timeout: Some(crate::conda::condarc::CondaRc::load().read_timeout()),
        }
    }
}

/// How new layers are compressed, and by how many threads.
#[derive(Clone, Debug, Args)]
pub struct CompressionArgs {
    /// How new layers are compressed: `gzip[:LEVEL]` (0-9; readable by
    /// every engine), `zstd[:LEVEL]` (1-22, default 3; smaller and faster,
    /// but not for a docker-archive or older engines) or `none`.
    #[arg(long, value_name = "ALGORITHM[:LEVEL]", default_value = "gzip:6")]
    pub compression: Compression,
    /// How many threads build and compress layers (default: one per
    /// core). The image's bytes are the same whatever the number.
    #[arg(long, value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=4096))]
    pub jobs: Option<usize>,
}

impl CompressionArgs {
    /// `--jobs`, or one per core.
    fn jobs(&self) -> usize {
        self.jobs.unwrap_or_else(crate::parallel::cores)
    }
}

/// Which platform to take from a multi-platform image, and how to reach
/// registries.
#[derive(Clone, Debug, Args)]
pub struct RemoteArgs {
    /// The platform: linux-64 (default), linux-aarch64, linux-ppc64le,
    /// linux-s390x, or OS/ARCH[/VARIANT].
    #[arg(long, value_name = "PLATFORM", value_parser = hinted::<Platform>(PLATFORM_HINTS))]
    pub platform: Option<Platform>,
    /// TLS settings.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

impl From<RemoteArgs> for OpenOptions {
    fn from(args: RemoteArgs) -> Self {
        OpenOptions {
            platform: args.platform.unwrap_or_default(),
            registry: args.registry.into(),
        }
    }
}

/// Which layers `packages`, `lock` and `diff` read.
#[derive(Clone, Copy, Debug, Args)]
pub struct ReadArgs {
    /// Read the records of every layer from its files, also of layers
    /// whose org.conda-docker.records annotation says which records they
    /// hold (by default those are neither pulled nor unpacked): the
    /// annotations are the image's own claims.
    #[arg(long)]
    pub read_layers: bool,
}

impl ReadArgs {
    /// The read these flags ask for.
    pub fn mode(self) -> ReadMode {
        if self.read_layers {
            ReadMode::AllLayers
        } else {
            ReadMode::Annotated
        }
    }
}

/// Where `copy` writes: a file or directory, or a registry.
#[derive(Clone, Debug)]
pub enum Target {
    /// An output on disk.
    File(ImageDestination),
    /// `docker://REF`: pushed.
    Registry(Reference),
}

/// What shell completion offers for `--platform`: conda's names of the
/// platforms images are made for, then docker's.
const PLATFORM_HINTS: &[&str] = &[
    "linux-64",
    "linux-aarch64",
    "linux-ppc64le",
    "linux-s390x",
    "linux/amd64",
    "linux/arm64",
];

/// What shell completion offers for an image source.
const SOURCE_HINTS: &[&str] = &[
    "scratch",
    "docker://",
    "docker-archive:",
    "oci:",
    "oci-archive:",
];

/// A parser that reads a value with `FromStr`, as clap would, and offers
/// `hints` to shell completion (completion scripts list a parser's
/// possible values; any other value still parses).
#[derive(Clone)]
struct Hinted<T> {
    hints: &'static [&'static str],
    kind: std::marker::PhantomData<fn() -> T>,
}

fn hinted<T>(hints: &'static [&'static str]) -> Hinted<T> {
    Hinted {
        hints,
        kind: std::marker::PhantomData,
    }
}

impl<T> clap::builder::TypedValueParser for Hinted<T>
where
    T: std::str::FromStr + Clone + Send + Sync + 'static,
    T::Err: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        clap::builder::StringValueParser::new()
            .try_map(|text| text.parse::<T>())
            .parse_ref(cmd, arg, value)
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(
            self.hints
                .iter()
                .map(|hint| clap::builder::PossibleValue::new(*hint)),
        ))
    }
}

/// The prefixes that name an output's transport, as skopeo spells them.
const TRANSPORTS: [&str; 4] = ["docker://", "docker-archive:", "oci:", "oci-archive:"];

impl std::str::FromStr for Target {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.strip_prefix("docker://") {
            Some(reference) => reference
                .parse()
                .map(Target::Registry)
                .map_err(|e: crate::reference::ReferenceError| e.to_string()),
            None => text.parse().map(Target::File).map_err(|_| {
                format!(
                    "invalid image destination `{text}`: expected `docker://REF`, `docker-archive:PATH`, `oci:DIR[:TAG]` or `oci-archive:PATH[:TAG]`"
                )
            }),
        }
    }
}

impl Target {
    /// An `-o` value: a transport, or a plain path written as `format`
    /// says (docker-archive by default). Its folder must exist.
    fn output(text: &str, format: Option<Format>) -> Result<Target, CliError> {
        if !TRANSPORTS.iter().any(|t| text.starts_with(t)) {
            let format = format.unwrap_or(Format::DockerArchive);
            return Ok(Target::File(destination(format, PathBuf::from(text))?));
        }
        if format.is_some() {
            return Err(CliError::Usage(format!(
                "-o {text} names its own format; leave out --format"
            )));
        }
        let target: Target = text.parse().map_err(CliError::Usage)?;
        if let Target::File(destination) = &target {
            check_folder(destination.path())?;
        }
        Ok(target)
    }
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
    /// An environment file: `environment.yml` (solved), `pixi.lock` or
    /// `conda-lock.yml`, or an `@EXPLICIT` spec (`conda list --explicit
    /// --md5`, `--lock-file` output).
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Packages to solve for and install, as match specs (`numpy`,
    /// `python=3.12`, `conda-forge::flask`).
    #[arg(value_name = "SPEC")]
    pub specs: Vec<String>,
    /// A channel to take packages from (repeatable; a name, URL or path);
    /// searched before `.condarc`'s channels (default conda-forge).
    #[arg(short = 'c', long = "channel", value_name = "CHANNEL")]
    pub channels: Vec<String>,
    /// Search only the channels given with -c (and the file's).
    #[arg(long)]
    pub override_channels: bool,
    /// A virtual package for the solve, e.g. `__cuda=12.4` (repeatable);
    /// beats `CONDA_OVERRIDE_*` and `.condarc`'s `override_virtual_packages`.
    /// `__cuda=host` takes this machine's NVIDIA driver version.
    #[arg(long = "virtual-package", value_name = "__NAME=VERSION")]
    pub virtual_packages: Vec<String>,
    /// Leave out the `pip:` section of an environment.yml.
    #[arg(long)]
    pub ignore_pip: bool,
    /// Leave out the PyPI packages of a pixi.lock.
    #[arg(long)]
    pub ignore_pypi: bool,
    /// The pixi environment to build (default `default`): of the pixi.lock
    /// given with --file, else of the pixi workspace around the current
    /// folder (installed by `pixi install`).
    #[arg(long, value_name = "NAME")]
    pub pixi_env: Option<String>,
    /// Write the environment as an `@EXPLICIT` spec with sha256 hashes,
    /// to build the same image later with `--file` and no solve.
    #[arg(long, value_name = "PATH")]
    pub lock_file: Option<PathBuf>,
    /// The base image: a reference (pulled), `scratch` (nothing but the
    /// environment), `docker-archive:PATH`, `oci:DIR[:TAG]`,
    /// `oci-archive:PATH[:TAG]` or a path.
    #[arg(
        short = 'b',
        long = "base",
        value_name = "SOURCE",
        default_value = DEFAULT_BASE,
        value_parser = hinted::<ImageSource>(SOURCE_HINTS),
        hide_possible_values = true
    )]
    pub base: ImageSource,
    /// Where to write the image (needed unless --push): `docker-archive:PATH`,
    /// `oci:DIR[:TAG]`, `oci-archive:PATH[:TAG]`, `docker://REF` (pushed
    /// there), or a PATH written as --format says.
    #[arg(
        short = 'o',
        long = "output",
        value_name = "PATH",
        value_parser = hinted::<String>(&TRANSPORTS),
        hide_possible_values = true
    )]
    pub output: Option<String>,
    /// Push the image to the registry of its name (`-i REGISTRY/NAME:TAG`).
    /// Credentials: CONDA_DOCKER_REGISTRY_USER and _PASSWORD, else your
    /// docker or podman login; checked before anything is built.
    #[arg(long)]
    pub push: bool,
    /// The platform to build for, and of the base to pull: that of the
    /// environment (default), which this must match if given. Repeat it
    /// (`--platform linux-64 --platform linux-aarch64`) to build one image
    /// per platform from specs, an environment.yml or a lock file, written
    /// as one index (to oci:DIR or oci-archive:PATH) or pushed as one; each
    /// platform's --lock-file is PATH with the platform before its
    /// extension (`env.lock` → `env.linux-64.lock`).
    #[arg(long, value_name = "PLATFORM", value_parser = hinted::<Platform>(PLATFORM_HINTS))]
    pub platform: Vec<Platform>,
    /// TLS settings for registries.
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// How to write a plain -o PATH (default docker-archive).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// The image's name (and where --push sends it); `-t`/`--tag` as in
    /// `docker build`.
    #[arg(
        short = 'i',
        long = "image",
        visible_short_alias = 't',
        visible_alias = "tag",
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
    /// Add a manifest annotation (repeatable), e.g.
    /// `org.opencontainers.image.source=URL`; replaces a standard one
    /// (`created`, `base.name`, `base.digest`). OCI outputs and pushes
    /// carry them; `docker load` does not read them.
    #[arg(long = "annotation", value_name = "K=V", value_parser = key_value)]
    pub annotation: Vec<(String, String)>,
    /// The entrypoint: a JSON array (`["python", "-m", "app"]`) or a
    /// command line, split as a shell splits it.
    #[arg(long, value_name = "CMD", allow_hyphen_values = true)]
    pub entrypoint: Option<String>,
    /// The default command: a JSON array or a command line, split as a
    /// shell splits it.
    #[arg(long, value_name = "CMD", allow_hyphen_values = true)]
    pub cmd: Option<String>,
    /// The working directory.
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// The user (`name`, `uid` or `uid:gid`).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Give the environment's prefix, and everything below it, to this
    /// numeric user and group in every layer (default 0:0); the folders
    /// above it stay root's. With `--user UID:GID` the image's user can
    /// install into the environment.
    #[arg(long, value_name = "UID:GID", value_parser = owner)]
    pub owner: Option<(u32, u32)>,
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
    /// Do not run the environment's `etc/conda/activate.d/*.sh` scripts.
    /// An installed environment's scripts run in bash on this machine to
    /// read the variables they export; environments from a lock or
    /// explicit file or a solve never run any.
    #[arg(long)]
    pub no_activation_scripts: bool,
    /// Compress the base's layers that are plain tars (a `docker save`
    /// base's) as --compression says: about a third of the bytes to push
    /// or write, but those layers' digests change (the image id does not).
    #[arg(long)]
    pub compress_base: bool,
    /// How new layers are compressed, and by how many threads.
    #[command(flatten)]
    pub compression: CompressionArgs,
    /// Build every layer again: take none from the layer cache
    /// (`CONDA_DOCKER_CACHE_DIR/layers`) or --cache-repo, and keep none in
    /// the layer cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Share package layers between machines through a registry
    /// repository: each is looked up there by its identity before it is
    /// built (then mounted into the repository pushed to, or pulled), and
    /// the missing ones are written there after. Uses your login for that
    /// registry; whoever may push there decides what your builds take.
    #[arg(long, value_name = "REGISTRY/REPO", value_parser = cache_repository)]
    pub cache_repo: Option<Reference>,
    /// Read --cache-repo but never write to it (builds of pull requests).
    #[arg(long, requires = "cache_repo")]
    pub cache_repo_read_only: bool,
    /// Check each layer taken from the layer cache against its digest
    /// first. Without it a layer is checked when it is streamed (to a
    /// docker-archive, a push); an OCI layout links it, checking its size.
    /// A damaged one is built again.
    #[arg(long)]
    pub verify: bool,
    /// Add a host file or folder as a layer of its own, above the
    /// environment, by Docker's COPY rules: a DEST ending in `/` or that
    /// is a directory receives the file inside it; a folder's contents go
    /// into DEST (`SRC:DEST`, repeatable).
    #[arg(long = "add", value_name = "SRC:DEST", value_parser = source_destination)]
    pub add: Vec<(PathBuf, String)>,
    /// Also write an SBOM of the image's conda and PyPI packages and its
    /// base to PATH: SPDX 2.3 JSON for `*.spdx.json`, CycloneDX 1.6 JSON
    /// for `*.cdx.json` (the image holds both in
    /// `PREFIX/conda-meta/sbom/`); with several --platform, one file per
    /// platform (`app.spdx.json` → `app.linux-64.spdx.json`).
    #[arg(long, value_name = "PATH")]
    pub sbom: Option<PathBuf>,
    /// The format of --sbom's file, when its name does not say it.
    #[arg(long, value_enum, requires = "sbom")]
    pub sbom_format: Option<crate::sbom::SbomFormat>,
    /// With a push: attach both SBOMs to the pushed image as OCI 1.1
    /// artifacts (`subject`: the image manifest; in an index, each
    /// platform's manifest gets its own), listed by the registry's
    /// referrers API, else under the `sha256-<hex>` tag of that manifest.
    #[arg(long)]
    pub attach_sbom: bool,
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

/// `UID:GID`, both numbers: an image's user names mean nothing on the
/// build machine.
fn owner(text: &str) -> Result<(u32, u32), String> {
    text.split_once(':')
        .and_then(|(uid, gid)| Some((uid.parse().ok()?, gid.parse().ok()?)))
        .ok_or_else(|| format!("`{text}` is not UID:GID (two numbers, e.g. 1000:1000)"))
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

/// A `--cache-repo`: a repository, whose tags are the cache's own.
fn cache_repository(text: &str) -> Result<Reference, String> {
    let reference: Reference = text
        .parse()
        .map_err(|e: crate::reference::ReferenceError| e.to_string())?;
    let last = text.rsplit('/').next().unwrap_or(text);
    if last.contains(':') || last.contains('@') {
        return Err(format!(
            "`{text}` names a tag or digest; give REGISTRY/REPOSITORY only (its tags are the cache's entries)"
        ));
    }
    Ok(reference)
}

fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("`{text}` is not of the form KEY=VALUE")),
    }
}

/// `["a", "b"]` as JSON, or a command line split as a shell splits it
/// (`python -c "import sys"` is three words).
fn command_words(text: &str) -> Result<Vec<String>, CliError> {
    if text.trim_start().starts_with('[') {
        serde_json::from_str(text)
            .map_err(|_| CliError::Usage(format!("`{text}` is not a JSON array of strings")))
    } else {
        shlex::split(text).ok_or_else(|| {
            CliError::Usage(format!(
                "`{text}` is not a command line: a quote is not closed"
            ))
        })
    }
}

impl CliError {
    /// Whether the message keeps its lines: a solver's explanation is a
    /// tree, unreadable on one line. Every other error is one line.
    pub fn keeps_lines(&self) -> bool {
        matches!(
            self,
            CliError::Build(BuildError::Conda(CondaError::Solve(
                crate::conda::solve::SolveError::Unsolvable(_)
            )))
        )
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
    /// Talking to a registry.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Reading an image's environments.
    #[error(transparent)]
    Contents(#[from] ContentsError),
    /// Flags that do not fit together.
    #[error("{0}")]
    Usage(String),
    /// Writing `--sbom`'s file.
    #[error("cannot write the SBOM to {}: check that its folder exists and is writable", path.display())]
    Sbom {
        /// The file asked for.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn run_build(args: BuildArgs) -> Result<(), CliError> {
    let env = env_selector(&args)?;
    let (destination, push_to) =
        image_goes_to(args.output.as_deref(), args.format, args.push, &args.image)?;
    check_compression(
        destination.as_ref(),
        args.compression.compression,
        args.compress_base.then_some("--compress-base"),
    )?;
    if let (Some(ImageDestination::DockerArchive(path)), false) =
        (&destination, args.annotation.is_empty())
    {
        tracing::warn!(
            "{}: a docker-archive's manifest.json has no annotations, so `docker load` and skopeo will not see --annotation (only the archive's OCI index.json keeps them): write oci:DIR or oci-archive:PATH, or --push, to keep them",
            path.display()
        );
    }
    let (json, quiet, compress_base) = (args.json, args.quiet, args.compress_base);
    let sbom_to = sbom::target(args.sbom.clone(), args.sbom_format)?;
    let attach_sbom = sbom::attach_to(args.attach_sbom, push_to.is_some())?;
    let platforms = args.platform.clone();
    if platforms.len() > 1 {
        several::check_destination(destination.as_ref())?;
    }
    let mut options = build_options(args, env)?;
    // The login, the registry and the right to push, before any work.
    let push_target = push_to
        .as_ref()
        .map(|reference| PushTarget::check(reference, &options.registry, Login::from_environment()))
        .transpose()?
        .map(std::sync::Arc::new);
    // Only a push needs no layer's bytes that the registry has (and
    // --compress-base reads every plain layer).
    if destination.is_none() && !compress_base {
        options.push_only = push_target.clone();
    }
    // CI's login for the registry pushed to serves a cache repository there.
    if let (Some(cache), Some(push_to)) = (&mut options.cache_repo, &push_to)
        && cache.repository.registry() == push_to.registry()
    {
        cache.login = Login::from_environment();
    }
    let progress = Progress::new(quiet);
    if platforms.len() > 1 {
        let outputs = several::Outputs {
            destination,
            push_target,
            compress_base,
            sbom_to,
            attach_sbom,
        };
        return several::build_index(&options, &platforms, &outputs, &progress, (json, quiet));
    }
    let (image, layers, pushed) = build_with_output(&options, &progress, |image, _, inventory| {
        if compress_base {
            image.compress_plain_layers()?;
        }
        if let Some(destination) = &destination {
            image.write_to(destination)?;
        }
        let pushed = match &push_target {
            Some(target) => Some(target.push_with(image, &progress)?),
            None => None,
        };
        if let (Some(target), true) = (&push_target, attach_sbom) {
            sbom::attach(target, image, inventory)?;
        }
        if let Some((path, format)) = &sbom_to {
            sbom::write(path, *format, inventory)?;
        }
        Ok::<_, CliError>(pushed)
    })?;
    if json {
        print_build_json(&image, &layers, pushed.as_ref());
        return Ok(());
    }
    if !quiet && let Some(destination) = &destination {
        print_written(destination, &image, &layers);
    }
    if let Some(report) = &pushed {
        print_pushed(report, quiet);
    }
    Ok(())
}

/// The environment to build, from `-p`, `-n`, `-f`, specs or the pixi
/// flags; more than one of them is refused.
fn env_selector(args: &BuildArgs) -> Result<EnvSelector, CliError> {
    let flags = EnvFlags {
        prefix: args.prefix.clone(),
        name: args.name.clone(),
        file: args.file.clone(),
        specs: args.specs.clone(),
        pixi_env: args.pixi_env.clone(),
        as_pixi: Invocation::current() == Invocation::Pixi,
        channels: !args.channels.is_empty() || args.override_channels,
    };
    Ok(EnvSelector::choose(flags).map_err(BuildError::from)?)
}

/// Where the built image goes, from `-o` (with `--format`) and `--push`
/// (to `image`, the `-i` name): a file or layout to write, a registry
/// reference to push to, or both. `-o docker://REF` with `--push` would
/// push twice, and neither says nowhere; both are refused.
fn image_goes_to(
    output: Option<&str>,
    format: Option<Format>,
    push: bool,
    image: &str,
) -> Result<(Option<ImageDestination>, Option<Reference>), CliError> {
    let output = output.map(|o| Target::output(o, format)).transpose()?;
    let push_to_image = match push {
        true => Some(image.parse::<Reference>().map_err(ImageError::from)?),
        false => None,
    };
    match (output, push_to_image) {
        (Some(Target::Registry(_)), Some(_)) => Err(CliError::Usage(
            "-o docker://REF pushes already; leave out --push (which pushes to -i)".into(),
        )),
        (Some(Target::Registry(reference)), None) => Ok((None, Some(reference))),
        (Some(Target::File(destination)), push_to) => Ok((Some(destination), push_to)),
        (None, Some(reference)) => Ok((None, Some(reference))),
        (None, None) => Err(CliError::Usage(
            "say where the image goes: -o PATH, or --push to push it to the registry of -i".into(),
        )),
    }
}

/// The library's options for `build`'s flags and the chosen environment.
/// `--entrypoint` and `--cmd` are split into words as a shell would.
fn build_options(args: BuildArgs, env: EnvSelector) -> Result<BuildOptions, CliError> {
    Ok(BuildOptions {
        env,
        base: args.base,
        platform: match args.platform.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        },
        solve: SolveOptions {
            channels: args.channels,
            override_channels: args.override_channels,
            virtual_packages: args.virtual_packages,
            ignore_pip: args.ignore_pip,
            ignore_pypi: args.ignore_pypi,
            lock_environment: args.pixi_env,
            ..SolveOptions::default()
        },
        lock_file: args.lock_file,
        registry: args.registry.into(),
        image_prefix: args.prefix_in_image,
        name: args.image,
        env_vars: args.env,
        labels: args.label,
        annotations: args.annotation,
        entrypoint: args.entrypoint.as_deref().map(command_words).transpose()?,
        cmd: args.cmd.as_deref().map(command_words).transpose()?,
        workdir: args.workdir,
        user: args.user,
        owner: args.owner,
        max_layers: args.max_layers,
        single_layer: matches!(args.layering, Layering::Single),
        untracked: !args.no_untracked,
        activation_scripts: !args.no_activation_scripts,
        add: args.add,
        layer_cache: (!args.no_cache).then(|| {
            crate::layer::LayerCache::new(crate::dirs::cache_dir()).verifying(args.verify)
        }),
        cache_repo: args.cache_repo.map(|repository| CacheRepo {
            repository,
            read_only: args.cache_repo_read_only,
            login: None,
        }),
        jobs: args.compression.jobs(),
        compression: args.compression.compression,
        ..BuildOptions::default()
    })
}

/// Refuses, before any work, a compression the destination cannot hold
/// (zstd in a docker-archive), and `none` with a flag (`compress_flag`)
/// that asks to compress.
fn check_compression(
    destination: Option<&ImageDestination>,
    compression: Compression,
    compress_flag: Option<&str>,
) -> Result<(), CliError> {
    if let Some(flag) = compress_flag
        && compression == Compression::None
    {
        return Err(CliError::Usage(format!(
            "{flag} compresses layers, but --compression is none: give gzip or zstd, or leave out {flag}"
        )));
    }
    if let Some(destination) = destination {
        destination.check_compression(compression)?;
    }
    Ok(())
}

/// `build --json`: the image's summary, its conda layers and what was
/// pushed, on stdout.
fn print_build_json(image: &Image, layers: &[LayerReport], pushed: Option<&PushReport>) {
    let mut summary = summary(image);
    summary["conda_layers"] = json!(layers);
    if let Some(report) = pushed {
        summary["pushed"] = json!(report);
    }
    println!("{summary:#}");
}

/// The line saying what was written where.
fn print_written(destination: &ImageDestination, image: &Image, layers: &[LayerReport]) {
    let packages = layers.iter().map(|l| l.packages.len()).sum::<usize>();
    eprintln!(
        "wrote {destination}: {}, {}, id {}",
        counted(image.layers().len(), "layer"),
        counted(packages, "package"),
        image.config_digest()
    );
}

/// The output of `--format FORMAT -o PATH`, after checking its folder.
fn destination(format: Format, output: PathBuf) -> Result<ImageDestination, CliError> {
    check_folder(&output)?;
    Ok(match format {
        Format::DockerArchive => ImageDestination::DockerArchive(output),
        Format::Oci => ImageDestination::Oci {
            dir: output,
            tag: None,
        },
        Format::OciArchive => ImageDestination::OciArchive {
            path: output,
            tag: None,
        },
    })
}

/// `1 layer`, `2 layers`.
fn counted(n: usize, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        _ => format!("{n} {noun}s"),
    }
}

/// Refuses an output whose folder is missing or not a folder, before any
/// work is done.
fn check_folder(output: &std::path::Path) -> Result<(), CliError> {
    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    match std::fs::metadata(parent) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(CliError::Usage(format!(
            "cannot write {}: {} is not a directory",
            output.display(),
            parent.display()
        ))),
        Err(_) => Err(CliError::Usage(format!(
            "cannot write {}: the folder {} does not exist",
            output.display(),
            parent.display()
        ))),
    }
}

/// `login`: the user name from -u or asked for, the password from stdin
/// (`--password-stdin`, or when stdin is not a terminal) or asked for
/// without echo, as `docker login` does.
fn run_login(
    registry: &str,
    username: Option<String>,
    password_stdin: bool,
    options: &RegistryOptions,
) -> Result<(), CliError> {
    let command = crate::invocation::command();
    let example = format!("`echo \"$TOKEN\" | {command} login REGISTRY -u USER --password-stdin`");
    let ask = !password_stdin && std::io::stdin().is_terminal();
    let username = match username {
        Some(username) => username,
        None if ask => {
            eprint!("Username: ");
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| CliError::Usage(format!("cannot read the user name: {e}")))?;
            line.trim().to_owned()
        }
        None => {
            return Err(CliError::Usage(format!(
                "give the user name with -u: there is no terminal to ask on; e.g. {example}"
            )));
        }
    };
    if username.is_empty() {
        return Err(CliError::Usage("no user name given".into()));
    }
    let password = if ask {
        rpassword::prompt_password("Password: ")
            .map_err(|e| CliError::Usage(format!("cannot read the password: {e}")))?
    } else {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| CliError::Usage(format!("cannot read the password from stdin: {e}")))?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    };
    if password.is_empty() {
        return Err(CliError::Usage(match ask {
            true => "no password given".into(),
            false => format!("no password on stdin: pipe it in, e.g. {example}"),
        }));
    }
    let stored = login(registry, &username, &password, options)?;
    eprintln!("logged in to {registry}; the login is stored in {stored}");
    Ok(())
}

/// `logout`: like `docker logout`, not being logged in is no error.
fn run_logout(registry: &str) -> Result<(), CliError> {
    match crate::registry::logout(registry)? {
        Some(from) => eprintln!("logged out of {registry}: removed the login from {from}"),
        None => eprintln!("not logged in to {registry}"),
    }
    Ok(())
}

/// `NAME@DIGEST` on stdout, for scripts; what was sent on stderr.
fn print_pushed(report: &PushReport, quiet: bool) {
    if !quiet {
        eprintln!(
            "pushed {}: {} blobs uploaded ({:.1} MB), {} mounted, {} already there",
            report.reference,
            report.uploaded,
            report.uploaded_bytes as f64 / 1e6,
            report.mounted,
            report.existing
        );
    }
    println!("{}@{}", report.name, report.digest);
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Build(args) => run_build(*args),
        Command::Inspect { source, remote } => {
            let _lock = lock_cache_for(&source)?;
            let image = registry::open(&source, &remote.into())?;
            println!("{:#}", summary(&image));
            Ok(())
        }
        command @ (Command::Packages { .. } | Command::Lock { .. } | Command::Diff { .. }) => {
            read_back::run(command)
        }
        Command::Copy {
            source,
            destination,
            name,
            compress_layers,
            compression,
            remote,
            quiet,
        } => run_copy(
            &source,
            destination,
            name,
            compress_layers.then_some(compression),
            remote,
            quiet,
        ),
        Command::Pull {
            reference,
            output,
            format,
            remote,
            quiet,
        } => run_pull(&reference, &output, format, remote.into(), quiet),
        Command::Login {
            registry,
            username,
            password_stdin,
            registry_args,
        } => run_login(&registry, username, password_stdin, &registry_args.into()),
        Command::Logout { registry } => run_logout(&registry),
        Command::Completions { shell } => {
            let script = completions(shell, Invocation::current().executable());
            std::io::Write::write_all(&mut std::io::stdout(), script.as_bytes())
                .map_err(|e| CliError::Usage(format!("cannot write the completions: {e}")))
        }
        Command::Man { dir } => write_man(dir),
        Command::Cache { command } => run_cache(command),
    }
}

/// `copy`: `source` to `destination`, renamed to `name`, its plain layers
/// compressed as `compress_layers` says; progress unless `quiet`.
fn run_copy(
    source: &ImageSource,
    destination: Target,
    name: Option<String>,
    compress_layers: Option<CompressionArgs>,
    remote: RemoteArgs,
    quiet: bool,
) -> Result<(), CliError> {
    if let Some(compression) = &compress_layers {
        let file = match &destination {
            Target::File(file) => Some(file),
            Target::Registry(_) => None,
        };
        check_compression(file, compression.compression, Some("--compress-layers"))?;
    }
    let options: OpenOptions = remote.into();
    // The login, the registry and the right to push, before the
    // source is read.
    let push_target = match &destination {
        Target::Registry(reference) => Some(PushTarget::check(
            reference,
            &options.registry,
            Login::from_environment(),
        )?),
        Target::File(_) => None,
    };
    let _lock = lock_cache_for(source)?;
    let progress = Progress::new(quiet);
    let mut image = registry::open_with(source, &options, &progress)?;
    if let Some(name) = name {
        image.set_name(&name)?;
    }
    if let Some(compression) = compress_layers {
        image.set_compression(compression.compression);
        image.set_jobs(compression.jobs());
        image.compress_plain_layers()?;
    }
    if let Some(target) = push_target {
        print_pushed(&target.push_with(&image, &progress)?, quiet);
    } else if let Target::File(destination) = destination {
        image.write_to(&destination)?;
    }
    Ok(())
}

/// `pull`: a registry image into a file; progress unless `quiet`.
fn run_pull(
    reference: &Reference,
    output: &str,
    format: Option<Format>,
    options: OpenOptions,
    quiet: bool,
) -> Result<(), CliError> {
    let destination = match Target::output(output, format)? {
        Target::File(destination) => destination,
        Target::Registry(_) => {
            return Err(CliError::Usage(
                "pull writes a file; to copy between registries use `copy`".into(),
            ));
        }
    };
    let _lock = lock_cache_for(&ImageSource::Registry(reference.clone()))?;
    let progress = Progress::new(quiet);
    let image = registry::pull_with(reference, &options.platform, &options.registry, &progress)?;
    image.write_to(&destination)?;
    if quiet {
        return Ok(());
    }
    eprintln!(
        "wrote {destination}: {}, id {}",
        counted(image.layers().len(), "layer"),
        image.config_digest()
    );
    Ok(())
}

/// The cache's shared lock while a command reads a registry image, whose
/// blobs it keeps in (and reads from) the cache, so that a `cache prune`
/// waits for it; `None` for other sources.
fn lock_cache_for(source: &ImageSource) -> Result<Option<CacheLock>, CliError> {
    if !matches!(source, ImageSource::Registry(_)) {
        return Ok(None);
    }
    let dir = crate::dirs::cache_dir();
    let lock = CacheLock::shared(&dir, || {
        eprintln!("waiting for `cache prune` to finish with {}", dir.display());
    })
    .map_err(BuildError::from)?;
    Ok(Some(lock))
}

/// `cache info` and `cache prune`, on our cache directory.
fn run_cache(command: CacheCommand) -> Result<(), CliError> {
    let dir = crate::dirs::cache_dir();
    let mb = |bytes: u64| format!("{:.1} MB", bytes as f64 / 1e6);
    match command {
        CacheCommand::Info { json } => {
            let usage = prune::usage(&dir);
            if json {
                println!("{:#}", json!(usage));
                return Ok(());
            }
            println!("cache: {} ({})", dir.display(), mb(usage.size));
            println!("layer entries: {}", usage.layer_entries);
            println!(
                "blobs: {} ({}): {} pulled manifests, {} unreferenced",
                usage.blobs,
                mb(usage.blob_bytes),
                usage.pulled_manifests,
                usage.unreferenced_blobs
            );
            println!("glibc memos: {}", usage.glibc_memos);
            println!("left by killed runs: {}", usage.leftovers);
            for (name, bytes) in &usage.other {
                println!("not pruned: {name}/ ({})", mb(*bytes));
            }
        }
        CacheCommand::Prune {
            max_size,
            older_than,
            timeout,
            json,
        } => {
            let _lock = CacheLock::exclusive(&dir, Duration::from_secs(timeout), || {
                eprintln!(
                    "waiting for running builds to finish with {} (at most {timeout} s)",
                    dir.display()
                );
            })
            .map_err(BuildError::from)?;
            let options = PruneOptions {
                older_than,
                max_size,
            };
            let report = prune::prune(&dir, options);
            if json {
                println!("{:#}", json!(report));
                return Ok(());
            }
            let linked = match report.still_linked {
                0 => String::new(),
                bytes => format!(" ({} stays on disk: OCI layouts still link it)", mb(bytes)),
            };
            println!(
                "removed {} layer entries, {} pulled images, {} blobs, {} glibc memos and {} leftovers: {} freed{linked}; {} left in {}",
                report.layer_entries,
                report.pulled_manifests,
                report.blobs,
                report.glibc_memos,
                report.leftovers,
                mb(report.freed),
                mb(report.size),
                dir.display()
            );
        }
    }
    Ok(())
}

/// The completion script for `shell`, keyed on `executable` (what shells
/// look up, whatever name the user typed).
fn completions(shell: clap_complete::Shell, executable: &str) -> String {
    let mut script = Vec::new();
    if shell != clap_complete::Shell::Bash {
        clap_complete::generate(shell, &mut Cli::command(), executable, &mut script);
        return String::from_utf8_lossy(&script).into_owned();
    }
    // clap_complete's bash script never completes a subcommand's options
    // when the name has a hyphen (clap-rs/clap#6421): generate it for a
    // name without one, then register that function for the real name.
    let plain = executable.replace('-', "_");
    clap_complete::generate(shell, &mut Cli::command(), &plain, &mut script);
    String::from_utf8_lossy(&script)
        .lines()
        .map(|line| match line.trim_start().starts_with("complete -F") {
            true => match line.strip_suffix(plain.as_str()) {
                Some(head) => format!("{head}{executable}\n"),
                None => format!("{line}\n"),
            },
            false => format!("{line}\n"),
        })
        .collect()
}

/// The man page on stdout, or every command's page into `dir`. Pages are
/// named after the executable (`conda-docker-build.1`), which is what
/// `man` looks up.
fn write_man(dir: Option<PathBuf>) -> Result<(), CliError> {
    let command = Cli::command();
    let failed = |e: std::io::Error| CliError::Usage(format!("cannot write the man page: {e}"));
    match dir {
        None => clap_mangen::Man::new(command)
            .render(&mut std::io::stdout())
            .map_err(failed),
        Some(dir) => {
            fs_err::create_dir_all(&dir).map_err(failed)?;
            clap_mangen::generate_to(command, &dir).map_err(failed)
        }
    }
}

/// What `inspect` prints.
fn summary(image: &Image) -> serde_json::Value {
    let packages = layer_packages(image);
    let layers: Vec<_> = image
        .layers()
        .iter()
        .zip(packages)
        .map(|(l, packages)| {
            let mut layer = json!({
                "digest": l.digest(),
                "diff_id": l.diff_id().0,
                "size": l.size(),
                "media_type": l.media_type().to_string(),
            });
            if let Some(packages) = packages {
                layer["packages"] = json!(packages);
            }
            layer
        })
        .collect();
    let config = image.config().as_json();
    json!({
        "name": image.name().map(|n| n.to_string()),
        "id": image.config_digest(),
        "manifest_digest": image.manifest_digest(),
        "os": image.config().os(),
        "architecture": image.config().architecture(),
        "created": config.get("created"),
        "config": config.get("config"),
        "layers": layers,
    })
}

/// The conda packages (`name-version-build`) each layer of an image this
/// tool built holds, from the history entry it wrote for the layer
/// (`conda-docker: PKG PKG...`), which every format keeps; `None` for
/// other layers.
fn layer_packages(image: &Image) -> Vec<Option<Vec<String>>> {
    let history = image.config().as_json()["history"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let per_layer: Vec<Option<Vec<String>>> = history
        .iter()
        .filter(|entry| entry["empty_layer"] != json!(true))
        .map(|entry| {
            let words = entry["created_by"]
                .as_str()?
                .strip_prefix("conda-docker: ")?;
            let packages: Vec<String> = words.split(' ').map(str::to_owned).collect();
            // The environment's own layer says what it holds in words.
            (!packages.iter().any(|p| p == "conda-meta/history")).then_some(packages)
        })
        .collect();
    match per_layer.len() == image.layers().len() {
        true => per_layer,
        false => vec![None; image.layers().len()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_as_english() {
        assert_eq!(counted(1, "layer"), "1 layer");
        assert_eq!(counted(0, "package"), "0 packages");
        assert_eq!(counted(3, "layer"), "3 layers");
    }

    #[test]
    fn commands_split_as_a_shell_splits_them() {
        assert_eq!(
            command_words(r#"python -c "import sys""#).unwrap(),
            ["python", "-c", "import sys"]
        );
        assert_eq!(command_words(r#"["a b", "c"]"#).unwrap(), ["a b", "c"]);
        assert!(command_words("echo 'open").is_err());
    }
}
