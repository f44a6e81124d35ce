mod common;
mod harness_selftest;
