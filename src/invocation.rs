//! The name the user typed: `conda-docker`, `conda docker` (through the
//! conda plugin) or `pixi docker` (pixi runs `pixi-docker` for it). Help,
//! usage errors and hints that name a command follow it, so a user is
//! never told to run a command they did not start with; under pixi the
//! default environment is the project's, not `CONDA_PREFIX`.

use std::sync::OnceLock;

/// The variable the conda plugin sets (`conda`) before it execs us: conda
/// gives a subcommand no other trace in our argv or environment.
pub const INVOKED_AS_VAR: &str = "CONDA_DOCKER_INVOKED_AS";

/// How this process was started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Invocation {
    /// `conda-docker ...`.
    #[default]
    Direct,
    /// `conda docker ...`, through the plugin.
    Conda,
    /// `pixi docker ...` or `pixi-docker ...`: the same binary under the
    /// name pixi's extension rule looks for.
    Pixi,
}

static CURRENT: OnceLock<Invocation> = OnceLock::new();

impl Invocation {
    /// Works out the invocation from `argv[0]` and the plugin's variable.
    /// The plugin's word wins: `conda docker` execs the binary by its own
    /// name, whatever that is.
    pub fn detect() -> Self {
        if std::env::var(INVOKED_AS_VAR).is_ok_and(|v| v == "conda") {
            return Invocation::Conda;
        }
        let argv0 = std::env::args_os().next().unwrap_or_default();
        let stem = std::path::Path::new(&argv0)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if stem == "pixi-docker" {
            Invocation::Pixi
        } else {
            Invocation::Direct
        }
    }

    /// Records the invocation for [`Invocation::current`]; the first call
    /// wins.
    pub fn set_current(self) {
        let _ = CURRENT.set(self);
    }

    /// The invocation recorded at start-up (`Direct` if none was).
    pub fn current() -> Self {
        CURRENT.get().copied().unwrap_or_default()
    }

    /// The command as the user typed it, for help and messages.
    pub fn command(self) -> &'static str {
        match self {
            Invocation::Direct => "conda-docker",
            Invocation::Conda => "conda docker",
            Invocation::Pixi => "pixi docker",
        }
    }

    /// The executable's own name, which shell completions are keyed on.
    pub fn executable(self) -> &'static str {
        match self {
            Invocation::Direct | Invocation::Conda => "conda-docker",
            Invocation::Pixi => "pixi-docker",
        }
    }
}

/// The command the user typed, for hints inside error messages
/// (`log in with `conda docker login ...``).
pub fn command() -> &'static str {
    Invocation::current().command()
}
