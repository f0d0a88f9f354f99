//! `pe-check <image.sys>...`: exits non-zero, naming each problem, unless every image has the
//! shape of a loadable x64 kernel driver. Used as a packaging gate by `Makefile.toml`.

use std::process::ExitCode;

use pe_check::DriverImage;

fn main() -> ExitCode {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        eprintln!("usage: pe-check <image.sys>...");
        return ExitCode::from(2);
    }
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
