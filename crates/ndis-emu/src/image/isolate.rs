//! Image scenarios in child processes.
//!
//! An emulated bug check is a Rust panic that unwinds back to the test. Raised in an export the
//! image called, it would have to unwind through the image's frames, which carry only Windows
//! x64 unwind data (`.pdata`/`.xdata`): the host unwinder finds no DWARF frame description for
//! them, `_Unwind_RaiseException` fails, and the Rust runtime aborts the whole test binary
//! ("failed to initiate panic"). Kernel images are built `panic = "abort"` and were never meant
//! to be unwound through.
//!
//! So an image scenario runs in a child process: [`isolated`] re-executes the current test
//! binary for exactly one test, with [`CHILD_ENV`] naming it. In the child a panic hook ends the
//! process at the first panic, before any unwinding starts, and writes what stopped it to a
//! report file: the structured bug check (code, parameters, message) or the panic message. The
//! parent reads it and raises the same bug check itself (where no image frame is on the stack),
//! so `expect_bugcheck` works on image scenarios as on host ones; a panic fails the parent's
//! test with the child's message and output. A child that dies otherwise (a signal, a hang past
//! the timeout) fails the test with its status and output.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::BugCheck;

/// Set in a child process to the name of the test it runs.
pub const CHILD_ENV: &str = "NDIS_EMU_ISOLATED";
/// Set in a child process to the file it reports to.
const REPORT_ENV: &str = "NDIS_EMU_REPORT";
/// The default limit for one child.
const TIMEOUT: Duration = Duration::from_secs(300);

/// What stopped a run: an emulated bug check, or any other panic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    BugCheck(BugCheck),
    Panic(String),
}

/// Installs a panic hook that, at the first panic of the process, hands `on_stop` what stopped
/// it and exits the process with the code `on_stop` returns, without unwinding: for a process
/// that runs image code (a child of [`isolated`], the `ndis-emu` command).
pub fn exit_on_stop(on_stop: impl Fn(&Stop) -> i32 + Send + Sync + 'static) {
    std::panic::set_hook(Box::new(move |info| {
        let stop = match crate::bugcheck::take_last() {
            Some(b) => Stop::BugCheck(b),
            None => {
                let payload = info
                    .payload()
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "(non-string panic payload)".into());
                let at = info
                    .location()
                    .map(|l| format!(" at {}:{}:{}", l.file(), l.line(), l.column()))
                    .unwrap_or_default();
                Stop::Panic(format!("{payload}{at}"))
            }
        };
        let code = on_stop(&stop);
        std::process::exit(code);
    }));
}

/// Whether this process is a child of [`isolated`].
pub fn in_isolated_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

/// Runs `scenario` in a child process (see the module documentation) with the default
/// timeout of 300 s. `test` is the test's path as `module_path!()` and the function name give
/// it (`my_tests::some_test`): its first segment, the crate, is dropped to get the name libtest
/// knows. In the child this is the call that runs `scenario`; in the parent it returns when the
/// child's scenario completed, raises the child's bug check, or panics with the child's failure.
pub fn isolated(test: &str, scenario: impl FnOnce()) {
    isolated_with_timeout(test, TIMEOUT, scenario)
}

/// [`isolated`] with a limit for the child's run.
pub fn isolated_with_timeout(test: &str, timeout: Duration, scenario: impl FnOnce()) {
    let name = test.split_once("::").map_or(test, |(_, rest)| rest);
    if std::env::var(CHILD_ENV).as_deref() == Ok(name) {
        let report = PathBuf::from(
            std::env::var_os(REPORT_ENV).expect("a child of `isolated` has a report file"),
        );
        let hook_report = report.clone();
        exit_on_stop(move |stop| {
            let text = match stop {
                Stop::BugCheck(b) => format!(
                    "bugcheck\n{:#x}\n{:#x} {:#x} {:#x} {:#x}\n{}",
                    b.code, b.params[0], b.params[1], b.params[2], b.params[3], b.message
                ),
                Stop::Panic(message) => format!("panic\n{message}"),
            };
            // Best effort: if the report cannot be written, the parent reports the missing file.
            let _ = std::fs::write(&hook_report, text);
            eprintln!("ndis-emu child: stopped: {stop:?}");
            70
        });
        scenario();
        std::fs::write(&report, "ok").expect("write the report");
        return;
    }
    run_child(name, timeout);
}

fn run_child(name: &str, timeout: Duration) {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("ndis-emu-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the child's directory");
    let report = dir.join("report");
    let stdout = dir.join("stdout");
    let stderr = dir.join("stderr");
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut child = Command::new(&exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, name)
        .env(REPORT_ENV, &report)
        .env(super::build::BUILT_ENV, super::build::built_for_child())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).expect("child stdout"))
        .stderr(std::fs::File::create(&stderr).expect("child stderr"))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", exe.display()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break Some(status);
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let output = format!(
        "--- child stdout ---\n{}--- child stderr ---\n{}",
        std::fs::read_to_string(&stdout).unwrap_or_default(),
        std::fs::read_to_string(&stderr).unwrap_or_default()
    );
    let report = std::fs::read_to_string(&report).ok();
    let _ = std::fs::remove_dir_all(&dir);
    let Some(status) = status else {
        panic!("image scenario {name}: the child did not finish within {timeout:?}\n{output}");
    };
    match report.as_deref() {
        Some("ok") if status.success() => print!("{output}"),
        Some("ok") => panic!("image scenario {name}: child exited with {status}\n{output}"),
        Some(text) if text.starts_with("bugcheck\n") => {
            print!("{output}");
            let b = parse_bugcheck(text).unwrap_or_else(|| {
                panic!("image scenario {name}: unreadable bug check report {text:?}\n{output}")
            });
            crate::bugcheck::raise(b.code, b.params, b.message)
        }
        Some(text) => panic!(
            "image scenario {name} failed in its child process: {}\n{output}",
            text.strip_prefix("panic\n").unwrap_or(text)
        ),
        None => panic!(
            "image scenario {name}: the child ({status}) wrote no report: it died before the \
             end (a signal?), or no test of that name exists\n{output}"
        ),
    }
}

fn parse_bugcheck(text: &str) -> Option<BugCheck> {
    let mut lines = text.splitn(4, '\n');
    lines.next()?;
    let hex = |s: &str| usize::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok();
    let code = hex(lines.next()?)? as u32;
    let params: Vec<usize> = lines.next()?.split(' ').map(hex).collect::<Option<_>>()?;
    Some(BugCheck {
        code,
        params: params.try_into().ok()?,
        message: lines.next().unwrap_or_default().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bug_check_report_reads_back() {
        let b =
            parse_bugcheck("bugcheck\n0x52504e43\n0x1 0x2 0x3 0x4\npanicked at\nx.rs:1").unwrap();
        assert_eq!(
            b,
            BugCheck {
                code: 0x5250_4E43,
                params: [1, 2, 3, 4],
                message: "panicked at\nx.rs:1".into()
            }
        );
    }
}
