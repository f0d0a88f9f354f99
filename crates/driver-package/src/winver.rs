//! The Windows-version contract of a driver: the minimum Windows and the NDIS range it declares
//! once, in its `Cargo.toml`:
//!
//! ```toml
//! [package.metadata.ndis-driver]
//! min-windows = "10.0.16299"   # Windows 10 1709
//! ndis = "6.20..=6.89"
//! msi = true                   # optional: the INF must set MSISupported (MSI/MSI-X drivers)
//! ```
//!
//! and the checks packaging makes against it: every import of the built image exists on
//! `min-windows` ([`check_imports`], against `ndis_sys::availability`), the lowest NDIS version of
//! the range ships with `min-windows` ([`check_ndis`]), and the INF's `[Manufacturer]`
//! decorations target exactly `min-windows` ([`decorations`], used by stamping and by the INF
//! check).

use std::path::{Path, PathBuf};

use ndis_sys::availability::{self, WINDOWS_10, WindowsVersion};

use crate::inf::Inf;
use crate::{Error, Result};

/// The table in the manifest that holds the contract.
pub const METADATA_TABLE: &str = "package.metadata.ndis-driver";

/// An NDIS version `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct NdisVersion(pub u8, pub u8);

impl std::fmt::Display for NdisVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// What a driver declares, with the lines that declare it (for error messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contract {
    pub manifest: PathBuf,
    pub package: String,
    pub min_windows: WindowsVersion,
    pub min_windows_line: usize,
    pub ndis_min: NdisVersion,
    pub ndis_max: NdisVersion,
    pub ndis_line: usize,
    /// `msi = true`: the driver uses MSI/MSI-X, so its INF must opt the device in
    /// (`MSISupported`); the INF check requires it (optional, default false).
    pub msi: bool,
}

/// `10.0.16299` (Windows 10 1709) and its release name, as messages write it.
pub fn describe(v: WindowsVersion) -> String {
    match v.release_name() {
        Some(name) => format!("{v} ({name})"),
        None => v.to_string(),
    }
}

/// Parses `major.minor.build`.
pub fn parse_windows_version(s: &str) -> std::result::Result<WindowsVersion, String> {
    let parts: Vec<&str> = s.trim().split('.').collect();
    let bad = || format!("`{s}` is not a Windows version major.minor.build (e.g. 10.0.16299)");
    let [major, minor, build] = parts.as_slice() else {
        return Err(bad());
    };
    Ok(WindowsVersion::new(
        major.parse().map_err(|_| bad())?,
        minor.parse().map_err(|_| bad())?,
        build.parse().map_err(|_| bad())?,
    ))
}

fn parse_ndis_version(s: &str) -> std::result::Result<NdisVersion, String> {
    let bad = || format!("`{s}` is not an NDIS version major.minor (e.g. 6.20)");
    let (major, minor) = s.trim().split_once('.').ok_or_else(bad)?;
    let v = NdisVersion(
        major.parse().map_err(|_| bad())?,
        minor.parse().map_err(|_| bad())?,
    );
    if availability::ndis_first_windows(v.0, v.1).is_none() {
        return Err(format!(
            "NDIS {v} is not an NDIS 6 version Windows ships (known: {})",
            availability::NDIS_RELEASES
                .iter()
                .map(|r| format!("{}.{}", r.ndis.0, r.ndis.1))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(v)
}

/// Parses `6.20..=6.89` (or a single `6.20`).
pub fn parse_ndis_range(s: &str) -> std::result::Result<(NdisVersion, NdisVersion), String> {
    let (lo, hi) = match s.split_once("..=") {
        Some((lo, hi)) => (parse_ndis_version(lo)?, parse_ndis_version(hi)?),
        None if s.contains("..") => {
            return Err(format!(
                "`{s}`: write the NDIS range inclusive, `low..=high` (e.g. 6.20..=6.89)"
            ));
        }
        None => {
            let v = parse_ndis_version(s)?;
            (v, v)
        }
    };
    if lo > hi {
        return Err(format!("`{s}`: the range is empty ({lo} is above {hi})"));
    }
    Ok((lo, hi))
}

/// 1-based line of `key = ...` inside `[package.metadata.ndis-driver]`, else of the header, else 1.
fn key_line(text: &str, key: &str) -> usize {
    let mut in_table = false;
    let mut header = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            in_table = t.trim_start_matches('[').trim_end_matches(']').trim() == METADATA_TABLE;
            if in_table {
                header = Some(i + 1);
            }
        } else if in_table
            && t.split_once('=')
                .is_some_and(|(k, _)| k.trim().trim_matches('"') == key)
        {
            return i + 1;
        }
    }
    header.unwrap_or(1)
}

impl Contract {
    /// Reads the contract from a `Cargo.toml`. Every error names the manifest and the line.
    pub fn load(manifest: &Path) -> Result<Contract> {
        let data = crate::read(manifest)?;
        let text = String::from_utf8(data)
            .map_err(|_| Error::file(manifest, "not UTF-8 text (a Cargo.toml must be)"))?;
        Self::parse(manifest, &text)
    }

    pub fn parse(manifest: &Path, text: &str) -> Result<Contract> {
        let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
                .unwrap_or(1);
            Error::at(manifest, line, format!("not valid TOML: {}", e.message()))
        })?;
        let package = doc.get("package").and_then(|p| p.as_table());
        let name = package
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
            .ok_or_else(|| Error::file(manifest, "no [package] name: not a package manifest"))?
            .to_string();
        let table = package
            .and_then(|p| p.get("metadata"))
            .and_then(|m| m.as_table())
            .and_then(|m| m.get("ndis-driver"))
            .and_then(|t| t.as_table())
            .ok_or_else(|| {
                Error::file(
                    manifest,
                    format!(
                        "package `{name}` declares no [{METADATA_TABLE}] with min-windows and ndis: \
                         every driver states the oldest Windows and the NDIS range it supports"
                    ),
                )
            })?;
        let string = |key: &str| -> Result<(String, usize)> {
            let line = key_line(text, key);
            match table.get(key) {
                Some(toml::Value::String(s)) => Ok((s.clone(), line)),
                Some(_) => Err(Error::at(
                    manifest,
                    line,
                    format!("`{key}` must be a string"),
                )),
                None => Err(Error::at(
                    manifest,
                    line,
                    format!("[{METADATA_TABLE}] has no `{key}`"),
                )),
            }
        };
        let (min_text, min_windows_line) = string("min-windows")?;
        let min_windows = parse_windows_version(&min_text)
            .map_err(|m| Error::at(manifest, min_windows_line, format!("min-windows: {m}")))?;
        if min_windows < WINDOWS_10 {
            return Err(Error::at(
                manifest,
                min_windows_line,
                format!(
                    "min-windows = {min_text}: below Windows 10 ({}); the image's subsystem \
                     version (10.0) and the catalog's OS (_v100_X64) need Windows 10",
                    describe(WINDOWS_10)
                ),
            ));
        }
        let (ndis_text, ndis_line) = string("ndis")?;
        let (ndis_min, ndis_max) = parse_ndis_range(&ndis_text)
            .map_err(|m| Error::at(manifest, ndis_line, format!("ndis: {m}")))?;
        let msi = match table.get("msi") {
            None => false,
            Some(toml::Value::Boolean(b)) => *b,
            Some(_) => {
                return Err(Error::at(
                    manifest,
                    key_line(text, "msi"),
                    "`msi` must be true or false",
                ));
            }
        };
        Ok(Contract {
            msi,
            manifest: manifest.to_path_buf(),
            package: name,
            min_windows,
            min_windows_line,
            ndis_min,
            ndis_max,
            ndis_line,
        })
    }

    fn min_text(&self) -> String {
        format!(
            "{} declares min-windows = {}",
            self.manifest.display(),
            describe(self.min_windows)
        )
    }
}

/// The lowest NDIS version of the range must ship with `min-windows`: NDIS refuses to register a
/// driver that asks for a version newer than its own.
pub fn check_ndis(c: &Contract) -> Result<()> {
    let first = availability::ndis_first_windows(c.ndis_min.0, c.ndis_min.1)
        .expect("parse_ndis_range accepts known versions only");
    if first > c.min_windows {
        return Err(Error::at(
            &c.manifest,
            c.ndis_line,
            format!(
                "ndis = \"{}..={}\": NDIS {} first ships with Windows {}, newer than min-windows = \
                 {}; lower the range's minimum to the NDIS that Windows ships or raise min-windows",
                c.ndis_min,
                c.ndis_max,
                c.ndis_min,
                describe(first),
                describe(c.min_windows)
            ),
        ));
    }
    Ok(())
}

/// One import of the image and the Windows it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportNeed {
    pub module: String,
    pub function: String,
    pub since: WindowsVersion,
}

/// Checks that every import of the image exists on the declared minimum Windows. Returns the
/// imports (with what each needs) or one error per offending import, each naming the image.
pub fn check_imports(
    image: &Path,
    data: &[u8],
    c: &Contract,
) -> std::result::Result<Vec<ImportNeed>, Vec<Error>> {
    let parsed =
        pe_check::DriverImage::parse(data).map_err(|e| vec![Error::file(image, e.to_string())])?;
    let mut needs = Vec::new();
    let mut errors = Vec::new();
    for (module, functions) in &parsed.imports {
        for function in functions {
            match availability::lookup(module, function) {
                None => errors.push(Error::file(
                    image,
                    format!(
                        "imports {module}!{function}, which the table of first-available Windows \
                         versions (crates/ndis-sys/src/availability.rs) does not list: add its row \
                         from the function's Microsoft Learn requirements"
                    ),
                )),
                Some(row) if row.since > c.min_windows => errors.push(Error::file(
                    image,
                    format!(
                        "imports {module}!{function}, first available in Windows {}, but {}: \
                         Windows older than that cannot load the image; resolve it at run time \
                         (MmGetSystemRoutineAddress) or raise min-windows",
                        describe(row.since),
                        c.min_text()
                    ),
                )),
                Some(row) => needs.push(ImportNeed {
                    module: module.clone(),
                    function: function.clone(),
                    since: row.since,
                }),
            }
        }
    }
    if errors.is_empty() {
        Ok(needs)
    } else {
        Err(errors)
    }
}

/// A `[Manufacturer]` decoration and what it becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoration {
    /// Line of the `[Manufacturer]` entry.
    pub line: usize,
    pub models: String,
    pub written: String,
    /// The decoration targeting `min-windows` (equal to `written` when it already does).
    pub stamped: String,
}

/// The target OS version a decoration names: `NTamd64.10.0...16299` -> `(10, 0, Some(16299))`;
/// `None` when it names no version at all (`NTamd64`).
fn decoration_version(
    d: &str,
) -> std::result::Result<Option<(String, String, Option<String>)>, ()> {
    let mut parts = d.split('.');
    parts.next(); // NT<arch>
    let rest: Vec<&str> = parts.collect();
    if rest.is_empty() {
        return Ok(None);
    }
    if rest.len() > 5 {
        return Err(());
    }
    let field = |i: usize| rest.get(i).map(|s| s.to_string()).filter(|s| !s.is_empty());
    Ok(Some((
        field(0).unwrap_or_default(),
        field(1).unwrap_or_default(),
        field(4),
    )))
}

/// Every `NT...` decoration of `[Manufacturer]` with its version set to `min`. A decoration that
/// already names a version must name exactly `min` (major, minor and build): anything else is an
/// error at its line, because the INF would then install on a Windows the image does not support
/// (older) or refuse one it does (newer). `min_source` says where `min` was declared.
pub fn decorations(
    inf: &Inf,
    min: WindowsVersion,
    min_source: &str,
) -> std::result::Result<Vec<Decoration>, Vec<Error>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let version = if min.build == 0 {
        format!("{}.{}", min.major, min.minor)
    } else {
        format!("{}.{}...{}", min.major, min.minor, min.build)
    };
    for e in inf.entries("Manufacturer") {
        let Some(models) = e.value(0) else { continue };
        for d in e.values.iter().skip(1) {
            if !d.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("NT")) {
                continue;
            }
            let platform = d.split('.').next().unwrap_or(d);
            let stamped = format!("{platform}.{version}");
            match decoration_version(d) {
                Ok(None) => out.push(Decoration {
                    line: e.line,
                    models: models.to_string(),
                    written: d.clone(),
                    stamped,
                }),
                Ok(Some((major, minor, build)))
                    if major == min.major.to_string()
                        && minor == min.minor.to_string()
                        && build.as_deref().unwrap_or("0") == min.build.to_string() =>
                {
                    out.push(Decoration {
                        line: e.line,
                        models: models.to_string(),
                        written: d.clone(),
                        stamped: d.clone(),
                    })
                }
                Ok(Some((major, minor, build))) => errors.push(Error {
                    file: None,
                    line: Some(e.line),
                    message: format!(
                        "[Manufacturer] decoration `{d}` targets Windows {major}.{minor}{}, but \
                         {min_source} declares min-windows = {}: write `{platform}` and let \
                         stamping add `.{version}`, or make the two agree",
                        match build {
                            Some(b) => format!(" build {b}"),
                            None => " (any build)".to_string(),
                        },
                        describe(min)
                    ),
                }),
                Err(()) => errors.push(Error {
                    file: None,
                    line: Some(e.line),
                    message: format!(
                        "[Manufacturer] decoration `{d}` has more fields than \
                         NT<arch>.<major>.<minor>.<product>.<suite>.<build>"
                    ),
                }),
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract(text: &str) -> Result<Contract> {
        Contract::parse(Path::new("Cargo.toml"), text)
    }

    const PKG: &str = "[package]\nname = \"d\"\n\n[package.metadata.ndis-driver]\n";

    #[test]
    fn reads_the_contract_and_its_lines() {
        let c = contract(&format!(
            "{PKG}min-windows = \"10.0.16299\"\nndis = \"6.20..=6.89\"\n"
        ))
        .unwrap();
        assert_eq!(c.min_windows, WindowsVersion::new(10, 0, 16299));
        assert_eq!(
            (c.ndis_min, c.ndis_max),
            (NdisVersion(6, 20), NdisVersion(6, 89))
        );
        assert_eq!((c.min_windows_line, c.ndis_line), (5, 6));
        let single = contract(&format!(
            "{PKG}min-windows = \"10.0.17763\"\nndis = \"6.82\"\n"
        ))
        .unwrap();
        assert_eq!(
            (single.ndis_min, single.ndis_max),
            (NdisVersion(6, 82), NdisVersion(6, 82))
        );
    }

    #[test]
    fn bad_declarations_name_the_line_and_reason() {
        for (body, line, reason) in [
            (
                "min-windows = \"10.0\"\nndis = \"6.20\"\n",
                5,
                "not a Windows version",
            ),
            (
                "min-windows = \"6.1.7600\"\nndis = \"6.20\"\n",
                5,
                "below Windows 10",
            ),
            ("min-windows = 10\nndis = \"6.20\"\n", 5, "must be a string"),
            ("ndis = \"6.20\"\n", 4, "has no `min-windows`"),
            (
                "min-windows = \"10.0.16299\"\nndis = \"6.21..=6.89\"\n",
                6,
                "not an NDIS 6 version",
            ),
            (
                "min-windows = \"10.0.16299\"\nndis = \"6.89..=6.20\"\n",
                6,
                "the range is empty",
            ),
            (
                "min-windows = \"10.0.16299\"\nndis = \"6.20..6.89\"\n",
                6,
                "inclusive",
            ),
        ] {
            let e = contract(&format!("{PKG}{body}")).unwrap_err();
            assert_eq!(e.line, Some(line), "{body}: {e}");
            assert!(e.message.contains(reason), "{body}: {e}");
        }
        let e = contract("[package]\nname = \"d\"\n").unwrap_err();
        assert!(
            e.message
                .contains("declares no [package.metadata.ndis-driver]"),
            "{e}"
        );
        let e = contract("[package\n").unwrap_err();
        assert_eq!(e.line, Some(1));
        assert!(e.message.contains("not valid TOML"), "{e}");
    }

    #[test]
    fn the_ndis_minimum_must_ship_with_the_minimum_windows() {
        let fits = contract(&format!(
            "{PKG}min-windows = \"10.0.16299\"\nndis = \"6.20..=6.89\"\n"
        ))
        .unwrap();
        assert!(check_ndis(&fits).is_ok());
        // 6.80 ships with 1709 itself: the boundary fits.
        let boundary = contract(&format!(
            "{PKG}min-windows = \"10.0.16299\"\nndis = \"6.80..=6.89\"\n"
        ))
        .unwrap();
        assert!(check_ndis(&boundary).is_ok());
        let too_new = contract(&format!(
            "{PKG}min-windows = \"10.0.16299\"\nndis = \"6.82..=6.89\"\n"
        ))
        .unwrap();
        let e = check_ndis(&too_new).unwrap_err();
        assert_eq!(e.line, Some(6));
        assert!(
            e.message.contains("NDIS 6.82 first ships with Windows 10.0.17763 (Windows 10 1809 / Windows Server 2019), newer than min-windows = 10.0.16299 (Windows 10 1709)"),
            "{e}"
        );
        // A server-only NDIS version is refused for the client build before it.
        let server = contract(&format!(
            "{PKG}min-windows = \"10.0.19044\"\nndis = \"6.85\"\n"
        ))
        .unwrap();
        assert!(check_ndis(&server).is_err());
    }

    #[test]
    fn decorations_are_stamped_or_must_agree() {
        let min = WindowsVersion::new(10, 0, 16299);
        let inf = Inf::parse(
            "[Manufacturer]\n%M% = Std, NTamd64, NTarm64.10.0...16299, ntx86.10.0.1..16299\n",
        );
        let d = decorations(&inf, min, "Cargo.toml").unwrap();
        let pairs: Vec<(&str, &str)> = d
            .iter()
            .map(|d| (d.written.as_str(), d.stamped.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("NTamd64", "NTamd64.10.0...16299"),
                ("NTarm64.10.0...16299", "NTarm64.10.0...16299"),
                ("ntx86.10.0.1..16299", "ntx86.10.0.1..16299"),
            ]
        );
        for bad in [
            "NTamd64.10.0...17763",
            "NTamd64.10.0",
            "NTamd64.6.1...16299",
            "NTamd64.10.0.1.2.3.4",
        ] {
            let inf = Inf::parse(&format!("[Version]\n[Manufacturer]\n%M% = Std, {bad}\n"));
            let e = decorations(&inf, min, "Cargo.toml").unwrap_err();
            assert_eq!(e.len(), 1, "{bad}");
            assert_eq!(e[0].line, Some(3), "{bad}");
            assert!(
                e[0].message.contains(&format!("`{bad}`")),
                "{bad}: {}",
                e[0]
            );
        }
        let e = decorations(
            &Inf::parse("[Manufacturer]\n%M% = Std, NTamd64.10.0...17763\n"),
            min,
            "Cargo.toml",
        )
        .unwrap_err();
        assert!(
            e[0].message.contains("targets Windows 10.0 build 17763, but Cargo.toml declares min-windows = 10.0.16299 (Windows 10 1709)"),
            "{}",
            e[0]
        );
    }
}
