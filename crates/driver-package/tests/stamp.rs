//! Stamping: both input encodings, the version and date, `$ARCH$`, the output encoding, and the
//! CLI's errors.

mod common;

use driver_package::stamp::{DriverDate, DriverVersion, StampOptions, stamp};
use driver_package::text::{self, Encoding};

fn opts() -> StampOptions {
    StampOptions {
        date: DriverDate::parse("02/29/2024").unwrap(),
        version: DriverVersion::parse("1.2.3.4").unwrap(),
        arch: "amd64".into(),
        catalog: "vionet.cat".into(),
        encoding: None,
        min_windows: None,
    }
}

fn utf16(text: &str) -> Vec<u8> {
    let mut v = vec![0xFF, 0xFE];
    for u in text.encode_utf16() {
        v.extend_from_slice(&u.to_le_bytes());
    }
    v
}

fn version_value(text: &str, key: &str) -> String {
    let line = text
        .lines()
        .find(|l| {
            l.trim_start()
                .to_ascii_lowercase()
                .starts_with(&key.to_ascii_lowercase())
        })
        .unwrap_or_else(|| panic!("no {key} line in:\n{text}"));
    line.split_once('=').unwrap().1.trim().to_string()
}

#[test]
fn stamps_the_real_inx_in_both_encodings() {
    let inx = std::fs::read(common::repo_inx()).unwrap();
    let src = String::from_utf8(inx.clone()).unwrap();
    for (input, input_enc) in [
        (inx.clone(), Encoding::Utf8),
        (utf16(&src), Encoding::Utf16Le),
    ] {
        let s = stamp(&input, &opts()).unwrap();
        assert_eq!(s.input_encoding, input_enc);
        // The real INX is ASCII, so the INF is written as ASCII (what Windows reads natively).
        assert_eq!(s.output_encoding, Encoding::Utf8);
        assert!(s.bytes.is_ascii());
        let (out, _) = text::decode(&s.bytes).unwrap();
        assert_eq!(version_value(&out, "DriverVer"), "02/29/2024,1.2.3.4");
        assert_eq!(version_value(&out, "CatalogFile"), "vionet.cat");
        assert!(!out.to_ascii_lowercase().contains("$arch$"));
        // Without a declared minimum the decorations stay as written.
        assert!(out.contains("[Standard.NTamd64]\r\n"));
        assert!(out.contains("= Standard, NTamd64\r\n"));
        // Line-for-line the same as the source, so errors point at the author's lines.
        assert_eq!(out.lines().count(), src.lines().count());
        assert!(!out.replace("\r\n", "").contains('\n'), "bare LF left");
    }
}

#[test]
fn non_ascii_text_is_written_as_utf16_with_bom_and_can_be_forced() {
    let inx = "[Version]\nSignature=\"$WINDOWS NT$\"\n[Strings]\nName = \"Gerät\"\n";
    let s = stamp(inx.as_bytes(), &opts()).unwrap();
    assert_eq!(s.output_encoding, Encoding::Utf16Le);
    assert_eq!(&s.bytes[..2], &[0xFF, 0xFE]);
    let (out, enc) = text::decode(&s.bytes).unwrap();
    assert_eq!(enc, Encoding::Utf16Le);
    assert!(out.contains("Gerät"));
    // DriverVer and CatalogFile were missing: they are added to [Version].
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[2], "DriverVer = 02/29/2024,1.2.3.4");
    assert_eq!(lines[3], "CatalogFile = vionet.cat");
    assert_eq!(lines[4], "[Strings]");

    let mut forced = opts();
    forced.encoding = Some(Encoding::Utf16Le);
    let ascii = stamp(b"[Version]\r\n", &forced).unwrap();
    assert_eq!(&ascii.bytes[..2], &[0xFF, 0xFE]);
}

/// Found by the `inf` fuzz target (docs/fuzzing.md): a second `[Version]` section kept its own
/// `DriverVer` beside the stamped one.
#[test]
fn a_second_version_section_is_refused_at_its_line() {
    let inx = "[Version]\nSignature = \"$WINDOWS NT$\"\nDriverVer = 01/01/1970,0.0.0.0\n\n[Strings]\n\n[Version]\nDriverVer = 01/01/1970,0.0.0.0\n";
    for bytes in [inx.as_bytes().to_vec(), utf16(inx)] {
        let e = stamp(&bytes, &opts()).unwrap_err();
        assert_eq!(e.line, Some(7), "{e}");
        assert!(
            e.to_string()
                .contains("a second [Version] section (the first is at line 1)"),
            "{e}"
        );
    }
}

/// Found by the `inf` fuzz target: a second `DriverVer` in `[Version]` was left as written, and
/// a line the INF reader does not take for a section header (`[Strings]junk`) ended the
/// stamper's `[Version]` but not the reader's, so the `DriverVer` after it stayed beside the
/// one the stamper inserted.
#[test]
fn the_version_section_is_the_one_the_inf_reader_sees() {
    let twice = "[Version]\nSignature = \"$WINDOWS NT$\"\nDriverVer = 01/01/1970,0.0.0.0\nDriverVer = 01/01/1970,0.0.0.0\n";
    let e = stamp(twice.as_bytes(), &opts()).unwrap_err();
    assert_eq!(e.line, Some(4), "{e}");
    assert!(
        e.to_string()
            .contains("DriverVer appears twice in [Version] (the first at line 3)"),
        "{e}"
    );

    let hidden = "[Version]\nSignature = \"$WINDOWS NT$\"\n[Strings]junk\nDriverVer = 01/01/1970,0.0.0.0\nCatalogFile = old.cat\n\n[Strings]\n";
    let s = stamp(hidden.as_bytes(), &opts()).unwrap();
    let inf = driver_package::inf::Inf::parse(&s.text);
    let version = inf.section("Version").unwrap();
    let values =
        |key: &str| -> Vec<Vec<String>> { version.all(key).map(|e| e.values.clone()).collect() };
    assert_eq!(
        values("DriverVer"),
        [["02/29/2024", "1.2.3.4"]],
        "{}",
        s.text
    );
    assert_eq!(values("CatalogFile"), [["vionet.cat"]], "{}", s.text);

    let continued = "[Version]\nSignature = \"$WINDOWS NT$\"\nDriverVer = 01/01/1970,\\\n0.0.0.0\n";
    let e = stamp(continued.as_bytes(), &opts()).unwrap_err();
    assert_eq!(e.line, Some(3), "{e}");
    assert!(e.to_string().contains("does not fit on one line"), "{e}");

    // The last entry of [Version] continued by a trailing backslash: an inserted line would
    // become part of it.
    let joins = "[Version]\nSignature = \"$WINDOWS NT$\"\nProvider = ndis-rs \\";
    let e = stamp(joins.as_bytes(), &opts()).unwrap_err();
    assert_eq!(e.line, Some(1), "{e}");
    assert!(e.to_string().contains("a line continuation"), "{e}");
}

#[test]
fn bad_input_is_an_error() {
    assert!(stamp(b"[Strings]\r\na=b\r\n", &opts()).is_err());
    assert!(stamp(&[0xFF, 0xFE, 0x41], &opts()).is_err());
    assert!(stamp(&[0x5B, 0xC3, 0x28], &opts()).is_err());
    let mut bad_arch = opts();
    bad_arch.arch = "amd 64".into();
    assert!(stamp(b"[Version]\r\n", &bad_arch).is_err());
}

#[test]
fn cli_takes_the_crate_version_and_source_date_epoch() {
    let dir = common::scratch("stamp-cli");
    let out = dir.join("vionet.inf");
    let (ok, text) = common::run(
        common::bin()
            .env("SOURCE_DATE_EPOCH", "1709208000")
            .env_remove("STAMPINF_VERSION")
            .args(["stamp", "--crate-version", "3.4.5-beta.1", "-o"])
            .arg(&out)
            .arg(common::repo_inx()),
    );
    assert!(ok, "{text}");
    assert!(text.starts_with("[stamp] "), "{text}");
    let inf = String::from_utf8(std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(version_value(&inf, "DriverVer"), "02/29/2024,3.4.5.0");

    // An explicit version and date win.
    let (ok, text) = common::run(
        common::bin()
            .args([
                "stamp",
                "--crate-version",
                "3.4.5",
                "--driver-version",
                "9.8.7.6",
            ])
            .args(["--date", "12/31/2025", "-o"])
            .arg(&out)
            .arg(common::repo_inx()),
    );
    assert!(ok, "{text}");
    let inf = String::from_utf8(std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(version_value(&inf, "DriverVer"), "12/31/2025,9.8.7.6");
}

#[test]
fn cli_errors_name_the_step_and_file() {
    let dir = common::scratch("stamp-cli-errors");
    let broken = dir.join("broken.inx");
    std::fs::write(&broken, "[Strings]\r\n").unwrap();
    let (ok, text) = common::run(
        common::bin()
            .args([
                "--step",
                "stampinf",
                "stamp",
                "--crate-version",
                "1.0.0",
                "-o",
            ])
            .arg(dir.join("x.inf"))
            .arg(&broken),
    );
    assert!(!ok);
    assert!(
        text.contains(&format!(
            "[stampinf] error: {}: no [Version] section",
            broken.display()
        )),
        "{text}"
    );
    let (ok, text) = common::run(
        common::bin()
            .args(["stamp", "--driver-version", "1.2.3.70000", "-o"])
            .arg(dir.join("x.inf"))
            .arg(common::repo_inx()),
    );
    assert!(!ok);
    assert!(text.contains("70000"), "{text}");
    let (ok, text) = common::run(
        common::bin()
            .args(["stamp", "--crate-version", "1.0.0", "-o"])
            .arg(dir.join("x.inf"))
            .arg(dir.join("does-not-exist.inx")),
    );
    assert!(!ok);
    assert!(text.contains("does-not-exist.inx: cannot read"), "{text}");
}

#[test]
fn decorations_are_stamped_from_the_declared_minimum_windows() {
    let inx = "[Version]\r\nSignature=\"$WINDOWS NT$\"\r\n[Manufacturer]\r\n%M% = Std , NT$ARCH$ , NTarm64 ; two platforms\r\n\r\n[std.NT$ARCH$] ; models\r\nx = y, PCI\\VEN_1AF4&DEV_1041\r\n[Std.NTarm64]\r\n";
    let mut o = opts();
    o.min_windows = Some((
        ndis_sys::availability::WindowsVersion::new(10, 0, 16299),
        "Cargo.toml".into(),
    ));
    let s = stamp(inx.as_bytes(), &o).unwrap();
    let lines: Vec<&str> = s.text.lines().collect();
    // DriverVer and CatalogFile were added after [Version]'s last line: two lines down.
    assert_eq!(
        lines[5],
        "%M% = Std , NTamd64.10.0...16299 , NTarm64.10.0...16299 ; two platforms"
    );
    assert_eq!(lines[7], "[std.NTamd64.10.0...16299] ; models");
    assert_eq!(lines[9], "[Std.NTarm64.10.0...16299]");
    let stamped: Vec<(&str, &str)> = s
        .decorations
        .iter()
        .map(|d| (d.written.as_str(), d.stamped.as_str()))
        .collect();
    assert_eq!(
        stamped,
        [
            ("NTamd64", "NTamd64.10.0...16299"),
            ("NTarm64", "NTarm64.10.0...16299")
        ]
    );
    assert_eq!(s.text.lines().count(), inx.lines().count() + 2);

    // Two manufacturers sharing one models section: stamped once, both entries rewritten.
    let shared = "[Version]\r\n[Manufacturer]\r\n%A% = Std, NT$ARCH$\r\n%B% = Std, NT$ARCH$\r\n[Std.NT$ARCH$]\r\n";
    let s = stamp(shared.as_bytes(), &o).unwrap();
    let lines: Vec<&str> = s.text.lines().collect();
    assert_eq!(
        &lines[4..7],
        [
            "%A% = Std, NTamd64.10.0...16299",
            "%B% = Std, NTamd64.10.0...16299",
            "[Std.NTamd64.10.0...16299]"
        ]
    );

    // A decoration naming another Windows fails at its line.
    let bad = inx.replace("NTarm64 ;", "NTarm64.10.0...17763 ;");
    let e = stamp(bad.as_bytes(), &o).unwrap_err();
    assert_eq!(e.line, Some(4));
    assert!(
        e.message
            .contains("`NTarm64.10.0...17763` targets Windows 10.0 build 17763"),
        "{e}"
    );
}
