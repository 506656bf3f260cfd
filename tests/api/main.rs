//! The integration tests, one binary: a module per capability (a file, or a folder for the
//! store's contract on both backends and for the browser tests), and `common`, the helpers they
//! share.
//!
//! One binary links the crate and the dev-dependencies once instead of once per file. Its tests
//! share the process: whatever one of them would have to set for the whole process (an
//! environment variable, a signal handler, a resource limit, the process-wide metrics) is done in
//! a child process instead, the real binary (`common::binary`) or another program, never here.
//! `tests/layers.rs`, which reads the source rather than running anything, is a binary of its
//! own.

mod acme;
mod backups;
mod browser;
mod chat;
mod cluster;
mod common;
mod concurrency;
mod crash;
mod devices;
mod faults;
mod files;
mod hostile;
mod https;
mod ipv6;
mod late_edits;
mod link_origin;
mod live;
mod logs;
mod metrics;
mod ops;
mod postgres_tls;
mod presence;
mod prune;
mod public_address;
mod restart;
mod sessions;
mod settings;
mod shutdown;
mod startup;
mod store;
mod systemd;
mod your_devices;
