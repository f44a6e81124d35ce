//! Image references and digests: parsing never panics, and what parses
//! prints to a string that parses and prints the same again. (Not the same
//! value: a reference without a tag prints with the default `latest`.)
#![no_main]

use conda_docker::digest::Digest;
use conda_docker::reference::Reference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(reference) = text.parse::<Reference>() {
        let printed = reference.to_string();
        let again: Reference = printed.parse().expect("a printed reference parses");
        assert_eq!(again.to_string(), printed);
        let _ = (reference.familiar_name(), reference.familiar_tagged());
    }
    if let Ok(digest) = text.parse::<Digest>() {
        let again: Digest = digest.to_string().parse().expect("a printed digest parses");
        assert_eq!(again, digest);
    }
});
