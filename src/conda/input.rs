//! Files a user names (environment.yml, lock files, explicit specs) and
//! records on disk, read within bounds.
//!
//! A lock file from a pull request is data, not a promise: its size is
//! capped before it is read, and YAML's flow nesting (`[[[[...`) is
//! refused before the parser sees it, since the YAML parser's time grows
//! with the square of that depth (33 s for 200 KB of brackets).

use std::io::Read;
use std::path::Path;

use super::CondaError;
use super::explicit::bad_line;

/// The largest environment file, lock file, explicit spec or package
/// record read: the lock files of large multi-platform projects are a
/// few MB.
pub const MAX_INPUT: u64 = 64 << 20;

/// The deepest `[`/`{` nesting accepted in a YAML file; lock files and
/// environment files nest two or three levels.
pub const MAX_FLOW_DEPTH: usize = 64;

/// Refuses `path` when it is larger than [`MAX_INPUT`].
pub fn check_size(path: &Path) -> Result<(), CondaError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.len() > MAX_INPUT => Err(too_big(path, meta.len())),
        _ => Ok(()),
    }
}

fn too_big(path: &Path, size: u64) -> CondaError {
    bad_line(
        path,
        1,
        format!(
            "is {size} bytes, over the {} MiB this tool reads",
            MAX_INPUT >> 20
        ),
    )
}

/// The text of `path`, refused past [`MAX_INPUT`] bytes (read at most one
/// byte past it, whatever the file claims).
pub fn read_text(path: &Path) -> Result<String, CondaError> {
    let io = |source| CondaError::Io {
        path: path.to_owned(),
        source,
    };
    let file = fs_err::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(MAX_INPUT + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_INPUT {
        return Err(too_big(path, bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8 text: {e}"),
        ))
    })
}

/// The text of the YAML file `path`, refused when too big or nested
/// deeper than [`MAX_FLOW_DEPTH`] brackets (counted outside quotes and
/// comments; a block scalar full of brackets may count too, which only
/// ever refuses, never lets through).
pub fn read_yaml(path: &Path) -> Result<String, CondaError> {
    let text = read_text(path)?;
    let mut depth = 0usize;
    let mut line = 1;
    let mut quote = None;
    let mut comment = false;
    let mut previous = '\n';
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\n' {
            line += 1;
            comment = false;
        }
        match (quote, c) {
            _ if comment => {}
            (Some('"'), '\\') => {
                chars.next();
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '#') if previous.is_whitespace() => comment = true,
            (None, '[' | '{') => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Err(bad_line(
                        path,
                        line,
                        format!(
                            "nested deeper than {MAX_FLOW_DEPTH} brackets; refusing to parse it"
                        ),
                    ));
                }
            }
            (None, ']' | '}') => depth = depth.saturating_sub(1),
            _ => {}
        }
        previous = c;
    }
    Ok(text)
}

/// Refuses a prefix whose `conda-meta/*.json` records include one larger
/// than [`MAX_INPUT`], before rattler reads them whole.
pub fn check_records(prefix: &Path) -> Result<(), CondaError> {
    let meta = prefix.join("conda-meta");
    let Ok(entries) = std::fs::read_dir(&meta) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "json") {
            check_size(&path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Result<String, CondaError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.yml");
        std::fs::write(&path, text).unwrap();
        read_yaml(&path)
    }

    #[test]
    fn deep_flow_nesting_is_refused_before_parsing() {
        let deep = format!("a: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        let err = yaml(&deep).unwrap_err().to_string();
        assert!(err.contains("x.yml:1: nested deeper than 64"), "{err}");
        // Brackets in quotes and comments do not count; real files pass.
        let quoted = format!(
            "a: '{}'\nb: \"{}\" # {}\nc: [[1], {{d: [2]}}]\n",
            "[".repeat(100),
            "\\\"[".repeat(100),
            "{".repeat(100)
        );
        assert!(yaml(&quoted).is_ok());
    }
}
