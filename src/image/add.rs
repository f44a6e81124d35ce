//! Where [`Image::add_layer_path`](super::Image::add_layer_path) puts a
//! host file or tree, by Docker's `COPY` rules, in an image described by a
//! [`RootFs`]:
//!
//! - a destination ending in `/`, or one that is a directory of the image,
//!   receives a file inside it (`DEST/NAME`); otherwise the destination is
//!   the file's path;
//! - a directory's *contents* go into the destination (made a directory,
//!   0755, when missing; an existing one keeps its mode);
//! - symlinks of the image on the way are followed inside the image, and
//!   entries are written at the path they lead to, so no symlink of the
//!   image (`/bin -> usr/bin`) is ever replaced by a directory;
//! - a directory of the image never becomes a file, nor a file a
//!   directory: that is an error naming the path and what is there.
//!
//! A top-level source that is a symlink is followed (as `COPY` does);
//! symlinks inside a tree stay symlinks.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::rootfs::{Node, ResolveError, RootFs};
use crate::layer::tar::{LayerTar, PathFilter, archive_path};

/// What the layer will hold, in order, at paths resolved in the image.
#[derive(Debug)]
pub(crate) struct Plan {
    entries: Vec<Planned>,
}

#[derive(Debug)]
struct Planned {
    /// Where it goes (relative, resolved: no symlink of the image on the
    /// way).
    arc: String,
    what: What,
}

#[derive(Debug)]
enum What {
    /// A directory with this mode.
    Dir(u32),
    /// A regular file of the host (a hardlink if it shares an inode with
    /// one written before).
    File(PathBuf, fs::Metadata),
    /// A symlink, kept as one.
    Symlink(PathBuf),
}

/// Why a path cannot be added.
#[derive(Debug)]
pub(crate) enum PlanError {
    /// It does not fit the image (one line naming the path and what is
    /// there).
    Conflict(String),
    /// The host's tree could not be read, or the destination is not a
    /// path inside the image.
    Io(io::Error),
}

impl From<io::Error> for PlanError {
    fn from(error: io::Error) -> Self {
        PlanError::Io(error)
    }
}

impl From<ResolveError> for PlanError {
    fn from(error: ResolveError) -> Self {
        PlanError::Conflict(error.to_string())
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

/// `/bin/tool`, or `/bin/tool (/usr/bin/tool through the image's
/// symlinks)` when they differ.
fn shown(literal: &str, resolved: &str) -> String {
    if literal == resolved {
        format!("/{literal}")
    } else {
        format!("/{literal} (/{resolved} through the image's symlinks)")
    }
}

fn utf8_name(path: &Path, name: &std::ffi::OsStr) -> io::Result<String> {
    name.to_str().map(str::to_owned).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: file name is not UTF-8", path.display()),
        )
    })
}

impl Plan {
    /// Plans adding `source` (a host path) at `dest` (a path inside the
    /// image, as the user wrote it: a trailing `/` means "into this
    /// directory"). `filter` sees paths relative to a source directory.
    pub(crate) fn new(
        rootfs: &RootFs,
        source: &Path,
        dest: &str,
        filter: Option<PathFilter>,
    ) -> Result<Self, PlanError> {
        let literal = archive_path(dest)?;
        let into_dir = dest.ends_with('/') || dest.ends_with("/.") || literal.is_empty();
        let meta = fs::metadata(source)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", source.display())))?;
        let resolved = rootfs.resolve(&literal, true)?;
        let mut plan = Plan {
            entries: Vec::new(),
        };
        if meta.is_dir() {
            let mode = match rootfs.get(&resolved) {
                Some(Node::Dir(mode)) => *mode,
                None => 0o755,
                Some(node) => {
                    return Err(PlanError::Conflict(format!(
                        "{} is {} in the image; a directory cannot replace it",
                        shown(&literal, &resolved),
                        node.describe()
                    )));
                }
            };
            plan.push(&resolved, What::Dir(mode));
            plan.walk(rootfs, source, &resolved, &literal, Path::new(""), filter)?;
            return Ok(plan);
        }
        let Some(name) = source.file_name() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} names no file", source.display()),
            )
            .into());
        };
        let name = utf8_name(source, name)?;
        let (literal, resolved) = match rootfs.get(&resolved) {
            Some(Node::Dir(_)) => (join(&literal, &name), join(&resolved, &name)),
            None if into_dir => (join(&literal, &name), join(&resolved, &name)),
            Some(node) if into_dir => {
                return Err(PlanError::Conflict(format!(
                    "{} is {} in the image; {name} cannot go inside it",
                    shown(&literal, &resolved),
                    node.describe()
                )));
            }
            _ => (literal, resolved),
        };
        if let Some(Node::Dir(_)) = rootfs.get(&resolved) {
            return Err(PlanError::Conflict(format!(
                "{} is a directory in the image; a file cannot replace it",
                shown(&literal, &resolved)
            )));
        }
        plan.push(&resolved, What::File(source.to_owned(), meta));
        Ok(plan)
    }

    fn push(&mut self, arc: &str, what: What) {
        self.entries.push(Planned {
            arc: arc.to_owned(),
            what,
        });
    }

    /// Plans the contents of `dir` (host) into `arc_dir` (resolved), which
    /// the user knows as `literal_dir`, in sorted order.
    fn walk(
        &mut self,
        rootfs: &RootFs,
        dir: &Path,
        arc_dir: &str,
        literal_dir: &str,
        rel: &Path,
        filter: Option<PathFilter>,
    ) -> Result<(), PlanError> {
        for name in crate::layer::tar::sorted_names(dir)? {
            let rel_child = rel.join(&name);
            if filter.is_some_and(|keep| !keep(&rel_child)) {
                continue;
            }
            let path = dir.join(&name);
            let name = utf8_name(&path, &name)?;
            let meta = fs::symlink_metadata(&path)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            let literal = join(literal_dir, &name);
            let at = join(arc_dir, &name);
            let kind = meta.file_type();
            if kind.is_dir() {
                let new_mode = meta.mode() & 0o7777;
                let at = match rootfs.get(&at) {
                    Some(Node::Symlink(_)) => rootfs.resolve(&at, true)?,
                    _ => at,
                };
                let mode = match rootfs.get(&at) {
                    Some(Node::Dir(mode)) => *mode,
                    None => new_mode,
                    Some(node) => {
                        return Err(PlanError::Conflict(format!(
                            "{} is {} in the image; a directory cannot replace it",
                            shown(&literal, &at),
                            node.describe()
                        )));
                    }
                };
                self.push(&at, What::Dir(mode));
                self.walk(rootfs, &path, &at, &literal, &rel_child, filter)?;
                continue;
            }
            let (what, noun) = if kind.is_symlink() {
                (What::Symlink(fs::read_link(&path)?), "a symlink")
            } else if kind.is_file() {
                (What::File(path.clone(), meta), "a file")
            } else {
                tracing::warn!(
                    "leaving out {}: not a file, directory or symlink",
                    path.display()
                );
                continue;
            };
            if let Some(Node::Dir(_)) = rootfs.get(&at) {
                return Err(PlanError::Conflict(format!(
                    "{} is a directory in the image; {noun} cannot replace it",
                    shown(&literal, &at)
                )));
            }
            self.push(&at, what);
        }
        Ok(())
    }

    /// Writes the planned entries. Directories the image already has are
    /// written with the image's mode, so that adding below `/tmp` keeps
    /// its sticky bit; missing parents get 0755.
    pub(crate) fn write<W: Write>(&self, rootfs: &RootFs, tar: &mut LayerTar<W>) -> io::Result<()> {
        for entry in &self.entries {
            let mut end = 0;
            while let Some(slash) = entry.arc[end..].find('/') {
                let ancestor = &entry.arc[..end + slash];
                if let Some(Node::Dir(mode)) = rootfs.get(ancestor) {
                    tar.add_directory(ancestor, *mode)?;
                }
                end += slash + 1;
            }
            match &entry.what {
                What::Dir(mode) => tar.add_directory(&entry.arc, *mode)?,
                What::File(path, meta) => tar.add_host_entry(path, meta, &entry.arc)?,
                What::Symlink(target) => tar.add_symlink(&entry.arc, target)?,
            }
        }
        Ok(())
    }

    /// Records what the layer adds, so that the next path added sees it.
    pub(crate) fn apply(&self, rootfs: &mut RootFs) {
        for entry in &self.entries {
            let node = match &entry.what {
                What::Dir(mode) => Node::Dir(*mode),
                What::File(..) => Node::File,
                What::Symlink(target) => Node::Symlink(target.to_string_lossy().into_owned()),
            };
            rootfs.insert(&entry.arc, node);
        }
    }

    /// The paths planned, in order (for tests).
    #[cfg(test)]
    fn paths(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.arc.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> RootFs {
        let mut rootfs = RootFs::default();
        for (path, node) in [
            ("srv", Node::Dir(0o755)),
            ("tmp", Node::Dir(0o1777)),
            ("usr/bin/ls", Node::File),
            ("bin", Node::Symlink("usr/bin".into())),
            ("etc/hostname", Node::File),
            ("etc/link", Node::Symlink("hostname".into())),
            ("loop", Node::Symlink("/loop".into())),
        ] {
            rootfs.insert(path, node);
        }
        rootfs
    }

    fn conflict(result: Result<Plan, PlanError>) -> String {
        match result {
            Err(PlanError::Conflict(line)) => line,
            other => panic!("expected a conflict, got {other:?}"),
        }
    }

    #[test]
    fn files_follow_copy_rules() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("main.py");
        fs::write(&file, "print()\n").unwrap();
        let rootfs = image();
        let plan = |dest: &str| Plan::new(&rootfs, &file, dest, None);
        assert_eq!(plan("/srv/").unwrap().paths(), ["srv/main.py"]);
        assert_eq!(plan("/srv").unwrap().paths(), ["srv/main.py"]);
        assert_eq!(plan("/usr/bin").unwrap().paths(), ["usr/bin/main.py"]);
        assert_eq!(plan("/bin/").unwrap().paths(), ["usr/bin/main.py"]);
        assert_eq!(plan("/bin").unwrap().paths(), ["usr/bin/main.py"]);
        assert_eq!(plan("/bin/tool").unwrap().paths(), ["usr/bin/tool"]);
        assert_eq!(plan("/app/run.py").unwrap().paths(), ["app/run.py"]);
        assert_eq!(plan("/app/").unwrap().paths(), ["app/main.py"]);
        assert_eq!(plan("/").unwrap().paths(), ["main.py"]);
        assert_eq!(plan("/etc/hostname").unwrap().paths(), ["etc/hostname"]);
        assert_eq!(plan("/etc/link").unwrap().paths(), ["etc/hostname"]);
        assert_eq!(
            conflict(plan("/etc/hostname/")),
            "/etc/hostname is a file in the image; main.py cannot go inside it"
        );
        assert_eq!(
            conflict(plan("/etc/hostname/x")),
            "/etc/hostname is a file in the image, not a directory"
        );
        assert!(conflict(plan("/loop/x")).contains("too many levels of symbolic links"));
        let mut with_dir = image();
        with_dir.insert("srv/main.py/keep", Node::File);
        assert_eq!(
            conflict(Plan::new(&with_dir, &file, "/srv/", None)),
            "/srv/main.py is a directory in the image; a file cannot replace it"
        );
    }

    #[test]
    fn directories_copy_their_contents_at_resolved_paths() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("app");
        fs::create_dir_all(src.join("bin")).unwrap();
        fs::create_dir_all(src.join("tmp")).unwrap();
        fs::write(src.join("bin/tool"), "#!/bin/sh\n").unwrap();
        fs::write(src.join("tmp/scratch"), "").unwrap();
        fs::write(src.join("main.py"), "").unwrap();
        std::os::unix::fs::symlink("main.py", src.join("link")).unwrap();
        let rootfs = image();
        let plan = Plan::new(&rootfs, &src, "/", None).unwrap();
        assert_eq!(
            plan.paths(),
            [
                "",
                "usr/bin",
                "usr/bin/tool",
                "link",
                "main.py",
                "tmp",
                "tmp/scratch"
            ]
        );
        let mut tar = LayerTar::new(Vec::new(), 0);
        plan.write(&rootfs, &mut tar).unwrap();
        let bytes = tar.finish().unwrap();
        let entries: Vec<(String, u32)> = ::tar::Archive::new(&bytes[..])
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().mode().unwrap(),
                )
            })
            .collect();
        assert!(entries.contains(&("tmp/".into(), 0o1777)), "{entries:?}");
        assert!(
            !entries.iter().any(|(p, _)| p == "bin/" || p == "bin"),
            "the /bin symlink is not replaced: {entries:?}"
        );
        let mut after = rootfs.clone();
        plan.apply(&mut after);
        assert_eq!(after.get("bin"), Some(&Node::Symlink("usr/bin".into())));
        assert_eq!(after.get("usr/bin/tool"), Some(&Node::File));

        let plan = Plan::new(&rootfs, &src, "/opt/app", None).unwrap();
        assert_eq!(plan.paths()[0], "opt/app");
        assert_eq!(
            conflict(Plan::new(&rootfs, &src, "/etc/hostname", None)),
            "/etc/hostname is a file in the image; a directory cannot replace it"
        );
        assert_eq!(
            conflict(Plan::new(&rootfs, &src, "/etc/link", None)),
            "/etc/link (/etc/hostname through the image's symlinks) is a file in the image; a directory cannot replace it"
        );
        let mut clash = image();
        clash.insert("x/main.py/inner", Node::File);
        clash.insert("x/tmp", Node::File);
        assert_eq!(
            conflict(Plan::new(&clash, &src, "/x", None)),
            "/x/main.py is a directory in the image; a file cannot replace it"
        );
        let keep = |p: &Path| p != Path::new("main.py");
        assert_eq!(
            conflict(Plan::new(&clash, &src, "/x", Some(&keep))),
            "/x/tmp is a file in the image; a directory cannot replace it"
        );
    }
}
