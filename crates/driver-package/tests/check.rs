//! INF checks: the real INX and its stamped INF pass; each way of breaking it is reported at the
//! line that was broken, with the reason.

mod common;

use driver_package::check::{CheckOptions, Finding, Stage, check};

fn real_inx() -> String {
    std::fs::read_to_string(common::repo_inx()).unwrap()
}

fn inx_opts(msi: bool) -> CheckOptions {
    CheckOptions {
        stage: Stage::Inx,
        msi,
        arch: "amd64".into(),
    }
}

/// Whether a line matches a pattern: a substring, or with a trailing `$` a line ending.
fn matches(line: &str, pattern: &str) -> bool {
    match pattern.strip_suffix('$') {
        Some(end) => line.trim_end().ends_with(end),
        None => line.contains(pattern),
    }
}

/// 1-based number of the first line of `text` that matches `pattern`.
fn line_of(text: &str, pattern: &str) -> usize {
    text.lines()
        .position(|l| matches(l, pattern))
        .unwrap_or_else(|| panic!("`{pattern}` not found"))
        + 1
}

/// Replaces the one line matching `from` with `to` (which may be empty or several lines).
fn replace_line(text: &str, from: &str, to: &str) -> String {
    let n = text.lines().filter(|l| matches(l, from)).count();
    assert_eq!(n, 1, "`{from}` must match one line");
    text.lines()
        .map(|l| {
            if matches(l, from) {
                to.to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_real_inx_and_its_stamped_inf_pass() {
    let inx = real_inx();
    assert_eq!(check(&inx, &inx_opts(true)), Vec::<Finding>::new());
    let opts = driver_package::stamp::StampOptions {
        date: driver_package::stamp::DriverDate::parse("01/02/2026").unwrap(),
        version: driver_package::stamp::DriverVersion::parse("0.1.0.0").unwrap(),
        arch: "amd64".into(),
        catalog: "vionet.cat".into(),
        encoding: None,
        min_windows: Some((
            driver_package::winver::Contract::load(
                &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml"),
            )
            .unwrap()
            .min_windows,
            "Cargo.toml".into(),
        )),
    };
    let inf = driver_package::stamp::stamp(inx.as_bytes(), &opts)
        .unwrap()
        .text;
    let stamped = CheckOptions {
        stage: Stage::Inf,
        msi: true,
        arch: "amd64".into(),
    };
    assert_eq!(check(&inf, &stamped), Vec::<Finding>::new());
    // The unstamped INX is not an installable INF: `$ARCH$` is left.
    let findings = check(&inx, &stamped);
    assert!(
        findings.iter().any(|f| f.message.contains("$ARCH$")),
        "{findings:?}"
    );
}

struct Case {
    what: &'static str,
    /// (line containing this, replacement)
    edit: (&'static str, &'static str),
    /// The finding's line is the line of this text in the edited file ("" = the replaced line).
    at: &'static str,
    reason: &'static str,
    msi: bool,
}

/// For findings about something absent from the whole file.
const FIRST_LINE: &str = "<line 1>";

const CASES: &[Case] = &[
    Case {
        what: "Class is not Net",
        edit: ("Class       = Net", "Class       = NetService"),
        at: "",
        reason: "an NDIS miniport installs in Class = Net",
        msi: false,
    },
    Case {
        what: "ClassGuid of another class",
        edit: (
            "ClassGUID   = {4d36e972",
            "ClassGUID   = {4d36e97d-e325-11ce-bfc1-08002be10318}",
        ),
        at: "",
        reason: "is the GUID of class System, not of Class = Net",
        msi: false,
    },
    Case {
        what: "ClassGuid typo",
        edit: (
            "ClassGUID   = {4d36e972",
            "ClassGUID   = {4d36e972-e325-11ce-bfc1-08002be10319}",
        ),
        at: "",
        reason: "does not match Class = Net",
        msi: false,
    },
    Case {
        what: "missing [Version]",
        edit: ("[Version]", "[Versio]"),
        at: FIRST_LINE,
        reason: "missing section [Version]",
        msi: false,
    },
    Case {
        what: "missing NDIS keyword",
        edit: ("*IfType            = 6", ""),
        at: "[vionet.ndi.NT]",
        reason: "lacks the NDIS keyword *IfType",
        msi: false,
    },
    Case {
        what: "missing *PhysicalMediaType",
        edit: ("*PhysicalMediaType = 14", ""),
        at: "[vionet.ndi.NT]",
        reason: "lacks the NDIS keyword *PhysicalMediaType",
        msi: false,
    },
    Case {
        what: "service without SPSVCINST_ASSOCSERVICE",
        edit: (
            "AddService = vionet, 2,",
            "AddService = vionet, 0, vionet.Service, vionet.EventLog",
        ),
        at: "",
        reason: "lacks the 0x2 flag (SPSVCINST_ASSOCSERVICE)",
        msi: false,
    },
    Case {
        what: "missing Services section",
        edit: ("[vionet.ndi.NT.Services]", "[vionet.ndi.NT.Servicez]"),
        at: "[vionet.ndi.NT]",
        reason: "missing section [vionet.ndi.NT.Services]",
        msi: false,
    },
    Case {
        what: "hardware ID with a short device ID",
        edit: (
            "vionet.ndi, PCI\\VEN_1AF4&DEV_1041$",
            "%vionet.DeviceDesc% = vionet.ndi, PCI\\VEN_1AF4&DEV_41",
        ),
        at: "",
        reason: "DEV_ needs 4 hex digits, found `41`",
        msi: false,
    },
    Case {
        what: "hardware ID without enumerator",
        edit: (
            "vionet.ndi, PCI\\VEN_1AF4&DEV_1041$",
            "%vionet.DeviceDesc% = vionet.ndi, VEN_1AF4&DEV_1041",
        ),
        at: "",
        reason: "has no enumerator",
        msi: false,
    },
    Case {
        what: "MSI driver without the .HW AddReg",
        edit: ("AddReg = vionet.EnableMSI", ""),
        at: "[vionet.ndi.NT.HW]",
        reason: "the driver uses MSI but [vionet.ndi.NT.HW] does not set",
        msi: true,
    },
    Case {
        what: "MSI driver without the .HW section",
        edit: ("[vionet.ndi.NT.HW]", "[unused.HW]"),
        at: "[vionet.ndi.NT]",
        reason: "the driver uses MSI but [vionet.ndi.NT.HW] is missing",
        msi: true,
    },
    Case {
        what: "MSISupported = 0",
        edit: (
            "MSISupported,       0x00010001, 1",
            "HKR, \"Interrupt Management\\MessageSignaledInterruptProperties\", MSISupported, 0x00010001, 0",
        ),
        at: "",
        reason: "MSISupported must be 1",
        msi: false,
    },
    Case {
        what: "undefined string",
        edit: (
            "Provider    = %ProviderName%",
            "Provider    = %NoSuchString%",
        ),
        at: "",
        reason: "%NoSuchString% is not defined in [Strings]",
        msi: false,
    },
    Case {
        what: "no $ARCH$ decoration",
        edit: (
            "%ManufacturerName% = Standard, NT$ARCH$$", // `$` at the end: the line ends so
            "%ManufacturerName% = Standard",
        ),
        at: "",
        reason: "has no NT$ARCH$ decoration",
        msi: false,
    },
    Case {
        what: "not a kernel driver service",
        edit: ("ServiceType    = 1", "ServiceType    = 16"),
        at: "",
        reason: "ServiceType must be 1",
        msi: false,
    },
    Case {
        what: "missing Ndi\\Interfaces",
        edit: ("HKR, Ndi\\Interfaces, LowerRange", ""),
        at: "[vionet.ndi.NT]",
        reason: "does not set HKR,Ndi\\Interfaces,LowerRange",
        msi: false,
    },
];

#[test]
fn each_broken_inx_is_reported_at_its_line_with_the_reason() {
    let inx = real_inx();
    for case in CASES {
        let broken = replace_line(&inx, case.edit.0, case.edit.1);
        let expected_line = if case.at == FIRST_LINE {
            1
        } else if case.at.is_empty() {
            // The replaced line keeps its number.
            line_of(&inx, case.edit.0)
        } else {
            line_of(&broken, case.at)
        };
        let findings = check(&broken, &inx_opts(case.msi));
        assert!(
            findings
                .iter()
                .any(|f| f.line == expected_line && f.message.contains(case.reason)),
            "{}: expected line {expected_line} `{}`, got {findings:#?}",
            case.what,
            case.reason
        );
    }
}

#[test]
fn msi_keys_are_required_only_for_msi_drivers() {
    let broken = replace_line(&real_inx(), "AddReg = vionet.EnableMSI", "");
    assert!(check(&broken, &inx_opts(false)).is_empty());
    assert!(!check(&broken, &inx_opts(true)).is_empty());
}

#[test]
fn msi_properties_in_the_software_key_are_refused() {
    let inx = real_inx();
    let moved = replace_line(
        &inx,
        "AddReg             = vionet.Reg",
        "AddReg             = vionet.Reg, vionet.EnableMSI",
    );
    let findings = check(&moved, &inx_opts(true));
    let line = line_of(&moved, "MSISupported,");
    assert!(
        findings
            .iter()
            .any(|f| f.line == line && f.message.contains("belong in [vionet.ndi.NT.HW]")),
        "{findings:#?}"
    );
}

#[test]
fn cli_prints_file_line_and_reason_and_fails() {
    let dir = common::scratch("check-cli");
    let inx = real_inx();
    let broken = replace_line(
        &inx,
        "AddService = vionet, 2,",
        "AddService = vionet, 0, vionet.Service",
    );
    let path = dir.join("broken.inx");
    std::fs::write(&path, &broken).unwrap();
    let line = line_of(&inx, "AddService = vionet, 2,");
    let (ok, text) = common::run(
        common::bin()
            .args(["--step", "infverif", "check", "--msi"])
            .arg(&path),
    );
    assert!(!ok, "{text}");
    let expected = format!(
        "[infverif] error: {}:{line}: AddService for `vionet` lacks the 0x2 flag",
        path.display()
    );
    assert!(
        text.contains(&expected),
        "expected `{expected}` in:\n{text}"
    );

    let (ok, text) = common::run(
        common::bin()
            .args(["check", "--msi"])
            .arg(common::repo_inx()),
    );
    assert!(ok, "{text}");
    assert!(text.contains("OK"), "{text}");

    // UTF-16LE input is read as well.
    let mut utf16 = vec![0xFF, 0xFE];
    utf16.extend(broken.encode_utf16().flat_map(u16::to_le_bytes));
    std::fs::write(&path, &utf16).unwrap();
    let (ok, text) = common::run(common::bin().args(["check"]).arg(&path));
    assert!(!ok);
    assert!(text.contains(&format!(":{line}: AddService")), "{text}");
}
