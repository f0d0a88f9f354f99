//! `IoConnectInterruptEx` / `IoDisconnectInterruptEx`: kernel interrupt connection, the layer
//! NDIS builds on. Exported for WDM code, and used by the emulated `NdisMRegisterInterruptEx`.
//!
//! The `Version` protocol (in/out):
//! * `CONNECT_MESSAGE_BASED` on a device with message resources connects every message and writes
//!   the message table; on a line-only device it connects `FallBackServiceRoutine` to the line,
//!   writes the interrupt object and answers `Version = CONNECT_LINE_BASED`.
//! * `CONNECT_LINE_BASED` connects the device's line; `CONNECT_FULLY_SPECIFIED` connects the given
//!   vector, which must be the device's line.
//! * On a platform in pre-Vista mode (as with Iointex.lib on Windows XP) every version but
//!   `CONNECT_FULLY_SPECIFIED` fails and sets `Version = CONNECT_FULLY_SPECIFIED`, telling the
//!   caller to retry that way. The error code is not documented; the emulator returns
//!   `STATUS_NOT_SUPPORTED`.

use ndis_sys as sys;

use crate::InterruptResources;
use crate::bugcheck::{self, rule};
use crate::machine::{self, Connection, KInterrupt, Routine, State, vector_irql};
use crate::trace::Event;

pub(crate) const STATUS_NOT_FOUND: i32 = 0xC000_0225u32 as i32;
pub(crate) const STATUS_CONFLICTING_ADDRESSES: i32 = 0xC000_0018u32 as i32;

pub(crate) type LineRoutine =
    unsafe extern "win64-unwind" fn(sys::PKINTERRUPT, sys::PVOID) -> sys::BOOLEAN;
pub(crate) type MessageRoutine =
    unsafe extern "win64-unwind" fn(sys::PKINTERRUPT, sys::PVOID, u32) -> sys::BOOLEAN;

pub(crate) enum Request {
    Line {
        routine: LineRoutine,
        vector: Option<u32>,
    },
    Message {
        routine: MessageRoutine,
        fallback: Option<LineRoutine>,
    },
}

pub(crate) struct Connected {
    pub connection: usize,
    pub version: u32,
    /// First interrupt object (line) or the message table (message-based).
    pub table: sys::PIO_INTERRUPT_MESSAGE_INFO,
    pub kinterrupt: sys::PKINTERRUPT,
}

/// Connects `request` for `device`. `shared_lock` serializes every message under one lock at one
/// synchronize IRQL (what NDIS does for `MsiSyncWithAllMessages`).
pub(crate) fn connect(
    st: &mut State,
    device: usize,
    request: Request,
    context: usize,
    shared_lock: Option<usize>,
) -> Result<Connected, i32> {
    if st.fallible("IoConnectInterruptEx") {
        return Err(sys::STATUS_INSUFFICIENT_RESOURCES);
    }
    let ncpus = st.cpus.len();
    let all_cpus = if ncpus >= 64 {
        usize::MAX
    } else {
        (1usize << ncpus) - 1
    };
    let dev = &st.devices[device];
    let line_vector = dev.line_vector();
    let messages = dev.message_count();
    let shared_line = matches!(dev.resources, InterruptResources::Line { shared: true, .. });
    let base = dev.message_vector_base;
    let message_cpus = dev.message_cpus.clone();

    let connect_line =
        |st: &mut State, routine: LineRoutine, vector: u32| -> Result<Connected, i32> {
            let existing = st
                .kints
                .iter()
                .filter(|k| k.connected && k.vector == vector)
                .count();
            if existing > 0 && !shared_line {
                return Err(STATUS_CONFLICTING_ADDRESSES);
            }
            let irql = vector_irql(vector);
            let lock = shared_lock.unwrap_or_else(|| st.new_lock());
            st.kints.push(KInterrupt {
                vector,
                sync_irql: irql,
                affinity: all_cpus,
                routine: Routine::Line(routine),
                context,
                lock,
                connected: true,
            });
            let k = st.kints.len() - 1;
            // A level-triggered line asserted before anyone listened interrupts now.
            if st.devices[device].line.asserted {
                machine::pend_line(st, device);
            }
            st.connections.push(Connection {
                device,
                version: sys::CONNECT_LINE_BASED,
                kints: vec![k],
                table: None,
                live: true,
            });
            Ok(Connected {
                connection: st.connections.len() - 1,
                version: sys::CONNECT_LINE_BASED,
                table: core::ptr::null_mut(),
                kinterrupt: machine::kinterrupt_ptr(k),
            })
        };

    match request {
        Request::Line { routine, vector } => {
            let Some(line) = line_vector else {
                return Err(STATUS_NOT_FOUND);
            };
            if vector.is_some_and(|v| v != line) {
                return Err(sys::STATUS_INVALID_PARAMETER);
            }
            connect_line(st, routine, line)
        }
        Request::Message { routine, fallback } => {
            if messages == 0 {
                return match (fallback, line_vector) {
                    (Some(f), Some(line)) => connect_line(st, f, line),
                    _ => Err(STATUS_NOT_FOUND),
                };
            }
            let irqls: Vec<u8> = (0..messages)
                .map(|i| vector_irql(base + i % crate::machine::MESSAGE_VECTOR_SPAN))
                .collect();
            let unified = shared_lock
                .map(|_| irqls.iter().copied().max().unwrap_or(0))
                .unwrap_or(0);
            let mut kints = Vec::with_capacity(messages as usize);
            let words = 1 + 6 * messages as usize;
            let mut table = vec![0u64; words].into_boxed_slice();
            let info = table.as_mut_ptr().cast::<sys::IO_INTERRUPT_MESSAGE_INFO>();
            for i in 0..messages {
                let vector = base + i % crate::machine::MESSAGE_VECTOR_SPAN;
                let cpu = message_cpus
                    .get(i as usize)
                    .copied()
                    .unwrap_or(i as usize % ncpus);
                let lock = shared_lock.unwrap_or_else(|| st.new_lock());
                let irql = irqls[i as usize];
                st.kints.push(KInterrupt {
                    vector,
                    sync_irql: if unified != 0 { unified } else { irql },
                    affinity: 1 << cpu,
                    routine: Routine::Message(routine, i),
                    context,
                    lock,
                    connected: true,
                });
                let k = st.kints.len() - 1;
                kints.push(k);
                // SAFETY: `table` has 8 + 48 * messages bytes, 8-aligned; entry i is at 8 + 48 i.
                unsafe {
                    let entry = (*info).MessageInfo.as_mut_ptr().add(i as usize);
                    entry.write(sys::IO_INTERRUPT_MESSAGE_INFO_ENTRY {
                        MessageAddress: 0xFEE0_0000 | ((cpu as i64) << 12),
                        TargetProcessorSet: 1 << cpu,
                        InterruptObject: machine::kinterrupt_ptr(k),
                        MessageData: vector,
                        Vector: vector,
                        Irql: irql,
                        Mode: sys::Latched,
                        Polarity: sys::InterruptRisingEdge,
                    });
                }
            }
            // SAFETY: the header lies in the first 8 bytes of `table`.
            unsafe {
                (*info).UnifiedIrql = unified;
                (*info).MessageCount = messages;
            }
            st.connections.push(Connection {
                device,
                version: sys::CONNECT_MESSAGE_BASED,
                kints,
                table: Some(table),
                live: true,
            });
            let connection = st.connections.len() - 1;
            st.devices[device].message_connection = Some(connection);
            Ok(Connected {
                connection,
                version: sys::CONNECT_MESSAGE_BASED,
                table: info,
                kinterrupt: core::ptr::null_mut(),
            })
        }
    }
}

pub(crate) fn disconnect(st: &mut State, connection: usize) {
    let kints = std::mem::take(&mut st.connections[connection].kints);
    for k in kints {
        st.kints[k].connected = false;
    }
    st.connections[connection].live = false;
    st.connections[connection].table = None;
    let device = st.connections[connection].device;
    if st.devices[device].message_connection == Some(connection) {
        st.devices[device].message_connection = None;
    }
    st.event(|| Event::Disconnected { device });
}

fn device_of_pdo(st: &State, pdo: sys::PDEVICE_OBJECT) -> Option<usize> {
    st.devices
        .iter()
        .position(|d| std::ptr::eq(d.pdo.as_ptr().cast(), pdo))
}

/// # Safety
/// `params` points to a valid IO_CONNECT_INTERRUPT_PARAMETERS, as for the kernel export.
pub(crate) unsafe fn io_connect_interrupt_ex(
    params: *mut sys::IO_CONNECT_INTERRUPT_PARAMETERS,
) -> i32 {
    let m = machine::current();
    machine::preempt(&m);
    let status = {
        let mut st = m.st();
        st.require_irql(sys::PASSIVE_LEVEL, "IoConnectInterruptEx");
        // SAFETY: the caller passes a valid parameter block.
        let p = unsafe { &mut *params };
        if st.config.pre_vista_io_connect && p.Version != sys::CONNECT_FULLY_SPECIFIED {
            p.Version = sys::CONNECT_FULLY_SPECIFIED;
            return sys::STATUS_NOT_SUPPORTED;
        }
        match p.Version {
            sys::CONNECT_FULLY_SPECIFIED => {
                // SAFETY: Version selects the FullySpecified member.
                let fs = unsafe { p.u.FullySpecified };
                connect_wdm(
                    &mut st,
                    fs.PhysicalDeviceObject,
                    fs.ServiceRoutine,
                    None,
                    fs.ServiceContext,
                    fs.SpinLock,
                    Some(fs.Vector),
                )
                .map(|c| {
                    // Disconnected later with the Version the caller holds: FULLY_SPECIFIED.
                    st.connections[c.connection].version = sys::CONNECT_FULLY_SPECIFIED;
                    // SAFETY: InterruptObject is the caller's out-pointer.
                    unsafe { fs.InterruptObject.write(c.kinterrupt) };
                })
            }
            sys::CONNECT_LINE_BASED => {
                // SAFETY: Version selects the LineBased member.
                let lb = unsafe { p.u.LineBased };
                connect_wdm(
                    &mut st,
                    lb.PhysicalDeviceObject,
                    lb.ServiceRoutine,
                    None,
                    lb.ServiceContext,
                    lb.SpinLock,
                    None,
                )
                .map(|c| {
                    // SAFETY: InterruptObject is the caller's out-pointer.
                    unsafe { lb.InterruptObject.write(c.kinterrupt) };
                })
            }
            sys::CONNECT_MESSAGE_BASED => {
                // SAFETY: Version selects the MessageBased member.
                let mb = unsafe { p.u.MessageBased };
                match connect_wdm(
                    &mut st,
                    mb.PhysicalDeviceObject,
                    mb.FallBackServiceRoutine,
                    Some(mb.MessageServiceRoutine),
                    mb.ServiceContext,
                    mb.SpinLock,
                    None,
                ) {
                    Ok(c) if c.version == sys::CONNECT_MESSAGE_BASED => {
                        // SAFETY: the out-pointer of a message-based request.
                        unsafe { mb.ConnectionContext.InterruptMessageTable.write(c.table) };
                        Ok(())
                    }
                    Ok(c) => {
                        p.Version = sys::CONNECT_LINE_BASED;
                        // SAFETY: for a fallback connection the same out-pointer receives the
                        // interrupt object.
                        unsafe { mb.ConnectionContext.InterruptObject.write(c.kinterrupt) };
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            _ => Err(sys::STATUS_INVALID_PARAMETER),
        }
        .map_or_else(|e| e, |()| sys::STATUS_SUCCESS)
    };
    machine::preempt(&m);
    status
}

fn connect_wdm(
    st: &mut State,
    pdo: sys::PDEVICE_OBJECT,
    line: sys::PKSERVICE_ROUTINE,
    message: Option<sys::PKMESSAGE_SERVICE_ROUTINE>,
    context: sys::PVOID,
    spin_lock: *mut sys::KSPIN_LOCK,
    vector: Option<u32>,
) -> Result<Connected, i32> {
    let Some(device) = device_of_pdo(st, pdo) else {
        return Err(sys::STATUS_INVALID_PARAMETER);
    };
    let shared_lock = (!spin_lock.is_null()).then(|| {
        let addr = spin_lock as usize;
        if let Some(&l) = st.lock_by_address.get(&addr) {
            l
        } else {
            let l = st.new_lock();
            st.lock_by_address.insert(addr, l);
            l
        }
    });
    let request = match message {
        Some(routine) => Request::Message {
            routine: routine.ok_or(sys::STATUS_INVALID_PARAMETER)?,
            fallback: line,
        },
        None => Request::Line {
            routine: line.ok_or(sys::STATUS_INVALID_PARAMETER)?,
            vector,
        },
    };
    let c = connect(st, device, request, context as usize, shared_lock)?;
    let what = if c.version == sys::CONNECT_MESSAGE_BASED {
        format!("{} messages", st.devices[device].message_count())
    } else {
        "line".to_string()
    };
    st.event(|| Event::Connected {
        device,
        version: c.version,
        what,
    });
    Ok(c)
}

/// # Safety
/// `params` points to a valid IO_DISCONNECT_INTERRUPT_PARAMETERS, as for the kernel export.
pub(crate) unsafe fn io_disconnect_interrupt_ex(
    params: *mut sys::IO_DISCONNECT_INTERRUPT_PARAMETERS,
) {
    let m = machine::current();
    machine::preempt(&m);
    let mut st = m.st();
    st.require_irql(sys::PASSIVE_LEVEL, "IoDisconnectInterruptEx");
    // SAFETY: the caller passes a valid parameter block; the union is read as an address only.
    let (version, context) = unsafe {
        (
            (*params).Version,
            (*params).ConnectionContext.Generic as usize,
        )
    };
    let found = st.connections.iter().position(|c| {
        c.live
            && c.version == version
            && match &c.table {
                Some(t) => t.as_ptr() as usize == context,
                None => c
                    .kints
                    .first()
                    .is_some_and(|&k| machine::kinterrupt_ptr(k) as usize == context),
            }
    });
    match found {
        Some(c) => disconnect(&mut st, c),
        None => bugcheck::raise(
            bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
            [rule::INVALID_HANDLE, context, version as usize, 0],
            format!(
                "IoDisconnectInterruptEx: no live connection with Version {version} and context {context:#x}; \
                 pass the Version IoConnectInterruptEx returned and the object or table it wrote, once"
            ),
        ),
    }
}
