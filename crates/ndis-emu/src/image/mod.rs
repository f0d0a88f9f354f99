//! Running the driver image that ships: a cross-built `.sys` loaded into the emulator.
//!
//! * [`loader`]: maps a PE32+ kernel image, relocates it, initialises its `/GS` cookie and binds
//!   its imports to the emulator's Windows x64 exports ([`crate::Emulator::load_image`]).
//! * [`crt`](self): the C run-time functions ntoskrnl.exe exports (`memcpy`, `__chkstk`, ...).
//! * [`isolated`]: each image scenario in a child process, its bug check reported to the parent
//!   as the structured [`crate::BugCheck`]: a bug check raised while image code is on the stack
//!   cannot unwind (the image's frames have Windows unwind data only, which the host unwinder does
//!   not read), so the machine stops as Windows' would, in the child.
//! * [`cross_build`]: builds a driver crate for `x86_64-pc-windows-msvc` from a test.
//!
//! * `trap`: the image's hardware access. Its register accesses are plain loads and stores on
//!   the address `NdisMMapIoSpace` returned, and it reads CR8 and `gs:` as kernel code does;
//!   on the host those fault, and a signal handler performs them against the emulator
//!   (Linux x86_64). [`crate::Emulator::load_image`] turns it on.
//!
//! The seam for the hardware-access trap (register accesses and privileged instructions executed
//! by image code): [`set_map_hook`] is told of every image mapped and unmapped, and
//! [`image_containing`] answers, without locks or allocation (callable from a signal handler),
//! whether an address lies in a mapped image.

mod build;
mod crt;
mod isolate;
pub mod loader;
/// The image's hardware access: guard-mapped BARs, and a fault handler performing register
/// accesses, CR8 and `gs:` reads (`Emulator::trap_hardware_access`, switched on by
/// `Emulator::load_image`).
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub(crate) mod trap;

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use ndis_sys as sys;

pub use build::{TARGET, cross_build};
pub use isolate::{
    CHILD_ENV, Stop, exit_on_stop, in_isolated_child, isolated, isolated_with_timeout,
};
pub use loader::{BoundImport, LoadError, LoadedImage, MappedSection};

/// Images mapped at once, process-wide (every test thread's emulator together).
const SLOTS: usize = 64;

/// `[start, end)` of each mapped image; 0..0 for a free slot. Written under `SLOTS_LOCK`, read
/// lock-free.
static RANGES: [(AtomicUsize, AtomicUsize); SLOTS] =
    [const { (AtomicUsize::new(0), AtomicUsize::new(0)) }; SLOTS];
static SLOTS_LOCK: Mutex<()> = Mutex::new(());

/// What the trap is told: an image was mapped (`true`) or is about to be unmapped (`false`).
pub type MapHook = fn(range: Range<usize>, mapped: bool);
static MAP_HOOK: OnceLock<MapHook> = OnceLock::new();

/// Installs the hook called after every image is mapped (before its entry point runs) and before
/// it is unmapped. One per process; returns false if one was installed already.
pub fn set_map_hook(hook: MapHook) -> bool {
    MAP_HOOK.set(hook).is_ok()
}

/// The mapped image containing `address`, if any. Lock-free and allocation-free.
pub fn image_containing(address: usize) -> Option<Range<usize>> {
    RANGES.iter().find_map(|(start, end)| {
        let (s, e) = (start.load(Ordering::Acquire), end.load(Ordering::Acquire));
        (s..e).contains(&address).then_some(s..e)
    })
}

fn register(range: Range<usize>) {
    {
        let _guard = SLOTS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let (start, end) = RANGES
            .iter()
            .find(|(s, _)| s.load(Ordering::Relaxed) == 0)
            .expect("more than 64 driver images mapped at once");
        end.store(range.end, Ordering::Release);
        start.store(range.start, Ordering::Release);
    }
    if let Some(hook) = MAP_HOOK.get() {
        hook(range, true);
    }
}

fn unregister(range: Range<usize>) {
    if let Some(hook) = MAP_HOOK.get() {
        hook(range.clone(), false);
    }
    let _guard = SLOTS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((start, end)) = RANGES
        .iter()
        .find(|(s, _)| s.load(Ordering::Relaxed) == range.start)
    {
        start.store(0, Ordering::Release);
        end.store(0, Ordering::Release);
    }
}

/// The address an import binds to: an emulated export of that module (module names compare
/// case-insensitively, as Windows' loader does; function names exactly), present on the
/// emulated Windows.
fn resolve(
    module: &str,
    function: &str,
    windows: sys::availability::WindowsVersion,
) -> Result<usize, LoadError> {
    let missing = |reason: String| LoadError::MissingImport {
        module: module.to_string(),
        function: function.to_string(),
        reason,
    };
    let address = crate::win64_exports()
        .into_iter()
        .find(|e| e.module.eq_ignore_ascii_case(module) && e.name == function)
        .map(|e| e.address)
        .ok_or_else(|| missing(format!("{module} has no export {function} in the emulator")))?;
    let canonical = crate::win64_exports()
        .into_iter()
        .find(|e| e.address == address)
        .map(|e| e.module)
        .unwrap_or(module);
    if let Some(row) = sys::availability::lookup(canonical, function)
        && row.since > windows
    {
        return Err(missing(format!(
            "first exported by Windows {} ({}); the emulated Windows is {windows}",
            row.since,
            row.since.release_name().unwrap_or("?"),
        )));
    }
    Ok(address)
}

/// The C run-time exports of ntoskrnl.exe, for [`crate::win64_exports`].
pub(crate) fn crt_exports() -> impl Iterator<Item = crate::Win64Export> {
    crt::exports()
        .into_iter()
        .map(|(name, address)| crate::Win64Export {
            module: "ntoskrnl.exe",
            name,
            address,
        })
}

/// The image that `address` points into, with the string it names: for the panic bug check,
/// whose parameters are the file name's address and length in the image.
pub(crate) fn image_str(address: usize, len: usize) -> Option<String> {
    let range = image_containing(address)?;
    if len > 4096 || address.checked_add(len)? > range.end {
        return None;
    }
    // SAFETY: the bytes lie inside a mapped image (checked above: mapped ranges stay mapped
    // while a driver in them runs, and this is called from the driver's own KeBugCheckEx); the
    // image's sections are at least readable, and a range in its headers or sections is mapped
    // (the whole SizeOfImage is).
    let bytes = unsafe { std::slice::from_raw_parts(address as *const u8, len) };
    std::str::from_utf8(bytes).ok().map(str::to_string)
}
