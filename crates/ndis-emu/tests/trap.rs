//! Hardware access of a loaded image (`ndis_emu`'s `image::trap`): register accesses on a
//! guard-mapped BAR, CR8 and `gs:` reads, executed here as the image executes them, by inline
//! assembly, with the fault handler installed (`Emulator::trap_hardware_access`). Each test
//! checks the result and that execution continued right after the trapped instruction.
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

use std::arch::asm;
use std::cell::Cell;

use ndis_emu::pci::{PciFunction, PlainFunction};
use ndis_emu::{AdapterId, Config, Emulator, InterruptResources, rule};
use ndis_sys as sys;

#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

#[path = "support/scripted_driver.rs"]
mod scripted_driver;

/// `rule::UNEMULATED_INSTRUCTION` parameter 4 values.
const REGISTER_MAPPING: usize = 1;
const PRIVILEGED: usize = 2;
const GS_SEGMENT: usize = 3;

/// The plain function's BAR 0 (16 KiB).
const BAR_LENGTH: u32 = 0x4000;

thread_local! {
    static MAPPING: Cell<usize> = const { Cell::new(0) };
}

unsafe extern "win64-unwind" fn entry(
    o: sys::PDRIVER_OBJECT,
    p: *const sys::UNICODE_STRING,
) -> sys::NTSTATUS {
    let chars = scripted_driver::characteristics();
    // SAFETY: DriverEntry's own arguments.
    unsafe { scripted_driver::register(o, p, &chars) }
}

fn map_bar0(h: sys::NDIS_HANDLE) {
    let mut va: sys::PVOID = std::ptr::null_mut();
    // SAFETY: device 0's BAR 0, the adapter's own resource (docs/emulator.md, PCI functions).
    let status =
        unsafe { sys::NdisMMapIoSpace(&mut va, h, ndis_emu::pci::BAR32_BASE as i64, BAR_LENGTH) };
    assert_eq!(status, sys::NDIS_STATUS_SUCCESS);
    MAPPING.set(va as usize);
}

fn unmap_bar0(h: sys::NDIS_HANDLE) {
    // SAFETY: the mapping made in initialize, released once.
    unsafe { sys::NdisMUnmapIoSpace(h, MAPPING.get() as sys::PVOID, BAR_LENGTH) };
}

/// An emulator serving an image, the scripted driver loaded and one adapter on the plain PCI
/// function whose initialize mapped BAR 0 (returned: its virtual address).
fn start() -> (Emulator, AdapterId, usize) {
    start_on(Box::new(PlainFunction::default()))
}

/// As [`start`], the adapter on `function` (whose BAR 0 is as the plain function's).
fn start_on(function: Box<dyn PciFunction>) -> (Emulator, AdapterId, usize) {
    scripted_driver::set_scripts(map_bar0, unmap_bar0);
    let emu = Emulator::new(Config {
        cpus: 4,
        ..Config::default()
    });
    emu.trap_hardware_access();
    assert_eq!(emu.load_driver(entry), 0);
    let a = emu
        .add_adapter_with(InterruptResources::None, function)
        .expect("initialize");
    (emu, a, MAPPING.get())
}

/// The device's register at `offset` as the model holds it.
fn device_reg(emu: &Emulator, a: AdapterId, offset: u64, width: u32) -> u64 {
    emu.with_device::<PlainFunction, _>(emu.device_of(a), |f, bus| {
        f.mmio_read(bus, 0, offset, width)
    })
}

fn set_device_reg(emu: &Emulator, a: AdapterId, offset: u64, width: u32, value: u64) {
    emu.with_device::<PlainFunction, _>(emu.device_of(a), |f, bus| {
        f.mmio_write(bus, 0, offset, width, value)
    });
}

fn finish(emu: Emulator, a: AdapterId) {
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
}

#[test]
fn the_mapping_of_an_image_is_a_real_inaccessible_host_region() {
    let (emu, a, va) = start();
    // A host build's mappings live in the kernel half; an image's are user-space reservations.
    assert!(va < 0x0000_8000_0000_0000, "{va:#x}");
    assert_eq!(va % 4096, 0, "BAR 0 is page aligned, so is its mapping");
    finish(emu, a);
}

#[test]
fn loads_of_every_width_and_form_read_the_device_and_continue_after_the_instruction() {
    let (emu, a, va) = start();
    set_device_reg(&emu, a, 0x100, 4, 0x8182_83F4);
    set_device_reg(&emu, a, 0x104, 4, 0x1122_3344);
    let p = va + 0x100;
    let (r32, after): (u64, u64);
    // SAFETY: a read inside the live 16 KiB mapping, aligned for its width; the trap performs
    // it and resumes after the instruction (so do all the reads below).
    unsafe {
        asm!("mov {v:e}, dword ptr [{p}]", "mov {a}, 0x5a5a",
             p = in(reg) p, v = out(reg) r32, a = out(reg) after, options(nostack));
    }
    assert_eq!(
        (r32, after),
        (0x8182_83F4, 0x5a5a),
        "mov r32, dword [m] zero-extends"
    );

    let mut x: u64 = 0xDEAD_BEEF_CAFE_F00D;
    // SAFETY: as above.
    unsafe { asm!("mov {v:x}, word ptr [{p}]", p = in(reg) p, v = inout(reg) x, options(nostack)) };
    assert_eq!(x, 0xDEAD_BEEF_CAFE_83F4, "mov r16 keeps bits 16..64");

    let mut x: u64 = 0xDEAD_BEEF_CAFE_F00D;
    // SAFETY: as above.
    unsafe { asm!("mov {v:l}, byte ptr [{p}]", p = in(reg) p, v = inout(reg) x, options(nostack)) };
    assert_eq!(x, 0xDEAD_BEEF_CAFE_F0F4, "mov r8 keeps bits 8..64");

    let mut x: u64 = 0xDEAD_BEEF_CAFE_F00D;
    // SAFETY: as above (AH: the high-byte register of RAX, no REX prefix).
    unsafe { asm!("mov ah, byte ptr [rdi + 1]", in("rdi") p, inout("rax") x, options(nostack)) };
    assert_eq!(x, 0xDEAD_BEEF_CAFE_830D, "mov ah writes bits 8..16 only");

    let mut x: u64 = u64::MAX;
    // SAFETY: as above.
    unsafe {
        asm!("movzx {v:e}, byte ptr [{p}]", p = in(reg) p, v = inout(reg) x, options(nostack))
    };
    assert_eq!(x, 0xF4);
    let mut x: u64 = u64::MAX;
    // SAFETY: as above.
    unsafe {
        asm!("movzx {v:e}, word ptr [{p} + 2]", p = in(reg) p, v = inout(reg) x, options(nostack))
    };
    assert_eq!(x, 0x8182);
    let mut x: u64 = u64::MAX;
    // SAFETY: as above (a 16-bit destination keeps the upper 48 bits).
    unsafe {
        asm!("movzx {v:x}, byte ptr [{p}]", p = in(reg) p, v = inout(reg) x, options(nostack))
    };
    assert_eq!(x, 0xFFFF_FFFF_FFFF_00F4);
    let mut x: u64 = 0;
    // SAFETY: as above.
    unsafe { asm!("movzx {v}, word ptr [{p}]", p = in(reg) p, v = inout(reg) x, options(nostack)) };
    assert_eq!(x, 0x83F4, "movzx r64, word");
    let mut x: u64 = 0;
    // SAFETY: as above.
    unsafe { asm!("movsx {v}, byte ptr [{p}]", p = in(reg) p, v = inout(reg) x, options(nostack)) };
    assert_eq!(x, 0xFFFF_FFFF_FFFF_FFF4, "movsx r64, byte sign-extends");
    let mut x: u64 = 0;
    // SAFETY: as above.
    unsafe {
        asm!("movsx {v:e}, word ptr [{p}]", p = in(reg) p, v = inout(reg) x, options(nostack))
    };
    assert_eq!(
        x, 0xFFFF_83F4,
        "movsx r32, word: sign-extended to 32, zero above"
    );
    let mut x: u64 = 0;
    // SAFETY: as above.
    unsafe {
        asm!("movsxd {v}, dword ptr [{p}]", p = in(reg) p, v = inout(reg) x, options(nostack))
    };
    assert_eq!(x, 0xFFFF_FFFF_8182_83F4);
    // Base + index * scale + displacement, a REX destination.
    let x: u64;
    // SAFETY: as above (va + 0x100 - 8 + 3 * 4 = va + 0x104).
    unsafe {
        asm!("mov r13d, dword ptr [{b} + {i} * 4 + 0xf8]", b = in(reg) va, i = in(reg) 3usize,
             out("r13") x, options(nostack));
    }
    assert_eq!(x, 0x1122_3344);
    finish(emu, a);
}

#[test]
fn the_exact_instructions_of_the_release_image_work() {
    // vionet.sys's `Registers for OwnedWindow` methods (the only register accesses of the
    // release image): base in rax, offset in rdx, value in r8.
    let (emu, a, va) = start();
    let off = 0x200usize;
    let (b, w, d): (u64, u64, u64);
    // SAFETY: inside the mapping, aligned.
    unsafe {
        asm!("mov byte ptr [rax + rdx], r8b", in("rax") va, in("rdx") off, in("r8") 0x11u64, options(nostack));
        asm!("mov word ptr [rax + rdx], r8w", in("rax") va, in("rdx") off + 2, in("r8") 0x2233u64, options(nostack));
        asm!("mov dword ptr [rax + rdx], r8d", in("rax") va, in("rdx") off + 4, in("r8") 0x4455_6677u64, options(nostack));
        asm!("movzx eax, byte ptr [rax + rdx]", inout("rax") va => b, in("rdx") off, options(nostack));
        asm!("movzx eax, word ptr [rax + rdx]", inout("rax") va => w, in("rdx") off + 2, options(nostack));
        asm!("mov eax, dword ptr [rax + rdx]", inout("rax") va => d, in("rdx") off + 4, options(nostack));
    }
    assert_eq!((b, w, d), (0x11, 0x2233, 0x4455_6677));
    assert_eq!(device_reg(&emu, a, 0x200, 4), 0x2233_0011);
    assert_eq!(device_reg(&emu, a, 0x204, 4), 0x4455_6677);
    finish(emu, a);
}

#[test]
fn stores_of_every_width_from_registers_and_immediates_reach_the_device() {
    let (emu, a, va) = start();
    let p = va + 0x300;
    // SAFETY: inside the mapping, aligned.
    unsafe {
        asm!("mov dword ptr [{p}], {v:e}", p = in(reg) p, v = in(reg) 0xFFFF_FFFF_A1B2_C3D4u64, options(nostack));
        asm!("mov word ptr [{p} + 4], {v:x}", p = in(reg) p, v = in(reg) 0xFFFF_FFFF_FFFF_E5F6u64, options(nostack));
        asm!("mov byte ptr [{p} + 6], {v:l}", p = in(reg) p, v = in(reg) 0xFFFF_FFFF_FFFF_FF07u64, options(nostack));
        asm!("mov byte ptr [rdi + 7], ah", in("rdi") p, in("rax") 0x9900u64, options(nostack));
        asm!("mov dword ptr [{p} + 8], 0x12345678", p = in(reg) p, options(nostack));
        asm!("mov word ptr [{p} + 12], 0xabcd", p = in(reg) p, options(nostack));
        asm!("mov byte ptr [{p} + 14], 0x5a", p = in(reg) p, options(nostack));
    }
    assert_eq!(device_reg(&emu, a, 0x300, 4), 0xA1B2_C3D4);
    assert_eq!(device_reg(&emu, a, 0x304, 4), 0x9907_E5F6);
    assert_eq!(device_reg(&emu, a, 0x308, 4), 0x1234_5678);
    assert_eq!(device_reg(&emu, a, 0x30C, 4), 0x005A_ABCD);
    finish(emu, a);
}

#[test]
fn a_trapped_access_preserves_every_other_register_and_the_flags() {
    let (emu, a, va) = start();
    set_device_reg(&emu, a, 0x10, 4, 0x0BAD_F00D);
    let before: [u64; 10] = std::array::from_fn(|i| 0x0101_0101_0101_0101 * (i as u64 + 1));
    let [
        mut c,
        mut d,
        mut si,
        mut r8,
        mut r9,
        mut r10,
        mut r11,
        mut r13,
        mut r14,
        mut r15,
    ] = before;
    let (v, carry, zero): (u64, u64, u64);
    // SAFETY: a read inside the mapping; every register the block touches is an operand.
    unsafe {
        asm!(
            "cmp eax, eax",
            "stc",
            "mov r12d, dword ptr [rdi + 0x10]",
            "setc dil",
            "movzx rdi, dil",
            "setz al",
            "movzx rax, al",
            inout("rdi") va => carry, inout("rax") 0u64 => zero, out("r12") v,
            inout("rcx") c, inout("rdx") d, inout("rsi") si, inout("r8") r8, inout("r9") r9,
            inout("r10") r10, inout("r11") r11, inout("r13") r13, inout("r14") r14,
            inout("r15") r15, options(nostack)
        );
    }
    assert_eq!(v, 0x0BAD_F00D);
    assert_eq!(carry, 1, "CF survived the trap");
    assert_eq!(zero, 1, "ZF survived the trap");
    assert_eq!([c, d, si, r8, r9, r10, r11, r13, r14, r15], before);
    finish(emu, a);
}

/// A device model whose register reads run code that uses every SSE register, as the device
/// models and the C library's `memcpy` do (the emulation runs as System V code, for which they
/// are all scratch).
struct SseClobbering(PlainFunction);

impl PciFunction for SseClobbering {
    fn config(&mut self) -> &mut [u8; ndis_emu::pci::CONFIG_SPACE_SIZE] {
        self.0.config()
    }
    fn bars(&self) -> Vec<ndis_emu::pci::BarInfo> {
        self.0.bars()
    }
    fn mmio_read(
        &mut self,
        bus: &mut ndis_emu::pci::Bus<'_>,
        bar: u8,
        offset: u64,
        width: u32,
    ) -> u64 {
        // SAFETY: writes only the registers it names as clobbered.
        unsafe {
            asm!(
                "pcmpeqd xmm0, xmm0", "pcmpeqd xmm1, xmm1", "pcmpeqd xmm2, xmm2",
                "pcmpeqd xmm3, xmm3", "pcmpeqd xmm4, xmm4", "pcmpeqd xmm5, xmm5",
                "pcmpeqd xmm6, xmm6", "pcmpeqd xmm7, xmm7", "pcmpeqd xmm8, xmm8",
                "pcmpeqd xmm9, xmm9", "pcmpeqd xmm10, xmm10", "pcmpeqd xmm11, xmm11",
                "pcmpeqd xmm12, xmm12", "pcmpeqd xmm13, xmm13", "pcmpeqd xmm14, xmm14",
                "pcmpeqd xmm15, xmm15",
                out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _, out("xmm4") _,
                out("xmm5") _, out("xmm6") _, out("xmm7") _, out("xmm8") _, out("xmm9") _,
                out("xmm10") _, out("xmm11") _, out("xmm12") _, out("xmm13") _,
                out("xmm14") _, out("xmm15") _, options(nostack, nomem)
            );
        }
        self.0.mmio_read(bus, bar, offset, width)
    }
    fn mmio_write(
        &mut self,
        bus: &mut ndis_emu::pci::Bus<'_>,
        bar: u8,
        offset: u64,
        width: u32,
        value: u64,
    ) {
        self.0.mmio_write(bus, bar, offset, width, value)
    }
}

/// A fault comes between any two instructions, so the image may hold live values in every
/// SSE register (a struct being copied, a constant kept across a loop): the trapped access
/// gives them all back as they were, whatever the emulation ran (the bug: a release image held
/// a pointer in an XMM register across a doorbell, and the host's AVX `memcpy` in the device
/// model clobbered it).
#[test]
fn a_trapped_access_preserves_every_sse_register() {
    let (emu, a, va) = start_on(Box::new(SseClobbering(PlainFunction::default())));
    let before: [u64; 16] = std::array::from_fn(|i| 0x0123_4567_89AB_CDEF ^ (i as u64 * 0x1111));
    let mut after = [0u64; 16];
    // SAFETY: a read inside the mapping; every register the block touches is an operand or
    // declared clobbered; `before` and `after` are 16 readable and writable words.
    unsafe {
        asm!(
            "movq xmm0, [{b}]", "movq xmm1, [{b} + 8]", "movq xmm2, [{b} + 16]",
            "movq xmm3, [{b} + 24]", "movq xmm4, [{b} + 32]", "movq xmm5, [{b} + 40]",
            "movq xmm6, [{b} + 48]", "movq xmm7, [{b} + 56]", "movq xmm8, [{b} + 64]",
            "movq xmm9, [{b} + 72]", "movq xmm10, [{b} + 80]", "movq xmm11, [{b} + 88]",
            "movq xmm12, [{b} + 96]", "movq xmm13, [{b} + 104]", "movq xmm14, [{b} + 112]",
            "movq xmm15, [{b} + 120]",
            "mov {v:e}, dword ptr [{p} + 0x10]",
            "movq [{o}], xmm0", "movq [{o} + 8], xmm1", "movq [{o} + 16], xmm2",
            "movq [{o} + 24], xmm3", "movq [{o} + 32], xmm4", "movq [{o} + 40], xmm5",
            "movq [{o} + 48], xmm6", "movq [{o} + 56], xmm7", "movq [{o} + 64], xmm8",
            "movq [{o} + 72], xmm9", "movq [{o} + 80], xmm10", "movq [{o} + 88], xmm11",
            "movq [{o} + 96], xmm12", "movq [{o} + 104], xmm13", "movq [{o} + 112], xmm14",
            "movq [{o} + 120], xmm15",
            b = in(reg) before.as_ptr(), o = in(reg) after.as_mut_ptr(), p = in(reg) va,
            v = out(reg) _,
            out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _, out("xmm4") _,
            out("xmm5") _, out("xmm6") _, out("xmm7") _, out("xmm8") _, out("xmm9") _,
            out("xmm10") _, out("xmm11") _, out("xmm12") _, out("xmm13") _,
            out("xmm14") _, out("xmm15") _, options(nostack)
        );
    }
    assert_eq!(after, before);
    finish(emu, a);
}

#[test]
fn an_instruction_other_than_a_load_or_store_is_a_bug_check_naming_it() {
    let (emu, _a, va) = start();
    let b = emu.expect_bugcheck(|| {
        let mut x: u32 = 1;
        // SAFETY: an ALU instruction reading the mapping: the trap refuses it by bug check,
        // which unwinds out of this block (no state of the block is used afterwards).
        unsafe {
            asm!("add {x:e}, dword ptr [{p}]", p = in(reg) va, x = inout(reg) x, options(nostack))
        };
        let _ = x;
    });
    assert_eq!(b.code, 0xC4);
    assert_eq!(b.params[0], rule::UNEMULATED_INSTRUCTION);
    assert_eq!(b.params[2], REGISTER_MAPPING);
    assert!(
        b.message.contains("add e") && b.message.contains("register mapping"),
        "{}",
        b.message
    );
    assert!(
        b.message.contains("movzx"),
        "lists what is supported: {}",
        b.message
    );
}

#[test]
fn eight_byte_loads_and_stores_are_one_access_of_the_device() {
    let (emu, a, va) = start();
    set_device_reg(&emu, a, 0x400, 8, 0x8877_6655_4433_2211);
    let p = va + 0x400;
    let (x, after): (u64, u64);
    // SAFETY: an 8-byte read inside the live mapping, 8-aligned; the trap performs it and
    // resumes after the instruction.
    unsafe {
        asm!("mov {x}, qword ptr [{p}]", "mov {a}, 0x5a5a",
             p = in(reg) p, x = out(reg) x, a = out(reg) after, options(nostack));
    }
    assert_eq!(
        (x, after),
        (0x8877_6655_4433_2211, 0x5a5a),
        "mov r64, qword [m]"
    );
    let rax: u64;
    // SAFETY: as above (the form `READ_REGISTER_ULONG64` compiles to, base and offset).
    unsafe {
        asm!("mov rax, qword ptr [rax + rdx]", inout("rax") va => rax, in("rdx") 0x400usize,
             options(nostack));
    }
    assert_eq!(rax, 0x8877_6655_4433_2211);
    // SAFETY: 8-byte stores inside the mapping, aligned: from a register, and an imm32 that a
    // qword store sign-extends.
    unsafe {
        asm!("mov qword ptr [{p} + 8], {v}", p = in(reg) p, v = in(reg) 0x0102_0304_0506_0708u64,
             options(nostack));
        asm!("mov qword ptr [{p} + 16], -2", p = in(reg) p, options(nostack));
    }
    assert_eq!(device_reg(&emu, a, 0x408, 8), 0x0102_0304_0506_0708);
    assert_eq!(device_reg(&emu, a, 0x410, 8), 0xFFFF_FFFF_FFFF_FFFE);
    // One access, not two halves: the model saw each write whole (the halves agree with it).
    assert_eq!(device_reg(&emu, a, 0x40C, 4), 0x0102_0304);
    finish(emu, a);
}

#[test]
fn a_sixteen_byte_register_access_is_a_bug_check() {
    let (emu, _a, va) = start();
    let b = emu.expect_bugcheck(|| {
        // SAFETY: as in the test above: refused by bug check (an SSE load of 16 bytes).
        unsafe { asm!("movups xmm0, [{p}]", p = in(reg) va, out("xmm0") _, options(nostack)) };
    });
    assert_eq!(
        (b.code, b.params[0], b.params[2]),
        (0xC4, rule::UNEMULATED_INSTRUCTION, REGISTER_MAPPING)
    );
    assert!(
        b.message.contains("register loads and stores only"),
        "{}",
        b.message
    );
}

#[test]
fn the_emulators_register_rules_apply_through_the_trap() {
    // Past the end of the mapping (the reservation's trailing page).
    let (emu, _a, va) = start();
    let b = emu.expect_bugcheck(|| {
        // SAFETY: deliberately one past the mapping: refused by bug check.
        unsafe { asm!("mov eax, dword ptr [{p}]", p = in(reg) va + BAR_LENGTH as usize, out("eax") _, options(nostack)) };
    });
    assert_eq!((b.code, b.params[0]), (0xC4, rule::MMIO));
    assert!(b.message.contains("not inside a live"), "{}", b.message);
    drop(emu);

    // Misaligned.
    let (emu, _a, va) = start();
    let b = emu.expect_bugcheck(|| {
        // SAFETY: deliberately misaligned: refused by bug check.
        unsafe {
            asm!("mov eax, dword ptr [{p} + 2]", p = in(reg) va, out("eax") _, options(nostack))
        };
    });
    assert_eq!((b.code, b.params[0]), (0xC4, rule::MMIO));
    assert!(b.message.contains("misaligned"), "{}", b.message);
}

#[test]
fn a_mapping_is_reported_after_unmap_not_reused() {
    let (emu, a, va) = start();
    emu.halt(a, sys::NdisHaltDeviceDisabled); // unmaps BAR 0
    let b = emu.expect_bugcheck(|| {
        // SAFETY: a stale access after unmap: the region is still reserved, so it faults and is
        // refused by bug check.
        unsafe { asm!("mov eax, dword ptr [{p}]", p = in(reg) va, out("eax") _, options(nostack)) };
    });
    assert_eq!((b.code, b.params[0]), (0xC4, rule::MMIO));
}

#[test]
fn a_removed_device_reads_all_ones_through_the_trap_and_a_told_driver_is_caught() {
    let (emu, a, va) = start();
    set_device_reg(&emu, a, 0x40, 4, 0x1234_5678);
    emu.remove_device(a);
    let (d, w, b): (u64, u64, u64);
    // SAFETY: reads and a write inside the mapping.
    unsafe {
        asm!("mov {v:e}, dword ptr [{p}]", p = in(reg) va + 0x40, v = out(reg) d, options(nostack));
        asm!("movzx {v:e}, word ptr [{p}]", p = in(reg) va + 0x40, v = out(reg) w, options(nostack));
        asm!("movzx {v:e}, byte ptr [{p}]", p = in(reg) va + 0x40, v = out(reg) b, options(nostack));
        asm!("mov dword ptr [{p}], 0", p = in(reg) va + 0x40, options(nostack));
    }
    assert_eq!((d, w, b), (0xFFFF_FFFF, 0xFFFF, 0xFF));
    emu.notify_surprise_removal(a);
    let bug = emu.expect_bugcheck(|| {
        // SAFETY: a read after the driver was told: refused by bug check.
        unsafe {
            asm!("mov eax, dword ptr [{p}]", p = in(reg) va + 0x40, out("eax") _, options(nostack))
        };
    });
    assert_eq!(
        (bug.code, bug.params[0]),
        (0xC4, rule::REMOVED_DEVICE_ACCESS)
    );
}

#[test]
fn the_write_was_lost_on_the_removed_device() {
    // Continuation of the test above, checked on the model: a write while removed is dropped.
    let (emu, a, va) = start();
    set_device_reg(&emu, a, 0x40, 4, 0x1234_5678);
    emu.remove_device(a);
    // SAFETY: a write inside the mapping.
    unsafe { asm!("mov dword ptr [{p}], 0", p = in(reg) va + 0x40, options(nostack)) };
    assert_eq!(device_reg(&emu, a, 0x40, 4), 0x1234_5678);
}

fn read_cr8() -> u64 {
    let v: u64;
    // SAFETY: faults at CPL 3; the trap performs it (the emulator traps on this thread).
    unsafe { asm!("mov {}, cr8", out(reg) v, options(nostack)) };
    v
}

#[test]
fn cr8_reads_return_the_current_irql() {
    let (emu, a, _va) = start();
    assert_eq!(read_cr8(), 0, "PASSIVE_LEVEL");
    // SAFETY: all-zero is an unallocated NDIS_SPIN_LOCK, allocated before use.
    let mut lock: sys::NDIS_SPIN_LOCK = unsafe { std::mem::zeroed() };
    let (rax, rdx, r15): (u64, u64, u64);
    // SAFETY: the lock's lifecycle in order at PASSIVE_LEVEL; the CR8 reads fault and are
    // performed by the trap: the forms the release image has (rax, rdx and r15 destinations).
    unsafe {
        sys::NdisAllocateSpinLock(&mut lock);
        sys::NdisAcquireSpinLock(&mut lock);
        asm!("mov rax, cr8", "mov rdx, cr8", "mov r15, cr8",
             out("rax") rax, out("rdx") rdx, out("r15") r15, options(nostack));
        sys::NdisReleaseSpinLock(&mut lock);
        sys::NdisFreeSpinLock(&mut lock);
    }
    assert_eq!(
        (rax, rdx, r15),
        (2, 2, 2),
        "DISPATCH_LEVEL under the spin lock"
    );
    assert_eq!(read_cr8(), 0, "back at PASSIVE_LEVEL");
    finish(emu, a);
}

#[test]
fn writing_cr8_is_refused_by_a_bug_check_naming_it() {
    let (emu, _a, _va) = start();
    let b = emu.expect_bugcheck(|| {
        // SAFETY: faults; the trap refuses it by bug check.
        unsafe { asm!("mov cr8, {}", in(reg) 2u64, options(nostack)) };
    });
    assert_eq!(
        (b.code, b.params[0], b.params[2]),
        (0xC4, rule::UNEMULATED_INSTRUCTION, PRIVILEGED)
    );
    assert!(
        b.message.contains("cr8") && b.message.contains("IRQL 2"),
        "{}",
        b.message
    );
}

#[test]
fn other_privileged_instructions_are_bug_checks_naming_them() {
    let (emu, _a, _va) = start();
    let b = emu.expect_bugcheck(|| {
        // SAFETY: faults at CPL 3; the trap refuses it by bug check.
        unsafe { asm!("hlt", options(nostack, nomem)) };
    });
    assert_eq!(
        (b.code, b.params[0], b.params[2]),
        (0xC4, rule::UNEMULATED_INSTRUCTION, PRIVILEGED)
    );
    assert!(b.message.contains("`hlt`"), "{}", b.message);
}

#[test]
fn gs_reads_of_the_processor_number_return_the_current_processor() {
    let (emu, a, _va) = start();
    emu.set_passive_cpu(3);
    let (index, legacy, after): (u64, u64, u64);
    // SAFETY: gs-relative reads fault at their offset (GS base 0); the trap performs them.
    unsafe {
        asm!("mov {i:e}, dword ptr gs:[0x1a4]", "movzx {l:e}, byte ptr gs:[0x184]", "mov {a}, 7",
             i = out(reg) index, l = out(reg) legacy, a = out(reg) after, options(nostack));
    }
    assert_eq!((index, legacy, after), (3, 3, 7));
    emu.set_passive_cpu(0);
    finish(emu, a);
}

#[test]
fn other_gs_accesses_are_bug_checks_naming_them() {
    let (emu, _a, _va) = start();
    let b = emu.expect_bugcheck(|| {
        let v: u64;
        // SAFETY: KPCR.Prcb.CurrentThread, not emulated: refused by bug check.
        unsafe { asm!("mov {}, qword ptr gs:[0x188]", out(reg) v, options(nostack)) };
        let _ = v;
    });
    assert_eq!(
        (b.code, b.params[0], b.params[2]),
        (0xC4, rule::UNEMULATED_INSTRUCTION, GS_SEGMENT)
    );
    assert!(
        b.message.contains("gs:[188h]") && b.message.contains("0x1a4"),
        "{}",
        b.message
    );
}

#[test]
fn after_a_bug_check_in_a_trap_the_thread_traps_again() {
    // The bug check unwound out of the trap; the signal mask was restored by sigreturn (the
    // emulation runs outside the handler), so the next fault on this thread is trapped too.
    let (emu, _a, va) = start();
    let _ = emu.expect_bugcheck(|| {
        // SAFETY: refused by bug check.
        unsafe {
            asm!("mov eax, dword ptr [{p} + 1]", p = in(reg) va, out("eax") _, options(nostack))
        };
    });
    drop(emu);
    let (emu, a, va) = start();
    set_device_reg(&emu, a, 0, 4, 42);
    let v: u64;
    // SAFETY: a read inside the new mapping.
    unsafe { asm!("mov {v:e}, dword ptr [{p}]", p = in(reg) va, v = out(reg) v, options(nostack)) };
    assert_eq!(v, 42);
    assert_eq!(read_cr8(), 0);
    finish(emu, a);
}

// ---- shared memory ----

thread_local! {
    static SHARED: Cell<(usize, i64)> = const { Cell::new((0, 0)) };
    static DMA: Cell<usize> = const { Cell::new(0) };
}

#[test]
fn shared_memory_is_host_memory_the_image_and_the_device_both_see() {
    scripted_driver::set_scripts(
        |h| {
            let mut d = ndis_emu::raw::sg_dma_description();
            let mut dma: sys::NDIS_HANDLE = std::ptr::null_mut();
            let (mut va, mut pa): (sys::PVOID, sys::PHYSICAL_ADDRESS) = (std::ptr::null_mut(), 0);
            // SAFETY: initialize's handle; out-pointers live across the calls.
            unsafe {
                assert_eq!(sys::NdisMRegisterScatterGatherDma(h, &mut d, &mut dma), 0);
                sys::NdisMAllocateSharedMemory(h, 4096, 0, &mut va, &mut pa);
            }
            DMA.set(dma as usize);
            SHARED.set((va as usize, pa));
        },
        |h| {
            let (va, pa) = SHARED.get();
            // SAFETY: what initialize allocated and registered, released once.
            unsafe {
                sys::NdisMFreeSharedMemory(h, 4096, 0, va as sys::PVOID, pa);
                sys::NdisMDeregisterScatterGatherDma(DMA.get() as sys::NDIS_HANDLE);
            }
        },
    );
    let emu = Emulator::new(Config::default());
    emu.trap_hardware_access();
    assert_eq!(emu.load_driver(entry), 0);
    let a = emu
        .add_adapter(InterruptResources::None)
        .expect("initialize");
    let (va, pa) = SHARED.get();
    assert_ne!(va, 0);
    // The image stores through the virtual address with a plain instruction (no trap) ...
    // SAFETY: inside the 4 KiB block NdisMAllocateSharedMemory returned.
    unsafe { asm!("mov dword ptr [{p} + 8], 0xfeedface", p = in(reg) va, options(nostack)) };
    // ... and the device reads it at the physical address; and the other way round.
    let seen = emu.with_device::<PlainFunction, _>(emu.device_of(a), |_, bus| {
        let mut b = [0u8; 4];
        bus.dma_read(pa as u64 + 8, &mut b)
            .expect("inside the block");
        bus.dma_write(pa as u64 + 16, &0x00DD_BA11_u32.to_le_bytes())
            .expect("inside the block");
        u32::from_le_bytes(b)
    });
    assert_eq!(seen, 0xFEED_FACE);
    let v: u64;
    // SAFETY: as above.
    unsafe {
        asm!("mov {v:e}, dword ptr [{p} + 16]", p = in(reg) va, v = out(reg) v, options(nostack))
    };
    assert_eq!(v, 0x00DD_BA11);
    finish(emu, a);
}

// ---- faults that are not ours ----

/// A genuine null dereference on a trapping thread is not ours: it reaches the previous handler
/// and crashes the process as before, after a note on stderr. The test runs itself again as a
/// child process (the environment variable selects the crashing half) and checks how the child
/// died.
#[test]
fn a_fault_that_is_not_ours_still_crashes_with_a_message() {
    const CHILD: &str = "NDIS_EMU_TRAP_CRASH_CHILD";
    if std::env::var_os(CHILD).is_some() {
        let (_emu, _a, _va) = start();
        // SAFETY: none: this deliberately crashes the child process with SIGSEGV.
        unsafe {
            asm!("mov eax, dword ptr [{p}]", p = in(reg) 8usize, out("eax") _, options(nostack))
        };
        unreachable!("the dereference must crash");
    }
    use std::os::unix::process::ExitStatusExt;
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_fault_that_is_not_ours_still_crashes_with_a_message",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(libc_sigsegv()),
        "killed by SIGSEGV; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("ndis-emu: SIGSEGV at rip 0x")
            && stderr.contains("address 0x0000000000000008"),
        "{stderr}"
    );
}

fn libc_sigsegv() -> i32 {
    11 // SIGSEGV on Linux
}

// ---- the shipped image ----

/// The release `vionet.sys`, loaded and run by `ndis-emu run` on the virtio-net model: every
/// register access it makes (virtio common configuration, notifications, ISR, MSI-X vectors)
/// and every CR8 read of its allocator goes through the trap. MSI-X with all 2N+2 messages, 2, 1,
/// and the line.
#[test]
fn the_release_vionet_image_runs_on_the_virtio_net_model_through_the_trap() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo.join("target"))
        .join("driver-image-tests");
    let image = ndis_emu::image::cross_build(&repo, &target, "release", "vionet", &[]);
    for interrupts in [
        &[][..],
        &["--messages", "2"],
        &["--messages", "1"],
        &["--line"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ndis-emu"))
            .arg("run")
            .arg(&image)
            .args(["--device", "virtio-net"])
            .args(interrupts)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{interrupts:?}: {:?}\n{stdout}\n{stderr}",
            out.status
        );
        for step in [
            "1000 frames on the wire, byte-exact",
            "1000 frames indicated, byte-exact",
            "nothing leaked",
        ] {
            assert!(
                stdout.contains(step),
                "{interrupts:?}: {step:?} missing:\n{stdout}"
            );
        }
    }
}
