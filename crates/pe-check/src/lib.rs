//! Reads a PE32+ image and checks the properties Windows (and HVCI) require of a kernel driver:
//! NATIVE subsystem 10.0, entry point `DriverEntry`, FORCE_INTEGRITY, NX and DYNAMIC_BASE, a
//! correct checksum, imports only from kernel modules, and import tables and writable data kept out
//! of executable sections.
//!
//! Used by the image tests and, as a gate, by packaging. Parsing is done by the `object` crate;
//! only the checksum (a 30-line algorithm no crate exposes for verification) is computed here.

use std::collections::BTreeMap;
use std::fmt;

use object::LittleEndian as LE;
use object::pe;
use object::read::pe::{ExportTarget, ImageNtHeaders, ImageOptionalHeader, Import, PeFile64};

/// The facts about an image that the checks look at.
#[derive(Debug, Clone)]
pub struct DriverImage {
    pub machine: u16,
    pub subsystem: u16,
    pub subsystem_version: (u16, u16),
    pub os_version: (u16, u16),
    pub dll_characteristics: u16,
    pub checksum_stored: u32,
    pub checksum_computed: u32,
    pub entry_point_rva: u32,
    /// Export name -> RVA (a cdylib exports `DriverEntry` and the runtime symbols).
    pub exports: BTreeMap<String, u32>,
    /// DLL name -> imported function names (lower-case DLL names as written in the image).
    pub imports: BTreeMap<String, Vec<String>>,
    pub sections: Vec<Section>,
    /// RVAs of the import directory and the import address table (0 when absent).
    pub import_directory_rva: u32,
    pub iat_rva: u32,
}

#[derive(Debug, Clone)]
pub struct Section {
    pub name: String,
    pub rva: u32,
    pub virtual_size: u32,
    pub characteristics: u32,
}

impl Section {
    pub fn contains(&self, rva: u32) -> bool {
        rva >= self.rva && rva - self.rva < self.virtual_size.max(1)
    }
    pub fn executable(&self) -> bool {
        self.characteristics & (pe::IMAGE_SCN_MEM_EXECUTE | pe::IMAGE_SCN_CNT_CODE) != 0
    }
    pub fn writable(&self) -> bool {
        self.characteristics & pe::IMAGE_SCN_MEM_WRITE != 0
    }
}

#[derive(Debug)]
pub struct ParseError(String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a readable PE32+ image: {}", self.0)
    }
}

impl std::error::Error for ParseError {}

impl From<object::read::Error> for ParseError {
    fn from(e: object::read::Error) -> Self {
        ParseError(e.to_string())
    }
}

/// One property a kernel driver image must have and this one lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation(pub String);

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The only modules a miniport built on this framework may import from.
pub const KERNEL_MODULES: &[&str] = &["ndis.sys", "ntoskrnl.exe", "hal.dll"];

impl DriverImage {
    pub fn parse(data: &[u8]) -> Result<Self, ParseError> {
        let file = PeFile64::parse(data)?;
        let nt = file.nt_headers();
        let fh = nt.file_header();
        let oh = nt.optional_header();

        let mut sections = Vec::new();
        for s in file.section_table().iter() {
            sections.push(Section {
                name: String::from_utf8_lossy(s.raw_name())
                    .trim_end_matches('\0')
                    .to_string(),
                rva: s.virtual_address.get(LE),
                virtual_size: s.virtual_size.get(LE),
                characteristics: s.characteristics.get(LE),
            });
        }

        let mut exports = BTreeMap::new();
        if let Some(table) = file.export_table()? {
            for e in table.exports()? {
                if let (Some(name), ExportTarget::Address(rva)) = (e.name, e.target) {
                    exports.insert(String::from_utf8_lossy(name).into_owned(), rva);
                }
            }
        }

        let mut imports: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if let Some(table) = file.import_table()? {
            let mut descriptors = table.descriptors()?;
            while let Some(d) = descriptors.next()? {
                let dll = String::from_utf8_lossy(table.name(d.name.get(LE))?).into_owned();
                let names = imports.entry(dll).or_default();
                let first = match d.original_first_thunk.get(LE) {
                    0 => d.first_thunk.get(LE),
                    rva => rva,
                };
                let mut thunks = table.thunks(first)?;
                while let Some(thunk) = thunks.next::<pe::ImageNtHeaders64>()? {
                    names.push(match table.import::<pe::ImageNtHeaders64>(thunk)? {
                        Import::Name(_, name) => String::from_utf8_lossy(name).into_owned(),
                        Import::Ordinal(n) => format!("#{n}"),
                    });
                }
            }
        }

        let dir = |i| {
            file.data_directories()
                .get(i)
                .map_or(0, |d| d.virtual_address.get(LE))
        };
        Ok(DriverImage {
            machine: fh.machine.get(LE),
            subsystem: oh.subsystem(),
            subsystem_version: (oh.major_subsystem_version(), oh.minor_subsystem_version()),
            os_version: (
                oh.major_operating_system_version(),
                oh.minor_operating_system_version(),
            ),
            dll_characteristics: oh.dll_characteristics(),
            checksum_stored: oh.check_sum(),
            checksum_computed: pe_checksum(data)?,
            entry_point_rva: oh.address_of_entry_point(),
            exports,
            imports,
            sections,
            import_directory_rva: dir(pe::IMAGE_DIRECTORY_ENTRY_IMPORT),
            iat_rva: dir(pe::IMAGE_DIRECTORY_ENTRY_IAT),
        })
    }

    fn section_of(&self, rva: u32) -> Option<&Section> {
        self.sections.iter().find(|s| s.contains(rva))
    }

    /// Every way this image falls short of a loadable, HVCI-compatible x64 kernel driver.
    pub fn kernel_driver_violations(&self) -> Vec<Violation> {
        let mut v = Vec::new();
        let mut fail = |msg: String| v.push(Violation(msg));
        if self.machine != pe::IMAGE_FILE_MACHINE_AMD64 {
            fail(format!(
                "machine {:#06x}, expected AMD64 (0x8664)",
                self.machine
            ));
        }
        if self.subsystem != pe::IMAGE_SUBSYSTEM_NATIVE {
            fail(format!("subsystem {}, expected NATIVE (1)", self.subsystem));
        }
        if self.subsystem_version != (10, 0) {
            fail(format!(
                "subsystem version {:?}, expected 10.0",
                self.subsystem_version
            ));
        }
        if self.os_version != (10, 0) {
            fail(format!("OS version {:?}, expected 10.0", self.os_version));
        }
        for (flag, name) in [
            (
                pe::IMAGE_DLLCHARACTERISTICS_FORCE_INTEGRITY,
                "FORCE_INTEGRITY",
            ),
            (pe::IMAGE_DLLCHARACTERISTICS_NX_COMPAT, "NX_COMPAT"),
            (pe::IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE, "DYNAMIC_BASE"),
        ] {
            if self.dll_characteristics & flag == 0 {
                fail(format!(
                    "DllCharacteristics {:#06x} lacks {name}",
                    self.dll_characteristics
                ));
            }
        }
        if self.checksum_stored == 0 || self.checksum_stored != self.checksum_computed {
            fail(format!(
                "checksum {:#x} stored, {:#x} computed (drivers must carry a valid checksum)",
                self.checksum_stored, self.checksum_computed
            ));
        }
        match self.exports.get("DriverEntry") {
            Some(&rva) if rva == self.entry_point_rva => {}
            Some(&rva) => fail(format!(
                "entry point at {:#x} but DriverEntry at {rva:#x}",
                self.entry_point_rva
            )),
            None => fail("no DriverEntry export to check the entry point against".into()),
        }
        for (dll, names) in &self.imports {
            if !KERNEL_MODULES.contains(&dll.to_ascii_lowercase().as_str()) {
                fail(format!(
                    "imports from {dll} ({}), not a kernel module",
                    names.join(", ")
                ));
            }
        }
        for (what, rva) in [
            ("import directory", self.import_directory_rva),
            ("IAT", self.iat_rva),
        ] {
            if rva == 0 {
                continue;
            }
            match self.section_of(rva) {
                Some(s) if s.executable() => fail(format!(
                    "{what} at {rva:#x} lies in executable section {}",
                    s.name
                )),
                Some(_) => {}
                None => fail(format!("{what} at {rva:#x} lies in no section")),
            }
        }
        for s in &self.sections {
            if s.executable() && s.writable() {
                fail(format!(
                    "section {} is both writable and executable",
                    s.name
                ));
            }
        }
        v
    }
}

/// The PE checksum as the Windows loader verifies it for drivers (`CheckSumMappedFile`): the
/// 16-bit one's-complement-style sum of the file with the checksum field taken as zero, folded,
/// plus the file length.
pub fn pe_checksum(data: &[u8]) -> Result<u32, ParseError> {
    let pe_offset = data
        .get(0x3C..0x40)
        .map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize)
        .ok_or_else(|| ParseError("file shorter than the DOS header".into()))?;
    // Signature (4) + file header (20) + CheckSum's offset in the optional header (64).
    let field = pe_offset + 4 + 20 + 64;
    if field + 4 > data.len() {
        return Err(ParseError("file shorter than its optional header".into()));
    }
    let mut sum: u64 = 0;
    for (i, chunk) in data.chunks(2).enumerate() {
        let at = i * 2;
        if at == field || at == field + 2 {
            continue;
        }
        let word = u16::from_le_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]) as u64;
        sum += word;
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    sum = (sum & 0xFFFF) + (sum >> 16);
    Ok((sum as u32).wrapping_add(data.len() as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_a_parse_error_not_a_panic() {
        assert!(DriverImage::parse(b"MZ").is_err());
        assert!(DriverImage::parse(&[0u8; 4096]).is_err());
        assert!(pe_checksum(b"MZ").is_err());
    }

    #[test]
    fn checksum_ignores_its_own_field_and_adds_the_length() {
        // A minimal buffer with e_lfanew = 0x40: the checksum field is at 0x40 + 88 = 0x98.
        let mut data = vec![0u8; 0x100];
        data[0x3C] = 0x40;
        data[0x10] = 0x34;
        data[0x11] = 0x12;
        let base = pe_checksum(&data).unwrap();
        assert_eq!(base, 0x1234 + 0x40 + 0x100);
        data[0x98..0x9C].copy_from_slice(&0xDEAD_BEEFu32.to_le_bytes());
        assert_eq!(pe_checksum(&data).unwrap(), base);
    }
}
