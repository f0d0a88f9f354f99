//! The PE loader on the images that ship: the loopback sample's and the reference driver's
//! release images, cross-built for `x86_64-pc-windows-msvc` once per test process. Mapping,
//! relocation, protections and import binding are checked here without running image code; the
//! loopback suite (`samples/loopback/tests/emulated.rs`) runs them.
#![cfg(not(windows))]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ndis_emu::{Config, Emulator, LoadError, win64_exports};
use ndis_sys as sys;

#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn build(dir: &Path, lib: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"))
        .join("driver-image-tests");
    ndis_emu::image::cross_build(dir, &target, "release", lib, &[])
}

fn loopback() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| build(&repo().join("samples/loopback"), "loopback_miniport"))
}

fn vionet() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| build(&repo(), "vionet"))
}

/// `(start, end, perms)` of this process's mappings inside `range`.
fn mappings_in(range: std::ops::Range<usize>) -> Vec<(usize, usize, String)> {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (s, e) = f.next()?.split_once('-')?;
            let (s, e) = (
                usize::from_str_radix(s, 16).ok()?,
                usize::from_str_radix(e, 16).ok()?,
            );
            let perms = f.next()?.to_string();
            (s < range.end && e > range.start).then_some((s, e, perms))
        })
        .collect()
}

fn perms_at(address: usize) -> String {
    mappings_in(address..address + 1)
        .first()
        .map(|m| m.2[..3].to_string())
        .unwrap_or_default()
}

#[test]
fn the_release_images_map_relocated_with_section_protections_and_every_import_bound() {
    // vionet has a stack frame over a page (its `__chkstk` probe); the loopback sample has none
    // since the framework's halt stopped sorting (a stable sort's 4 KiB stack buffer).
    for (path, crt) in [
        (
            loopback(),
            &["memcpy", "memset", "ExAllocatePoolWithTag"][..],
        ),
        (
            vionet(),
            &["__chkstk", "memcpy", "memset", "ExAllocatePoolWithTag"][..],
        ),
    ] {
        let emu = Emulator::new(Config::default());
        let image = emu.load_image(path).expect("load");
        assert_ne!(image.base as u64, image.preferred_base, "relocated");
        assert!(image.relocations > 0, "{}: DIR64 relocations", image.name);
        let exports = win64_exports();
        for i in &image.imports {
            let e = exports
                .iter()
                .find(|e| e.module.eq_ignore_ascii_case(&i.module) && e.name == i.function)
                .unwrap_or_else(|| panic!("{}!{} bound to nothing", i.module, i.function));
            assert_eq!(e.address, i.address, "{}!{}", i.module, i.function);
        }
        for &f in crt {
            assert!(
                image
                    .imports
                    .iter()
                    .any(|i| i.module == "ntoskrnl.exe" && i.function == f),
                "{}: ntoskrnl.exe!{f} imported: {:?}",
                image.name,
                image.imports
            );
        }
        assert!(
            image
                .imports
                .iter()
                .any(|i| i.module == "ndis.sys" && i.function == "NdisMRegisterMiniportDriver")
        );
        // Protections follow the section flags; the headers are read-only.
        assert_eq!(perms_at(image.base), "r--", "headers");
        for s in &image.sections {
            let want = match (s.writable, s.executable) {
                (false, true) => "r-x",
                (true, false) => "rw-",
                (false, false) => "r--",
                (true, true) => panic!("{}: {} is writable and executable", image.name, s.name),
            };
            assert_eq!(perms_at(s.address), want, "{} {}", image.name, s.name);
        }
        assert!(image.is_code(image.entry() as usize));
        assert_eq!(
            ndis_emu::image::image_containing(image.base + 10),
            Some(image.range())
        );
        // No load configuration directory in these images: no /GS cookie to set.
        assert_eq!(image.security_cookie, None);
        // Unloading (here: dropping the emulator without a driver) unmaps it.
        drop(emu);
        assert!(mappings_in(image.range()).is_empty(), "unmapped");
        assert_eq!(ndis_emu::image::image_containing(image.base + 10), None);
    }
}

/// Replaces the NUL-terminated `from` in the image's bytes (an import's hint/name entry) by
/// `to` (not longer).
fn rename_import(bytes: &mut [u8], from: &str, to: &str) {
    assert!(to.len() <= from.len());
    let needle = [from.as_bytes(), b"\0"].concat();
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{from} not in the image"));
    bytes[at..at + needle.len()].fill(0);
    bytes[at..at + to.len()].copy_from_slice(to.as_bytes());
}

#[test]
fn an_import_the_emulator_lacks_fails_the_load_naming_module_and_function() {
    let mut bytes = std::fs::read(loopback()).unwrap();
    rename_import(&mut bytes, "NdisGetVersion", "NdisGetVersio2");
    let emu = Emulator::new(Config::default());
    let err = emu.load_image_bytes("renamed.sys", &bytes).unwrap_err();
    let LoadError::MissingImport {
        module, function, ..
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(
        (module.as_str(), function.as_str()),
        ("ndis.sys", "NdisGetVersio2")
    );
    let text = err.to_string();
    assert!(
        text.contains("ndis.sys!NdisGetVersio2") && text.contains("Code 39"),
        "{text}"
    );
}

#[test]
fn an_import_newer_than_the_emulated_windows_fails_the_load() {
    let mut bytes = std::fs::read(loopback()).unwrap();
    rename_import(&mut bytes, "ExAllocatePoolWithTag", "ExAllocatePool2");
    // Windows 11 has it: the image loads.
    let emu = Emulator::new(Config::default());
    emu.load_image_bytes("pool2.sys", &bytes)
        .expect("ExAllocatePool2 exists on Windows 11");
    drop(emu);
    let emu = Emulator::new(Config {
        windows_version: sys::availability::WINDOWS_10_1709,
        ..Config::default()
    });
    let err = emu.load_image_bytes("pool2.sys", &bytes).unwrap_err();
    assert!(
        matches!(&err, LoadError::MissingImport { module, function, reason }
            if module == "ntoskrnl.exe" && function == "ExAllocatePool2" && reason.contains("10.0.19041")),
        "{err}"
    );
}

#[test]
fn files_that_are_not_driver_images_are_refused_with_the_reason() {
    let emu = Emulator::new(Config::default());
    let err = emu
        .load_image(std::env::current_exe().unwrap())
        .unwrap_err();
    assert!(matches!(err, LoadError::NotPe(_)), "an ELF file: {err}");
    let err = emu.load_image("/nonexistent/driver.sys").unwrap_err();
    assert!(matches!(err, LoadError::Io { .. }), "{err}");
    // A PE image for the Windows GUI subsystem is an application, not a driver.
    let mut bytes = std::fs::read(loopback()).unwrap();
    let pe = u32::from_le_bytes(bytes[0x3C..0x40].try_into().unwrap()) as usize;
    let subsystem = pe + 4 + 20 + 68;
    bytes[subsystem..subsystem + 2].copy_from_slice(&2u16.to_le_bytes());
    let err = emu.load_image_bytes("app.exe", &bytes).unwrap_err();
    assert!(
        matches!(&err, LoadError::NotDriver(why) if why.contains("subsystem 2")),
        "{err}"
    );
    // An ARM64 image.
    let mut bytes = std::fs::read(loopback()).unwrap();
    bytes[pe + 4..pe + 6].copy_from_slice(&0xAA64u16.to_le_bytes());
    let err = emu.load_image_bytes("arm64.sys", &bytes).unwrap_err();
    assert!(
        matches!(err, LoadError::NotPe(_) | LoadError::NotDriver(_)),
        "{err}"
    );
}
