//! Where the workspace and its build output are, for the tests that drive cargo themselves.

use std::path::{Path, PathBuf};

/// The workspace root (the root package's directory).
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The workspace's target directory (`CARGO_TARGET_DIR`, or `target/`).
pub fn target_root() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"))
}

/// `name` under the target directory: a directory of its own, since the outer `cargo test`
/// may hold the lock on the main one.
#[allow(dead_code)] // tests/new_driver.rs builds into target/ itself
pub fn target_dir_for(name: &str) -> PathBuf {
    target_root().join(name)
}
