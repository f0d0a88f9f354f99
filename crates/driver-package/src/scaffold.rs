//! `cargo make new-driver NAME [--pci VVVV:DDDD]`: a new driver crate in `samples/NAME/`, a
//! workspace member that builds for `x86_64-pc-windows-msvc`, passes its emulator tests and
//! packages out of the box. The files come from `templates/new-driver/`; each says what to change.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The PCI ID a scaffold gets without `--pci` (a placeholder: change it to your device's).
pub const DEFAULT_PCI_ID: (u16, u16) = (0x1234, 0x5678);

const TEMPLATES: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../templates/new-driver/Cargo.toml.in"),
    ),
    (
        "build.rs",
        include_str!("../templates/new-driver/build.rs.in"),
    ),
    (
        "Makefile.toml",
        include_str!("../templates/new-driver/Makefile.toml.in"),
    ),
    (
        "src/lib.rs",
        include_str!("../templates/new-driver/lib.rs.in"),
    ),
    (
        "tests/emulated.rs",
        include_str!("../templates/new-driver/emulated.rs.in"),
    ),
    (
        "inf/__IMAGE__.inx",
        include_str!("../templates/new-driver/driver.inx.in"),
    ),
];

/// What a scaffold is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scaffold {
    /// The package name (`my-nic`).
    pub name: String,
    /// The image (library) name (`my_nic`).
    pub image: String,
    pub vendor: u16,
    pub device: u16,
}

/// `VVVV:DDDD` (hex) as (vendor, device).
pub fn parse_pci_id(s: &str) -> Result<(u16, u16)> {
    let bad = || {
        Error::msg(format!(
            "--pci {s}: expected VVVV:DDDD, the vendor and device IDs in hex (e.g. 8086:100E)"
        ))
    };
    let (v, d) = s.split_once(':').ok_or_else(bad)?;
    let hex = |x: &str| {
        (x.len() == 4)
            .then(|| u16::from_str_radix(x, 16).ok())
            .flatten()
    };
    let (vendor, device) = (hex(v).ok_or_else(bad)?, hex(d).ok_or_else(bad)?);
    if vendor == 0xFFFF || vendor == 0 {
        return Err(Error::msg(format!(
            "--pci {s}: vendor ID {vendor:04X} is not a valid PCI vendor"
        )));
    }
    Ok((vendor, device))
}

impl Scaffold {
    /// Checks `name` is a crate name a driver can have.
    pub fn new(name: &str, pci: Option<&str>) -> Result<Scaffold> {
        let ok = !name.is_empty()
            && name.len() <= 48
            && name.as_bytes()[0].is_ascii_lowercase()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            && !name.ends_with(['-', '_']);
        if !ok {
            return Err(Error::msg(format!(
                "`{name}` cannot name a driver crate: use lowercase letters, digits, `-` and `_`, \
                 starting with a letter (e.g. `acme-nic`)"
            )));
        }
        let (vendor, device) = match pci {
            Some(p) => parse_pci_id(p)?,
            None => DEFAULT_PCI_ID,
        };
        Ok(Scaffold {
            name: name.to_string(),
            image: name.replace('-', "_"),
            vendor,
            device,
        })
    }

    /// A four-character pool tag from the name.
    pub fn pool_tag(&self) -> String {
        let mut tag: String = self
            .image
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(4)
            .collect();
        while tag.len() < 4 {
            tag.push('_');
        }
        tag
    }

    fn fill(&self, text: &str) -> String {
        text.replace("__CRATE__", &self.name)
            .replace("__IMAGE__", &self.image)
            .replace("__VENDOR__", &format!("{:04X}", self.vendor))
            .replace("__DEVICE__", &format!("{:04X}", self.device))
            .replace("__TAG__", &self.pool_tag())
    }

    /// The files of the crate: (path relative to its directory, contents).
    pub fn files(&self) -> Vec<(String, String)> {
        TEMPLATES
            .iter()
            .map(|(path, text)| (self.fill(path), self.fill(text)))
            .collect()
    }

    /// Writes `samples/<name>/` in `workspace` and adds it to the workspace members. Returns the
    /// crate's directory.
    pub fn create(&self, workspace: &Path) -> Result<PathBuf> {
        let manifest = workspace.join("Cargo.toml");
        let text = String::from_utf8(crate::read(&manifest)?)
            .map_err(|_| Error::file(&manifest, "not UTF-8"))?;
        let member = format!("samples/{}", self.name);
        let updated = add_member(&manifest, &text, &member)?;
        let dir = workspace.join(&member);
        if dir.exists() {
            return Err(Error::file(
                &dir,
                "already exists: pick another name or remove it",
            ));
        }
        for (path, contents) in self.files() {
            let at = dir.join(path);
            if let Some(parent) = at.parent() {
                std::fs::create_dir_all(parent).map_err(|e| {
                    Error::file(parent, format!("cannot create the directory: {e}"))
                })?;
            }
            crate::write_atomic(&at, contents.as_bytes())?;
        }
        crate::write_atomic(&manifest, updated.as_bytes())?;
        Ok(dir)
    }
}

/// `text` (a workspace Cargo.toml) with `member` appended to `[workspace] members`.
pub fn add_member(manifest: &Path, text: &str, member: &str) -> Result<String> {
    let doc: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| Error::file(manifest, format!("not valid TOML: {e}")))?;
    let members = doc
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(|m| m.as_array())
        .ok_or_else(|| Error::file(manifest, "no [workspace] members array"))?;
    if members.iter().any(|m| m.as_str() == Some(member)) {
        return Err(Error::file(
            manifest,
            format!("`{member}` is already a workspace member"),
        ));
    }
    let start = text
        .find("\nmembers = [")
        .map(|i| i + 1)
        .or_else(|| text.starts_with("members = [").then_some(0))
        .ok_or_else(|| Error::file(manifest, "cannot find a `members = [` line in [workspace]"))?;
    let close = text[start..]
        .find(']')
        .map(|i| start + i)
        .ok_or_else(|| Error::file(manifest, "unterminated members array"))?;
    let before = text[..close].trim_end();
    let sep = if before.ends_with('[') || before.ends_with(',') {
        ""
    } else {
        ","
    };
    let out = format!("{before}{sep} \"{member}\"{}", &text[close..]);
    // The edit must be what it claims: the same document plus one member.
    let check: toml::Table = out
        .parse()
        .map_err(|e: toml::de::Error| Error::file(manifest, format!("edit broke the TOML: {e}")))?;
    let n = check["workspace"]["members"].as_array().map(Vec::len);
    if n != Some(members.len() + 1) {
        return Err(Error::file(
            manifest,
            "could not add the member to [workspace] members",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_are_checked() {
        let s = Scaffold::new("acme-nic", Some("8086:100e")).unwrap();
        assert_eq!(s.image, "acme_nic");
        assert_eq!((s.vendor, s.device), (0x8086, 0x100E));
        assert_eq!(s.pool_tag(), "acme");
        assert_eq!(Scaffold::new("x", None).unwrap().pool_tag(), "x___");
        for bad in ["", "Acme", "1nic", "nic-", "a b", "ä"] {
            assert!(Scaffold::new(bad, None).is_err(), "{bad:?}");
        }
        for bad in ["8086", "8086:10", "zzzz:0001", "FFFF:0001", "8086:100E:1"] {
            assert!(parse_pci_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_placeholder_is_filled() {
        let s = Scaffold::new("acme-nic", Some("8086:100E")).unwrap();
        let files = s.files();
        for (path, text) in &files {
            assert!(
                !path.contains("__") && !text.contains("__CRATE__"),
                "{path}"
            );
            for p in ["__IMAGE__", "__VENDOR__", "__DEVICE__", "__TAG__"] {
                assert!(!text.contains(p), "{path} still has {p}");
            }
        }
        let inx = &files
            .iter()
            .find(|(p, _)| p == "inf/acme_nic.inx")
            .unwrap()
            .1;
        assert!(inx.contains(r"PCI\VEN_8086&DEV_100E"), "{inx}");
        let lib = &files.iter().find(|(p, _)| p == "src/lib.rs").unwrap().1;
        assert!(lib.contains("pub const VENDOR_ID: u16 = 0x8086;"));
        assert!(lib.contains("PoolTag::new(*b\"acme\")"));
    }

    #[test]
    fn the_member_is_appended_to_the_workspace() {
        let m = Path::new("Cargo.toml");
        let text = "[workspace]\nmembers = [\".\", \"crates/a\"]\nresolver = \"3\"\n";
        let out = add_member(m, text, "samples/b").unwrap();
        assert_eq!(
            out,
            "[workspace]\nmembers = [\".\", \"crates/a\", \"samples/b\"]\nresolver = \"3\"\n"
        );
        let multi = "[workspace]\nmembers = [\n    \"a\",\n]\n";
        let out = add_member(m, multi, "samples/b").unwrap();
        assert!(out.contains("\"a\", \"samples/b\"]"), "{out}");
        assert!(
            add_member(m, &out, "samples/b")
                .unwrap_err()
                .to_string()
                .contains("already")
        );
    }
}
