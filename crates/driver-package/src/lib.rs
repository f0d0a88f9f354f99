//! Turns a cross-built driver into the package Windows installs (`.sys`, stamped `.inf`, signed
//! `.cat`, test certificate) without the WDK, so that `cargo make package` works on a Linux host
//! exactly as it does with stampinf, infverif, inf2cat and signtool on Windows.
//!
//! RustCrypto crates (`der`, `cms`, `x509-cert`, `rsa`) supply the ASN.1, the certificate and the
//! RSA signatures, and `authenticode` the PE image digest. What no crate offers is written here: the
//! INF reader and checks, the catalog's certificate trust list, Authenticode's
//! `SpcIndirectDataContent` and the insertion of a signature into a PE image.

pub mod asn1;
pub mod catalog;
pub mod cert;
pub mod check;
pub mod inf;
pub mod pe;
pub mod scaffold;
pub mod sign;
pub mod stamp;
pub mod text;
pub mod winver;
pub mod workspace;

use std::fmt;
use std::path::{Path, PathBuf};

/// A failure tied, where possible, to the file and line that caused it, because a packaging error
/// is only actionable when it says where to look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    pub message: String,
}

impl Error {
    pub fn msg(message: impl Into<String>) -> Self {
        Error {
            file: None,
            line: None,
            message: message.into(),
        }
    }

    pub fn file(file: &Path, message: impl Into<String>) -> Self {
        Error {
            file: Some(file.to_path_buf()),
            line: None,
            message: message.into(),
        }
    }

    pub fn at(file: &Path, line: usize, message: impl Into<String>) -> Self {
        Error {
            file: Some(file.to_path_buf()),
            line: Some(line),
            message: message.into(),
        }
    }

    /// Attaches a file to an error raised by code that only saw bytes.
    pub fn in_file(mut self, file: &Path) -> Self {
        if self.file.is_none() {
            self.file = Some(file.to_path_buf());
        }
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{}:{line}: {}", file.display(), self.message),
            (Some(file), None) => write!(f, "{}: {}", file.display(), self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Error {}

impl From<der::Error> for Error {
    fn from(e: der::Error) -> Self {
        Error::msg(format!("ASN.1 encoding: {e}"))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Reads a file, naming it in the error.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))
}

/// Writes a file through a temporary sibling and a rename, so that an interrupted run never leaves
/// a half-written package file that a later step would take for a good one.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::file(path, "not a file path"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    std::fs::write(&tmp, data).map_err(|e| Error::file(&tmp, format!("cannot write: {e}")))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::file(path, format!("cannot write: {e}"))
    })
}
