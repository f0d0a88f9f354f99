//! `pe-check [--] <image.sys>...` (`--help` for the checks): exits non-zero, naming each problem, unless every image has the
//! shape of a loadable x64 kernel driver. Used as a packaging gate by `Makefile.toml`.

use std::process::ExitCode;

use pe_check::DriverImage;

const USAGE: &str = "usage: pe-check [--] <image.sys>...";

const HELP: &str =
    "Checks that each image has the shape Windows requires of an x64 kernel driver: \
NATIVE subsystem, DriverEntry entry point, FORCE_INTEGRITY/NX/DYNAMIC_BASE, a valid checksum, \
imports only from ndis.sys/ntoskrnl.exe/hal.dll, the import table outside executable sections.

Options:
  -h, --help  print this help and exit
  --          every argument after it is a file, even one starting with '-'

Exit status: 0 every image passed, 1 a check failed or a file could not be read, 2 usage error.";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Help,
    Check(Vec<String>),
}

fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut files = Vec::new();
    let mut options_done = false;
    for a in args {
        if options_done || !a.starts_with('-') || a == "-" {
            files.push(a);
            continue;
        }
        match a.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--" => options_done = true,
            other => {
                return Err(format!(
                    "pe-check: unknown option `{other}` (a file named so: `pe-check -- {other}`)\n{USAGE}"
                ));
            }
        }
    }
    if files.is_empty() {
        return Err(format!("pe-check: no image given\n{USAGE}"));
    }
    Ok(Command::Check(files))
}

fn main() -> ExitCode {
    let files = match parse(std::env::args().skip(1)) {
        Ok(Command::Help) => {
            println!("{USAGE}\n\n{HELP}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Check(files)) => files,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut failed = false;
    for file in &files {
        let data = match std::fs::read(file) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("pe-check: {file}: {e}");
                failed = true;
                continue;
            }
        };
        let image = match DriverImage::parse(&data) {
            Ok(i) => i,
            Err(e) => {
                eprintln!("pe-check: {file}: {e}");
                failed = true;
                continue;
            }
        };
        let violations = image.kernel_driver_violations();
        if violations.is_empty() {
            let imports: Vec<String> = image
                .imports
                .iter()
                .map(|(dll, names)| format!("{dll} ({})", names.len()))
                .collect();
            println!(
                "pe-check: {file}: kernel driver image OK (NATIVE {}.{}, checksum {:#x}, imports {})",
                image.subsystem_version.0,
                image.subsystem_version.1,
                image.checksum_stored,
                imports.join(", ")
            );
        } else {
            failed = true;
            for v in violations {
                eprintln!("pe-check: {file}: {v}");
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
