//! Shared test helpers: a minimal PE32+ kernel-style image (so the signing tests do not depend on
//! cross-building the driver), external tools, scratch directories and one shared certificate.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use driver_package::cert::TestCert;

pub const FILE_ALIGN: usize = 0x200;

/// A PE32+ image with one code section whose bytes derive from `seed`, so different seeds give
/// different Authenticode digests. The checksum is left at 0 (signing fixes it).
pub fn minimal_pe(seed: u8) -> Vec<u8> {
    let mut f = vec![0u8; 2 * FILE_ALIGN];
    let put16 =
        |f: &mut Vec<u8>, at: usize, v: u16| f[at..at + 2].copy_from_slice(&v.to_le_bytes());
    let put32 =
        |f: &mut Vec<u8>, at: usize, v: u32| f[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let put64 =
        |f: &mut Vec<u8>, at: usize, v: u64| f[at..at + 8].copy_from_slice(&v.to_le_bytes());
    f[0..2].copy_from_slice(b"MZ");
    put32(&mut f, 0x3C, 0x40);
    f[0x40..0x44].copy_from_slice(b"PE\0\0");
    let fh = 0x44;
    put16(&mut f, fh, 0x8664); // AMD64
    put16(&mut f, fh + 2, 1); // one section
    put16(&mut f, fh + 16, 112 + 16 * 8); // SizeOfOptionalHeader
    put16(&mut f, fh + 18, 0x2022); // EXECUTABLE_IMAGE | LARGE_ADDRESS_AWARE | DLL
    let oh = fh + 20;
    put16(&mut f, oh, 0x20B); // PE32+
    put32(&mut f, oh + 4, FILE_ALIGN as u32); // SizeOfCode
    put32(&mut f, oh + 16, 0x1000); // AddressOfEntryPoint
    put32(&mut f, oh + 20, 0x1000); // BaseOfCode
    put64(&mut f, oh + 24, 0x1_8000_0000); // ImageBase
    put32(&mut f, oh + 32, 0x1000); // SectionAlignment
    put32(&mut f, oh + 36, FILE_ALIGN as u32); // FileAlignment
    put16(&mut f, oh + 40, 10); // OS version 10.0
    put16(&mut f, oh + 48, 10); // subsystem version 10.0
    put32(&mut f, oh + 56, 0x2000); // SizeOfImage
    put32(&mut f, oh + 60, FILE_ALIGN as u32); // SizeOfHeaders
    put16(&mut f, oh + 68, 1); // NATIVE
    put16(&mut f, oh + 70, 0x1E0); // HIGH_ENTROPY_VA | DYNAMIC_BASE | FORCE_INTEGRITY | NX
    put64(&mut f, oh + 72, 0x40000);
    put64(&mut f, oh + 80, 0x1000);
    put64(&mut f, oh + 88, 0x100000);
    put64(&mut f, oh + 96, 0x1000);
    put32(&mut f, oh + 108, 16); // NumberOfRvaAndSizes
    let sh = oh + 112 + 16 * 8;
    f[sh..sh + 8].copy_from_slice(b".text\0\0\0");
    put32(&mut f, sh + 8, FILE_ALIGN as u32); // VirtualSize
    put32(&mut f, sh + 12, 0x1000); // VirtualAddress
    put32(&mut f, sh + 16, FILE_ALIGN as u32); // SizeOfRawData
    put32(&mut f, sh + 20, FILE_ALIGN as u32); // PointerToRawData
    put32(&mut f, sh + 36, 0x6000_0020); // CODE | EXECUTE | READ
    f[FILE_ALIGN] = 0xC3; // ret
    for (i, b) in f[FILE_ALIGN + 1..].iter_mut().enumerate() {
        *b = seed.wrapping_mul(31).wrapping_add(i as u8);
    }
    f
}

/// A fresh scratch directory under the target directory (kept for inspection after a failure).
pub fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("driver-package-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One certificate for all tests of a test binary: key generation is the slow part.
pub fn shared_cert() -> &'static TestCert {
    static CERT: OnceLock<TestCert> = OnceLock::new();
    CERT.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("driver-package-shared-cert");
        TestCert::load_or_create(&dir).unwrap()
    })
}

/// The certificate as PEM, for `osslsigncode verify -CAfile`.
pub fn ca_pem(cert: &TestCert, dir: &Path) -> PathBuf {
    use der::EncodePem;
    let p = dir.join("ca.pem");
    std::fs::write(&p, cert.cert.to_pem(der::pem::LineEnding::LF).unwrap()).unwrap();
    p
}

/// The external tool, or `None` (with the reason printed) when it is not installed: the only
/// case in which a test may skip.
pub fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        let p = dir.join(name);
        if p.is_file() {
            return Some(p);
        }
    }
    eprintln!("SKIPPED: `{name}` is not installed (apt-get install {name}); .ci/run installs it");
    None
}

pub fn run(cmd: &mut Command) -> (bool, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    (status.success(), text)
}

pub fn repo_inx() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../inf/vionet.inx")
}

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_driver-package"))
}
