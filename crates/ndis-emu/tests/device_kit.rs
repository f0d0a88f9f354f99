//! The device-model kit (`ndis_emu::pci`): register accesses of every width, the level-triggered
//! line and its interrupt-storm rule, events on the virtual clock, misuse a model reports as a
//! bug check, and the shared MSI-X table. A raw miniport (the scripted driver) maps BAR 0 of a
//! small model and registers an interrupt whose ISR either acknowledges the cause (reads the
//! read-to-clear CAUSE register) or not.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use ndis_emu::pci::{
    BarInfo, Bus, CONFIG_SPACE_SIZE, IO_BAR_BASE, IoBarInfo, MsixSignal, MsixTable, PciFunction,
};
use ndis_emu::{
    AdapterId, Config, Emulator, HARDWARE_INTERRUPT_STORM, INTERRUPT_STORM_LIMIT,
    InterruptResources,
};
use ndis_sys as sys;

#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

#[path = "support/scripted_driver.rs"]
mod scripted_driver;

// ---- the model ----

/// Read-to-clear interrupt cause; reading it deasserts the line.
const CAUSE: u64 = 0x00;
/// Writing `n` schedules a receive `n` microseconds later (token [`RX_EVENT`]).
const DOORBELL: u64 = 0x08;
/// A 64-bit register, accessed whole.
const WIDE: u64 = 0x10;
/// Writing `n` schedules a second kind of event (token [`OTHER_EVENT`]) `n` microseconds later.
const DOORBELL2: u64 = 0x0C;
/// Writing it is driver misuse the model reports (a DMA address of 0, say).
const MISUSE: u64 = 0x18;
/// Plain read/write bytes for width tests.
const SCRATCH: u64 = 0x100;
/// The MSI-X table (2 entries) and its PBA.
const MSIX_TABLE: u64 = 0x800;
const MSIX_PBA: u64 = 0xC00;
const BAR_SIZE: u64 = 0x1000;
/// The I/O BAR (BAR 1): 32 ports of plain bytes.
const IO_BAR: u8 = 1;
const PORTS: u32 = 32;

const RX_EVENT: u64 = 1;
const OTHER_EVENT: u64 = 2;
const CAUSE_RX: u32 = 1;
/// The model's own bug check code for driver misuse (a vendor picks any).
const MODEL_BUGCHECK: u32 = 0xE000_0001;

struct KitDevice {
    config: [u8; CONFIG_SPACE_SIZE],
    cause: u32,
    wide: u64,
    scratch: [u8; 0x100],
    ports: [u8; PORTS as usize],
    msix: MsixTable,
    /// (write?, offset, width) of every access, in order.
    accesses: Vec<(bool, u64, u32)>,
    /// Virtual time at each receive event.
    events_at: Vec<Duration>,
    /// Every event's token, in firing order.
    tokens: Vec<u64>,
}

impl KitDevice {
    fn new() -> Self {
        let mut config = [0u8; CONFIG_SPACE_SIZE];
        config[0..4].copy_from_slice(&0x5678_1234u32.to_le_bytes());
        KitDevice {
            config,
            cause: 0,
            wide: 0,
            scratch: [0; 0x100],
            ports: [0; PORTS as usize],
            msix: MsixTable::new(2, MSIX_TABLE, MSIX_PBA),
            accesses: Vec::new(),
            events_at: Vec::new(),
            tokens: Vec::new(),
        }
    }

    /// Sets a cause and interrupts: message 0 when messages are granted, else the line (held
    /// until CAUSE is read).
    fn interrupt(&mut self, bus: &mut Bus<'_>, cause: u32) {
        self.cause |= cause;
        match bus.interrupt_mode() {
            ndis_emu::pci::InterruptMode::Messages(_) => {
                self.msix.signal(bus, 0);
            }
            _ => bus.set_line(true),
        }
    }
}

impl PciFunction for KitDevice {
    fn config(&mut self) -> &mut [u8; CONFIG_SPACE_SIZE] {
        &mut self.config
    }
    fn bars(&self) -> Vec<BarInfo> {
        vec![BarInfo {
            index: 0,
            size: BAR_SIZE,
            is_64bit: false,
        }]
    }
    fn io_bars(&self) -> Vec<IoBarInfo> {
        vec![IoBarInfo {
            index: IO_BAR,
            size: PORTS as u64,
        }]
    }
    fn io_read(&mut self, _bus: &mut Bus<'_>, bar: u8, offset: u64, width: u32) -> u32 {
        assert_eq!(bar, IO_BAR);
        self.accesses.push((false, 0x1_0000 + offset, width));
        let at = offset as usize;
        let mut v = [0u8; 4];
        v[..width as usize].copy_from_slice(&self.ports[at..at + width as usize]);
        u32::from_le_bytes(v)
    }
    fn io_write(&mut self, _bus: &mut Bus<'_>, bar: u8, offset: u64, width: u32, value: u32) {
        assert_eq!(bar, IO_BAR);
        self.accesses.push((true, 0x1_0000 + offset, width));
        let at = offset as usize;
        self.ports[at..at + width as usize].copy_from_slice(&value.to_le_bytes()[..width as usize]);
    }
    fn mmio_read(&mut self, bus: &mut Bus<'_>, _bar: u8, offset: u64, width: u32) -> u64 {
        self.accesses.push((false, offset, width));
        if let Some(v) = self.msix.read(offset, width) {
            return v;
        }
        match offset {
            CAUSE => {
                bus.set_line(false);
                u64::from(std::mem::take(&mut self.cause))
            }
            WIDE => self.wide,
            o if (SCRATCH..SCRATCH + 0x100).contains(&o) => {
                let at = (o - SCRATCH) as usize;
                let mut v = [0u8; 8];
                v[..width as usize].copy_from_slice(&self.scratch[at..at + width as usize]);
                u64::from_le_bytes(v)
            }
            _ => 0,
        }
    }
    fn mmio_write(&mut self, bus: &mut Bus<'_>, _bar: u8, offset: u64, width: u32, value: u64) {
        self.accesses.push((true, offset, width));
        if self.msix.contains(offset) {
            self.msix.write(bus, offset, width, value);
            return;
        }
        match offset {
            DOORBELL => bus.schedule(Duration::from_micros(value), RX_EVENT),
            DOORBELL2 => bus.schedule(Duration::from_micros(value), OTHER_EVENT),
            WIDE => self.wide = value,
            MISUSE => bus.bug_check(
                MODEL_BUGCHECK,
                [value as usize, width as usize, 0, 0],
                format!("MISUSE written with {value:#x}: the driver must never write it"),
            ),
            o if (SCRATCH..SCRATCH + 0x100).contains(&o) => {
                let at = (o - SCRATCH) as usize;
                self.scratch[at..at + width as usize]
                    .copy_from_slice(&value.to_le_bytes()[..width as usize]);
            }
            _ => {}
        }
    }
    fn on_event(&mut self, bus: &mut Bus<'_>, token: u64) {
        self.tokens.push(token);
        if token == RX_EVENT {
            self.events_at.push(bus.now());
            self.interrupt(bus, CAUSE_RX);
        }
    }
}

// ---- the driver ----

/// What the ISR does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isr {
    /// Reads CAUSE (acknowledging it) and claims.
    Acknowledge,
    /// Claims without touching the device: the classic storm bug.
    ClaimOnly,
    /// Acknowledges on every third call only (claims each time).
    AcknowledgeEveryThird,
}

thread_local! {
    static MAPPING: Cell<usize> = const { Cell::new(0) };
    /// The port base NdisMRegisterIoPortRange returned.
    static PORT_BASE: Cell<usize> = const { Cell::new(0) };
    /// Halt forgets NdisMDeregisterIoPortRange (a driver bug the emulator catches).
    static KEEP_PORTS_AT_HALT: Cell<bool> = const { Cell::new(false) };
    static INTERRUPT: Cell<usize> = const { Cell::new(0) };
    static ISR_MODE: Cell<Isr> = const { Cell::new(Isr::Acknowledge) };
    static ISR_CALLS: Cell<u32> = const { Cell::new(0) };
    /// The DPC rings the doorbell with this delay (µs) and then stalls `DPC_STALL` twice.
    static DPC_DOORBELL: Cell<Option<u64>> = const { Cell::new(None) };
    static DPC_STALL: Cell<u32> = const { Cell::new(0) };
    /// Initialize registers an interrupt (false: the driver never connects one).
    static REGISTER: Cell<bool> = const { Cell::new(true) };
    /// Initialize rings the doorbell (no delay) before it registers the interrupt: the line is
    /// asserted before anyone listens.
    static RING_BEFORE_REGISTER: Cell<bool> = const { Cell::new(false) };
    static SEEN: RefCell<Vec<&'static str>> = const { RefCell::new(Vec::new()) };
}

fn see(what: &'static str) {
    ndis_emu::instrumentation(|| SEEN.with(|s| s.borrow_mut().push(what)));
}

fn seen() -> Vec<&'static str> {
    SEEN.with(|s| std::mem::take(&mut *s.borrow_mut()))
}

fn reg(offset: u64) -> usize {
    MAPPING.get() + offset as usize
}

fn isr_body() -> sys::BOOLEAN {
    see("isr");
    let n = ISR_CALLS.get() + 1;
    ISR_CALLS.set(n);
    let acknowledge = match ISR_MODE.get() {
        Isr::Acknowledge => true,
        Isr::ClaimOnly => false,
        Isr::AcknowledgeEveryThird => n.is_multiple_of(3),
    };
    if acknowledge {
        // SAFETY: CAUSE inside the live mapping, aligned.
        unsafe { sys::mmio::READ_REGISTER_ULONG(reg(CAUSE) as *const u32) };
    }
    1
}

unsafe extern "win64-unwind" fn isr(
    _c: sys::NDIS_HANDLE,
    queue_default: *mut sys::BOOLEAN,
    _targets: *mut u32,
) -> sys::BOOLEAN {
    // SAFETY: NDIS's out-pointer.
    unsafe { *queue_default = 1 };
    isr_body()
}

unsafe extern "win64-unwind" fn message_isr(
    _c: sys::NDIS_HANDLE,
    _m: u32,
    queue_default: *mut sys::BOOLEAN,
    _targets: *mut u32,
) -> sys::BOOLEAN {
    // SAFETY: NDIS's out-pointer.
    unsafe { *queue_default = 1 };
    isr_body()
}

fn dpc_body() {
    see("dpc");
    if let Some(delay) = DPC_DOORBELL.take() {
        // SAFETY: DOORBELL inside the live mapping, aligned.
        unsafe { sys::mmio::WRITE_REGISTER_ULONG(reg(DOORBELL) as *mut u32, delay as u32) };
        for _ in 0..2 {
            see("stall");
            // SAFETY: a plain call (a busy wait).
            unsafe { sys::KeStallExecutionProcessor(DPC_STALL.get()) };
        }
    }
    see("dpc end");
}

unsafe extern "win64-unwind" fn dpc(
    _c: sys::NDIS_HANDLE,
    _d: sys::PVOID,
    _r1: sys::PVOID,
    _r2: sys::PVOID,
) {
    dpc_body()
}

unsafe extern "win64-unwind" fn message_dpc(
    _c: sys::NDIS_HANDLE,
    _m: u32,
    _d: sys::PVOID,
    _r1: sys::PVOID,
    _r2: sys::PVOID,
) {
    dpc_body()
}

unsafe extern "win64-unwind" fn no_op(_c: sys::NDIS_HANDLE) {}
unsafe extern "win64-unwind" fn message_no_op(_c: sys::NDIS_HANDLE, _m: u32) {}

unsafe extern "win64-unwind" fn entry(
    o: sys::PDRIVER_OBJECT,
    p: *const sys::UNICODE_STRING,
) -> sys::NTSTATUS {
    let chars = scripted_driver::characteristics();
    // SAFETY: DriverEntry's own arguments.
    unsafe { scripted_driver::register(o, p, &chars) }
}

fn init(h: sys::NDIS_HANDLE) {
    let mut va: sys::PVOID = std::ptr::null_mut();
    // SAFETY: device 0's BAR 0 (the first BAR the emulator places), the adapter's own resource.
    let status = unsafe {
        sys::NdisMMapIoSpace(
            &mut va,
            h,
            ndis_emu::pci::BAR32_BASE as i64,
            BAR_SIZE as u32,
        )
    };
    assert_eq!(status, sys::NDIS_STATUS_SUCCESS);
    MAPPING.set(va as usize);
    let mut port: sys::PVOID = std::ptr::null_mut();
    // SAFETY: device 0's I/O BAR (the first the emulator places), the adapter's own resource.
    let status = unsafe { sys::NdisMRegisterIoPortRange(&mut port, h, IO_BAR_BASE as u32, PORTS) };
    assert_eq!(status, sys::NDIS_STATUS_SUCCESS);
    PORT_BASE.set(port as usize);
    if RING_BEFORE_REGISTER.get() {
        // SAFETY: DOORBELL inside the live mapping, aligned.
        unsafe { sys::mmio::WRITE_REGISTER_ULONG(reg(DOORBELL) as *mut u32, 0) };
    }
    if !REGISTER.get() {
        INTERRUPT.set(0);
        return;
    }
    // SAFETY: all-zero is valid plain data.
    let mut c: sys::NDIS_MINIPORT_INTERRUPT_CHARACTERISTICS = unsafe { std::mem::zeroed() };
    c.Header = sys::NDIS_OBJECT_HEADER {
        Type: 0x84,
        Revision: 1,
        Size: 96,
    };
    c.InterruptHandler = Some(isr);
    c.InterruptDpcHandler = Some(dpc);
    c.DisableInterruptHandler = Some(no_op);
    c.EnableInterruptHandler = Some(no_op);
    c.MsiSupported = 1;
    c.MessageInterruptHandler = Some(message_isr);
    c.MessageInterruptDpcHandler = Some(message_dpc);
    c.DisableMessageInterruptHandler = Some(message_no_op);
    c.EnableMessageInterruptHandler = Some(message_no_op);
    let mut ih: sys::NDIS_HANDLE = std::ptr::null_mut();
    // SAFETY: inside initialize, valid arguments.
    let status = unsafe { sys::NdisMRegisterInterruptEx(h, h, &mut c, &mut ih) };
    // Without interrupt resources (register-only tests) there is nothing to register.
    INTERRUPT.set(if status == sys::NDIS_STATUS_SUCCESS {
        ih as usize
    } else {
        0
    });
}

fn halt(h: sys::NDIS_HANDLE) {
    if INTERRUPT.get() != 0 {
        // SAFETY: registered in initialize, deregistered once.
        unsafe { sys::NdisMDeregisterInterruptEx(INTERRUPT.get() as sys::NDIS_HANDLE) };
    }
    // SAFETY: mapped in initialize, unmapped once.
    unsafe { sys::NdisMUnmapIoSpace(h, MAPPING.get() as sys::PVOID, BAR_SIZE as u32) };
    if !KEEP_PORTS_AT_HALT.get() {
        // SAFETY: registered in initialize, deregistered once.
        unsafe {
            sys::NdisMDeregisterIoPortRange(
                h,
                IO_BAR_BASE as u32,
                PORTS,
                PORT_BASE.get() as sys::PVOID,
            )
        };
    }
}

fn start(resources: InterruptResources, isr: Isr) -> (Emulator, AdapterId) {
    ISR_MODE.set(isr);
    ISR_CALLS.set(0);
    scripted_driver::set_scripts(init, halt);
    let emu = Emulator::new(Config {
        cpus: 2,
        ..Config::default()
    });
    assert_eq!(emu.load_driver(entry), 0);
    let a = emu
        .add_adapter_with(resources, Box::new(KitDevice::new()))
        .expect("initialize");
    seen();
    (emu, a)
}

fn stop(emu: Emulator, a: AdapterId) {
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
}

fn device<R>(emu: &Emulator, a: AdapterId, f: impl FnOnce(&mut KitDevice, &mut Bus<'_>) -> R) -> R {
    emu.with_device::<KitDevice, _>(emu.device_of(a), f)
}

// ---- register widths ----

#[test]
fn register_accesses_of_1_2_4_and_8_bytes_reach_the_model_whole() {
    let (emu, a) = start(InterruptResources::None, Isr::Acknowledge);
    let p = reg(SCRATCH);
    // SAFETY: inside the live mapping, each aligned for its width.
    unsafe {
        sys::mmio::WRITE_REGISTER_ULONG64(p as *mut u64, 0x8877_6655_4433_2211);
        sys::mmio::WRITE_REGISTER_ULONG((p + 8) as *mut u32, 0xDDCC_BBAA);
        sys::mmio::WRITE_REGISTER_USHORT((p + 12) as *mut u16, 0xFFEE);
        sys::mmio::WRITE_REGISTER_UCHAR((p + 14) as *mut u8, 0x99);
        sys::mmio::WRITE_REGISTER_ULONG64(reg(WIDE) as *mut u64, u64::MAX - 1);
    }
    // SAFETY: as above.
    let (q, d, w, b, wide) = unsafe {
        (
            sys::mmio::READ_REGISTER_ULONG64((p + 8) as *const u64),
            sys::mmio::READ_REGISTER_ULONG(p as *const u32),
            sys::mmio::READ_REGISTER_USHORT((p + 4) as *const u16),
            sys::mmio::READ_REGISTER_UCHAR((p + 7) as *const u8),
            sys::mmio::READ_REGISTER_ULONG64(reg(WIDE) as *const u64),
        )
    };
    assert_eq!(q, 0x0099_FFEE_DDCC_BBAA);
    assert_eq!((d, w, b), (0x4433_2211, 0x6655, 0x88));
    assert_eq!(wide, u64::MAX - 1, "all 64 bits in one access");
    let accesses = device(&emu, a, |d, _| std::mem::take(&mut d.accesses));
    assert_eq!(
        accesses,
        vec![
            (true, SCRATCH, 8),
            (true, SCRATCH + 8, 4),
            (true, SCRATCH + 12, 2),
            (true, SCRATCH + 14, 1),
            (true, WIDE, 8),
            (false, SCRATCH + 8, 8),
            (false, SCRATCH, 4),
            (false, SCRATCH + 4, 2),
            (false, SCRATCH + 7, 1),
            (false, WIDE, 8),
        ],
        "each access reaches the model once, with its own width (an 8-byte one is not split)"
    );
    stop(emu, a);
}

#[test]
fn a_misaligned_8_byte_access_is_caught() {
    let (emu, _a) = start(InterruptResources::None, Isr::Acknowledge);
    let b = emu.expect_bugcheck(|| {
        // SAFETY: deliberately misaligned (the emulator stops it before any access).
        unsafe { sys::mmio::READ_REGISTER_ULONG64(reg(SCRATCH + 4) as *const u64) };
    });
    assert_eq!((b.code, b.params[0]), (0xC4, ndis_emu::rule::MMIO));
    assert!(b.message.contains("misaligned 8-byte"), "{}", b.message);
}

// ---- I/O BARs ----

#[test]
fn an_io_bar_is_placed_in_port_space_and_registered_ports_reach_the_model() {
    let (emu, a) = start(InterruptResources::None, Isr::Acknowledge);
    assert_eq!(
        PORT_BASE.get() as u64,
        IO_BAR_BASE,
        "on x64 the port base is the port"
    );
    let bar1 = device(&emu, a, |d, _| {
        u32::from_le_bytes(d.config()[0x14..0x18].try_into().unwrap())
    });
    assert_eq!(
        bar1,
        IO_BAR_BASE as u32 | 1,
        "BAR 1: the port, bit 0 set (I/O space)"
    );
    let p = PORT_BASE.get();
    // SAFETY: ports inside the registered range.
    let (d, w, b) = unsafe {
        sys::mmio::WRITE_PORT_ULONG(p as *mut u32, 0x4433_2211);
        sys::mmio::WRITE_PORT_USHORT((p + 4) as *mut u16, 0x6655);
        sys::mmio::WRITE_PORT_UCHAR((p + 7) as *mut u8, 0x88);
        (
            sys::mmio::READ_PORT_ULONG((p + 4) as *const u32),
            sys::mmio::READ_PORT_USHORT((p + 2) as *const u16),
            sys::mmio::READ_PORT_UCHAR((p + 1) as *const u8),
        )
    };
    assert_eq!((d, w, b), (0x8800_6655, 0x4433, 0x22));
    let accesses = device(&emu, a, |d, _| std::mem::take(&mut d.accesses));
    assert_eq!(
        accesses,
        [
            (true, 0x1_0000, 4),
            (true, 0x1_0004, 2),
            (true, 0x1_0007, 1),
            (false, 0x1_0004, 4),
            (false, 0x1_0002, 2),
            (false, 0x1_0001, 1),
        ],
        "each port access reaches io_read/io_write of BAR 1 once, with its width"
    );
    stop(emu, a);
}

#[test]
fn a_port_access_outside_a_registered_range_is_caught() {
    let (emu, _a) = start(InterruptResources::None, Isr::Acknowledge);
    let b = emu.expect_bugcheck(|| {
        // SAFETY: deliberately past the range (the emulator stops it before any access).
        unsafe { sys::mmio::READ_PORT_UCHAR((PORT_BASE.get() + PORTS as usize) as *const u8) };
    });
    assert_eq!((b.code, b.params[0]), (0xC4, ndis_emu::rule::MMIO));
    assert!(
        b.message.contains("NdisMRegisterIoPortRange"),
        "{}",
        b.message
    );
}

#[test]
fn halting_with_a_port_range_registered_is_caught() {
    let (emu, a) = start(InterruptResources::None, Isr::Acknowledge);
    KEEP_PORTS_AT_HALT.set(true);
    let b = emu.expect_bugcheck(|| emu.halt(a, sys::NdisHaltDeviceDisabled));
    KEEP_PORTS_AT_HALT.set(false);
    assert_eq!((b.code, b.params[0]), (0xC4, ndis_emu::rule::MMIO));
    assert!(b.message.contains("not deregistered"), "{}", b.message);
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
fn an_images_in_and_out_instructions_are_port_accesses_through_the_trap() {
    use std::arch::asm;
    ISR_MODE.set(Isr::Acknowledge);
    scripted_driver::set_scripts(init, halt);
    let emu = Emulator::new(Config::default());
    emu.trap_hardware_access();
    assert_eq!(emu.load_driver(entry), 0);
    let a = emu
        .add_adapter_with(InterruptResources::None, Box::new(KitDevice::new()))
        .expect("initialize");
    let p = PORT_BASE.get() as u16;
    let (al, ax, eax): (u8, u16, u32);
    // SAFETY: `in`/`out` on ports of the registered range: in user mode they fault, and the
    // trap performs them on the model and resumes after the instruction.
    unsafe {
        asm!("out dx, eax", in("dx") p, in("eax") 0xA1B2_C3D4u32, options(nostack));
        asm!("out dx, ax", in("dx") p + 4, in("ax") 0xE5F6u16, options(nostack));
        asm!("out dx, al", in("dx") p + 6, in("al") 0x07u8, options(nostack));
        asm!("in al, dx", in("dx") p + 3, out("al") al, options(nostack));
        asm!("in ax, dx", in("dx") p + 4, out("ax") ax, options(nostack));
        asm!("in eax, dx", in("dx") p, out("eax") eax, options(nostack));
    }
    assert_eq!((al, ax, eax), (0xA1, 0xE5F6, 0xA1B2_C3D4));
    let ports = device(&emu, a, |d, _| d.ports[..8].to_vec());
    assert_eq!(ports, [0xD4, 0xC3, 0xB2, 0xA1, 0xF6, 0xE5, 0x07, 0x00]);
    stop(emu, a);
}

// ---- the level-triggered line ----

#[test]
fn an_isr_that_acknowledges_the_cause_is_called_once_per_assertion() {
    let (emu, a) = start(InterruptResources::line(), Isr::Acknowledge);
    device(&emu, a, |d, bus| d.interrupt(bus, CAUSE_RX));
    assert_eq!(seen(), ["isr", "dpc", "dpc end"]);
    assert!(!device(&emu, a, |_, bus| bus.line_asserted()));
    // Again: a new assertion, a new interrupt.
    device(&emu, a, |d, bus| d.interrupt(bus, CAUSE_RX));
    assert_eq!(ISR_CALLS.get(), 2);
    stop(emu, a);
}

#[test]
fn a_line_still_asserted_when_the_isr_returns_interrupts_again() {
    let (emu, a) = start(InterruptResources::line(), Isr::AcknowledgeEveryThird);
    device(&emu, a, |d, bus| d.interrupt(bus, CAUSE_RX));
    assert_eq!(
        ISR_CALLS.get(),
        3,
        "the line stayed asserted through two ISRs and was released by the third"
    );
    assert!(!device(&emu, a, |_, bus| bus.line_asserted()));
    stop(emu, a);
}

#[test]
fn an_isr_that_claims_without_clearing_the_cause_is_an_interrupt_storm() {
    let (emu, a) = start(InterruptResources::line(), Isr::ClaimOnly);
    let b = emu.expect_bugcheck(|| device(&emu, a, |d, bus| d.interrupt(bus, CAUSE_RX)));
    assert_eq!(b.code, HARDWARE_INTERRUPT_STORM);
    assert_eq!(b.code, 0xF2);
    assert_eq!(ISR_CALLS.get(), INTERRUPT_STORM_LIMIT);
    assert_ne!(b.params[0], 0, "parameter 1: the ISR");
    assert_ne!(b.params[2], 0, "parameter 3: the interrupt object");
    assert_eq!(b.params[3], 1, "parameter 4: 1, the ISR is not chained");
    assert!(
        b.message.contains("Clear the interrupt cause"),
        "{}",
        b.message
    );
}

#[test]
fn a_pulse_on_the_line_is_delivered_once_even_to_an_isr_that_does_not_clear() {
    // `raise(None)` (and `fire_line`) are edges: the storm rule is about the level line only.
    let (emu, a) = start(InterruptResources::line(), Isr::ClaimOnly);
    device(&emu, a, |_, bus| bus.raise(None));
    assert_eq!(ISR_CALLS.get(), 1);
    stop(emu, a);
}

#[test]
fn a_line_asserted_before_the_isr_is_connected_interrupts_when_it_connects() {
    RING_BEFORE_REGISTER.set(true);
    let (emu, a) = start(InterruptResources::line(), Isr::Acknowledge);
    RING_BEFORE_REGISTER.set(false);
    assert_eq!(
        ISR_CALLS.get(),
        1,
        "delivered once NdisMRegisterInterruptEx connected the line"
    );
    assert!(!device(&emu, a, |_, bus| bus.line_asserted()));
    stop(emu, a);
}

#[test]
fn a_removed_device_releases_its_line_and_asserts_nothing() {
    REGISTER.set(false);
    let (emu, a) = start(InterruptResources::line(), Isr::Acknowledge);
    REGISTER.set(true);
    // No ISR connected: the asserted line waits.
    device(&emu, a, |d, bus| d.interrupt(bus, CAUSE_RX));
    assert!(device(&emu, a, |_, bus| bus.line_asserted()));
    emu.remove_device(a);
    assert!(
        !device(&emu, a, |_, bus| bus.line_asserted()),
        "released on removal"
    );
    device(&emu, a, |d, bus| d.interrupt(bus, CAUSE_RX));
    assert!(
        !device(&emu, a, |_, bus| bus.line_asserted()),
        "a removed device asserts nothing"
    );
    assert_eq!(ISR_CALLS.get(), 0);
}

// ---- events on the virtual clock ----

#[test]
fn a_model_completes_later_on_the_virtual_clock() {
    let (emu, a) = start(InterruptResources::line(), Isr::Acknowledge);
    // SAFETY: DOORBELL inside the live mapping, aligned.
    unsafe { sys::mmio::WRITE_REGISTER_ULONG(reg(DOORBELL) as *mut u32, 100) };
    assert_eq!(seen(), Vec::<&str>::new(), "nothing before the time comes");
    emu.advance_time(Duration::from_micros(99));
    assert_eq!(seen(), Vec::<&str>::new());
    emu.advance_time(Duration::from_micros(1));
    assert_eq!(seen(), ["isr", "dpc", "dpc end"]);
    assert_eq!(
        device(&emu, a, |d, _| d.events_at.clone()),
        [Duration::from_micros(100)],
        "the event ran at its virtual time"
    );
    stop(emu, a);
}

#[test]
fn a_frame_arrives_while_the_dpc_runs() {
    for resources in [InterruptResources::line(), InterruptResources::msix(2)] {
        let (emu, a) = start(resources, Isr::Acknowledge);
        // The DPC rings the doorbell (no delay): the receive comes in as soon as the doorbell
        // write returns, and its interrupt preempts the DPC (DIRQL > DISPATCH_LEVEL); the DPC
        // the ISR queues runs after this one.
        DPC_DOORBELL.set(Some(0));
        match resources {
            InterruptResources::Line { .. } => device(&emu, a, |_, bus| bus.set_line(true)),
            _ => device(&emu, a, |d, bus| {
                assert_eq!(d.msix.signal(bus, 0), MsixSignal::Sent)
            }),
        }
        assert_eq!(
            seen(),
            [
                "isr", "dpc", "isr", "stall", "stall", "dpc end", "dpc", "dpc end"
            ],
            "{resources:?}"
        );
        stop(emu, a);
    }
}

#[test]
fn a_stall_advances_the_clock_so_a_polling_dpc_sees_the_device_progress() {
    let (emu, a) = start(InterruptResources::line(), Isr::Acknowledge);
    DPC_DOORBELL.set(Some(15));
    DPC_STALL.set(10);
    device(&emu, a, |_, bus| bus.set_line(true));
    // Due 15 µs after the doorbell: not at the first 10 µs stall, at the second.
    assert_eq!(
        seen(),
        [
            "isr", "dpc", "stall", "stall", "isr", "dpc end", "dpc", "dpc end"
        ]
    );
    assert_eq!(
        device(&emu, a, |d, _| d.events_at.clone()),
        [Duration::from_micros(20)]
    );
    DPC_STALL.set(0);
    stop(emu, a);
}

#[test]
fn events_fire_in_time_order_and_equal_times_in_scheduling_order() {
    let (emu, a) = start(InterruptResources::line(), Isr::Acknowledge);
    // SAFETY: the doorbells inside the live mapping, aligned.
    unsafe {
        sys::mmio::WRITE_REGISTER_ULONG(reg(DOORBELL2) as *mut u32, 30);
        sys::mmio::WRITE_REGISTER_ULONG(reg(DOORBELL) as *mut u32, 30);
        sys::mmio::WRITE_REGISTER_ULONG(reg(DOORBELL2) as *mut u32, 10);
    }
    emu.advance_time(Duration::from_micros(100));
    assert_eq!(
        device(&emu, a, |d, _| d.tokens.clone()),
        [OTHER_EVENT, OTHER_EVENT, RX_EVENT]
    );
    assert_eq!(
        device(&emu, a, |d, _| d.events_at.clone()),
        [Duration::from_micros(30)]
    );
    stop(emu, a);
}

#[test]
fn a_removed_device_gets_no_events() {
    let (emu, a) = start(InterruptResources::line(), Isr::Acknowledge);
    // SAFETY: DOORBELL inside the live mapping, aligned.
    unsafe { sys::mmio::WRITE_REGISTER_ULONG(reg(DOORBELL) as *mut u32, 10) };
    emu.remove_device(a);
    emu.advance_time(Duration::from_micros(100));
    assert_eq!(device(&emu, a, |d, _| d.tokens.clone()), Vec::<u64>::new());
    assert_eq!(ISR_CALLS.get(), 0);
}

#[test]
fn a_function_that_loses_power_drops_its_events() {
    let (emu, a) = start(InterruptResources::line(), Isr::Acknowledge);
    assert_eq!(emu.restart(a), sys::NDIS_STATUS_SUCCESS);
    // SAFETY: DOORBELL inside the live mapping, aligned.
    unsafe { sys::mmio::WRITE_REGISTER_ULONG(reg(DOORBELL) as *mut u32, 10) };
    // Not power-managed: halted, the function loses power (D3), initialized again on wake.
    emu.sleep(a, ndis_emu::SystemSleep::S4);
    emu.wake(a).expect("wake");
    emu.advance_time(Duration::from_micros(100));
    assert_eq!(device(&emu, a, |d, _| d.tokens.clone()), Vec::<u64>::new());
    assert_eq!(ISR_CALLS.get(), 0);
    assert_eq!(emu.pause(a), sys::NDIS_STATUS_SUCCESS);
    stop(emu, a);
}

// ---- misuse a model reports ----

#[test]
fn a_model_reports_driver_misuse_as_its_own_bug_check() {
    let (emu, _a) = start(InterruptResources::None, Isr::Acknowledge);
    let b = emu.expect_bugcheck(|| {
        // SAFETY: inside the live mapping, aligned (the model stops the run on it).
        unsafe { sys::mmio::WRITE_REGISTER_ULONG(reg(MISUSE) as *mut u32, 0xBAD) };
    });
    assert_eq!(b.code, MODEL_BUGCHECK);
    assert_eq!(b.params, [0xBAD, 4, 0, 0]);
    assert!(
        b.message
            .starts_with("device 0 reports: MISUSE written with 0xbad"),
        "{}",
        b.message
    );
}

// ---- the MSI-X table ----

#[test]
fn the_msix_table_masks_holds_pending_and_delivers_on_unmask() {
    let (emu, a) = start(InterruptResources::msix(2), Isr::Acknowledge);
    let entry1 = reg(MSIX_TABLE + 16);
    // SAFETY: the table inside the live mapping, aligned: address (8 bytes), data, control.
    unsafe {
        sys::mmio::WRITE_REGISTER_ULONG64(entry1 as *mut u64, 0xFEE0_1000);
        sys::mmio::WRITE_REGISTER_ULONG((entry1 + 8) as *mut u32, 0x61);
        sys::mmio::WRITE_REGISTER_ULONG((entry1 + 12) as *mut u32, 1); // masked
    }
    let e = device(&emu, a, |d, _| d.msix.entry(1)).unwrap();
    assert_eq!((e.address, e.data, e.masked), (0xFEE0_1000, 0x61, true));
    assert_eq!(
        device(&emu, a, |d, bus| d.msix.signal(bus, 1)),
        MsixSignal::Pending
    );
    assert_eq!(seen(), Vec::<&str>::new(), "masked: held");
    // SAFETY: the PBA, the control dword and the table, as above.
    let pba = unsafe { sys::mmio::READ_REGISTER_ULONG64(reg(MSIX_PBA) as *const u64) };
    assert_eq!(pba, 0b10, "the pending bit of entry 1");
    // SAFETY: as above.
    unsafe { sys::mmio::WRITE_REGISTER_ULONG((entry1 + 12) as *mut u32, 0) };
    assert_eq!(seen(), ["isr"], "unmasking delivers it at once");
    emu.run_dpcs();
    assert_eq!(seen(), ["dpc", "dpc end"]);
    // SAFETY: as above.
    let (pba, control, data) = unsafe {
        (
            sys::mmio::READ_REGISTER_ULONG64(reg(MSIX_PBA) as *const u64),
            sys::mmio::READ_REGISTER_ULONG((entry1 + 12) as *const u32),
            sys::mmio::READ_REGISTER_ULONG64((entry1 + 8) as *const u64),
        )
    };
    assert_eq!((pba, control, data), (0, 0, 0x61));
    // A message past the grant, or past the table, is lost.
    assert_eq!(
        device(&emu, a, |d, bus| d.msix.signal(bus, 2)),
        MsixSignal::Lost
    );
    stop(emu, a);
}

#[test]
fn msix_messages_beyond_the_grant_are_lost() {
    let (emu, a) = start(
        InterruptResources::MsiX {
            requested: 2,
            granted: 1,
        },
        Isr::Acknowledge,
    );
    assert_eq!(
        device(&emu, a, |d, bus| d.msix.signal(bus, 1)),
        MsixSignal::Lost
    );
    assert_eq!(
        device(&emu, a, |d, bus| d.msix.signal(bus, 0)),
        MsixSignal::Sent
    );
    assert_eq!(seen(), ["isr", "dpc", "dpc end"]);
    stop(emu, a);
}
