//! `.inx` → `.inf`, the edits stampinf makes: `DriverVer = <date>,<version>` and
//! `CatalogFile = <name>.cat` in `[Version]`, and `$ARCH$` → the architecture in decorations.
//! Everything else (comments, layout, order) is kept so that INF errors found later still point at
//! the line the author wrote.

use ndis_sys::availability::WindowsVersion;

use crate::text::{self, Encoding};
use crate::winver::Decoration;
use crate::{Error, Result};

/// A `DriverVer` version: four 16-bit fields, as Windows compares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverVersion(pub [u16; 4]);

impl DriverVersion {
    /// Parses `a.b.c.d` (one to four fields; missing fields are 0).
    pub fn parse(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.trim().split('.').collect();
        if parts.is_empty() || parts.len() > 4 {
            return Err(Error::msg(format!(
                "driver version `{s}` must have one to four dot-separated numbers"
            )));
        }
        let mut v = [0u16; 4];
        for (i, p) in parts.iter().enumerate() {
            v[i] = p.parse().map_err(|_| {
                Error::msg(format!(
                    "driver version `{s}`: `{p}` is not a number from 0 to 65535"
                ))
            })?;
        }
        Ok(DriverVersion(v))
    }

    /// From a Cargo (semver) version: `x.y.z` becomes `x.y.z.0`. Pre-release and build metadata
    /// have no place in a four-number version and are dropped.
    pub fn from_crate_version(s: &str) -> Result<Self> {
        let core = s.split(['-', '+']).next().unwrap_or(s);
        if core.split('.').count() != 3 {
            return Err(Error::msg(format!(
                "crate version `{s}` is not of the form major.minor.patch"
            )));
        }
        Self::parse(core)
    }
}

impl std::fmt::Display for DriverVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c, d] = self.0;
        write!(f, "{a}.{b}.{c}.{d}")
    }
}

/// A `DriverVer` date, written `mm/dd/yyyy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverDate {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

impl DriverDate {
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || Error::msg(format!("date `{s}` is not a valid mm/dd/yyyy date"));
        let parts: Vec<&str> = s.trim().split('/').collect();
        let [m, d, y] = parts.as_slice() else {
            return Err(bad());
        };
        let (month, day, year): (u8, u8, u16) = (
            m.parse().map_err(|_| bad())?,
            d.parse().map_err(|_| bad())?,
            y.parse().map_err(|_| bad())?,
        );
        // der's DateTime validates the calendar (month lengths, leap years).
        der::DateTime::new(year, month, day, 0, 0, 0).map_err(|_| bad())?;
        if !(1970..=9999).contains(&year) || y.len() != 4 {
            return Err(bad());
        }
        Ok(DriverDate { year, month, day })
    }

    /// The date of a UNIX time in UTC.
    pub fn from_unix(secs: u64) -> Result<Self> {
        let dt = der::DateTime::from_unix_duration(std::time::Duration::from_secs(secs))
            .map_err(|e| Error::msg(format!("time {secs} out of range: {e}")))?;
        Ok(DriverDate {
            year: dt.year(),
            month: dt.month(),
            day: dt.day(),
        })
    }

    /// Today in UTC, or `SOURCE_DATE_EPOCH` when set so that rebuilds of the same source produce the
    /// same INF (and so the same catalog hash).
    pub fn today() -> Result<Self> {
        if let Ok(epoch) = std::env::var("SOURCE_DATE_EPOCH") {
            let secs = epoch
                .trim()
                .parse()
                .map_err(|_| Error::msg(format!("SOURCE_DATE_EPOCH=`{epoch}` is not a number")))?;
            return Self::from_unix(secs);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| Error::msg("system clock is before 1970"))?;
        Self::from_unix(now.as_secs())
    }
}

impl std::fmt::Display for DriverDate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:02}/{:02}/{:04}", self.month, self.day, self.year)
    }
}

#[derive(Debug, Clone)]
pub struct StampOptions {
    pub date: DriverDate,
    pub version: DriverVersion,
    /// Replaces `$ARCH$`: `amd64` (or `arm64`).
    pub arch: String,
    /// File name for `CatalogFile`, e.g. `vionet.cat`.
    pub catalog: String,
    /// `None`: ASCII when possible, else UTF-16LE with BOM.
    pub encoding: Option<Encoding>,
    /// The driver's minimum Windows and where it is declared (`Cargo.toml`): every `NT...`
    /// decoration of `[Manufacturer]` and its models section are stamped to target it (see
    /// [`crate::winver::decorations`]). `None` leaves decorations as written.
    pub min_windows: Option<(WindowsVersion, String)>,
}

#[derive(Debug, Clone)]
pub struct Stamped {
    pub bytes: Vec<u8>,
    pub text: String,
    pub input_encoding: Encoding,
    pub output_encoding: Encoding,
    /// The `[Manufacturer]` decorations and what they were stamped to.
    pub decorations: Vec<Decoration>,
}

/// Stamps INX bytes. Errors carry line numbers but no file; the caller adds it.
pub fn stamp(inx: &[u8], opts: &StampOptions) -> Result<Stamped> {
    let (text, input_encoding) = text::decode(inx)?;
    if opts.arch.is_empty() || !opts.arch.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(Error::msg(format!(
            "architecture `{}` is not a decoration name",
            opts.arch
        )));
    }
    let text = replace_ignore_case(&text, "$ARCH$", &opts.arch);
    let lines: Vec<&str> = text.split('\n').map(|l| l.trim_end_matches('\r')).collect();

    // [Version] and its entries as the INF reader (and so the checker) sees them: a line the
    // reader does not take for a section header (`[A]junk`) does not end the section here
    // either. A second [Version] section, or a second DriverVer or CatalogFile in it, is
    // refused: Windows merges sections of one name, and the entry left as written would sit
    // beside the stamped one.
    let inf = crate::inf::Inf::parse(&text);
    let mut versions = inf.sections_named("Version");
    let Some(version) = versions.next() else {
        return Err(Error::msg(
            "no [Version] section to stamp DriverVer and CatalogFile into",
        ));
    };
    if let Some(second) = versions.next() {
        return Err(at(
            second.line,
            format!(
                "a second [Version] section (the first is at line {}): DriverVer and CatalogFile are stamped into one",
                version.line
            ),
        ));
    }
    // The physical line after an entry (its continuation lines included), 0-based.
    let continues = |i: usize| {
        lines
            .get(i)
            .is_some_and(|l| crate::inf::strip_comment(l).trim_end().ends_with('\\'))
    };
    let after = |line: usize| {
        let mut i = line - 1;
        while continues(i) && i + 1 < lines.len() {
            i += 1;
        }
        i + 1
    };
    let end = version
        .entries
        .last()
        .map_or(version.line, |e| after(e.line));

    let driver_ver = format!("{},{}", opts.date, opts.version);
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let mut inserts = Vec::new();
    for (key, value) in [
        ("DriverVer", driver_ver),
        ("CatalogFile", opts.catalog.clone()),
    ] {
        let mut existing = version.all(key);
        match (existing.next(), existing.next()) {
            (Some(first), Some(again)) => {
                return Err(at(
                    again.line,
                    format!(
                        "{key} appears twice in [Version] (the first at line {}): only one is stamped",
                        first.line
                    ),
                ));
            }
            (Some(e), None) => {
                let i = e.line - 1;
                if continues(i) || !crate::inf::strip_comment(lines[i]).contains('=') {
                    return Err(at(
                        e.line,
                        format!("cannot stamp {key}: its entry does not fit on one line"),
                    ));
                }
                out[i] = set_value(lines[i], &value);
            }
            _ => inserts.push(format!("{key} = {value}")),
        }
    }
    let decorations = match &opts.min_windows {
        Some((min, source)) => stamp_decorations(&text, &mut out, *min, source)?,
        None => Vec::new(),
    };
    for (n, line) in inserts.into_iter().enumerate() {
        out.insert(end + n, line);
    }
    let text = out.join("\n");
    // What the reader makes of the result: one DriverVer and one CatalogFile in [Version], the
    // stamped ones. Line continuations (a trailing `\`) can join a stamped or inserted line
    // with its neighbours; such an INX is refused rather than stamped wrong.
    let stamped = crate::inf::Inf::parse(&text);
    let version = stamped.section("Version");
    for (key, value) in [
        (
            "DriverVer",
            vec![opts.date.to_string(), opts.version.to_string()],
        ),
        ("CatalogFile", vec![opts.catalog.clone()]),
    ] {
        let found: Vec<&crate::inf::Entry> = version.iter().flat_map(|s| s.all(key)).collect();
        if found.len() != 1 || found[0].values != value {
            return Err(at(
                version.map_or(1, |s| s.line),
                format!(
                    "cannot stamp {key} into [Version]: a line continuation (trailing `\\`) joins it with another line"
                ),
            ));
        }
    }
    let (bytes, output_encoding) = text::encode_for_windows(&text, opts.encoding);
    Ok(Stamped {
        bytes,
        text,
        input_encoding,
        output_encoding,
        decorations,
    })
}

/// Rewrites the `[Manufacturer]` decorations in `out` (the INX's lines, `$ARCH$` already
/// replaced) and the headers of their models sections to target `min`. Line numbers do not move.
fn stamp_decorations(
    text: &str,
    out: &mut [String],
    min: WindowsVersion,
    source: &str,
) -> Result<Vec<Decoration>> {
    let inf = crate::inf::Inf::parse(text);
    let decorations =
        crate::winver::decorations(&inf, min, source).map_err(|mut e| e.swap_remove(0))?;
    for d in decorations.iter().filter(|d| d.written != d.stamped) {
        let line = &mut out[d.line - 1];
        let code_len = crate::inf::strip_comment(line).len();
        let Some(eq) = line[..code_len].find('=') else {
            return Err(at(
                d.line,
                "cannot stamp a [Manufacturer] entry without `=`",
            ));
        };
        let mut fields: Vec<String> = line[eq + 1..code_len]
            .split(',')
            .map(str::to_string)
            .collect();
        let Some(field) = fields
            .iter_mut()
            .skip(1)
            .find(|f| f.trim().eq_ignore_ascii_case(&d.written))
        else {
            return Err(at(
                d.line,
                format!(
                    "cannot stamp decoration `{}`: it is not on the entry's first line",
                    d.written
                ),
            ));
        };
        let lead = &field[..field.len() - field.trim_start().len()];
        let trail = &field[field.trim_end().len()..];
        *field = format!("{lead}{}{trail}", d.stamped);
        *line = format!("{}={}{}", &line[..eq], fields.join(","), &line[code_len..]);
        let section = format!("{}.{}", d.models, d.written);
        for s in inf.sections_named(&section) {
            let header = &mut out[s.line - 1];
            let (Some(open), Some(close)) = (header.find('['), header.find(']')) else {
                continue;
            };
            let name = header[open + 1..close].trim();
            // Already renamed (a second [Manufacturer] entry naming the same section)?
            let Some(prefix) = name
                .len()
                .checked_sub(d.written.len())
                .and_then(|at| Some((name.get(..at)?, name.get(at..)?)))
                .filter(|(_, tail)| tail.eq_ignore_ascii_case(&d.written))
                .map(|(prefix, _)| prefix)
            else {
                continue;
            };
            *header = format!(
                "{}[{prefix}{}]{}",
                &header[..open],
                d.stamped,
                &header[close + 1..]
            );
        }
    }
    Ok(decorations)
}

fn at(line: usize, message: impl Into<String>) -> Error {
    Error {
        file: None,
        line: Some(line),
        message: message.into(),
    }
}

/// Replaces the value of `key = value ; comment`, keeping the key's spelling, the alignment before
/// `=` and the comment.
fn set_value(line: &str, value: &str) -> String {
    let comment_at = crate::inf::strip_comment(line).len();
    let (code, comment) = line.split_at(comment_at);
    let eq = code.find('=').unwrap_or(code.len());
    let after = &code[eq + 1..];
    let lead = &after[..after.len() - after.trim_start().len()];
    let lead = if lead.is_empty() { " " } else { lead };
    let mut s = format!("{}={lead}{value}", &code[..eq]);
    if !comment.is_empty() {
        s.push(' ');
        s.push_str(comment);
    }
    s
}

fn replace_ignore_case(text: &str, needle: &str, with: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let needle = needle.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (i, _) in lower.match_indices(&needle) {
        out.push_str(&text[last..i]);
        out.push_str(with);
        last = i + needle.len();
    }
    out.push_str(&text[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_dates() {
        assert_eq!(
            DriverVersion::from_crate_version("1.2.3-rc.1+x")
                .unwrap()
                .to_string(),
            "1.2.3.0"
        );
        assert!(DriverVersion::from_crate_version("1.2").is_err());
        assert!(DriverVersion::parse("1.2.3.65536").is_err());
        assert!(DriverVersion::parse("1.2.3.4.5").is_err());
        assert_eq!(DriverVersion::parse("7").unwrap().0, [7, 0, 0, 0]);
        assert_eq!(
            DriverDate::parse("02/29/2024").unwrap().to_string(),
            "02/29/2024"
        );
        for bad in ["02/30/2024", "13/01/2024", "1/1/24", "01-01-2024", "x"] {
            assert!(DriverDate::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(DriverDate::from_unix(0).unwrap().to_string(), "01/01/1970");
        assert_eq!(
            DriverDate::from_unix(1_709_208_000).unwrap().to_string(),
            "02/29/2024"
        );
    }

    #[test]
    fn set_value_keeps_layout() {
        assert_eq!(
            set_value("DriverVer   = 01/01/1970,0.0.0.0 ; c", "x"),
            "DriverVer   = x ; c"
        );
        assert_eq!(
            set_value("CatalogFile=a.cat", "b.cat"),
            "CatalogFile= b.cat"
        );
    }
}
