//! PCI functions: configuration space, memory and I/O BARs, register and port access, and the
//! device-model kit (the level-triggered line, events on the virtual clock, [`MsixTable`]).
//!
//! A device model implements [`PciFunction`] and is attached with
//! [`Emulator::add_adapter_with`](crate::Emulator::add_adapter_with). The emulator assigns each
//! BAR an address (written into the model's configuration space, reported in the adapter's
//! resource list), implements `NdisMGetBusData`/`NdisMSetBusData` over the configuration space,
//! and `NdisMMapIoSpace` over the BARs: the mapping's virtual address is never dereferenced
//! (on Linux it lies in the kernel half, so a stray dereference faults at once); every
//! `READ_REGISTER_*`/`WRITE_REGISTER_*` on it reaches [`PciFunction::mmio_read`]/`mmio_write`.
//!
//! A model raises interrupts through [`Bus::raise`]; they are delivered as soon as the register
//! access (or test call) that caused them returns and the target processor's IRQL allows, as a
//! real device's message would arrive after the doorbell write that triggered it.

use ndis_sys as sys;

use crate::bugcheck::{self, rule};
use crate::machine::{self, State};
use crate::ndis::adapter_of_handle;

/// The guest-physical region shared memory (DMA) is carved from; no BAR is placed inside it.
pub use crate::dma::{GUEST_MEMORY_BASE, GUEST_MEMORY_SIZE};

/// Configuration space the emulator presents (PCI, not the 4 KiB extended space).
pub const CONFIG_SPACE_SIZE: usize = 256;
/// Where the emulator places 32-bit BARs: naturally aligned, one after the other, in
/// `[BAR32_BASE, BAR32_END)` (below 4 GiB, the platform's MMIO hole, clear of the guest memory DMA
/// uses at [`GUEST_MEMORY_BASE`]).
pub const BAR32_BASE: u64 = 0xC000_0000;
/// End of the 32-bit BAR window (the local APIC and I/O APIC live above, as on a PC).
pub const BAR32_END: u64 = 0xFEC0_0000;
/// Where the emulator places 64-bit BARs: naturally aligned from 512 GiB up, far above guest
/// memory.
pub const BAR64_BASE: u64 = 0x80_0000_0000;
/// The largest 32-bit BAR a function may declare (512 MiB).
pub const BAR32_MAX_SIZE: u64 = 1 << 29;
/// The largest 64-bit BAR a function may declare (2 GiB: a larger one would need
/// `CmResourceTypeMemoryLarge` descriptors, which the emulator does not produce).
pub const BAR64_MAX_SIZE: u64 = 1 << 31;
/// Where the emulator places I/O BARs: naturally aligned from here up to [`IO_BAR_END`], the
/// top of the x86 port space (below lie the legacy ISA ports; 0xC000 is where PC firmware such
/// as SeaBIOS starts PCI I/O).
pub const IO_BAR_BASE: u64 = 0xC000;
/// End of the port space.
pub const IO_BAR_END: u64 = 0x1_0000;
/// The largest I/O BAR (PCI 3.0, 6.2.5.1: at most 256 bytes).
pub const IO_BAR_MAX_SIZE: u64 = 256;
/// Virtual addresses of register mappings: kernel-half addresses no host pointer can have.
const MMIO_VA_BASE: usize = 0xFFFF_F700_0000_0000;
const MMIO_VA_STRIDE: usize = 1 << 32;

/// A memory BAR a function decodes.
///
/// The emulator places every BAR at an address aligned to its size, as PCI requires: 32-bit BARs
/// below 4 GiB (from [`BAR32_BASE`]), 64-bit BARs from [`BAR64_BASE`], never overlapping another
/// device's BAR or guest memory, however many devices are attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarInfo {
    /// 0..=5; a 64-bit BAR also occupies `index + 1`.
    pub index: u8,
    /// A power of two, at least 16; at most [`BAR32_MAX_SIZE`] (32-bit) or [`BAR64_MAX_SIZE`]
    /// (64-bit).
    pub size: u64,
    pub is_64bit: bool,
}

/// An I/O-space BAR a function decodes (port I/O: `in`/`out`, `READ_PORT_*`/`WRITE_PORT_*`
/// after `NdisMRegisterIoPortRange`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoBarInfo {
    /// 0..=5, not a register a memory BAR uses.
    pub index: u8,
    /// A power of two, 4..=[`IO_BAR_MAX_SIZE`].
    pub size: u64,
}

/// What a device model can do to the machine while it runs.
pub struct Bus<'a> {
    pub(crate) st: &'a mut State,
    pub(crate) device: usize,
}

impl Bus<'_> {
    /// Sends message `message` (MSI/MSI-X): an edge, delivered once. Ignored while the driver has
    /// no connected interrupt for it (as a message to an unprogrammed address is lost).
    ///
    /// `raise(None)` pulses the line once (delivered once, not left asserted); a model of a PCI
    /// function drives its INTx line with [`set_line`](Self::set_line) instead, which is level-
    /// triggered as INTx is.
    pub fn raise(&mut self, message: Option<u32>) {
        // A device that is gone or out of D0 signals nothing (wake events are not modelled).
        if self.st.devices[self.device].pci.presence != Presence::Working {
            return;
        }
        let Some(&first) = machine::targets(self.st, self.device, message).first() else {
            return; // nothing connected: lost, as a real device's would be
        };
        // The processor the interrupt's affinity names (a message's own processor), as the
        // platform would route it.
        let affinity = self.st.kints[first].affinity;
        let cpu = machine::pick_cpu(self.st, affinity);
        self.st.pending.push((self.device, message, cpu));
    }

    /// Drives the function's INTx line, level-triggered as PCI INTx is: asserted, the line
    /// interrupts, and interrupts again each time the ISRs return while it is still asserted;
    /// it stays asserted until the model deasserts it (typically when the driver acknowledges
    /// the cause: a read-to-clear status register, a write-one-to-clear). An ISR that leaves it
    /// asserted [`INTERRUPT_STORM_LIMIT`](crate::INTERRUPT_STORM_LIMIT) times in a row stops
    /// the run with `HARDWARE_INTERRUPT_STORM` (0xF2), as Windows' storm detection does.
    /// Nothing is delivered while no line ISR is connected (the line stays asserted and
    /// interrupts once one connects), or while the function is out of D0 or removed (the
    /// emulator deasserts it then). Asserting an asserted line changes nothing.
    pub fn set_line(&mut self, asserted: bool) {
        if asserted && self.st.devices[self.device].pci.presence != Presence::Working {
            return;
        }
        if asserted == self.st.devices[self.device].line.asserted {
            return;
        }
        machine::set_line(self.st, self.device, asserted);
    }

    /// Whether the function's line is asserted (see [`set_line`](Self::set_line)).
    pub fn line_asserted(&self) -> bool {
        self.st.devices[self.device].line.asserted
    }

    /// Schedules [`PciFunction::on_event`] with `token` after `after` of virtual time: how a
    /// model acts later on its own (a transmit that completes after the doorbell, a frame that
    /// arrives while the driver's DPC runs). The event fires once the virtual clock has
    /// reached its time, at the first of: the end of a register access (the one that scheduled
    /// it included: an `after` of zero fires as that access returns), the driver's next call
    /// to an export that is a preemption point (spin lock release, `KeStallExecutionProcessor`,
    /// which also advances the clock by its microseconds, interrupt registration and
    /// synchronization, DPC queueing), or the test advancing the clock
    /// ([`Emulator::advance_time`](crate::Emulator::advance_time)). Interrupts it raises are
    /// delivered at once if the IRQL allows (an ISR preempts a running DPC). Events of equal
    /// time fire in the order they were scheduled. A function out of D0 or removed gets none:
    /// its events are dropped when it loses power or when they come due.
    pub fn schedule(&mut self, after: std::time::Duration, token: u64) {
        let ticks = u64::try_from(after.as_nanos() / 100).unwrap_or(u64::MAX);
        let due = self.st.sync.now().saturating_add(ticks);
        let seq = self.st.mmio.next_event;
        self.st.mmio.next_event += 1;
        self.st.mmio.events.push(ScheduledEvent {
            device: self.device,
            due,
            seq,
            token,
        });
    }

    /// The virtual clock (from 0 when the emulator was created; see [`schedule`](Self::schedule)).
    pub fn now(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.st.sync.now().saturating_mul(100))
    }

    /// Reports driver misuse the model detected as an emulated bug check with the model's own
    /// `code` and parameters (a vendor's device would hang or corrupt memory instead; the model
    /// stops the run with the reason). `message` says what the driver did and what it should do.
    /// A test catches it with [`Emulator::expect_bugcheck`](crate::Emulator::expect_bugcheck).
    pub fn bug_check(&mut self, code: u32, params: [usize; 4], message: impl Into<String>) -> ! {
        let message = format!("device {} reports: {}", self.device, message.into());
        bugcheck::raise(code, params, message)
    }

    /// Reads device-visible (shared) memory as a bus master. `None` if the range is not inside
    /// one live shared-memory block.
    pub fn dma_read(&self, physical: u64, buf: &mut [u8]) -> Option<()> {
        crate::dma::read(self.st, physical, buf)
    }

    /// Writes device-visible memory as a bus master.
    pub fn dma_write(&mut self, physical: u64, data: &[u8]) -> Option<()> {
        crate::dma::write(self.st, physical, data)
    }

    /// The whole guest-physical region shared memory is carved from, for models that run their
    /// rings with `virtio-queue`. Unlike [`dma_read`](Self::dma_read) it does not confine an
    /// access to a live block (a bus master without an IOMMU does not either); accesses outside
    /// the region fail.
    pub fn memory(&self) -> &vm_memory::GuestMemoryMmap {
        &self.st.dma.memory
    }

    /// How the device may interrupt, from the resources PnP assigned it: a model decides from
    /// this whether it signals messages (and which are real) or the line.
    pub fn interrupt_mode(&self) -> InterruptMode {
        InterruptMode::of(self.st.devices[self.device].resources)
    }
}

/// How a device interrupts (see [`Bus::interrupt_mode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterruptMode {
    /// No interrupt resource: nothing the device raises arrives.
    None,
    /// INTx: the device asserts its line (`Bus::raise(None)`).
    Line,
    /// MSI/MSI-X with this many messages granted (0..n are programmed; others are lost).
    Messages(u32),
}

impl InterruptMode {
    pub(crate) fn of(resources: crate::InterruptResources) -> Self {
        match resources {
            crate::InterruptResources::None => InterruptMode::None,
            crate::InterruptResources::Line { .. } => InterruptMode::Line,
            crate::InterruptResources::Msi { granted, .. }
            | crate::InterruptResources::MsiX { granted, .. } => InterruptMode::Messages(granted),
        }
    }
}

/// A PCI function's hardware, as a driver sees it through NDIS.
pub trait PciFunction: std::any::Any {
    /// The function's configuration space; the emulator writes BAR addresses into it.
    fn config(&mut self) -> &mut [u8; CONFIG_SPACE_SIZE];
    /// The memory BARs the function decodes.
    fn bars(&self) -> Vec<BarInfo>;
    /// A register read of `width` bytes (1, 2, 4 or 8: `READ_REGISTER_UCHAR`..`_ULONG64`, or
    /// the same load of an image) at `offset` in BAR `bar`; the driver's address was aligned for
    /// `width` (the emulator stops a misaligned access first). The value is in the low `width`
    /// bytes; bytes above them are ignored.
    fn mmio_read(&mut self, bus: &mut Bus<'_>, bar: u8, offset: u64, width: u32) -> u64;
    /// A register write of the low `width` bytes of `value` (the bytes above are zero).
    fn mmio_write(&mut self, bus: &mut Bus<'_>, bar: u8, offset: u64, width: u32, value: u64);
    /// The I/O-space BARs the function decodes (none by default). The emulator places them
    /// from [`IO_BAR_BASE`], writes `port | 1` into their BAR registers and lists them as port
    /// resources (`CmResourceTypePort`, `CM_RESOURCE_PORT_IO`).
    fn io_bars(&self) -> Vec<IoBarInfo> {
        Vec::new()
    }
    /// A port read of `width` bytes (1, 2 or 4: `READ_PORT_UCHAR`..`_ULONG`, or an image's
    /// `in`) at `offset` in I/O BAR `bar`. The default reads all ones, as nothing decoding it.
    fn io_read(&mut self, _bus: &mut Bus<'_>, _bar: u8, _offset: u64, width: u32) -> u32 {
        all_ones(width) as u32
    }
    /// A port write (`WRITE_PORT_*`, `out`).
    fn io_write(&mut self, _bus: &mut Bus<'_>, _bar: u8, _offset: u64, _width: u32, _value: u32) {}
    /// An event the model scheduled with [`Bus::schedule`] came due.
    fn on_event(&mut self, _bus: &mut Bus<'_>, _token: u64) {}
    /// PnP assigned the function its interrupt resources (before the driver starts), as Windows
    /// enables MSI-X in the capability when it grants messages.
    fn interrupts_assigned(&mut self, _mode: InterruptMode) {}
    /// The function lost power (D3cold, as in a system sleep or hibernation): its registers and
    /// internal state go back to their power-on values. Configuration space is not touched: the
    /// PCI bus driver restores it before the driver sees the device in D0 again.
    fn power_lost(&mut self) {}
    /// A configuration-space write the emulator does not handle itself (everything but the BAR
    /// registers, which are read-only here: BAR sizing is PnP's job, not the driver's).
    fn config_write(&mut self, offset: usize, data: &[u8]) {
        let end = (offset + data.len()).min(CONFIG_SPACE_SIZE);
        if offset < end {
            self.config()[offset..end].copy_from_slice(&data[..end - offset]);
        }
    }
}

/// The function every adapter gets unless the test attaches a model: a QEMU "PCI test device"
/// identity (1B36:0005) with one 16 KiB BAR of plain read/write registers.
pub struct PlainFunction {
    config: [u8; CONFIG_SPACE_SIZE],
    registers: Vec<u8>,
}

impl Default for PlainFunction {
    fn default() -> Self {
        let mut config = [0u8; CONFIG_SPACE_SIZE];
        config[0..2].copy_from_slice(&0x1B36u16.to_le_bytes());
        config[2..4].copy_from_slice(&0x0005u16.to_le_bytes());
        config[0x0B] = 0x02; // class: network controller
        PlainFunction {
            config,
            registers: vec![0; 0x4000],
        }
    }
}

impl PciFunction for PlainFunction {
    fn config(&mut self) -> &mut [u8; CONFIG_SPACE_SIZE] {
        &mut self.config
    }
    fn bars(&self) -> Vec<BarInfo> {
        vec![BarInfo {
            index: 0,
            size: 0x4000,
            is_64bit: false,
        }]
    }
    fn mmio_read(&mut self, _bus: &mut Bus<'_>, _bar: u8, offset: u64, width: u32) -> u64 {
        let o = offset as usize;
        let mut v = [0u8; 8];
        v[..width as usize].copy_from_slice(&self.registers[o..o + width as usize]);
        u64::from_le_bytes(v)
    }
    fn mmio_write(&mut self, _bus: &mut Bus<'_>, _bar: u8, offset: u64, width: u32, value: u64) {
        let o = offset as usize;
        self.registers[o..o + width as usize]
            .copy_from_slice(&value.to_le_bytes()[..width as usize]);
    }
}

/// What configuration cycles reach once a function is gone: all ones, writes lost.
struct RemovedFunction([u8; CONFIG_SPACE_SIZE]);

impl PciFunction for RemovedFunction {
    fn config(&mut self) -> &mut [u8; CONFIG_SPACE_SIZE] {
        self.0 = [0xFF; CONFIG_SPACE_SIZE];
        &mut self.0
    }
    fn bars(&self) -> Vec<BarInfo> {
        Vec::new()
    }
    fn mmio_read(&mut self, _bus: &mut Bus<'_>, _bar: u8, _offset: u64, width: u32) -> u64 {
        all_ones(width)
    }
    fn mmio_write(&mut self, _: &mut Bus<'_>, _: u8, _: u64, _: u32, _: u64) {}
    fn config_write(&mut self, _offset: usize, _data: &[u8]) {}
}

/// A BAR as placed in the machine's physical address space.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlacedBar {
    pub index: u8,
    pub physical: u64,
    pub size: u64,
}

/// Whether a function answers its registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Presence {
    #[default]
    Working,
    /// Out of D0 after the driver handled `OID_PNP_SET_POWER` (the raw NDIS device state):
    /// every register access is a driver bug.
    LowPower(u32),
    /// Gone from the bus: reads return all ones, writes are lost. Once the driver was `told`
    /// (`NdisDevicePnPEventSurpriseRemoved`), an access is a driver bug.
    Removed { told: bool },
}

/// Per-device PCI state in the machine.
pub(crate) struct PciState {
    pub function: Option<Box<dyn PciFunction>>,
    pub bars: Vec<PlacedBar>,
    /// I/O BARs: `physical` is the first port.
    pub io_bars: Vec<PlacedBar>,
    pub presence: Presence,
}

impl std::fmt::Debug for PciState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PciState")
            .field("bars", &self.bars)
            .finish_non_exhaustive()
    }
}

struct Mapping {
    va: usize,
    length: usize,
    adapter: usize,
    device: usize,
    bar: u8,
    /// Offset of the mapping's start inside the BAR.
    bar_offset: u64,
    live: bool,
    /// For an image: the reservation `va` lies in (kept after unmap, so that a stale access
    /// faults and is reported; released with the emulator).
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    _guard: Option<crate::image::trap::GuardRegion>,
}

/// A port range registered with `NdisMRegisterIoPortRange`.
struct PortRange {
    first: u64,
    length: u64,
    adapter: usize,
    device: usize,
    bar: u8,
    /// Offset of the range's first port inside the BAR.
    bar_offset: u64,
    live: bool,
}

#[derive(Default)]
pub(crate) struct MmioState {
    mappings: Vec<Mapping>,
    ports: Vec<PortRange>,
    /// Set when the emulator serves a loaded image (`Emulator::trap_hardware_access`): new
    /// mappings are guard regions whose accesses fault into `image::trap`.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    pub trapping: Option<crate::image::trap::Trapping>,
    /// BAR address allocation (never reused: a removed device's range stays retired).
    bar_space: BarSpace,
    /// Events models scheduled ([`Bus::schedule`]), not yet fired.
    events: Vec<ScheduledEvent>,
    next_event: u64,
}

#[derive(Debug, Clone, Copy)]
struct ScheduledEvent {
    device: usize,
    /// Virtual time, 100 ns units.
    due: u64,
    /// Scheduling order, for events of equal time.
    seq: u64,
    token: u64,
}

/// The earliest time a scheduled event is due, if any is due by `by`.
pub(crate) fn next_event_due(st: &State, by: u64) -> Option<u64> {
    st.mmio
        .events
        .iter()
        .map(|e| e.due)
        .filter(|&d| d <= by)
        .min()
}

/// Fires every scheduled event due by the current virtual time, in (time, scheduling) order,
/// each on its model with the function out of its slot, delivering what it raised. An event
/// whose model is busy (inside an access or `with_device`) waits for the next call.
pub(crate) fn fire_due_events(m: &machine::Machine) {
    loop {
        let next = {
            let mut st = m.st();
            if st.mmio.events.is_empty() {
                return;
            }
            let now = st.sync.now();
            let pick = st
                .mmio
                .events
                .iter()
                .enumerate()
                .filter(|(_, e)| e.due <= now && st.devices[e.device].pci.function.is_some())
                .min_by_key(|(_, e)| (e.due, e.seq))
                .map(|(i, _)| i);
            let Some(i) = pick else {
                return;
            };
            let e = st.mmio.events.remove(i);
            if st.devices[e.device].pci.presence != Presence::Working {
                continue; // out of D0 or gone: the event is lost with the device's state
            }
            let function = st.devices[e.device].pci.function.take();
            function.map(|f| (e, f))
        };
        let Some((e, mut function)) = next else {
            return;
        };
        {
            let _emulator = crate::heap::EmulatorCode::enter();
            let mut st = m.st();
            let mut bus = Bus {
                st: &mut st,
                device: e.device,
            };
            function.on_event(&mut bus, e.token);
            st.devices[e.device].pci.function = Some(function);
        }
        machine::deliver_pending(m);
    }
}

/// The function lost power: events it scheduled are gone with its state.
pub(crate) fn drop_events(st: &mut State, device: usize) {
    st.mmio.events.retain(|e| e.device != device);
}

/// Bump allocation of BAR addresses in the two windows, each BAR naturally aligned.
#[derive(Debug, Default)]
struct BarSpace {
    /// Next free address above [`BAR32_BASE`] (0: none handed out yet).
    next32: u64,
    /// Next free address above [`BAR64_BASE`] (0: none handed out yet).
    next64: u64,
    /// Next free port above [`IO_BAR_BASE`] (0: none handed out yet).
    next_io: u64,
}

impl BarSpace {
    /// An address for a BAR of `size` (a power of two), or `None` when the window is full.
    fn place(&mut self, size: u64, is_64bit: bool) -> Option<u64> {
        let (next, base, end) = if is_64bit {
            (&mut self.next64, BAR64_BASE, u64::MAX)
        } else {
            (&mut self.next32, BAR32_BASE, BAR32_END)
        };
        Self::bump(next, base, end, size)
    }

    /// A port base for an I/O BAR of `size` (a power of two), or `None` when the space is full.
    fn place_io(&mut self, size: u64) -> Option<u64> {
        Self::bump(&mut self.next_io, IO_BAR_BASE, IO_BAR_END, size)
    }

    fn bump(next: &mut u64, base: u64, end: u64, size: u64) -> Option<u64> {
        let from = (*next).max(base);
        let at = from.checked_add(size - 1)? & !(size - 1);
        let top = at.checked_add(size)?;
        if top > end {
            return None;
        }
        *next = top;
        Some(at)
    }
}

/// Places `function`'s BARs for device `device` and writes their addresses into its
/// configuration space.
pub(crate) fn attach(
    mmio: &mut MmioState,
    device: usize,
    resources: crate::InterruptResources,
    mut function: Box<dyn PciFunction>,
) -> PciState {
    function.interrupts_assigned(InterruptMode::of(resources));
    let mut bars = Vec::new();
    let declared = function.bars();
    for b in &declared {
        let max = if b.is_64bit {
            BAR64_MAX_SIZE
        } else {
            BAR32_MAX_SIZE
        };
        assert!(
            b.index <= if b.is_64bit { 4 } else { 5 }
                && b.size.is_power_of_two()
                && (16..=max).contains(&b.size),
            "device {device} BAR {}: index 0..=5 (0..=4 for a 64-bit BAR), size {:#x} must be a \
             power of two in 16..={max:#x}",
            b.index,
            b.size
        );
        let overlap = declared.iter().any(|o| {
            !std::ptr::eq(o, b)
                && (o.index == b.index
                    || (o.is_64bit && o.index + 1 == b.index)
                    || (b.is_64bit && b.index + 1 == o.index))
        });
        assert!(
            !overlap,
            "device {device} BAR {}: its BAR register is also another BAR's (a 64-bit BAR takes \
             two)",
            b.index
        );
        let physical = mmio.bar_space.place(b.size, b.is_64bit).unwrap_or_else(|| {
            panic!(
                "device {device} BAR {} ({:#x} bytes): the {} BAR window is full; declare \
                 a 64-bit BAR or smaller BARs",
                b.index,
                b.size,
                if b.is_64bit { "64-bit" } else { "32-bit" }
            )
        });
        let reg = 0x10 + 4 * b.index as usize;
        let low = (physical as u32) | if b.is_64bit { 0x4 } else { 0 };
        function.config()[reg..reg + 4].copy_from_slice(&low.to_le_bytes());
        if b.is_64bit {
            function.config()[reg + 4..reg + 8]
                .copy_from_slice(&((physical >> 32) as u32).to_le_bytes());
        }
        bars.push(PlacedBar {
            index: b.index,
            physical,
            size: b.size,
        });
    }
    let mut io_bars = Vec::new();
    let io_declared = function.io_bars();
    for b in &io_declared {
        let taken = declared
            .iter()
            .any(|m| m.index == b.index || (m.is_64bit && m.index + 1 == b.index))
            || io_declared
                .iter()
                .any(|o| !std::ptr::eq(o, b) && o.index == b.index);
        assert!(
            b.index <= 5
                && !taken
                && b.size.is_power_of_two()
                && (4..=IO_BAR_MAX_SIZE).contains(&b.size),
            "device {device} I/O BAR {}: index 0..=5 not used by another BAR, size {:#x} must be              a power of two in 4..={IO_BAR_MAX_SIZE}",
            b.index,
            b.size
        );
        let port = mmio.bar_space.place_io(b.size).unwrap_or_else(|| {
            panic!(
                "device {device} I/O BAR {} ({} ports): the port space is full",
                b.index, b.size
            )
        });
        let reg = 0x10 + 4 * b.index as usize;
        function.config()[reg..reg + 4].copy_from_slice(&(port as u32 | 1).to_le_bytes());
        io_bars.push(PlacedBar {
            index: b.index,
            physical: port,
            size: b.size,
        });
    }
    PciState {
        function: Some(function),
        bars,
        io_bars,
        presence: Presence::Working,
    }
}

fn mmio_violation(message: String, p2: usize, p3: usize) -> ! {
    bugcheck::raise(
        bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
        [rule::MMIO, p2, p3, 0],
        message,
    )
}

pub(crate) unsafe fn ndis_m_map_io_space(
    va: *mut sys::PVOID,
    handle: sys::NDIS_HANDLE,
    physical: sys::PHYSICAL_ADDRESS,
    length: u32,
) -> sys::NDIS_STATUS {
    let m = machine::current();
    let mut st = m.st();
    st.require_irql(sys::PASSIVE_LEVEL, "NdisMMapIoSpace");
    let a = adapter_of_handle(&st, handle, "NdisMMapIoSpace");
    // SAFETY: the caller's out-pointer; null until the mapping succeeds.
    unsafe { va.write(core::ptr::null_mut()) };
    let device = st.ndis.adapters[a].device;
    let start = physical as u64;
    let bar = st.devices[device]
        .pci
        .bars
        .iter()
        .find(|b| start >= b.physical && start + length as u64 <= b.physical + b.size)
        .copied();
    let Some(bar) = bar else {
        drop(st);
        mmio_violation(
            format!(
                "NdisMMapIoSpace({start:#x}, {length} bytes) on adapter {a}: the range is not inside \
                 one of the adapter's memory resources"
            ),
            start as usize,
            length as usize,
        );
    };
    if length == 0 {
        return sys::NDIS_STATUS_INVALID_PARAMETER;
    }
    if st.fallible("NdisMMapIoSpace") {
        return sys::NDIS_STATUS_RESOURCES;
    }
    let index = st.mmio.mappings.len();
    // A host build's accesses are calls (`HOST_MMIO`), so any address no host pointer can have
    // does; an image dereferences the address, so it gets a region whose every access faults.
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    let (address, guard) = if st.mmio.trapping.is_some() {
        let page_offset = (start % 4096) as usize;
        let Some(region) = crate::image::trap::GuardRegion::reserve(page_offset, length as usize)
        else {
            return sys::NDIS_STATUS_RESOURCES;
        };
        (region.base() + page_offset, Some(region))
    } else {
        (MMIO_VA_BASE + index * MMIO_VA_STRIDE, None)
    };
    #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
    let address = MMIO_VA_BASE + index * MMIO_VA_STRIDE;
    st.mmio.mappings.push(Mapping {
        va: address,
        length: length as usize,
        adapter: a,
        device,
        bar: bar.index,
        bar_offset: start - bar.physical,
        live: true,
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        _guard: guard,
    });
    // SAFETY: as above.
    unsafe { va.write(address as sys::PVOID) };
    sys::NDIS_STATUS_SUCCESS
}

pub(crate) unsafe fn ndis_m_unmap_io_space(handle: sys::NDIS_HANDLE, va: sys::PVOID, length: u32) {
    let m = machine::current();
    let mut st = m.st();
    st.require_irql(sys::PASSIVE_LEVEL, "NdisMUnmapIoSpace");
    let a = adapter_of_handle(&st, handle, "NdisMUnmapIoSpace");
    let found =
        st.mmio.mappings.iter_mut().find(|x| {
            x.live && x.va == va as usize && x.adapter == a && x.length == length as usize
        });
    match found {
        Some(mapping) => mapping.live = false,
        None => {
            drop(st);
            mmio_violation(
                format!(
                    "NdisMUnmapIoSpace({va:p}, {length} bytes) on adapter {a}: no such mapping \
                     (address and length must match what NdisMMapIoSpace returned)"
                ),
                va as usize,
                length as usize,
            );
        }
    }
}

/// Halt: every mapping of adapter `a` released.
pub(crate) fn check_mappings_at_halt(st: &State, a: usize) {
    let ports = st
        .mmio
        .ports
        .iter()
        .filter(|p| p.live && p.adapter == a)
        .count();
    if ports > 0 {
        mmio_violation(
            format!(
                "MiniportHaltEx of adapter {a} returned with {ports} port range(s) \
                 (NdisMRegisterIoPortRange) not deregistered"
            ),
            a,
            ports,
        );
    }
    let live = st
        .mmio
        .mappings
        .iter()
        .filter(|m| m.live && m.adapter == a)
        .count();
    if live > 0 {
        mmio_violation(
            format!(
                "MiniportHaltEx of adapter {a} returned with {live} register mapping(s) \
                 (NdisMMapIoSpace) not unmapped"
            ),
            a,
            live,
        );
    }
}

fn bus_data(
    handle: sys::NDIS_HANDLE,
    which: u32,
    offset: u32,
    length: u32,
    function: &str,
    access: impl FnOnce(&mut dyn PciFunction, usize, usize),
) -> u32 {
    let m = machine::current();
    let mut st = m.st();
    st.require_irql(sys::DISPATCH_LEVEL, function);
    let a = adapter_of_handle(&st, handle, function);
    if which != sys::PCI_WHICHSPACE_CONFIG {
        return 0;
    }
    let offset = offset as usize;
    if offset >= CONFIG_SPACE_SIZE {
        return 0;
    }
    let n = (length as usize).min(CONFIG_SPACE_SIZE - offset);
    let device = st.ndis.adapters[a].device;
    if matches!(st.devices[device].pci.presence, Presence::Removed { .. }) {
        // Nothing answers: reads see all ones, writes are lost.
        let mut gone = RemovedFunction([0xFF; CONFIG_SPACE_SIZE]);
        access(&mut gone, offset, n);
        return n as u32;
    }
    let f = st.devices[device]
        .pci
        .function
        .as_deref_mut()
        .expect("the function is only out of its slot during an access");
    access(f, offset, n);
    n as u32
}

pub(crate) unsafe fn ndis_m_get_bus_data(
    handle: sys::NDIS_HANDLE,
    which: u32,
    offset: u32,
    buffer: sys::PVOID,
    length: u32,
) -> u32 {
    bus_data(
        handle,
        which,
        offset,
        length,
        "NdisMGetBusData",
        |f, o, n| {
            // SAFETY: the caller's buffer holds `length` >= n bytes.
            let out = unsafe { core::slice::from_raw_parts_mut(buffer.cast::<u8>(), n) };
            out.copy_from_slice(&f.config()[o..o + n]);
        },
    )
}

pub(crate) unsafe fn ndis_m_set_bus_data(
    handle: sys::NDIS_HANDLE,
    which: u32,
    offset: u32,
    buffer: sys::PVOID,
    length: u32,
) -> u32 {
    bus_data(
        handle,
        which,
        offset,
        length,
        "NdisMSetBusData",
        |f, o, n| {
            // SAFETY: the caller's buffer holds `length` >= n bytes.
            let data = unsafe { core::slice::from_raw_parts(buffer.cast::<u8>().cast_const(), n) };
            // The BAR registers (0x10..0x28) belong to PnP.
            let mut pos = 0;
            while pos < n {
                let at = o + pos;
                if !(0x10..0x28).contains(&at) {
                    f.config_write(at, &data[pos..pos + 1]);
                }
                pos += 1;
            }
        },
    )
}

/// Finds the mapping of `address..address + width` and runs `access` on its function with the
/// function taken out of its slot (so that the model can use the [`Bus`]).
/// `None`: the device is gone from the bus (the access reached nothing).
/// Which address space a driver's access is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Space {
    /// A register mapping (`NdisMMapIoSpace`).
    Memory,
    /// A registered port range (`NdisMRegisterIoPortRange`).
    Port,
}

/// The (device, BAR, offset in the BAR) `address..address + width` of `space` reaches.
fn resolve(st: &State, space: Space, address: usize, width: u32) -> Option<(usize, u8, u64)> {
    let end = address.checked_add(width as usize)?;
    match space {
        Space::Memory => st
            .mmio
            .mappings
            .iter()
            .find(|x| x.live && address >= x.va && end <= x.va + x.length)
            .map(|x| (x.device, x.bar, x.bar_offset + (address - x.va) as u64)),
        Space::Port => st
            .mmio
            .ports
            .iter()
            .find(|x| x.live && address as u64 >= x.first && end as u64 <= x.first + x.length)
            .map(|x| (x.device, x.bar, x.bar_offset + (address as u64 - x.first))),
    }
}

fn register_access<R>(
    space: Space,
    address: usize,
    width: u32,
    what: &str,
    access: impl FnOnce(&mut dyn PciFunction, &mut Bus<'_>, u8, u64) -> R,
) -> Option<R> {
    let m = machine::current();
    let result: Result<Option<R>, ()> = (|| {
        let mut st = m.st();
        let Some((device, bar, offset)) = resolve(&st, space, address, width) else {
            drop(st);
            mmio_violation(
                match space {
                    Space::Memory => {
                        format!("{what} at {address:#x}: not inside a live NdisMMapIoSpace mapping")
                    }
                    Space::Port => format!(
                        "{what} at port {address:#x}: not inside a port range registered with \
                         NdisMRegisterIoPortRange (and not deregistered)"
                    ),
                },
                address,
                width as usize,
            );
        };
        if !address.is_multiple_of(width as usize) {
            drop(st);
            mmio_violation(
                format!("{what} at {address:#x}: misaligned {width}-byte register access"),
                address,
                width as usize,
            );
        }
        match st.devices[device].pci.presence {
            Presence::Working => {}
            Presence::LowPower(state) => {
                drop(st);
                bugcheck::raise(
                    bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
                    [rule::LOW_POWER_ACCESS, address, state as usize, 0],
                    format!(
                        "{what} at {address:#x}: the device is in D{} (OID_PNP_SET_POWER put it \
                         there); no register access until OID_PNP_SET_POWER brings it back to D0",
                        state.saturating_sub(1)
                    ),
                );
            }
            Presence::Removed { told: true } => {
                drop(st);
                bugcheck::raise(
                    bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
                    [rule::REMOVED_DEVICE_ACCESS, address, width as usize, 0],
                    format!(
                        "{what} at {address:#x}: the device was surprise-removed and the driver \
                         was told (NdisDevicePnPEventSurpriseRemoved); touch no register after that"
                    ),
                );
            }
            // Gone, and the driver does not know yet: the bus answers all ones.
            Presence::Removed { told: false } => return Ok(None),
        }
        let mut function = st.devices[device]
            .pci
            .function
            .take()
            .expect("a device model accessed its own registers re-entrantly");
        let mut bus = Bus {
            st: &mut st,
            device,
        };
        let r = access(function.as_mut(), &mut bus, bar, offset);
        st.devices[device].pci.function = Some(function);
        Ok(Some(r))
    })();
    // The access may have raised interrupts; they arrive now if the IRQL allows. Events that
    // came due (one the access scheduled with no delay, say) fire too.
    machine::deliver_pending(&m);
    fire_due_events(&m);
    result.unwrap_or(None)
}

/// A register read of `width` bytes at `address` by driver code: a host build's
/// `READ_REGISTER_*` and an image's trapped load alike.
pub(crate) fn mmio_read(address: usize, width: u32) -> u64 {
    let _emulator = crate::heap::EmulatorCode::export();
    register_access(
        Space::Memory,
        address,
        width,
        "READ_REGISTER",
        |f, bus, bar, offset| f.mmio_read(bus, bar, offset, width) & all_ones(width),
    )
    .unwrap_or(all_ones(width))
}

/// A `width`-byte value of all ones: what a read of a function that is gone returns.
pub fn all_ones(width: u32) -> u64 {
    if width >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * width)) - 1
    }
}

/// A register write by driver code (see [`mmio_read`]).
pub(crate) fn mmio_write(address: usize, width: u32, value: u64) {
    let value = value & all_ones(width);
    let _emulator = crate::heap::EmulatorCode::export();
    // A write to a removed device is lost.
    let _ = register_access(
        Space::Memory,
        address,
        width,
        "WRITE_REGISTER",
        |f, bus, bar, offset| f.mmio_write(bus, bar, offset, width, value),
    );
}

/// A port read of `width` (1, 2, 4) bytes at `port` by driver code: a host build's
/// `READ_PORT_*` and an image's trapped `in` alike. All ones from a removed device.
pub(crate) fn port_read(port: usize, width: u32) -> u32 {
    let _emulator = crate::heap::EmulatorCode::export();
    register_access(
        Space::Port,
        port,
        width,
        "READ_PORT",
        |f, bus, bar, offset| f.io_read(bus, bar, offset, width) & all_ones(width) as u32,
    )
    .unwrap_or(all_ones(width) as u32)
}

/// A port write by driver code (see [`port_read`]).
pub(crate) fn port_write(port: usize, width: u32, value: u32) {
    let _emulator = crate::heap::EmulatorCode::export();
    let value = value & all_ones(width) as u32;
    // A write to a removed device is lost.
    let _ = register_access(
        Space::Port,
        port,
        width,
        "WRITE_PORT",
        |f, bus, bar, offset| f.io_write(bus, bar, offset, width, value),
    );
}

pub(crate) unsafe extern "win64-unwind" fn host_port_read(port: usize, width: u32) -> u32 {
    port_read(port, width)
}

pub(crate) unsafe extern "win64-unwind" fn host_port_write(port: usize, width: u32, value: u32) {
    port_write(port, width, value)
}

pub(crate) unsafe fn ndis_m_register_io_port_range(
    port_offset: *mut sys::PVOID,
    handle: sys::NDIS_HANDLE,
    initial: u32,
    count: u32,
) -> sys::NDIS_STATUS {
    let m = machine::current();
    let mut st = m.st();
    st.require_irql(sys::PASSIVE_LEVEL, "NdisMRegisterIoPortRange");
    let a = adapter_of_handle(&st, handle, "NdisMRegisterIoPortRange");
    // SAFETY: the caller's out-pointer; null until the registration succeeds.
    unsafe { port_offset.write(core::ptr::null_mut()) };
    let device = st.ndis.adapters[a].device;
    let (first, length) = (initial as u64, count as u64);
    let bar = st.devices[device]
        .pci
        .io_bars
        .iter()
        .find(|b| first >= b.physical && first + length <= b.physical + b.size)
        .copied();
    let Some(bar) = bar else {
        drop(st);
        mmio_violation(
            format!(
                "NdisMRegisterIoPortRange({first:#x}, {count} ports) on adapter {a}: the range is \
                 not inside one of the adapter's port resources"
            ),
            first as usize,
            count as usize,
        );
    };
    if count == 0 {
        return sys::NDIS_STATUS_FAILURE;
    }
    if st.fallible("NdisMRegisterIoPortRange") {
        return sys::NDIS_STATUS_RESOURCES;
    }
    st.mmio.ports.push(PortRange {
        first,
        length,
        adapter: a,
        device,
        bar: bar.index,
        bar_offset: first - bar.physical,
        live: true,
    });
    // SAFETY: as above. On x64 the "mapped" base is the port itself (no translation).
    unsafe { port_offset.write(first as usize as sys::PVOID) };
    sys::NDIS_STATUS_SUCCESS
}

pub(crate) unsafe fn ndis_m_deregister_io_port_range(
    handle: sys::NDIS_HANDLE,
    initial: u32,
    count: u32,
    port_offset: sys::PVOID,
) {
    let m = machine::current();
    let mut st = m.st();
    st.require_irql(sys::PASSIVE_LEVEL, "NdisMDeregisterIoPortRange");
    let a = adapter_of_handle(&st, handle, "NdisMDeregisterIoPortRange");
    let found = st.mmio.ports.iter_mut().find(|x| {
        x.live
            && x.adapter == a
            && x.first == initial as u64
            && x.length == count as u64
            && port_offset as usize as u64 == x.first
    });
    match found {
        Some(range) => range.live = false,
        None => {
            drop(st);
            mmio_violation(
                format!(
                    "NdisMDeregisterIoPortRange({initial:#x}, {count} ports, {port_offset:p}) on \
                     adapter {a}: no such registration (pass what NdisMRegisterIoPortRange was \
                     given and returned: a subrange cannot be released)"
                ),
                initial as usize,
                count as usize,
            );
        }
    }
}

pub(crate) unsafe extern "win64-unwind" fn host_mmio_read(address: usize, width: u32) -> u64 {
    mmio_read(address, width)
}

pub(crate) unsafe extern "win64-unwind" fn host_mmio_write(address: usize, width: u32, value: u64) {
    mmio_write(address, width, value)
}

pub(crate) static HOST_MMIO: sys::mmio::HostMmio = sys::mmio::HostMmio {
    read: host_mmio_read,
    write: host_mmio_write,
    port_read: host_port_read,
    port_write: host_port_write,
};

/// One MSI-X table entry (PCI 3.0, 6.8.2.6-9): where the message goes, its data, and its
/// vector-control mask bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MsixEntry {
    pub address: u64,
    pub data: u32,
    pub masked: bool,
}

/// What [`MsixTable::signal`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsixSignal {
    /// Sent to the driver ([`Bus::raise`]).
    Sent,
    /// The entry is masked: its pending bit is set, and unmasking it sends the message.
    Pending,
    /// No such entry, or PnP did not grant it (messages are not in force, or the entry lies at
    /// or past the granted count): lost, as a message to an unprogrammed address is.
    Lost,
}

/// An MSI-X table and its pending-bit array (PBA), as a device model places them in a BAR:
/// 16-byte entries from `table_offset`, one pending bit per entry in 64-bit words from
/// `pba_offset` (PCI 3.0, 6.8.2). A model forwards the accesses of that BAR range to
/// [`read`](Self::read)/[`write`](Self::write) and sends its interrupts with
/// [`signal`](Self::signal); masking, pending bits and delivery on unmask are done here.
///
/// Entries start unmasked with address and data 0: the emulator plays the platform, which
/// programs every granted entry and unmasks it when PnP enables MSI-X. The table belongs to the
/// platform, not to the device's reset: a device reset leaves it (clear pending bits with
/// [`clear_pending`](Self::clear_pending) if the device's reset drops them). The MSI-X
/// capability in configuration space (table size, BIR, enable and function-mask bits) stays
/// the model's.
#[derive(Debug, Clone)]
pub struct MsixTable {
    entries: Vec<MsixEntry>,
    pending: Vec<bool>,
    table_offset: u64,
    pba_offset: u64,
}

impl MsixTable {
    /// A table of `vectors` entries (1..=2048) at `table_offset`, its PBA at `pba_offset`
    /// (both 8-byte aligned and not overlapping).
    pub fn new(vectors: u16, table_offset: u64, pba_offset: u64) -> Self {
        assert!(
            (1..=2048).contains(&vectors),
            "an MSI-X table has 1..=2048 entries, not {vectors}"
        );
        let table_end = table_offset + 16 * vectors as u64;
        let pba_end = pba_offset + Self::pba_bytes(vectors);
        assert!(
            table_offset.is_multiple_of(8)
                && pba_offset.is_multiple_of(8)
                && (table_end <= pba_offset || pba_end <= table_offset),
            "the MSI-X table ({table_offset:#x}..{table_end:#x}) and PBA ({pba_offset:#x}..\
             {pba_end:#x}) must be 8-byte aligned and must not overlap"
        );
        MsixTable {
            entries: vec![MsixEntry::default(); vectors as usize],
            pending: vec![false; vectors as usize],
            table_offset,
            pba_offset,
        }
    }

    /// Bytes of the PBA for `vectors` entries (whole 64-bit words).
    pub fn pba_bytes(vectors: u16) -> u64 {
        (vectors as u64).div_ceil(64) * 8
    }

    /// Entries in the table.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Never true (a table has at least one entry); for clippy's `len` convention.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entry(&self, vector: u16) -> Option<MsixEntry> {
        self.entries.get(vector as usize).copied()
    }

    /// The PBA bit of `vector`.
    pub fn is_pending(&self, vector: u16) -> bool {
        self.pending.get(vector as usize).copied().unwrap_or(false)
    }

    /// Clears every pending bit.
    pub fn clear_pending(&mut self) {
        self.pending.iter_mut().for_each(|p| *p = false);
    }

    /// Whether BAR offset `offset` lies in the table or the PBA.
    pub fn contains(&self, offset: u64) -> bool {
        self.table_range().contains(&offset) || self.pba_range().contains(&offset)
    }

    fn table_range(&self) -> std::ops::Range<u64> {
        self.table_offset..self.table_offset + 16 * self.entries.len() as u64
    }

    fn pba_range(&self) -> std::ops::Range<u64> {
        self.pba_offset..self.pba_offset + Self::pba_bytes(self.entries.len() as u16)
    }

    /// Sends message `vector` if its entry is unmasked; sets its pending bit if masked.
    pub fn signal(&mut self, bus: &mut Bus<'_>, vector: u16) -> MsixSignal {
        let i = vector as usize;
        let granted = match bus.interrupt_mode() {
            InterruptMode::Messages(granted) => granted,
            _ => 0,
        };
        if i >= self.entries.len() || vector as u32 >= granted {
            MsixSignal::Lost
        } else if self.entries[i].masked {
            self.pending[i] = true;
            MsixSignal::Pending
        } else {
            bus.raise(Some(vector as u32));
            MsixSignal::Sent
        }
    }

    /// Masks or unmasks `vector` (as the platform or the driver writing its vector control
    /// would); unmasking an entry whose pending bit is set clears it and sends the message.
    /// Returns what happened to a pending message (`None`: none was pending or it stays masked).
    pub fn set_masked(
        &mut self,
        bus: &mut Bus<'_>,
        vector: u16,
        masked: bool,
    ) -> Option<MsixSignal> {
        let i = vector as usize;
        let e = self.entries.get_mut(i)?;
        e.masked = masked;
        if masked || !self.pending[i] {
            return None;
        }
        self.pending[i] = false;
        Some(self.signal(bus, vector))
    }

    /// A read of `width` bytes at BAR offset `offset`: `None` outside the table and PBA
    /// (the model handles the rest of its BAR).
    pub fn read(&self, offset: u64, width: u32) -> Option<u64> {
        let mut bytes = [0u8; 8];
        if self.table_range().contains(&offset) {
            let at = offset - self.table_offset;
            let e = &self.entries[(at / 16) as usize];
            let mut raw = [0u8; 16];
            raw[0..8].copy_from_slice(&e.address.to_le_bytes());
            raw[8..12].copy_from_slice(&e.data.to_le_bytes());
            raw[12..16].copy_from_slice(&u32::from(e.masked).to_le_bytes());
            let from = (at % 16) as usize;
            let n = (width as usize).min(16 - from).min(8);
            bytes[..n].copy_from_slice(&raw[from..from + n]);
        } else if self.pba_range().contains(&offset) {
            let at = offset - self.pba_offset;
            for (k, b) in bytes.iter_mut().enumerate().take(width as usize) {
                let byte = at as usize + k;
                for bit in 0..8 {
                    if self.pending.get(byte * 8 + bit).copied().unwrap_or(false) {
                        *b |= 1 << bit;
                    }
                }
            }
        } else {
            return None;
        }
        Some(u64::from_le_bytes(bytes))
    }

    /// A write of `width` bytes at BAR offset `offset` inside the table or PBA (see
    /// [`contains`](Self::contains); a write elsewhere is ignored). Table writes of 4 bytes (any
    /// dword) or 8 bytes (the address, or data with vector control) take effect, as PCI
    /// defines; other widths and PBA writes (read-only) are ignored. Clearing an entry's mask
    /// bit delivers its pending message: the result says what became of it.
    pub fn write(
        &mut self,
        bus: &mut Bus<'_>,
        offset: u64,
        width: u32,
        value: u64,
    ) -> Option<MsixSignal> {
        if !self.table_range().contains(&offset) {
            return None;
        }
        let at = offset - self.table_offset;
        let vector = (at / 16) as u16;
        let i = vector as usize;
        let low = (at % 16, value as u32);
        let high = (at % 16 + 4, (value >> 32) as u32);
        let dwords = match (at % 16, width) {
            (_, 4) => [Some(low), None],
            (0 | 8, 8) => [Some(low), Some(high)],
            _ => [None, None],
        };
        for (o, v) in dwords.into_iter().flatten() {
            let e = &mut self.entries[i];
            match o {
                0 => e.address = (e.address & !0xFFFF_FFFF) | v as u64,
                4 => e.address = (e.address & 0xFFFF_FFFF) | ((v as u64) << 32),
                8 => e.data = v,
                _ => return self.set_masked(bus, vector, v & 1 != 0),
            }
        }
        None
    }
}
