//! The Windows-version contract end to end through the CLI, as `cargo make package` runs it
//! (`--step check-windows-version compat`, `--step stampinf stamp --manifest`, `--step infverif
//! check --manifest`): a fixture image built here with an import table, and manifests declaring
//! a minimum Windows and an NDIS range.

mod common;

use std::path::{Path, PathBuf};

use pe_check::DriverImage;

/// Writes a `Cargo.toml` declaring `min-windows` and `ndis`; returns its path.
fn manifest(dir: &Path, min_windows: &str, ndis: &str) -> PathBuf {
    let p = dir.join("Cargo.toml");
    std::fs::write(
        &p,
        format!(
            "[package]\nname = \"fixture-driver\"\nversion = \"0.1.0\"\n\n\
             [package.metadata.ndis-driver]\nmin-windows = \"{min_windows}\"\nndis = \"{ndis}\"\n"
        ),
    )
    .unwrap();
    p
}

/// A driver image importing what vionet imports from the pool API, plus `extra` from ntoskrnl.
fn image(dir: &Path, extra: &[&str]) -> PathBuf {
    let mut kernel = vec![
        "ExAllocatePoolWithTag",
        "ExFreePoolWithTag",
        "MmGetSystemRoutineAddress",
    ];
    kernel.extend_from_slice(extra);
    let pe = common::pe_with_imports(
        7,
        &[
            (
                "ndis.sys",
                &["NdisMRegisterMiniportDriver", "NdisMQueueDpcEx"],
            ),
            ("ntoskrnl.exe", &kernel),
            ("hal.dll", &["KeStallExecutionProcessor"]),
        ],
    );
    let p = dir.join("fixture.sys");
    std::fs::write(&p, pe).unwrap();
    p
}

fn compat(manifest: &Path, image: &Path) -> (bool, String) {
    common::run(
        common::bin()
            .args(["--step", "check-windows-version", "compat", "--manifest"])
            .arg(manifest)
            .arg(image),
    )
}

/// `--step stampinf stamp --crate-version 1.0.0 --manifest MANIFEST -o OUT INX`.
fn stamp(manifest: &Path, out: &Path, inx: &Path) -> (bool, String) {
    common::run(
        common::bin()
            .args([
                "--step",
                "stampinf",
                "stamp",
                "--crate-version",
                "1.0.0",
                "--manifest",
            ])
            .arg(manifest)
            .arg("-o")
            .arg(out)
            .arg(inx),
    )
}

/// `--step STEP check --msi --manifest MANIFEST INF` (an INF or an INX).
fn check(step: &str, manifest: &Path, inf: &Path) -> (bool, String) {
    common::run(
        common::bin()
            .args(["--step", step, "check", "--msi", "--manifest"])
            .arg(manifest)
            .arg(inf),
    )
}

/// `text` holds `expected` (the whole line the CLI prints, or its start).
fn assert_says(text: &str, expected: &str) {
    assert!(
        text.contains(expected),
        "expected:\n{expected}\ngot:\n{text}"
    );
}

#[test]
fn the_fixture_generator_writes_the_import_table_it_is_asked_for() {
    let pe = common::pe_with_imports(
        1,
        &[
            ("ntoskrnl.exe", &["ExAllocatePool2", "KeBugCheckEx"]),
            ("hal.dll", &["KeStallExecutionProcessor"]),
        ],
    );
    let image = DriverImage::parse(&pe).unwrap();
    assert_eq!(
        image.imports["ntoskrnl.exe"],
        ["ExAllocatePool2", "KeBugCheckEx"]
    );
    assert_eq!(image.imports["hal.dll"], ["KeStallExecutionProcessor"]);
    assert_eq!(image.imports.len(), 2);
}

#[test]
fn an_import_newer_than_the_declared_windows_fails_with_step_file_and_reason() {
    let dir = common::scratch("compat-too-new");
    let m = manifest(&dir, "10.0.16299", "6.20..=6.89");
    let sys = image(&dir, &["ExAllocatePool2"]);
    let (ok, text) = compat(&m, &sys);
    assert!(!ok, "{text}");
    let expected = format!(
        "[check-windows-version] error: {}: imports ntoskrnl.exe!ExAllocatePool2, first available \
         in Windows 10.0.19041 (Windows 10 2004), but {} declares min-windows = 10.0.16299 \
         (Windows 10 1709)",
        sys.display(),
        m.display()
    );
    assert_says(&text, &expected);
    assert!(
        text.contains("[check-windows-version] failed (1 error)"),
        "{text}"
    );

    // Declaring Windows 10 2004 makes the same image acceptable.
    let m = manifest(&dir, "10.0.19041", "6.20..=6.89");
    let (ok, text) = compat(&m, &sys);
    assert!(ok, "{text}");
    assert!(
        text.contains("all available on 10.0.19041; the newest, ntoskrnl.exe!ExAllocatePool2, since Windows 10.0.19041 (Windows 10 2004)"),
        "{text}"
    );
}

#[test]
fn an_image_within_the_declared_windows_passes_and_says_what_it_needs() {
    let dir = common::scratch("compat-fits");
    let m = manifest(&dir, "10.0.16299", "6.20..=6.89");
    let (ok, text) = compat(&m, &image(&dir, &[]));
    assert!(ok, "{text}");
    assert!(text.contains("[check-windows-version] "), "{text}");
    assert!(
        text.contains("declares min-windows = 10.0.16299 (Windows 10 1709), NDIS 6.20..=6.89"),
        "{text}"
    );
    assert!(
        text.contains("NDIS 6.20 first ships with Windows 6.1.7600 (Windows 7): fits"),
        "{text}"
    );
    assert!(
        text.contains(
            "6 imports, all available on 10.0.16299; the newest, ndis.sys!NdisMQueueDpcEx"
        ),
        "{text}"
    );
}

#[test]
fn an_import_the_table_does_not_know_is_refused() {
    let dir = common::scratch("compat-unknown");
    let m = manifest(&dir, "10.0.26100", "6.20..=6.89");
    let (ok, text) = compat(&m, &image(&dir, &["ExAllocatePool3"]));
    assert!(!ok, "{text}");
    assert!(text.contains("imports ntoskrnl.exe!ExAllocatePool3, which the table of first-available Windows versions"), "{text}");
}

#[test]
fn an_ndis_minimum_newer_than_the_declared_windows_fails_at_its_line() {
    let dir = common::scratch("compat-ndis");
    let m = manifest(&dir, "10.0.16299", "6.82..=6.89");
    let (ok, text) = compat(&m, &image(&dir, &[]));
    assert!(!ok, "{text}");
    let expected = format!(
        "[check-windows-version] error: {}:7: ndis = \"6.82..=6.89\": NDIS 6.82 first ships with \
         Windows 10.0.17763 (Windows 10 1809 / Windows Server 2019), newer than min-windows = \
         10.0.16299 (Windows 10 1709)",
        m.display()
    );
    assert_says(&text, &expected);
}

#[test]
fn broken_inputs_get_a_clear_error() {
    let dir = common::scratch("compat-broken");
    let m = manifest(&dir, "10.0.16299", "6.20");
    let truncated = dir.join("truncated.sys");
    std::fs::write(&truncated, &common::minimal_pe(1)[..200]).unwrap();
    let (ok, text) = compat(&m, &truncated);
    assert!(!ok);
    assert!(
        text.contains(&format!(
            "error: {}: not a readable PE32+ image",
            truncated.display()
        )),
        "{text}"
    );
    let (ok, text) = compat(&dir.join("missing.toml"), &truncated);
    assert!(!ok);
    assert!(text.contains("missing.toml: cannot read"), "{text}");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[package]\nname = \"x\"\n[package.metadata.ndis-driver]\nmin-windows = \"10.0\"\nndis = \"6.20\"\n").unwrap();
    let (ok, text) = compat(&bad, &truncated);
    assert!(!ok);
    assert!(
        text.contains(&format!(
            "error: {}:4: min-windows: `10.0` is not a Windows version",
            bad.display()
        )),
        "{text}"
    );
}

#[test]
fn stamping_writes_the_declared_minimum_into_the_decorations_and_the_check_verifies_it() {
    let dir = common::scratch("compat-stamp");
    let m = manifest(&dir, "10.0.16299", "6.20..=6.89");
    let inf = dir.join("vionet.inf");
    let (ok, text) = stamp(&m, &inf, &common::repo_inx());
    assert!(ok, "{text}");
    assert!(
        text.contains("[stampinf] [Manufacturer] Standard NTamd64 -> NTamd64.10.0...16299"),
        "{text}"
    );
    let stamped = std::fs::read_to_string(&inf).unwrap();
    assert!(
        stamped.contains("%ManufacturerName% = Standard, NTamd64.10.0...16299\r\n"),
        "{stamped}"
    );
    assert!(
        stamped.contains("\r\n[Standard.NTamd64.10.0...16299]\r\n"),
        "{stamped}"
    );
    let (ok, text) = check("infverif", &m, &inf);
    assert!(ok, "{text}");

    // The same INF checked against a manifest declaring another minimum is refused at the line.
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let m2 = manifest(&other, "10.0.17763", "6.20..=6.89");
    let (ok, text) = check("infverif", &m2, &inf);
    assert!(!ok, "{text}");
    let line = stamped
        .lines()
        .position(|l| l.starts_with("%ManufacturerName%"))
        .unwrap()
        + 1;
    assert!(
        text.contains(&format!(
            "[infverif] error: {}:{line}: [Manufacturer] decoration `NTamd64.10.0...16299` targets Windows 10.0 build 16299, but {} declares min-windows = 10.0.17763",
            inf.display(),
            m2.display()
        )),
        "{text}"
    );
}

#[test]
fn a_hand_written_decoration_that_disagrees_fails_stamping_with_step_file_line_and_reason() {
    let dir = common::scratch("compat-stamp-disagrees");
    let m = manifest(&dir, "10.0.16299", "6.20..=6.89");
    let src = std::fs::read_to_string(common::repo_inx()).unwrap();
    let broken_text = src
        .replace(
            "= Standard, NT$ARCH$\n",
            "= Standard, NT$ARCH$.10.0...19041\n",
        )
        .replace("[Standard.NT$ARCH$]", "[Standard.NT$ARCH$.10.0...19041]");
    assert_ne!(broken_text, src, "the INX changed: update this test");
    let broken = dir.join("broken.inx");
    std::fs::write(&broken, &broken_text).unwrap();
    let line = broken_text
        .lines()
        .position(|l| l.contains("...19041") && !l.starts_with('['))
        .unwrap()
        + 1;
    let (ok, text) = stamp(&m, &dir.join("x.inf"), &broken);
    assert!(!ok, "{text}");
    let expected = format!(
        "[stampinf] error: {}:{line}: [Manufacturer] decoration `NTamd64.10.0...19041` targets Windows 10.0 build 19041, but {} declares min-windows = 10.0.16299 (Windows 10 1709)",
        broken.display(),
        m.display()
    );
    assert_says(&text, &expected);
    // The INX check refuses it too (cargo make package runs it before touching the package).
    let (ok, text) = check("infverif-inx", &m, &broken);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!(
            "[infverif-inx] error: {}:{line}: [Manufacturer] decoration `NT$ARCH$.10.0...19041` targets Windows 10.0 build 19041",
            broken.display()
        )),
        "{text}"
    );
    // The real INX names no version: the INX check accepts it.
    let (ok, text) = check("infverif-inx", &m, &common::repo_inx());
    assert!(ok, "{text}");
    // Agreeing with the manifest, the hand-written decoration is kept.
    let agreeing = dir.join("agreeing.inx");
    std::fs::write(&agreeing, broken_text.replace("19041", "16299")).unwrap();
    let (ok, text) = stamp(&m, &dir.join("y.inf"), &agreeing);
    assert!(ok, "{text}");
    assert!(
        std::fs::read_to_string(dir.join("y.inf"))
            .unwrap()
            .contains("[Standard.NTamd64.10.0...16299]")
    );
}

#[test]
fn docs_packaging_lists_every_row_of_the_availability_table() {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/packaging.md"),
    )
    .unwrap();
    for row in ndis_sys::availability::IMPORTS {
        let cell = format!(
            "| `{}` | `{}` | {} ({}) | ",
            row.module,
            row.function,
            row.since,
            row.since.release_name().unwrap()
        );
        assert!(
            doc.lines().any(|l| l.starts_with(&cell)),
            "docs/packaging.md lacks the row {cell}"
        );
    }
}
