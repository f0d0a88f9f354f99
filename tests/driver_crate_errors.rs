//! A driver crate that lacks a piece of its set-up gets a message naming the fix, not a linker
//! error. Each test writes a copy of samples/loopback into a temporary directory (outside this
//! repository, so that its `.cargo/config.toml` is not found), removes one piece, and
//! cross-builds it for x86_64-pc-windows-msvc:
//!
//! | Missing | Without the check | With it |
//! |---|---|---|
//! | `build.rs` (`km_build::configure_driver_link`) | `rust-lld: error: could not open 'msvcrt.lib'` | `ndis::miniport_driver!` fails to compile, naming build.rs and km-build |
//! | the `km-rt` dependency | "`#[panic_handler]` function required, but not found" | km-build stops the build, naming the dependency line |
//! | `use km_rt as _;` | the same | nothing: the macro links km-rt itself |
//! | `linker = "rust-lld"` in `.cargo/config.toml` | "linker `link.exe` not found" | km-build stops the build, naming the two lines |
//!
//! The complete crate builds (so no check fires on a correct crate). The copies build in
//! `target/driver-crate-errors` (kept, so later runs are incremental; not this workspace's own
//! target directory, see tests/new_driver.rs).

use std::path::PathBuf;
use std::process::Command;

const TARGET: &str = "x86_64-pc-windows-msvc";

#[path = "support/workspace.rs"]
mod workspace;
use workspace::repo;

fn target_dir() -> PathBuf {
    workspace::target_dir_for("driver-crate-errors")
}

/// One piece a driver crate may lack.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Without {
    Nothing,
    BuildScript,
    KmRtDependency,
    KmRtUse,
    LinkerConfig,
}

/// Writes the loopback sample as a stand-alone crate lacking `without` into a fresh directory.
fn write_crate(without: Without) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ndis-driver-crate-errors-{}/{without:?}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("src")).unwrap();
    let sample = repo().join("samples/loopback");
    let crates = repo().join("crates");
    let dep = |name: &str| format!("{name} = {{ path = {:?} }}", crates.join(name));
    let mut manifest = format!(
        "[package]\nname = \"broken-driver-{}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\
         publish = false\n\n[lib]\ncrate-type = [\"cdylib\", \"rlib\"]\n\n[features]\n\
         test-panic = []\n\n[dependencies]\n{}\n\n[target.'cfg(windows)'.dependencies]\n{}\n",
        // One name per variant: cargo names a workspace root's artifacts by name and version,
        // not path, and the variants share a target directory.
        format!("{without:?}").to_lowercase(),
        dep("ndis"),
        dep("km-alloc"),
    );
    if without != Without::KmRtDependency {
        manifest += &format!("{}\n", dep("km-rt"));
    }
    if without != Without::BuildScript {
        manifest += &format!("\n[build-dependencies]\n{}\n", dep("km-build"));
        std::fs::copy(sample.join("build.rs"), dir.join("build.rs")).unwrap();
    }
    manifest += "\n[workspace]\n\n[profile.dev]\npanic = \"abort\"\n";
    std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
    let mut lib = std::fs::read_to_string(sample.join("src/lib.rs")).unwrap();
    if matches!(without, Without::KmRtDependency | Without::KmRtUse) {
        let line = "#[cfg(windows)]\nuse km_rt as _;\n";
        assert!(lib.contains(line), "samples/loopback/src/lib.rs changed");
        lib = lib.replace(line, "");
    }
    std::fs::write(dir.join("src/lib.rs"), lib).unwrap();
    if without != Without::LinkerConfig {
        std::fs::create_dir_all(dir.join(".cargo")).unwrap();
        std::fs::copy(
            repo().join(".cargo/config.toml"),
            dir.join(".cargo/config.toml"),
        )
        .unwrap();
    }
    // The same toolchain (with its Windows target) and the same dependency versions, offline.
    for f in ["rust-toolchain.toml", "Cargo.lock"] {
        std::fs::copy(repo().join(f), dir.join(f)).unwrap();
    }
    dir
}

/// `cargo build --target x86_64-pc-windows-msvc` of the crate lacking `without`: success and
/// everything cargo printed.
fn build(without: Without) -> (bool, String) {
    let dir = write_crate(without);
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&dir)
        .args(["build", "--offline", "--target", TARGET])
        .env("CARGO_TARGET_DIR", target_dir())
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_LINKER")
        .output()
        .expect("run cargo");
    let _ = std::fs::remove_dir_all(&dir);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn fails_with(without: Without, expected: &[&str], not: &[&str]) {
    let (ok, text) = build(without);
    assert!(!ok, "a crate without {without:?} built:\n{text}");
    for e in expected {
        assert!(text.contains(e), "expected {e:?} in:\n{text}");
    }
    for n in not {
        assert!(!text.contains(n), "unexpected {n:?} in:\n{text}");
    }
}

#[test]
fn the_complete_crate_builds() {
    let (ok, text) = build(Without::Nothing);
    assert!(ok, "{text}");
    assert!(!text.contains("warning"), "{text}");
}

#[test]
fn without_build_rs_the_macro_names_the_build_script_to_add() {
    fails_with(
        Without::BuildScript,
        &[
            "ndis: this driver crate does not configure the kernel link",
            "`fn main() { km_build::configure_driver_link(); }`",
            "[build-dependencies] km-build",
        ],
        &["could not open 'msvcrt.lib'", "rust-lld: error"],
    );
}

#[test]
fn without_km_rt_the_build_script_names_the_dependency_to_add() {
    fails_with(
        Without::KmRtDependency,
        &[
            "km-build: the driver crate does not depend on km-rt",
            "[target.'cfg(windows)'.dependencies]",
            "km-rt = \"0.1\"",
        ],
        &["function required, but not found"],
    );
}

#[test]
fn without_the_km_rt_use_line_the_crate_still_builds() {
    let (ok, text) = build(Without::KmRtUse);
    assert!(ok, "{text}");
}

#[test]
fn without_a_linker_the_build_script_names_the_config_to_add() {
    fails_with(
        Without::LinkerConfig,
        &[
            "km-build: no linker is configured for x86_64-pc-windows-msvc",
            "[target.x86_64-pc-windows-msvc]",
            "linker = \"rust-lld\"",
        ],
        &["link.exe` not found"],
    );
}
