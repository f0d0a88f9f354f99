//! The virtio modern PCI transport: finding the register windows through the PCI capability
//! list, and the common-configuration protocol (reset, status, features, queues, MSI-X vectors,
//! notification, ISR status, device configuration).
//!
//! The capability list and every register value come from the device, so the walk is bounded
//! (cycles, pointers into the standard header, regions outside their BAR are errors) and every
//! offset a value produces is checked against its window before it is accessed: a
//! [`Registers`] window panics on an out-of-range access, which in the kernel is a bug check.
//!
//! Queue selection (`queue_select`) is state shared by the whole common configuration, so the
//! queue-programming calls belong to initialization and halt, which the driver serializes. The
//! hot-path calls ([`Transport::notify`], [`Transport::isr`]) never touch it.

use ndis::hw::{ConfigSpace, Registers};

use super::net::features;

/// `VIRTIO_MSI_NO_VECTOR`: no MSI-X message for this event; also what the device reads back when
/// it refuses a mapping.
pub const NO_VECTOR: u16 = 0xFFFF;

/// `cfg_type` of the virtio vendor capabilities.
pub mod cfg_type {
    pub const COMMON: u8 = 1;
    pub const NOTIFY: u8 = 2;
    pub const ISR: u8 = 3;
    pub const DEVICE: u8 = 4;
    pub const PCI_CFG: u8 = 5;
}

/// PCI configuration-space offsets and capability ids used by the walk.
mod pci_cfg {
    pub const STATUS: u16 = 0x06;
    /// Status register bit: the function has a capability list at [`CAP_PTR`].
    pub const STATUS_CAP_LIST: u16 = 1 << 4;
    pub const CAP_PTR: u16 = 0x34;
    /// Capabilities live after the 64-byte standard header.
    pub const FIRST_CAP: u8 = 0x40;
    pub const CAP_ID_VENDOR: u8 = 0x09;
    pub const CAP_ID_MSIX: u8 = 0x11;
}

/// Offsets in the common configuration structure (virtio 1.x, 4.1.4.3).
mod common {
    pub const DEVICE_FEATURE_SELECT: usize = 0x00;
    pub const DEVICE_FEATURE: usize = 0x04;
    pub const DRIVER_FEATURE_SELECT: usize = 0x08;
    pub const DRIVER_FEATURE: usize = 0x0C;
    pub const CONFIG_MSIX_VECTOR: usize = 0x10;
    pub const NUM_QUEUES: usize = 0x12;
    pub const DEVICE_STATUS: usize = 0x14;
    pub const CONFIG_GENERATION: usize = 0x15;
    pub const QUEUE_SELECT: usize = 0x16;
    pub const QUEUE_SIZE: usize = 0x18;
    pub const QUEUE_MSIX_VECTOR: usize = 0x1A;
    pub const QUEUE_ENABLE: usize = 0x1C;
    pub const QUEUE_NOTIFY_OFF: usize = 0x1E;
    pub const QUEUE_DESC: usize = 0x20;
    pub const QUEUE_DRIVER: usize = 0x28;
    pub const QUEUE_DEVICE: usize = 0x30;
    /// Bytes the driver needs: everything up to and including `queue_device`.
    pub const MIN_LEN: usize = 0x38;
}

/// Device status bits (virtio 1.x, 2.1).
pub mod status {
    pub const ACKNOWLEDGE: u8 = 1;
    pub const DRIVER: u8 = 2;
    pub const DRIVER_OK: u8 = 4;
    pub const FEATURES_OK: u8 = 8;
    pub const NEEDS_RESET: u8 = 0x40;
    pub const FAILED: u8 = 0x80;
}

/// Status of a virtio-net device (the `status` field of its configuration).
pub const NET_S_LINK_UP: u16 = 1;
/// The device asks the driver to send a gratuitous ARP (`VIRTIO_NET_S_ANNOUNCE`).
pub const NET_S_ANNOUNCE: u16 = 2;

/// Why the capability list could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PciError {
    /// Configuration space could not be read at this offset.
    ConfigRead(u16),
    /// The status register says the function has no capability list.
    NoCapabilityList,
    /// A capability pointer points into the standard header (or is unaligned past the space).
    BadPointer(u8),
    /// The list visits a capability twice.
    Cycle(u8),
    /// A virtio capability is shorter than its structure.
    BadCapLength { at: u8, len: u8 },
    /// A required virtio capability (a [`cfg_type`] value) is absent.
    Missing(u8),
    /// A capability names a BAR the adapter does not have.
    NoSuchBar { cfg_type: u8, bar: u8 },
    /// A capability's region does not fit inside its BAR, or is not 4-byte aligned.
    OutsideBar {
        cfg_type: u8,
        bar: u8,
        offset: u32,
        length: u32,
    },
}

/// A virtio structure's place: `length` bytes at `offset` in memory BAR `bar`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapRegion {
    pub bar: u8,
    pub offset: u32,
    pub length: u32,
}

/// Where the virtio structures are, as found in the capability list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtioPciCaps {
    pub common: CapRegion,
    pub notify: CapRegion,
    /// Bytes between the notification addresses of consecutive `queue_notify_off` values
    /// (0: all queues share one address).
    pub notify_off_multiplier: u32,
    pub isr: CapRegion,
    /// virtio-net has one, but the spec lets a device without configuration omit it.
    pub device: Option<CapRegion>,
    /// MSI-X Table Size (1..=2048) when the function has an MSI-X capability.
    pub msix_table_size: Option<u16>,
}

/// Longest possible list: one 4-byte capability per dword after the header.
const MAX_CAPS: usize = (256 - pci_cfg::FIRST_CAP as usize) / 4;

fn cfg8(cfg: &impl ConfigSpace, off: u16) -> Result<u8, PciError> {
    cfg.config_u8(off).ok_or(PciError::ConfigRead(off))
}
fn cfg16(cfg: &impl ConfigSpace, off: u16) -> Result<u16, PciError> {
    cfg.config_u16(off).ok_or(PciError::ConfigRead(off))
}
fn cfg32(cfg: &impl ConfigSpace, off: u16) -> Result<u32, PciError> {
    cfg.config_u32(off).ok_or(PciError::ConfigRead(off))
}

/// Walks the capability list and returns where the virtio structures are.
///
/// `bar_len(bar)` is the length of memory BAR `bar` as the adapter's resources give it (`None`
/// for a BAR the adapter does not have); the walk never sizes BARs itself, because that means
/// writing configuration space behind the bus driver's back. Following the spec, the first
/// capability of each type whose BAR index is valid (0..=5) is used and later ones are ignored.
pub fn find_capabilities(
    cfg: &impl ConfigSpace,
    bar_len: impl Fn(u8) -> Option<u64>,
) -> Result<VirtioPciCaps, PciError> {
    if cfg16(cfg, pci_cfg::STATUS)? & pci_cfg::STATUS_CAP_LIST == 0 {
        return Err(PciError::NoCapabilityList);
    }
    let mut common = None;
    let mut notify = None;
    let mut isr = None;
    let mut device = None;
    let mut msix_table_size = None;
    // One bit per dword of the 256-byte space: a second visit is a cycle.
    let mut visited = [false; 64];

    let mut ptr = cfg8(cfg, pci_cfg::CAP_PTR)? & 0xFC;
    let mut steps = 0;
    while ptr != 0 {
        if ptr < pci_cfg::FIRST_CAP {
            return Err(PciError::BadPointer(ptr));
        }
        let slot = usize::from(ptr / 4);
        if visited[slot] || steps >= MAX_CAPS {
            return Err(PciError::Cycle(ptr));
        }
        visited[slot] = true;
        steps += 1;

        let at = u16::from(ptr);
        let id = cfg8(cfg, at)?;
        let next = cfg8(cfg, at + 1)? & 0xFC;
        match id {
            pci_cfg::CAP_ID_MSIX if msix_table_size.is_none() => {
                let control = cfg16(cfg, at + 2)?;
                msix_table_size = Some((control & 0x7FF) + 1);
            }
            pci_cfg::CAP_ID_VENDOR => {
                let len = cfg8(cfg, at + 2)?;
                let ty = cfg8(cfg, at + 3)?;
                let known = matches!(
                    ty,
                    cfg_type::COMMON | cfg_type::NOTIFY | cfg_type::ISR | cfg_type::DEVICE
                );
                if known {
                    let min_len = if ty == cfg_type::NOTIFY { 20 } else { 16 };
                    if len < min_len {
                        return Err(PciError::BadCapLength { at: ptr, len });
                    }
                    let bar = cfg8(cfg, at + 4)?;
                    let region = CapRegion {
                        bar,
                        offset: cfg32(cfg, at + 8)?,
                        length: cfg32(cfg, at + 12)?,
                    };
                    // Reserved BAR values: the spec says to ignore such a capability.
                    if bar <= 5 {
                        let slot = match ty {
                            cfg_type::COMMON => &mut common,
                            cfg_type::NOTIFY => &mut notify,
                            cfg_type::ISR => &mut isr,
                            _ => &mut device,
                        };
                        if slot.is_none() {
                            check_region(ty, region, &bar_len)?;
                            let multiplier = if ty == cfg_type::NOTIFY {
                                cfg32(cfg, at + 16)?
                            } else {
                                0
                            };
                            *slot = Some((region, multiplier));
                        }
                    }
                }
            }
            _ => {}
        }
        ptr = next;
    }

    let (common, _) = common.ok_or(PciError::Missing(cfg_type::COMMON))?;
    let (notify, notify_off_multiplier) = notify.ok_or(PciError::Missing(cfg_type::NOTIFY))?;
    let (isr, _) = isr.ok_or(PciError::Missing(cfg_type::ISR))?;
    Ok(VirtioPciCaps {
        common,
        notify,
        notify_off_multiplier,
        isr,
        device: device.map(|(r, _)| r),
        msix_table_size,
    })
}

fn check_region(
    cfg_type: u8,
    r: CapRegion,
    bar_len: &impl Fn(u8) -> Option<u64>,
) -> Result<(), PciError> {
    let len = bar_len(r.bar).ok_or(PciError::NoSuchBar {
        cfg_type,
        bar: r.bar,
    })?;
    // The spec requires 4-byte aligned structures; an unaligned one would make 32-bit register
    // accesses fault, so it is refused here, as a device error.
    if u64::from(r.offset) + u64::from(r.length) > len || !r.offset.is_multiple_of(4) {
        return Err(PciError::OutsideBar {
            cfg_type,
            bar: r.bar,
            offset: r.offset,
            length: r.length,
        });
    }
    Ok(())
}

/// Why a transport operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportError {
    /// A register window is shorter than the structure it must hold.
    WindowTooSmall,
    /// After a reset, `device_status` did not return to 0 within the poll budget (a removed
    /// device reads all ones forever).
    ResetTimeout,
    /// The device does not offer `VIRTIO_F_VERSION_1`: it is legacy-only.
    NotVersion1,
    /// `FEATURES_OK` did not stick: the device rejected the feature subset. FAILED is set.
    FeaturesRejected,
    /// No such queue (index ≥ `num_queues`, or `queue_size` reads 0).
    NoSuchQueue(u16),
    /// A queue size that is 0, not a power of two, or above the device's maximum.
    BadQueueSize { queue: u16, size: u16, max: u16 },
    /// The queue's notification address lies outside the notify window.
    NotifyOutOfWindow { queue: u16 },
    /// `config_generation` kept changing while the configuration was read.
    ConfigUnstable,
}

/// The device refused an MSI-X mapping: the read-back differed from what was written (normally
/// [`NO_VECTOR`], meaning the device could not allocate the vector).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VectorRefused {
    pub requested: u16,
    pub read_back: u16,
}

/// The ISR status byte, read (and thereby cleared) once per line-based interrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsrStatus(pub u8);

impl IsrStatus {
    /// A surprise-removed device reads all ones; the interrupt is not ours to handle.
    pub fn is_device_gone(self) -> bool {
        self.0 == 0xFF
    }
    /// Nothing pending: on a shared line the interrupt belongs to another device.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// Some queue has used buffers (the device does not say which, so all are scanned).
    pub fn queue(self) -> bool {
        !self.is_device_gone() && self.0 & 1 != 0
    }
    /// The device configuration changed (link state, for virtio-net).
    pub fn config_changed(self) -> bool {
        !self.is_device_gone() && self.0 & 2 != 0
    }
}

/// A validated notification address for one queue, computed once at setup so the doorbell
/// needs no `queue_select` (which other CPUs may be using).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notifier {
    queue: u16,
    offset: usize,
}

impl Notifier {
    pub fn queue(&self) -> u16 {
        self.queue
    }
}

/// virtio-net device configuration; a field is `None` when the device-configuration window is
/// too short to hold it (its feature is then not offered either).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetConfig {
    pub mac: Option<[u8; 6]>,
    pub status: Option<u16>,
    pub max_virtqueue_pairs: Option<u16>,
    /// Largest MTU the device supports (meaningful with `VIRTIO_NET_F_MTU`).
    pub mtu: Option<u16>,
    /// `rss_max_key_size`, `rss_max_indirection_table_length` and `supported_hash_types`
    /// (meaningful with `VIRTIO_NET_F_RSS` or `VIRTIO_NET_F_HASH_REPORT`).
    pub rss: Option<RssLimits>,
}

/// What a device's RSS and hash reporting can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RssLimits {
    pub max_key_size: u8,
    pub max_indirection_table_length: u16,
    pub supported_hash_types: u32,
}

impl NetConfig {
    /// Link is up; a device without `VIRTIO_NET_F_STATUS` is always up, per the spec.
    pub fn link_up(&self, status_negotiated: bool) -> bool {
        !status_negotiated || self.status.is_some_and(|s| s & NET_S_LINK_UP != 0)
    }
}

/// Register polls granted to a reset before it counts as failed.
pub const RESET_POLLS: u32 = 10_000;
/// Re-reads of the device configuration while `config_generation` keeps moving.
const CONFIG_RETRIES: u32 = 64;

/// The modern virtio-pci transport over the four register windows the capabilities describe.
/// Each window starts at its capability's offset (the driver maps `CapRegion`s to windows).
#[derive(Debug)]
pub struct Transport<R: Registers> {
    common: R,
    notify: R,
    notify_off_multiplier: u32,
    isr: R,
    device: Option<R>,
}

impl<R: Registers> Transport<R> {
    /// Checks each window is large enough for its structure, so no later access can fall outside.
    pub fn new(
        common: R,
        notify: R,
        notify_off_multiplier: u32,
        isr: R,
        device: Option<R>,
    ) -> Result<Self, TransportError> {
        if common.len() < common::MIN_LEN || notify.len() < 2 || isr.is_empty() {
            return Err(TransportError::WindowTooSmall);
        }
        Ok(Self {
            common,
            notify,
            notify_off_multiplier,
            isr,
            device,
        })
    }

    /// Resets the device, which also unmaps every MSI-X vector and stops all queues; `wait` is
    /// called between polls (a stall of a few microseconds in the kernel).
    pub fn reset(&self, mut wait: impl FnMut()) -> Result<(), TransportError> {
        self.common.write8(common::DEVICE_STATUS, 0);
        for _ in 0..RESET_POLLS {
            if self.common.read8(common::DEVICE_STATUS) == 0 {
                return Ok(());
            }
            wait();
        }
        Err(TransportError::ResetTimeout)
    }

    pub fn status(&self) -> u8 {
        self.common.read8(common::DEVICE_STATUS)
    }

    /// Sets `bits` in addition to those already set (the spec has the driver add bits one step at
    /// a time; writing 0 is reserved for reset).
    pub fn add_status(&self, bits: u8) {
        let s = self.status();
        self.common.write8(common::DEVICE_STATUS, s | bits);
    }

    /// The device wants a reset (it hit an error it cannot recover from).
    pub fn needs_reset(&self) -> bool {
        self.status() & status::NEEDS_RESET != 0
    }

    pub fn device_features(&self) -> u64 {
        self.common.write32(common::DEVICE_FEATURE_SELECT, 0);
        let lo = self.common.read32(common::DEVICE_FEATURE);
        self.common.write32(common::DEVICE_FEATURE_SELECT, 1);
        let hi = self.common.read32(common::DEVICE_FEATURE);
        u64::from(lo) | (u64::from(hi) << 32)
    }

    pub fn set_driver_features(&self, f: u64) {
        self.common.write32(common::DRIVER_FEATURE_SELECT, 0);
        self.common.write32(common::DRIVER_FEATURE, f as u32);
        self.common.write32(common::DRIVER_FEATURE_SELECT, 1);
        self.common
            .write32(common::DRIVER_FEATURE, (f >> 32) as u32);
    }

    /// Accepts `device_features & supported`, sets FEATURES_OK and reads it back; the device
    /// clears it when it cannot work with the subset, and then FAILED is set (the spec's "the
    /// device is unusable"). Returns the negotiated features. Call after ACKNOWLEDGE | DRIVER.
    pub fn negotiate_features(&self, supported: u64) -> Result<u64, TransportError> {
        self.negotiate_features_with(supported, |f| f)
    }

    /// As [`negotiate_features`](Self::negotiate_features); `consistent` then removes bits
    /// whose dependencies did not make it (device-type rules the transport does not know).
    pub fn negotiate_features_with(
        &self,
        supported: u64,
        consistent: impl Fn(u64) -> u64,
    ) -> Result<u64, TransportError> {
        let offered = self.device_features();
        if offered & features::VERSION_1 == 0 {
            self.add_status(status::FAILED);
            return Err(TransportError::NotVersion1);
        }
        let accepted = consistent(offered & supported);
        self.set_driver_features(accepted);
        self.add_status(status::FEATURES_OK);
        if self.status() & status::FEATURES_OK == 0 {
            self.add_status(status::FAILED);
            return Err(TransportError::FeaturesRejected);
        }
        Ok(accepted)
    }

    pub fn num_queues(&self) -> u16 {
        self.common.read16(common::NUM_QUEUES)
    }

    fn select(&self, queue: u16) -> Result<(), TransportError> {
        if queue >= self.num_queues() {
            return Err(TransportError::NoSuchQueue(queue));
        }
        self.common.write16(common::QUEUE_SELECT, queue);
        Ok(())
    }

    /// The largest size the device supports for `queue` (0 means the queue is unavailable).
    pub fn queue_max_size(&self, queue: u16) -> Result<u16, TransportError> {
        self.select(queue)?;
        Ok(self.common.read16(common::QUEUE_SIZE))
    }

    /// Programs size and ring addresses of `queue` (not yet enabled) and returns its validated
    /// notification address. `size` may be smaller than the device's maximum but must be a power
    /// of two, because the split ring indexes modulo the size.
    pub fn setup_queue(
        &self,
        queue: u16,
        size: u16,
        desc: u64,
        driver: u64,
        device: u64,
    ) -> Result<Notifier, TransportError> {
        let max = self.queue_max_size(queue)?;
        if max == 0 {
            return Err(TransportError::NoSuchQueue(queue));
        }
        if size == 0 || !size.is_power_of_two() || size > max {
            return Err(TransportError::BadQueueSize { queue, size, max });
        }
        let notifier = self.notifier_selected(queue)?;
        self.common.write16(common::QUEUE_SIZE, size);
        self.write64(common::QUEUE_DESC, desc);
        self.write64(common::QUEUE_DRIVER, driver);
        self.write64(common::QUEUE_DEVICE, device);
        Ok(notifier)
    }

    /// The notification address of `queue`, for a queue set up before (e.g. after a restart).
    pub fn notifier(&self, queue: u16) -> Result<Notifier, TransportError> {
        self.select(queue)?;
        self.notifier_selected(queue)
    }

    fn notifier_selected(&self, queue: u16) -> Result<Notifier, TransportError> {
        let off = u64::from(self.common.read16(common::QUEUE_NOTIFY_OFF))
            * u64::from(self.notify_off_multiplier);
        match usize::try_from(off) {
            Ok(offset)
                if offset.is_multiple_of(2)
                    && offset
                        .checked_add(2)
                        .is_some_and(|end| end <= self.notify.len()) =>
            {
                Ok(Notifier { queue, offset })
            }
            _ => Err(TransportError::NotifyOutOfWindow { queue }),
        }
    }

    fn write64(&self, off: usize, v: u64) {
        self.common.write32(off, v as u32);
        self.common.write32(off + 4, (v >> 32) as u32);
    }

    /// Lets the device use `queue`; its vector must be programmed before.
    pub fn enable_queue(&self, queue: u16) -> Result<(), TransportError> {
        self.select(queue)?;
        self.common.write16(common::QUEUE_ENABLE, 1);
        Ok(())
    }

    pub fn queue_enabled(&self, queue: u16) -> Result<bool, TransportError> {
        self.select(queue)?;
        Ok(self.common.read16(common::QUEUE_ENABLE) != 0)
    }

    pub fn config_msix_vector(&self) -> u16 {
        self.common.read16(common::CONFIG_MSIX_VECTOR)
    }

    /// Maps configuration-change events to MSI-X `vector` ([`NO_VECTOR`] to unmap); the device
    /// reports a failed mapping only through the read-back.
    pub fn set_config_vector(&self, vector: u16) -> Result<(), VectorRefused> {
        self.common.write16(common::CONFIG_MSIX_VECTOR, vector);
        check_vector(vector, self.config_msix_vector())
    }

    /// Maps `queue`'s used-buffer notifications to MSI-X `vector`, checked by read-back. A queue
    /// that does not exist is reported as refused, with `read_back` [`NO_VECTOR`].
    pub fn set_queue_vector(&self, queue: u16, vector: u16) -> Result<(), VectorRefused> {
        if self.select(queue).is_err() {
            return Err(VectorRefused {
                requested: vector,
                read_back: NO_VECTOR,
            });
        }
        self.common.write16(common::QUEUE_MSIX_VECTOR, vector);
        check_vector(vector, self.common.read16(common::QUEUE_MSIX_VECTOR))
    }

    /// Rings `queue`'s doorbell (without `VIRTIO_F_NOTIFICATION_DATA` the value is the index).
    pub fn notify(&self, n: &Notifier) {
        self.notify.write16(n.offset, n.queue);
    }

    /// The ISR-status window, for a line-based ISR that must read it without the transport.
    pub fn isr_window(&self) -> &R {
        &self.isr
    }

    /// Reads and thereby clears the ISR status (and de-asserts INTx). Only for line-based
    /// interrupts and configuration changes: with MSI-X the queue bit is not used.
    pub fn isr(&self) -> IsrStatus {
        IsrStatus(self.isr.read8(0))
    }

    pub fn config_generation(&self) -> u8 {
        self.common.read8(common::CONFIG_GENERATION)
    }

    /// Runs `read` until `config_generation` is the same before and after, so a multi-field read
    /// is never torn by a concurrent configuration change.
    pub fn read_config_consistent<T>(
        &self,
        mut read: impl FnMut() -> T,
    ) -> Result<T, TransportError> {
        for _ in 0..CONFIG_RETRIES {
            let before = self.config_generation();
            let value = read();
            if self.config_generation() == before {
                return Ok(value);
            }
        }
        Err(TransportError::ConfigUnstable)
    }

    /// Reads the virtio-net configuration (MAC, status, max_virtqueue_pairs) consistently.
    pub fn net_config(&self) -> Result<NetConfig, TransportError> {
        let Some(dev) = &self.device else {
            return Ok(NetConfig {
                mac: None,
                status: None,
                max_virtqueue_pairs: None,
                mtu: None,
                rss: None,
            });
        };
        let len = dev.len();
        self.read_config_consistent(|| NetConfig {
            mac: (len >= 6).then(|| core::array::from_fn(|i| dev.read8(i))),
            status: (len >= 8).then(|| dev.read16(6)),
            max_virtqueue_pairs: (len >= 10).then(|| dev.read16(8)),
            mtu: (len >= 12).then(|| dev.read16(10)),
            rss: (len >= 24).then(|| RssLimits {
                max_key_size: dev.read8(17),
                max_indirection_table_length: dev.read16(18),
                supported_hash_types: dev.read32(20),
            }),
        })
    }
}

fn check_vector(requested: u16, read_back: u16) -> Result<(), VectorRefused> {
    if read_back == requested {
        Ok(())
    } else {
        Err(VectorRefused {
            requested,
            read_back,
        })
    }
}
