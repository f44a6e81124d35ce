//! The integration tests: one binary, so it links once.

mod add;
mod architecture;
mod bench;
mod build;
mod channel_selftest;
mod common;
mod conda_fixture_selftest;
mod consumers;
mod determinism;
mod edits;
mod entry_points;
mod errors;
mod fixtures;
mod glibc;
mod golden;
mod habits;
mod harness_selftest;
mod outputs;
mod plugin;
mod registry;
mod registry_logins;
mod registry_selftest;
mod roundtrip;
mod security;
mod security_images;
mod solve;
