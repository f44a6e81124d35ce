//! SPDX 2.3 JSON: one package for the image, one for its base, one per
//! conda package and wheel; `CONTAINS`, `DESCENDANT_OF` and `DEPENDS_ON`
//! relationships; license strings that are not SPDX expressions as
//! `LicenseRef-...` with their text in `hasExtractedLicensingInfos`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::inventory::{Ecosystem, Inventory, Package};
use super::{content_uuid, purl};

/// The SPDX document of `inventory`.
pub(super) fn document(inventory: &Inventory) -> Value {
    let mut licenses = Licenses::default();
    let mut packages = vec![json!({
        "SPDXID": "SPDXRef-Image",
        "name": inventory.name,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
    })];
    let mut relationships = vec![relationship(
        "SPDXRef-DOCUMENT",
        "DESCRIBES",
        "SPDXRef-Image",
    )];
    if let Some(base) = &inventory.base {
        let mut package = json!({
            "SPDXID": "SPDXRef-BaseImage",
            "name": base.reference.as_deref().unwrap_or("base image"),
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "primaryPackagePurpose": "CONTAINER",
        });
        if let Some(digest) = &base.digest {
            package["versionInfo"] = json!(digest);
            if let Some(purl) = base.reference.as_deref().and_then(|r| oci_purl(r, digest)) {
                package["externalRefs"] = json!([purl_ref(&purl)]);
            }
        }
        packages.push(package);
        relationships.push(relationship(
            "SPDXRef-Image",
            "DESCENDANT_OF",
            "SPDXRef-BaseImage",
        ));
    }
    let ids: BTreeMap<(Ecosystem, &str), String> = inventory
        .packages
        .iter()
        .map(|p| ((p.ecosystem, p.name.as_str()), spdx_id(p)))
        .collect();
    for package in &inventory.packages {
        let id = &ids[&(package.ecosystem, package.name.as_str())];
        packages.push(package_json(package, id, &mut licenses));
        relationships.push(relationship("SPDXRef-Image", "CONTAINS", id));
        for dep in &package.depends {
            if let Some(to) = ids.get(&(package.ecosystem, dep.as_str())) {
                relationships.push(relationship(id, "DEPENDS_ON", to));
            }
        }
    }
    let mut doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": inventory.name,
        "documentNamespace": "",
        "creationInfo": {
            "created": inventory.created,
            "creators": [format!("Tool: conda-docker-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": packages,
        "relationships": relationships,
    });
    if !licenses.extracted.is_empty() {
        doc["hasExtractedLicensingInfos"] = Value::Array(
            licenses
                .extracted
                .into_iter()
                .map(|(id, text)| json!({"licenseId": id, "extractedText": text, "name": text}))
                .collect(),
        );
    }
    let uuid = content_uuid(&serde_json::to_vec(&doc).expect("JSON values serialise"));
    doc["documentNamespace"] = json!(format!(
        "https://conda-docker.invalid/spdx/{}-{uuid}",
        purl::encode(&inventory.name)
    ));
    doc
}

fn package_json(package: &Package, id: &str, licenses: &mut Licenses) -> Value {
    let mut checksums = Vec::new();
    if let Some(sha256) = &package.sha256 {
        checksums.push(json!({"algorithm": "SHA256", "checksumValue": sha256}));
    }
    if let Some(md5) = &package.md5 {
        checksums.push(json!({"algorithm": "MD5", "checksumValue": md5}));
    }
    let declared = match &package.license {
        Some(text) => licenses.expression(text),
        None => "NOASSERTION".to_owned(),
    };
    let mut value = json!({
        "SPDXID": id,
        "name": package.name,
        "versionInfo": package.version,
        "downloadLocation": download_location(package.url.as_deref()),
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": declared,
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "LIBRARY",
        "externalRefs": [purl_ref(&package.purl)],
    });
    if !checksums.is_empty() {
        value["checksums"] = Value::Array(checksums);
    }
    if !package.build.is_empty() {
        value["comment"] = json!(format!("conda build string: {}", package.build));
    }
    value
}

/// SPDX's download location: a URL of a scheme it lists; a `file://`
/// channel's is `NOASSERTION` (the purl still names the channel).
fn download_location(url: Option<&str>) -> &str {
    match url {
        Some(url)
            if ["https://", "http://", "ftp://"]
                .iter()
                .any(|s| url.starts_with(s)) =>
        {
            url
        }
        _ => "NOASSERTION",
    }
}

/// An SPDX id for `package`: letters, digits, `.` and `-` only.
fn spdx_id(package: &Package) -> String {
    let kind = match package.ecosystem {
        Ecosystem::Conda => "conda",
        Ecosystem::Pypi => "pypi",
    };
    format!("SPDXRef-{kind}-{}", idstring(&package.name))
}

/// `text` with every character SPDX ids do not allow as `-`.
fn idstring(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            c if c.is_ascii_alphanumeric() || c == '.' || c == '-' => c,
            _ => '-',
        })
        .collect()
}

fn relationship(from: &str, kind: &str, to: &str) -> Value {
    json!({"spdxElementId": from, "relationshipType": kind, "relatedSpdxElement": to})
}

fn purl_ref(purl: &str) -> Value {
    json!({"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": purl})
}

/// `pkg:oci/NAME@DIGEST?repository_url=REGISTRY/PATH&tag=TAG` for a base
/// pulled by `reference`.
pub(super) fn oci_purl(reference: &str, digest: &str) -> Option<String> {
    let (without_digest, _) = reference.split_once('@').unwrap_or((reference, ""));
    let slash = without_digest.rfind('/').unwrap_or(0);
    let (repository, tag) = match without_digest[slash..].rfind(':') {
        Some(at) => (
            &without_digest[..slash + at],
            &without_digest[slash + at + 1..],
        ),
        None => (without_digest, ""),
    };
    let name = repository.rsplit('/').next()?.to_ascii_lowercase();
    Some(purl::purl(
        "oci",
        &name,
        digest,
        &[("repository_url", repository), ("tag", tag)],
    ))
}

/// The license strings of the packages: an SPDX expression as it is, any
/// other string as a `LicenseRef-...` whose text is kept.
#[derive(Default)]
struct Licenses {
    /// `LicenseRef-...` → the package's own text.
    extracted: BTreeMap<String, String>,
}

impl Licenses {
    fn expression(&mut self, text: &str) -> String {
        // A reference to a license text this document does not carry is
        // no more an SPDX expression than free text is.
        if !text.contains("LicenseRef-") && spdx::Expression::parse(text).is_ok() {
            return text.to_owned();
        }
        if let Some((id, _)) = self.extracted.iter().find(|(_, t)| *t == text) {
            return id.clone();
        }
        let mut id = format!("LicenseRef-{}", idstring(text.trim()));
        if self.extracted.contains_key(&id) {
            id = format!("{id}-{}", &content_uuid(text.as_bytes())[..8]);
        }
        self.extracted.insert(id.clone(), text.to_owned());
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_spdx_licenses_become_license_refs() {
        let mut licenses = Licenses::default();
        assert_eq!(licenses.expression("MIT"), "MIT");
        assert_eq!(
            licenses.expression("Apache-2.0 OR BSD-3-Clause"),
            "Apache-2.0 OR BSD-3-Clause"
        );
        assert_eq!(
            licenses.expression("BSD 3-Clause"),
            "LicenseRef-BSD-3-Clause"
        );
        assert_eq!(
            licenses.expression("BSD 3-Clause"),
            "LicenseRef-BSD-3-Clause"
        );
        let other = licenses.expression("BSD_3-Clause");
        assert!(other.starts_with("LicenseRef-BSD-3-Clause-"), "{other}");
        assert_eq!(licenses.extracted.len(), 2);
    }

    #[test]
    fn base_images_get_an_oci_purl() {
        assert_eq!(
            oci_purl("127.0.0.1:5000/base/busybox:1.36", "sha256:ab").as_deref(),
            Some(
                "pkg:oci/busybox@sha256%3Aab?repository_url=127.0.0.1%3A5000%2Fbase%2Fbusybox&tag=1.36"
            )
        );
    }
}
