//! The PnP manager's side of a start, for a driver that registered PnP characteristics from
//! `MiniportSetOptions`: `MiniportAddDevice`, then IRP_MN_FILTER_RESOURCE_REQUIREMENTS
//! (`MiniportFilterResourceRequirements` with the bus's `IO_RESOURCE_REQUIREMENTS_LIST` in
//! `Irp->IoStatus.Information`), then the resource assignment, which follows the list the driver
//! handed back, then IRP_MN_START_DEVICE (`MiniportStartDevice`); `MiniportInitializeEx` comes
//! after. `MiniportRemoveDevice` follows halt, or a start or initialize that failed.
//!
//! What PnP grants from the filtered list (the first configuration, where Windows prefers it):
//! * messages: as many as its message descriptors name, at most the device's MSI-X table (or
//!   MSI capability) and the platform's limit (the `granted` of the test's
//!   [`InterruptResources`]); message *i* runs on the lowest processor of its descriptor's
//!   `TargetedProcessors` with `IrqPolicySpecifiedProcessors`, on processor *i* mod N otherwise
//!   (MSI messages share one address, so they keep the default);
//! * no message descriptor left: the line alternative (an unshared line), or nothing.

use ndis_sys as sys;

use crate::bugcheck::{self, rule};
use crate::machine::{self, Callback, Machine};
use crate::ndis::{AdapterState, adapter_handle};
use crate::{InterruptResources, memory};

/// What the driver's `MiniportFilterResourceRequirements` left in the first configuration: what
/// it asked PnP for, before PnP's own limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterruptAsk {
    /// Message interrupts asked for.
    pub messages: u32,
    /// Per message: the processor it is pinned to (`IrqPolicySpecifiedProcessors`, the lowest
    /// processor of its mask), or None where the platform's policy decides.
    pub processors: Vec<Option<usize>>,
    /// Whether a line interrupt is listed (as the requirement, or as the messages' alternative).
    pub line: bool,
}

/// The PnP state of an adapter whose driver registered PnP handlers.
#[derive(Debug, Default)]
pub(crate) struct AdapterPnp {
    /// `MiniportAddDeviceContext` from the add-device registration attributes.
    pub add_context: Option<usize>,
    pub asked: Option<InterruptAsk>,
    pub removed: bool,
}

const TOKEN: u32 = sys::CM_RESOURCE_INTERRUPT_MESSAGE_TOKEN;
const DESCRIPTOR: usize = core::mem::size_of::<sys::IO_RESOURCE_DESCRIPTOR>();

fn descriptor(option: u8, kind: u8, flags: u16, u: sys::IO_RESOURCE_DESCRIPTOR_U) -> [u8; 32] {
    let d = sys::IO_RESOURCE_DESCRIPTOR {
        Option: option,
        Type: kind,
        ShareDisposition: sys::CmResourceShareDeviceExclusive,
        Spare1: 0,
        Flags: flags,
        Spare2: 0,
        u,
    };
    // SAFETY: the descriptor is 32 bytes of plain data without padding.
    unsafe { core::mem::transmute::<sys::IO_RESOURCE_DESCRIPTOR, [u8; DESCRIPTOR]>(d) }
}

fn interrupt(min: u32, max: u32) -> sys::IO_RESOURCE_DESCRIPTOR_U {
    sys::IO_RESOURCE_DESCRIPTOR_U {
        Interrupt: sys::IO_RESOURCE_INTERRUPT {
            MinimumVector: min,
            MaximumVector: max,
            AffinityPolicy: sys::IrqPolicyMachineDefault,
            Group: 0,
            PriorityPolicy: sys::IrqPriorityUndefined,
            TargetedProcessors: 0,
        },
    }
}

/// The requirements the bus reports for device `d`: its BARs, then its interrupts (one
/// descriptor per MSI-X table entry or one for all MSI messages, with the line as their
/// alternative; or the line alone).
fn requirements(st: &machine::State, d: usize) -> Vec<u8> {
    let device = &st.devices[d];
    let mut descriptors: Vec<[u8; DESCRIPTOR]> = Vec::new();
    for bar in &device.pci.bars {
        let u = sys::IO_RESOURCE_DESCRIPTOR_U {
            Memory: sys::IO_RESOURCE_MEMORY {
                Length: bar.size as u32,
                Alignment: bar.size as u32,
                MinimumAddress: bar.physical as i64,
                MaximumAddress: (bar.physical + bar.size - 1) as i64,
            },
        };
        descriptors.push(descriptor(0, sys::CmResourceTypeMemory, 0, u));
    }
    let message = sys::CM_RESOURCE_INTERRUPT_MESSAGE | sys::CM_RESOURCE_INTERRUPT_LATCHED;
    let line = line_of(d);
    match device.offer {
        InterruptResources::None => {}
        InterruptResources::Line { line, .. } => {
            let v = machine::LINE_VECTOR_BASE + line as u32;
            descriptors.push(descriptor(
                0,
                sys::CmResourceTypeInterrupt,
                0,
                interrupt(v, v),
            ));
        }
        InterruptResources::Msi { requested, .. } => {
            let u = interrupt(TOKEN - (requested.max(1) - 1), TOKEN);
            descriptors.push(descriptor(0, sys::CmResourceTypeInterrupt, message, u));
        }
        InterruptResources::MsiX { requested, .. } => {
            for _ in 0..requested {
                let u = interrupt(TOKEN, TOKEN);
                descriptors.push(descriptor(0, sys::CmResourceTypeInterrupt, message, u));
            }
        }
    }
    if matches!(
        device.offer,
        InterruptResources::Msi { .. } | InterruptResources::MsiX { .. }
    ) {
        let v = machine::LINE_VECTOR_BASE + line as u32;
        let alternative = sys::IO_RESOURCE_ALTERNATIVE;
        descriptors.push(descriptor(
            alternative,
            sys::CmResourceTypeInterrupt,
            0,
            interrupt(v, v),
        ));
    }
    let mut b = vec![0u8; sys::IO_RESOURCE_REQUIREMENTS_LIST_HEADER];
    b[4..8].copy_from_slice(&5u32.to_le_bytes()); // PCIBus
    b[12..16].copy_from_slice(&(d as u32).to_le_bytes());
    b[28..32].copy_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&(descriptors.len() as u32).to_le_bytes());
    for d in &descriptors {
        b.extend_from_slice(d);
    }
    let size = b.len() as u32;
    b[..4].copy_from_slice(&size.to_le_bytes());
    b
}

/// The line a device falls back to when its driver removes the message interrupts.
fn line_of(d: usize) -> u8 {
    (d % 16) as u8
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// Reads the first configuration of a filtered list; `Err((what, detail))` for a list PnP
/// cannot use.
fn first_configuration(b: &[u8], cpus: usize) -> Result<InterruptAsk, (usize, usize, String)> {
    let malformed = |detail: usize, why: String| (rule::REQUIREMENTS_MALFORMED, detail, why);
    let header = sys::IO_RESOURCE_REQUIREMENTS_LIST_HEADER;
    if b.len() < header + sys::IO_RESOURCE_LIST_HEADER {
        return Err(malformed(
            b.len(),
            format!("ListSize {} is shorter than one configuration", b.len()),
        ));
    }
    let lists = u32_at(b, 28) as usize;
    if lists == 0 {
        return Err(malformed(b.len(), "AlternativeLists is 0".into()));
    }
    let mut at = header;
    let mut first = None;
    for i in 0..lists {
        if at + sys::IO_RESOURCE_LIST_HEADER > b.len() {
            return Err(malformed(
                b.len(),
                format!("configuration {i} starts past ListSize"),
            ));
        }
        let n = u32_at(b, at + 4) as usize;
        let end = n
            .checked_mul(DESCRIPTOR)
            .and_then(|x| x.checked_add(at + sys::IO_RESOURCE_LIST_HEADER));
        let Some(end) = end.filter(|&e| e <= b.len()) else {
            return Err(malformed(
                b.len(),
                format!(
                    "configuration {i}: {n} descriptors do not fit in ListSize {}",
                    b.len()
                ),
            ));
        };
        if i == 0 {
            first = Some((at + sys::IO_RESOURCE_LIST_HEADER, n));
        }
        at = end;
    }
    let (start, n) = first.expect("one configuration at least");
    let mut ask = InterruptAsk {
        messages: 0,
        processors: Vec::new(),
        line: false,
    };
    for i in 0..n {
        let d = &b[start + i * DESCRIPTOR..][..DESCRIPTOR];
        if d[1] != sys::CmResourceTypeInterrupt {
            continue;
        }
        if u16_at(d, 4) & sys::CM_RESOURCE_INTERRUPT_MESSAGE == 0 {
            ask.line = true;
            continue;
        }
        let (min, max) = (u32_at(d, 8), u32_at(d, 12));
        let Some(count) = max.checked_sub(min).map(|c| c + 1) else {
            return Err(malformed(
                i,
                format!("descriptor {i}: MinimumVector {min:#x} above MaximumVector {max:#x}"),
            ));
        };
        let pinned = if u16_at(d, 16) == sys::IrqPolicySpecifiedProcessors {
            let mask = u64::from_le_bytes(d[24..32].try_into().unwrap()) as usize;
            let usable = if cpus >= 64 {
                mask
            } else {
                mask & ((1 << cpus) - 1)
            };
            if usable == 0 {
                return Err((
                    rule::REQUIREMENTS_NO_PROCESSOR,
                    ask.messages as usize,
                    format!(
                        "message {} is pinned (IrqPolicySpecifiedProcessors) to mask {mask:#x}, which \
                         names no processor of this {cpus}-processor machine",
                        ask.messages
                    ),
                ));
            }
            Some(usable.trailing_zeros() as usize)
        } else {
            None
        };
        for _ in 0..count {
            ask.messages += 1;
            ask.processors.push(pinned);
        }
    }
    Ok(ask)
}

fn call_filter(
    m: &Machine,
    a: usize,
    handler: sys::MINIPORT_PNP_IRP_HANDLER,
    context: usize,
) -> Result<(), sys::NDIS_STATUS> {
    let Some(filter) = handler else {
        return Ok(());
    };
    let (list, cpu, cpus) = {
        let st = m.st();
        let d = st.ndis.adapters[a].device;
        (requirements(&st, d), st.cpu, st.cpus.len())
    };
    let original = memory::allocate_pool(list.len(), 0);
    // SAFETY: a fresh block of list.len() bytes.
    unsafe { std::ptr::copy_nonoverlapping(list.as_ptr(), original, list.len()) };
    // SAFETY: all-zero is a valid IRP head and tail (null pointers, zeros).
    let mut irp: Box<sys::IRP> = Box::new(unsafe { std::mem::zeroed() });
    irp.Type = sys::IO_TYPE_IRP;
    irp.Size = core::mem::size_of::<sys::IRP>() as u16;
    irp.IoStatus.Information = original as usize;
    let irp_ptr: *mut sys::IRP = &mut *irp;
    let status = machine::on_cpu(
        m,
        cpu,
        sys::PASSIVE_LEVEL,
        Callback::FilterResources(a),
        || {
            // SAFETY: the driver's handler with its add-device context and an IRP that lives
            // across the call, at PASSIVE_LEVEL, as NDIS calls it.
            unsafe { filter(context as sys::NDIS_HANDLE, irp_ptr) }
        },
    );
    let handed_back = irp.IoStatus.Information as *mut u8;
    if status != sys::NDIS_STATUS_SUCCESS {
        // The IRP fails; PnP frees whatever list it carries.
        if !handed_back.is_null() {
            memory::release_pool(handed_back);
        }
        return Err(status);
    }
    let ask = if handed_back.is_null() {
        InterruptAsk {
            messages: 0,
            processors: Vec::new(),
            line: false,
        }
    } else {
        // SAFETY: the list the driver handed back starts with its size.
        let size = unsafe { handed_back.cast::<u32>().read_unaligned() } as usize;
        let known = m
            .st()
            .pool
            .live
            .get(&(handed_back as usize))
            .map(|a| a.size);
        let Some(block) = known else {
            bugcheck::raise(
                bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
                [
                    rule::RESOURCE_REQUIREMENTS,
                    handed_back as usize,
                    rule::REQUIREMENTS_MALFORMED,
                    size,
                ],
                "MiniportFilterResourceRequirements left a list in Irp->IoStatus.Information that is \
                 not pool the driver allocated (PnP frees it with ExFreePool)",
            );
        };
        if size > block {
            bugcheck::raise(
                bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
                [
                    rule::RESOURCE_REQUIREMENTS,
                    handed_back as usize,
                    rule::REQUIREMENTS_MALFORMED,
                    size,
                ],
                format!(
                    "the filtered list's ListSize {size} is larger than its {block}-byte block"
                ),
            );
        }
        // SAFETY: `size` bytes of a live pool block.
        let bytes = unsafe { std::slice::from_raw_parts(handed_back, size) }.to_vec();
        memory::release_pool(handed_back);
        match first_configuration(&bytes, cpus) {
            Ok(ask) => ask,
            Err((what, detail, why)) => bugcheck::raise(
                bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
                [
                    rule::RESOURCE_REQUIREMENTS,
                    handed_back as usize,
                    what,
                    detail,
                ],
                format!(
                    "MiniportFilterResourceRequirements of adapter {a} handed back a list PnP cannot use: {why}"
                ),
            ),
        }
    };
    let mut st = m.st();
    assign(&mut st, a, &ask);
    st.ndis.adapters[a].pnp.as_mut().expect("pnp adapter").asked = Some(ask);
    Ok(())
}

/// PnP's assignment from what the driver asked for.
fn assign(st: &mut machine::State, a: usize, ask: &InterruptAsk) {
    let d = st.ndis.adapters[a].device;
    let ncpus = st.cpus.len();
    let offer = st.devices[d].offer;
    let (resources, cpus) = match offer {
        InterruptResources::MsiX { requested, granted } if ask.messages > 0 => {
            let n = ask.messages.min(requested).min(granted);
            let cpus = (0..n as usize)
                .map(|i| ask.processors[i].unwrap_or(i % ncpus))
                .collect();
            (
                InterruptResources::MsiX {
                    requested,
                    granted: n,
                },
                cpus,
            )
        }
        InterruptResources::Msi { requested, granted } if ask.messages > 0 => {
            let n = ask.messages.min(requested).min(granted);
            (
                InterruptResources::Msi {
                    requested,
                    granted: n,
                },
                Vec::new(),
            )
        }
        InterruptResources::Msi { .. } | InterruptResources::MsiX { .. } if ask.line => (
            InterruptResources::Line {
                line: line_of(d),
                shared: false,
            },
            Vec::new(),
        ),
        InterruptResources::Msi { .. } | InterruptResources::MsiX { .. } => {
            (InterruptResources::None, Vec::new())
        }
        other => (other, Vec::new()),
    };
    let device = &mut st.devices[d];
    device.resources = resources;
    device.message_cpus = cpus;
    if let Some(f) = device.pci.function.as_mut() {
        f.interrupts_assigned(crate::pci::InterruptMode::of(resources));
    }
}

/// AddDevice, filter, start, for adapter `a` (already in the adapter table, Initializing).
pub(crate) fn start(m: &Machine, a: usize) -> Result<(), sys::NDIS_STATUS> {
    let (chars, driver_context, cpu) = {
        let mut st = m.st();
        let driver = st.ndis.driver.as_ref().expect("a registered driver");
        let chars = driver.pnp.expect("PnP characteristics registered");
        let context = driver.context;
        st.ndis.adapters[a].pnp = Some(AdapterPnp::default());
        st.ndis.adapters[a].lifecycle.push("MiniportAddDevice");
        (chars, context, st.cpu)
    };
    let add = chars.MiniportAddDeviceHandler;
    let status = match add {
        Some(add) => machine::on_cpu(m, cpu, sys::PASSIVE_LEVEL, Callback::AddDevice(a), || {
            // SAFETY: the driver's AddDevice with the adapter's handle and the driver context,
            // at PASSIVE_LEVEL, as NDIS calls it.
            unsafe { add(adapter_handle(a), driver_context as sys::NDIS_HANDLE) }
        }),
        None => sys::NDIS_STATUS_SUCCESS,
    };
    if status != sys::NDIS_STATUS_SUCCESS {
        // No device to remove: RemoveDevice pairs with a successful AddDevice only.
        let mut st = m.st();
        st.ndis.adapters[a].state = AdapterState::Failed;
        st.ndis.adapters[a]
            .pnp
            .as_mut()
            .expect("pnp adapter")
            .removed = true;
        return Err(status);
    }
    let context = {
        let st = m.st();
        let pnp = st.ndis.adapters[a].pnp.as_ref().expect("pnp adapter");
        match (add, pnp.add_context) {
            (Some(_), None) => bugcheck::raise(
                bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
                [
                    rule::ADD_DEVICE_ATTRIBUTES,
                    adapter_handle(a) as usize,
                    0,
                    0,
                ],
                format!(
                    "MiniportAddDevice of adapter {a} returned NDIS_STATUS_SUCCESS without setting the \
                     add-device registration attributes (NdisMSetMiniportAttributes with \
                     NDIS_MINIPORT_ADD_DEVICE_REGISTRATION_ATTRIBUTES): NDIS has no context to pass on"
                ),
            ),
            (_, c) => c.unwrap_or(0),
        }
    };
    m.st().ndis.adapters[a]
        .lifecycle
        .push("MiniportFilterResourceRequirements");
    let filtered = call_filter(
        m,
        a,
        chars.MiniportFilterResourceRequirementsHandler,
        context,
    );
    let started = filtered.and_then(|()| {
        m.st().ndis.adapters[a]
            .lifecycle
            .push("MiniportStartDevice");
        let Some(start) = chars.MiniportStartDeviceHandler else {
            return Ok(());
        };
        // SAFETY: all-zero is a valid IRP.
        let mut irp: Box<sys::IRP> = Box::new(unsafe { std::mem::zeroed() });
        irp.Type = sys::IO_TYPE_IRP;
        irp.Size = core::mem::size_of::<sys::IRP>() as u16;
        let irp_ptr: *mut sys::IRP = &mut *irp;
        let status = machine::on_cpu(m, cpu, sys::PASSIVE_LEVEL, Callback::StartDevice(a), || {
            // SAFETY: the driver's StartDevice with its context and an IRP that lives across
            // the call, at PASSIVE_LEVEL.
            unsafe { start(context as sys::NDIS_HANDLE, irp_ptr) }
        });
        if status == sys::NDIS_STATUS_SUCCESS {
            Ok(())
        } else {
            Err(status)
        }
    });
    if let Err(status) = started {
        m.st().ndis.adapters[a].state = AdapterState::Failed;
        remove(m, a);
        return Err(status);
    }
    Ok(())
}

/// `MiniportRemoveDevice`, once, for an adapter whose AddDevice succeeded.
pub(crate) fn remove(m: &Machine, a: usize) {
    let (remove, context, cpu) = {
        let mut st = m.st();
        let cpu = st.cpu;
        let remove = st
            .ndis
            .driver
            .as_ref()
            .and_then(|d| d.pnp)
            .and_then(|p| p.MiniportRemoveDeviceHandler);
        let Some(pnp) = st.ndis.adapters[a].pnp.as_mut() else {
            return;
        };
        if pnp.removed {
            return;
        }
        pnp.removed = true;
        let context = pnp.add_context.unwrap_or(0);
        st.ndis.adapters[a].lifecycle.push("MiniportRemoveDevice");
        (remove, context, cpu)
    };
    if let Some(remove) = remove {
        machine::on_cpu(
            m,
            cpu,
            sys::PASSIVE_LEVEL,
            Callback::RemoveDevice(a),
            || {
                // SAFETY: the driver's RemoveDevice with its add-device context, at PASSIVE_LEVEL,
                // after which NDIS forgets the context.
                unsafe { remove(context as sys::NDIS_HANDLE) }
            },
        );
    }
}

/// `NdisMSetMiniportAttributes` with add-device registration attributes, from AddDevice.
pub(crate) fn add_device_attributes(
    st: &mut machine::State,
    a: usize,
    attributes: *const sys::NDIS_MINIPORT_ADAPTER_ATTRIBUTES,
) -> sys::NDIS_STATUS {
    // SAFETY: the header said this is the add-device member.
    let header = unsafe { (*attributes).Header };
    if header.Revision != sys::NDIS_MINIPORT_ADD_DEVICE_REGISTRATION_ATTRIBUTES_REVISION_1 {
        return sys::NDIS_STATUS_BAD_VERSION;
    }
    if header.Size < sys::NDIS_SIZEOF_MINIPORT_ADD_DEVICE_REGISTRATION_ATTRIBUTES_REVISION_1 {
        crate::ndis::header_bugcheck(
            "NdisMSetMiniportAttributes",
            "add-device registration attributes",
            header,
            "0xA4 / 1 / 20",
        );
    }
    // SAFETY: as above.
    let context = unsafe {
        (*attributes)
            .AddDeviceRegistrationAttributes
            .MiniportAddDeviceContext
    };
    let pnp = st.ndis.adapters[a].pnp.as_mut().expect("pnp adapter");
    if pnp.add_context.is_some() {
        bugcheck::raise(
            bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
            [
                rule::ADD_DEVICE_ATTRIBUTES,
                adapter_handle(a) as usize,
                1,
                0,
            ],
            "NdisMSetMiniportAttributes: add-device registration attributes set twice",
        );
    }
    pnp.add_context = Some(context as usize);
    sys::NDIS_STATUS_SUCCESS
}

/// After a successful start: initialize gets the resources PnP assigned and the add-device
/// context.
pub(crate) fn after_start(st: &mut machine::State, a: usize) {
    let d = st.ndis.adapters[a].device;
    let resources = crate::resource_list(&st.devices[d]);
    let adapter = &mut st.ndis.adapters[a];
    adapter.resources = resources;
    adapter.init_params.AllocatedResources = adapter.resources.as_mut_ptr().cast();
    let context = adapter
        .pnp
        .as_ref()
        .and_then(|p| p.add_context)
        .unwrap_or(0);
    adapter.init_params.MiniportAddDeviceContext = context as sys::NDIS_HANDLE;
}

/// How the loaded driver registered (`NdisMRegisterMiniportDriver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegisteredDriver {
    /// `MajorNdisVersion.MinorNdisVersion`.
    pub ndis_version: (u8, u8),
    /// `Header.Revision` of the characteristics.
    pub characteristics_revision: u8,
    /// Whether `MiniportSetOptions` registered PnP characteristics.
    pub pnp_handlers: bool,
}

impl crate::Emulator {
    /// The live driver registration, if any.
    pub fn registered_driver(&self) -> Option<RegisteredDriver> {
        let st = self.st();
        let d = st.ndis.driver.as_ref().filter(|d| d.live)?;
        Some(RegisteredDriver {
            ndis_version: (d.chars.MajorNdisVersion, d.chars.MinorNdisVersion),
            characteristics_revision: d.chars.Header.Revision,
            pnp_handlers: d.pnp.is_some(),
        })
    }

    /// What the driver's `MiniportFilterResourceRequirements` asked PnP for (None when the
    /// driver has no PnP handlers, or the filter never completed).
    pub fn interrupt_ask(&self, a: crate::AdapterId) -> Option<InterruptAsk> {
        self.st().ndis.adapters[a.0].pnp.as_ref()?.asked.clone()
    }

    /// The driver's PnP and lifecycle handlers called for adapter `a`, in order
    /// (`MiniportAddDevice`, `MiniportFilterResourceRequirements`, `MiniportStartDevice`,
    /// `MiniportInitializeEx`, `MiniportHaltEx`, `MiniportRemoveDevice`).
    pub fn lifecycle(&self, a: crate::AdapterId) -> Vec<&'static str> {
        self.st().ndis.adapters[a.0].lifecycle.clone()
    }

    /// The processor each granted message of `device` targets (what its ISR and DPCs run on).
    pub fn message_processors(&self, device: crate::DeviceId) -> Vec<usize> {
        let st = self.st();
        let n = st.devices[device.0].message_count() as usize;
        let ncpus = st.cpus.len();
        let cpus = &st.devices[device.0].message_cpus;
        (0..n)
            .map(|i| cpus.get(i).copied().unwrap_or(i % ncpus))
            .collect()
    }

    /// The interrupt resources PnP assigned `device` (after the driver's filtering).
    pub fn assigned_resources(&self, device: crate::DeviceId) -> InterruptResources {
        self.st().devices[device.0].resources
    }
}
