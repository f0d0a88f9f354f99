//! Called from a driver crate's `build.rs`: `km_build::configure_driver_link();`
//!
//! Emits the link arguments that make rust-lld produce a kernel image of the same shape as the
//! WDK's (see `docs/build.md`), for `*-windows-*` targets only; host builds get nothing. They go
//! through `build.rs` rather than `rustflags` because an environment `RUSTFLAGS` replaces config
//! rustflags entirely (`/NODEFAULTLIB` would silently vanish and the link fail on `msvcrt.lib`).

/// What `wdk-build` passes for a WDM driver, plus what LLD needs for the same image: a NATIVE 10.0
/// subsystem, OS version 10.0, a filled checksum (`/RELEASE`), FORCE_INTEGRITY.
pub const DRIVER_LINK_ARGS: &[&str] = &[
    "/NODEFAULTLIB",
    "/SUBSYSTEM:NATIVE,10.0",
    "/OSVERSION:10.0",
    "/DRIVER",
    "/ENTRY:DriverEntry",
    "/RELEASE",
    "/INTEGRITYCHECK",
    "/NXCOMPAT",
    "/DYNAMICBASE",
    "/MANIFEST:NO",
    "/MAP",
    "/OPT:REF,ICF",
];

/// Emits `cargo::rustc-cdylib-link-arg` lines for a Windows target; nothing otherwise.
pub fn configure_driver_link() {
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("windows") {
        for arg in DRIVER_LINK_ARGS {
            println!("cargo::rustc-cdylib-link-arg={arg}");
        }
    }
}
