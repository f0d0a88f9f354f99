//! The `ndis-emu` command line as a user meets it: `--help`/`-h` print usage and succeed, wherever
//! they stand; unknown options and commands are usage errors (exit 2) that name them.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ndis-emu"))
        .args(args)
        .output()
        .expect("run ndis-emu")
}

#[test]
fn help_prints_usage_and_succeeds() {
    for args in [
        &["--help"][..],
        &["-h"],
        &["run", "--help"],
        &["run", "x.sys", "-h"],
    ] {
        let out = run(args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stdout}");
        assert!(
            stdout.starts_with("usage: ndis-emu run IMAGE"),
            "{args:?}: {stdout}"
        );
        assert!(stdout.contains("--messages N"), "{args:?}: {stdout}");
    }
}

#[test]
fn unknown_options_and_commands_are_usage_errors() {
    for (args, named) in [
        (&["run", "x.sys", "--fast"][..], "unknown option --fast"),
        (&["launch"], "unknown command \"launch\""),
        (&[], "usage: ndis-emu"),
    ] {
        let out = run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(named), "{args:?}: {stderr}");
    }
}
