//! The shell's tests, one binary (one link): each file is a module, `support` what they
//! share. Tests that run live servers hold [`support::live`] so that files do not overlap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod admin;
mod binary;
mod browser;
mod crash;
mod data_safety;
mod fuzz_corpus;
mod handoff;
mod infra;
mod lanes;
mod lease_loss;
mod persist_redis;
mod persist_spool;
mod prometheus;
mod sans_io_world;
mod scylla_proxy;
mod sentinel;
mod serve;
mod world;
