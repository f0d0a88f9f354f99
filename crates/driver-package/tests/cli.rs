//! The command line as a user meets it: `--help` and `-h` print usage and succeed; an unknown
//! option is a usage error that names it.

use std::process::Command;

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_driver-package"))
        .args(args)
        .output()
        .expect("run driver-package")
}

#[test]
fn help_prints_usage_and_succeeds() {
    for args in [
        &["--help"][..],
        &["-h"],
        &["stamp", "--help"],
        &["check", "-h"],
    ] {
        let out = run(args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stdout}");
        assert!(
            stdout.contains("Usage: driver-package"),
            "{args:?}: {stdout}"
        );
    }
    let top = run(&["--help"]);
    let stdout = String::from_utf8_lossy(&top.stdout);
    for command in ["stamp", "check", "catalog", "sign"] {
        assert!(stdout.contains(command), "--help lists {command}: {stdout}");
    }
}

#[test]
fn an_unknown_option_is_named() {
    let out = run(&["--frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--frobnicate"), "stderr: {stderr}");
    assert!(stderr.contains("Usage: driver-package"), "stderr: {stderr}");
}
