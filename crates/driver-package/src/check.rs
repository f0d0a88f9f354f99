//! INF checks for an NDIS miniport, standing in for infverif where there is no WDK. They cover what
//! makes Windows refuse or mis-install a NIC package: missing sections, Class/ClassGuid mismatch,
//! missing NDIS keywords, a service not associated with the device (no `0x2` flag), malformed
//! hardware IDs, and MSI keys missing for a driver that relies on message-signaled interrupts.
//! Each finding names the line to fix.

use std::collections::BTreeSet;

use crate::inf::{Entry, Inf, Section};

/// What the INF is checked as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// An `.inx` source: `$ARCH$` is expected, `DriverVer` may be a placeholder.
    Inx,
    /// A stamped `.inf`: must be ready to install.
    Inf,
}

#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub stage: Stage,
    /// The driver uses MSI/MSI-X, so the INF must opt the device in (Windows grants line-based
    /// interrupts otherwise).
    pub msi: bool,
    /// The architecture decoration the package is for (`amd64`).
    pub arch: String,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            stage: Stage::Inx,
            msi: false,
            arch: "amd64".into(),
        }
    }
}

/// One problem, at a 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    pub line: usize,
    pub message: String,
}

const NET_CLASS_GUID: &str = "{4d36e972-e325-11ce-bfc1-08002be10318}";
/// Network setup classes and their GUIDs, so that a mismatch between `Class` and `ClassGuid` can
/// be told from a plain typo.
const KNOWN_CLASSES: &[(&str, &str)] = &[
    ("Net", NET_CLASS_GUID),
    ("NetClient", "{4d36e973-e325-11ce-bfc1-08002be10318}"),
    ("NetService", "{4d36e974-e325-11ce-bfc1-08002be10318}"),
    ("NetTrans", "{4d36e975-e325-11ce-bfc1-08002be10318}"),
    ("System", "{4d36e97d-e325-11ce-bfc1-08002be10318}"),
];

/// NDIS 6 reads these from the driver's key to describe the interface; Windows refuses to bind a
/// miniport whose INF lacks them.
const NDIS_KEYWORDS: &[&str] = &["*IfType", "*MediaType", "*PhysicalMediaType"];
const NCF_PHYSICAL: u32 = 0x4;
const SPSVCINST_ASSOCSERVICE: u32 = 0x2;
const MSI_KEY: &str = "Interrupt Management\\MessageSignaledInterruptProperties";

/// Runs every check and returns the findings sorted by line (empty when the INF is fine).
pub fn check(text: &str, opts: &CheckOptions) -> Vec<Finding> {
    let inf = Inf::parse(text);
    let mut c = Checker {
        inf: &inf,
        opts,
        findings: Vec::new(),
    };
    c.run(text);
    let mut f = c.findings;
    f.sort();
    f.dedup();
    f
}

struct Checker<'a> {
    inf: &'a Inf,
    opts: &'a CheckOptions,
    findings: Vec<Finding>,
}

impl Checker<'_> {
    fn fail(&mut self, line: usize, message: impl Into<String>) {
        self.findings.push(Finding {
            line,
            message: message.into(),
        });
    }

    /// Where to report something that is absent altogether: the end of the file.
    fn eof(&self) -> usize {
        self.inf.lines.max(1)
    }

    fn run(&mut self, text: &str) {
        for e in &self.inf.syntax_errors {
            self.findings.push(Finding {
                line: e.line,
                message: e.message.clone(),
            });
        }
        if self.opts.stage == Stage::Inf {
            for (i, line) in text.split('\n').enumerate() {
                if line.to_ascii_lowercase().contains("$arch$") {
                    self.fail(i + 1, "`$ARCH$` left in a stamped INF");
                }
            }
        }
        self.version();
        self.strings();
        let installs = self.manufacturer();
        for (line, install) in installs {
            self.install(line, &install);
        }
        self.source_disks();
    }

    fn version(&mut self) {
        let Some(v) = self.inf.section("Version") else {
            self.fail(1, "missing section [Version]");
            return;
        };
        let v = v.clone();
        match v.get("Signature").and_then(|e| e.value(0)) {
            Some(s)
                if s.eq_ignore_ascii_case("$Windows NT$")
                    || s.eq_ignore_ascii_case("$Chicago$") => {}
            Some(s) => {
                let line = v.get("Signature").map_or(v.line, |e| e.line);
                self.fail(
                    line,
                    format!("Signature is `{s}`, expected \"$WINDOWS NT$\""),
                );
            }
            None => self.fail(v.line, "[Version] has no Signature"),
        }
        let class = v.get("Class").map(|e| (e.line, e.value(0).unwrap_or("")));
        let guid = v
            .get("ClassGuid")
            .map(|e| (e.line, e.value(0).unwrap_or("").to_ascii_lowercase()));
        match class {
            None => self.fail(v.line, "[Version] has no Class (a NIC is Class = Net)"),
            Some((line, c)) if !c.eq_ignore_ascii_case("Net") => self.fail(
                line,
                format!("Class = {c}: an NDIS miniport installs in Class = Net"),
            ),
            _ => {}
        }
        match &guid {
            None => self.fail(
                v.line,
                format!("[Version] has no ClassGuid (Net is {NET_CLASS_GUID})"),
            ),
            Some((line, g)) if !is_guid(g) => {
                self.fail(*line, format!("ClassGuid `{g}` is not a {{GUID}}"))
            }
            Some((line, g)) => {
                if let Some((_, c)) = class {
                    let by_name = KNOWN_CLASSES
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case(c));
                    let by_guid = KNOWN_CLASSES.iter().find(|(_, id)| id == g);
                    match (by_name, by_guid) {
                        (Some((n, id)), Some((other, _))) if id != g => self.fail(
                            *line,
                            format!(
                                "ClassGuid {g} is the GUID of class {other}, not of Class = {c} ({n} is {id})"
                            ),
                        ),
                        (Some((n, id)), _) if id != g => self.fail(
                            *line,
                            format!("ClassGuid {g} does not match Class = {c} ({n} is {id})"),
                        ),
                        (None, Some((n, _))) => self.fail(
                            *line,
                            format!("ClassGuid {g} is the GUID of class {n}, not of Class = {c}"),
                        ),
                        _ => {}
                    }
                }
            }
        }
        if v.get("Provider").is_none() {
            self.fail(v.line, "[Version] has no Provider");
        }
        if v.get("CatalogFile").is_none() {
            self.fail(
                v.line,
                "[Version] has no CatalogFile (a PnP driver package is signed through its catalog)",
            );
        }
        match v.get("DriverVer") {
            Some(e) => {
                if let Some(msg) = driver_ver_problem(e) {
                    self.fail(e.line, msg);
                }
            }
            None if self.opts.stage == Stage::Inf => {
                self.fail(v.line, "[Version] has no DriverVer")
            }
            None => {}
        }
    }

    /// Checks `[Manufacturer]` and the models sections; returns the install sections the models
    /// name (with the line naming each).
    fn manufacturer(&mut self) -> Vec<(usize, String)> {
        let Some(m) = self.inf.section("Manufacturer") else {
            self.fail(self.eof(), "missing section [Manufacturer]");
            return Vec::new();
        };
        let m = m.clone();
        if m.entries.is_empty() {
            self.fail(m.line, "[Manufacturer] lists no manufacturer");
        }
        let arch_decoration = match self.opts.stage {
            Stage::Inx => "nt$arch$".to_string(),
            Stage::Inf => format!("nt{}", self.opts.arch.to_ascii_lowercase()),
        };
        let mut installs = Vec::new();
        let mut seen = BTreeSet::new();
        for e in &m.entries {
            let Some(models) = e.value(0).filter(|s| !s.is_empty()) else {
                self.fail(e.line, "manufacturer entry names no models section");
                continue;
            };
            let decorations: Vec<&str> = e.values[1..].iter().map(String::as_str).collect();
            if !decorations.iter().any(|d| {
                let d = d.to_ascii_lowercase();
                d == arch_decoration || d.starts_with(&format!("{arch_decoration}."))
            }) {
                self.fail(
                    e.line,
                    format!(
                        "manufacturer `{models}` has no {} decoration: 64-bit Windows ignores its models",
                        if self.opts.stage == Stage::Inx {
                            "NT$ARCH$".to_string()
                        } else {
                            format!("NT{}", self.opts.arch)
                        }
                    ),
                );
            }
            let mut names: Vec<String> = decorations
                .iter()
                .map(|d| format!("{models}.{d}"))
                .collect();
            if names.is_empty() {
                names.push(models.to_string());
            }
            for name in names {
                let Some(section) = self.inf.section(&name) else {
                    self.fail(e.line, format!("models section [{name}] is missing"));
                    continue;
                };
                let section = section.clone();
                if section.entries.is_empty() {
                    self.fail(
                        section.line,
                        format!("models section [{name}] lists no device"),
                    );
                }
                for d in self.inf.entries(&name).cloned().collect::<Vec<_>>() {
                    let install = d.value(0).unwrap_or("");
                    if install.is_empty() {
                        self.fail(d.line, "device entry names no install section");
                        continue;
                    }
                    match d.value(1).filter(|s| !s.is_empty()) {
                        None => self.fail(d.line, "device entry has no hardware ID"),
                        Some(id) => {
                            if let Some(msg) = hardware_id_problem(id) {
                                self.fail(d.line, msg);
                            }
                        }
                    }
                    for compat in d.values.iter().skip(2).filter(|s| !s.is_empty()) {
                        if let Some(msg) = hardware_id_problem(compat) {
                            self.fail(d.line, format!("compatible ID: {msg}"));
                        }
                    }
                    if seen.insert(install.to_ascii_lowercase()) {
                        installs.push((d.line, install.to_string()));
                    }
                }
            }
        }
        installs
    }

    /// The DDInstall section Windows would pick for this architecture.
    fn ddinstall(&self, install: &str) -> Option<Section> {
        let arch = match self.opts.stage {
            Stage::Inx => "$ARCH$".to_string(),
            Stage::Inf => self.opts.arch.clone(),
        };
        [
            format!("{install}.NT{arch}"),
            format!("{install}.NT"),
            install.to_string(),
        ]
        .iter()
        .find_map(|n| self.inf.section(n).cloned())
    }

    fn install(&mut self, ref_line: usize, install: &str) {
        let Some(dd) = self.ddinstall(install) else {
            self.fail(
                ref_line,
                format!("install section [{install}.NT] (or [{install}]) is missing"),
            );
            return;
        };
        let name = dd.name.clone();

        // Characteristics / BusType.
        let characteristics = match dd.get("Characteristics") {
            None => {
                self.fail(
                    dd.line,
                    format!("[{name}] has no Characteristics (NCF_* flags)"),
                );
                None
            }
            Some(e) => match e.value(0).and_then(parse_number) {
                None => {
                    self.fail(e.line, "Characteristics is not a number");
                    None
                }
                Some(v) => Some(v),
            },
        };
        if characteristics.is_some_and(|c| c & NCF_PHYSICAL != 0) && dd.get("BusType").is_none() {
            self.fail(
                dd.line,
                format!("[{name}] has NCF_PHYSICAL (0x4) in Characteristics but no BusType"),
            );
        }
        for kw in NDIS_KEYWORDS {
            match dd.get(kw) {
                None => self.fail(dd.line, format!("[{name}] lacks the NDIS keyword {kw}")),
                Some(e) if e.value(0).and_then(parse_number).is_none() => {
                    self.fail(e.line, format!("{kw} is not a number"))
                }
                _ => {}
            }
        }

        // AddReg: Ndi\Service and Ndi\Interfaces ranges; MSI must not be here.
        let reg = self.addreg_lines(&dd);
        let has = |key: &str, value: &str| {
            reg.iter().any(|e| {
                e.value(0).is_some_and(|r| r.eq_ignore_ascii_case("HKR"))
                    && e.value(1).is_some_and(|k| k.eq_ignore_ascii_case(key))
                    && e.value(2).is_some_and(|v| v.eq_ignore_ascii_case(value))
            })
        };
        for (key, value) in [
            ("Ndi", "Service"),
            ("Ndi\\Interfaces", "UpperRange"),
            ("Ndi\\Interfaces", "LowerRange"),
        ] {
            if !has(key, value) {
                self.fail(
                    dd.line,
                    format!("[{name}] AddReg does not set HKR,{key},{value} (required for a NIC)"),
                );
            }
        }
        let ndi_service = reg
            .iter()
            .find(|e| {
                e.value(1).is_some_and(|k| k.eq_ignore_ascii_case("Ndi"))
                    && e.value(2)
                        .is_some_and(|v| v.eq_ignore_ascii_case("Service"))
            })
            .map(|e| (e.line, e.value(4).unwrap_or("").to_string()));
        for e in &reg {
            if e.value(1).is_some_and(|k| k.eq_ignore_ascii_case(MSI_KEY)) {
                self.fail(
                    e.line,
                    format!(
                        "MSI properties written from [{name}] (the software key); they belong in [{name}.HW] (the device's hardware key)"
                    ),
                );
            }
        }

        // CopyFiles.
        let mut copied = Vec::new();
        for e in dd.all("CopyFiles").cloned().collect::<Vec<_>>() {
            for target in e.values.iter().filter(|v| !v.is_empty()) {
                if let Some(file) = target.strip_prefix('@') {
                    copied.push((e.line, file.to_string()));
                } else if self.inf.section(target).is_none() {
                    self.fail(e.line, format!("CopyFiles section [{target}] is missing"));
                } else {
                    let has_dest = self
                        .inf
                        .entries("DestinationDirs")
                        .any(|d| d.key_is(target) || d.key_is("DefaultDestDir"));
                    if !has_dest {
                        self.fail(
                            e.line,
                            format!("[DestinationDirs] has no entry for [{target}] and no DefaultDestDir"),
                        );
                    }
                    for f in self.inf.entries(target) {
                        if let Some(file) = f.key.clone().or_else(|| f.value(0).map(str::to_string))
                        {
                            copied.push((f.line, file));
                        }
                    }
                }
            }
        }
        if copied.is_empty() {
            self.fail(dd.line, format!("[{name}] copies no files (no CopyFiles)"));
        }
        for (line, file) in &copied {
            let listed = self
                .inf
                .entries("SourceDisksFiles")
                .chain(
                    self.inf
                        .entries(&format!("SourceDisksFiles.{}", self.opts.arch)),
                )
                .any(|e| e.key_is(file));
            if !listed {
                self.fail(
                    *line,
                    format!("{file} is copied but not listed in [SourceDisksFiles]"),
                );
            }
        }

        self.services(&dd, ndi_service, &copied);
        self.msi(&dd);
    }

    /// All AddReg lines reachable from a section.
    fn addreg_lines(&mut self, section: &Section) -> Vec<Entry> {
        let mut out = Vec::new();
        for e in section.all("AddReg").cloned().collect::<Vec<_>>() {
            for target in e.values.iter().filter(|v| !v.is_empty()) {
                if self.inf.section(target).is_none() {
                    self.fail(e.line, format!("AddReg section [{target}] is missing"));
                } else {
                    out.extend(self.inf.entries(target).cloned());
                }
            }
        }
        out
    }

    fn services(
        &mut self,
        dd: &Section,
        ndi_service: Option<(usize, String)>,
        copied: &[(usize, String)],
    ) {
        let name = format!("{}.Services", dd.name);
        let Some(svc) = self.inf.section(&name).cloned() else {
            self.fail(
                dd.line,
                format!("missing section [{name}] (AddService for the miniport)"),
            );
            return;
        };
        let adds: Vec<Entry> = svc.all("AddService").cloned().collect();
        if adds.is_empty() {
            self.fail(svc.line, format!("[{name}] has no AddService"));
            return;
        }
        let mut associated = None;
        for e in &adds {
            let service = e.value(0).unwrap_or("");
            let flags = e.value(1).unwrap_or("");
            match parse_number(if flags.is_empty() { "0" } else { flags }) {
                None => self.fail(
                    e.line,
                    format!("AddService flags `{flags}` is not a number"),
                ),
                Some(f) if f & SPSVCINST_ASSOCSERVICE != 0 => {
                    associated = Some((e.line, service.to_string()))
                }
                Some(_) => {}
            }
            match e.value(2).filter(|s| !s.is_empty()) {
                None => self.fail(e.line, "AddService names no service-install section"),
                Some(s) => match self.inf.section(s).cloned() {
                    None => self.fail(e.line, format!("service-install section [{s}] is missing")),
                    Some(s) => self.service_install(&s, copied),
                },
            }
        }
        match associated {
            None => self.fail(
                adds[0].line,
                format!(
                    "AddService for `{}` lacks the 0x2 flag (SPSVCINST_ASSOCSERVICE): the device would have no function driver",
                    adds[0].value(0).unwrap_or("")
                ),
            ),
            Some((_, service)) => {
                if let Some((line, ndi)) = ndi_service
                    && !ndi.eq_ignore_ascii_case(&service)
                {
                    self.fail(
                        line,
                        format!("Ndi\\Service is `{ndi}` but the associated service is `{service}`"),
                    );
                }
            }
        }
    }

    fn service_install(&mut self, s: &Section, copied: &[(usize, String)]) {
        match s.get("ServiceType") {
            None => self.fail(s.line, format!("[{}] has no ServiceType", s.name)),
            Some(e) if e.value(0).and_then(parse_number) != Some(1) => self.fail(
                e.line,
                "ServiceType must be 1 (SERVICE_KERNEL_DRIVER) for a miniport",
            ),
            _ => {}
        }
        match s.get("StartType") {
            None => self.fail(s.line, format!("[{}] has no StartType", s.name)),
            Some(e) if e.value(0).and_then(parse_number).is_none_or(|v| v > 4) => {
                self.fail(e.line, "StartType must be 0..4 (3 = demand start for PnP)")
            }
            _ => {}
        }
        if s.get("ErrorControl").is_none() {
            self.fail(s.line, format!("[{}] has no ErrorControl", s.name));
        }
        match s.get("ServiceBinary") {
            None => self.fail(s.line, format!("[{}] has no ServiceBinary", s.name)),
            Some(e) => {
                let bin = e.value(0).unwrap_or("");
                let file = bin.rsplit(['\\', '/']).next().unwrap_or(bin);
                if !copied.iter().any(|(_, c)| c.eq_ignore_ascii_case(file)) {
                    self.fail(
                        e.line,
                        format!("ServiceBinary {file} is not copied by CopyFiles"),
                    );
                }
            }
        }
    }

    fn msi(&mut self, dd: &Section) {
        let hw_name = format!("{}.HW", dd.name);
        let hw = self.inf.section(&hw_name).cloned();
        let reg = match &hw {
            Some(hw) => self.addreg_lines(hw),
            None => Vec::new(),
        };
        let msi_line = |value: &str| {
            reg.iter()
                .find(|e| {
                    e.value(1).is_some_and(|k| k.eq_ignore_ascii_case(MSI_KEY))
                        && e.value(2).is_some_and(|v| v.eq_ignore_ascii_case(value))
                })
                .cloned()
        };
        let supported = msi_line("MSISupported");
        if let Some(e) = &supported
            && e.value(4).and_then(parse_number) != Some(1)
        {
            self.fail(e.line, "MSISupported must be 1 (type 0x00010001)");
        }
        if let Some(e) = msi_line("MessageNumberLimit")
            && !e
                .value(4)
                .and_then(parse_number)
                .is_some_and(|n| (1..=2048).contains(&n))
        {
            self.fail(e.line, "MessageNumberLimit must be 1..2048");
        }
        if self.opts.msi && supported.is_none() {
            match hw {
                None => self.fail(
                    dd.line,
                    format!("the driver uses MSI but [{hw_name}] is missing (AddReg with {MSI_KEY}, MSISupported, 0x00010001, 1)"),
                ),
                Some(hw) => self.fail(
                    hw.line,
                    format!("the driver uses MSI but [{hw_name}] does not set HKR,\"{MSI_KEY}\",MSISupported,0x00010001,1"),
                ),
            }
        }
    }

    fn strings(&mut self) {
        let defined: BTreeSet<String> = self
            .inf
            .entries("Strings")
            .filter_map(|e| e.key.as_ref().map(|k| k.to_ascii_lowercase()))
            .collect();
        let mut missing = Vec::new();
        for s in &self.inf.sections {
            if s.name.eq_ignore_ascii_case("Strings")
                || s.name.to_ascii_lowercase().starts_with("strings.")
            {
                continue;
            }
            for e in &s.entries {
                for field in e.key.iter().chain(e.values.iter()) {
                    for token in percent_tokens(field) {
                        if token.chars().all(|c| c.is_ascii_digit()) {
                            continue; // %13% etc.: directory IDs
                        }
                        if !defined.contains(&token.to_ascii_lowercase()) {
                            missing.push((e.line, token));
                        }
                    }
                }
            }
        }
        for (line, token) in missing {
            self.fail(line, format!("%{token}% is not defined in [Strings]"));
        }
    }

    fn source_disks(&mut self) {
        let names: Vec<Entry> = self.inf.entries("SourceDisksNames").cloned().collect();
        if self.inf.section("SourceDisksNames").is_none() {
            self.fail(self.eof(), "missing section [SourceDisksNames]");
        }
        if self.inf.section("SourceDisksFiles").is_none() {
            self.fail(self.eof(), "missing section [SourceDisksFiles]");
        }
        if self.inf.section("DestinationDirs").is_none() {
            self.fail(self.eof(), "missing section [DestinationDirs]");
        }
        for f in self
            .inf
            .entries("SourceDisksFiles")
            .cloned()
            .collect::<Vec<_>>()
        {
            let disk = f.value(0).unwrap_or("");
            if !names.iter().any(|n| n.key.as_deref() == Some(disk)) {
                self.fail(
                    f.line,
                    format!("disk `{disk}` is not listed in [SourceDisksNames]"),
                );
            }
        }
    }
}

fn percent_tokens(field: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = field;
    while let Some(start) = rest.find('%') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('%') else { break };
        let token = &after[..end];
        if !token.is_empty() {
            out.push(token.to_string());
        }
        rest = &after[end + 1..];
    }
    out
}

/// Decimal or `0x` hexadecimal, as INF numbers are written.
pub fn parse_number(s: &str) -> Option<u32> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

fn is_guid(s: &str) -> bool {
    let Some(inner) = s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
        return false;
    };
    let groups: Vec<&str> = inner.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

fn driver_ver_problem(e: &Entry) -> Option<String> {
    let date = e.value(0).unwrap_or("");
    if let Err(err) = crate::stamp::DriverDate::parse(date) {
        return Some(format!("DriverVer: {}", err.message));
    }
    match e.value(1) {
        None | Some("") => Some("DriverVer has no version (mm/dd/yyyy,a.b.c.d)".into()),
        Some(v) if v.split('.').count() != 4 => Some(format!(
            "DriverVer version `{v}` must have four numbers (a.b.c.d)"
        )),
        Some(v) => crate::stamp::DriverVersion::parse(v)
            .err()
            .map(|err| format!("DriverVer: {}", err.message)),
    }
}

/// Why a hardware or compatible ID is malformed, if it is. PCI IDs are checked field by field
/// because a wrong digit count silently never matches any device.
pub fn hardware_id_problem(id: &str) -> Option<String> {
    if id
        .chars()
        .any(|c| c.is_whitespace() || c == ',' || c == '"')
    {
        return Some(format!(
            "hardware ID `{id}` contains blanks, quotes or commas"
        ));
    }
    if id.len() > 200 {
        return Some(format!("hardware ID `{id}` is longer than 200 characters"));
    }
    if id.starts_with('*') {
        return None; // PNP IDs like *PNP0A03
    }
    let Some((bus, rest)) = id.split_once('\\') else {
        return Some(format!(
            "hardware ID `{id}` has no enumerator (e.g. PCI\\...)"
        ));
    };
    if bus.is_empty() || rest.is_empty() {
        return Some(format!(
            "hardware ID `{id}` has an empty enumerator or device part"
        ));
    }
    if !bus.eq_ignore_ascii_case("PCI") {
        return None;
    }
    let mut fields = rest.split('&');
    let expect = |name: &str, digits: usize, field: Option<&str>| -> Option<String> {
        let f = field?;
        let Some((k, v)) = f.split_once('_') else {
            return Some(format!("hardware ID `{id}`: field `{f}` is not NAME_value"));
        };
        if !k.eq_ignore_ascii_case(name) {
            return Some(format!(
                "hardware ID `{id}`: expected {name}_ but found `{f}`"
            ));
        }
        if v.len() != digits || !v.chars().all(|c| c.is_ascii_hexdigit()) {
            return Some(format!(
                "hardware ID `{id}`: {name}_ needs {digits} hex digits, found `{v}`"
            ));
        }
        None
    };
    let ven = fields.next();
    if let Some(p) = expect("VEN", 4, ven) {
        return Some(p);
    }
    let Some(dev) = fields.next() else {
        return Some(format!("hardware ID `{id}` has VEN_ but no DEV_"));
    };
    if let Some(p) = expect("DEV", 4, Some(dev)) {
        return Some(p);
    }
    for f in fields {
        let name = f.split('_').next().unwrap_or("").to_ascii_uppercase();
        let digits = match name.as_str() {
            "SUBSYS" => 8,
            "REV" => 2,
            "CC" => {
                let v = f.split_once('_').map_or("", |(_, v)| v);
                if (v.len() == 4 || v.len() == 6) && v.chars().all(|c| c.is_ascii_hexdigit()) {
                    continue;
                }
                return Some(format!(
                    "hardware ID `{id}`: CC_ needs 4 or 6 hex digits, found `{v}`"
                ));
            }
            _ => {
                return Some(format!(
                    "hardware ID `{id}`: unknown PCI field `{f}` (SUBSYS_, REV_ or CC_)"
                ));
            }
        };
        if let Some(p) = expect(&name, digits, Some(f)) {
            return Some(p);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hardware_ids() {
        for ok in [
            "PCI\\VEN_1AF4&DEV_1041",
            "PCI\\VEN_1AF4&DEV_1041&SUBSYS_11001AF4&REV_01",
            "pci\\ven_8086&dev_100e&cc_0200",
            "ROOT\\vionet",
            "*PNP0A03",
        ] {
            assert_eq!(hardware_id_problem(ok), None, "{ok}");
        }
        for bad in [
            "PCI\\VEN_1AF&DEV_1041",
            "PCI\\VEN_1AF4",
            "PCI\\DEV_1041&VEN_1AF4",
            "PCI\\VEN_1AF4&DEV_1041&SUBSYS_1100",
            "PCI\\VEN_1AF4&DEV_1041&REV_1",
            "PCI\\VEN_1AF4&DEV_104G",
            "PCI\\VEN_1AF4&DEV_1041&FOO_1",
            "VEN_1AF4&DEV_1041",
            "PCI\\VEN_1AF4 &DEV_1041",
        ] {
            assert!(hardware_id_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn numbers_and_guids() {
        assert_eq!(parse_number("0x84"), Some(0x84));
        assert_eq!(parse_number("14"), Some(14));
        assert_eq!(parse_number("x"), None);
        assert!(is_guid(NET_CLASS_GUID));
        assert!(!is_guid("{4d36e972-e325-11ce-bfc1-08002be1031}"));
    }
}
