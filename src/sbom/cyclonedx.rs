//! CycloneDX 1.6 JSON: the image as `metadata.component`, its base and
//! packages as components (bom-ref: the purl), and the dependency graph.
//! A license that is an SPDX expression is written as `expression`, any
//! other string as `license.name`.

use serde_json::{Value, json};

use super::content_uuid;
use super::inventory::{Inventory, Package};
use super::spdx::oci_purl;

/// The CycloneDX document of `inventory`.
pub(super) fn document(inventory: &Inventory) -> Value {
    let mut components = Vec::new();
    let mut image_depends = Vec::new();
    if let Some(base) = &inventory.base {
        let mut component = json!({
            "type": "container",
            "bom-ref": "base-image",
            "name": base.reference.as_deref().unwrap_or("base image"),
        });
        if let Some(digest) = &base.digest {
            component["version"] = json!(digest);
            if let Some(purl) = base.reference.as_deref().and_then(|r| oci_purl(r, digest)) {
                component["purl"] = json!(purl);
            }
        }
        components.push(component);
        image_depends.push("base-image".to_owned());
    }
    let mut dependencies = Vec::new();
    for package in &inventory.packages {
        components.push(component(package));
        image_depends.push(package.purl.clone());
        let depends_on: Vec<&str> = package
            .depends
            .iter()
            .filter_map(|name| {
                inventory
                    .packages
                    .iter()
                    .find(|p| p.ecosystem == package.ecosystem && &p.name == name)
            })
            .map(|p| p.purl.as_str())
            .collect();
        dependencies.push(json!({"ref": package.purl, "dependsOn": depends_on}));
    }
    dependencies.insert(0, json!({"ref": "image", "dependsOn": image_depends}));
    let mut doc = json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": "",
        "version": 1,
        "metadata": {
            "timestamp": inventory.created,
            "tools": {"components": [{
                "type": "application",
                "name": "conda-docker",
                "version": env!("CARGO_PKG_VERSION"),
            }]},
            "component": {"type": "container", "bom-ref": "image", "name": inventory.name},
        },
        "components": components,
        "dependencies": dependencies,
    });
    let uuid = content_uuid(&serde_json::to_vec(&doc).expect("JSON values serialise"));
    doc["serialNumber"] = json!(format!("urn:uuid:{uuid}"));
    doc
}

fn component(package: &Package) -> Value {
    let mut hashes = Vec::new();
    if let Some(sha256) = &package.sha256 {
        hashes.push(json!({"alg": "SHA-256", "content": sha256}));
    }
    if let Some(md5) = &package.md5 {
        hashes.push(json!({"alg": "MD5", "content": md5}));
    }
    let mut value = json!({
        "type": "library",
        "bom-ref": package.purl,
        "name": package.name,
        "version": package.version,
        "purl": package.purl,
    });
    if !hashes.is_empty() {
        value["hashes"] = Value::Array(hashes);
    }
    if let Some(license) = &package.license {
        value["licenses"] = if spdx::Expression::parse(license).is_ok() {
            json!([{"expression": license}])
        } else {
            json!([{"license": {"name": license}}])
        };
    }
    if let Some(url) = &package.url {
        value["externalReferences"] = json!([{"type": "distribution", "url": url}]);
    }
    if !package.build.is_empty() {
        value["properties"] = json!([{"name": "conda:build", "value": package.build}]);
    }
    value
}
