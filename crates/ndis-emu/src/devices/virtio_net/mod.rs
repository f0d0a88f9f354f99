//! A virtio-net device (virtio 1.x over the modern PCI transport, 1AF4:1041) for driver tests.
//!
//! The register file follows the virtio spec ("Virtio Over PCI Bus") and QEMU's layout (see
//! [`regs`]); the device side of every virtqueue is a `virtio_queue::Queue` over the emulator's
//! guest memory ([`Bus::memory`]), so rings are parsed by code that was not written for our driver.
//! A test is the network: it injects frames ([`VirtioNet::inject_frame`]), reads what the driver
//! transmitted ([`VirtioNet::transmitted_frames`]), loops TX back to RX, captures to pcap, drops
//! the link, and flips misbehaviour switches (surprise removal, refused vector mappings, a used
//! index past the ring, a stalled queue). It completes TX checksums, segments TCP packets as a
//! Linux host does (TSO), and validates or hands over partial RX checksums
//! ([`VirtioNet::set_rx_checksum`], [`RxChecksum`]).
//!
//! Garbage from the driver (addresses outside memory, malformed chains, impossible lengths,
//! indirect tables against the spec's rules) never panics the model: it sets
//! DEVICE_NEEDS_RESET, stops processing and records why ([`VirtioNet::device_error`]), as the
//! spec allows a device to do. Rules the device survives
//! (a notification before DRIVER_OK) are listed by [`VirtioNet::driver_errors`] for tests to
//! assert on.

mod checksum;
mod gso;
mod pcap;
pub mod regs;
pub mod rss;

use std::collections::VecDeque;
use std::io;
use std::path::Path;

use virtio_queue::desc::split::Descriptor;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::pci::{
    BarInfo, Bus, CONFIG_SPACE_SIZE, InterruptMode, MsixSignal, MsixTable, PciFunction, all_ones,
};
use regs::{NO_VECTOR, common, ctrl, feature, status};
pub use rss::RssConfig;

/// The features offered unless the test chooses: what our reference driver and `virtio-drivers`
/// both understand, plus the offloads QEMU offers by default (CSUM, GUEST_CSUM, HOST_TSO4,
/// HOST_TSO6), which a driver may leave alone. MRG_RXBUF is left out on purpose: with VERSION_1
/// the header is 12 bytes either way, and one buffer per frame keeps RX completions one-to-one.
pub const DEFAULT_FEATURES: u64 = feature::VERSION_1
    | feature::CSUM
    | feature::GUEST_CSUM
    | feature::HOST_TSO4
    | feature::HOST_TSO6
    | feature::HOST_ECN
    | feature::MAC
    | feature::STATUS
    | feature::MTU
    | feature::MQ
    | feature::CTRL_VQ
    | feature::CTRL_RX
    | feature::CTRL_MAC_ADDR
    | feature::RING_EVENT_IDX
    | feature::RING_INDIRECT_DESC;

/// Features the model implements; a test may offer any subset. ACCESS_PLATFORM is not offered
/// by default (QEMU offers it only with `iommu_platform=on`); offered, it must be accepted
/// (virtio 1.2, 6.1: a device MAY fail to operate further if it is not).
/// RSS and HASH_REPORT are not offered by default either (QEMU: `rss=off`, `hash=off`).
const IMPLEMENTED: u64 = DEFAULT_FEATURES
    | feature::RING_RESET
    | feature::ACCESS_PLATFORM
    | feature::RSS
    | feature::HASH_REPORT;

/// Largest TX frame accepted behind its header (64 KiB), a GSO packet included; more is a
/// driver bug.
const MAX_TX_FRAME: usize = 65_536;
/// Largest control command accepted (a MAC table of ~10 000 entries).
const MAX_CTRL_CHAIN: usize = 65_536;

/// Feature dependencies (virtio 1.2, 5.1.3.1): a driver that accepts the first feature must
/// accept at least one of the second; otherwise FEATURES_OK does not stick.
const FEATURE_DEPENDENCIES: [(u64, u64); 5] = [
    (feature::RSS, feature::CTRL_VQ),
    (feature::HASH_REPORT, feature::CTRL_VQ),
    (feature::HOST_TSO4, feature::CSUM),
    (feature::HOST_TSO6, feature::CSUM),
    (feature::HOST_ECN, feature::HOST_TSO4 | feature::HOST_TSO6),
];

/// How the device is built.
#[derive(Debug, Clone)]
pub struct VirtioNetConfig {
    pub mac: [u8; 6],
    /// Queue pairs the device offers (`max_virtqueue_pairs`), 1..=256.
    pub queue_pairs: u16,
    /// Maximum size of every queue (a power of two, 1..=32768).
    pub queue_size: u16,
    /// Entries of the MSI-X table, 0..=2048 (0: no MSI-X capability, a line-only function).
    /// QEMU's default for `mq=on` is 2N+2.
    pub msix_vectors: u16,
    /// Feature bits offered (see [`DEFAULT_FEATURES`]; VERSION_1 must be among them).
    pub features: u64,
    pub mtu: u16,
    /// Link state at power-on.
    pub link_up: bool,
    /// `rss_max_key_size` (the spec asks for at least 40 with RSS).
    pub rss_max_key_size: u8,
    /// `rss_max_indirection_table_length` (at least 128 with RSS).
    pub rss_max_indirection_table_length: u16,
    /// `supported_hash_types` (`rss::hash_type`; at most [`rss::hash_type::SUPPORTED`]).
    pub supported_hash_types: u32,
}

impl VirtioNetConfig {
    /// A device with `queue_pairs` pairs and QEMU's defaults otherwise (2N+2 vectors, 256-entry
    /// queues, link up).
    pub fn new(queue_pairs: u16) -> Self {
        VirtioNetConfig {
            mac: [0x52, 0x54, 0x00, 0x12, 0x34, 0x56],
            queue_pairs,
            queue_size: 256,
            msix_vectors: 2 * queue_pairs + 2,
            features: DEFAULT_FEATURES,
            mtu: 1500,
            link_up: true,
            rss_max_key_size: 40,
            rss_max_indirection_table_length: 128,
            supported_hash_types: rss::hash_type::SUPPORTED,
        }
    }
}

impl Default for VirtioNetConfig {
    fn default() -> Self {
        Self::new(1)
    }
}

/// Which vector mappings the device refuses (reads back [`NO_VECTOR`]), on top of the entries
/// outside the MSI-X table, which are always refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VectorRefusal {
    #[default]
    None,
    /// Every mapping, config and queues.
    All,
    /// Every vector >= this one.
    AtOrAbove(u16),
}

/// What the device tells the driver about received checksums once GUEST_CSUM is negotiated
/// (without it every RX header has flags 0). Frames the model can vouch for are Ethernet, at
/// most one 802.1Q tag, IPv4 (not a fragment) or IPv6 (no extension headers), TCP or UDP, with a
/// checksum that verifies (UDP over IPv4 without a checksum does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RxChecksum {
    /// Such frames are marked DATA_VALID, as a NIC that checked them; others get flags 0.
    #[default]
    Validate,
    /// Such frames arrive as a host delivers locally generated packets: NEEDS_CSUM, the
    /// checksum field holding the pseudo-header sum, `csum_start` at the TCP/UDP header,
    /// `csum_offset` 16 (TCP) or 6 (UDP). Frames that do not qualify (or whose non-zero Ethernet
    /// padding would spoil the driver's completion) are handled as in `Validate`.
    Partial,
    /// flags 0 for every frame: the driver checks everything itself.
    Off,
    /// Misbehaviour: every frame arrives unchanged under a header claiming `flags`,
    /// `csum_start` and `csum_offset`, whatever the frame is (a start or offset past its end, a
    /// DATA_VALID for a frame that is not TCP/UDP). The driver must not read or write outside
    /// the buffer for it, nor lose the frame.
    Forged {
        flags: u8,
        csum_start: u16,
        csum_offset: u16,
    },
}

/// What the device did, for assertions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Doorbell writes per queue.
    pub notifications: Vec<u64>,
    /// Messages raised per MSI-X table entry.
    pub message_interrupts: Vec<u64>,
    /// Times the line was asserted.
    pub line_interrupts: u64,
    /// Interrupts that went nowhere: NO_VECTOR, a vector outside the table, or a message the
    /// platform did not grant.
    pub lost_interrupts: u64,
    /// Interrupts held in the PBA because their vector was masked.
    pub masked_interrupts: u64,
    /// Used-buffer notifications the driver suppressed (NO_INTERRUPT flag or event index).
    pub suppressed_interrupts: u64,
    /// Configuration-change notifications (link changes, NEEDS_RESET).
    pub config_interrupts: u64,
    /// Frames dropped because the posted RX buffer was too small for header + frame.
    pub rx_dropped: u64,
    /// Doorbell writes before DRIVER_OK (each also listed in `driver_errors()`).
    pub early_notifications: u64,
    /// Frames written into RX buffers, per queue pair.
    pub rx_delivered: Vec<u64>,
    /// TX frames whose partial checksum (NEEDS_CSUM) the device completed (GSO segments are
    /// counted in `tx_gso_segments` instead).
    pub tx_checksummed: u64,
    /// TX packets the device segmented (`gso_type` TCPV4 or TCPV6).
    pub tx_gso_packets: u64,
    /// Segments those packets became, each a frame on the wire.
    pub tx_gso_segments: u64,
    /// RX frames delivered marked DATA_VALID.
    pub rx_data_valid: u64,
    /// RX frames delivered with a partial checksum (NEEDS_CSUM).
    pub rx_partial: u64,
    /// ISR status reads.
    pub isr_reads: u64,
    /// RX frames delivered with a hash report other than NONE (HASH_REPORT negotiated).
    pub rx_hash_reported: u64,
    /// Frames from [`VirtioNet::inject_from_wire`] the RSS table steered (the rest went to the
    /// unclassified queue or, without RSS in force, to the automatic choice).
    pub rx_rss_steered: u64,
    /// Doorbell writes while DRIVER_OK was gone because the *device* reset itself or cleared it
    /// ([`VirtioNet::reset_by_device`], [`VirtioNet::clear_driver_ok`]), before the driver
    /// reset it: not a driver error (the driver cannot know at once), but a driver that noticed
    /// should ring no more.
    pub notifications_after_device_reset: u64,
}

/// One command the control queue carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlCommand {
    pub class: u8,
    pub command: u8,
    pub data: Vec<u8>,
    /// What the device answered ([`regs::ctrl::OK`] or [`regs::ctrl::ERR`]).
    pub ack: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Rx(usize),
    Tx(usize),
    Control,
    Unused,
}

struct Slot {
    queue: Queue,
    vector: u16,
    enabled: bool,
    /// `queue_reset` reads 1 from a per-queue reset until the queue is enabled again.
    reset_done: bool,
    /// Ring addresses as the driver wrote them (read back verbatim; applied at enable).
    desc: u64,
    driver: u64,
    device: u64,
    stalled: bool,
    jump_used_index: bool,
}

impl Slot {
    fn new(size: u16) -> Self {
        Slot {
            queue: Queue::new(size).expect("queue size checked by the constructor"),
            vector: NO_VECTOR,
            enabled: false,
            reset_done: false,
            desc: 0,
            driver: 0,
            device: 0,
            stalled: false,
            jump_used_index: false,
        }
    }

    fn reset(&mut self) {
        self.queue.reset();
        self.vector = NO_VECTOR;
        self.enabled = false;
        self.reset_done = false;
        self.desc = 0;
        self.driver = 0;
        self.device = 0;
    }
}

#[derive(Default)]
struct Pair {
    backlog: VecDeque<Vec<u8>>,
    transmitted: Vec<Vec<u8>>,
}

/// The device. Attach it with `Emulator::add_adapter_with(resources, Box::new(VirtioNet::new(..)))`
/// and reach it with `emu.with_device::<VirtioNet, _>(emu.device_of(adapter), |net, bus| ..)`.
pub struct VirtioNet {
    cfg: VirtioNetConfig,
    config_space: [u8; CONFIG_SPACE_SIZE],
    /// The real configuration space while surprise removal shows all-ones.
    hidden_config: Option<[u8; CONFIG_SPACE_SIZE]>,
    device_feature_select: u32,
    driver_feature_select: u32,
    driver_features: u64,
    status: u8,
    config_generation: u8,
    config_vector: u16,
    queue_select: u16,
    queues: Vec<Slot>,
    isr: u8,
    link_up: bool,
    active_pairs: u16,
    pairs: Vec<Pair>,
    /// The MSI-X table and PBA in [`regs::MSIX_BAR`] (`None` without the capability).
    msix: Option<MsixTable>,
    loopback: bool,
    /// What RX headers say about checksums when GUEST_CSUM is negotiated (a test switch: it
    /// survives device resets).
    rx_checksum: RxChecksum,
    refusal: VectorRefusal,
    /// Every control command is answered ERR (a misbehaviour switch).
    refuse_control: bool,
    removed: bool,
    counters: Counters,
    control_log: Vec<ControlCommand>,
    promiscuous: bool,
    all_multicast: bool,
    /// The receive address the driver set (`MAC_ADDR_SET`), if any.
    mac_address_set: Option<[u8; 6]>,
    /// The last accepted `MAC_TABLE_SET`.
    mac_table: MacTables,
    pcap: Option<pcap::PcapWriter>,
    error: Option<String>,
    /// Rules the driver broke that the device survives (it ignores what the driver did):
    /// kept across resets, for the test to assert on.
    driver_errors: Vec<String>,
    /// The `len` of every TX used entry (0 as the spec asks; a test switch: it survives resets).
    tx_used_len: u32,
    /// The device itself reset or dropped DRIVER_OK; cleared when the driver writes status 0.
    unprompted_reset: bool,
    /// While on, FEATURES_OK never sticks (a test switch: it survives resets).
    refuse_features_ok: bool,
    /// The RSS or hash configuration in force (`RSS_CONFIG`, `HASH_CONFIG`); None: automatic
    /// steering without hashes.
    rss: Option<RssConfig>,
    rss_refusals: Vec<String>,
    /// XORed into every reported hash value (a misbehaviour switch; 0: the true hash).
    hash_xor: u32,
    /// Reused for every chain the queues hand over, so that moving a frame allocates only the
    /// frame itself (the model runs on every test's and benchmark's datapath).
    scratch: Scratch,
}

/// Buffers the queue handlers reuse.
#[derive(Default)]
struct Scratch {
    chain: Vec<Descriptor>,
    /// A TX chain's bytes; an RX frame delivered with a partial checksum.
    bytes: Vec<u8>,
}

impl VirtioNet {
    /// Panics on a configuration no real device could have (a test bug, not a driver's).
    pub fn new(cfg: VirtioNetConfig) -> Self {
        assert!(
            (1..=256).contains(&cfg.queue_pairs),
            "queue_pairs must be 1..=256 (the notify region holds 1024 doorbells)"
        );
        assert!(
            cfg.queue_size.is_power_of_two() && cfg.queue_size <= 32768,
            "queue_size must be a power of two <= 32768"
        );
        assert!(
            cfg.msix_vectors <= 2048,
            "MSI-X tables hold at most 2048 entries"
        );
        assert!(
            cfg.features & feature::VERSION_1 != 0 && cfg.features & !IMPLEMENTED == 0,
            "features must include VERSION_1 and only bits the model implements: {:#x}",
            IMPLEMENTED
        );
        let queue_count =
            2 * cfg.queue_pairs as usize + usize::from(cfg.features & feature::CTRL_VQ != 0);
        let vectors = cfg.msix_vectors as usize;
        VirtioNet {
            config_space: regs::config_space(cfg.msix_vectors),
            hidden_config: None,
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            status: 0,
            config_generation: 0,
            config_vector: NO_VECTOR,
            queue_select: 0,
            queues: (0..queue_count)
                .map(|_| Slot::new(cfg.queue_size))
                .collect(),
            isr: 0,
            link_up: cfg.link_up,
            active_pairs: 1,
            pairs: (0..cfg.queue_pairs).map(|_| Pair::default()).collect(),
            msix: (vectors > 0).then(|| {
                MsixTable::new(cfg.msix_vectors, 0, regs::msix_layout(cfg.msix_vectors).0)
            }),
            loopback: false,
            rx_checksum: RxChecksum::default(),
            refusal: VectorRefusal::None,
            refuse_control: false,
            removed: false,
            counters: Counters {
                notifications: vec![0; queue_count],
                message_interrupts: vec![0; vectors],
                rx_delivered: vec![0; cfg.queue_pairs as usize],
                ..Counters::default()
            },
            control_log: Vec::new(),
            promiscuous: false,
            all_multicast: false,
            mac_address_set: None,
            mac_table: (Vec::new(), Vec::new()),
            pcap: None,
            scratch: Scratch::default(),
            error: None,
            driver_errors: Vec::new(),
            tx_used_len: 0,
            unprompted_reset: false,
            refuse_features_ok: false,
            rss: None,
            rss_refusals: Vec::new(),
            hash_xor: 0,
            cfg,
        }
    }

    // ---- test-facing API ----

    /// A frame arrives from the network for queue pair `pair`: it waits in that pair's backlog
    /// until the driver has posted an RX buffer, then is written (header + frame) and completed.
    pub fn inject_frame(&mut self, bus: &mut Bus<'_>, pair: u16, frame: &[u8]) {
        self.inject_frames(bus, pair, &[frame]);
    }

    /// A burst of frames arriving on queue pair `pair` at once: written into posted RX buffers
    /// in order (behind any backlog), the rest kept as backlog, with one notification decision
    /// for the burst, as a NIC that processes what arrived together.
    pub fn inject_frames(&mut self, bus: &mut Bus<'_>, pair: u16, frames: &[&[u8]]) {
        assert!(pair < self.cfg.queue_pairs, "no queue pair {pair}");
        let p = pair as usize;
        let mut incoming = frames;
        if self.pairs[p].backlog.is_empty() {
            // Straight from the caller's bytes into the buffers; only what does not fit is
            // copied into the backlog.
            self.run_queue_with(bus, 2 * p, &mut incoming);
            self.pairs[p]
                .backlog
                .extend(incoming.iter().map(|f| f.to_vec()));
        } else {
            self.pairs[p]
                .backlog
                .extend(incoming.iter().map(|f| f.to_vec()));
            self.run_queue(bus, 2 * p);
        }
    }

    /// Frames arriving from the network without a queue named: the device steers each one. With
    /// RSS in force (`RSS_CONFIG`) a frame goes to the receive queue its hash picks from the
    /// indirection table (the unclassified queue when no enabled type applies); otherwise
    /// automatic steering, which here is a hash of the frame's addresses and ports (the model's
    /// choice: one flow, one queue) modulo the active pairs. Frames for one pair keep their
    /// order, and each pair's share is one burst.
    pub fn inject_from_wire(&mut self, bus: &mut Bus<'_>, frames: &[&[u8]]) {
        let mut per_pair: Vec<Vec<&[u8]>> = vec![Vec::new(); self.cfg.queue_pairs as usize];
        for &f in frames {
            let pair = match self.rss.as_ref().filter(|c| c.steers()) {
                Some(c) => {
                    let hash = rss::hash(f, c.hash_types, &c.key);
                    if hash.is_some() {
                        self.counters.rx_rss_steered += 1;
                    }
                    c.queue_for(hash)
                }
                None => {
                    let all = rss::hash_type::SUPPORTED;
                    let h = rss::hash(f, all, &[0x5a; 40]).map_or(0, |(v, _)| v);
                    (h % u32::from(self.active_pairs.max(1))) as u16
                }
            };
            per_pair[usize::from(pair)].push(f);
        }
        for (p, fs) in per_pair.iter().enumerate() {
            if !fs.is_empty() {
                self.inject_frames(bus, p as u16, fs);
            }
        }
    }

    /// The RSS or hash configuration the device holds (None: automatic steering, no hashes).
    pub fn rss_config(&self) -> Option<&RssConfig> {
        self.rss.as_ref()
    }

    /// Why the device refused each `RSS_CONFIG` or `HASH_CONFIG` it answered ERR (kept across
    /// resets).
    pub fn rss_refusals(&self) -> &[String] {
        &self.rss_refusals
    }

    /// A device that reports wrong hashes: `xor` is XORed into every `hash_value` from now on
    /// (0: the truth again). Steering still uses the true hash. Survives resets.
    pub fn forge_hash_values(&mut self, xor: u32) {
        self.hash_xor = xor;
    }

    /// Frames the driver transmitted on queue pair `pair`, header stripped, in order.
    pub fn transmitted_frames(&self, pair: u16) -> &[Vec<u8>] {
        &self.pairs[pair as usize].transmitted
    }

    /// Takes (and forgets) what [`transmitted_frames`](Self::transmitted_frames) holds.
    pub fn take_transmitted(&mut self, pair: u16) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.pairs[pair as usize].transmitted)
    }

    /// Injected frames not yet written into an RX buffer.
    pub fn rx_backlog(&self, pair: u16) -> usize {
        self.pairs[pair as usize].backlog.len()
    }

    /// Every transmitted frame also arrives on the same pair's RX queue.
    pub fn set_loopback(&mut self, on: bool) {
        self.loopback = on;
    }

    /// How RX headers report checksums once the driver negotiated GUEST_CSUM (default
    /// [`RxChecksum::Validate`]); applies to frames delivered from now on.
    pub fn set_rx_checksum(&mut self, mode: RxChecksum) {
        self.rx_checksum = mode;
    }

    /// Writes a classic pcap capture of every frame transmitted and received to `path`.
    pub fn capture_to(&mut self, path: &Path) -> io::Result<()> {
        self.capture_to_writer(Box::new(io::BufWriter::new(std::fs::File::create(path)?)))
    }

    /// As [`capture_to`](Self::capture_to), into any sink.
    pub fn capture_to_writer(&mut self, out: Box<dyn io::Write>) -> io::Result<()> {
        self.pcap = Some(pcap::PcapWriter::new(out)?);
        Ok(())
    }

    /// Changes the link: updates the `status` field, bumps `config_generation` and sends a
    /// configuration-change notification (once the driver is running).
    pub fn set_link(&mut self, bus: &mut Bus<'_>, up: bool) {
        if self.link_up == up {
            return;
        }
        self.link_up = up;
        self.config_generation = self.config_generation.wrapping_add(1);
        if self.status & status::DRIVER_OK != 0 {
            self.signal_config(bus);
        }
    }

    pub fn link_up(&self) -> bool {
        self.link_up
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The device status register.
    pub fn status(&self) -> u8 {
        self.status
    }

    /// Why the device set DEVICE_NEEDS_RESET, if it did.
    pub fn device_error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Spec rules the driver broke that the device ignores rather than failing on (a
    /// notification before DRIVER_OK, naming the queue), in order, since the device was built.
    pub fn driver_errors(&self) -> &[String] {
        &self.driver_errors
    }

    /// The features the driver accepted (meaningful once FEATURES_OK stuck).
    pub fn negotiated_features(&self) -> u64 {
        self.driver_features
    }

    /// Queue pairs in use (1 until the driver sends VQ_PAIRS_SET).
    pub fn active_queue_pairs(&self) -> u16 {
        self.active_pairs
    }

    /// The MSI-X vector queue `queue` is mapped to.
    pub fn queue_vector(&self, queue: u16) -> u16 {
        self.queues
            .get(queue as usize)
            .map_or(NO_VECTOR, |s| s.vector)
    }

    pub fn config_vector(&self) -> u16 {
        self.config_vector
    }

    /// Commands the control queue carried, with the device's answers.
    pub fn control_log(&self) -> &[ControlCommand] {
        &self.control_log
    }

    /// The RX mode the driver set (`VIRTIO_NET_CTRL_RX`). The model records it and the MAC
    /// table; it does not filter what it delivers by them.
    pub fn promiscuous(&self) -> bool {
        self.promiscuous
    }

    pub fn all_multicast(&self) -> bool {
        self.all_multicast
    }

    /// The receive address the driver set with `VIRTIO_NET_CTRL_MAC_ADDR_SET` (None: the
    /// configuration-space MAC).
    pub fn mac_address_set(&self) -> Option<[u8; 6]> {
        self.mac_address_set
    }

    /// (unicast, multicast) addresses of the last accepted `VIRTIO_NET_CTRL_MAC_TABLE_SET`.
    pub fn mac_table(&self) -> (&[[u8; 6]], &[[u8; 6]]) {
        (&self.mac_table.0, &self.mac_table.1)
    }

    /// Surprise removal: every register and configuration-space read returns all-ones (the
    /// ISR byte 0xFF), writes are dropped, nothing is processed or interrupts. Switching it off
    /// puts the device back as it was.
    pub fn set_surprise_removed(&mut self, removed: bool) {
        if removed == self.removed {
            return;
        }
        self.removed = removed;
        if removed {
            self.hidden_config = Some(self.config_space);
            self.config_space = [0xFF; CONFIG_SPACE_SIZE];
        } else if let Some(c) = self.hidden_config.take() {
            self.config_space = c;
        }
    }

    /// An internal device error (virtio 1.x 2.1.2): DEVICE_NEEDS_RESET is set, the device stops
    /// processing, and a running driver gets a configuration-change notification.
    pub fn fail_device(&mut self, bus: &mut Bus<'_>, why: &str) {
        self.fail(bus, why.to_string());
    }

    /// The device resets itself, as a hypervisor resetting the function would: status 0, every
    /// queue disabled with its rings forgotten, MSI-X mappings and control-queue state (filters,
    /// MAC, queue pairs) gone; frames waiting in the backlogs stay. With `notify`, a
    /// configuration-change interrupt announces it: the ISR config bit and the line, or a
    /// message on the vector the configuration had before the reset.
    pub fn reset_by_device(&mut self, bus: &mut Bus<'_>, notify: bool) {
        let vector = self.config_vector;
        self.reset();
        bus.set_line(false); // the ISR status is 0 again
        self.unprompted_reset = true;
        if notify && !self.removed {
            self.counters.config_interrupts += 1;
            self.isr |= regs::ISR_CONFIG;
            match bus.interrupt_mode() {
                InterruptMode::Messages(_) => self.send_vector(bus, vector),
                InterruptMode::Line | InterruptMode::None => self.assert_line(bus),
            }
        }
    }

    /// The device sets DEVICE_NEEDS_RESET and stops processing, as
    /// [`fail_device`](Self::fail_device) does, with a configuration-change notification only
    /// if `notify` (and the driver is running): a device that does not say so is found by
    /// polling.
    pub fn set_needs_reset(&mut self, bus: &mut Bus<'_>, notify: bool) {
        if self.status & status::DEVICE_NEEDS_RESET != 0 {
            return;
        }
        self.status |= status::DEVICE_NEEDS_RESET;
        self.error = Some("DEVICE_NEEDS_RESET set by the test".to_string());
        if notify && self.status & status::DRIVER_OK != 0 {
            self.signal_config(bus);
        }
    }

    /// The device clears DRIVER_OK from its status (queues and mappings stay, nothing is
    /// processed), with a configuration-change notification if `notify`.
    pub fn clear_driver_ok(&mut self, bus: &mut Bus<'_>, notify: bool) {
        if self.status & status::DRIVER_OK == 0 {
            return;
        }
        self.status &= !status::DRIVER_OK;
        self.unprompted_reset = true;
        if notify {
            self.signal_config(bus);
        }
    }

    /// While on, FEATURES_OK does not stick, whatever the driver accepted (a device that can no
    /// longer be brought up). Survives resets.
    pub fn refuse_features_ok(&mut self, on: bool) {
        self.refuse_features_ok = on;
    }

    /// Changes the features offered from the next read of `device_feature` on (a device that
    /// comes back from a reset offering less). `CTRL_VQ` must not change: it decides the
    /// number of queues.
    pub fn set_offered_features(&mut self, features: u64) {
        assert!(
            features & feature::VERSION_1 != 0 && features & !IMPLEMENTED == 0,
            "features must include VERSION_1 and only bits the model implements"
        );
        assert_eq!(
            features & feature::CTRL_VQ,
            self.cfg.features & feature::CTRL_VQ,
            "CTRL_VQ decides the queue count and cannot change"
        );
        self.cfg.features = features;
    }

    /// While on, every control-queue command is answered `VIRTIO_NET_ERR` and changes nothing.
    pub fn refuse_control_commands(&mut self, on: bool) {
        self.refuse_control = on;
    }

    /// Which vector mappings to refuse from now on (existing mappings stay).
    pub fn refuse_vectors(&mut self, refusal: VectorRefusal) {
        self.refusal = refusal;
    }

    /// While on, every completion on `queue` publishes a used index queue-size + 1 past the
    /// truth, as a broken device would.
    pub fn set_used_index_jump(&mut self, queue: u16, on: bool) {
        self.queues[queue as usize].jump_used_index = on;
    }

    /// Every TX chain is completed with used length `len` instead of 0 (virtio 1.2, 2.7.8: the
    /// device wrote nothing into a device-readable chain, so 0 is right; drivers must cope with
    /// devices that report more). Survives device resets.
    pub fn set_tx_used_length(&mut self, len: u32) {
        self.tx_used_len = len;
    }

    /// A stalled queue is neither consumed nor completed; un-stalling processes what piled up.
    pub fn set_stalled(&mut self, bus: &mut Bus<'_>, queue: u16, stalled: bool) {
        self.queues[queue as usize].stalled = stalled;
        if !stalled {
            self.run_queue(bus, queue as usize);
        }
    }

    /// Masks or unmasks an MSI-X table entry (as the platform would); unmasking delivers a
    /// pending message.
    pub fn set_vector_masked(&mut self, bus: &mut Bus<'_>, vector: u16, masked: bool) {
        self.set_mask(bus, vector as usize, masked);
    }

    /// The PBA bit of `vector`.
    pub fn vector_pending(&self, vector: u16) -> bool {
        self.msix.as_ref().is_some_and(|t| t.is_pending(vector))
    }

    /// Rings queue `queue`'s doorbell as the driver would (for tests that drive rings directly).
    pub fn notify(&mut self, bus: &mut Bus<'_>, queue: u16) {
        self.doorbell(bus, queue as usize);
    }

    // ---- roles, state ----

    fn negotiated(&self, f: u64) -> bool {
        self.driver_features & f != 0 && self.status & status::FEATURES_OK != 0
    }

    /// The feature bits in force: what the driver accepted, once FEATURES_OK stuck.
    fn features_in_force(&self) -> u64 {
        if self.status & status::FEATURES_OK != 0 {
            self.driver_features
        } else {
            0
        }
    }

    fn role(&self, q: usize) -> Role {
        let mq = self.negotiated(feature::MQ);
        let ctrl = self.cfg.features & feature::CTRL_VQ != 0;
        let ctrl_index = if mq {
            2 * self.cfg.queue_pairs as usize
        } else {
            2
        };
        if ctrl && q == ctrl_index {
            Role::Control
        } else if q < 2 * self.cfg.queue_pairs as usize && (mq || q < 2) {
            if q.is_multiple_of(2) {
                Role::Rx(q / 2)
            } else {
                Role::Tx(q / 2)
            }
        } else {
            Role::Unused
        }
    }

    fn live(&self) -> bool {
        !self.removed
            && self.status & status::DRIVER_OK != 0
            && self.status & (status::DEVICE_NEEDS_RESET | status::FAILED) == 0
    }

    fn reset(&mut self) {
        self.status = 0;
        self.device_feature_select = 0;
        self.driver_feature_select = 0;
        self.driver_features = 0;
        self.config_vector = NO_VECTOR;
        self.queue_select = 0;
        self.isr = 0;
        self.active_pairs = 1;
        self.promiscuous = false;
        self.all_multicast = false;
        self.mac_address_set = None;
        self.mac_table = (Vec::new(), Vec::new());
        self.rss = None;
        self.error = None;
        for s in &mut self.queues {
            s.reset();
        }
        if let Some(t) = &mut self.msix {
            t.clear_pending();
        }
    }

    /// The driver handed the device something impossible: stop and ask for a reset.
    fn fail(&mut self, bus: &mut Bus<'_>, why: String) {
        if self.status & status::DEVICE_NEEDS_RESET != 0 {
            return;
        }
        self.status |= status::DEVICE_NEEDS_RESET;
        self.error = Some(why);
        if self.status & status::DRIVER_OK != 0 {
            self.signal_config(bus);
        }
    }

    fn map_vector(&self, v: u16) -> u16 {
        if v == NO_VECTOR || v >= self.cfg.msix_vectors {
            return NO_VECTOR;
        }
        match self.refusal {
            VectorRefusal::None => v,
            VectorRefusal::All => NO_VECTOR,
            VectorRefusal::AtOrAbove(n) if v >= n => NO_VECTOR,
            VectorRefusal::AtOrAbove(_) => v,
        }
    }

    fn features_acceptable(&self) -> bool {
        let accepted = self.driver_features;
        let required = self.cfg.features & feature::ACCESS_PLATFORM;
        accepted & !self.cfg.features == 0
            && accepted & feature::VERSION_1 != 0
            && accepted & required == required
            && FEATURE_DEPENDENCIES
                .iter()
                .all(|&(f, needs)| accepted & f == 0 || accepted & needs != 0)
    }

    fn write_status(&mut self, bus: &mut Bus<'_>, v: u8) {
        if v == 0 {
            self.reset();
            bus.set_line(false); // the ISR status is 0 again
            self.unprompted_reset = false;
            return;
        }
        let old = self.status;
        let mut new = v | (old & status::DEVICE_NEEDS_RESET);
        if new & status::FEATURES_OK != 0
            && old & status::FEATURES_OK == 0
            && (!self.features_acceptable() || self.refuse_features_ok)
        {
            new &= !status::FEATURES_OK;
        }
        self.status = new;
        if new & status::DRIVER_OK != 0 && old & status::DRIVER_OK == 0 {
            for q in 0..self.queues.len() {
                self.run_queue(bus, q);
            }
        }
    }

    // ---- interrupts ----

    fn send_vector(&mut self, bus: &mut Bus<'_>, v: u16) {
        let signal = match &mut self.msix {
            Some(t) if v != NO_VECTOR => t.signal(bus, v),
            _ => MsixSignal::Lost,
        };
        self.count(v, signal);
    }

    fn count(&mut self, v: u16, signal: MsixSignal) {
        match signal {
            MsixSignal::Sent => self.counters.message_interrupts[v as usize] += 1,
            MsixSignal::Pending => self.counters.masked_interrupts += 1,
            MsixSignal::Lost => self.counters.lost_interrupts += 1,
        }
    }

    fn assert_line(&mut self, bus: &mut Bus<'_>) {
        if bus.interrupt_mode() == InterruptMode::Line {
            self.counters.line_interrupts += 1;
            bus.set_line(true);
        }
    }

    fn signal_queue(&mut self, bus: &mut Bus<'_>, q: usize) {
        if self.removed {
            return;
        }
        match bus.interrupt_mode() {
            InterruptMode::Messages(_) => self.send_vector(bus, self.queues[q].vector),
            InterruptMode::Line | InterruptMode::None => {
                self.isr |= regs::ISR_QUEUE;
                self.assert_line(bus);
            }
        }
    }

    fn signal_config(&mut self, bus: &mut Bus<'_>) {
        if self.removed {
            return;
        }
        self.counters.config_interrupts += 1;
        self.isr |= regs::ISR_CONFIG;
        match bus.interrupt_mode() {
            InterruptMode::Messages(_) => self.send_vector(bus, self.config_vector),
            InterruptMode::Line | InterruptMode::None => self.assert_line(bus),
        }
    }

    fn set_mask(&mut self, bus: &mut Bus<'_>, i: usize, masked: bool) {
        if let Some(t) = &mut self.msix
            && let Some(signal) = t.set_masked(bus, i as u16, masked)
        {
            self.count(i as u16, signal);
        }
    }

    // ---- queues ----

    fn doorbell(&mut self, bus: &mut Bus<'_>, q: usize) {
        if q >= self.queues.len() {
            return;
        }
        self.counters.notifications[q] += 1;
        if self.status & status::DRIVER_OK == 0 && !self.removed && self.unprompted_reset {
            // The device dropped DRIVER_OK itself; the driver has not reset it yet.
            self.counters.notifications_after_device_reset += 1;
        } else if self.status & status::DRIVER_OK == 0 && !self.removed {
            // virtio 1.2, 3.1.1: the driver MUST NOT notify the device before setting
            // DRIVER_OK. The device does not look at the queue (it may not consume buffers yet).
            self.counters.early_notifications += 1;
            self.driver_errors.push(format!(
                "queue {q}: available-buffer notification before DRIVER_OK (status {:#04x}; virtio 1.2, 3.1.1)",
                self.status
            ));
        }
        self.run_queue(bus, q);
    }

    /// Processes queue `q` as far as it can, then interrupts if the driver wants it.
    fn run_queue(&mut self, bus: &mut Bus<'_>, q: usize) {
        self.run_queue_with(bus, q, &mut &[][..]);
    }

    /// As `run_queue`; an RX queue also takes frames from the front of `incoming` once its
    /// backlog is empty (consumed frames are removed from the slice).
    fn run_queue_with(&mut self, bus: &mut Bus<'_>, q: usize, incoming: &mut &[&[u8]]) {
        if !self.live() || q >= self.queues.len() {
            return;
        }
        let slot = &self.queues[q];
        if !slot.enabled || slot.stalled {
            return;
        }
        let role = self.role(q);
        let result = {
            let mem = bus.memory();
            self.drain(mem, q, role, incoming)
        };
        match result {
            Ok(true) => self.complete(bus, q),
            Ok(false) => {}
            Err(why) => return self.fail(bus, format!("queue {q}: {why}")),
        }
        if let Role::Tx(p) = role
            && self.loopback
            && !self.pairs[p].backlog.is_empty()
        {
            self.run_queue(bus, 2 * p);
        }
    }

    /// Consumes what the queue holds, then re-arms driver notifications (writing `avail_event`
    /// with EVENT_IDX, clearing NO_NOTIFY otherwise) and drains again if the driver raced ahead,
    /// as a device without its own thread must. Returns whether anything was completed.
    fn drain(
        &mut self,
        mem: &GuestMemoryMmap,
        q: usize,
        role: Role,
        incoming: &mut &[&[u8]],
    ) -> Result<bool, String> {
        let mut used = false;
        loop {
            used |= match role {
                Role::Tx(p) => self.transmit(mem, q, p)?,
                Role::Rx(p) => self.receive(mem, q, p, incoming)?,
                Role::Control => self.control(mem, q)?,
                Role::Unused => return Ok(false),
            };
            let more = self.queues[q]
                .queue
                .enable_notification(mem)
                .map_err(|e| format!("re-arming notifications: {e}"))?;
            // RX buffers stay available until frames arrive: only TX and control loop.
            if !more || matches!(role, Role::Rx(_)) {
                return Ok(used);
            }
        }
    }

    /// After a batch of `add_used`: the misbehaviour switch, then the notification decision
    /// (only now, as `needs_notification` requires).
    fn complete(&mut self, bus: &mut Bus<'_>, q: usize) {
        let decision = {
            let mem = bus.memory();
            let slot = &mut self.queues[q];
            if slot.jump_used_index {
                let bogus = slot
                    .queue
                    .next_used()
                    .wrapping_add(slot.queue.size())
                    .wrapping_add(1);
                let _ = mem.write_obj(
                    bogus.to_le(),
                    GuestAddress(slot.queue.used_ring().wrapping_add(2)),
                );
            }
            if slot.queue.event_idx_enabled() {
                slot.queue
                    .needs_notification(mem)
                    .map_err(|e| format!("reading used_event: {e}"))
            } else {
                mem.read_obj::<u16>(GuestAddress(slot.queue.avail_ring()))
                    .map(|flags| u16::from_le(flags) & 1 == 0)
                    .map_err(|e| format!("reading the avail flags: {e}"))
            }
        };
        match decision {
            Ok(true) => self.signal_queue(bus, q),
            Ok(false) => self.counters.suppressed_interrupts += 1,
            Err(why) => self.fail(bus, format!("queue {q}: {why}")),
        }
    }

    fn transmit(&mut self, mem: &GuestMemoryMmap, q: usize, pair: usize) -> Result<bool, String> {
        let mut scratch = std::mem::take(&mut self.scratch);
        let result = self.transmit_with(mem, q, pair, &mut scratch);
        self.scratch = scratch;
        result
    }

    fn transmit_with(
        &mut self,
        mem: &GuestMemoryMmap,
        q: usize,
        pair: usize,
        Scratch { chain, bytes }: &mut Scratch,
    ) -> Result<bool, String> {
        let mut used = false;
        let hdr_len = self.hdr_len();
        let indirect = self.negotiated(feature::RING_INDIRECT_DESC);
        while let Some(head) = pop(&mut self.queues[q].queue, mem, indirect, chain)? {
            gather(mem, chain, MAX_TX_FRAME + hdr_len, bytes)?;
            // With HASH_REPORT the header is `virtio_net_hdr_v1_hash` in this direction too;
            // its hash fields mean nothing on transmit.
            let (Some((header, _)), Some(frame)) =
                (bytes.split_first_chunk(), bytes.get(hdr_len..))
            else {
                return Err(format!(
                    "TX chain {head} holds {} bytes, less than the {hdr_len}-byte virtio_net_hdr",
                    bytes.len(),
                ));
            };
            if checksum::TxHeader(header).asks_nothing() {
                self.put_on_wire(pair, frame.to_vec());
            } else {
                self.transmit_offloaded(head, pair, header, frame)?;
            }
            self.queues[q]
                .queue
                .add_used(mem, head, self.tx_used_len)
                .map_err(|e| format!("add_used({head}): {e}"))?;
            used = true;
        }
        Ok(used)
    }

    /// A TX frame whose header asks for something: what goes on the wire (and so into the
    /// record, the capture and the loopback) is the frame with its checksum completed, or the
    /// segments of a GSO packet. Out of line, so that the TX loop for plain frames stays as small
    /// as without offloads (the device model's share of the datapath benchmark).
    #[inline(never)]
    fn transmit_offloaded(
        &mut self,
        head: u16,
        pair: usize,
        header: &[u8; regs::NET_HDR_LEN],
        frame: &[u8],
    ) -> Result<(), String> {
        let header = &checksum::TxHeader(header);
        let negotiated = self.features_in_force();
        if header.wants_segmentation() {
            let segmentation = gso::Segmentation::new(head, header, negotiated, frame)?;
            let count = segmentation.count(frame);
            for i in 0..count {
                self.put_on_wire(pair, segmentation.segment(frame, i, count));
            }
            self.counters.tx_gso_packets += 1;
            self.counters.tx_gso_segments += count as u64;
            return Ok(());
        }
        let csum = negotiated & feature::CSUM != 0;
        let request = header.checksum_request(head, csum, frame.len())?;
        let mut frame = frame.to_vec();
        if let Some((start, field)) = request {
            checksum::insert_checksum(&mut frame, start, field);
            self.counters.tx_checksummed += 1;
        }
        self.put_on_wire(pair, frame);
        Ok(())
    }

    /// A frame leaves the device: recorded, captured, and looped back if asked.
    #[inline(always)]
    fn put_on_wire(&mut self, pair: usize, frame: Vec<u8>) {
        if let Some(p) = &mut self.pcap {
            p.record(&frame);
        }
        if self.loopback {
            self.pairs[pair].backlog.push_back(frame.clone());
        }
        self.pairs[pair].transmitted.push(frame);
    }

    fn receive(
        &mut self,
        mem: &GuestMemoryMmap,
        q: usize,
        pair: usize,
        incoming: &mut &[&[u8]],
    ) -> Result<bool, String> {
        let mut scratch = std::mem::take(&mut self.scratch);
        let result = self.receive_with(mem, q, pair, incoming, &mut scratch);
        self.scratch = scratch;
        result
    }

    fn receive_with(
        &mut self,
        mem: &GuestMemoryMmap,
        q: usize,
        pair: usize,
        incoming: &mut &[&[u8]],
        Scratch {
            chain,
            bytes: rewritten,
        }: &mut Scratch,
    ) -> Result<bool, String> {
        let mut used = false;
        // Frames are parsed only when the mode needs it and the driver asked for GUEST_CSUM.
        let rx_checksum = if self.negotiated(feature::GUEST_CSUM) {
            self.rx_checksum
        } else {
            RxChecksum::Off
        };
        let hdr_len = self.hdr_len();
        // Hashes are reported with HASH_REPORT, under the configuration in force.
        let reporting = self
            .rss
            .as_ref()
            .filter(|_| hdr_len == regs::NET_HDR_HASH_LEN);
        loop {
            // The backlog first (it arrived earlier), then the caller's frames.
            let from_backlog = !self.pairs[pair].backlog.is_empty();
            let frame: &[u8] = match (self.pairs[pair].backlog.front(), incoming.first()) {
                (Some(f), _) => f,
                (None, Some(f)) => f,
                (None, None) => break,
            };
            let indirect = self.negotiated(feature::RING_INDIRECT_DESC);
            let queue = &mut self.queues[q].queue;
            let Some(head) = pop(queue, mem, indirect, chain)? else {
                break;
            };
            let room: u64 = chain
                .iter()
                .filter(|d| d.is_write_only())
                .map(|d| d.len() as u64)
                .sum();
            let total = hdr_len + frame.len();
            if room >= total as u64 {
                let verdict = match rx_checksum {
                    RxChecksum::Off | RxChecksum::Forged { .. } => checksum::RxVerdict::Unchecked,
                    mode => checksum::classify(frame, mode),
                };
                // A partial checksum rewrites the frame: in the reused scratch buffer, so that
                // the one `scatter` call stays as cheap as without checksum offload.
                let delivered: &[u8] = match verdict.partial_field() {
                    Some((at, sum)) => {
                        rewritten.clear();
                        rewritten.extend_from_slice(frame);
                        rewritten[at..at + 2].copy_from_slice(&sum);
                        rewritten
                    }
                    None => frame,
                };
                let header = match rx_checksum {
                    RxChecksum::Forged {
                        flags,
                        csum_start,
                        csum_offset,
                    } => checksum::forged_header(flags, csum_start, csum_offset),
                    _ => verdict.header(),
                };
                let mut hash_fields = [0u8; regs::NET_HDR_HASH_LEN - regs::NET_HDR_LEN];
                if let Some(c) = reporting
                    && let Some((value, kind)) = rss::hash(frame, c.hash_types, &c.key)
                {
                    hash_fields[..4].copy_from_slice(&(value ^ self.hash_xor).to_le_bytes());
                    hash_fields[4..6].copy_from_slice(&kind.to_le_bytes());
                    self.counters.rx_hash_reported += 1;
                }
                let hash_fields = &hash_fields[..hdr_len - regs::NET_HDR_LEN];
                scatter(mem, chain, &[&header, hash_fields, delivered])?;
                queue
                    .add_used(mem, head, total as u32)
                    .map_err(|e| format!("add_used({head}): {e}"))?;
                // The capture shows the frame as it came off the wire.
                if let Some(p) = &mut self.pcap {
                    p.record(frame);
                }
                self.counters.rx_delivered[pair] += 1;
                match verdict {
                    checksum::RxVerdict::DataValid => self.counters.rx_data_valid += 1,
                    checksum::RxVerdict::Partial { .. } => self.counters.rx_partial += 1,
                    checksum::RxVerdict::Unchecked => {}
                }
                used = true;
            } else {
                // Too small for this frame (no MRG_RXBUF): the frame is dropped, the buffer
                // stays posted for the next one.
                queue.set_next_avail(queue.next_avail().wrapping_sub(1));
                self.counters.rx_dropped += 1;
            }
            if from_backlog {
                self.pairs[pair].backlog.pop_front();
            } else {
                *incoming = &incoming[1..];
            }
        }
        Ok(used)
    }

    fn control(&mut self, mem: &GuestMemoryMmap, q: usize) -> Result<bool, String> {
        let mut used = false;
        let mut chain = Vec::new();
        let mut bytes = Vec::new();
        let indirect = self.negotiated(feature::RING_INDIRECT_DESC);
        while let Some(head) = pop(&mut self.queues[q].queue, mem, indirect, &mut chain)? {
            gather(mem, &chain, MAX_CTRL_CHAIN, &mut bytes)?;
            if bytes.len() < 2 {
                return Err(format!(
                    "control chain {head} without a class/command header"
                ));
            }
            let Some(ack_at) = chain.iter().find(|d| d.is_write_only() && d.len() >= 1) else {
                return Err(format!("control chain {head} without a writable ack byte"));
            };
            let ack = self.command(bytes[0], bytes[1], &bytes[2..]);
            mem.write_obj(ack, ack_at.addr())
                .map_err(|e| format!("writing the control ack: {e}"))?;
            self.queues[q]
                .queue
                .add_used(mem, head, 1)
                .map_err(|e| format!("add_used({head}): {e}"))?;
            self.control_log.push(ControlCommand {
                class: bytes[0],
                command: bytes[1],
                data: bytes[2..].to_vec(),
                ack,
            });
            used = true;
        }
        Ok(used)
    }

    fn command(&mut self, class: u8, command: u8, data: &[u8]) -> u8 {
        if self.refuse_control {
            return ctrl::ERR;
        }
        match (class, command) {
            (ctrl::CLASS_RX, ctrl::RX_PROMISC..=ctrl::RX_NOBCAST)
                if self.negotiated(feature::CTRL_RX) && data.len() == 1 =>
            {
                match command {
                    ctrl::RX_PROMISC => self.promiscuous = data[0] != 0,
                    ctrl::RX_ALLMULTI => self.all_multicast = data[0] != 0,
                    _ => {}
                }
                ctrl::OK
            }
            (ctrl::CLASS_MAC, ctrl::MAC_TABLE_SET) if self.negotiated(feature::CTRL_RX) => {
                match parse_mac_tables(data) {
                    Some(tables) => {
                        self.mac_table = tables;
                        ctrl::OK
                    }
                    None => ctrl::ERR,
                }
            }
            (ctrl::CLASS_MAC, ctrl::MAC_ADDR_SET)
                if self.negotiated(feature::CTRL_MAC_ADDR) && data.len() == 6 =>
            {
                self.mac_address_set = Some(data.try_into().expect("6 bytes"));
                ctrl::OK
            }
            (ctrl::CLASS_ANNOUNCE, 0) => ctrl::OK,
            (ctrl::CLASS_MQ, ctrl::MQ_VQ_PAIRS_SET)
                if self.negotiated(feature::MQ) && data.len() == 2 =>
            {
                let n = u16::from_le_bytes([data[0], data[1]]);
                if (1..=self.cfg.queue_pairs).contains(&n) {
                    self.active_pairs = n;
                    // The last multiqueue command decides the mode: automatic steering.
                    self.rss = None;
                    ctrl::OK
                } else {
                    ctrl::ERR
                }
            }
            (ctrl::CLASS_MQ, ctrl::MQ_RSS_CONFIG | ctrl::MQ_HASH_CONFIG) => {
                let steer = command == ctrl::MQ_RSS_CONFIG;
                let needs = if steer {
                    feature::RSS
                } else {
                    feature::HASH_REPORT
                };
                if !self.negotiated(needs) {
                    return ctrl::ERR;
                }
                let limits = rss::Limits {
                    max_key_size: self.cfg.rss_max_key_size,
                    max_table_length: self.cfg.rss_max_indirection_table_length,
                    supported_hash_types: self.cfg.supported_hash_types,
                    pairs: self.cfg.queue_pairs,
                };
                let enabled = |p: u16| {
                    let q = 2 * usize::from(p);
                    self.queues.get(q).is_some_and(|s| s.enabled)
                        && self.queues.get(q + 1).is_some_and(|s| s.enabled)
                };
                match rss::parse(data, steer, limits, enabled) {
                    Ok(config) => {
                        if let Some(c) = &config
                            && c.steers()
                        {
                            self.active_pairs = c.max_tx_vq;
                        }
                        self.rss = config;
                        ctrl::OK
                    }
                    Err(why) => {
                        self.rss_refusals.push(why);
                        ctrl::ERR
                    }
                }
            }
            _ => ctrl::ERR,
        }
    }

    // ---- registers ----

    fn common_bytes(&self) -> [u8; common::SIZE] {
        let mut c = [0u8; common::SIZE];
        let put = |c: &mut [u8; common::SIZE], at: u64, v: &[u8]| {
            c[at as usize..at as usize + v.len()].copy_from_slice(v);
        };
        let offered = match self.device_feature_select {
            0 => self.cfg.features as u32,
            1 => (self.cfg.features >> 32) as u32,
            _ => 0,
        };
        let accepted = match self.driver_feature_select {
            0 => self.driver_features as u32,
            1 => (self.driver_features >> 32) as u32,
            _ => 0,
        };
        put(
            &mut c,
            common::DEVICE_FEATURE_SELECT,
            &self.device_feature_select.to_le_bytes(),
        );
        put(&mut c, common::DEVICE_FEATURE, &offered.to_le_bytes());
        put(
            &mut c,
            common::DRIVER_FEATURE_SELECT,
            &self.driver_feature_select.to_le_bytes(),
        );
        put(&mut c, common::DRIVER_FEATURE, &accepted.to_le_bytes());
        put(
            &mut c,
            common::CONFIG_MSIX_VECTOR,
            &self.config_vector.to_le_bytes(),
        );
        put(
            &mut c,
            common::NUM_QUEUES,
            &(self.queues.len() as u16).to_le_bytes(),
        );
        put(&mut c, common::DEVICE_STATUS, &[self.status]);
        put(&mut c, common::CONFIG_GENERATION, &[self.config_generation]);
        put(
            &mut c,
            common::QUEUE_SELECT,
            &self.queue_select.to_le_bytes(),
        );
        if let Some(s) = self.queues.get(self.queue_select as usize) {
            put(&mut c, common::QUEUE_SIZE, &s.queue.size().to_le_bytes());
            put(&mut c, common::QUEUE_MSIX_VECTOR, &s.vector.to_le_bytes());
            put(
                &mut c,
                common::QUEUE_ENABLE,
                &u16::from(s.enabled).to_le_bytes(),
            );
            put(
                &mut c,
                common::QUEUE_NOTIFY_OFF,
                &self.queue_select.to_le_bytes(),
            );
            put(&mut c, common::QUEUE_DESC, &s.desc.to_le_bytes());
            put(&mut c, common::QUEUE_DRIVER, &s.driver.to_le_bytes());
            put(&mut c, common::QUEUE_DEVICE, &s.device.to_le_bytes());
            put(
                &mut c,
                common::QUEUE_RESET,
                &u16::from(s.reset_done).to_le_bytes(),
            );
        }
        c
    }

    /// `struct virtio_net_config` up to `supported_hash_types` (speed and duplex unknown).
    fn device_bytes(&self) -> [u8; 24] {
        let mut d = [0u8; 24];
        d[0..6].copy_from_slice(&self.cfg.mac);
        let link = if self.link_up { regs::NET_S_LINK_UP } else { 0 };
        d[6..8].copy_from_slice(&link.to_le_bytes());
        d[8..10].copy_from_slice(&self.cfg.queue_pairs.to_le_bytes());
        d[10..12].copy_from_slice(&self.cfg.mtu.to_le_bytes());
        d[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        d[16] = 0xFF;
        d[17] = self.cfg.rss_max_key_size;
        d[18..20].copy_from_slice(&self.cfg.rss_max_indirection_table_length.to_le_bytes());
        d[20..24].copy_from_slice(&self.cfg.supported_hash_types.to_le_bytes());
        d
    }

    /// The header on both queues: `virtio_net_hdr_v1_hash` with HASH_REPORT, else
    /// `virtio_net_hdr_v1`.
    fn hdr_len(&self) -> usize {
        if self.negotiated(feature::HASH_REPORT) {
            regs::NET_HDR_HASH_LEN
        } else {
            regs::NET_HDR_LEN
        }
    }

    fn write_common(&mut self, bus: &mut Bus<'_>, offset: u64, width: u32, value: u32) {
        let q = self.queue_select as usize;
        let queue_writable = q < self.queues.len() && !self.queues[q].enabled;
        match (offset, width) {
            (common::DEVICE_FEATURE_SELECT, 4) => self.device_feature_select = value,
            (common::DRIVER_FEATURE_SELECT, 4) => self.driver_feature_select = value,
            (common::DRIVER_FEATURE, 4) if self.status & status::FEATURES_OK == 0 => {
                match self.driver_feature_select {
                    0 => {
                        self.driver_features = (self.driver_features & !0xFFFF_FFFF) | value as u64
                    }
                    1 => {
                        self.driver_features =
                            (self.driver_features & 0xFFFF_FFFF) | ((value as u64) << 32)
                    }
                    _ => {}
                }
            }
            (common::CONFIG_MSIX_VECTOR, 2) => self.config_vector = self.map_vector(value as u16),
            (common::DEVICE_STATUS, 1) => self.write_status(bus, value as u8),
            (common::QUEUE_SELECT, 2) => self.queue_select = value as u16,
            (common::QUEUE_SIZE, 2) if queue_writable => {
                // Sizes virtio-queue cannot run (not a power of two, above the maximum) are
                // ignored: the driver reads back the old size.
                let _ = self.queues[q].queue.try_set_size(value as u16);
            }
            (common::QUEUE_MSIX_VECTOR, 2) if q < self.queues.len() => {
                self.queues[q].vector = self.map_vector(value as u16);
            }
            (common::QUEUE_ENABLE, 2) if queue_writable && value == 1 => self.enable_queue(bus, q),
            (common::QUEUE_DESC | common::QUEUE_DRIVER | common::QUEUE_DEVICE, 4)
            | (0x24 | 0x2C | 0x34, 4)
                if queue_writable =>
            {
                let s = &mut self.queues[q];
                let field = match offset & !7 {
                    common::QUEUE_DESC => &mut s.desc,
                    common::QUEUE_DRIVER => &mut s.driver,
                    _ => &mut s.device,
                };
                *field = if offset & 4 == 0 {
                    (*field & !0xFFFF_FFFF) | value as u64
                } else {
                    (*field & 0xFFFF_FFFF) | ((value as u64) << 32)
                };
            }
            (common::QUEUE_RESET, 2) if q < self.queues.len() && value == 1 => {
                self.queues[q].reset();
                self.queues[q].reset_done = true;
            }
            _ => {}
        }
    }

    fn enable_queue(&mut self, bus: &mut Bus<'_>, q: usize) {
        let event_idx = self.negotiated(feature::RING_EVENT_IDX);
        let s = &mut self.queues[q];
        let applied = s
            .queue
            .try_set_desc_table_address(GuestAddress(s.desc))
            .and_then(|()| s.queue.try_set_avail_ring_address(GuestAddress(s.driver)))
            .and_then(|()| s.queue.try_set_used_ring_address(GuestAddress(s.device)));
        s.queue.set_event_idx(event_idx);
        s.queue.set_ready(true);
        s.enabled = true;
        s.reset_done = false;
        if let Err(e) = applied {
            return self.fail(bus, format!("queue {q}: misaligned ring address: {e}"));
        }
        if !self.queues[q].queue.is_valid(bus.memory()) {
            let s = &self.queues[q];
            let why = format!(
                "queue {q}: rings outside memory (desc {:#x}, driver {:#x}, device {:#x}, size {})",
                s.desc,
                s.driver,
                s.device,
                s.queue.size()
            );
            self.fail(bus, why);
        }
    }
}

/// (unicast, multicast) addresses of a `MAC_TABLE_SET`.
type MacTables = (Vec<[u8; 6]>, Vec<[u8; 6]>);

/// The two tables of `MAC_TABLE_SET` (each `le32 entries` then 6-byte addresses), which must
/// fill `data` exactly.
fn parse_mac_tables(data: &[u8]) -> Option<MacTables> {
    let mut rest = data;
    let mut table = || -> Option<Vec<[u8; 6]>> {
        let (count, tail) = rest.split_first_chunk::<4>()?;
        let bytes = (u32::from_le_bytes(*count) as usize).checked_mul(6)?;
        let (macs, tail) = tail.split_at_checked(bytes)?;
        rest = tail;
        Some(
            macs.chunks_exact(6)
                .map(|m| m.try_into().expect("6 bytes"))
                .collect(),
        )
    };
    let unicast = table()?;
    let multicast = table()?;
    rest.is_empty().then_some((unicast, multicast))
}

/// Takes the next available chain into `chain`; returns its head index. A chain that ends on a
/// NEXT flag was cut short (unreadable descriptor, loop, bad index) and is the driver's error.
fn pop(
    queue: &mut Queue,
    mem: &GuestMemoryMmap,
    indirect: bool,
    chain: &mut Vec<Descriptor>,
) -> Result<Option<u16>, String> {
    let (table, size) = (queue.desc_table(), queue.size());
    let mut chains = queue
        .iter(mem)
        .map_err(|e| format!("available ring: {e}"))?;
    let Some(next) = chains.next() else {
        return Ok(None);
    };
    let head = next.head_index();
    check_indirect(mem, table, size, head, indirect)?;
    chain.clear();
    chain.extend(next);
    match chain.last() {
        None => Err(format!("chain {head}: no readable descriptor")),
        Some(d) if d.has_next() => Err(format!(
            "chain {head}: broken after {} descriptors (loop, bad index or unreadable table)",
            chain.len()
        )),
        Some(_) => Ok(Some(head)),
    }
}

/// The rules of indirect descriptors a driver must keep (virtio 1.2, 2.7.5.3.1), which the
/// chain walk (`virtio-queue`) does not check: `VIRTQ_DESC_F_INDIRECT` only with
/// `VIRTIO_F_INDIRECT_DESC` negotiated, never with `VIRTQ_DESC_F_NEXT`, and a table of whole
/// descriptors that keeps the chain (ring descriptors before it included) within the queue
/// size. Walks the chain's ring descriptors; what it cannot follow (an index past the table,
/// memory it cannot read, a loop) it leaves to the chain walk, which refuses it, as it refuses
/// a table inside a table.
fn check_indirect(
    mem: &GuestMemoryMmap,
    table: u64,
    size: u16,
    head: u16,
    negotiated: bool,
) -> Result<(), String> {
    let mut idx = head;
    for walked in 0..u32::from(size) {
        let at = table.checked_add(16 * u64::from(idx));
        let Some(Ok(d)) = at.map(|a| mem.read_obj::<Descriptor>(GuestAddress(a))) else {
            return Ok(());
        };
        if d.refers_to_indirect_table() {
            if !negotiated {
                return Err(format!(
                    "chain {head}: descriptor {idx} is VIRTQ_DESC_F_INDIRECT, but \
                     VIRTIO_F_INDIRECT_DESC was not negotiated"
                ));
            }
            if d.has_next() {
                return Err(format!(
                    "chain {head}: descriptor {idx} sets both VIRTQ_DESC_F_INDIRECT and \
                     VIRTQ_DESC_F_NEXT"
                ));
            }
            let entries = d.len() / 16;
            if d.len() % 16 != 0 || entries == 0 || walked + entries > u32::from(size) {
                return Err(format!(
                    "chain {head}: indirect table of {} bytes after {walked} ring descriptors \
                     (whole 16-byte descriptors, the chain within the queue size {size})",
                    d.len()
                ));
            }
            return Ok(());
        }
        if !d.has_next() || d.next() >= size {
            return Ok(());
        }
        idx = d.next();
    }
    Ok(())
}

/// Reads the device-readable bytes of a chain, at most `limit`, into `out`.
fn gather(
    mem: &GuestMemoryMmap,
    chain: &[Descriptor],
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    out.clear();
    for d in chain.iter().filter(|d| !d.is_write_only()) {
        let len = d.len() as usize;
        if out.len() + len > limit {
            return Err(format!("chain longer than {limit} bytes"));
        }
        let start = out.len();
        out.resize(start + len, 0);
        mem.read_slice(&mut out[start..], d.addr())
            .map_err(|e| format!("reading {len} bytes at {:#x}: {e}", d.addr().0))?;
    }
    Ok(())
}

/// Writes the concatenation of `parts` across the device-writable descriptors of a chain
/// (which hold enough room).
fn scatter(mem: &GuestMemoryMmap, chain: &[Descriptor], parts: &[&[u8]]) -> Result<(), String> {
    let mut parts = parts.iter().copied().filter(|p| !p.is_empty());
    let mut rest = parts.next().unwrap_or_default();
    for d in chain.iter().filter(|d| d.is_write_only()) {
        let mut at = d.addr();
        let mut room = d.len() as usize;
        while room > 0 && !rest.is_empty() {
            let n = rest.len().min(room);
            mem.write_slice(&rest[..n], at)
                .map_err(|e| format!("writing {n} bytes at {:#x}: {e}", at.0))?;
            at = GuestAddress(at.0.wrapping_add(n as u64));
            room -= n;
            rest = &rest[n..];
            if rest.is_empty() {
                rest = parts.next().unwrap_or_default();
            }
        }
        if rest.is_empty() {
            break;
        }
    }
    Ok(())
}

fn read_bytes(bytes: &[u8], offset: u64, width: u32) -> u64 {
    let mut v = [0u8; 8];
    for (i, b) in v.iter_mut().enumerate().take(width as usize) {
        *b = bytes.get(offset as usize + i).copied().unwrap_or(0);
    }
    u64::from_le_bytes(v)
}

impl PciFunction for VirtioNet {
    fn config(&mut self) -> &mut [u8; CONFIG_SPACE_SIZE] {
        &mut self.config_space
    }

    fn bars(&self) -> Vec<BarInfo> {
        let mut bars = Vec::new();
        if self.cfg.msix_vectors > 0 {
            bars.push(BarInfo {
                index: regs::MSIX_BAR,
                size: regs::msix_layout(self.cfg.msix_vectors).1,
                is_64bit: false,
            });
        }
        bars.push(BarInfo {
            index: regs::MODERN_BAR,
            size: regs::MODERN_BAR_SIZE,
            is_64bit: true,
        });
        bars
    }

    fn interrupts_assigned(&mut self, mode: InterruptMode) {
        // PnP may assign again after a driver filtered the requirements (the line instead of
        // the messages): MSI-X is enabled exactly when messages are granted.
        if self.cfg.msix_vectors > 0 && matches!(mode, InterruptMode::Messages(_)) {
            self.config_space[regs::CAP_MSIX_AT + 3] |= 0x80;
        } else {
            self.config_space[regs::CAP_MSIX_AT + 3] &= !0x80;
        }
    }

    fn power_lost(&mut self) {
        // Every register back to its power-on value; the MSI-X table is the platform's (restored
        // with configuration space by the PCI bus driver).
        self.reset();
    }

    fn config_write(&mut self, offset: usize, data: &[u8]) {
        if self.removed {
            return;
        }
        // Only the command register and the MSI-X function mask are writable.
        for (i, &b) in data.iter().enumerate() {
            let at = offset + i;
            if at == 0x04 || at == 0x05 || at == regs::CAP_MSIX_AT + 3 && self.cfg.msix_vectors > 0
            {
                let keep = if at == regs::CAP_MSIX_AT + 3 { 0x80 } else { 0 };
                self.config_space[at] = (self.config_space[at] & keep) | (b & !keep);
            }
        }
    }

    fn mmio_read(&mut self, bus: &mut Bus<'_>, bar: u8, offset: u64, width: u32) -> u64 {
        if self.removed {
            bus.set_line(false); // gone from the bus: it drives no line
            return all_ones(width);
        }
        match bar {
            regs::MODERN_BAR => match offset {
                o if o < regs::ISR_OFFSET => read_bytes(&self.common_bytes(), o, width),
                regs::ISR_OFFSET => {
                    self.counters.isr_reads += 1;
                    bus.set_line(false);
                    u64::from(std::mem::take(&mut self.isr))
                }
                o if (regs::DEVICE_OFFSET..regs::NOTIFY_OFFSET).contains(&o) => {
                    read_bytes(&self.device_bytes(), o - regs::DEVICE_OFFSET, width)
                }
                _ => 0,
            },
            regs::MSIX_BAR => self
                .msix
                .as_ref()
                .and_then(|t| t.read(offset, width))
                .unwrap_or(0),
            _ => 0,
        }
    }

    fn mmio_write(&mut self, bus: &mut Bus<'_>, bar: u8, offset: u64, width: u32, value: u64) {
        if self.removed {
            return;
        }
        match bar {
            regs::MODERN_BAR => match offset {
                // 64-bit fields are written as two 32-bit halves (virtio 1.2, 4.1.3.1).
                o if o < regs::ISR_OFFSET && width <= 4 => {
                    self.write_common(bus, o, width, value as u32)
                }
                o if (regs::NOTIFY_OFFSET..regs::NOTIFY_OFFSET + regs::NOTIFY_LENGTH as u64)
                    .contains(&o) =>
                {
                    let q = (o - regs::NOTIFY_OFFSET) / regs::NOTIFY_OFF_MULTIPLIER as u64;
                    self.doorbell(bus, q as usize);
                }
                _ => {}
            },
            regs::MSIX_BAR => {
                if let Some(t) = &mut self.msix
                    && let Some(signal) = t.write(bus, offset, width, value)
                {
                    self.count((offset / 16) as u16, signal);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRITE: u16 = 2; // VRING_DESC_F_WRITE

    #[test]
    fn mac_tables_must_fill_the_command_exactly() {
        let a = [1, 0, 0x5E, 0, 0, 1];
        let b = [0x33, 0x33, 0, 0, 0, 2];
        let mut data = 1u32.to_le_bytes().to_vec();
        data.extend_from_slice(&a);
        data.extend_from_slice(&2u32.to_le_bytes());
        data.extend_from_slice(&a);
        data.extend_from_slice(&b);
        assert_eq!(parse_mac_tables(&data), Some((vec![a], vec![a, b])));
        assert_eq!(
            parse_mac_tables(&[0; 8]),
            Some((vec![], vec![])),
            "two empty tables"
        );
        // Short, long, a count past the end, a count that overflows.
        assert_eq!(parse_mac_tables(&data[..data.len() - 1]), None);
        assert_eq!(parse_mac_tables(&[data.as_slice(), &[0]].concat()), None);
        assert_eq!(parse_mac_tables(&[0, 0, 0, 0, 9, 0, 0, 0]), None);
        assert_eq!(parse_mac_tables(&[0xFF; 8]), None);
        assert_eq!(parse_mac_tables(&[]), None);
    }

    #[test]
    fn scatter_and_gather_cross_descriptor_and_part_boundaries() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0x1000), 0x1000)]).unwrap();
        // Writable pieces of 5, 7 and 100 bytes, with a read-only one in between to skip.
        let chain = [
            Descriptor::new(0x1000, 5, WRITE, 0),
            Descriptor::new(0x1100, 3, 0, 0),
            Descriptor::new(0x1200, 7, WRITE, 0),
            Descriptor::new(0x1300, 100, WRITE, 0),
        ];
        let header: Vec<u8> = (100..112).collect();
        let frame: Vec<u8> = (0..20).collect();
        scatter(&mem, &chain, &[&header, &[], &frame]).unwrap();
        let mut all = Vec::new();
        for (at, n) in [(0x1000, 5), (0x1200, 7), (0x1300, 20)] {
            let mut piece = vec![0u8; n];
            mem.read_slice(&mut piece, GuestAddress(at)).unwrap();
            all.extend(piece);
        }
        assert_eq!(all, [header.clone(), frame.clone()].concat());
        // Nothing written past the data or into the read-only piece.
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x1300 + 20)).unwrap(), 0);
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x1100)).unwrap(), 0);

        // gather reads the readable pieces only, into a reused buffer, and honours the limit.
        mem.write_slice(&[9, 8, 7], GuestAddress(0x1100)).unwrap();
        let read_only = [
            Descriptor::new(0x1100, 3, 0, 0),
            Descriptor::new(0x1000, 5, WRITE, 0),
            Descriptor::new(0x1300, 4, 0, 0),
        ];
        let mut out = vec![0xAA; 50];
        gather(&mem, &read_only, 64, &mut out).unwrap();
        assert_eq!(out, [9, 8, 7, 0, 1, 2, 3]);
        assert!(gather(&mem, &read_only, 6, &mut out).is_err());
    }
}
