//! What the WDK's libraries (or `wdk-sys` + `wdk-panic`) would otherwise give a `no_std` kernel
//! image built for `*-windows-msvc`. A driver links it with `use km_rt as _;` when it does not use
//! the `wdk` feature. On other targets this crate is empty: the host provides all of it.
//!
//! The CRT functions (`memcpy`, `memset`, `memmove`, `memcmp`, `__chkstk`) are not here: they are
//! imported from ntoskrnl.exe by `ndis_sys::crt`.
#![no_std]

/// Bug-check code for a Rust panic: "RPNC", the value `wdk-panic` uses too, so crash-dump tooling
/// treats both the same way. Parameters: file name pointer, file name length, line, column.
pub const RUST_PANIC_BUGCHECK: u32 = 0x5250_4E43;

/// A kernel driver cannot unwind; a panic stops the machine with a bug check naming the source
/// location (visible in the crash dump and the debugger).
#[cfg(all(windows, not(test)))]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let (file, line, column) = match info.location() {
        Some(l) => (l.file(), l.line(), l.column()),
        None => ("<unknown>", 0, 0),
    };
    // SAFETY: KeBugCheckEx does not return; the parameters are plain integers.
    unsafe {
        ndis_sys::KeBugCheckEx(
            RUST_PANIC_BUGCHECK,
            file.as_ptr() as usize,
            file.len(),
            line as usize,
            column as usize,
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
