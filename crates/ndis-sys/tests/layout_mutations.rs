//! The layout assertions are the crate's contract with Windows: moving any field must fail the
//! build. This copies the crate, applies one layout mutation at a time, and expects `cargo check`
//! to fail on exactly the assertion that guards it (and the unmutated copy to pass).

use std::path::{Path, PathBuf};
use std::process::Command;

const MANIFEST: &str = r#"[package]
name = "ndis-sys"
version = "0.0.0"
edition = "2024"

[workspace]

[dependencies]
static_assertions = "1.1"
"#;

struct Mutation {
    name: &'static str,
    file: &'static str,
    from: &'static str,
    to: &'static str,
}

const MUTATIONS: &[Mutation] = &[
    Mutation {
        name: "two BOOLEANs swapped: offsets 40/41 exchange",
        file: "interrupt.rs",
        from: "    pub MsiSupported: BOOLEAN,\n    pub MsiSyncWithAllMessages: BOOLEAN,\n",
        to: "    pub MsiSyncWithAllMessages: BOOLEAN,\n    pub MsiSupported: BOOLEAN,\n",
    },
    Mutation {
        name: "a byte inserted: every later offset moves by one",
        file: "object.rs",
        from: "    pub Revision: UCHAR,\n",
        to: "    pub Revision: UCHAR,\n    pub Extra: UCHAR,\n",
    },
    Mutation {
        name: "packing lost: Affinity moves from 12 to 16",
        file: "resources.rs",
        from: "#[repr(C, packed(4))]\n#[derive(Debug, Clone, Copy)]\npub struct CM_RESOURCE_INTERRUPT {",
        to: "#[repr(C)]\n#[derive(Debug, Clone, Copy)]\npub struct CM_RESOURCE_INTERRUPT {",
    },
    Mutation {
        name: "an asserted offset off by one",
        file: "miniport.rs",
        from: "InterfaceType: 24,",
        to: "InterfaceType: 25,",
    },
];

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

fn check(dir: &Path, target_dir: &Path) -> (bool, String) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(dir)
        .args(["check", "--quiet", "--offline"])
        .env("CARGO_TARGET_DIR", target_dir)
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run cargo");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn scratch() -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    base.join("layout-mutations")
}

#[test]
fn every_layout_mutation_fails_the_build() {
    let root = scratch();
    let _ = std::fs::remove_dir_all(root.join("crate"));
    let krate = root.join("crate");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &krate.join("src"),
    );
    std::fs::write(krate.join("Cargo.toml"), MANIFEST).unwrap();
    // The lockfile of the workspace pins static_assertions; reuse it so --offline resolves.
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.lock"),
        krate.join("Cargo.lock"),
    )
    .unwrap();
    let target = root.join("target");

    let (ok, stderr) = check(&krate, &target);
    assert!(ok, "the unmodified copy must build:\n{stderr}");

    for m in MUTATIONS {
        let path = krate.join("src").join(m.file);
        let original = std::fs::read_to_string(&path).unwrap();
        assert!(
            original.contains(m.from),
            "{}: pattern not found in {}",
            m.name,
            m.file
        );
        std::fs::write(&path, original.replacen(m.from, m.to, 1)).unwrap();
        let (ok, stderr) = check(&krate, &target);
        std::fs::write(&path, &original).unwrap();
        assert!(!ok, "{}: the build still passed", m.name);
        assert!(
            stderr.contains("const_assert_eq")
                || stderr.contains("evaluation of constant value failed")
                || stderr.contains("attempt to compute"),
            "{}: failed, but not on a layout assertion:\n{stderr}",
            m.name
        );
    }
}
