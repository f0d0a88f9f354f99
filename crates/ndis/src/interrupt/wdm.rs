//! WDM interrupts: a safe wrapper over `IoConnectInterruptEx` that performs the documented
//! protocol and says what it connected.
//!
//! 1. Ask for `CONNECT_MESSAGE_BASED`, with a fallback line ISR.
//! 2. Read `Version` back: `CONNECT_MESSAGE_BASED` means messages were connected; `CONNECT_LINE_BASED`
//!    means the device has only a line and the fallback was connected to it.
//! 3. If the call failed with `Version` turned into `CONNECT_FULLY_SPECIFIED` (a platform that
//!    only knows that version), retry fully specified with the caller's description of the line.

use alloc::boxed::Box;
use core::marker::PhantomPinned;
use core::pin::Pin;

use ndis_sys as sys;

use super::{MessageId, ProcessorSet, Source, TriggerMode};
use crate::irql::Passive;

/// A WDM driver's interrupt service routine.
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
///
/// use ndis::interrupt::Source;
/// use ndis::interrupt::wdm::WdmInterruptHandler;
///
/// /// Claims the line when the device's cause register (here a stand-in) is set.
/// struct Device {
///     cause: AtomicU32,
/// }
///
/// impl WdmInterruptHandler for Device {
///     fn isr(&self, source: Source) -> bool {
///         match source {
///             Source::Line => self.cause.swap(0, Ordering::AcqRel) != 0,
///             Source::Message(_) => true, // a message is never shared
///         }
///     }
/// }
///
/// let d = Device { cause: AtomicU32::new(1) };
/// assert!(d.isr(Source::Line)); // ours, and the cause is cleared
/// assert!(!d.isr(Source::Line)); // another device's
/// ```
pub trait WdmInterruptHandler: Sync + 'static {
    /// At DIRQL: true if the device raised it.
    fn isr(&self, source: Source) -> bool;
}

/// The `PDEVICE_OBJECT` of the physical device.
#[derive(Debug, Clone, Copy)]
pub struct PhysicalDevice(sys::PDEVICE_OBJECT);

impl PhysicalDevice {
    /// # Safety
    /// `pdo` is a live physical device object with assigned interrupt resources.
    pub const unsafe fn from_raw(pdo: sys::PDEVICE_OBJECT) -> Self {
        PhysicalDevice(pdo)
    }
}

/// The line, described completely, for the fully specified retry.
#[derive(Debug, Clone, Copy)]
pub struct FullySpecified {
    pub vector: u32,
    pub irql: u8,
    pub mode: TriggerMode,
    pub processors: ProcessorSet,
    pub share_vector: bool,
}

/// What `IoConnectInterruptEx` connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connected {
    /// Message-based: this many messages.
    Messages(u32),
    /// Line-based, through the fallback of a message-based request.
    Line,
    /// The fully specified retry.
    FullySpecified,
}

/// Connection failed: the status, and the handler back.
#[derive(Debug)]
pub struct ConnectError<H> {
    pub status: sys::NTSTATUS,
    pub handler: H,
}

struct Inner<H> {
    handler: H,
    _pinned: PhantomPinned,
}

/// A connected WDM interrupt, disconnected by [`disconnect`](Self::disconnect) at
/// PASSIVE_LEVEL (a drop without it leaves it connected: see the `Drop` impl).
pub struct WdmInterrupt<H: WdmInterruptHandler> {
    inner: Option<Pin<Box<Inner<H>>>>,
    connected: Connected,
    version: u32,
    context: sys::PVOID,
}

impl<H: WdmInterruptHandler> core::fmt::Debug for WdmInterrupt<H> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WdmInterrupt")
            .field("connected", &self.connected)
            .finish_non_exhaustive()
    }
}

unsafe extern "win64-unwind" fn line_isr<H: WdmInterruptHandler>(
    _k: sys::PKINTERRUPT,
    ctx: sys::PVOID,
) -> sys::BOOLEAN {
    // SAFETY: the context is the pinned Inner<H> given at connection, alive until disconnection.
    let inner = unsafe { &*ctx.cast::<Inner<H>>() };
    inner.handler.isr(Source::Line) as sys::BOOLEAN
}

unsafe extern "win64-unwind" fn message_isr<H: WdmInterruptHandler>(
    _k: sys::PKINTERRUPT,
    ctx: sys::PVOID,
    message: u32,
) -> sys::BOOLEAN {
    // SAFETY: as for line_isr.
    let inner = unsafe { &*ctx.cast::<Inner<H>>() };
    inner.handler.isr(Source::Message(MessageId(message))) as sys::BOOLEAN
}

impl<H: WdmInterruptHandler> WdmInterrupt<H> {
    /// Connects `handler` following the protocol in the module docs (PASSIVE_LEVEL).
    pub fn connect(
        _at: &Passive<'_>,
        device: PhysicalDevice,
        handler: H,
        fully_specified: Option<FullySpecified>,
    ) -> Result<Self, ConnectError<H>> {
        let inner = Inner {
            handler,
            _pinned: PhantomPinned,
        };
        let inner = match crate::heap::try_box_or_back(inner, _at) {
            Ok(b) => Box::into_pin(b),
            Err(inner) => {
                return Err(ConnectError {
                    status: sys::STATUS_INSUFFICIENT_RESOURCES,
                    handler: inner.handler,
                });
            }
        };
        let context = (&*inner as *const Inner<H>)
            .cast_mut()
            .cast::<core::ffi::c_void>();
        let mut out: sys::PVOID = core::ptr::null_mut();
        // SAFETY: all-zero is a valid parameter block.
        let mut params: sys::IO_CONNECT_INTERRUPT_PARAMETERS = unsafe { core::mem::zeroed() };
        params.Version = sys::CONNECT_MESSAGE_BASED;
        params.u.MessageBased = sys::IO_CONNECT_INTERRUPT_MESSAGE_BASED_PARAMETERS {
            PhysicalDeviceObject: device.0,
            ConnectionContext: sys::IO_CONNECT_INTERRUPT_MESSAGE_BASED_CONTEXT {
                Generic: &mut out,
            },
            MessageServiceRoutine: Some(message_isr::<H>),
            ServiceContext: context,
            SpinLock: core::ptr::null_mut(),
            SynchronizeIrql: 0,
            FloatingSave: 0,
            FallBackServiceRoutine: Some(line_isr::<H>),
        };
        // SAFETY: a valid parameter block; `out` and the pinned context outlive the connection
        // (`out` is read right after the call).
        let status = unsafe { sys::IoConnectInterruptEx(&mut params) };
        if status >= 0 {
            let connected = if params.Version == sys::CONNECT_MESSAGE_BASED {
                // SAFETY: on success the kernel wrote its message table through `out`.
                Connected::Messages(unsafe {
                    (*out.cast::<sys::IO_INTERRUPT_MESSAGE_INFO>()).MessageCount
                })
            } else {
                Connected::Line
            };
            return Ok(WdmInterrupt {
                inner: Some(inner),
                connected,
                version: params.Version,
                context: out,
            });
        }
        match (params.Version, fully_specified) {
            (sys::CONNECT_FULLY_SPECIFIED, Some(fs)) => {
                let mut object: sys::PKINTERRUPT = core::ptr::null_mut();
                // SAFETY: all-zero is a valid parameter block.
                let mut retry: sys::IO_CONNECT_INTERRUPT_PARAMETERS =
                    unsafe { core::mem::zeroed() };
                retry.Version = sys::CONNECT_FULLY_SPECIFIED;
                retry.u.FullySpecified = sys::IO_CONNECT_INTERRUPT_FULLY_SPECIFIED_PARAMETERS {
                    PhysicalDeviceObject: device.0,
                    InterruptObject: &mut object,
                    ServiceRoutine: Some(line_isr::<H>),
                    ServiceContext: context,
                    SpinLock: core::ptr::null_mut(),
                    SynchronizeIrql: fs.irql,
                    FloatingSave: 0,
                    ShareVector: fs.share_vector as u8,
                    Vector: fs.vector,
                    Irql: fs.irql,
                    InterruptMode: match fs.mode {
                        TriggerMode::LevelSensitive => sys::LevelSensitive,
                        TriggerMode::Latched => sys::Latched,
                        TriggerMode::Other(m) => m,
                    },
                    ProcessorEnableMask: fs.processors.mask(),
                    Group: fs.processors.group(),
                };
                // SAFETY: a valid parameter block; `object` is read right after.
                let status = unsafe { sys::IoConnectInterruptEx(&mut retry) };
                if status >= 0 {
                    return Ok(WdmInterrupt {
                        inner: Some(inner),
                        connected: Connected::FullySpecified,
                        version: sys::CONNECT_FULLY_SPECIFIED,
                        context: object.cast(),
                    });
                }
                Err(ConnectError {
                    status,
                    handler: Self::unpin(inner),
                })
            }
            _ => Err(ConnectError {
                status,
                handler: Self::unpin(inner),
            }),
        }
    }

    fn unpin(inner: Pin<Box<Inner<H>>>) -> H {
        // SAFETY: nothing is connected, so no routine refers to the pinned state.
        unsafe { Pin::into_inner_unchecked(inner) }.handler
    }

    pub fn connected(&self) -> Connected {
        self.connected
    }

    pub fn handler(&self) -> &H {
        &self.inner.as_ref().expect("connected").handler
    }

    fn disconnect_raw(&mut self) -> Option<Pin<Box<Inner<H>>>> {
        let inner = self.inner.take()?;
        let mut params = sys::IO_DISCONNECT_INTERRUPT_PARAMETERS {
            Version: self.version,
            ConnectionContext: sys::IO_DISCONNECT_INTERRUPT_CONTEXT {
                Generic: self.context,
            },
        };
        // SAFETY: the Version and context the connection returned, disconnected once.
        unsafe { sys::IoDisconnectInterruptEx(&mut params) };
        Some(inner)
    }

    /// `IoDisconnectInterruptEx` (PASSIVE_LEVEL); hands the handler back.
    pub fn disconnect(mut self, _at: &Passive<'_>) -> H {
        let inner = self.disconnect_raw().expect("connected");
        Self::unpin(inner)
    }
}

/// Dropped without [`WdmInterrupt::disconnect`]: the drop cannot know its IRQL (a DPC, a lock
/// closure), and `IoDisconnectInterruptEx` needs PASSIVE_LEVEL. So it disconnects nothing and
/// leaks the handler state the ISR still uses: memory-safe, and reported as a connected
/// interrupt when the driver unloads (the emulator's UNLOAD_WITH_OUTSTANDING_OBJECTS).
impl<H: WdmInterruptHandler> Drop for WdmInterrupt<H> {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            core::mem::forget(inner);
        }
    }
}
