//! Cross-builds kernel images for x86_64-pc-windows-msvc and checks their PE shape with
//! `pe-check`: the reference driver (release and dev profiles) and a fixture that forces the C
//! runtime symbols. Needs the `x86_64-pc-windows-msvc` rustup target (rust-toolchain.toml lists
//! it; `.ci/run` installs it on a fresh machine).

#![cfg(not(windows))] // the builds are driven by the host-side helper of ndis-emu
use std::path::{Path, PathBuf};

use pe_check::DriverImage;

#[path = "support/workspace.rs"]
mod workspace;
use workspace::repo;

fn target_dir() -> PathBuf {
    workspace::target_dir_for("driver-image-tests")
}

/// `cargo build --target x86_64-pc-windows-msvc` of the package in `dir` (the emulator's helper,
/// which the image tests of the emulated suites share); returns the image bytes.
fn cross_build(dir: &Path, profile: &str, lib_name: &str) -> Vec<u8> {
    let image = ndis_emu::image::cross_build(dir, &target_dir(), profile, lib_name, &[]);
    std::fs::read(&image).unwrap_or_else(|e| panic!("read {}: {e}", image.display()))
}

fn assert_valid(image: &DriverImage, what: &str) {
    let violations = image.kernel_driver_violations();
    assert!(
        violations.is_empty(),
        "{what} is not a valid kernel driver image:\n{violations:#?}\n{image:#?}"
    );
}

fn imports_of<'a>(image: &'a DriverImage, dll: &str) -> &'a [String] {
    image.imports.get(dll).map(Vec::as_slice).unwrap_or(&[])
}

#[test]
fn reference_driver_release_image_is_a_kernel_driver() {
    let bytes = cross_build(repo(), "release", "vionet");
    let image = DriverImage::parse(&bytes).unwrap();
    assert_valid(&image, "vionet.sys (release)");
    let ndis = imports_of(&image, "ndis.sys");
    for f in [
        "NdisMRegisterMiniportDriver",
        "NdisMDeregisterMiniportDriver",
    ] {
        assert!(
            ndis.iter().any(|n| n == f),
            "ndis.sys!{f} not imported: {:?}",
            image.imports
        );
    }
    assert!(
        image
            .sections
            .iter()
            .any(|s| s.name == ".text" && s.executable())
    );
    // The Windows-version contract: the built image imports only what Windows 10 1709 (the
    // minimum Cargo.toml declares) exports, each import has a row in the availability table, and
    // the pool comes through MmGetSystemRoutineAddress rather than an ExAllocatePool2 import.
    let contract = driver_package::winver::Contract::load(&repo().join("Cargo.toml")).unwrap();
    assert_eq!(contract.min_windows.to_string(), "10.0.16299");
    let needs = driver_package::winver::check_imports(Path::new("vionet.sys"), &bytes, &contract)
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(
        needs.len(),
        image.imports.values().map(Vec::len).sum::<usize>(),
        "every import checked"
    );
    let kernel = imports_of(&image, "ntoskrnl.exe");
    assert!(!kernel.iter().any(|f| f == "ExAllocatePool2"), "{kernel:?}");
    for f in [
        "MmGetSystemRoutineAddress",
        "ExAllocatePoolWithTag",
        "ExFreePoolWithTag",
    ] {
        assert!(
            kernel.iter().any(|n| n == f),
            "ntoskrnl.exe!{f} not imported: {kernel:?}"
        );
    }
}

#[test]
fn reference_driver_dev_image_links_and_is_a_kernel_driver() {
    // The dev profile pulls unwind metadata that names __CxxFrameHandler3 (see km-rt).
    let bytes = cross_build(repo(), "dev", "vionet");
    assert_valid(&DriverImage::parse(&bytes).unwrap(), "vionet.sys (dev)");
}

#[test]
fn c_runtime_symbols_come_from_ntoskrnl_the_stack_probe_is_real_and_the_interrupt_layer_links() {
    let dir = repo().join("tests/fixtures/crt-probe");
    let bytes = cross_build(&dir, "release", "crt_probe");
    let image = DriverImage::parse(&bytes).unwrap();
    assert_valid(&image, "crt-probe");
    let nt = imports_of(&image, "ntoskrnl.exe");
    // A local empty __chkstk would not be imported; the real probe is ntoskrnl's.
    assert!(
        nt.iter().any(|n| n == "__chkstk"),
        "__chkstk not imported from ntoskrnl: {:?}",
        image.imports
    );
    assert!(
        nt.iter().any(|n| n == "memcpy" || n == "memset"),
        "bulk copies did not bind to ntoskrnl's memcpy/memset: {:?}",
        image.imports
    );
    assert!(
        !image.exports.contains_key("__chkstk"),
        "image defines its own __chkstk"
    );
}

/// The checker must reject what Windows would reject: mutate a good image and expect the matching
/// violation, so a green test above means something.
#[test]
fn checker_rejects_broken_images() {
    let good = cross_build(repo(), "release", "vionet");
    let pe = u32::from_le_bytes(good[0x3C..0x40].try_into().unwrap()) as usize;
    let optional = pe + 4 + 20;
    let cases: [(&str, usize, &[u8], &str); 4] = [
        (
            "subsystem WINDOWS_GUI",
            optional + 68,
            &2u16.to_le_bytes(),
            "subsystem 2",
        ),
        (
            "no FORCE_INTEGRITY",
            optional + 70,
            &0x0160u16.to_le_bytes(),
            "lacks FORCE_INTEGRITY",
        ),
        (
            "stale checksum",
            optional + 64,
            &1u32.to_le_bytes(),
            "checksum",
        ),
        (
            "entry point moved",
            optional + 16,
            &0x1001u32.to_le_bytes(),
            "entry point",
        ),
    ];
    for (what, at, bytes, expected) in cases {
        let mut image = good.clone();
        image[at..at + bytes.len()].copy_from_slice(bytes);
        let violations = DriverImage::parse(&image)
            .unwrap()
            .kernel_driver_violations();
        assert!(
            violations.iter().any(|v| v.0.contains(expected)),
            "{what}: expected a violation mentioning {expected:?}, got {violations:?}"
        );
    }
}
