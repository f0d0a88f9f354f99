//! Running a cross-built Windows image (`.sys`) inside the host process.
//!
//! * `trap`: the image's hardware access. Its register accesses are plain loads and stores on
//!   the address `NdisMMapIoSpace` returned, and it reads CR8 and `gs:` as kernel code does;
//!   on the host those fault, and a signal handler performs them against the emulator
//!   (Linux x86_64).

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub(crate) mod trap;
