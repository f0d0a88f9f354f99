//! The C run-time functions ntoskrnl.exe exports and rustc's code generation for
//! `x86_64-pc-windows-msvc` imports (`ndis_sys::crt`): `memcpy`, `memmove`, `memset`, `memcmp`,
//! `strlen` and the stack probe `__chkstk`, with the Windows x64 convention the image calls them
//! with. Host builds never use these (they link the host's C library).

/// `(name, address)` of each function, all exported by ntoskrnl.exe.
pub(crate) fn exports() -> [(&'static str, usize); 6] {
    [
        ("memcpy", memcpy as *const () as usize),
        ("memmove", memmove as *const () as usize),
        ("memset", memset as *const () as usize),
        ("memcmp", memcmp as *const () as usize),
        ("strlen", strlen as *const () as usize),
        ("__chkstk", __chkstk as *const () as usize),
    ]
}

/// # Safety
/// `memcpy`'s contract: `n` bytes readable at `src`, writable at `dst`, not overlapping.
unsafe extern "win64" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller's contract (above).
    unsafe { core::ptr::copy_nonoverlapping(src, dst, n) };
    dst
}

/// # Safety
/// `n` bytes readable at `src` and writable at `dst`; they may overlap.
unsafe extern "win64" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller's contract; `copy` allows overlap.
    unsafe { core::ptr::copy(src, dst, n) };
    dst
}

/// # Safety
/// `n` bytes writable at `dst`.
unsafe extern "win64" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller's contract.
    unsafe { core::ptr::write_bytes(dst, c as u8, n) };
    dst
}

/// # Safety
/// `n` bytes readable at `a` and at `b`.
unsafe extern "win64" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: the caller's contract.
    let (a, b) = unsafe {
        (
            core::slice::from_raw_parts(a, n),
            core::slice::from_raw_parts(b, n),
        )
    };
    a.iter()
        .zip(b)
        .find(|(x, y)| x != y)
        .map_or(0, |(&x, &y)| i32::from(x) - i32::from(y))
}

/// # Safety
/// `s` points at a NUL-terminated string.
unsafe extern "win64" fn strlen(s: *const core::ffi::c_char) -> usize {
    // SAFETY: the caller's contract.
    unsafe { core::ffi::CStr::from_ptr(s) }.to_bytes().len()
}

/// The MSVC x64 stack probe. Its convention is not a calling convention: the compiler emits
/// `mov eax, <frame size>; call __chkstk; sub rsp, rax` in the prologue of a function whose frame
/// exceeds a page. On entry RAX holds the frame size; the probe touches every page from the
/// caller's RSP down to RSP - RAX, one page at a time (so the guard page below a stack is hit in
/// order and never jumped over), and returns with every register but R10, R11 and the flags
/// unchanged (RAX too: the caller subtracts it from RSP itself). This is compiler-rt's
/// `___chkstk_ms`, which implements the same contract.
///
/// # Safety
/// Only callable as above: RAX = the size of the frame about to be allocated on the current
/// stack.
#[unsafe(naked)]
unsafe extern "win64" fn __chkstk() {
    // SAFETY: the probe reads (`test` touches, writes nothing) only stack pages between the
    // caller's RSP and RSP - RAX, the frame the caller is about to allocate; it saves and
    // restores the two registers it uses (RCX, RAX) and returns to the caller.
    core::arch::naked_asm!(
        "push rcx",
        "push rax",
        "cmp rax, 0x1000",
        // The caller's RSP: above the two pushes and the return address.
        "lea rcx, [rsp + 24]",
        "jb 3f",
        "2:",
        "sub rcx, 0x1000",
        "test qword ptr [rcx], rcx",
        "sub rax, 0x1000",
        "cmp rax, 0x1000",
        "ja 2b",
        "3:",
        "sub rcx, rax",
        "test qword ptr [rcx], rcx",
        "pop rax",
        "pop rcx",
        "ret",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Calls the probe as a compiled prologue does, for a frame of `size` bytes, and returns the
    /// registers after it: (RAX, RCX, RDX, R8, RSP moved by).
    fn probe(size: u64) -> (u64, u64, u64, u64, i64) {
        let (rax, rcx, rdx, r8, moved): (u64, u64, u64, u64, i64);
        // SAFETY: the probe touches only stack pages within `size` below RSP; 64 KiB is well
        // within the test thread's stack. It preserves everything but R10, R11 and the flags,
        // which are declared clobbered.
        unsafe {
            core::arch::asm!(
                "mov r9, rsp",
                "call {probe}",
                "mov {moved}, r9",
                "sub {moved}, rsp",
                probe = sym __chkstk,
                moved = out(reg) moved,
                inout("rax") size => rax,
                inout("rcx") 0x1111u64 => rcx,
                inout("rdx") 0x2222u64 => rdx,
                inout("r8") 0x3333u64 => r8,
                out("r9") _,
                out("r10") _,
                out("r11") _,
            )
        };
        (rax, rcx, rdx, r8, moved)
    }

    #[test]
    fn chkstk_probes_without_moving_the_stack_or_changing_registers() {
        for size in [0x10, 0xFFF, 0x1000, 0x1001, 0x4000, 0x10_000] {
            assert_eq!(
                probe(size),
                (size, 0x1111, 0x2222, 0x3333, 0),
                "size {size:#x}"
            );
        }
    }

    #[test]
    fn the_string_functions_follow_the_c_library() {
        let mut buf = [0u8; 8];
        let src = *b"abcdefgh";
        // SAFETY: 8-byte buffers, as the functions are told.
        unsafe {
            assert_eq!(memcpy(buf.as_mut_ptr(), src.as_ptr(), 8), buf.as_mut_ptr());
            assert_eq!(buf, src);
            memmove(buf.as_mut_ptr().add(2), buf.as_ptr(), 6);
            assert_eq!(&buf, b"ababcdef");
            memset(buf.as_mut_ptr(), 0x7A, 3);
            assert_eq!(&buf, b"zzzbcdef");
            assert_eq!(memcmp(b"abc".as_ptr(), b"abd".as_ptr(), 3), -1);
            assert_eq!(memcmp(b"abc".as_ptr(), b"abc".as_ptr(), 3), 0);
            assert_eq!(strlen(c"driver".as_ptr()), 6);
        }
    }
}
