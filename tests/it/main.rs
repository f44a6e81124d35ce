//! The integration tests: one binary, so it links once.

mod common;
mod consumers;
mod determinism;
mod edits;
mod errors;
mod fixtures;
mod harness_selftest;
mod roundtrip;
