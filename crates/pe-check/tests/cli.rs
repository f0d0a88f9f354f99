//! The command line as a user meets it: `--help`, unknown options, no arguments, a missing file.

use std::process::{Command, Output};

fn pe_check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pe-check"))
        .args(args)
        .output()
        .expect("run pe-check")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_prints_usage_and_succeeds() {
    for flag in ["--help", "-h"] {
        let out = pe_check(&[flag]);
        assert_eq!(out.status.code(), Some(0), "{flag}: {}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(stdout.starts_with("usage: pe-check"), "{flag}: {stdout}");
        assert!(stdout.contains("DriverEntry"), "{flag}: {stdout}");
        assert!(out.stderr.is_empty(), "{flag}: {}", text(&out.stderr));
    }
    // Help wins wherever it stands, and is not read as a file name.
    let out = pe_check(&["some.sys", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!text(&out.stderr).contains("some.sys"));
}

#[test]
fn an_unknown_option_is_a_usage_error_not_a_file() {
    let out = pe_check(&["--verbose", "x.sys"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("unknown option `--verbose`"),
        "stderr: {stderr}"
    );
    assert!(stderr.contains("usage: pe-check"), "stderr: {stderr}");
    assert!(!stderr.contains("No such file"), "stderr: {stderr}");
}

#[test]
fn no_argument_is_a_usage_error() {
    let out = pe_check(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("usage: pe-check"));
}

#[test]
fn after_double_dash_a_dash_name_is_a_file() {
    let out = pe_check(&["--", "--help"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("pe-check: --help: "), "stderr: {stderr}");
}
