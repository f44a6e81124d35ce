//! Package URLs (purl spec): `pkg:conda/...` with the conda type's
//! `build`, `channel`, `subdir` and `type` qualifiers, `pkg:pypi/...` and
//! `pkg:oci/...` for the base image. Qualifiers are written sorted by key,
//! as the spec's canonical form asks.

/// The characters a purl component keeps as they are; every other byte is
/// percent-encoded.
fn unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-' | b'_' | b'~')
}

/// `text` percent-encoded for a purl name, version or qualifier value.
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if unreserved(byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `pkg:TYPE/NAME@VERSION?k=v&...`, the qualifiers sorted by key and those
/// with an empty value left out.
pub(crate) fn purl(kind: &str, name: &str, version: &str, qualifiers: &[(&str, &str)]) -> String {
    let mut text = format!("pkg:{kind}/{}@{}", encode(name), encode(version));
    let mut pairs: Vec<_> = qualifiers.iter().filter(|(_, v)| !v.is_empty()).collect();
    pairs.sort_by_key(|(k, _)| *k);
    for (i, (key, value)) in pairs.into_iter().enumerate() {
        text.push(if i == 0 { '?' } else { '&' });
        text.push_str(&format!("{key}={}", encode(value)));
    }
    text
}

/// A PyPI name as the purl spec's pypi type writes it: lowercase, `_` as
/// `-` (PEP 503's normal form).
pub(crate) fn pypi_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        match c {
            '_' | '.' | '-' if out.ends_with('-') => {}
            '_' | '.' | '-' => out.push('-'),
            c => out.push(c.to_ascii_lowercase()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualifiers_are_sorted_and_encoded() {
        assert_eq!(
            purl(
                "conda",
                "absl-py",
                "0.4.1",
                &[
                    ("type", "tar.bz2"),
                    ("subdir", "linux-64"),
                    ("channel", "main"),
                    ("build", "py36h06a4308_0"),
                ],
            ),
            "pkg:conda/absl-py@0.4.1?build=py36h06a4308_0&channel=main&subdir=linux-64&type=tar.bz2"
        );
        assert_eq!(
            purl(
                "conda",
                "x",
                "1!2.0+local",
                &[("channel", "https://h/c"), ("build", "")]
            ),
            "pkg:conda/x@1%212.0%2Blocal?channel=https%3A%2F%2Fh%2Fc"
        );
        assert_eq!(pypi_name("Typing_Extensions"), "typing-extensions");
        assert_eq!(pypi_name("zope..interface"), "zope-interface");
    }
}
