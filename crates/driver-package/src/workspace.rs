//! Which driver crates `cargo make package` packages, and where each one's pieces are.
//!
//! A *driver crate* is a workspace member whose `Cargo.toml` has a `[package.metadata.ndis-driver]`
//! table (the Windows-version contract every driver declares) and a `cdylib` library target (the
//! kernel image). Everything else comes from `cargo metadata`:
//!
//! * the image name is the library target's name (`loopback-miniport` builds
//!   `loopback_miniport.dll`, packaged as `loopback_miniport.sys`), the package directory
//!   `<image>_package/` under `<target-dir>/x86_64-pc-windows-msvc/release/`;
//! * the INX is `<image>.inx` or `<package name>.inx`, next to the `Cargo.toml` or in its `inf/`;
//! * the version stamped into `DriverVer` is the package's version.
//!
//! Run in a driver crate's directory, the selection is that crate; at the workspace root it is every
//! driver crate of the workspace. `DRIVER=<name>` (package or image name) picks one anywhere.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Error, Result};

/// The target every driver image is built for.
pub const DRIVER_TARGET: &str = "x86_64-pc-windows-msvc";

/// One driver crate and the paths its package flow uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Driver {
    /// The Cargo package name (`cargo build -p`), e.g. `loopback-miniport`.
    pub package: String,
    /// The image name: the library target's name, e.g. `loopback_miniport`.
    pub image: String,
    /// The package version (`DriverVer` is stamped from it).
    pub version: String,
    /// Its `Cargo.toml`.
    pub manifest: PathBuf,
    /// The directory of its `Cargo.toml`.
    pub dir: PathBuf,
    /// Its INX, if one was found (see [`Driver::inx_candidates`]).
    pub inx: Option<PathBuf>,
    /// `<target-dir>/x86_64-pc-windows-msvc/release`: where the image is built.
    pub out_dir: PathBuf,
}

impl Driver {
    /// Where the INX is looked for, in order.
    pub fn inx_candidates(&self) -> Vec<PathBuf> {
        let mut names = vec![format!("{}.inx", self.image)];
        if self.package != self.image {
            names.push(format!("{}.inx", self.package));
        }
        let mut out = Vec::new();
        for dir in [self.dir.clone(), self.dir.join("inf")] {
            for n in &names {
                out.push(dir.join(n));
            }
        }
        out
    }

    /// `<out_dir>/<image>_package`.
    pub fn package_dir(&self) -> PathBuf {
        self.out_dir.join(format!("{}_package", self.image))
    }

    /// The INX, or an error saying where it was looked for and what to do.
    pub fn require_inx(&self) -> Result<&Path> {
        self.inx.as_deref().ok_or_else(|| {
            let looked: Vec<String> = self
                .inx_candidates()
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            Error::file(
                &self.manifest,
                format!(
                    "driver `{}` has no INX: looked for {}; add one (inf/vionet.inx is a \
                     complete example, docs/packaging.md describes what it needs) or set \
                     DRIVER_INX=<path>",
                    self.package,
                    looked.join(", ")
                ),
            )
        })
    }
}

/// The workspace as `cargo metadata` describes it.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub root: PathBuf,
    pub target_dir: PathBuf,
    /// Every member with `[package.metadata.ndis-driver]` and a `cdylib` library.
    pub drivers: Vec<Driver>,
    /// Every member: (package name, manifest directory).
    pub members: Vec<(String, PathBuf)>,
}

/// Names compare with `-` and `_` the same (`loopback-miniport` is `loopback_miniport`).
fn same_name(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes().zip(b.bytes()).all(|(x, y)| {
            let n = |c: u8| if c == b'-' { b'_' } else { c };
            n(x) == n(y)
        })
}

impl Workspace {
    /// Runs `cargo metadata --no-deps` for the workspace containing `dir`.
    pub fn load(dir: &Path) -> Result<Workspace> {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = Command::new(cargo)
            .current_dir(dir)
            .args(["metadata", "--no-deps", "--format-version", "1"])
            .output()
            .map_err(|e| Error::file(dir, format!("cannot run `cargo metadata`: {e}")))?;
        if !out.status.success() {
            return Err(Error::file(
                dir,
                format!(
                    "`cargo metadata` failed (is this inside a Cargo workspace?): {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        Self::from_metadata(&out.stdout)
    }

    /// Parses `cargo metadata --format-version 1` output.
    pub fn from_metadata(json: &[u8]) -> Result<Workspace> {
        let bad = |what: &str| Error::msg(format!("unexpected `cargo metadata` output: {what}"));
        let v: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| bad(&format!("not JSON ({e})")))?;
        let root = PathBuf::from(v["workspace_root"].as_str().ok_or_else(|| bad("no root"))?);
        let target_dir = PathBuf::from(
            v["target_directory"]
                .as_str()
                .ok_or_else(|| bad("no target_directory"))?,
        );
        let out_dir = target_dir.join(DRIVER_TARGET).join("release");
        let mut drivers = Vec::new();
        let mut members = Vec::new();
        for p in v["packages"].as_array().ok_or_else(|| bad("no packages"))? {
            let name = p["name"].as_str().ok_or_else(|| bad("package name"))?;
            let manifest = PathBuf::from(
                p["manifest_path"]
                    .as_str()
                    .ok_or_else(|| bad("manifest_path"))?,
            );
            let dir = manifest.parent().unwrap_or(Path::new(".")).to_path_buf();
            members.push((name.to_string(), dir.clone()));
            if p["metadata"]["ndis-driver"].is_null() {
                continue;
            }
            let cdylib = p["targets"].as_array().into_iter().flatten().find(|t| {
                t["crate_types"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c == "cdylib"))
            });
            let Some(lib) = cdylib else {
                return Err(Error::file(
                    &manifest,
                    format!(
                        "`{name}` declares [package.metadata.ndis-driver] but has no cdylib \
                         library: add `[lib] crate-type = [\"cdylib\", \"rlib\"]` (the cdylib is \
                         the kernel image, the rlib what host tests link)"
                    ),
                ));
            };
            let image = lib["name"].as_str().ok_or_else(|| bad("target name"))?;
            let mut d = Driver {
                package: name.to_string(),
                image: image.replace('-', "_"),
                version: p["version"].as_str().unwrap_or("0.0.0").to_string(),
                manifest,
                dir,
                inx: None,
                out_dir: out_dir.clone(),
            };
            d.inx = d.inx_candidates().into_iter().find(|p| p.is_file());
            drivers.push(d);
        }
        Ok(Workspace {
            root,
            target_dir,
            drivers,
            members,
        })
    }

    fn names(&self) -> String {
        if self.drivers.is_empty() {
            return "none".into();
        }
        self.drivers
            .iter()
            .map(|d| d.package.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The drivers to package when run in `dir`, or the one named `name` (package or image name).
    pub fn select(&self, dir: &Path, name: Option<&str>) -> Result<Vec<&Driver>> {
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            return match self
                .drivers
                .iter()
                .find(|d| same_name(&d.package, name) || same_name(&d.image, name))
            {
                Some(d) => Ok(vec![d]),
                None => Err(Error::msg(format!(
                    "unknown driver `{name}`: the driver crates of {} are {} (a driver crate is \
                     a workspace member with [package.metadata.ndis-driver] and a cdylib; \
                     `cargo make new-driver <name>` creates one)",
                    self.root.display(),
                    self.names()
                ))),
            };
        }
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        let canon = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
        if dir == canon(&self.root) {
            if self.drivers.is_empty() {
                return Err(Error::file(
                    &self.root.join("Cargo.toml"),
                    "no driver crate in this workspace (none declares \
                     [package.metadata.ndis-driver]); `cargo make new-driver <name>` creates one",
                ));
            }
            return Ok(self.drivers.iter().collect());
        }
        if let Some(d) = self.drivers.iter().find(|d| canon(&d.dir) == dir) {
            return Ok(vec![d]);
        }
        let manifest = dir.join("Cargo.toml");
        match self.members.iter().find(|(_, d)| canon(d) == dir) {
            Some((name, _)) => Err(Error::file(
                &manifest,
                format!(
                    "`{name}` is not a driver crate: it declares no [package.metadata.ndis-driver] \
                     with a cdylib library; run `cargo make package` in a driver crate's \
                     directory or at the workspace root, or name one with DRIVER=<name> \
                     (driver crates: {})",
                    self.names()
                ),
            )),
            None => Err(Error::file(
                &dir,
                format!(
                    "not the directory of a workspace member; run `cargo make package` in a \
                     driver crate's directory or at the workspace root {} (driver crates: {})",
                    self.root.display(),
                    self.names()
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(root: &Path) -> Vec<u8> {
        let r = root.display();
        format!(
            r#"{{"workspace_root":"{r}","target_directory":"{r}/target","packages":[
            {{"name":"vionet","version":"0.1.0","manifest_path":"{r}/Cargo.toml",
              "metadata":{{"ndis-driver":{{"min-windows":"10.0.16299"}}}},
              "targets":[{{"name":"vionet","crate_types":["cdylib","rlib"]}}]}},
            {{"name":"ndis","version":"0.1.0","manifest_path":"{r}/crates/ndis/Cargo.toml",
              "metadata":null,"targets":[{{"name":"ndis","crate_types":["lib"]}}]}},
            {{"name":"my-nic","version":"0.3.1","manifest_path":"{r}/samples/my-nic/Cargo.toml",
              "metadata":{{"ndis-driver":{{}}}},
              "targets":[{{"name":"my_nic","crate_types":["cdylib","rlib"]}}]}}]}}"#
        )
        .into_bytes()
    }

    #[test]
    fn names_inx_and_directories_come_from_the_metadata() {
        let root = Path::new("/nonexistent/ws");
        let ws = Workspace::from_metadata(&metadata(root)).unwrap();
        assert_eq!(ws.drivers.len(), 2);
        let nic = &ws.drivers[1];
        assert_eq!(nic.package, "my-nic");
        assert_eq!(nic.image, "my_nic");
        assert_eq!(nic.version, "0.3.1");
        assert_eq!(
            nic.package_dir(),
            root.join("target/x86_64-pc-windows-msvc/release/my_nic_package")
        );
        assert_eq!(
            nic.inx_candidates(),
            [
                root.join("samples/my-nic/my_nic.inx"),
                root.join("samples/my-nic/my-nic.inx"),
                root.join("samples/my-nic/inf/my_nic.inx"),
                root.join("samples/my-nic/inf/my-nic.inx"),
            ]
        );
        let e = nic.require_inx().unwrap_err().to_string();
        assert!(e.contains("driver `my-nic` has no INX"), "{e}");
        assert!(e.contains("samples/my-nic/inf/my_nic.inx"), "{e}");
    }

    #[test]
    fn the_root_selects_every_driver_a_member_itself_and_a_name_one() {
        let root = Path::new("/nonexistent/ws");
        let ws = Workspace::from_metadata(&metadata(root)).unwrap();
        let pick = |dir: &str, name: Option<&str>| {
            ws.select(&root.join(dir), name)
                .map(|v| v.iter().map(|d| d.package.clone()).collect::<Vec<_>>())
                .map_err(|e| e.to_string())
        };
        assert_eq!(pick("", None).unwrap(), ["vionet", "my-nic"]);
        assert_eq!(pick("samples/my-nic", None).unwrap(), ["my-nic"]);
        assert_eq!(pick("", Some("my_nic")).unwrap(), ["my-nic"]);
        assert_eq!(pick("crates/ndis", Some("vionet")).unwrap(), ["vionet"]);
        let e = pick("", Some("e1000")).unwrap_err();
        assert!(e.contains("unknown driver `e1000`"), "{e}");
        assert!(e.contains("vionet, my-nic"), "{e}");
        let e = pick("crates/ndis", None).unwrap_err();
        assert!(e.contains("`ndis` is not a driver crate"), "{e}");
        let e = pick("elsewhere", None).unwrap_err();
        assert!(e.contains("not the directory of a workspace member"), "{e}");
    }

    #[test]
    fn a_driver_without_a_cdylib_is_refused_with_the_fix() {
        let json = br#"{"workspace_root":"/w","target_directory":"/w/target","packages":[
            {"name":"d","version":"0.1.0","manifest_path":"/w/Cargo.toml",
             "metadata":{"ndis-driver":{}},"targets":[{"name":"d","crate_types":["lib"]}]}]}"#;
        let e = Workspace::from_metadata(json).unwrap_err().to_string();
        assert!(e.contains("crate-type = [\"cdylib\", \"rlib\"]"), "{e}");
    }
}
