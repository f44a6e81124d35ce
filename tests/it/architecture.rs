//! The modules depend one way (docs/architecture.md): cli → build →
//! {conda, registry, image}; registry → image → layer → the leaves, which
//! import none of those. conda never sees an image, and the image model
//! never reaches the network. This test reads `src/` and fails on any
//! other `crate::` edge, as go-containerregistry's depcheck does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The modules that depend on nothing above them.
const LEAVES: &[&str] = &[
    "atomic",
    "blob",
    "digest",
    "dirs",
    "http",
    "interrupt",
    "invocation",
    "parallel",
    "platform",
    "reference",
];

/// What each module may use besides the leaves (and the crate root).
const ALLOWED: &[(&str, &[&str])] = &[
    (
        "cli",
        &[
            "build", "contents", "conda", "registry", "image", "layer", "sbom",
        ],
    ),
    ("contents", &["conda", "image", "layer"]),
    (
        "build",
        &["conda", "pypi", "registry", "image", "layer", "sbom"],
    ),
    ("registry", &["image", "layer"]),
    ("image", &["layer"]),
    ("layer", &[]),
    ("conda", &[]),
    ("pypi", &["conda"]),
    ("sbom", &["conda"]),
];

/// The top-level module a file of `src/` belongs to.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// The `crate::NAME` paths the non-test code of `text` uses.
fn uses(text: &str) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    code.match_indices("crate::")
        .map(|(at, _)| {
            code[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|name| !name.is_empty())
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn modules_depend_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules: BTreeSet<String> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| module_of(&src, &e.unwrap().path()))
        .filter(|m| m != "lib" && m != "main")
        .collect();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in files {
        let from = module_of(&src, &file);
        if from == "lib" || from == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for to in uses(&text) {
            if to == from || !modules.contains(&to) || LEAVES.contains(&to.as_str()) {
                continue;
            }
            let ok = match allowed.get(from.as_str()) {
                Some(list) => list.contains(&to.as_str()),
                // A leaf uses no module above the leaves.
                None => false,
            };
            if !ok {
                wrong.push(format!(
                    "{} ({from}) uses crate::{to}",
                    file.strip_prefix(&src).unwrap().display()
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "dependencies against the module rules of docs/architecture.md:\n{}",
        wrong.join("\n")
    );
    // Every module is either a leaf or has a rule.
    for module in &modules {
        assert!(
            LEAVES.contains(&module.as_str()) || allowed.contains_key(module.as_str()),
            "module {module} has no place in the rules"
        );
    }
}
