//! Hardware access from a loaded Windows image: guard-mapped BARs and a fault handler.
//!
//! A driver compiled for the host reaches the device model through function calls
//! (`ndis_sys::mmio`'s host path). A cross-built image does what it does on Windows: plain
//! volatile loads and stores on the address `NdisMMapIoSpace` returned, `mov rax, cr8` for an
//! inlined `KeGetCurrentIrql`, and possibly `gs:`-relative reads of the processor control
//! region. On the host each of those faults, and this module turns the fault into the
//! emulated operation:
//!
//! 1. **Guard-mapped BARs.** Once [`Emulator::trap_hardware_access`] was called, every
//!    `NdisMMapIoSpace` returns an address inside a fresh reservation with no access rights
//!    (`mmap(PROT_NONE)`), so every access of the mapping faults. The reservation covers the
//!    mapping rounded up to pages plus one page, so an access just past the end faults too and
//!    is reported as outside the mapping. It stays reserved after `NdisMUnmapIoSpace` (a stale
//!    access is reported, not silently served by whatever the host maps there later) and is
//!    released when the emulator is dropped.
//! 2. **The handler** (`SIGSEGV`, `SA_SIGINFO | SA_ONSTACK`, installed once per process, the
//!    previous handler kept) decides whether the fault is one of ours: the faulting address
//!    lies in a guard region; or, on a thread whose emulator traps hardware access, the
//!    instruction is `mov r64, cr8` / `mov cr8, r64` or another privileged instruction (a
//!    general-protection fault, `si_code` `SI_KERNEL`), or a memory access with a `gs` segment
//!    (user-mode GS base is 0 on Linux, so `gs:[off]` faults at `off`). Anything else goes to
//!    the previous handler (for Rust's runtime: its stack-overflow report, else the default
//!    action), after a one-line note on stderr on a trapping thread.
//! 3. **Emulation outside signal context.** The handler does not emulate. It records the
//!    faulting RIP, the instruction's length, what kind of trap it is and the faulting address
//!    in a thread-local, and returns with RIP set to `ndis_emu_trap_stub`, an assembly stub.
//!    The thread resumes there with every register as it was at the fault, on its own stack,
//!    the signal mask restored by `sigreturn`. The stub skips the red zone, saves every
//!    general-purpose register and RFLAGS into a [`Frame`] and the SSE state (`fxsave64`:
//!    XMM0-15, MXCSR; the image is built for the target's baseline, SSE2, and uses no wider
//!    registers), calls [`trap_emulate`] (normal Rust code, like an export the driver called),
//!    restores all of it (including the destination the emulation wrote) and returns to the
//!    instruction after the faulting one. Unlike an export call, a fault can come between any
//!    two instructions, so every register is live, XMM0-5 included.
//!    So the emulation runs exactly as an emulated export does: synchronously, on the thread
//!    that owns the emulator, at a point where the emulator holds no borrow of its state (the
//!    driver is executing its own code; every export releases its borrow before it returns to
//!    the driver, see `machine.rs`, "Borrowing discipline", and a violation would be a
//!    `RefCell` panic, not aliasing). It may allocate, deliver interrupts (an ISR that reads
//!    registers faults again, which is an ordinary nested trap) and raise a bug check: the
//!    panic unwinds from `trap_emulate` through the stub, whose call-frame information
//!    describes the faulting frame as its caller, into the faulting code, as if the faulting
//!    instruction had called an export that bug-checked.
//!
//! The handler itself only reads a `const` thread-local, an atomic table of guard regions and
//! the instruction bytes at RIP (decoded with `iced-x86` without allocating), writes a
//! thread-local and the interrupted context: no allocation, no lock.
//!
//! Supported instruction forms are listed in docs/emulator.md ("Running the shipped image:
//! hardware access"); any other instruction touching a guard region, any `gs:` access other
//! than the emulated fields, `mov cr8, r64` and other privileged instructions are emulated bug
//! checks ([`rule::UNEMULATED_INSTRUCTION`]) naming the instruction.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use iced_x86::{
    Code, Decoder, DecoderError, DecoderOptions, Formatter, Instruction, IntelFormatter, Mnemonic,
    OpKind, Register,
};

use crate::bugcheck::{self, rule};
use crate::machine;

/// `si_code` of a fault the kernel raised itself (#GP: a privileged instruction, a
/// non-canonical address); not in `libc` for glibc targets.
const SI_KERNEL: i32 = 0x80;
const PAGE: usize = 4096;

// ---- guard regions ----

/// The guard regions of the whole process, for the handler: `[start, end)` per slot, 0 when
/// free. Claimed by `end` (compare-exchange), published by `start`; the handler reads `start`
/// first, so a half-written slot never matches.
struct Slot {
    start: AtomicUsize,
    end: AtomicUsize,
}

const GUARD_SLOTS: usize = 1024;
static GUARDS: [Slot; GUARD_SLOTS] = [const {
    Slot {
        start: AtomicUsize::new(0),
        end: AtomicUsize::new(0),
    }
}; GUARD_SLOTS];

fn in_guard_region(address: usize) -> bool {
    GUARDS.iter().any(|s| {
        let start = s.start.load(Ordering::Acquire);
        start != 0 && address >= start && address < s.end.load(Ordering::Acquire)
    })
}

/// An address range reserved with no access rights: the virtual address of one register
/// mapping of an image. Unmapped (and forgotten by the handler) on drop.
#[derive(Debug)]
pub(crate) struct GuardRegion {
    base: usize,
    size: usize,
    slot: usize,
}

impl GuardRegion {
    /// Reserves room for `length` bytes starting at `page_offset` into the first page, plus
    /// one trailing page. `None` when the host refuses the reservation.
    pub(crate) fn reserve(page_offset: usize, length: usize) -> Option<Self> {
        let size = (page_offset + length).div_ceil(PAGE) * PAGE + PAGE;
        // SAFETY: a new anonymous reservation at an address of the kernel's choosing; nothing
        // else is affected.
        let base = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                size,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return None;
        }
        let base = base as usize;
        let Some(slot) = GUARDS.iter().position(|s| {
            s.end
                .compare_exchange(0, base + size, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        }) else {
            // SAFETY: the reservation made above, not yet handed out.
            unsafe { libc::munmap(base as *mut libc::c_void, size) };
            panic!(
                "ndis-emu: more than {GUARD_SLOTS} register mappings of images alive in this \
                 process at once"
            );
        };
        GUARDS[slot].start.store(base, Ordering::Release);
        Some(GuardRegion { base, size, slot })
    }

    pub(crate) fn base(&self) -> usize {
        self.base
    }
}

impl Drop for GuardRegion {
    fn drop(&mut self) {
        GUARDS[self.slot].start.store(0, Ordering::Release);
        GUARDS[self.slot].end.store(0, Ordering::Release);
        // SAFETY: our own reservation; no access of it can succeed, so nothing refers into it.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.size) };
    }
}

// ---- which threads trap ----

thread_local! {
    /// This thread's emulator traps hardware access (set by [`Trapping`]). `const`, without a
    /// destructor: reading it from the signal handler is a plain TLS load.
    static TRAPPING: Cell<bool> = const { Cell::new(false) };
    /// What the handler saw, for the stub's call of [`trap_emulate`].
    static PENDING: Cell<Pending> = const { Cell::new(Pending::NONE) };
}

/// Held by the machine state of an emulator that traps hardware access: marks its thread for
/// the handler until the emulator is dropped.
#[derive(Debug)]
pub(crate) struct Trapping(());

impl Trapping {
    pub(crate) fn enable() -> Self {
        install();
        TRAPPING.with(|t| t.set(true));
        Trapping(())
    }
}

impl Drop for Trapping {
    fn drop(&mut self) {
        let _ = TRAPPING.try_with(|t| t.set(false));
    }
}

impl crate::Emulator {
    /// Serves a loaded Windows image from now on: `NdisMMapIoSpace` returns guard-mapped
    /// addresses whose every access faults and is performed against the device model (with
    /// the same checks as a host build's `READ_REGISTER_*`/`WRITE_REGISTER_*`), and CR8 and
    /// `gs:` reads on this thread are emulated from the machine's state. Installs the fault
    /// handler once per process. Call it before the image maps a BAR (the PE loader does, when
    /// it loads an image); mappings made before keep their host-build addresses. Linux x86_64
    /// only. See docs/emulator.md, "Running the shipped image: hardware access".
    pub fn trap_hardware_access(&self) {
        let mut st = self.machine.st();
        if st.mmio.trapping.is_none() {
            st.mmio.trapping = Some(Trapping::enable());
        }
    }
}

// ---- the handler ----

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
enum Kind {
    None = 0,
    /// An access of a guard region (a register mapping).
    Register = 1,
    /// `mov r64, cr8` or `mov cr8, r64`.
    Cr8 = 2,
    /// A memory operand with a `gs` segment.
    Gs = 3,
    /// Another privileged instruction.
    Privileged = 4,
}

#[derive(Clone, Copy)]
struct Pending {
    rip: usize,
    length: usize,
    kind: Kind,
    address: usize,
}

impl Pending {
    const NONE: Pending = Pending {
        rip: 0,
        length: 0,
        kind: Kind::None,
        address: 0,
    };
}

/// The previous `SIGSEGV` disposition, for faults that are not ours.
struct Previous(libc::sigaction);
// SAFETY: plain data (a handler address, flags, a signal mask) only read after it is set.
unsafe impl Sync for Previous {}
// SAFETY: as above.
unsafe impl Send for Previous {}
static PREVIOUS: OnceLock<Previous> = OnceLock::new();

fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The decoder builds its tables on first use (a lazily initialised static: a lock and
        // allocations). Build them here, so that the handler only ever reads them.
        let warm = Decoder::with_ip(64, &[0x0F, 0x20, 0xC0], 0, DecoderOptions::NONE).decode();
        assert_eq!(warm.code(), Code::Mov_r64_cr);
        // SAFETY: all-zero is a valid `sigaction` (no handler, empty mask), filled in below;
        // the calls only read and replace this process's SIGSEGV disposition.
        unsafe {
            let mut old: libc::sigaction = core::mem::zeroed();
            assert_eq!(
                libc::sigaction(libc::SIGSEGV, core::ptr::null(), &mut old),
                0,
                "sigaction(SIGSEGV) query"
            );
            let _ = PREVIOUS.set(Previous(old));
            let mut new: libc::sigaction = core::mem::zeroed();
            new.sa_sigaction = on_fault as *const () as usize;
            new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut new.sa_mask);
            assert_eq!(
                libc::sigaction(libc::SIGSEGV, &new, core::ptr::null_mut()),
                0,
                "sigaction(SIGSEGV) install"
            );
        }
    });
}

/// Decodes the instruction at `rip`. Reads only the bytes up to the end of `rip`'s page, and
/// the next page only when the instruction continues there (then the processor fetched it, so
/// it is mapped).
///
/// # Safety
/// `rip` is the address of an instruction the processor fetched (it is mapped and readable:
/// x86-64 user mappings are readable when executable).
unsafe fn decode_at(rip: usize) -> Option<Instruction> {
    let to_page_end = PAGE - (rip % PAGE);
    let decode = |n: usize| {
        // SAFETY: per this function's contract, `n` bytes from `rip` are readable.
        let bytes = unsafe { core::slice::from_raw_parts(rip as *const u8, n) };
        let mut decoder = Decoder::with_ip(64, bytes, rip as u64, DecoderOptions::NONE);
        let instruction = decoder.decode();
        (instruction, decoder.last_error())
    };
    let (mut instruction, error) = decode(to_page_end.min(15));
    if instruction.is_invalid() && error == DecoderError::NoMoreBytes && to_page_end < 15 {
        instruction = decode(15).0;
    }
    (!instruction.is_invalid()).then_some(instruction)
}

fn is_cr8_move(i: &Instruction) -> bool {
    matches!(i.code(), Code::Mov_r64_cr | Code::Mov_cr_r64)
        && (i.op0_kind() == OpKind::Register && i.op0_register() == Register::CR8
            || i.op1_kind() == OpKind::Register && i.op1_register() == Register::CR8)
}

fn is_privileged(i: &Instruction) -> bool {
    let control_or_debug = |r: Register| {
        (Register::CR0 as u32..=Register::CR15 as u32).contains(&(r as u32))
            || (Register::DR0 as u32..=Register::DR15 as u32).contains(&(r as u32))
    };
    matches!(
        i.mnemonic(),
        Mnemonic::Cli
            | Mnemonic::Sti
            | Mnemonic::Hlt
            | Mnemonic::Rdmsr
            | Mnemonic::Wrmsr
            | Mnemonic::In
            | Mnemonic::Out
            | Mnemonic::Insb
            | Mnemonic::Insw
            | Mnemonic::Insd
            | Mnemonic::Outsb
            | Mnemonic::Outsw
            | Mnemonic::Outsd
            | Mnemonic::Lgdt
            | Mnemonic::Lidt
            | Mnemonic::Lldt
            | Mnemonic::Ltr
            | Mnemonic::Invlpg
            | Mnemonic::Invd
            | Mnemonic::Wbinvd
            | Mnemonic::Swapgs
            | Mnemonic::Clts
            | Mnemonic::Rdpmc
    ) || (0..i.op_count())
        .any(|n| i.op_kind(n) == OpKind::Register && control_or_debug(i.op_register(n)))
}

fn has_gs_memory_operand(i: &Instruction) -> bool {
    (0..i.op_count()).any(|n| i.op_kind(n) == OpKind::Memory) && i.memory_segment() == Register::GS
}

/// Which trap a fault is, if any.
///
/// # Safety
/// Called from the handler with the fault's `si_code`, address and RIP.
unsafe fn classify(code: i32, address: usize, rip: usize) -> Option<Pending> {
    let register = code != SI_KERNEL && in_guard_region(address);
    let trapping = TRAPPING.try_with(|t| t.get()).unwrap_or(false);
    if !register && !trapping {
        return None;
    }
    // An instruction fetch that faulted (a jump into a guard region or to nowhere): there is
    // nothing to decode, and reading it would fault again inside the handler.
    if code != SI_KERNEL && address >= rip - rip % PAGE && address < rip + 15 {
        return None;
    }
    // SAFETY: `rip` is the faulting instruction, which was fetched.
    let instruction = unsafe { decode_at(rip) }?;
    let kind = if register {
        Kind::Register
    } else if code == SI_KERNEL && is_cr8_move(&instruction) {
        Kind::Cr8
    } else if code == SI_KERNEL && is_privileged(&instruction) {
        Kind::Privileged
    } else if code != SI_KERNEL && has_gs_memory_operand(&instruction) {
        Kind::Gs
    } else {
        return None;
    };
    Some(Pending {
        rip,
        length: instruction.len(),
        kind,
        address,
    })
}

unsafe extern "C" fn on_fault(
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    ctx: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo and ucontext to an SA_SIGINFO handler, for
    // the duration of the handler; nothing else refers to them meanwhile.
    let (code, address, uc) = unsafe {
        (
            (*info).si_code,
            (*info).si_addr() as usize,
            &mut *ctx.cast::<libc::ucontext_t>(),
        )
    };
    let rip = uc.uc_mcontext.gregs[libc::REG_RIP as usize] as usize;
    // SAFETY: the fault's own code, address and RIP.
    let pending = unsafe { classify(code, address, rip) };
    if let Some(pending) = pending
        && PENDING.try_with(|p| p.set(pending)).is_ok()
    {
        // Resume in the stub (see the module docs): every other register as at the fault.
        uc.uc_mcontext.gregs[libc::REG_RIP as usize] = ndis_emu_trap_stub as *const () as i64;
        return;
    }
    if TRAPPING.try_with(|t| t.get()).unwrap_or(false) {
        note_unhandled(rip, address);
    }
    // SAFETY: the handler's own arguments, passed on unchanged.
    unsafe { chain(sig, info, ctx) };
}

/// One line on stderr, formatted without allocating.
fn note_unhandled(rip: usize, address: usize) {
    let mut line = [0u8; 160];
    let mut n = 0;
    let mut put = |s: &[u8]| {
        let k = s.len().min(line.len() - n);
        line[n..n + k].copy_from_slice(&s[..k]);
        n += k;
    };
    let hex = |v: usize| {
        let mut digits = [0u8; 18];
        digits[0] = b'0';
        digits[1] = b'x';
        for (i, d) in digits[2..].iter_mut().enumerate() {
            let nibble = (v >> (60 - 4 * i)) & 0xF;
            *d = b"0123456789abcdef"[nibble];
        }
        digits
    };
    put(b"ndis-emu: SIGSEGV at rip ");
    put(&hex(rip));
    put(b", address ");
    put(&hex(address));
    put(b": not a register access, CR8 move or gs: read the emulator handles\n");
    // SAFETY: writes `n` initialised bytes to stderr; write(2) is async-signal-safe.
    unsafe { libc::write(2, line.as_ptr().cast(), n) };
}

/// Hands a fault that is not ours to the previous disposition.
///
/// # Safety
/// The handler's own arguments.
unsafe fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let previous = PREVIOUS.get().map(|p| p.0);
    match previous {
        Some(p) if p.sa_sigaction != libc::SIG_DFL && p.sa_sigaction != libc::SIG_IGN => {
            if p.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: an SA_SIGINFO handler has this signature; it gets what we got.
                unsafe {
                    let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                        core::mem::transmute(p.sa_sigaction);
                    f(sig, info, ctx);
                }
            } else {
                // SAFETY: a plain handler has this signature.
                unsafe {
                    let f: extern "C" fn(libc::c_int) = core::mem::transmute(p.sa_sigaction);
                    f(sig);
                }
            }
        }
        _ => {
            // The default action: restore it and return; the instruction faults again and the
            // process ends as it would have without us.
            // SAFETY: all-zero with SIG_DFL is a valid disposition.
            unsafe {
                let mut default: libc::sigaction = core::mem::zeroed();
                default.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &default, core::ptr::null_mut());
            }
        }
    }
}

// ---- the stub ----

/// The faulting thread's registers as the stub saved them, and what the handler saw.
/// Field offsets are fixed by the stub below.
#[repr(C)]
struct Frame {
    /// rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8..r15 (the hardware numbering, which is also
    /// `iced_x86::Register::number()` of the 64-bit registers). `rsp` is filled in by
    /// [`trap_emulate`]: the value at the fault.
    gpr: [u64; 16],
    rflags: u64,
    /// Where the stub returns to: the instruction after the faulting one.
    resume: u64,
    rip: u64,
    kind: u64,
    address: u64,
}

/// Bytes from the frame's start to the faulting RSP: 17 pushes, the four slots above them and
/// the 128-byte red zone the stub skips.
const FRAME_TO_RSP: u64 = 296;
const _: () = assert!(core::mem::size_of::<Frame>() as u64 + 128 == FRAME_TO_RSP);

unsafe extern "C" {
    fn ndis_emu_trap_stub();
}

// Entered with every register as at the fault but RIP. CFA is the faulting RSP throughout;
// the return address (rule for DWARF register 16) is the `resume` slot once `trap_emulate`
// filled it, which it does before anything that can unwind.
core::arch::global_asm!(
    ".text",
    ".p2align 4",
    ".globl ndis_emu_trap_stub",
    ".hidden ndis_emu_trap_stub",
    ".type ndis_emu_trap_stub,@function",
    "ndis_emu_trap_stub:",
    ".cfi_startproc",
    ".cfi_def_cfa_offset 0",
    // The red zone (128 bytes) and the four slots resume, rip, kind, address.
    "lea rsp, [rsp - 160]",
    ".cfi_adjust_cfa_offset 160",
    ".cfi_offset 16, -160",
    "pushfq",
    ".cfi_adjust_cfa_offset 8",
    "push r15",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset 15, -176",
    "push r14",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset 14, -184",
    "push r13",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset 13, -192",
    "push r12",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset 12, -200",
    "push r11",
    ".cfi_adjust_cfa_offset 8",
    "push r10",
    ".cfi_adjust_cfa_offset 8",
    "push r9",
    ".cfi_adjust_cfa_offset 8",
    "push r8",
    ".cfi_adjust_cfa_offset 8",
    "push rdi",
    ".cfi_adjust_cfa_offset 8",
    "push rsi",
    ".cfi_adjust_cfa_offset 8",
    "push rbp",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset 6, -256",
    // The rsp slot: trap_emulate writes the faulting RSP there.
    "push rsp",
    ".cfi_adjust_cfa_offset 8",
    "push rbx",
    ".cfi_adjust_cfa_offset 8",
    ".cfi_offset 3, -272",
    "push rdx",
    ".cfi_adjust_cfa_offset 8",
    "push rcx",
    ".cfi_adjust_cfa_offset 8",
    "push rax",
    ".cfi_adjust_cfa_offset 8",
    "mov rbp, rsp",
    ".cfi_def_cfa_register rbp",
    "and rsp, -16",
    // The SSE state (XMM0-15, MXCSR, x87): `trap_emulate` is System V code, for which every
    // XMM register is scratch, and the code it runs (the device model, the C library's
    // `memcpy`) uses them; the faulting code may hold live values in any of them.
    "sub rsp, 512",
    "fxsave64 [rsp]",
    "mov rdi, rbp",
    "call {emulate}",
    "fxrstor64 [rsp]",
    "mov rsp, rbp",
    ".cfi_def_cfa_register rsp",
    "pop rax",
    "pop rcx",
    "pop rdx",
    "pop rbx",
    // The rsp slot (RFLAGS are restored after this add).
    "add rsp, 8",
    "pop rbp",
    "pop rsi",
    "pop rdi",
    "pop r8",
    "pop r9",
    "pop r10",
    "pop r11",
    "pop r12",
    "pop r13",
    "pop r14",
    "pop r15",
    "popfq",
    // Pops `resume` into RIP, then skips the three other slots and the red zone.
    "ret 152",
    ".cfi_endproc",
    ".size ndis_emu_trap_stub, . - ndis_emu_trap_stub",
    emulate = sym trap_emulate,
);

/// Performs the trapped instruction (called by the stub, in normal thread context).
extern "C-unwind" fn trap_emulate(frame: *mut Frame) {
    // SAFETY: the stub passes its own frame on this thread's stack, valid and not otherwise
    // referred to until this function returns.
    let frame = unsafe { &mut *frame };
    let pending = PENDING.with(|p| p.replace(Pending::NONE));
    frame.resume = (pending.rip + pending.length) as u64;
    frame.rip = pending.rip as u64;
    frame.kind = pending.kind as u64;
    frame.address = pending.address as u64;
    frame.gpr[4] = frame as *mut Frame as u64 + FRAME_TO_RSP;
    // SAFETY: the handler decoded this very instruction; it is still mapped.
    let instruction =
        unsafe { decode_at(pending.rip) }.expect("the handler decoded the faulting instruction");
    match pending.kind {
        Kind::Register => register_access(frame, &instruction),
        Kind::Cr8 => cr8(frame, &instruction),
        Kind::Gs => gs_read(frame, &instruction),
        Kind::Privileged if matches!(instruction.mnemonic(), Mnemonic::In | Mnemonic::Out) => {
            port_io(frame, &instruction)
        }
        Kind::Privileged => unemulated(
            &instruction,
            PRIVILEGED,
            "a privileged instruction the emulator does not emulate (it emulates reads of CR8, \
             the IRQL, `in` and `out` on registered port ranges, and nothing else a driver \
             should execute itself)",
        ),
        Kind::None => unreachable!("the stub runs only after a classified fault"),
    }
}

// ---- emulation ----

/// Parameter 4 of an [`rule::UNEMULATED_INSTRUCTION`] bug check: what the instruction did.
pub(crate) const REGISTER_MAPPING: usize = 1;
pub(crate) const PRIVILEGED: usize = 2;
pub(crate) const GS_SEGMENT: usize = 3;

fn text(i: &Instruction) -> String {
    let mut s = String::new();
    IntelFormatter::new().format(i, &mut s);
    s
}

fn unemulated(i: &Instruction, what: usize, why: &str) -> ! {
    bugcheck::raise(
        bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
        [rule::UNEMULATED_INSTRUCTION, i.ip() as usize, what, 0],
        format!("`{}` at {:#x}: {why}", text(i), i.ip()),
    )
}

fn read_register(frame: &Frame, r: Register) -> u64 {
    let full = frame.gpr[r.full_register().number()];
    match r.size() {
        8 => full,
        4 => full & 0xFFFF_FFFF,
        2 => full & 0xFFFF,
        _ if is_high_byte(r) => (full >> 8) & 0xFF,
        _ => full & 0xFF,
    }
}

/// Writes `value` to `r` as the processor would: a 32-bit destination zero-extends into the
/// 64-bit register, 8- and 16-bit destinations keep the other bits.
fn write_register(frame: &mut Frame, r: Register, value: u64) {
    let slot = &mut frame.gpr[r.full_register().number()];
    *slot = match r.size() {
        8 => value,
        4 => value & 0xFFFF_FFFF,
        2 => (*slot & !0xFFFF) | (value & 0xFFFF),
        _ if is_high_byte(r) => (*slot & !0xFF00) | ((value & 0xFF) << 8),
        _ => (*slot & !0xFF) | (value & 0xFF),
    };
}

fn is_high_byte(r: Register) -> bool {
    matches!(r, Register::AH | Register::CH | Register::DH | Register::BH)
}

fn is_gpr(r: Register) -> bool {
    r.is_gpr8() || r.is_gpr16() || r.is_gpr32() || r.is_gpr64()
}

/// The effective address of the memory operand (no segment: the caller refused FS/GS).
fn effective_address(frame: &Frame, i: &Instruction) -> usize {
    let mut address = i.memory_displacement64();
    let base = i.memory_base();
    if base != Register::None && base != Register::RIP && base != Register::EIP {
        address = address.wrapping_add(read_register(frame, base));
    }
    let index = i.memory_index();
    if index != Register::None {
        address =
            address.wrapping_add(read_register(frame, index) * u64::from(i.memory_index_scale()));
    }
    if base.is_gpr32() || index.is_gpr32() || base == Register::EIP {
        address &= 0xFFFF_FFFF;
    }
    address as usize
}

fn sign_extend(value: u64, width: usize) -> u64 {
    let shift = 64 - 8 * width as u32;
    (((value << shift) as i64) >> shift) as u64
}

const REGISTER_FORMS: &str = "the emulator performs register loads and stores only: \
    mov r8/r16/r32/r64, [m]; movzx/movsx r16/r32/r64, byte/word [m]; movsxd r64, dword [m]; \
    mov [m], r8/r16/r32/r64; mov [m], imm8/imm16/imm32 (a qword store sign-extends imm32) \
    (1-, 2-, 4- and 8-byte accesses without a segment override, what READ_REGISTER_* and \
    WRITE_REGISTER_* compile to). Access the device through READ_REGISTER_*/WRITE_REGISTER_* \
    (ndis::hw)";

/// An access of a register mapping: a load or a store of 1, 2, 4 or 8 bytes.
fn register_access(frame: &mut Frame, i: &Instruction) {
    let store = i.op0_kind() == OpKind::Memory;
    let load = !store && i.op_count() == 2 && i.op1_kind() == OpKind::Memory;
    let form_ok = match i.mnemonic() {
        Mnemonic::Mov => store || load,
        Mnemonic::Movzx | Mnemonic::Movsx | Mnemonic::Movsxd => load,
        _ => false,
    };
    let segment = i.memory_segment();
    if !form_ok || segment == Register::FS || segment == Register::GS {
        unemulated(
            i,
            REGISTER_MAPPING,
            &format!(
                "this instruction touches a register mapping (address {:#x}), but {REGISTER_FORMS}",
                frame.address
            ),
        );
    }
    let width = i.memory_size().size();
    if !matches!(width, 1 | 2 | 4 | 8) {
        unemulated(
            i,
            REGISTER_MAPPING,
            &format!(
                "a {width}-byte access of a register mapping (address {:#x}); {REGISTER_FORMS}",
                frame.address
            ),
        );
    }
    let address = effective_address(frame, i);
    let mask = crate::pci::all_ones(width as u32);
    if store {
        let value = match i.op1_kind() {
            OpKind::Register if is_gpr(i.op1_register()) => read_register(frame, i.op1_register()),
            OpKind::Immediate8
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate32to64 => i.immediate(1),
            _ => unemulated(i, REGISTER_MAPPING, REGISTER_FORMS),
        };
        crate::pci::mmio_write(address, width as u32, value & mask);
    } else {
        let destination = i.op0_register();
        if !is_gpr(destination) || destination.full_register() == Register::RSP {
            unemulated(i, REGISTER_MAPPING, REGISTER_FORMS);
        }
        let raw = crate::pci::mmio_read(address, width as u32) & mask;
        let value = match i.mnemonic() {
            Mnemonic::Movsx | Mnemonic::Movsxd => sign_extend(raw, width),
            _ => raw,
        };
        write_register(frame, destination, value);
    }
}

/// `in al/ax/eax, dx|imm8` and `out dx|imm8, al/ax/eax`: what `READ_PORT_*`/`WRITE_PORT_*`
/// compile to on x64 (`__inbyte` and friends), a port access of the width of the register.
fn port_io(frame: &mut Frame, i: &Instruction) {
    let (port_operand, data_operand) = match i.mnemonic() {
        Mnemonic::In => (1, 0),
        _ => (0, 1),
    };
    let port = match i.op_kind(port_operand) {
        OpKind::Register => read_register(frame, Register::DX),
        _ => i.immediate(port_operand),
    } as usize;
    let data = i.op_register(data_operand);
    let width = data.size() as u32;
    if i.mnemonic() == Mnemonic::In {
        let value = crate::pci::port_read(port, width);
        write_register(frame, data, u64::from(value));
    } else {
        let value = read_register(frame, data) as u32;
        crate::pci::port_write(port, width, value);
    }
}

/// `mov r64, cr8`: the current processor's IRQL (what `KeGetCurrentIrql` reads).
/// `mov cr8, r64` is refused: raising and lowering the IRQL behind the emulator's back would
/// bypass its interrupt and DPC model.
fn cr8(frame: &mut Frame, i: &Instruction) {
    if i.op1_register() == Register::CR8 {
        let irql = {
            let _emulator = crate::heap::EmulatorCode::enter();
            machine::current().st().irql()
        };
        write_register(frame, i.op0_register(), u64::from(irql));
    } else {
        let value = read_register(frame, i.op1_register());
        unemulated(
            i,
            PRIVILEGED,
            &format!(
                "writing CR8 (an inlined KeRaiseIrql/KeLowerIrql setting IRQL {value}) is not \
                 emulated: the emulator changes the IRQL only when it delivers interrupts, runs \
                 DPCs and takes spin locks. Raise and lower the IRQL through NDIS spin locks or \
                 the KeRaiseIrql/KeLowerIrql exports (KfRaiseIrql)"
            ),
        );
    }
}

/// The KPCR fields a driver's inlined routines read through `gs:` on x64 (wdm.h):
/// `KeGetCurrentProcessorNumber` (before Windows 7) reads the byte `Prcb.LegacyNumber` at
/// 0x184, `KeGetCurrentProcessorIndex` the ULONG `Prcb.Number` at 0x1A4. Both are the current
/// processor's index here (group 0 only).
const GS_FIELDS: [(u64, usize, &str); 2] = [
    (
        0x184,
        1,
        "KPCR.Prcb.LegacyNumber (KeGetCurrentProcessorNumber)",
    ),
    (0x1A4, 4, "KPCR.Prcb.Number (KeGetCurrentProcessorIndex)"),
];

fn gs_read(frame: &mut Frame, i: &Instruction) {
    let load = i.op_count() == 2
        && i.op0_kind() == OpKind::Register
        && is_gpr(i.op0_register())
        && i.op1_kind() == OpKind::Memory
        && matches!(i.mnemonic(), Mnemonic::Mov | Mnemonic::Movzx);
    let absolute = i.memory_base() == Register::None && i.memory_index() == Register::None;
    let width = i.memory_size().size();
    let offset = i.memory_displacement64();
    let field = GS_FIELDS
        .iter()
        .find(|(at, size, _)| offset >= *at && offset + width as u64 <= at + *size as u64);
    let (Some(&(at, _, _)), true, true) = (field, load, absolute) else {
        unemulated(
            i,
            GS_SEGMENT,
            &format!(
                "a gs: access (the KPCR) the emulator does not emulate; it emulates reads (mov, \
                 movzx) with an absolute offset of {}",
                GS_FIELDS
                    .iter()
                    .map(|(at, size, name)| format!("gs:[{at:#x}] ({size} byte(s), {name})"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
        );
    };
    let cpu = {
        let _emulator = crate::heap::EmulatorCode::enter();
        machine::current().st().cpu as u64
    };
    let value = (cpu >> (8 * (offset - at))) & ((1u64 << (8 * width)) - 1);
    write_register(frame, i.op0_register(), value);
}
