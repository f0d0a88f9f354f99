//! Called from a driver crate's `build.rs`: `km_build::configure_driver_link();`
//!
//! Emits the link arguments that make rust-lld produce a kernel image of the same shape as the
//! WDK's (see `docs/build.md`), for `*-windows-*` targets only; host builds get nothing. They go
//! through `build.rs` rather than `rustflags` because an environment `RUSTFLAGS` replaces config
//! rustflags entirely (`/NODEFAULTLIB` would silently vanish and the link fail on `msvcrt.lib`).
//!
//! It also checks, for a Windows target, what the link needs and the linker would otherwise
//! report in its own words (`could not open 'msvcrt.lib'`, "`link.exe` not found",
//! "`#[panic_handler]` function required"): a failed check stops the build with a message that
//! names the fix ([`missing_pieces`]). And it tells `ndis::miniport_driver!` that the link is
//! configured, so a driver crate *without* this build script fails to compile with a message
//! naming it instead of failing to link.

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

/// The variable `ndis::miniport_driver!` reads (with `option_env!`) in the driver crate: set by
/// [`configure_driver_link`] (or by a build script that configures the link another way, such as
/// the WDK's) for a Windows target.
pub const LINK_CONFIGURED_ENV: &str = "NDIS_DRIVER_LINK_CONFIGURED";

/// The `cfg` set for the driver crate when it depends on `km-rt` directly: `ndis::miniport_driver!`
/// then links km-rt itself (`use ::km_rt as _;`), so the driver's own `use km_rt as _;` line is
/// not what decides whether the image has a panic handler.
pub const KM_RT_CFG: &str = "ndis_km_rt";

/// What the build script sees of the build, as Cargo passes it in the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildEnv {
    /// `CARGO_CFG_TARGET_OS`.
    pub target_os: Option<String>,
    /// `TARGET`.
    pub target: Option<String>,
    /// Whether the build host is Windows (where MSVC's `link.exe` may be installed).
    pub host_is_windows: bool,
    /// `RUSTC_LINKER`: the linker configured for the target, if any.
    pub linker: Option<String>,
    /// `CARGO_ENCODED_RUSTFLAGS` (`\x1f`-separated).
    pub rustflags: String,
    /// `DEP_KM_RT_RUNTIME`: km-rt is a direct dependency of the crate being built.
    pub km_rt: bool,
}

impl BuildEnv {
    /// The environment of the running build script.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok();
        BuildEnv {
            target_os: var("CARGO_CFG_TARGET_OS"),
            target: var("TARGET"),
            host_is_windows: cfg!(windows),
            linker: var("RUSTC_LINKER"),
            rustflags: var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default(),
            km_rt: var("DEP_KM_RT_RUNTIME").is_some(),
        }
    }

    fn is_windows_target(&self) -> bool {
        self.target_os.as_deref() == Some("windows")
    }
}

/// What a driver crate built for a Windows target lacks, each as a message naming the fix; empty
/// when nothing is missing or the target is not Windows.
pub fn missing_pieces(env: &BuildEnv) -> Vec<String> {
    let mut missing = Vec::new();
    if !env.is_windows_target() {
        return missing;
    }
    let target = env.target.as_deref().unwrap_or("x86_64-pc-windows-msvc");
    // Off Windows there is no MSVC `link.exe`: the LLD that ships with Rust links the image.
    let linker_in_rustflags = env
        .rustflags
        .split('\x1f')
        .any(|f| f.starts_with("-Clinker=") || f.starts_with("linker="));
    if !env.host_is_windows && env.linker.is_none() && !linker_in_rustflags {
        missing.push(format!(
            "no linker is configured for {target}, so rustc would call MSVC's `link.exe`, which \
             this host does not have. Add to .cargo/config.toml (in the driver crate or the \
             workspace root):\n    [target.{target}]\n    linker = \"rust-lld\""
        ));
    }
    if !env.km_rt {
        missing.push(
            "the driver crate does not depend on km-rt (the panic handler and the runtime \
             symbols of a kernel image without the WDK), so the build would stop at \
             \"`#[panic_handler]` function required\". Add to its Cargo.toml:\n    \
             [target.'cfg(windows)'.dependencies]\n    km-rt = \"0.1\"    # or km-rt.workspace = true"
                .to_string(),
        );
    }
    missing
}

/// Emits `cargo::rustc-cdylib-link-arg` lines for a Windows target; nothing otherwise. Stops the
/// build (`cargo::error`) when [`missing_pieces`] finds something missing.
pub fn configure_driver_link() {
    println!("cargo::rerun-if-changed=build.rs");
    for var in ["RUSTC_LINKER", "DEP_KM_RT_RUNTIME"] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    println!("cargo::rustc-check-cfg=cfg({KM_RT_CFG})");
    let env = BuildEnv::from_env();
    let missing = missing_pieces(&env);
    for m in &missing {
        for (i, line) in m.lines().enumerate() {
            let prefix = if i == 0 { "km-build: " } else { "" };
            println!("cargo::error={prefix}{line}");
        }
    }
    if env.is_windows_target() && missing.is_empty() {
        for arg in DRIVER_LINK_ARGS {
            println!("cargo::rustc-cdylib-link-arg={arg}");
        }
        println!("cargo::rustc-env={LINK_CONFIGURED_ENV}=1");
        println!("cargo::rustc-cfg={KM_RT_CFG}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows() -> BuildEnv {
        BuildEnv {
            target_os: Some("windows".into()),
            target: Some("x86_64-pc-windows-msvc".into()),
            host_is_windows: false,
            linker: Some("rust-lld".into()),
            rustflags: String::new(),
            km_rt: true,
        }
    }

    #[test]
    fn a_complete_driver_crate_lacks_nothing() {
        assert_eq!(missing_pieces(&windows()), Vec::<String>::new());
    }

    #[test]
    fn host_builds_are_not_checked() {
        let host = BuildEnv {
            target_os: Some("linux".into()),
            ..BuildEnv::default()
        };
        assert!(missing_pieces(&host).is_empty());
    }

    #[test]
    fn a_missing_linker_names_the_config_to_add() {
        let env = BuildEnv {
            linker: None,
            ..windows()
        };
        let m = missing_pieces(&env);
        assert_eq!(m.len(), 1);
        assert!(m[0].contains("[target.x86_64-pc-windows-msvc]\n    linker = \"rust-lld\""));
        // A Windows host may link with MSVC, and a linker in RUSTFLAGS counts too.
        assert!(
            missing_pieces(&BuildEnv {
                host_is_windows: true,
                ..env.clone()
            })
            .is_empty()
        );
        assert!(
            missing_pieces(&BuildEnv {
                rustflags: "-Copt-level=2\x1f-Clinker=rust-lld".into(),
                ..env
            })
            .is_empty()
        );
    }

    #[test]
    fn a_missing_km_rt_names_the_dependency_to_add() {
        let m = missing_pieces(&BuildEnv {
            km_rt: false,
            ..windows()
        });
        assert_eq!(m.len(), 1);
        assert!(m[0].contains("km-rt"), "{}", m[0]);
        assert!(m[0].contains("[target.'cfg(windows)'.dependencies]"));
    }
}
