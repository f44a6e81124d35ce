//! What is in an image's file system, as its layers' tar headers say: each
//! path is a directory (with its mode), a file or a symlink (with its
//! target), after OCI whiteouts (`.wh.NAME`, `.wh..wh..opq`) are applied.
//!
//! Why: a layer added on top of an image must fit what is below it.
//! Docker's `COPY` puts a file *inside* a destination that is a directory
//! of the image, follows symlinks of the image (never of the host) to
//! find where things go, and never turns a directory into a file. And our
//! layer writer adds every parent directory as an entry (the determinism
//! rule), so a layer that writes below `/bin` when the image has
//! `/bin -> usr/bin` would replace that symlink with a directory in the
//! merged image. `add_layer_path` asks this index where its entries land.
//!
//! Built from headers only (no file data is kept), once per image and only
//! when a path is added; layers are decompressed in parallel. Bounded like
//! the glibc scan: layers this tool did not build (the base) may hold at
//! most 8 GiB of decompressed tar and 1,000,000 entries, and layers it
//! built (from the user's own files) 1,000,000 entries.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::ops::ControlFlow;

use super::ImageError;
use crate::blob::size_text;
use crate::layer::Layer;
use crate::layer::headers::{Budget, EntryHeader, WalkError, walk};
use crate::parallel::{cores, in_parallel};

/// The most decompressed tar read from layers of the base (not built by
/// this tool): as much as the glibc scan allows, 8 GiB.
const MAX_FOREIGN_BYTES: u64 = 8 << 30;

/// The most entries read from the base's layers, and again from the
/// layers built here: a distribution has tens of thousands of files, a
/// large conda environment a few hundred thousand.
const MAX_ENTRIES: u64 = 1_000_000;

/// How many symlinks one lookup follows before it is a loop (Linux's
/// `MAXSYMLINKS`, 40).
const MAX_SYMLINKS: usize = 40;

/// What is at a path of the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Node {
    /// A directory, with its permission bits.
    Dir(u32),
    /// A regular file, hardlink, device or fifo: anything that is not a
    /// directory or a symlink.
    File,
    /// A symlink, with its target as stored.
    Symlink(String),
}

impl Node {
    /// `a directory`, `a file`, `a symlink to X`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Node::Dir(_) => "a directory".into(),
            Node::File => "a file".into(),
            Node::Symlink(target) => format!("a symlink to {target}"),
        }
    }
}

/// Why a path cannot be looked up in the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ResolveError {
    /// More than [`MAX_SYMLINKS`] symlinks were followed: a loop.
    Loop(String),
    /// A component that must be a directory is a file (the path, as
    /// resolved so far).
    NotADirectory(String),
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::Loop(path) => write!(
                f,
                "/{path}: too many levels of symbolic links in the image (a loop)"
            ),
            ResolveError::NotADirectory(path) => {
                write!(f, "/{path} is a file in the image, not a directory")
            }
        }
    }
}

/// The file system of an image: relative paths (`usr/bin`, no leading or
/// trailing `/`) to what is there. The root (`""`) is always a directory.
#[derive(Clone, Default)]
pub(crate) struct RootFs {
    nodes: BTreeMap<String, Node>,
}

impl fmt::Debug for RootFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RootFs({} paths)", self.nodes.len())
    }
}

/// A file of an image read back by [`Image::read_files`](super::Image::read_files).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PickedFile {
    /// Its path, relative to the root (`opt/conda/conda-meta/x.json`).
    pub path: String,
    /// The index of the layer it comes from, bottom first.
    pub layer: usize,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// Chooses the files to read by their path (relative to the root).
pub(crate) type PathPick<'a> = &'a (dyn Fn(&str) -> bool + Sync);

/// Picked files by path: the index of the layer that last wrote each, and
/// its bytes (`None` where that entry was not a regular file).
type Picked = BTreeMap<String, (usize, Option<Vec<u8>>)>;

/// The bytes of a picked entry: `None` for one that is not a regular file
/// (a hardlink, a device), which hides a lower layer's file at the path
/// without giving bytes of its own.
fn read_picked(
    entry: &EntryHeader,
    data: &mut dyn Read,
    path: &str,
    max_file: u64,
) -> std::io::Result<Option<Vec<u8>>> {
    if !entry.kind.is_file() {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    data.take(max_file + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_file {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "/{path} is over the {} this tool reads",
                size_text(max_file)
            ),
        ));
    }
    Ok(Some(bytes))
}

/// Files a layer is known to hold, path (relative to the root) and bytes,
/// so it need not be read.
pub type KnownFiles = Vec<(String, Vec<u8>)>;

/// The changes and picked files of a layer holding the regular files
/// `known` (their parents become directories as they are put).
fn known_changes(known: &KnownFiles, pick: Option<PathPick>) -> (Vec<Change>, Vec<PickedEntry>) {
    let changes = known
        .iter()
        .map(|(path, _)| Change::Put(path.clone(), Node::File))
        .collect();
    let picked = known
        .iter()
        .filter(|(path, _)| pick.is_some_and(|pick| pick(path)))
        .map(|(path, bytes)| (path.clone(), Some(bytes.clone())))
        .collect();
    (changes, picked)
}

/// A picked path of one layer and its bytes (see [`Picked`]).
type PickedEntry = (String, Option<Vec<u8>>);

/// One entry of a layer, as it changes the file system.
enum Change {
    Put(String, Node),
    /// `.wh.NAME`: the path is removed (with what is below it).
    Remove(String),
    /// `.wh..wh..opq`: what lower layers have below the directory is hidden.
    Opaque(String),
}

/// `./a//b/` → `["a", "b"]`; `None` for a path with `..` (engines refuse
/// those; it cannot be in the merged file system).
fn components(path: &str) -> Option<Vec<&str>> {
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            part => parts.push(part),
        }
    }
    Some(parts)
}

fn change(entry: &EntryHeader) -> Option<Change> {
    let text = String::from_utf8_lossy(&entry.path);
    let parts = components(&text)?;
    let (name, dir) = parts.split_last()?;
    let dir = dir.join("/");
    let join = |name: &str| {
        if dir.is_empty() {
            name.to_owned()
        } else {
            format!("{dir}/{name}")
        }
    };
    if *name == ".wh..wh..opq" {
        return Some(Change::Opaque(dir));
    }
    if let Some(hidden) = name.strip_prefix(".wh.") {
        // `.wh..wh.plnk` and the like are aufs bookkeeping, not whiteouts.
        return (!hidden.starts_with(".wh.")).then(|| Change::Remove(join(hidden)));
    }
    let node = if entry.kind.is_dir() {
        Node::Dir(entry.mode & 0o7777)
    } else if entry.kind.is_symlink() {
        Node::Symlink(
            String::from_utf8_lossy(entry.link.as_deref().unwrap_or_default()).into_owned(),
        )
    } else if entry.kind.is_hard_link()
        || entry.kind.is_file()
        || entry.kind.is_contiguous()
        || entry.kind.is_character_special()
        || entry.kind.is_block_special()
        || entry.kind.is_fifo()
        || entry.kind == tar::EntryType::GNUSparse
    {
        Node::File
    } else {
        return None;
    };
    Some(Change::Put(join(name), node))
}

impl RootFs {
    /// The file system of `layers` (bottom first). Fails when a layer
    /// cannot be read, or is over the bounds (see the module doc).
    pub(crate) fn of(layers: &[Layer]) -> Result<Self, ImageError> {
        Self::bounded(layers, MAX_FOREIGN_BYTES, MAX_ENTRIES)
    }

    fn bounded(layers: &[Layer], max_bytes: u64, max_entries: u64) -> Result<Self, ImageError> {
        let walked = Self::walk_layers(
            layers,
            &[],
            (max_bytes, max_entries),
            "to place --add paths",
            None,
        )?;
        Ok(walked.0)
    }

    /// The regular files of `layers`' merged file system (bottom first,
    /// whiteouts applied) whose path `pick` chooses, read whole, each with
    /// the index of the layer it comes from. A picked file over `max_file`
    /// bytes is an error naming it; the layers are bounded as for
    /// [`RootFs::of`].
    /// A layer whose entry of `known` is `Some` is not read: it is taken to
    /// hold those regular files (path and bytes) and nothing else that
    /// changes the picked paths.
    pub(crate) fn pick_files(
        layers: &[Layer],
        known: &[Option<KnownFiles>],
        pick: PathPick,
        max_file: u64,
    ) -> Result<Vec<PickedFile>, ImageError> {
        let bounds = (MAX_FOREIGN_BYTES, MAX_ENTRIES);
        let (rootfs, files) = Self::walk_layers(
            layers,
            known,
            bounds,
            "to read its files",
            Some((pick, max_file)),
        )?;
        Ok(files
            .into_iter()
            .filter(|(path, _)| rootfs.get(path) == Some(&Node::File))
            .filter_map(|(path, (layer, bytes))| {
                Some(PickedFile {
                    path,
                    layer,
                    bytes: bytes?,
                })
            })
            .collect())
    }

    /// Walks `layers` at once within `(max_bytes, max_entries)` (for the
    /// layers not built here; ours are bounded in entries only) and applies
    /// them in order. The files `pick` chooses are read (at most its bytes
    /// each) and kept by path with the index of the last layer that wrote
    /// them; `why` says in errors what the walk was for. A layer with
    /// files in `known` (by index) is not read (see [`RootFs::pick_files`]).
    fn walk_layers(
        layers: &[Layer],
        known: &[Option<KnownFiles>],
        (max_bytes, max_entries): (u64, u64),
        why: &str,
        pick: Option<(PathPick, u64)>,
    ) -> Result<(Self, Picked), ImageError> {
        let foreign = Budget::new(max_bytes, max_entries);
        let own = Budget::new(u64::MAX, max_entries);
        let each: Vec<(&Layer, Option<&KnownFiles>)> = layers
            .iter()
            .enumerate()
            .map(|(i, layer)| (layer, known.get(i).and_then(Option::as_ref)))
            .collect();
        let walked = in_parallel(&each, cores(), |&(layer, known)| {
            if let Some(known) = known {
                return Ok(known_changes(known, pick.map(|(pick, _)| pick)));
            }
            let budget = if layer.diff_id_checked() {
                &own
            } else {
                &foreign
            };
            let (mut changes, mut picked) = (Vec::new(), Vec::new());
            walk(layer, budget, |entry, data| {
                let change = change(entry);
                if let (Some(Change::Put(path, _)), Some((pick, max_file))) = (&change, pick)
                    && pick(path)
                {
                    picked.push((path.clone(), read_picked(entry, data, path, max_file)?));
                }
                changes.extend(change);
                Ok(ControlFlow::Continue(()))
            })
            .map(|()| (changes, picked))
            .map_err(|e| walk_error(layer, e, why))
        });
        let mut rootfs = RootFs::default();
        let mut files = Picked::new();
        for (index, walked) in walked.into_iter().enumerate() {
            let (changes, picked) = walked?;
            rootfs.apply_layer(changes);
            for (path, bytes) in picked {
                files.insert(path, (index, bytes));
            }
        }
        Ok((rootfs, files))
    }

    /// Applies one layer: whiteouts first (they only hide what lower layers
    /// have), then its entries in order.
    fn apply_layer(&mut self, changes: Vec<Change>) {
        for change in &changes {
            match change {
                Change::Remove(path) => self.remove(path),
                Change::Opaque(dir) => self.remove_below(dir),
                Change::Put(..) => {}
            }
        }
        for change in changes {
            if let Change::Put(path, node) = change {
                self.insert(&path, node);
            }
        }
    }

    /// Removes `path` and everything below it.
    fn remove(&mut self, path: &str) {
        self.nodes.remove(path);
        self.remove_below(path);
    }

    /// Removes everything below `dir` (everything, for the root).
    fn remove_below(&mut self, dir: &str) {
        if dir.is_empty() {
            self.nodes.clear();
            return;
        }
        let prefix = format!("{dir}/");
        let below: Vec<String> = self
            .nodes
            .range(prefix.clone()..)
            .map(|(path, _)| path)
            .take_while(|path| path.starts_with(&prefix))
            .cloned()
            .collect();
        for path in below {
            self.nodes.remove(&path);
        }
    }

    /// Puts `node` at `path` as unpacking a layer on top would: missing
    /// parents become directories (as do parents that were not, since the
    /// layer's directory hides them in the merged file system), and
    /// whatever was at `path` is replaced, except that a directory over a
    /// directory only takes its mode.
    pub(crate) fn insert(&mut self, path: &str, node: Node) {
        if path.is_empty() {
            return;
        }
        let mut end = 0;
        while let Some(slash) = path[end..].find('/') {
            let ancestor = &path[..end + slash];
            if !matches!(self.nodes.get(ancestor), Some(Node::Dir(_))) {
                self.nodes.insert(ancestor.to_owned(), Node::Dir(0o755));
            }
            end += slash + 1;
        }
        if !matches!(node, Node::Dir(_)) {
            self.remove_below(path);
        }
        self.nodes.insert(path.to_owned(), node);
    }

    /// What is at `path` (resolved: no symlinks followed). The root is a
    /// directory.
    pub(crate) fn get(&self, path: &str) -> Option<&Node> {
        const ROOT: Node = Node::Dir(0o755);
        if path.is_empty() {
            return Some(&ROOT);
        }
        self.nodes.get(path)
    }

    /// Where `path` (relative to the root) leads inside the image: symlinks
    /// in its parents are followed, and in its last component too when
    /// `follow_last`. Absolute link targets start again at the image's
    /// root and `..` never climbs above it, as buildkit resolves a `COPY`
    /// destination (never through the host's file system). A path below
    /// something missing is taken as it is. Fails on a loop and on a
    /// parent that is a file.
    pub(crate) fn resolve(&self, path: &str, follow_last: bool) -> Result<String, ResolveError> {
        let mut pending: Vec<String> = path
            .split('/')
            .rev()
            .filter(|p| !p.is_empty() && *p != ".")
            .map(str::to_owned)
            .collect();
        let mut resolved: Vec<String> = Vec::new();
        let mut followed = 0;
        while let Some(part) = pending.pop() {
            if part == ".." {
                resolved.pop();
                continue;
            }
            let last = pending.is_empty();
            resolved.push(part);
            let here = resolved.join("/");
            match self.nodes.get(&here) {
                Some(Node::Symlink(target)) if !target.is_empty() && (!last || follow_last) => {
                    followed += 1;
                    if followed > MAX_SYMLINKS {
                        return Err(ResolveError::Loop(here));
                    }
                    resolved.pop();
                    if target.starts_with('/') {
                        resolved.clear();
                    }
                    pending.extend(
                        target
                            .split('/')
                            .rev()
                            .filter(|p| !p.is_empty() && *p != ".")
                            .map(str::to_owned),
                    );
                }
                Some(Node::File | Node::Symlink(_)) if !last => {
                    return Err(ResolveError::NotADirectory(here));
                }
                _ => {}
            }
        }
        Ok(resolved.join("/"))
    }

    /// How many paths the index holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }
}

/// A failed walk of `layer`, done `why` (`to place --add paths`).
fn walk_error(layer: &Layer, error: WalkError, why: &str) -> ImageError {
    // A pulled layer names its image; a local one the file it is read from.
    let input = layer
        .origin()
        .map_or_else(|| layer.blob().to_string(), ToString::to_string);
    let bounded = |what: String| ImageError::Bounded {
        input: input.clone(),
        reason: format!(
            "stopped listing its files ({why}) after {what}, a bound against decompression bombs"
        ),
    };
    match error {
        WalkError::Read { digest, source } => ImageError::LayerRead {
            input: input.clone(),
            digest,
            source,
        },
        WalkError::TooManyBytes(max) => {
            bounded(format!("{} of decompressed layer data", size_text(max)))
        }
        WalkError::TooManyEntries(max) => bounded(format!("{max} tar entries")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Image;

    fn fs(entries: &[(&str, Node)]) -> RootFs {
        let mut rootfs = RootFs::default();
        for (path, node) in entries {
            rootfs.insert(path, node.clone());
        }
        rootfs
    }

    fn debian() -> RootFs {
        fs(&[
            ("usr/bin/ls", Node::File),
            ("usr/lib/libc.so.6", Node::File),
            ("bin", Node::Symlink("usr/bin".into())),
            ("lib", Node::Symlink("/usr/lib".into())),
            ("etc/hostname", Node::File),
            ("etc/alt", Node::Symlink("../../../usr/./bin/".into())),
            ("srv", Node::Dir(0o755)),
            ("loop", Node::Symlink("loop2".into())),
            ("loop2", Node::Symlink("/loop".into())),
            ("self", Node::Symlink(".".into())),
            ("dangling", Node::Symlink("/nowhere/x".into())),
        ])
    }

    #[test]
    fn symlinks_resolve_inside_the_image() {
        let rootfs = debian();
        let resolve = |path: &str, follow: bool| rootfs.resolve(path, follow);
        assert_eq!(resolve("bin/tool", false).unwrap(), "usr/bin/tool");
        assert_eq!(resolve("bin", true).unwrap(), "usr/bin");
        assert_eq!(resolve("bin", false).unwrap(), "bin", "last link kept");
        assert_eq!(resolve("lib/x/y", false).unwrap(), "usr/lib/x/y");
        // `..` in a target cannot climb above the root.
        assert_eq!(resolve("etc/alt/x", false).unwrap(), "usr/bin/x");
        assert_eq!(resolve("self/self/srv", true).unwrap(), "srv");
        assert_eq!(resolve("dangling", true).unwrap(), "nowhere/x");
        assert_eq!(resolve("missing/a/b", true).unwrap(), "missing/a/b");
        assert_eq!(resolve("", true).unwrap(), "");
    }

    #[test]
    fn loops_and_files_as_parents_are_errors() {
        let rootfs = debian();
        let err = rootfs.resolve("loop/x", false).unwrap_err();
        assert!(matches!(err, ResolveError::Loop(_)), "{err:?}");
        assert!(
            err.to_string()
                .contains("too many levels of symbolic links")
        );
        let err = rootfs.resolve("loop", true).unwrap_err();
        assert!(matches!(err, ResolveError::Loop(_)), "{err:?}");
        assert_eq!(rootfs.resolve("loop", false).unwrap(), "loop");
        let err = rootfs.resolve("etc/hostname/x", false).unwrap_err();
        assert_eq!(err, ResolveError::NotADirectory("etc/hostname".into()));
        assert_eq!(
            err.to_string(),
            "/etc/hostname is a file in the image, not a directory"
        );
        // A link to itself, and one whose target grows with every turn.
        let rootfs = fs(&[
            ("me", Node::Symlink("me".into())),
            ("grow", Node::Symlink("grow/grow".into())),
        ]);
        assert!(matches!(
            rootfs.resolve("me", true),
            Err(ResolveError::Loop(_))
        ));
        assert!(matches!(
            rootfs.resolve("grow/x", true),
            Err(ResolveError::Loop(_))
        ));
    }

    #[test]
    fn layers_apply_in_order_with_whiteouts() {
        let mut image = Image::scratch().unwrap();
        image
            .build_layer(|tar| {
                tar.add_directory("srv", 0o1777)?;
                tar.add_file("srv/a", 0o644, 1, &b"a"[..])?;
                tar.add_file("opt/x/one", 0o644, 1, &b"1"[..])?;
                tar.add_file("opt/keep", 0o644, 1, &b"k"[..])?;
                tar.add_file("gone/deep", 0o644, 1, &b"g"[..])?;
                tar.add_symlink("bin", std::path::Path::new("usr/bin"))
            })
            .map(|layer| image.push_layer(layer, "one"))
            .unwrap();
        image
            .build_layer(|tar| {
                tar.add_file("opt/x/.wh..wh..opq", 0o644, 0, &b""[..])?;
                tar.add_file("opt/x/two", 0o644, 1, &b"2"[..])?;
                tar.add_file(".wh.gone", 0o644, 0, &b""[..])?;
                // An entry of the same layer as the whiteout stays.
                tar.add_file("gone/new", 0o644, 1, &b"n"[..])?;
                tar.add_file("srv", 0o644, 1, &b"f"[..])
            })
            .map(|layer| image.push_layer(layer, "two"))
            .unwrap();
        let rootfs = RootFs::of(image.layers()).unwrap();
        assert_eq!(rootfs.get("opt/x/one"), None, "opaque hides the lower");
        assert_eq!(rootfs.get("opt/x/two"), Some(&Node::File));
        assert_eq!(rootfs.get("opt/keep"), Some(&Node::File));
        assert_eq!(rootfs.get("gone/deep"), None);
        assert_eq!(rootfs.get("gone/new"), Some(&Node::File));
        assert_eq!(rootfs.get("srv"), Some(&Node::File));
        assert_eq!(rootfs.get("srv/a"), None, "a file replaced the directory");
        assert_eq!(rootfs.get("bin"), Some(&Node::Symlink("usr/bin".into())));
        assert_eq!(rootfs.get(""), Some(&Node::Dir(0o755)));
        assert_eq!(
            rootfs.len(),
            8,
            "opt opt/x opt/x/two opt/keep gone gone/new srv bin"
        );
    }

    #[test]
    fn known_layers_are_not_read_and_whiteouts_above_still_hide_them() {
        let mut image = Image::scratch().unwrap();
        image
            .add_layer_contents([("env/conda-meta/a.json", "lower a")])
            .unwrap();
        // Stands for a layer whose blob is gone: only `known` says what it holds.
        let blob = crate::blob::Blob::file("/nonexistent/layer");
        let own = image.layers()[0].clone().with_blob(blob);
        image.push_layer(own, "known");
        image
            .add_layer_contents([("env/conda-meta/.wh.b.json", "")])
            .unwrap();
        let known = vec![
            None,
            Some(vec![
                ("env/conda-meta/a.json".to_owned(), b"known a".to_vec()),
                ("env/conda-meta/b.json".to_owned(), b"known b".to_vec()),
            ]),
            None,
        ];
        let pick = |path: &str| path.ends_with(".json");
        let files = RootFs::pick_files(image.layers(), &known, &pick, 100).unwrap();
        let found: Vec<(&str, usize, &[u8])> = files
            .iter()
            .map(|f| (f.path.as_str(), f.layer, &f.bytes[..]))
            .collect();
        assert_eq!(found, [("env/conda-meta/a.json", 1, &b"known a"[..])]);
        let err = RootFs::pick_files(image.layers(), &[], &pick, 100).unwrap_err();
        assert!(matches!(err, ImageError::LayerRead { .. }), "{err:?}");
    }

    #[test]
    fn bounds_are_errors_naming_them() {
        let files: Vec<(String, Vec<u8>)> = (0..20)
            .map(|i| (format!("f{i:02}"), vec![b'x'; 1000]))
            .collect();
        let mut image = Image::scratch().unwrap();
        image.add_layer_contents(files).unwrap();
        // Layers built here only count against the entry bound.
        let err = RootFs::bounded(image.layers(), 5000, 10).unwrap_err();
        let line = crate::error_line(&err);
        assert!(line.contains("after 10 tar entries"), "{line}");
        RootFs::bounded(image.layers(), 5000, 1000).unwrap();
        // The same bytes as a base's layer count against both.
        let own = &image.layers()[0];
        let foreign = Layer::new(
            own.media_type().clone(),
            own.digest(),
            own.size(),
            own.diff_id(),
            own.blob().clone(),
        );
        let err = RootFs::bounded(&[foreign], 5000, 1000).unwrap_err();
        let line = crate::error_line(&err);
        // A local layer is named by the file it is read from.
        let expected = format!(
            "{}: stopped listing its files (to place --add paths) after 5000 bytes of decompressed layer data",
            own.blob()
        );
        assert!(line.starts_with(&expected), "{line}");
    }
}
