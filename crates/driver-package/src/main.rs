//! `driver-package`: the packaging steps `cargo make package` runs on hosts without the WDK
//! (stamp, check, catalog, sign, cert). Every line it prints starts with the step name, and every
//! error names the file (and line, for INF errors), so a failed package build says what to fix.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use driver_package::asn1::HashAlg;
use driver_package::cert::TestCert;
use driver_package::check::{CheckOptions, Stage};
use driver_package::stamp::{DriverDate, DriverVersion, StampOptions};
use driver_package::text::Encoding;
use driver_package::{Error, Result, catalog, check, inf, sign, stamp, text, winver, workspace};

#[derive(Parser)]
#[command(
    version,
    about = "Stamp, check, catalog and test-sign a Windows driver package"
)]
struct Cli {
    /// Name printed before every line (the cargo-make task running this step).
    #[arg(long, global = true)]
    step: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum OutEncoding {
    /// ASCII when the text is ASCII, otherwise UTF-16LE with BOM.
    Auto,
    Ascii,
    Utf16,
}

#[derive(Clone, Copy, ValueEnum)]
enum StageArg {
    Inx,
    Inf,
}

#[derive(Subcommand)]
enum Command {
    /// .inx -> .inf: DriverVer, CatalogFile and $ARCH$ (what stampinf does)
    Stamp {
        inx: PathBuf,
        #[arg(short, long)]
        out: PathBuf,
        /// DriverVer version a.b.c.d (default: STAMPINF_VERSION, else --crate-version)
        #[arg(long)]
        driver_version: Option<String>,
        /// Cargo version x.y.z, stamped as x.y.z.0
        #[arg(long)]
        crate_version: Option<String>,
        /// DriverVer date mm/dd/yyyy (default: SOURCE_DATE_EPOCH, else today, UTC)
        #[arg(long)]
        date: Option<String>,
        #[arg(long, default_value = "amd64")]
        arch: String,
        /// CatalogFile value (default: <out name>.cat)
        #[arg(long)]
        catalog: Option<String>,
        #[arg(long, value_enum, default_value = "auto")]
        encoding: OutEncoding,
        /// The driver's Cargo.toml: stamp the [Manufacturer] decorations with its
        /// [package.metadata.ndis-driver] min-windows
        #[arg(long)]
        manifest: Option<PathBuf>,
    },
    /// Check INF/INX files for what breaks a NIC driver installation
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The driver uses MSI/MSI-X: require the MSISupported key (implied by `msi = true` in
        /// the --manifest's [package.metadata.ndis-driver])
        #[arg(long)]
        msi: bool,
        /// inx (unstamped) or inf (stamped); default from the file extension
        #[arg(long, value_enum)]
        stage: Option<StageArg>,
        #[arg(long, default_value = "amd64")]
        arch: String,
        /// The driver's Cargo.toml: the [Manufacturer] decorations must target its min-windows
        /// (stamped INFs only)
        #[arg(long)]
        manifest: Option<PathBuf>,
    },
    /// Check a built image and the NDIS range against the minimum Windows the driver declares
    /// ([package.metadata.ndis-driver] in its Cargo.toml)
    Compat {
        /// The driver's Cargo.toml
        #[arg(long)]
        manifest: PathBuf,
        /// The built driver image (.sys)
        image: PathBuf,
    },
    /// Create <name>.cat for the INF and the files its [SourceDisksFiles] lists (what inf2cat does)
    Catalog {
        #[arg(long)]
        inf: PathBuf,
        #[arg(short, long)]
        out: PathBuf,
        /// Hash members with SHA-1 (for Windows before 10) instead of SHA-256
        #[arg(long)]
        sha1: bool,
        #[arg(long, default_value = "_v100_X64")]
        os: String,
        #[arg(long, default_value = "2:10.0")]
        os_attr: String,
    },
    /// Authenticode-sign .sys images (embedded) and .cat catalogs with the test certificate
    Sign {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Where the test certificate is kept (default: $DRIVER_PACKAGE_CERT_DIR,
        /// $XDG_DATA_HOME/driver-package or ~/.local/share/driver-package)
        #[arg(long)]
        cert_dir: Option<PathBuf>,
        #[arg(long, default_value = sign::DEFAULT_DESCRIPTION)]
        description: String,
    },
    /// List the driver crates `cargo make package` packages here, or run a command once for each
    /// with DRIVER_CRATE, DRIVER_NAME, DRIVER_VERSION, DRIVER_MANIFEST, DRIVER_INX, DRIVER_OUT and
    /// PACKAGE_DIR set (in a driver crate's directory: that crate; at the workspace root: every
    /// driver crate)
    Drivers {
        /// Where `cargo make` was run (default: the current directory)
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Only this driver (package or image name; `-` and `_` alike); empty means none
        #[arg(long)]
        driver: Option<String>,
        /// Package this INX instead of the driver's own (one driver only); empty means none
        #[arg(long)]
        inx: Option<String>,
        /// Read the Windows-version contract from this Cargo.toml instead (one driver only); empty
        /// means none
        #[arg(long)]
        manifest: Option<String>,
        /// The command to run for each driver (after `--`)
        #[arg(last = true)]
        exec: Vec<String>,
    },
    /// Create a new driver crate in <workspace>/samples/NAME (a workspace member that builds,
    /// passes its emulator tests and packages)
    NewDriver {
        /// The crate name (lowercase letters, digits, `-`, `_`)
        name: String,
        /// The PCI vendor and device IDs, VVVV:DDDD in hex (default 1234:5678, a placeholder)
        #[arg(long)]
        pci: Option<String>,
        /// The workspace root (default: the current directory)
        #[arg(long)]
        workspace: Option<PathBuf>,
    },
    /// Create the test certificate if there is none, and export it as DER (.cer)
    Cert {
        #[arg(long)]
        cert_dir: Option<PathBuf>,
        /// Write the certificate here (e.g. vionet.cer)
        #[arg(long)]
        export: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let name = match &cli.command {
        Command::Stamp { .. } => "stamp",
        Command::Check { .. } => "check",
        Command::Compat { .. } => "compat",
        Command::Catalog { .. } => "catalog",
        Command::Sign { .. } => "sign",
        Command::Cert { .. } => "cert",
        Command::Drivers { .. } => "drivers",
        Command::NewDriver { .. } => "new-driver",
    };
    let step = cli.step.clone().unwrap_or_else(|| name.to_string());
    let out = Out { step: &step };
    match run(cli.command, &out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(errors) => {
            for e in &errors {
                eprintln!("[{step}] error: {e}");
            }
            eprintln!(
                "[{step}] failed ({} error{})",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            );
            ExitCode::FAILURE
        }
    }
}

struct Out<'a> {
    step: &'a str,
}

impl Out<'_> {
    fn say(&self, msg: impl std::fmt::Display) {
        println!("[{}] {msg}", self.step);
    }
}

fn run(command: Command, out: &Out) -> std::result::Result<(), Vec<Error>> {
    let one = |r: Result<()>| r.map_err(|e| vec![e]);
    match command {
        Command::Stamp {
            inx,
            out: dest,
            driver_version,
            crate_version,
            date,
            arch,
            catalog,
            encoding,
            manifest,
        } => one(cmd_stamp(
            out,
            &inx,
            &dest,
            driver_version,
            crate_version,
            date,
            arch,
            catalog,
            encoding,
            manifest,
        )),
        Command::Check {
            files,
            msi,
            stage,
            arch,
            manifest,
        } => cmd_check(out, &files, msi, stage, &arch, manifest),
        Command::Compat { manifest, image } => cmd_compat(out, &manifest, &image),
        Command::Drivers {
            dir,
            driver,
            inx,
            manifest,
            exec,
        } => one(cmd_drivers(out, dir, driver, inx, manifest, &exec)),
        Command::NewDriver {
            name,
            pci,
            workspace,
        } => one(cmd_new_driver(out, &name, pci.as_deref(), workspace)),
        Command::Catalog {
            inf,
            out: dest,
            sha1,
            os,
            os_attr,
        } => one(cmd_catalog(out, &inf, &dest, sha1, os, os_attr)),
        Command::Sign {
            files,
            cert_dir,
            description,
        } => one(cmd_sign(out, &files, cert_dir, &description)),
        Command::Cert { cert_dir, export } => one(cmd_cert(out, cert_dir, export).map(|_| ())),
    }
}

#[allow(clippy::too_many_arguments)]
fn cmd_stamp(
    out: &Out,
    inx: &Path,
    dest: &Path,
    driver_version: Option<String>,
    crate_version: Option<String>,
    date: Option<String>,
    arch: String,
    catalog: Option<String>,
    encoding: OutEncoding,
    manifest: Option<PathBuf>,
) -> Result<()> {
    let min_windows = match &manifest {
        Some(m) => {
            let c = winver::Contract::load(m)?;
            Some((c.min_windows, m.display().to_string()))
        }
        None => None,
    };
    let version = match (
        driver_version.or_else(|| std::env::var("STAMPINF_VERSION").ok()),
        crate_version,
    ) {
        (Some(v), _) => DriverVersion::parse(&v)?,
        (None, Some(c)) => DriverVersion::from_crate_version(&c)?,
        (None, None) => {
            return Err(Error::msg(
                "no version: pass --driver-version a.b.c.d or --crate-version x.y.z",
            ));
        }
    };
    let date = match date {
        Some(d) => DriverDate::parse(&d)?,
        None => DriverDate::today()?,
    };
    let catalog = match catalog {
        Some(c) => c,
        None => {
            let stem = dest
                .file_stem()
                .ok_or_else(|| Error::file(dest, "output has no file name"))?;
            format!("{}.cat", stem.to_string_lossy())
        }
    };
    let opts = StampOptions {
        date,
        version,
        arch,
        catalog,
        encoding: match encoding {
            OutEncoding::Auto => None,
            OutEncoding::Ascii => Some(Encoding::Utf8),
            OutEncoding::Utf16 => Some(Encoding::Utf16Le),
        },
        min_windows,
    };
    let data = driver_package::read(inx)?;
    let stamped = stamp::stamp(&data, &opts).map_err(|e| e.in_file(inx))?;
    driver_package::write_atomic(dest, &stamped.bytes)?;
    out.say(format_args!(
        "{} -> {} (DriverVer = {},{}; CatalogFile = {}; $ARCH$ = {}; {} -> {})",
        inx.display(),
        dest.display(),
        opts.date,
        opts.version,
        opts.catalog,
        opts.arch,
        enc_name(stamped.input_encoding),
        enc_name(stamped.output_encoding),
    ));
    for d in &stamped.decorations {
        out.say(format_args!(
            "[Manufacturer] {} {} -> {} (line {})",
            d.models, d.written, d.stamped, d.line
        ));
    }
    Ok(())
}

fn enc_name(e: Encoding) -> &'static str {
    match e {
        Encoding::Utf8 => "ASCII/UTF-8",
        Encoding::Utf8Bom => "UTF-8 with BOM",
        Encoding::Utf16Le => "UTF-16LE with BOM",
    }
}

fn cmd_check(
    out: &Out,
    files: &[PathBuf],
    msi: bool,
    stage: Option<StageArg>,
    arch: &str,
    manifest: Option<PathBuf>,
) -> std::result::Result<(), Vec<Error>> {
    let mut errors = Vec::new();
    let contract = match &manifest {
        Some(m) => Some(winver::Contract::load(m).map_err(|e| vec![e])?),
        None => None,
    };
    // `msi = true` in [package.metadata.ndis-driver] asks for the MSI keys as --msi does.
    let msi = msi || contract.as_ref().is_some_and(|c| c.msi);
    for file in files {
        let stage = match stage {
            Some(StageArg::Inx) => Stage::Inx,
            Some(StageArg::Inf) => Stage::Inf,
            None if file
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("inx")) =>
            {
                Stage::Inx
            }
            None => Stage::Inf,
        };
        let data = match driver_package::read(file) {
            Ok(d) => d,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let text = match text::decode(&data) {
            Ok((t, _)) => t,
            Err(e) => {
                errors.push(e.in_file(file));
                continue;
            }
        };
        let findings = check::check(
            &text,
            &CheckOptions {
                stage,
                msi,
                arch: arch.to_string(),
            },
        );
        if findings.is_empty() {
            out.say(format_args!(
                "{}: OK ({} sections{})",
                file.display(),
                inf::Inf::parse(&text).sections.len(),
                if msi { ", MSI keys present" } else { "" }
            ));
        }
        errors.extend(
            findings
                .into_iter()
                .map(|f| Error::at(file, f.line, f.message)),
        );
        if let Some(c) = &contract {
            // An INX may leave the version out (stamping adds it) but not contradict min-windows;
            // a stamped INF must carry it.
            let parsed = inf::Inf::parse(&text);
            let source = c.manifest.display().to_string();
            match winver::decorations(&parsed, c.min_windows, &source) {
                Ok(_) if stage == Stage::Inx => {}
                Ok(ds) => {
                    for d in ds.iter().filter(|d| d.written != d.stamped) {
                        errors.push(Error::at(
                            file,
                            d.line,
                            format!(
                                "[Manufacturer] decoration `{}` names no Windows version: \
                                 the INF would install on Windows older than min-windows = {}",
                                d.written,
                                winver::describe(c.min_windows)
                            ),
                        ));
                    }
                }
                Err(es) => errors.extend(es.into_iter().map(|e| e.in_file(file))),
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn cmd_compat(out: &Out, manifest: &Path, image: &Path) -> std::result::Result<(), Vec<Error>> {
    let c = winver::Contract::load(manifest).map_err(|e| vec![e])?;
    out.say(format_args!(
        "{}: {} declares min-windows = {}, NDIS {}..={}",
        manifest.display(),
        c.package,
        winver::describe(c.min_windows),
        c.ndis_min,
        c.ndis_max
    ));
    let mut errors = Vec::new();
    match winver::check_ndis(&c) {
        Ok(()) => {
            let first = ndis_sys::availability::ndis_first_windows(c.ndis_min.0, c.ndis_min.1)
                .expect("a known NDIS version");
            out.say(format_args!(
                "NDIS {} first ships with Windows {}: fits min-windows",
                c.ndis_min,
                winver::describe(first)
            ));
        }
        Err(e) => errors.push(e),
    }
    let data = driver_package::read(image).map_err(|e| vec![e])?;
    match winver::check_imports(image, &data, &c) {
        Ok(needs) => {
            if let Some(newest) = needs.iter().max_by_key(|n| n.since) {
                out.say(format_args!(
                    "{}: {} imports, all available on {}; the newest, {}!{}, since Windows {}",
                    image.display(),
                    needs.len(),
                    c.min_windows,
                    newest.module,
                    newest.function,
                    winver::describe(newest.since)
                ));
            } else {
                out.say(format_args!("{}: no imports", image.display()));
            }
        }
        Err(es) => errors.extend(es),
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn cmd_catalog(
    out: &Out,
    inf_path: &Path,
    dest: &Path,
    sha1: bool,
    os: String,
    os_attr: String,
) -> Result<()> {
    let data = driver_package::read(inf_path)?;
    let (text, _) = text::decode(&data).map_err(|e| e.in_file(inf_path))?;
    let parsed = inf::Inf::parse(&text);
    let files = catalog::package_files(inf_path, &parsed)?;
    let hash = if sha1 { HashAlg::Sha1 } else { HashAlg::Sha256 };
    let mut members = Vec::new();
    for f in &files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| Error::file(f, "no file name"))?;
        let m = catalog::Member::new(&name, &driver_package::read(f)?, hash)
            .map_err(|e| e.in_file(f))?;
        out.say(format_args!(
            "{name}: {} {}",
            match m.kind {
                catalog::MemberKind::PeImage => "Authenticode",
                catalog::MemberKind::Flat => "flat",
            },
            driver_package::cert::hex_upper(&m.digest)
        ));
        members.push(m);
    }
    let hardware_ids = catalog::hardware_ids(&parsed);
    let opts = catalog::CatalogOptions {
        hash,
        os,
        os_attr,
        hardware_ids,
        time: std::time::SystemTime::now(),
    };
    let cat = catalog::build(&members, &opts)?;
    driver_package::write_atomic(dest, &cat)?;
    out.say(format_args!(
        "{} ({} members, {}, OS {}, hardware IDs: {})",
        dest.display(),
        members.len(),
        if sha1 { "SHA-1" } else { "SHA-256" },
        opts.os,
        opts.hardware_ids.join(" ")
    ));
    Ok(())
}

fn load_cert(out: &Out, cert_dir: Option<PathBuf>) -> Result<TestCert> {
    let dir = match cert_dir {
        Some(d) => d,
        None => driver_package::cert::default_dir()?,
    };
    let cert = TestCert::load_or_create(&dir)?;
    out.say(format_args!(
        "test certificate {} ({}; SHA-1 thumbprint {})",
        cert.path.display(),
        if cert.created { "created" } else { "reused" },
        cert.thumbprint()?
    ));
    Ok(cert)
}

fn cmd_sign(
    out: &Out,
    files: &[PathBuf],
    cert_dir: Option<PathBuf>,
    description: &str,
) -> Result<()> {
    let cert = load_cert(out, cert_dir)?;
    for file in files {
        let data = driver_package::read(file)?;
        let signed = match sign::detect(&data) {
            Some(sign::Kind::Pe) => sign::sign_pe(&data, &cert, description),
            Some(sign::Kind::Catalog) => sign::sign_catalog(&data, &cert),
            None => Err(Error::msg(
                "neither a PE image (MZ) nor a DER catalog: nothing to sign",
            )),
        }
        .map_err(|e| e.in_file(file))?;
        driver_package::write_atomic(file, &signed)?;
        out.say(format_args!(
            "{} signed (Authenticode, RSA/SHA-256, {} bytes)",
            file.display(),
            signed.len()
        ));
    }
    Ok(())
}

fn cmd_cert(out: &Out, cert_dir: Option<PathBuf>, export: Option<PathBuf>) -> Result<TestCert> {
    let cert = load_cert(out, cert_dir)?;
    if let Some(path) = export {
        driver_package::write_atomic(&path, &cert.cer()?)?;
        out.say(format_args!("exported {}", path.display()));
    }
    Ok(cert)
}

fn cmd_drivers(
    out: &Out,
    dir: Option<PathBuf>,
    driver: Option<String>,
    inx: Option<String>,
    manifest: Option<String>,
    exec: &[String],
) -> Result<()> {
    let dir = match dir {
        Some(d) => d,
        None => {
            std::env::current_dir().map_err(|e| Error::msg(format!("no current directory: {e}")))?
        }
    };
    let nonempty = |s: Option<String>| s.filter(|s| !s.is_empty()).map(PathBuf::from);
    let (inx, manifest) = (nonempty(inx), nonempty(manifest));
    let ws = workspace::Workspace::load(&dir)?;
    let selected = ws.select(&dir, driver.as_deref())?;
    if selected.len() > 1 && (inx.is_some() || manifest.is_some()) {
        let names: Vec<&str> = selected.iter().map(|d| d.package.as_str()).collect();
        return Err(Error::msg(format!(
            "DRIVER_INX and DRIVER_MANIFEST replace one driver's file, but {} drivers are selected \
             ({}): name the driver with DRIVER=<name>",
            selected.len(),
            names.join(", ")
        )));
    }
    // Every driver must have its INX before anything is built.
    let mut plans = Vec::new();
    for d in &selected {
        let inx = match &inx {
            Some(p) => p.clone(),
            None => d.require_inx()?.to_path_buf(),
        };
        let manifest = manifest.clone().unwrap_or_else(|| d.manifest.clone());
        plans.push((*d, inx, manifest));
    }
    for (d, inx, manifest) in &plans {
        out.say(format_args!(
            "{} ({}): {} -> {}",
            d.package,
            d.manifest.display(),
            inx.display(),
            d.package_dir().display()
        ));
        let Some((program, args)) = exec.split_first() else {
            continue;
        };
        let status = std::process::Command::new(program)
            .args(args)
            .env("DRIVER_CRATE", &d.package)
            .env("DRIVER_NAME", &d.image)
            .env("DRIVER_VERSION", &d.version)
            .env("DRIVER_MANIFEST", manifest)
            .env("DRIVER_INX", inx)
            .env("DRIVER_OUT", &d.out_dir)
            .env("PACKAGE_DIR", d.package_dir())
            .env("DRIVER_WORKSPACE", &ws.root)
            .status()
            .map_err(|e| Error::msg(format!("cannot run `{program}`: {e}")))?;
        if !status.success() {
            return Err(Error::msg(format!(
                "driver `{}` failed ({status}); its step printed the reason above",
                d.package
            )));
        }
    }
    Ok(())
}

fn cmd_new_driver(
    out: &Out,
    name: &str,
    pci: Option<&str>,
    workspace: Option<PathBuf>,
) -> Result<()> {
    let root = match workspace {
        Some(w) => w,
        None => {
            std::env::current_dir().map_err(|e| Error::msg(format!("no current directory: {e}")))?
        }
    };
    let scaffold = driver_package::scaffold::Scaffold::new(name, pci)?;
    if pci.is_none() {
        let (v, d) = driver_package::scaffold::DEFAULT_PCI_ID;
        out.say(format_args!(
            "no --pci VVVV:DDDD given: using the placeholder {v:04X}:{d:04X} (change it in src/lib.rs and the INX)"
        ));
    }
    let dir = scaffold.create(&root)?;
    for (path, _) in scaffold.files() {
        out.say(format_args!("created {}", dir.join(path).display()));
    }
    out.say(format_args!(
        "added samples/{} to the workspace members in {}",
        scaffold.name,
        root.join("Cargo.toml").display()
    ));
    // Record the new package in Cargo.lock (no new dependency: nothing is downloaded), so that
    // `--locked` builds accept it.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = std::process::Command::new(cargo)
        .current_dir(&root)
        .args(["metadata", "--format-version", "1", "--offline"])
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| Error::msg(format!("cannot run `cargo metadata`: {e}")))?;
    if !status.success() {
        return Err(Error::file(
            &root.join("Cargo.lock"),
            "`cargo metadata --offline` could not record the new crate; run `cargo update -p \
             <name>` once online",
        ));
    }
    // The templates are rustfmt-clean for a short name; a long one can move a line break.
    let fmt =
        std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .current_dir(&root)
            .args(["fmt", "-p", &scaffold.name])
            .status();
    if !fmt.is_ok_and(|s| s.success()) {
        out.say(
            "note: `cargo fmt` did not run (is rustfmt installed?); the sources are unformatted",
        );
    }
    out.say(format_args!(
        "next: cargo test -p {0}; cargo build -p {0} --release --target x86_64-pc-windows-msvc; \
         cd {1} && cargo make package",
        scaffold.name,
        dir.display()
    ));
    Ok(())
}
