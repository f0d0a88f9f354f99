//! What the WDK's libraries (or `wdk-sys` + `wdk-panic`) would otherwise give a `no_std` kernel
//! image built for `*-windows-msvc`. A driver links it with `use km_rt as _;` when it does not use
//! the `wdk` feature. On other targets this crate is empty: the host provides all of it.
//!
//! The CRT functions (`memcpy`, `memset`, `memmove`, `memcmp`, `__chkstk`) are not here: they are
//! imported from ntoskrnl.exe by `ndis_sys::crt`.
#![no_std]

/// Bug-check code for a Rust panic: "RPNC", the value `wdk-panic` uses too, so crash-dump tooling
/// treats both the same way. Parameters: file name pointer, file name length, line, and
/// [`panic_parameter4`]: the column in the low 32 bits, [`PANIC_ALLOCATION_FAILURE`] when the
/// panic is a failed heap allocation (the allocation error handler's "memory allocation of N
/// bytes failed"), [`PANIC_ABOVE_DISPATCH_LEVEL`] when it happened above DISPATCH_LEVEL, and the
/// IRQL at the panic in bits 48..56. A failed allocation above DISPATCH_LEVEL (both bits) is
/// `Box::new` or `Vec::push` in an ISR or synchronize function: `km-alloc` returns null there.
pub const RUST_PANIC_BUGCHECK: u32 = 0x5250_4E43;

/// Parameter 4 bit: the panic is a failed heap allocation.
pub const PANIC_ALLOCATION_FAILURE: u64 = 1 << 32;
/// Parameter 4 bit: the panic happened above DISPATCH_LEVEL.
pub const PANIC_ABOVE_DISPATCH_LEVEL: u64 = 1 << 33;
/// Parameter 4: the IRQL at the panic, shifted left by this.
pub const PANIC_IRQL_SHIFT: u32 = 48;

/// Parameter 4 of [`RUST_PANIC_BUGCHECK`] (x64: 64 bits) for a panic at `column`, at `irql`,
/// that is (`allocation_failure`) or is not a failed heap allocation.
pub const fn panic_parameter4(column: u32, irql: u8, allocation_failure: bool) -> u64 {
    let mut p = column as u64 | ((irql as u64) << PANIC_IRQL_SHIFT);
    if allocation_failure {
        p |= PANIC_ALLOCATION_FAILURE;
    }
    if irql > ndis_sys::DISPATCH_LEVEL {
        p |= PANIC_ABOVE_DISPATCH_LEVEL;
    }
    p
}

/// Whether a panic message is the allocation error handler's ("memory allocation of N bytes
/// failed"): compared as it is formatted, without a buffer (nothing may allocate here).
pub fn is_allocation_failure(message: &dyn core::fmt::Display) -> bool {
    struct Prefix {
        matched: usize,
        differs: bool,
    }
    const PREFIX: &[u8] = b"memory allocation of ";
    impl core::fmt::Write for Prefix {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            for &b in s.as_bytes() {
                if self.matched == PREFIX.len() {
                    return Err(core::fmt::Error); // seen enough: stop formatting
                }
                if b != PREFIX[self.matched] {
                    self.differs = true;
                    return Err(core::fmt::Error);
                }
                self.matched += 1;
            }
            Ok(())
        }
    }
    let mut w = Prefix {
        matched: 0,
        differs: false,
    };
    let _ = core::fmt::write(&mut w, format_args!("{message}"));
    !w.differs && w.matched == PREFIX.len()
}

/// A kernel driver cannot unwind; a panic stops the machine with a bug check naming the source
/// location (visible in the crash dump and the debugger), whether it is an allocation failure,
/// and the IRQL it happened at.
#[cfg(all(windows, not(test)))]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let (file, line, column) = match info.location() {
        Some(l) => (l.file(), l.line(), l.column()),
        None => ("<unknown>", 0, 0),
    };
    let irql = km_alloc::current_irql();
    let allocation_failure = is_allocation_failure(&info.message());
    // SAFETY: KeBugCheckEx does not return; the parameters are plain integers.
    unsafe {
        ndis_sys::KeBugCheckEx(
            RUST_PANIC_BUGCHECK,
            file.as_ptr() as usize,
            file.len(),
            line as usize,
            panic_parameter4(column, irql, allocation_failure) as usize,
        )
    }
}

/// MSVC's marker that floating point is used; any `f32`/`f64` code (even in `core::fmt`)
/// references it.
#[cfg(windows)]
#[unsafe(no_mangle)]
pub static _fltused: i32 = 0;

/// The prebuilt `core` is compiled with unwind tables whose `.xdata` names the C++ frame handler
/// (seen in debug builds). With `panic = "abort"` Rust never unwinds, but a kernel exception
/// dispatch walking through Rust frames could still consult it: answer "not handled here"
/// (`ExceptionContinueSearch` = 1) so the search goes on to a frame that does handle it.
#[cfg(windows)]
#[unsafe(no_mangle)]
pub extern "system" fn __CxxFrameHandler3(
    _exception_record: *mut core::ffi::c_void,
    _establisher_frame: *mut core::ffi::c_void,
    _context: *mut core::ffi::c_void,
    _dispatcher_context: *mut core::ffi::c_void,
) -> i32 {
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allocation_error_handlers_message_is_recognised() {
        let size = 4096usize;
        assert!(is_allocation_failure(&format_args!(
            "memory allocation of {size} bytes failed"
        )));
        assert!(!is_allocation_failure(&format_args!("index out of bounds")));
        assert!(!is_allocation_failure(&format_args!("memory allocation")));
        assert!(!is_allocation_failure(&format_args!("")));
    }

    #[test]
    fn parameter_4_says_allocation_failure_and_above_dispatch_level() {
        assert_eq!(panic_parameter4(17, 0, false), 17);
        assert_eq!(panic_parameter4(17, 2, false), 17 | 2 << 48);
        assert_eq!(
            panic_parameter4(17, 2, true),
            17 | 2 << 48 | PANIC_ALLOCATION_FAILURE
        );
        assert_eq!(
            panic_parameter4(9, 6, true),
            9 | 6 << 48 | PANIC_ALLOCATION_FAILURE | PANIC_ABOVE_DISPATCH_LEVEL
        );
        assert_eq!(
            panic_parameter4(u32::MAX, 15, false),
            0xFFFF_FFFF | 15 << 48 | PANIC_ABOVE_DISPATCH_LEVEL
        );
    }
}
