//! One virtio-net adapter: bring-up (capabilities, features, interrupt grant, vector plan,
//! queues), the interrupt handler, and the NDIS handlers.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use ndis::Status;
use ndis::heap::Shared;
use ndis::hw::ConfigSpace;
use ndis::interrupt::{
    DpcContext, InterruptHandler, InterruptRegistration, IsrContext, IsrOutcome,
};
use ndis::io::{IoSpace, OwnedWindow, bar_address};
use ndis::irql::{Dispatch, DispatchOrBelow, Passive};
use ndis::miniport::{
    AdapterInfo, Init, Miniport, NdisAdapter, PnpEvent, Quiesced, ResetError, ShutdownAction,
};
use ndis::nbl::{Returned, SendLists};
use ndis::offload::{ChecksumOffload, LargeSendOffload, LsoCapabilities, OffloadInfo};
use ndis::oid::{QueryBuffer, SetData, SetRequest};
use ndis::power::{DevicePowerState, PowerCapabilities};
use ndis::sync::Once;

use crate::device::{Device, FrameSize, Health, Tagging, map_vectors};
use crate::virtio::net::{self, InterruptMode, VectorPlan, features};
use crate::virtio::pci::{self, CapRegion, Transport, find_capabilities, status};

/// Registry keywords the driver reads (each declared in the INF's `Ndi\params` as its constant
/// says: tests/inf.rs checks the declarations against these).
pub mod keywords {
    use ndis::keyword::Keyword;

    /// Queue pairs to run at most (`*NumRssQueues`, 1..=16).
    pub const NUM_QUEUES: Keyword = Keyword::int("*NumRssQueues", 1, 16, 16);
    /// Receive ring size (`*ReceiveBuffers`, 64..=1024, rounded down to a power of two).
    pub const RECEIVE_BUFFERS: Keyword = Keyword::int("*ReceiveBuffers", 64, 1024, 256);
    /// Transmit ring size (`*TransmitBuffers`, 64..=1024, rounded down to a power of two).
    pub const TRANSMIT_BUFFERS: Keyword = Keyword::int("*TransmitBuffers", 64, 1024, 256);
    /// Largest frame without FCS (`*JumboPacket`, 1514..=9014; 1514 is a standard 1500-byte
    /// MTU), bounded by the device's MTU when it reports one.
    pub const JUMBO_PACKET: Keyword = Keyword::int("*JumboPacket", 1514, 9014, 1514);
    /// 802.1p/802.1Q tagging (`*PriorityVLANTag`: 0 off, 1 priority, 2 VLAN, 3 both).
    pub const PRIORITY_VLAN_TAG: Keyword =
        Keyword::enumeration("*PriorityVLANTag", &[0, 1, 2, 3], 3);
    /// A locally set MAC address (`NetworkAddress`, 12 hex digits), read with
    /// `NdisReadNetworkAddress`; used when the device takes `VIRTIO_NET_CTRL_MAC_ADDR_SET`.
    pub const NETWORK_ADDRESS: Keyword = Keyword::text("NetworkAddress");
    /// Checksum offload per task (`*IPChecksumOffloadIPv4`, `*TCPChecksumOffloadIPv4`, ...: 0
    /// off, 1 Tx, 2 Rx, 3 both), read by `ChecksumOffload::from_keywords`.
    pub const CHECKSUM: [Keyword; 5] = ndis::keyword::CHECKSUM_OFFLOAD;
    /// Large send offload per IP version (`*LsoV2IPv4`, `*LsoV2IPv6`: 0 off, 1 on), read by
    /// `LargeSendOffload::from_keywords`.
    pub const LSO: [Keyword; 2] = ndis::keyword::LARGE_SEND_OFFLOAD;
    /// Receive side scaling (`*RSS` 0/1, `*RssBaseProcNumber`, `*MaxRssProcessors`,
    /// `*RssProfile`): `*RSS` = 0 reports no RSS; the others are NDIS's, which applies them
    /// to the table it sets.
    pub const RSS: [Keyword; 4] = ndis::keyword::RSS;
    /// Every keyword the driver reads.
    pub const ALL: &[Keyword] = &[
        NUM_QUEUES,
        RSS[0],
        RSS[1],
        RSS[2],
        RSS[3],
        RECEIVE_BUFFERS,
        TRANSMIT_BUFFERS,
        JUMBO_PACKET,
        PRIORITY_VLAN_TAG,
        NETWORK_ADDRESS,
        CHECKSUM[0],
        CHECKSUM[1],
        CHECKSUM[2],
        CHECKSUM[3],
        CHECKSUM[4],
        LSO[0],
        LSO[1],
    ];
}

/// Features the driver can work with. `CSUM`: the device finishes TCP/UDP checksums the stack
/// asks for; `GUEST_CSUM`: it says which received checksums it validated (or left partial);
/// `HOST_TSO4`/`6`: it segments large sends. Every frame is still copied whole. `RING_EVENT_IDX`: the device interrupts once when the used index crosses `used_event`, not
/// once per completed buffer, so a burst that arrives before the DPC runs costs one interrupt.
/// `ACCESS_PLATFORM`: every address given to the device is an NDIS shared-memory address, a
/// logical (bus) address through the platform's DMA translation, as the feature requires.
/// `RSS`: the device steers by NDIS's indirection table; `HASH_REPORT`: it reports each frame's
/// hash (both through the control queue, see `device::rss`).
const SUPPORTED_FEATURES: u64 = features::VERSION_1
    | features::ACCESS_PLATFORM
    | features::CSUM
    | features::GUEST_CSUM
    | features::HOST_TSO4
    | features::HOST_TSO6
    | features::HOST_ECN
    | features::MAC
    | features::STATUS
    | features::MTU
    | features::MQ
    | features::CTRL_VQ
    | features::CTRL_RX
    | features::CTRL_MAC_ADDR
    | features::RING_EVENT_IDX
    | features::RING_INDIRECT_DESC
    | features::RSS
    | features::HASH_REPORT;

/// Features only RSS uses: not negotiated with `*RSS` = 0 (hash reports would only lengthen
/// every header).
const RSS_FEATURES: u64 = features::RSS | features::HASH_REPORT;

/// What the interrupt layer owns: the ISR-status window for line-based claims, and the device
/// once it is built (DPCs before that find nothing to do).
pub struct Interrupts {
    isr: OwnedWindow,
    device: Once<Shared<Device>>,
    queues: Vec<u16>,
    /// A line-based ISR read a config-change bit; the DPC reports the link.
    config_pending: AtomicBool,
}

impl InterruptHandler for Interrupts {
    /// One queue per message of the vector plan (queue q is message q).
    type Queue = u16;
    const MSI_SUPPORTED: bool = true;

    fn queues(&self) -> &[u16] {
        &self.queues
    }

    fn line_claim(&self, _ctx: &IsrContext<'_>) -> bool {
        // Asleep (D3) or removed: the registers are not touched, and a reset device raises
        // nothing, so an interrupt on the shared line is another device's.
        if let Some(d) = self.device.get()
            && matches!(d.health(), Health::Asleep | Health::Gone)
        {
            return false;
        }
        // Reading clears the bits and de-asserts the line.
        let isr = pci::IsrStatus(ndis::hw::Registers::read8(&self.isr, 0));
        if isr.is_device_gone() {
            // Surprise removal: not ours (a dead device raises nothing), and the driver stops
            // touching the device from now on.
            if let Some(d) = self.device.get() {
                d.mark_removed();
            }
            return false;
        }
        if isr.config_changed() {
            self.config_pending.store(true, Ordering::Release);
        }
        !isr.is_empty()
    }

    fn isr(&self, queue: &u16, _ctx: &IsrContext<'_>) -> IsrOutcome {
        match self.device.get() {
            // A message of a sleeping device: nothing is read, nothing queued.
            Some(d) if d.health() == Health::Asleep => IsrOutcome::Handled,
            // In line mode one queue does all the work.
            Some(d) if d.plan.mode() == InterruptMode::Line && *queue != 0 => IsrOutcome::Handled,
            Some(d) => {
                // The DPC runs here, and it is an interrupt's: it drains this queue's rings
                // (and steering need not queue another here until it starts).
                d.steer
                    .dpc_queued(ndis::sync::current_processor() as usize, *queue);
                IsrOutcome::QueueDpc
            }
            None => IsrOutcome::Handled,
        }
    }

    fn dpc(&self, queue: &u16, ctx: &mut DpcContext<'_>) {
        let Some(device) = self.device.get() else {
            return;
        };
        // Before anything is taken: steering queues a DPC here for what it flags from now on.
        let here = ndis::sync::current_processor() as usize;
        let interrupted = device.steer.dpc_started(here, *queue);
        // A device that needs a reset reads as a lost link, so the stack stops sending to it
        // (the framework drops reports that change nothing, and orders reports from several
        // processors). Registers are read only while the device is healthy.
        let read_link = || (device.reported_link(), LINK_SPEED);
        match device.health() {
            Health::Healthy => {}
            // A reset or power transition owns the device; it reports the link when done.
            Health::Resetting | Health::Asleep => return,
            Health::NeedsReset | Health::Failed | Health::Gone => {
                device.ndis.link_changed(read_link, ctx.irql());
                return;
            }
        }
        let targets = device.plan.message_targets(*queue);
        let mut more = false;
        // One relaxed load while RSS is off.
        let rss_on = device.ndis.rss_on();
        let mut kick = 0u64;
        // A DPC steering queued here (no interrupt of this queue, nor more work of its own,
        // asked for it) only takes what was steered here: its rings are drained by the DPCs
        // their interrupts queue, and an empty pass over them would be all it did.
        let rx_pairs = if interrupted || !rss_on {
            targets.rx_pairs.clone()
        } else {
            0..0
        };
        for j in rx_pairs {
            let budget = ctx.budget().remaining().min(1024);
            let (done, pending) = device.receive(j as usize, budget, rss_on, &mut kick, ctx.irql());
            ctx.budget().take(done);
            more |= pending;
        }
        // Frames steered to this processor (by this DPC or others'), in order.
        // SeqCst: see `Steering::dpc_started`.
        if rss_on || device.steer.waiting.load(Ordering::SeqCst) != 0 {
            device.drain_steered(here, ctx.irql());
        }
        while kick != 0 {
            let cpu = kick.trailing_zeros();
            kick &= kick - 1;
            ctx.queue_dpc_on(ndis::interrupt::ProcessorSet::single(0, cpu));
        }
        for j in targets.tx_pairs {
            device.reap(device, j as usize, ctx.irql());
        }
        let config = targets.control_and_config
            && (device.plan.mode() != InterruptMode::Line
                || self.config_pending.swap(false, Ordering::AcqRel));
        // A configuration change (a link change, or the device saying it reset or needs a
        // reset: the status is read), or a ring fault found above.
        if config || !device.is_healthy() {
            device.ndis.link_changed(read_link, ctx.irql());
        }
        if targets.control_and_config {
            // A pended OID's command may have been answered.
            device.control_answered(ctx.irql());
        }
        if more {
            // The DPC that comes again drains the rings again.
            device.steer.dpc_queued(here, *queue);
            ctx.budget().request_more();
        }
    }
}

/// What virtio-net reports (it has no real speed); 10 Gb/s as QEMU's NIC models suggest.
pub const LINK_SPEED: u64 = 10_000_000_000;

/// A started adapter. Dropping it releases no NDIS object: after halt the framework deregisters
/// the interrupt (all DPCs done), then frees the shared memory, the DMA registration and the
/// mappings; the handler's device state goes with the last reference.
pub struct VioNetAdapter {
    _interrupt: InterruptRegistration<Interrupts>,
    device: Shared<Device>,
}

/// Maps the BARs the capabilities use and builds the transport over their windows.
fn transport(init: &Init<'_>, cfg: &impl ConfigSpace) -> Result<Transport<OwnedWindow>, Status> {
    let resources = init.resources();
    let resource_of = |bar: u8| bar_address(cfg, bar).and_then(|a| resources.memory_containing(a));
    let caps = find_capabilities(cfg, |bar| resource_of(bar).map(|r| r.length() as u64))
        .map_err(|_| Status::ADAPTER_NOT_FOUND)?;
    // One mapping per BAR the capabilities use (a BAR is 0..=5): no heap.
    let mut mapped: [Option<IoSpace>; 6] = [const { None }; 6];
    let mut window = |region: CapRegion| -> Result<OwnedWindow, Status> {
        let slot = mapped
            .get_mut(usize::from(region.bar))
            .ok_or(Status::RESOURCE_CONFLICT)?;
        let space = match slot {
            Some(s) => s.clone(),
            None => {
                let resource = resource_of(region.bar).ok_or(Status::RESOURCE_CONFLICT)?;
                slot.insert(init.map(resource)?).clone()
            }
        };
        OwnedWindow::new(&space, region.offset as usize, region.length as usize)
            .ok_or(Status::RESOURCE_CONFLICT)
    };
    let common = window(caps.common)?;
    let notify = window(caps.notify)?;
    let isr = window(caps.isr)?;
    let device = caps.device.map(&mut window).transpose()?;
    Transport::new(common, notify, caps.notify_off_multiplier, isr, device)
        .map_err(|_| Status::ADAPTER_NOT_FOUND)
}

/// The message interrupts to ask PnP for, before the device can be read: 2 per queue pair plus
/// one for the control queue and configuration changes, the per-queue plan of
/// [`VectorPlan`]. The device's own pair count is unknown here, so the pairs are the
/// processors, capped by `*NumRssQueues` when the keyword can be read (a larger device table
/// is never wasted: the plan keeps to what the device has). Pair *j*'s two messages run on
/// processor *j* (mod the processor count), so its receive and transmit DPCs stay on one
/// processor; the last message lands after the last pair's.
pub fn interrupt_request(filter: &ndis::pnp::ResourceFilter<'_>) -> ndis::pnp::InterruptRequest {
    let cpus = filter.processors().max(1);
    let wanted = filter.configuration().ok().map_or(cpus, |config| {
        keywords::NUM_QUEUES.read(&config, filter.passive())
    });
    let max_pairs = (ndis::pnp::MAX_MESSAGES - 1) / 2;
    let pairs = cpus.min(wanted).clamp(1, max_pairs);
    ndis::pnp::InterruptRequest::messages(
        2 * pairs + 1,
        ndis::pnp::MessageAffinity::Spread { per_processor: 2 },
    )
}

pub fn initialize(init: &mut Init<'_>) -> Result<(VioNetAdapter, AdapterInfo), Status> {
    let passive = init.passive();
    let cfg = init.pci_config();
    if cfg.config_u16(0) != Some(0x1AF4) || cfg.config_u16(2) != Some(0x1041) {
        return Err(Status::ADAPTER_NOT_FOUND);
    }
    let (wanted_pairs, rx_size, tx_size, jumbo, tagging, network_address, checksums, lso, rss) = {
        let c = init.configuration()?;
        let rss = keywords::RSS[0].read(&c, passive) != 0;
        for k in &keywords::RSS[1..] {
            // Declared for the advanced page; NDIS applies them to the table it sets.
            let _ = k.read(&c, passive);
        }
        (
            keywords::NUM_QUEUES.read(&c, passive) as u16,
            keywords::RECEIVE_BUFFERS.read(&c, passive) as u16,
            keywords::TRANSMIT_BUFFERS.read(&c, passive) as u16,
            keywords::JUMBO_PACKET.read(&c, passive) as usize,
            Tagging::from_keyword(keywords::PRIORITY_VLAN_TAG.read(&c, passive)),
            c.read_network_address(passive),
            ChecksumOffload::from_keywords(&c, ChecksumOffload::all(), passive),
            LargeSendOffload::from_keywords(&c, LargeSendOffload::all(), passive),
            rss,
        )
    };
    let t = transport(init, &cfg)?;

    // virtio 1.x 3.1.1: reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK.
    t.reset(|| ndis::sync::stall(10))
        .map_err(|_| Status::DEVICE_FAILED)?;
    t.add_status(status::ACKNOWLEDGE);
    t.add_status(status::DRIVER);
    let wanted = if rss {
        SUPPORTED_FEATURES
    } else {
        SUPPORTED_FEATURES & !RSS_FEATURES
    };
    let negotiated = t
        .negotiate_features_with(wanted, net::with_dependencies)
        .map_err(|_| Status::ADAPTER_NOT_FOUND)?;
    let config = t.net_config().map_err(|_| Status::DEVICE_FAILED)?;
    let device_pairs = if negotiated & features::MQ != 0 {
        config.max_virtqueue_pairs.unwrap_or(1).max(1)
    } else {
        1
    };
    // The configuration's `mac` is only valid with F_MAC (virtio 1.2, 5.1.4.2); otherwise a
    // random locally administered address, different per adapter (the BARs) and per boot.
    let device_mac = config.mac.filter(|_| negotiated & features::MAC != 0);
    let mac = device_mac.unwrap_or_else(|| {
        let bars = (0..6).filter_map(|bar| bar_address(&cfg, bar));
        let seed = bars.fold(ndis::time::performance_counter().ticks, |s, a| {
            s.rotate_left(17) ^ a
        });
        net::random_mac(seed)
    });
    // The frame size: the keyword, within what the device says it can carry (an MTU below
    // the IPv4 minimum of 68 is not believed).
    let device_frame = match config.mtu {
        Some(mtu) if negotiated & features::MTU != 0 && mtu >= 68 => mtu as usize + 14,
        _ => 1514,
    };
    let frame = FrameSize::new(jumbo.min(device_frame), device_frame);
    let cpus = ndis::sync::processor_count().clamp(1, 64) as u16;
    let max_pairs = device_pairs.min(wanted_pairs).min(cpus);

    // The interrupt first: its grant decides how many queues run.
    let queues = match ndis::heap::try_collect(0..2 * max_pairs + 1, init.passive()) {
        Ok(q) => q,
        Err(e) => {
            t.add_status(status::FAILED);
            return Err(e);
        }
    };
    let handler = Interrupts {
        isr: t.isr_window().clone(),
        device: Once::new(),
        queues,
        config_pending: AtomicBool::new(false),
    };
    let interrupt = match init.register_interrupt(handler) {
        Ok(r) => r,
        Err(e) => {
            t.add_status(status::FAILED);
            return Err(e.status);
        }
    };
    let granted = interrupt.grant().message_count() as u16;
    let control = (negotiated & features::CTRL_VQ != 0).then(|| net::control_queue(device_pairs));
    // NO_VECTOR on read-back: retry with fewer vectors (2, then 1); the line is the grant's
    // choice (MSISupported=0 in the INF), not something a driver can switch to under NDIS.
    let candidates = [granted, granted.min(2), granted.min(1)];
    let plan = candidates
        .into_iter()
        // The device's own pair count places the control queue (queue 2 x device pairs); the
        // pairs run are capped by the keyword and the processors.
        .map(|k| VectorPlan::new(k, device_pairs, max_pairs))
        .find(|plan| map_vectors(&t, plan, control));
    let Some(plan) = plan else {
        t.add_status(status::FAILED);
        return Err(Status::RESOURCE_CONFLICT);
    };
    let dma = match init.register_dma(0x1_0000) {
        Ok(d) => d,
        Err(e) => {
            t.add_status(status::FAILED);
            return Err(e);
        }
    };
    let device = Device::build(
        init, t, dma, plan, negotiated, frame, tagging, rx_size, tx_size, control,
    );
    let device = match device {
        Ok(mut d) => {
            d.rss_limits = config.rss;
            match Shared::try_new_or_back(d, init.passive()) {
                Ok(d) => d,
                Err(d) => {
                    // The queues are programmed: stopped before their memory is freed.
                    d.fail();
                    return Err(Status::RESOURCES);
                }
            }
        }
        // The framework deregisters the interrupt, then frees what `build` allocated.
        Err(e) => return Err(e),
    };
    // The handler gets the device before the device may interrupt: an interrupt it dropped
    // would never come again for an event-index ring.
    interrupt.handler().device.set(device.clone());
    device.transport.add_status(status::DRIVER_OK);
    device.notify_receive_queues(init.passive_mut());
    if plan.pairs() > 1 {
        // A refusal is not fatal: the device then keeps to pair 0, which stays correct.
        if device
            .set_queue_pairs(plan.pairs(), init.passive_mut())
            .is_err()
        {
            device.active_pairs.store(1, Ordering::Relaxed);
        }
    }
    // A locally set address, if the device can receive on it; otherwise the permanent one
    // stays current (as NDIS asks of a driver that cannot honour NetworkAddress).
    let current = network_address
        .filter(|&a| device.set_mac_address(a, init.passive_mut()).is_ok())
        .unwrap_or(mac);
    if device_mac.is_none() && current == mac {
        // The device does not know the generated address: tell it, where it can be told
        // (5.1.6.5.2: SHOULD, when the default differs from `mac`). Best effort.
        let _ = device.set_mac_address(mac, init.passive_mut());
    }
    let link_up = device.link_up();
    let mut info = AdapterInfo::ethernet(mac, (frame.frame - 14) as u32, LINK_SPEED, link_up);
    info.current_address = current;
    if tagging.priority {
        info.mac_options |= ndis::sys::NDIS_MAC_OPTION_8021P_PRIORITY;
    }
    if tagging.vlan {
        info.mac_options |= ndis::sys::NDIS_MAC_OPTION_8021Q_VLAN;
    }
    let hardware = checksum_offload(negotiated);
    if !hardware.is_empty() {
        let lso_caps = large_send_offload(negotiated, device.lso_fits(init.passive_mut()));
        info.offload = Some(OffloadInfo {
            hardware,
            enabled: checksums & hardware,
            lso: lso_caps,
            lso_enabled: lso_caps.map_or(LargeSendOffload::empty(), |c| lso & c.versions),
        });
    }
    if rss {
        let caps = rss_capabilities(&interrupt, &plan, &device);
        device.queue_cpus.set(caps.queue_processors);
        info.rss = Some(caps);
    }
    info.description = "ndis-rs virtio-net";
    info.receive_buffer_space = (rx_size as u32) * frame.buffer as u32;
    info.transmit_buffer_space = (tx_size as u32) * frame.buffer as u32;
    Ok((
        VioNetAdapter {
            _interrupt: interrupt,
            device,
        },
        info,
    ))
}

/// RSS over the running pairs' receive queues (by the device with `VIRTIO_NET_F_RSS`, else
/// software Toeplitz), each queue's default processor that of its receive message (pair j's
/// processor for a line or a shared message).
fn rss_capabilities(
    interrupt: &InterruptRegistration<Interrupts>,
    plan: &VectorPlan,
    device: &Device,
) -> ndis::rss::RssCapabilities {
    let pairs = device.active_pairs.load(Ordering::Relaxed) as u16;
    let grant = interrupt.grant();
    let messages = grant.message_count();
    let mut caps = ndis::rss::RssCapabilities::new(pairs, messages, messages > 1);
    if let ndis::interrupt::Grant::Messages(m) = grant {
        for j in 0..usize::from(pairs).min(ndis::rss::MAX_QUEUES) {
            let vector = plan
                .queue_vector(net::rx_queue(j as u16))
                .unwrap_or(pci::NO_VECTOR);
            if let Some(info) = m.get(usize::from(vector)) {
                let mask = info.affinity.mask();
                if mask != 0 && info.affinity.group() == 0 {
                    caps.queue_processors[j] = mask.trailing_zeros() as u16;
                }
            }
        }
    }
    caps
}

/// The checksum tasks the negotiated features allow. The IPv4 header checksum (which virtio
/// has no feature for) is computed or verified by the driver, offered along with the device's
/// TCP/UDP checksums in each direction.
fn checksum_offload(negotiated: u64) -> ChecksumOffload {
    let mut tasks = ChecksumOffload::empty();
    if negotiated & features::CSUM != 0 {
        tasks |= ChecksumOffload::TX;
    }
    if negotiated & features::GUEST_CSUM != 0 {
        tasks |= ChecksumOffload::RX;
    }
    tasks
}

/// Large send offload as the device segments TCP (`HOST_TSO4`/`6`, which need `CSUM`): up to
/// NetKVM's 62 KiB of payload, at least two segments; none when the transmit rings are too
/// small to hold two of the largest (`fits`), since every such send would then fail.
fn large_send_offload(negotiated: u64, fits: bool) -> Option<LsoCapabilities> {
    if !fits {
        return None;
    }
    let mut versions = LargeSendOffload::empty();
    if negotiated & features::HOST_TSO4 != 0 {
        versions |= LargeSendOffload::IPV4;
    }
    if negotiated & features::HOST_TSO6 != 0 {
        versions |= LargeSendOffload::IPV6;
    }
    (!versions.is_empty()).then_some(LsoCapabilities {
        versions,
        max_offload_size: crate::device::LSO_MAX_PAYLOAD,
        min_segment_count: 2,
    })
}

impl Miniport for VioNetAdapter {
    const EXTRA_OIDS: &'static [u32] = &[ndis::sys::OID_GEN_VLAN_ID];

    /// NDIS's 2 s default: the device status is polled that often (one register read), so a
    /// device that reset itself without saying so is found within 2 s.
    const CHECK_FOR_HANG_SECONDS: Option<u32> = Some(0);

    /// True for a device that needs a reset: it lost DRIVER_OK, set DEVICE_NEEDS_RESET, reset
    /// itself, wrote a ring it cannot have, or a previous reset failed. The link is reported
    /// down first. A sleeping, resetting or removed device is not touched and not "hung".
    fn check_for_hang(&self, adapter: &NdisAdapter, passive: &mut Passive<'_>) -> bool {
        let d = &self.device;
        d.check_health();
        match d.health() {
            Health::NeedsReset | Health::Failed => {
                adapter.link_changed(|| (d.reported_link(), LINK_SPEED), passive);
                true
            }
            _ => false,
        }
    }

    /// `MiniportResetEx` (DISPATCH_LEVEL): the device is re-initialized into what initialize
    /// set up, its control-queue state replayed, so NDIS need not restore addressing
    /// (`Ok(false)`). A failure leaves it reset and marked FAILED.
    fn reset(
        &self,
        _adapter: &NdisAdapter,
        dispatch: &mut Dispatch<'_>,
    ) -> Result<bool, ResetError> {
        // Stop (reset, datapath quiet, a pended control OID completed), then bring back: the
        // pair power management uses for D3 and D0.
        self.device.suspend(dispatch);
        match self.device.resume(dispatch) {
            Ok(()) => Ok(false),
            Err(s) if s == Status::ADAPTER_REMOVED => Err(ResetError::new(s)),
            Err(_) => Err(ResetError::new(Status::HARD_ERRORS)),
        }
    }

    /// Kept across sleep and hibernation (D3 only: virtio has no lighter state that keeps its
    /// rings), and not paused for it where NDIS allows (6.30 and later), as NetKVM does.
    const POWER: Option<PowerCapabilities> = Some(PowerCapabilities {
        no_pause_on_suspend: true,
        ..PowerCapabilities::D3
    });

    /// Leaving D0: the device is reset (it may lose power next) and the datapath goes quiet;
    /// receives NDIS still holds come back while asleep and wait in the pool.
    fn power_down(
        &self,
        _adapter: &NdisAdapter,
        _state: DevicePowerState,
        passive: &mut Passive<'_>,
    ) {
        self.device.suspend(passive);
    }

    /// Back in D0: the device is brought up again as initialize did (features, vectors,
    /// queues on their memory, receive buffers), its filter, multicast list, MAC and queue
    /// pairs replayed, and the link reported.
    fn power_up(&self, _adapter: &NdisAdapter, passive: &mut Passive<'_>) -> Result<(), Status> {
        self.device.resume(passive)
    }

    fn oid_query(
        &self,
        _adapter: &NdisAdapter,
        oid: u32,
        out: &mut QueryBuffer<'_>,
        _passive: &mut Passive<'_>,
    ) -> Result<(), Status> {
        match oid {
            // Listed whatever the keyword says (the OID list is fixed); 0 while VLANs are off.
            ndis::sys::OID_GEN_VLAN_ID => {
                out.write_u32(u32::from(self.device.vlan_id.load(Ordering::Relaxed)))
            }
            _ => Err(Status::NOT_SUPPORTED),
        }
    }

    fn oid_set(
        &self,
        _adapter: &NdisAdapter,
        oid: u32,
        data: &mut SetData<'_>,
        _request: &mut SetRequest<'_>,
    ) -> Result<usize, Status> {
        match oid {
            ndis::sys::OID_GEN_VLAN_ID => {
                let id = data.read_u32()?;
                // 4095 is reserved (IEEE 802.1Q), as the OID's documentation says.
                if id >= u32::from(ndis::nbl::Ieee8021Q::RESERVED_VLAN) {
                    return Err(Status::INVALID_DATA);
                }
                if id != 0 && !self.device.tagging.vlan {
                    return Err(Status::NOT_SUPPORTED);
                }
                self.device.vlan_id.store(id as u16, Ordering::Relaxed);
                Ok(4)
            }
            _ => Err(Status::NOT_SUPPORTED),
        }
    }

    fn send(
        &self,
        _adapter: &NdisAdapter,
        lists: &mut SendLists<'_>,
        irql: &mut DispatchOrBelow<'_>,
    ) {
        self.device.send(&self.device, lists, irql)
    }

    fn return_receives(
        &self,
        _adapter: &NdisAdapter,
        returned: &mut Returned<'_>,
        irql: &mut DispatchOrBelow<'_>,
    ) {
        self.device.returned(returned, irql);
    }

    /// Lists held for a full ring are completed (`NDIS_STATUS_PAUSED`, or the removed or
    /// failed device's status): a pause completes only once none is held.
    fn pause(&self, _adapter: &NdisAdapter, passive: &mut Passive<'_>) {
        let status = if self.device.is_healthy() {
            Status::PAUSED
        } else {
            self.device.health().send_status()
        };
        self.device.flush_backlog(status, passive);
    }

    fn quiesce(&self, _adapter: &NdisAdapter, passive: &mut Passive<'_>) -> Quiesced {
        // The device stops DMA and interrupts; the framework then deregisters the interrupt
        // (DPCs drained) and frees the shared memory, after this adapter is dropped.
        self.device.reset();
        self.device.flush_backlog(Status::FAILURE, passive);
        Quiesced::device_stopped()
    }

    fn set_packet_filter(
        &self,
        _adapter: &NdisAdapter,
        filter: u32,
        request: &mut SetRequest<'_>,
    ) -> Result<(), Status> {
        // Best effort: the filter NDIS asked for stands whatever the device made of it. Pended
        // until the device answered.
        self.device.set_packet_filter(filter, request);
        Ok(())
    }

    fn set_multicast_list(
        &self,
        _adapter: &NdisAdapter,
        list: &[[u8; 6]],
        request: &mut SetRequest<'_>,
    ) -> Result<(), Status> {
        self.device.set_multicast_list(list, request);
        Ok(())
    }

    /// The device gets what it can do of the new configuration (device RSS, hash reports);
    /// the rest is done in software. Never refused.
    fn rss_changed(
        &self,
        _adapter: &NdisAdapter,
        table: &ndis::rss::RssTable,
        passive: &mut Passive<'_>,
    ) -> Result<(), Status> {
        self.device.program_rss(table, passive);
        Ok(())
    }

    fn shutdown(&self, _adapter: &NdisAdapter, _action: ShutdownAction) {
        self.device.reset();
    }

    fn pnp_event(&self, _adapter: &NdisAdapter, event: PnpEvent) {
        if event == PnpEvent::SurpriseRemoved {
            self.device.mark_removed();
        }
    }
}
