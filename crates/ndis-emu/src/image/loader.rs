//! The PE loader: maps a cross-built kernel image (`.sys`, PE32+ AMD64) into the test process as
//! the Windows kernel loader (`MmLoadSystemImage`) would, so its `DriverEntry` can be called by
//! the emulator like a host-built driver's.
//!
//! Steps, in the order Windows takes them:
//! 1. Parse and check the headers (`object`): PE32+, machine AMD64, an executable image, the
//!    NATIVE subsystem (a driver, not an application), an entry point inside the image.
//! 2. Reserve `SizeOfImage` bytes of anonymous memory (mmap, read-write while loading), copy the
//!    headers and every section's raw data to its RVA; the rest stays zero (`.bss`).
//! 3. Apply the base relocations (`IMAGE_REL_BASED_DIR64` by the distance between the image's
//!    preferred base and where it was mapped; `ABSOLUTE` entries are padding). Any other type is
//!    refused: an AMD64 image has no other.
//! 4. Initialise the `/GS` security cookie if the image has a load configuration directory that
//!    names one: a cookie still holding the compiler's default (`0x2B992DDFA232`) or zero gets a
//!    fresh value with the top 16 bits clear, as the kernel does; `__security_init_cookie` in a
//!    WDK-built driver bug-checks if it finds the default still there.
//! 5. Bind every import by name to the emulator's Windows x64 exports
//!    ([`crate::win64_exports`]) and the C runtime ntoskrnl.exe exports (`memcpy`, `__chkstk`,
//!    ...). An import the emulator lacks, or one newer than the emulated Windows
//!    ([`crate::Config::windows_version`]), fails the load naming `module!function`: what Windows
//!    reports as Code 39 ("the driver may be corrupted or missing"). Imports by ordinal are
//!    refused (ndis.sys and ntoskrnl.exe are imported by name).
//! 6. Set each page's protection from the sections' characteristics (`MEM_READ`, `MEM_WRITE`,
//!    `MEM_EXECUTE`; the headers read-only), then tell the hardware-access trap (`image::trap`
//!    hooks, see [`super::set_map_hook`]) where the image lies.
//!
//! The mapping lives until the emulator unloads the driver ([`crate::Emulator::unload`]) or is
//! dropped: callbacks the driver registered point into it.

use std::fmt;
use std::path::{Path, PathBuf};

use object::LittleEndian as LE;
use object::pe;
use object::read::pe::{ImageNtHeaders, ImageThunkData, ImportTable, PeFile64};

use ndis_sys as sys;

use crate::DriverEntry;

/// Why an image could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// The file could not be read.
    Io { path: PathBuf, error: String },
    /// Not a PE32+ image `object` can parse.
    NotPe(String),
    /// A PE image, but not an AMD64 kernel driver the loader can map (the reason says which
    /// header is wrong).
    NotDriver(String),
    /// An import the emulator does not export, or one the emulated Windows does not have yet:
    /// Windows refuses to start such a driver (Device Manager Code 39).
    MissingImport {
        module: String,
        function: String,
        /// Why: not emulated, or first exported by a later Windows.
        reason: String,
    },
    /// The image is malformed where the loader looks (relocations, imports, sections).
    Malformed(String),
    /// mmap or mprotect failed.
    Map(String),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Io { path, error } => write!(f, "cannot read {}: {error}", path.display()),
            LoadError::NotPe(why) => write!(f, "not a PE image: {why}"),
            LoadError::NotDriver(why) => write!(f, "not an x64 kernel driver image: {why}"),
            LoadError::MissingImport {
                module,
                function,
                reason,
            } => write!(
                f,
                "import {module}!{function} cannot be bound ({reason}): Windows would not load \
                 the driver (Code 39)"
            ),
            LoadError::Malformed(why) => write!(f, "malformed image: {why}"),
            LoadError::Map(why) => write!(f, "cannot map the image: {why}"),
        }
    }
}

impl std::error::Error for LoadError {}

/// One import as the loader bound it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundImport {
    pub module: String,
    pub function: String,
    /// The emulator's function the IAT slot now holds.
    pub address: usize,
}

/// One section as mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedSection {
    pub name: String,
    /// Address in the process.
    pub address: usize,
    /// `VirtualSize`.
    pub size: usize,
    pub readable: bool,
    pub writable: bool,
    pub executable: bool,
}

/// A driver image the emulator loaded: where it lies and what was done to it. The mapping itself
/// belongs to the emulator and is gone after [`crate::Emulator::unload`].
#[derive(Debug, Clone)]
pub struct LoadedImage {
    /// The file name (or the name given with the bytes).
    pub name: String,
    /// Where the image is mapped.
    pub base: usize,
    /// `SizeOfImage`.
    pub size: usize,
    /// `ImageBase` from the optional header (the image was relocated from there).
    pub preferred_base: u64,
    /// DIR64 relocations applied.
    pub relocations: usize,
    /// Address of the `/GS` cookie the loader initialised, if the image has one.
    pub security_cookie: Option<usize>,
    pub imports: Vec<BoundImport>,
    pub sections: Vec<MappedSection>,
    entry: usize,
}

impl LoadedImage {
    /// The image's entry point (`AddressOfEntryPoint`, its `DriverEntry`), for
    /// [`crate::Emulator::load_driver`]. Valid while the image is mapped (until unload).
    pub fn entry(&self) -> DriverEntry {
        // SAFETY: `entry` is the mapped address of the image's AddressOfEntryPoint, checked to
        // lie in an executable section; a kernel driver's entry point is
        // `NTSTATUS DriverEntry(PDRIVER_OBJECT, PUNICODE_STRING)` with the Windows x64 calling
        // convention, which is what `DriverEntry` is.
        unsafe { std::mem::transmute::<usize, DriverEntry>(self.entry) }
    }

    /// The mapped address range `[base, base + size)`, for the hardware-access trap.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.base..self.base + self.size
    }

    /// Whether `address` lies in one of the image's executable sections.
    pub fn is_code(&self, address: usize) -> bool {
        self.sections
            .iter()
            .any(|s| s.executable && (s.address..s.address + s.size).contains(&address))
    }
}

/// The memory of one mapped image; unmapped on drop.
pub(crate) struct Mapping {
    base: *mut u8,
    size: usize,
}

impl Mapping {
    pub(crate) fn range(&self) -> std::ops::Range<usize> {
        self.base as usize..self.base as usize + self.size
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        super::unregister(self.range());
        // SAFETY: `base`/`size` are exactly what mmap returned for this mapping, which nothing
        // references any more: the emulator drops it only after the driver unloaded (or when the
        // emulator itself goes away, after which no callback into the image can be made).
        unsafe { libc::munmap(self.base.cast(), self.size) };
    }
}

/// The compiler's default `/GS` cookie on x64 (`DEFAULT_SECURITY_COOKIE` in the CRT sources).
pub const DEFAULT_SECURITY_COOKIE: u64 = 0x0000_2B99_2DDF_A232;

const PAGE: usize = 4096;

/// Reads `path` and loads it ([`load_bytes`]).
pub(crate) fn load_file(
    path: &Path,
    windows: sys::availability::WindowsVersion,
) -> Result<(LoadedImage, Mapping), LoadError> {
    let bytes = std::fs::read(path).map_err(|e| LoadError::Io {
        path: path.to_path_buf(),
        error: e.to_string(),
    })?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    load_bytes(&name, &bytes, windows)
}

/// Maps, relocates, binds and protects the image in `bytes` (see the module documentation).
pub(crate) fn load_bytes(
    name: &str,
    bytes: &[u8],
    windows: sys::availability::WindowsVersion,
) -> Result<(LoadedImage, Mapping), LoadError> {
    let file = PeFile64::parse(bytes).map_err(|e| LoadError::NotPe(e.to_string()))?;
    let nt = file.nt_headers();
    let header = &nt.file_header;
    let optional = nt.optional_header();
    let machine = header.machine.get(LE);
    if machine != pe::IMAGE_FILE_MACHINE_AMD64 {
        return Err(LoadError::NotDriver(format!(
            "machine {machine:#06x}, not AMD64 (0x8664)"
        )));
    }
    if header.characteristics.get(LE) & pe::IMAGE_FILE_EXECUTABLE_IMAGE == 0 {
        return Err(LoadError::NotDriver(
            "not an executable image (an object file?)".into(),
        ));
    }
    let subsystem = optional.subsystem.get(LE);
    if subsystem != pe::IMAGE_SUBSYSTEM_NATIVE {
        return Err(LoadError::NotDriver(format!(
            "subsystem {subsystem}, not NATIVE (1): a user-mode program, not a driver"
        )));
    }
    let size = optional.size_of_image.get(LE) as usize;
    let headers_size = optional.size_of_headers.get(LE) as usize;
    if size == 0 || headers_size > size || headers_size > bytes.len() {
        return Err(LoadError::Malformed(format!(
            "SizeOfImage {size:#x}, SizeOfHeaders {headers_size:#x}"
        )));
    }
    let entry_rva = optional.address_of_entry_point.get(LE) as usize;
    let preferred_base = optional.image_base.get(LE);
    let sections = file.section_table();

    // 2. Map and copy.
    let size = size.next_multiple_of(PAGE);
    // SAFETY: an anonymous private mapping at an address of the kernel's choosing; it aliases
    // nothing.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(LoadError::Map(format!(
            "mmap of {size:#x} bytes: {}",
            std::io::Error::last_os_error()
        )));
    }
    let mapping = Mapping {
        base: base.cast(),
        size,
    };
    // SAFETY: the mapping is `size` bytes, readable and writable, and only this function uses it
    // until it returns.
    let image = unsafe { std::slice::from_raw_parts_mut(mapping.base, size) };
    image[..headers_size].copy_from_slice(&bytes[..headers_size]);
    let mut mapped_sections = Vec::new();
    for s in sections.iter() {
        let name = String::from_utf8_lossy(s.raw_name())
            .trim_end_matches('\0')
            .to_string();
        let rva = s.virtual_address.get(LE) as usize;
        let virtual_size = s.virtual_size.get(LE) as usize;
        let raw_size = s.size_of_raw_data.get(LE) as usize;
        let raw_offset = s.pointer_to_raw_data.get(LE) as usize;
        // Raw data beyond VirtualSize is file padding; VirtualSize beyond it is zero fill.
        let copy = if virtual_size == 0 {
            raw_size
        } else {
            raw_size.min(virtual_size)
        };
        let span = virtual_size.max(copy);
        if rva.checked_add(span).is_none_or(|end| end > size) {
            return Err(LoadError::Malformed(format!(
                "section {name} [{rva:#x}, +{span:#x}) outside SizeOfImage {size:#x}"
            )));
        }
        if copy > 0 {
            let raw = raw_offset
                .checked_add(copy)
                .and_then(|end| bytes.get(raw_offset..end))
                .ok_or_else(|| {
                    LoadError::Malformed(format!("section {name}: raw data past the file end"))
                })?;
            image[rva..rva + copy].copy_from_slice(raw);
        }
        let c = s.characteristics.get(LE);
        mapped_sections.push(MappedSection {
            name,
            address: mapping.base as usize + rva,
            size: span,
            readable: c & pe::IMAGE_SCN_MEM_READ != 0,
            writable: c & pe::IMAGE_SCN_MEM_WRITE != 0,
            executable: c & pe::IMAGE_SCN_MEM_EXECUTE != 0,
        });
    }
    let entry = mapping.base as usize + entry_rva;
    if !mapped_sections
        .iter()
        .any(|s| s.executable && (s.address..s.address + s.size).contains(&entry))
    {
        return Err(LoadError::NotDriver(format!(
            "entry point RVA {entry_rva:#x} is not in an executable section"
        )));
    }

    // 3. Base relocations.
    let delta = (mapping.base as u64).wrapping_sub(preferred_base);
    let directories = file.data_directories();
    let mut relocations = 0;
    if let Some(dir) = directories.get(pe::IMAGE_DIRECTORY_ENTRY_BASERELOC) {
        let (rva, len) = (
            dir.virtual_address.get(LE) as usize,
            dir.size.get(LE) as usize,
        );
        if len > 0 {
            let data = image
                .get(rva..rva + len)
                .ok_or_else(|| {
                    LoadError::Malformed("relocation directory outside the image".into())
                })?
                .to_vec();
            let mut blocks = object::read::pe::RelocationBlockIterator::new(&data);
            while let Some(block) = blocks
                .next()
                .map_err(|e| LoadError::Malformed(format!("relocations: {e}")))?
            {
                for r in block {
                    match r.typ {
                        pe::IMAGE_REL_BASED_ABSOLUTE => {}
                        pe::IMAGE_REL_BASED_DIR64 => {
                            let at = r.virtual_address as usize;
                            let slot = image.get_mut(at..at + 8).ok_or_else(|| {
                                LoadError::Malformed(format!(
                                    "DIR64 relocation at {at:#x} outside the image"
                                ))
                            })?;
                            let v = u64::from_le_bytes(slot.try_into().expect("8 bytes"));
                            slot.copy_from_slice(&v.wrapping_add(delta).to_le_bytes());
                            relocations += 1;
                        }
                        other => {
                            return Err(LoadError::Malformed(format!(
                                "base relocation type {other} at RVA {:#x}: an AMD64 image has \
                                 only DIR64",
                                r.virtual_address
                            )));
                        }
                    }
                }
            }
        }
    }

    // 4. The /GS security cookie.
    let security_cookie = init_security_cookie(image, &directories, mapping.base as u64)?;

    // 5. Imports.
    let mut imports = Vec::new();
    if let Some(dir) = directories.get(pe::IMAGE_DIRECTORY_ENTRY_IMPORT)
        && dir.size.get(LE) > 0
    {
        let table_rva = dir.virtual_address.get(LE);
        let snapshot = image.to_vec();
        let table = ImportTable::new(&snapshot, 0, table_rva);
        let mut descriptors = table
            .descriptors()
            .map_err(|e| LoadError::Malformed(format!("import directory: {e}")))?;
        while let Some(d) = descriptors
            .next()
            .map_err(|e| LoadError::Malformed(format!("import directory: {e}")))?
        {
            let module = String::from_utf8_lossy(
                table
                    .name(d.name.get(LE))
                    .map_err(|e| LoadError::Malformed(format!("import module name: {e}")))?,
            )
            .into_owned();
            let lookup = match d.original_first_thunk.get(LE) {
                0 => d.first_thunk.get(LE),
                rva => rva,
            };
            let mut thunks = table
                .thunks(lookup)
                .map_err(|e| LoadError::Malformed(format!("{module} thunks: {e}")))?;
            let mut slot = d.first_thunk.get(LE) as usize;
            while let Some(thunk) = thunks
                .next::<pe::ImageNtHeaders64>()
                .map_err(|e| LoadError::Malformed(format!("{module} thunks: {e}")))?
            {
                if thunk.is_ordinal() {
                    return Err(LoadError::MissingImport {
                        module,
                        function: format!("#{}", thunk.ordinal()),
                        reason: "imported by ordinal; the emulator binds by name".into(),
                    });
                }
                let (_, function) = table
                    .hint_name(thunk.address())
                    .map_err(|e| LoadError::Malformed(format!("{module} import name: {e}")))?;
                let function = String::from_utf8_lossy(function).into_owned();
                let address = super::resolve(&module, &function, windows)?;
                let iat = image.get_mut(slot..slot + 8).ok_or_else(|| {
                    LoadError::Malformed(format!(
                        "IAT slot of {module}!{function} outside the image"
                    ))
                })?;
                iat.copy_from_slice(&(address as u64).to_le_bytes());
                imports.push(BoundImport {
                    module: module.clone(),
                    function,
                    address,
                });
                slot += 8;
            }
        }
    }

    // 6. Protections, page by page: the union of the sections on the page (an image whose
    // SectionAlignment is below the page size shares pages between sections). A section without
    // MEM_WRITE is read-only and one without MEM_EXECUTE is not executable (NX), as on Windows.
    let pages = size / PAGE;
    // Every page is at least readable: the headers, and any gap between sections, as Windows
    // maps them.
    let mut protection = vec![libc::PROT_READ; pages];
    for s in &mapped_sections {
        let mut prot = 0;
        if s.readable {
            prot |= libc::PROT_READ;
        }
        if s.writable {
            prot |= libc::PROT_READ | libc::PROT_WRITE;
        }
        if s.executable {
            prot |= libc::PROT_READ | libc::PROT_EXEC;
        }
        let first = (s.address - mapping.base as usize) / PAGE;
        let last = (s.address - mapping.base as usize + s.size.max(1)).div_ceil(PAGE);
        for p in &mut protection[first..last.min(pages)] {
            *p |= prot;
        }
    }
    let mut page = 0;
    while page < pages {
        let prot = protection[page];
        let run = protection[page..]
            .iter()
            .take_while(|&&p| p == prot)
            .count();
        // SAFETY: the range lies inside the mapping; after this no Rust reference to the image's
        // bytes is used (`image` ends here), and the image's own code is what runs on them.
        let r = unsafe { libc::mprotect(mapping.base.add(page * PAGE).cast(), run * PAGE, prot) };
        if r != 0 {
            return Err(LoadError::Map(format!(
                "mprotect: {}",
                std::io::Error::last_os_error()
            )));
        }
        page += run;
    }
    super::register(mapping.range());
    Ok((
        LoadedImage {
            name: name.to_string(),
            base: mapping.base as usize,
            size,
            preferred_base,
            relocations,
            security_cookie,
            imports,
            sections: mapped_sections,
            entry,
        },
        mapping,
    ))
}

/// Step 4: the load configuration's `SecurityCookie` (a VA, relocated by now). Windows
/// generates a cookie when the image holds the default or zero there; an image that
/// initialised its own keeps it.
fn init_security_cookie(
    image: &mut [u8],
    directories: &object::read::pe::DataDirectories<'_>,
    base: u64,
) -> Result<Option<usize>, LoadError> {
    let Some(dir) = directories.get(pe::IMAGE_DIRECTORY_ENTRY_LOAD_CONFIG) else {
        return Ok(None);
    };
    let (rva, len) = (
        dir.virtual_address.get(LE) as usize,
        dir.size.get(LE) as usize,
    );
    if rva == 0 || len == 0 {
        return Ok(None);
    }
    // The structure's own Size field says how much of it exists (the directory size is the
    // same or, for old linkers, a fixed 0x40).
    let size_field = image
        .get(rva..rva + 4)
        .ok_or_else(|| LoadError::Malformed("load configuration outside the image".into()))?;
    let struct_size = u32::from_le_bytes(size_field.try_into().expect("4 bytes")) as usize;
    let cookie_field = std::mem::offset_of!(pe::ImageLoadConfigDirectory64, security_cookie);
    if struct_size < cookie_field + 8 {
        return Ok(None);
    }
    let field = image
        .get(rva + cookie_field..rva + cookie_field + 8)
        .ok_or_else(|| LoadError::Malformed("load configuration outside the image".into()))?;
    let va = u64::from_le_bytes(field.try_into().expect("8 bytes"));
    if va == 0 {
        return Ok(None);
    }
    let at = va
        .checked_sub(base)
        .map(|r| r as usize)
        .filter(|&r| r + 8 <= image.len())
        .ok_or_else(|| {
            LoadError::Malformed(format!(
                "load configuration: SecurityCookie {va:#x} outside the image"
            ))
        })?;
    let slot = &mut image[at..at + 8];
    let current = u64::from_le_bytes((&*slot).try_into().expect("8 bytes"));
    if current == DEFAULT_SECURITY_COOKIE || current == 0 {
        slot.copy_from_slice(&fresh_cookie().to_le_bytes());
    }
    Ok(Some(base as usize + at))
}

/// A cookie as the kernel makes one: unpredictable, top 16 bits clear (so a string overrun
/// cannot forge it), never the default.
fn fresh_cookie() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    let cookie = h.finish() & 0x0000_FFFF_FFFF_FFFF;
    if cookie == DEFAULT_SECURITY_COOKIE || cookie == 0 {
        DEFAULT_SECURITY_COOKIE ^ 0x1
    } else {
        cookie
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_cookie_keeps_its_top_16_bits_clear_and_is_never_the_default() {
        for _ in 0..100 {
            let c = fresh_cookie();
            assert_eq!(c >> 48, 0);
            assert_ne!(c, DEFAULT_SECURITY_COOKIE);
            assert_ne!(c, 0);
        }
    }
}
