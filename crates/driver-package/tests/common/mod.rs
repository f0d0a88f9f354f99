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

/// [`minimal_pe`] with a second, read-only section holding an import table that names
/// `imports` (module, functions): what a linker writes for `raw-dylib` imports (descriptors, one
/// lookup table and one address table per module, hint/name entries, module names).
pub fn pe_with_imports(seed: u8, imports: &[(&str, &[&str])]) -> Vec<u8> {
    const RVA: u32 = 0x2000;
    let mut f = minimal_pe(seed);
    // Section data: descriptors first (one per module + the null one), then per module its
    // lookup table, address table, name and hint/name entries.
    let descriptors = 20 * (imports.len() + 1);
    let mut data = vec![0u8; descriptors];
    let mut iat_range: Option<(u32, u32)> = None;
    for (i, (module, functions)) in imports.iter().enumerate() {
        let table_len = 8 * (functions.len() + 1);
        let ilt = data.len();
        data.resize(ilt + table_len, 0);
        let iat = data.len();
        data.resize(iat + table_len, 0);
        let name = data.len();
        data.extend_from_slice(module.as_bytes());
        data.push(0);
        let mut hint_names = Vec::new();
        for function in *functions {
            if data.len() % 2 == 1 {
                data.push(0);
            }
            hint_names.push(data.len());
            data.extend_from_slice(&0u16.to_le_bytes());
            data.extend_from_slice(function.as_bytes());
            data.push(0);
        }
        for (k, hn) in hint_names.iter().enumerate() {
            let entry = (RVA as u64 + *hn as u64).to_le_bytes();
            data[ilt + 8 * k..ilt + 8 * k + 8].copy_from_slice(&entry);
            data[iat + 8 * k..iat + 8 * k + 8].copy_from_slice(&entry);
        }
        let d = 20 * i;
        data[d..d + 4].copy_from_slice(&(RVA + ilt as u32).to_le_bytes()); // OriginalFirstThunk
        data[d + 12..d + 16].copy_from_slice(&(RVA + name as u32).to_le_bytes()); // Name
        data[d + 16..d + 20].copy_from_slice(&(RVA + iat as u32).to_le_bytes()); // FirstThunk
        let (start, end) = iat_range.unwrap_or((RVA + iat as u32, 0));
        iat_range = Some((start, end.max(RVA + (iat + table_len) as u32)));
    }
    let raw_size = data.len().div_ceil(FILE_ALIGN) * FILE_ALIGN;
    data.resize(raw_size, 0);
    let raw_at = f.len();
    f.extend_from_slice(&data);
    let put16 =
        |f: &mut Vec<u8>, at: usize, v: u16| f[at..at + 2].copy_from_slice(&v.to_le_bytes());
    let put32 =
        |f: &mut Vec<u8>, at: usize, v: u32| f[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let fh = 0x44;
    let oh = fh + 20;
    put16(&mut f, fh + 2, 2); // two sections
    put32(
        &mut f,
        oh + 56,
        RVA + (raw_size as u32).next_multiple_of(0x1000),
    ); // SizeOfImage
    let dirs = oh + 112;
    put32(&mut f, dirs + 8, RVA); // import directory
    put32(&mut f, dirs + 12, descriptors as u32);
    if let Some((start, end)) = iat_range {
        put32(&mut f, dirs + 12 * 8, start); // IAT directory
        put32(&mut f, dirs + 12 * 8 + 4, end - start);
    }
    let sh = oh + 112 + 16 * 8 + 40;
    f[sh..sh + 8].copy_from_slice(b".idata\0\0");
    put32(&mut f, sh + 8, data.len() as u32); // VirtualSize
    put32(&mut f, sh + 12, RVA); // VirtualAddress
    put32(&mut f, sh + 16, raw_size as u32); // SizeOfRawData
    put32(&mut f, sh + 20, raw_at as u32); // PointerToRawData
    put32(&mut f, sh + 36, 0x4000_0040); // INITIALIZED_DATA | READ
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

/// The external tool. A missing one fails the test with what to install, unless
/// `NDIS_ALLOW_MISSING_TOOLS=1` says to skip what needs it (`None`, with SKIPPED printed): a
/// check that silently did not run would pass for nothing.
pub fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join(name);
        if p.is_file() {
            return Some(p);
        }
    }
    let install =
        format!("`{name}` is not installed: apt-get install {name} (.ci/run installs it)");
    if std::env::var_os("NDIS_ALLOW_MISSING_TOOLS").is_some_and(|v| v == "1") {
        eprintln!("SKIPPED (NDIS_ALLOW_MISSING_TOOLS=1): {install}");
        return None;
    }
    panic!("{install}; or set NDIS_ALLOW_MISSING_TOOLS=1 to skip the checks that need it");
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
