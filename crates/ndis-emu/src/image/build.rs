//! Cross-building a driver crate from a test, once per test process (and never again in the
//! child processes of [`super::isolated`]: they are handed the parent's results).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The target a Windows x64 kernel image is built for.
pub const TARGET: &str = "x86_64-pc-windows-msvc";

/// Images built by this process (and its parent), keyed by `dir|profile|lib|features`.
static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);

/// The environment variable in which [`super::isolated`] hands a child the images its parent
/// built (`key=path` lines), so a child never runs cargo.
pub(crate) const BUILT_ENV: &str = "NDIS_EMU_BUILT_IMAGES";

pub(crate) fn built_for_child() -> String {
    let built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    built
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}\n", v.display()))
        .collect()
}

/// `cargo build --lib --target x86_64-pc-windows-msvc --profile <profile> [--features ...]` of
/// the package in `package_dir`, in a target directory of its own under `target_dir`
/// (`driver-image-tests/`: the `cargo test` running the caller holds the lock on the main
/// one). Returns the path of a copy of the image `<lib_name>.dll`,
/// `<lib_name>[-<features>].built.dll`, so builds with different features do not overwrite each
/// other. Built once per process for each combination; concurrent callers wait for the first.
/// Panics with cargo's output if the build fails.
pub fn cross_build(
    package_dir: &Path,
    target_dir: &Path,
    profile: &str,
    lib_name: &str,
    features: &[&str],
) -> PathBuf {
    let key = format!(
        "{}|{profile}|{lib_name}|{}",
        package_dir.display(),
        features.join(",")
    );
    // Held across the build: cargo builds one at a time in a target directory anyway.
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let built = built.get_or_insert_with(|| {
        std::env::var(BUILT_ENV)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), PathBuf::from(v)))
            .collect()
    });
    if let Some(path) = built.get(&key) {
        return path.clone();
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(package_dir) // .cargo/config.toml (linker = rust-lld) is found from here
        .args(["build", "--lib", "--target", TARGET, "--profile", profile])
        .env("CARGO_TARGET_DIR", target_dir)
        .env_remove("RUSTFLAGS");
    if !features.is_empty() {
        command.args(["--features", &features.join(",")]);
    }
    let out = command.output().expect("run cargo");
    assert!(
        out.status.success(),
        "cross-build of {} ({profile}{}) failed:\n{}",
        package_dir.display(),
        if features.is_empty() {
            String::new()
        } else {
            format!(", features {}", features.join(","))
        },
        String::from_utf8_lossy(&out.stderr)
    );
    let profile_dir = if profile == "dev" { "debug" } else { profile };
    let out_dir = target_dir.join(TARGET).join(profile_dir);
    let image = out_dir.join(format!("{lib_name}.dll"));
    // Always a copy: the next build with other features replaces <lib_name>.dll.
    let kept = out_dir.join(format!(
        "{lib_name}{}{}.built.dll",
        if features.is_empty() { "" } else { "-" },
        features.join("-")
    ));
    std::fs::copy(&image, &kept)
        .unwrap_or_else(|e| panic!("copy {} to {}: {e}", image.display(), kept.display()));
    built.insert(key, kept.clone());
    kept
}
