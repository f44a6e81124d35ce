//! The variables that activating the environment sets, for the image
//! config: `conda-meta/state` and `etc/conda/env_vars.d` always, and what
//! the `etc/conda/activate.d` scripts export, found by activating the host
//! prefix in a clean bash and rewriting the host prefix to the image's.
//! An environment that is not installed (solved, locked, explicit) has
//! only its packages' `env_vars.d` files; its scripts are named in warnings,
//! never run. Running scripts is code from the environment running on the
//! build machine, so the caller can turn it off (`--no-activation-scripts`).

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::path::Path;

use rattler_conda_types::Subdir;
use rattler_shell::activation::{ActivationVariables, Activator};
use rattler_shell::shell::Bash;

/// Variables the image config gets from activation, and warnings for what
/// could not be carried over.
#[derive(Debug, Default)]
pub struct Activation {
    /// `(name, value)` in a stable order, values pointing at the image prefix.
    pub vars: Vec<(String, String)>,
    /// One line per script or file that could not be used.
    pub warnings: Vec<String>,
}

/// Set by activation itself or by the shell; the build sets PATH and
/// CONDA_PREFIX on its own terms.
fn is_bookkeeping(name: &str) -> bool {
    matches!(name, "PATH" | "PWD" | "OLDPWD" | "SHLVL" | "_" | "HOME")
        || name.starts_with("CONDA_")
        || name.starts_with("BASH")
}

/// Collects the activation variables of the environment at `prefix`,
/// running its `activate.d` scripts when `run_scripts`.
pub fn activation(
    prefix: &Path,
    image_prefix: &str,
    platform: Subdir,
    run_scripts: bool,
) -> Activation {
    let mut result = Activation::default();
    let activator = match Activator::from_path(prefix, Bash::default(), platform) {
        Ok(a) => a,
        Err(e) => {
            result.warnings.push(format!(
                "cannot read the activation settings of {}: {e}",
                prefix.display()
            ));
            return result;
        }
    };
    let host = prefix.to_string_lossy().into_owned();
    let relocate = |value: &str| value.replace(&host, image_prefix);
    let mut vars: Vec<(String, String)> = activator
        .env_vars
        .iter()
        .chain(&activator.post_activation_env_vars)
        .map(|(k, v)| (k.clone(), relocate(v)))
        .collect();
    if !run_scripts {
        for script in &activator.activation_scripts {
            result.warnings.push(format!(
                "not running activation script {} (--no-activation-scripts); set what it exports with --env",
                script.display()
            ));
        }
    } else if !activator.activation_scripts.is_empty() {
        let clean: HashMap<String, String> = [("PATH".to_owned(), "/usr/bin:/bin".to_owned())]
            .into_iter()
            .collect();
        let env: HashMap<&OsStr, &OsStr> = clean
            .iter()
            .map(|(k, v)| (OsStr::new(k), OsStr::new(v)))
            .collect();
        // rattler puts the prefix's bin/ in front of `path`, not of
        // current_env's PATH: without it, scripts find no system tools.
        let variables = ActivationVariables {
            current_env: clean.clone(),
            path: Some(vec!["/usr/bin".into(), "/bin".into()]),
            ..ActivationVariables::default()
        };
        match activator.run_activation(variables, Some(env)) {
            Ok(after) => {
                let exported: BTreeMap<String, String> = after
                    .into_iter()
                    .filter(|(k, v)| !is_bookkeeping(k) && clean.get(k) != Some(v))
                    .collect();
                for (name, value) in exported {
                    if !vars.iter().any(|(known, _)| known == &name) {
                        let value = relocate(&value);
                        vars.push((name, value));
                    }
                }
            }
            Err(e) => {
                for script in &activator.activation_scripts {
                    result
                        .warnings
                        .push(format!("activation script {} could not be run ({e}); its variables are not in the image", script.display()));
                }
            }
        }
    }
    result.vars = vars;
    result
}

/// The activation variables of an environment that is not installed: the
/// `etc/conda/env_vars.d/*.json` files of its packages (in file-name order,
/// as conda applies them); `etc/conda/activate.d` scripts cannot be run
/// without an installed prefix, so each is named in a warning.
pub fn package_activation(package_dirs: &[std::path::PathBuf]) -> Activation {
    let mut result = Activation::default();
    let mut files: BTreeMap<std::ffi::OsString, std::path::PathBuf> = BTreeMap::new();
    for dir in package_dirs {
        let list = |sub: &str| -> Vec<std::path::PathBuf> {
            std::fs::read_dir(dir.join(sub))
                .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path()).collect())
                .unwrap_or_default()
        };
        for path in list("etc/conda/env_vars.d") {
            if path.extension().is_some_and(|e| e == "json")
                && let Some(name) = path.file_name()
            {
                files.insert(name.to_owned(), path);
            }
        }
        let mut scripts = list("etc/conda/activate.d");
        scripts.sort();
        for script in scripts {
            if let Some(name) = script.file_name() {
                result.warnings.push(format!(
                    "activation script etc/conda/activate.d/{} is not run for an environment that is not installed; set what it exports with --env",
                    name.to_string_lossy()
                ));
            }
        }
    }
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    for path in files.values() {
        let parsed = std::fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<BTreeMap<String, String>>(&bytes).ok());
        match parsed {
            Some(found) => vars.extend(found),
            None => result.warnings.push(format!(
                "{} is not a JSON object of strings; its variables are not in the image",
                path.display()
            )),
        }
    }
    result.vars = vars.into_iter().collect();
    result
}
