//! Solving match specs into an environment for an image, and fetching its
//! packages into rattler's package cache.
//!
//! The target is the image's platform, never the host's: repodata is read
//! for it (and noarch), and the virtual packages the solver sees describe
//! a Linux container of that architecture, not this machine.

use std::path::PathBuf;

use std::sync::Arc;

use rattler_cache::package_cache::PackageCache;
use rattler_conda_types::{
    Channel, ChannelConfig, GenericVirtualPackage, MatchSpec, ParseStrictness, RepoDataRecord,
    Subdir,
};
use rattler_networking::retry_policies::default_retry_policy;
use rattler_networking::{AuthenticationMiddleware, LazyClient};
use rattler_repodata_gateway::{Gateway, RepoData};
use rattler_solve::{SolverImpl, SolverTask, resolvo};
use url::Url;

use super::condarc::CondaRc;
use super::virtual_packages::Overrides;

/// Channel names are resolved against this unless `.condarc` says
/// otherwise.
const DEFAULT_CHANNEL: &str = "conda-forge";

/// What to solve, and where.
#[derive(Clone, Debug)]
pub struct SolveRequest {
    /// Match specs (`numpy`, `python=3.12`, `conda-forge::flask`).
    pub specs: Vec<String>,
    /// Channels given with `-c` (names, URLs or paths), highest priority
    /// first; `.condarc`'s `channels` follow unless `override_channels`.
    pub channels: Vec<String>,
    /// Use only `channels`.
    pub override_channels: bool,
    /// The image's platform.
    pub platform: Subdir,
    /// The base image's glibc version; `None` when it has no glibc.
    pub glibc: Option<String>,
    /// `__name=version` virtual packages to add or override.
    pub virtual_packages: Vec<String>,
}

/// What can go wrong solving or fetching.
#[derive(Debug, thiserror::Error)]
pub enum SolveError {
    /// A signal stopped the work.
    #[error(transparent)]
    Interrupted(crate::interrupt::Interrupted),
    /// A spec that does not parse.
    #[error("invalid package spec `{spec}`")]
    BadSpec {
        /// The spec as given.
        spec: String,
        /// Why, as rattler's parser says.
        #[source]
        source: rattler_conda_types::ParseMatchSpecError,
    },
    /// A channel that does not parse.
    #[error("invalid channel `{0}`: expected a name (conda-forge), a URL or a path")]
    BadChannel(String),
    /// `--override-channels` and no channel to use.
    #[error(
        "--override-channels leaves no channel: name the channels to use with -c CHANNEL (or in the environment file's `channels:`)"
    )]
    NoChannels,
    /// A `--virtual-package` that is not `__name=version`.
    #[error("invalid --virtual-package `{0}`: expected __NAME=VERSION, e.g. __cuda=12.4")]
    BadVirtualPackage(String),
    /// `--virtual-package __cuda=host` on a machine with no NVIDIA driver.
    #[error(
        "--virtual-package __cuda=host: no NVIDIA driver found on this machine (NVML, libcuda, nvidia-smi); give the CUDA version the image will run with, e.g. --virtual-package __cuda=12.4"
    )]
    NoCudaDriver,
    /// `host` for a virtual package other than `__cuda`.
    #[error(
        "invalid --virtual-package `{0}`: only __cuda=host reads this machine; give a version, e.g. __glibc=2.28"
    )]
    HostOnlyForCuda(String),
    /// Repodata could not be fetched.
    #[error("cannot read the channels ({channels})")]
    Repodata {
        /// The channels.
        channels: String,
        /// Why.
        #[source]
        source: rattler_repodata_gateway::GatewayError,
    },
    /// A package no channel has.
    #[error("no package named `{name}` for {platform} in {channels}")]
    UnknownPackage {
        /// The package.
        name: String,
        /// The platform.
        platform: String,
        /// The channels searched.
        channels: String,
    },
    /// No set of packages satisfies the specs: the solver's explanation,
    /// a tree over several lines, indented.
    #[error("the specs cannot be satisfied together:\n{0}")]
    Unsolvable(String),
    /// The solver failed for a reason other than the specs conflicting:
    /// it was cancelled, returned operations it cannot install, or met two
    /// different records of the same package in the repodata.
    #[error("the solver failed for {specs} (not a conflict between the specs)")]
    Solver {
        /// The specs given, for the message.
        specs: String,
        /// What the solver reported.
        #[source]
        source: rattler_solve::SolveError,
    },
    /// A package that could not be downloaded or did not match its hash.
    #[error("cannot fetch {package} from {url}")]
    Fetch {
        /// `name-version-build`.
        package: String,
        /// Where from.
        url: String,
        /// Why.
        #[source]
        source: rattler_cache::package_cache::PackageCacheError,
    },
    /// A package whose server kept sending nothing.
    #[error("cannot fetch {package} from {url}: {}", super::condarc::stalled(*.after))]
    Stalled {
        /// `name-version-build`.
        package: String,
        /// Where from.
        url: String,
        /// The read timeout.
        after: std::time::Duration,
    },
    /// The authentication storage could not be read.
    #[error("cannot read channel credentials")]
    Credentials(#[source] rattler_networking::authentication_storage::AuthenticationStorageError),
    /// The async runtime could not start.
    #[error("cannot start the download runtime")]
    Runtime(#[source] std::io::Error),
}

/// The HTTP client rattler uses, with channel credentials from
/// `~/.rattler/credentials.json`, `RATTLER_AUTH_FILE` and `.netrc`.
/// A server that sends nothing for `remote_read_timeout_secs` fails the
/// read, which the retries treat as a broken transfer.
fn client() -> Result<reqwest_middleware::ClientWithMiddleware, SolveError> {
    let auth =
        AuthenticationMiddleware::from_env_and_defaults().map_err(SolveError::Credentials)?;
    Ok(reqwest_middleware::ClientBuilder::new(
        reqwest::Client::builder()
            .user_agent(concat!("conda-docker/", env!("CARGO_PKG_VERSION")))
            .read_timeout(CondaRc::load().read_timeout())
            .build()
            .unwrap_or_default(),
    )
    .with(super::retry::Retry)
    .with_arc(Arc::new(auth))
    .build())
}

fn runtime() -> Result<tokio::runtime::Runtime, SolveError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(SolveError::Runtime)
}

/// The channels to search: `-c` ones, then `.condarc`'s (unless
/// overridden), else conda-forge; names resolved against the channel alias
/// or `custom_channels`. `--override-channels` with no channel at all is
/// an error, not a silent fall back to conda-forge.
pub fn channels(
    given: &[String],
    override_channels: bool,
    rc: &CondaRc,
) -> Result<Vec<Channel>, SolveError> {
    let mut names: Vec<String> = given.to_vec();
    if !override_channels {
        names.extend(rc.channels.iter().filter(|c| *c != "defaults").cloned());
    }
    if names.is_empty() && override_channels {
        return Err(SolveError::NoChannels);
    }
    if names.is_empty() {
        names.push(DEFAULT_CHANNEL.into());
    }
    let root = std::env::current_dir().unwrap_or_default();
    let mut config = ChannelConfig::default_with_root_dir(root);
    if let Some(alias) = rc.channel_alias.as_deref().and_then(|a| Url::parse(a).ok()) {
        config.channel_alias = alias;
    }
    let mut channels: Vec<Channel> = Vec::new();
    for name in names {
        let channel = match rc.custom_channels.get(&name) {
            Some(base) => Url::parse(&format!("{}/{name}/", base.trim_end_matches('/')))
                .map(Channel::from_url)
                .map_err(|_| SolveError::BadChannel(name.clone()))?,
            None => Channel::from_str(&name, &config)
                .map_err(|_| SolveError::BadChannel(name.clone()))?,
        };
        if !channels.iter().any(|c| c.base_url == channel.base_url) {
            channels.push(channel);
        }
    }
    Ok(channels)
}

/// Solves `request` into the records of an environment, sorted by name.
pub fn solve(request: &SolveRequest) -> Result<Vec<RepoDataRecord>, SolveError> {
    let specs = parse_specs(&request.specs)?;
    let channels = channels(
        &request.channels,
        request.override_channels,
        &CondaRc::load(),
    )?;
    let channel_list = channels
        .iter()
        .map(|c| c.base_url.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let virtual_packages = Overrides::from_config(&request.virtual_packages)?
        .packages(request.platform, request.glibc.as_deref())?;
    tracing::info!(
        "solving {} for {} in {channel_list}",
        request.specs.join(" "),
        request.platform
    );
    let repodata = query_repodata(channels, request.platform, &specs, &channel_list)?;
    check_known(&specs, &repodata, request.platform, channel_list)?;
    let mut records = run_solver(specs, virtual_packages, &repodata)?;
    records.sort_by(|a, b| {
        a.package_record
            .name
            .as_normalized()
            .cmp(b.package_record.name.as_normalized())
    });
    Ok(records)
}

/// The specs as rattler reads them, leniently as conda does.
fn parse_specs(specs: &[String]) -> Result<Vec<MatchSpec>, SolveError> {
    specs
        .iter()
        .map(|s| {
            MatchSpec::from_str(s, ParseStrictness::Lenient).map_err(|source| SolveError::BadSpec {
                spec: s.clone(),
                source,
            })
        })
        .collect()
}

/// The repodata of `channels` for `platform` and noarch: the packages
/// `specs` name and, recursively, their dependencies. `channel_list` names
/// the channels in the error.
fn query_repodata(
    channels: Vec<Channel>,
    platform: Subdir,
    specs: &[MatchSpec],
    channel_list: &str,
) -> Result<Vec<RepoData>, SolveError> {
    let client = client()?;
    let repodata_cache = crate::dirs::rattler_cache_dir()
        .map(|d| d.join(rattler_cache::REPODATA_CACHE_DIR))
        .unwrap_or_else(|| crate::dirs::cache_dir().join("repodata"));
    let gateway = Gateway::builder()
        .with_cache_dir(repodata_cache)
        .with_client(LazyClient::from(client))
        .finish();
    let query = gateway
        .query(
            channels,
            [platform, Subdir::NoArch],
            // Every version of each named package: the solver applies the
            // constraints, and a package that is there in other versions
            // is not reported unknown.
            specs.iter().map(|s| match s.name.as_exact() {
                Some(name) => MatchSpec::from(name.clone()),
                None => s.clone(),
            }),
        )
        .recursive(true)
        .execute();
    let queried = runtime()?.block_on(async {
        tokio::select! {
            queried = query => Ok(queried),
            stop = crate::interrupt::signalled() => Err(SolveError::Interrupted(stop)),
        }
    })?;
    Ok(queried
        .map_err(|source| SolveError::Repodata {
            channels: channel_list.to_owned(),
            source,
        })?
        .repodata)
}

/// Refuses a spec naming a package no channel has at all, which the
/// solver would only report as unsatisfiable.
fn check_known(
    specs: &[MatchSpec],
    repodata: &[RepoData],
    platform: Subdir,
    channel_list: String,
) -> Result<(), SolveError> {
    for spec in specs {
        if let Some(name) = spec.name.as_exact()
            && !repodata
                .iter()
                .any(|r| r.iter().any(|rec| rec.package_record.name == *name))
        {
            return Err(SolveError::UnknownPackage {
                name: name.as_source().to_owned(),
                platform: platform.to_string(),
                channels: channel_list,
            });
        }
    }
    Ok(())
}

/// The records resolvo picks; its explanation of a failure is kept, one
/// indented line per line.
fn run_solver(
    specs: Vec<MatchSpec>,
    virtual_packages: Vec<GenericVirtualPackage>,
    repodata: &[RepoData],
) -> Result<Vec<RepoDataRecord>, SolveError> {
    let given = specs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ");
    let task = SolverTask {
        virtual_packages,
        specs,
        ..SolverTask::from_iter(repodata)
    };
    Ok(resolvo::Solver
        .solve(task)
        .map_err(|e| match e {
            rattler_solve::SolveError::Unsolvable(reasons) => SolveError::Unsolvable(
                reasons
                    .iter()
                    .flat_map(|reason| reason.trim_end().lines())
                    .map(|line| format!("  {line}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            source => SolveError::Solver {
                specs: given,
                source,
            },
        })?
        .records)
}

/// Downloads `records` into the package cache at `pkgs_dir` (rattler's,
/// shared with pixi), at most eight at a time, each checked against its
/// sha256 (or md5) before it is kept. `done` hears of each one. Returns
/// each package's extracted folder, in the order of `records`. The caller
/// holds `pkgs_dir`'s [`RattlerCacheLock`](super::cache::RattlerCacheLock)
/// exclusively, as rattler's installer does: rattler_cache replaces an
/// entry assuming nobody else is writing it. A signal stops the fetch.
pub fn fetch(
    records: &[RepoDataRecord],
    pkgs_dir: PathBuf,
    done: &(dyn Fn(&RepoDataRecord) + Sync),
) -> Result<Vec<PathBuf>, SolveError> {
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let client = LazyClient::from(client()?);
    let cache = PackageCache::new(pkgs_dir);
    runtime()?.block_on(async {
        tokio::select! {
            fetched = fetch_all(records, cache, client, done) => fetched,
            stop = crate::interrupt::signalled() => Err(SolveError::Interrupted(stop)),
        }
    })
}

/// [`fetch`]'s work, on its runtime. Dropped when it loses the race to a
/// signal: its tasks are aborted with the `JoinSet`, and rattler removes
/// their temp folders as they drop.
async fn fetch_all(
    records: &[RepoDataRecord],
    cache: PackageCache,
    client: LazyClient,
    done: &(dyn Fn(&RepoDataRecord) + Sync),
) -> Result<Vec<PathBuf>, SolveError> {
    let limit = Arc::new(tokio::sync::Semaphore::new(8));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, record) in records.iter().enumerate() {
        let cache = cache.clone();
        let client = client.clone();
        let limit = limit.clone();
        let package = record.package_record.clone();
        let url = record.url.clone();
        tasks.spawn(async move {
            // reqwest cannot read file:// URLs: local channels are read
            // from disk, checked against the record all the same.
            let result = match url.to_file_path() {
                Ok(path) if url.scheme() == "file" => {
                    cache
                        .get_or_fetch_from_path(&path, Some(&package), None)
                        .await
                }
                // A body that breaks off is retried inside rattler; one
                // that arrives whole with wrong bytes (removed, never kept)
                // gets one more try here.
                _ => {
                    let fetch = || {
                        cache.get_or_fetch_from_url_with_retry(
                            &package,
                            url.clone(),
                            client.clone(),
                            default_retry_policy(),
                            None,
                            Some(limit.clone()),
                        )
                    };
                    match fetch().await {
                        Err(first) => {
                            tracing::info!("{url}: {first}; trying again");
                            fetch().await
                        }
                        fetched => fetched,
                    }
                }
            };
            (i, result)
        });
    }
    let mut folders = vec![PathBuf::new(); records.len()];
    while let Some(joined) = tasks.join_next().await {
        let Ok((i, result)) = joined else { continue };
        let record = &records[i];
        let metadata = result.map_err(|source| match crate::interrupt::is_stall(&source) {
            true => SolveError::Stalled {
                package: super::cache::dist_name(record),
                url: record.url.to_string(),
                after: CondaRc::load().read_timeout(),
            },
            false => SolveError::Fetch {
                package: super::cache::dist_name(record),
                url: record.url.to_string(),
                source,
            },
        })?;
        folders[i] = metadata.path().to_owned();
        done(record);
    }
    Ok(folders)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_follow_condarc() {
        let mut rc = CondaRc::default();
        let names = |c: Vec<Channel>| c.iter().map(|c| c.base_url.to_string()).collect::<Vec<_>>();
        assert_eq!(
            names(channels(&[], false, &rc).unwrap()),
            ["https://conda.anaconda.org/conda-forge/"]
        );
        rc.channels = vec!["bioconda".into(), "defaults".into()];
        rc.channel_alias = Some("https://mirror.example/".into());
        rc.custom_channels
            .insert("internal".into(), "https://pkgs.example/conda".into());
        assert_eq!(
            names(channels(&["internal".into()], false, &rc).unwrap()),
            [
                "https://pkgs.example/conda/internal/",
                "https://mirror.example/bioconda/"
            ]
        );
        assert_eq!(
            names(channels(&["x".into()], true, &rc).unwrap()),
            ["https://mirror.example/x/"]
        );
    }
}
