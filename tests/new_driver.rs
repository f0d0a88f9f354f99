//! The vendor's first hour, end to end: `cargo make new-driver` scaffolds a driver crate into a
//! copy of this workspace, the crate's emulator tests pass on the host, `cargo make package`
//! cross-builds it for x86_64-pc-windows-msvc and packages it, and osslsigncode verifies the
//! signatures; samples/loopback packages the same way, in this workspace and its target
//! directory (the outer `cargo test` holds no lock on it while tests run).
//!
//! The copy builds in a target directory of its own, `target/new-driver-tests` (kept, so a second
//! run is incremental). It cannot share this workspace's: cargo names a path crate's artifacts by
//! its path relative to the workspace root, so the copy's `crates/ndis-sys` would overwrite this
//! workspace's `libndis_sys-<hash>.rlib` with one built from other source paths, and the doc tests
//! that `cargo test --workspace` runs after this test would fail to link ("found possibly newer
//! version of crate"). The new crate must also be rustfmt- and clippy-clean. Needs cargo-make (`.ci/run` installs it), osslsigncode
//! and openssl; a missing tool fails the test, naming what to install (`NDIS_ALLOW_MISSING_TOOLS=1`
//! skips instead).

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "support/workspace.rs"]
mod workspace;
use workspace::repo;

fn target_dir() -> PathBuf {
    workspace::target_root()
}

/// Where the copy of the workspace builds (see the module documentation).
fn copy_target_dir() -> PathBuf {
    target_dir().join("new-driver-tests")
}

/// `name` on PATH. A missing one fails the test with what to install, unless
/// `NDIS_ALLOW_MISSING_TOOLS=1` says to skip what needs it (`None`, with SKIPPED printed).
fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        let install = match name {
            "cargo-make" => "cargo install --locked cargo-make".to_string(),
            other => format!("apt-get install {other}"),
        };
        let message = format!("`{name}` is not installed: {install} (.ci/run installs it)");
        if std::env::var_os("NDIS_ALLOW_MISSING_TOOLS").is_some_and(|v| v == "1") {
            eprintln!("SKIPPED (NDIS_ALLOW_MISSING_TOOLS=1): {message}");
        } else {
            panic!("{message}; or set NDIS_ALLOW_MISSING_TOOLS=1 to skip the checks that need it");
        }
    }
    found
}

/// Runs `program` in `dir` building into `target`; panics with its output on failure.
fn run_in(target: &Path, dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .current_dir(dir)
        .args(args)
        .env("CARGO_TARGET_DIR", target)
        .env_remove("DRIVER")
        .env_remove("DRIVER_INX")
        .env_remove("DRIVER_MANIFEST")
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "`{program} {}` in {} failed:\n{text}",
        args.join(" "),
        dir.display()
    );
    text
}

/// `run_in` this workspace's target directory.
fn run(dir: &Path, program: &str, args: &[&str]) -> String {
    run_in(&target_dir(), dir, program, args)
}

/// Copies the workspace's sources (not target/ or .git) to `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "target" || name == ".git" {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// The six files of `<image>_package/` exist, and osslsigncode verifies the image's signature,
/// the catalog's, and that the catalog lists the image.
fn verify_package(target: &Path, image: &str) {
    let dir = target
        .join("x86_64-pc-windows-msvc/release")
        .join(format!("{image}_package"));
    for ext in ["sys", "inf", "cat", "pdb", "map", "cer"] {
        let f = dir.join(format!("{image}.{ext}"));
        let len = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
        assert!(len > 0, "{} missing or empty", f.display());
    }
    let (Some(osslsigncode), Some(openssl)) = (tool("osslsigncode"), tool("openssl")) else {
        return;
    };
    let ca = dir.join("ca.pem");
    let cer = dir.join(format!("{image}.cer"));
    let (sys, cat) = (
        dir.join(format!("{image}.sys")),
        dir.join(format!("{image}.cat")),
    );
    let s = |p: &Path| p.to_str().unwrap().to_string();
    run(
        &dir,
        openssl.to_str().unwrap(),
        &["x509", "-inform", "DER", "-in", &s(&cer), "-out", &s(&ca)],
    );
    for args in [
        vec!["-in".to_string(), s(&sys)],
        vec!["-in".to_string(), s(&cat)],
        vec!["-catalog".to_string(), s(&cat), "-in".to_string(), s(&sys)],
    ] {
        let mut all = vec!["verify".to_string(), "-CAfile".to_string(), s(&ca)];
        all.extend(args);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let out = run(&dir, osslsigncode.to_str().unwrap(), &refs);
        assert!(
            out.contains("Signature verification: ok") || out.contains("File is signed in catalog"),
            "{out}"
        );
    }
    std::fs::remove_file(&ca).unwrap();
}

/// Deletes the copy of the workspace (not its target directory) when dropped, also when the test
/// fails.
struct CopyGuard(PathBuf);

impl Drop for CopyGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// One test: the steps share the package directories and the certificate, so they run in order.
#[test]
fn loopback_packages_then_a_scaffolded_driver_builds_passes_its_tests_and_packages() {
    if tool("cargo-make").is_none() {
        return;
    }
    loopback_packages_in_its_directory_and_verifies();
    an_unknown_driver_fails_with_what_to_do();
    a_scaffolded_driver_builds_passes_its_tests_and_packages();
}

fn a_scaffolded_driver_builds_passes_its_tests_and_packages() {
    // A fixed place, so that the copy's target directory serves the next run incrementally.
    let ws = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("new-driver-workspace");
    if ws.exists() {
        std::fs::remove_dir_all(&ws).unwrap();
    }
    let _copy = CopyGuard(ws.clone());
    let copy = copy_target_dir();
    copy_tree(repo(), &ws);
    let cargo = cargo();
    let out = run_in(
        &copy,
        &ws,
        &cargo,
        &["make", "new-driver", "acme-nic", "--pci", "8086:100E"],
    );
    assert!(out.contains("[new-driver] created"), "{out}");
    let krate = ws.join("samples/acme-nic");
    let manifest = std::fs::read_to_string(ws.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("\"samples/acme-nic\""), "{manifest}");
    let inx = std::fs::read_to_string(krate.join("inf/acme_nic.inx")).unwrap();
    assert!(inx.contains(r"PCI\VEN_8086&DEV_100E"), "{inx}");
    // Scaffolding the same name again is refused.
    let again = Command::new(&cargo)
        .current_dir(&ws)
        .args(["make", "new-driver", "acme-nic"])
        .env("CARGO_TARGET_DIR", &copy)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already a workspace member")
            || String::from_utf8_lossy(&again.stdout).contains("already a workspace member")
    );
    // As CI holds the workspace's own crates to: rustfmt-clean, clippy-clean on both targets.
    run_in(
        &copy,
        &krate,
        &cargo,
        &["fmt", "-p", "acme-nic", "--", "--check"],
    );
    for target in [None, Some("x86_64-pc-windows-msvc")] {
        let mut args = vec!["clippy", "--locked", "-p", "acme-nic"];
        match target {
            Some(t) => args.extend(["--target", t]),
            None => args.push("--all-targets"),
        }
        args.extend(["--", "-D", "warnings"]);
        run_in(&copy, &krate, &cargo, &args);
    }
    // Host: its emulator tests (adapter up, frames both ways, fault sweep without leaks).
    let out = run_in(
        &copy,
        &krate,
        &cargo,
        &["test", "--locked", "-p", "acme-nic"],
    );
    assert!(
        out.contains("test frames_go_out_and_come_in_byte_for_byte ... ok"),
        "{out}"
    );
    // Windows: `cargo make package` in the crate's directory cross-builds and packages it.
    let out = run_in(&copy, &krate, &cargo, &["make", "package"]);
    assert!(out.contains("[package] acme-nic done"), "{out}");
    assert!(
        !out.contains("[package] vionet"),
        "only the crate of this directory: {out}"
    );
    verify_package(&copy_target_dir(), "acme_nic");
}

fn loopback_packages_in_its_directory_and_verifies() {
    let out = run(
        &repo().join("samples/loopback"),
        &cargo(),
        &["make", "package"],
    );
    assert!(out.contains("[package] loopback-miniport done"), "{out}");
    assert!(
        out.contains("[stampinf] ") && out.contains("loopback_miniport.inf"),
        "{out}"
    );
    verify_package(&target_dir(), "loopback_miniport");
}

fn an_unknown_driver_fails_with_what_to_do() {
    let out = Command::new(cargo())
        .current_dir(repo())
        .args(["make", "package"])
        .env("DRIVER", "no-such-nic")
        .env("CARGO_TARGET_DIR", target_dir())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("[package] error: unknown driver `no-such-nic`")
            && text.contains("vionet, loopback-miniport"),
        "{text}"
    );
}
