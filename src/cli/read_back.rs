//! `packages`, `lock` and `diff`: an image's conda environments read back
//! (see [`crate::contents`]).

use serde_json::json;

use super::{CliError, Command, counted, lock_cache_for};
use crate::contents::{self, Change, ContentsError, ImageEnvironment, ReadMode};
use crate::image::{Image, ImageSource};
use crate::layer::Layer;
use crate::registry::{self, OpenOptions};

/// Runs `packages`, `lock` or `diff`.
pub(super) fn run(command: Command) -> Result<(), CliError> {
    match command {
        Command::Packages {
            source,
            json,
            read,
            remote,
        } => packages(&source, json, read.mode(), &remote.into()),
        Command::Lock {
            source,
            output,
            prefix,
            format,
            read,
            remote,
        } => {
            let _lock = lock_cache_for(&source)?;
            let (_, envs) = read_image(&source, read.mode(), &remote.into())?;
            let env = contents::choose(&envs, prefix.as_deref(), &source.to_string())?;
            contents::write_lock(env, &output, format).map_err(ContentsError::from)?;
            eprintln!(
                "wrote {}: {} of {}",
                output.display(),
                counted(env.packages.len(), "package"),
                env.prefix
            );
            Ok(())
        }
        Command::Diff {
            first,
            second,
            json,
            read,
            remote,
        } => diff((&first, &second), json, read.mode(), &remote.into()),
        other => Err(CliError::Usage(format!(
            "{other:?} does not read an image back"
        ))),
    }
}

/// The image `source` names and its environments, each layer's records
/// read as `mode` says: from a registry, only the layers whose records
/// come from their files are pulled.
fn read_image(
    source: &ImageSource,
    mode: ReadMode,
    options: &OpenOptions,
) -> Result<(Image, Vec<ImageEnvironment>), CliError> {
    let wanted = |layer: &Layer| contents::needs_bytes(layer, mode);
    let image = registry::open_layers(source, options, &wanted)?;
    let envs = contents::environments(&image, mode)?;
    Ok((image, envs))
}

/// `packages`: each environment of the image, its packages as a table (or
/// JSON) with the layer each came in.
fn packages(
    source: &ImageSource,
    json: bool,
    mode: ReadMode,
    options: &OpenOptions,
) -> Result<(), CliError> {
    let _lock = lock_cache_for(source)?;
    let (image, envs) = read_image(source, mode, options)?;
    if envs.is_empty() {
        return Err(ContentsError::NoEnvironment {
            image: source.to_string(),
        }
        .into());
    }
    let layer = |i: usize| image.layers().get(i).map(|l| l.digest().to_string());
    if json {
        let value: Vec<_> = envs
            .iter()
            .map(|env| {
                let packages: Vec<_> = env
                    .packages
                    .iter()
                    .map(|p| {
                        let r = &p.record.repodata_record;
                        let pr = &r.package_record;
                        json!({
                            "name": p.name(),
                            "version": pr.version.to_string(),
                            "build": pr.build.to_string(),
                            "channel": r.channel,
                            "url": r.url.to_string(),
                            "sha256": pr.sha256.map(hex::encode),
                            "md5": pr.md5.map(hex::encode),
                            "layer": layer(p.layer),
                            "layer_index": p.layer,
                        })
                    })
                    .collect();
                json!({"prefix": env.prefix, "packages": packages})
            })
            .collect();
        println!("{:#}", json!(value));
        return Ok(());
    }
    for env in &envs {
        println!(
            "# {} ({})",
            env.prefix,
            counted(env.packages.len(), "package")
        );
        let rows: Vec<[String; 5]> = env
            .packages
            .iter()
            .map(|p| {
                let r = &p.record.repodata_record;
                [
                    p.name().to_owned(),
                    r.package_record.version.to_string(),
                    r.package_record.build.to_string(),
                    r.channel.clone().unwrap_or_default(),
                    format!("{} {}", p.layer, layer(p.layer).unwrap_or_default()),
                ]
            })
            .collect();
        print_table(&["NAME", "VERSION", "BUILD", "CHANNEL", "LAYER"], &rows);
    }
    Ok(())
}

/// Prints `rows` under `head`, each column as wide as its widest cell.
fn print_table<const N: usize>(head: &[&str; N], rows: &[[String; N]]) {
    let mut widths = head.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(head.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// `diff`: the package changes from `first` to `second`, and the layer
/// bytes they share.
fn diff(
    (first, second): (&ImageSource, &ImageSource),
    json: bool,
    mode: ReadMode,
    options: &OpenOptions,
) -> Result<(), CliError> {
    let _locks = (lock_cache_for(first)?, lock_cache_for(second)?);
    let (a, a_envs) = read_image(first, mode, options)?;
    let (b, b_envs) = read_image(second, mode, options)?;
    let diff = contents::diff(&a, &a_envs, &b, &b_envs);
    if json {
        println!("{:#}", json!(diff));
        return Ok(());
    }
    for change in &diff.changes {
        match change {
            Change::Added { prefix, dist } => println!("+ {prefix} {dist}"),
            Change::Removed { prefix, dist } => println!("- {prefix} {dist}"),
            Change::Changed { prefix, from, to } => println!("~ {prefix} {from} -> {to}"),
        }
    }
    println!(
        "{} changed; {} shared ({:.1} MB); {:.1} MB of layers only in {second}",
        counted(diff.changes.len(), "package"),
        counted(diff.shared_layers, "layer"),
        diff.shared_bytes as f64 / 1e6,
        diff.new_bytes as f64 / 1e6,
    );
    Ok(())
}
