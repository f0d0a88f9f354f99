//! Checksum offload as the framework runs it for a driver: the attributes at initialize, the
//! tasks in force only once NDIS has set the encapsulation, and the two offload OIDs answered
//! with a `CURRENT_CONFIG` indication after each change.
#![cfg(not(windows))]

use ndis::driver::MiniportDriver;
use ndis::irql::{DispatchOrBelow, Passive};
use ndis::miniport::{AdapterInfo, Init, Miniport, NdisAdapter, Quiesced};
use ndis::nbl::{Returned, SendLists};
use ndis::offload::{ChecksumOffload, LargeSendOffload, LsoCapabilities, OffloadInfo};
use ndis::{NdisVersion, Status};
use ndis_emu::{
    AdapterId, Config, Emulator, InterruptResources, offload_encapsulation as encapsulation,
    offload_parameters as parameters,
};
use ndis_sys as sys;

#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

struct Driver;
struct Adapter;

/// A private OID whose query answers `NdisAdapter::checksum_offload()` (the bits), and
/// `large_send_offload()` in the second word.
const OID_IN_FORCE: u32 = 0xFF01_0010;

impl MiniportDriver for Driver {
    const NDIS_VERSIONS: ndis::NdisVersions = ndis::NdisVersions::exactly(NdisVersion::V6_20);
    const DRIVER_VERSION: (u8, u8) = (1, 0);
    type Adapter = Adapter;
    fn initialize(&'static self, init: &mut Init<'_>) -> Result<(Adapter, AdapterInfo), Status> {
        let hardware = ChecksumOffload::IPV4;
        let lso = LsoCapabilities {
            versions: LargeSendOffload::IPV4,
            max_offload_size: 0xF800,
            min_segment_count: 2,
        };
        let (enabled, lso_enabled) = {
            let c = init.configuration()?;
            (
                ChecksumOffload::from_keywords(&c, hardware, init.passive()),
                LargeSendOffload::from_keywords(&c, lso.versions, init.passive()),
            )
        };
        let mut info = AdapterInfo::ethernet([2, 0, 0, 0, 0, 1], 1500, 1_000_000_000, true);
        info.offload = Some(OffloadInfo {
            hardware,
            enabled,
            lso: Some(lso),
            lso_enabled,
        });
        Ok((Adapter, info))
    }
}

impl Miniport for Adapter {
    fn quiesce(&self, _: &NdisAdapter, _: &mut Passive<'_>) -> Quiesced {
        Quiesced::device_stopped()
    }
    const EXTRA_OIDS: &'static [u32] = &[OID_IN_FORCE];

    fn oid_query(
        &self,
        adapter: &NdisAdapter,
        oid: u32,
        out: &mut ndis::oid::QueryBuffer<'_>,
        _: &mut Passive<'_>,
    ) -> Result<(), Status> {
        match oid {
            OID_IN_FORCE => {
                let mut b = [0u8; 8];
                b[..4].copy_from_slice(&adapter.checksum_offload().bits().to_le_bytes());
                b[4..].copy_from_slice(&adapter.large_send_offload().bits().to_le_bytes());
                out.write(&b)
            }
            _ => Err(Status::NOT_SUPPORTED),
        }
    }
    fn send(&self, _: &NdisAdapter, lists: &mut SendLists<'_>, _: &mut DispatchOrBelow<'_>) {
        lists.each(|_| Status::SUCCESS);
    }
    fn return_receives(&self, _: &NdisAdapter, _: &mut Returned<'_>, _: &mut DispatchOrBelow<'_>) {}
}

ndis::miniport_driver!(Driver = Driver);

fn in_force(emu: &Emulator, a: AdapterId) -> ChecksumOffload {
    in_force_both(emu, a).0
}

fn in_force_both(emu: &Emulator, a: AdapterId) -> (ChecksumOffload, LargeSendOffload) {
    let r = emu.oid_query(a, OID_IN_FORCE, 8);
    assert_eq!(r.status, sys::NDIS_STATUS_SUCCESS);
    let word = |at: usize| u32::from_le_bytes(r.data[at..at + 4].try_into().unwrap());
    (
        ChecksumOffload::from_bits_truncate(word(0)),
        LargeSendOffload::from_bits_truncate(word(4)),
    )
}

/// The `NDIS_OFFLOAD` headers of the `CURRENT_CONFIG` indications since the last call.
fn config_indications(emu: &Emulator, a: AdapterId) -> Vec<(u8, usize)> {
    emu.status_indications(a)
        .into_iter()
        .filter(|(code, _)| *code == sys::NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG)
        .map(|(_, b)| (b[1], b.len()))
        .collect()
}

#[test]
fn tasks_are_in_force_only_once_the_encapsulation_is_set() {
    let emu = Emulator::new(Config::default());
    emu.set_keyword("*UDPChecksumOffloadIPv4", "1"); // transmit only
    assert_eq!(emu.load_driver(DRIVER_ENTRY), sys::STATUS_SUCCESS);
    let a = emu.add_adapter(InterruptResources::None).expect("init");
    let configured = ChecksumOffload::IPV4 - ChecksumOffload::IPV4_RX_UDP;
    let o = emu.offload(a).expect("offload attributes");
    assert!(o.hardware.ipv4_rx_udp && !o.hardware.ipv6_tx_tcp);
    assert!(!o.current.ipv4_rx_udp && o.current.ipv4_tx_udp);
    // Not bound yet: nothing in force.
    assert_eq!(in_force(&emu, a), ChecksumOffload::empty());
    let supported = emu.oid_query(a, sys::OID_GEN_SUPPORTED_LIST, 1024).data;
    for oid in [
        sys::OID_TCP_OFFLOAD_PARAMETERS,
        sys::OID_OFFLOAD_ENCAPSULATION,
    ] {
        assert!(
            supported.chunks(4).any(|c| c == oid.to_le_bytes()),
            "{oid:#x} listed"
        );
    }

    // TCP/IP binds at the first restart: the encapsulation, then the configuration indicated.
    assert_eq!(emu.restart(a), sys::NDIS_STATUS_SUCCESS);
    assert_eq!(
        emu.offload(a).unwrap().encapsulation,
        Some(sys::NDIS_STATUS_SUCCESS)
    );
    assert_eq!(in_force(&emu, a), configured);
    assert_eq!(
        config_indications(&emu, a),
        vec![(2, 144)],
        "revision 2 for NDIS 6.20"
    );

    // IPv4 encapsulation off: nothing in force, the configuration is still indicated.
    let off = encapsulation(
        sys::NDIS_OFFLOAD_SET_OFF,
        sys::NDIS_OFFLOAD_SET_NO_CHANGE,
        0,
    );
    assert_eq!(
        emu.oid_set(a, sys::OID_OFFLOAD_ENCAPSULATION, &off).status,
        sys::NDIS_STATUS_SUCCESS
    );
    assert_eq!(in_force(&emu, a), ChecksumOffload::empty());
    assert_eq!(config_indications(&emu, a).len(), 1);
    // ...and reports the IPv4 tasks off.
    let current = emu.offload(a).unwrap().current;
    assert!(!current.ipv4_tx_tcp && !current.ipv4_rx_tcp && !current.ipv4_tx_ip);
    // A framing set without Ethernet is refused, and changes nothing.
    let mut odd = encapsulation(sys::NDIS_OFFLOAD_SET_ON, sys::NDIS_OFFLOAD_SET_ON, 14);
    odd[8..12].copy_from_slice(&sys::NDIS_ENCAPSULATION_NULL.to_le_bytes());
    assert_eq!(
        emu.oid_set(a, sys::OID_OFFLOAD_ENCAPSULATION, &odd).status,
        sys::NDIS_STATUS_INVALID_PARAMETER
    );
    assert_eq!(in_force(&emu, a), ChecksumOffload::empty());
    let on = encapsulation(sys::NDIS_OFFLOAD_SET_ON, sys::NDIS_OFFLOAD_SET_ON, 14);
    assert_eq!(
        emu.oid_set(a, sys::OID_OFFLOAD_ENCAPSULATION, &on).status,
        sys::NDIS_STATUS_SUCCESS
    );
    assert_eq!(in_force(&emu, a), configured);

    // Parameters: UDP/IPv4 receive on (in the hardware): applied and indicated; TCP/IPv6 on
    // (not in the hardware): refused, nothing changes, nothing indicated.
    let _ = config_indications(&emu, a);
    assert_eq!(
        emu.oid_set(
            a,
            sys::OID_TCP_OFFLOAD_PARAMETERS,
            &parameters([0, 0, 4, 0, 0])
        )
        .status,
        sys::NDIS_STATUS_SUCCESS
    );
    assert_eq!(in_force(&emu, a), ChecksumOffload::IPV4);
    assert_eq!(config_indications(&emu, a).len(), 1);
    assert!(emu.offload(a).unwrap().current.ipv4_rx_udp);
    let r = emu.oid_set(
        a,
        sys::OID_TCP_OFFLOAD_PARAMETERS,
        &parameters([0, 0, 0, 4, 0]),
    );
    assert_eq!(r.status, sys::NDIS_STATUS_INVALID_PARAMETER);
    assert_eq!(in_force(&emu, a), ChecksumOffload::IPV4);
    assert!(config_indications(&emu, a).is_empty());

    assert_eq!(emu.pause(a), sys::NDIS_STATUS_SUCCESS);
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
}

#[test]
fn large_send_offload_is_reported_switched_and_in_force_like_the_checksums() {
    let emu = Emulator::new(Config::default());
    assert_eq!(emu.load_driver(DRIVER_ENTRY), sys::STATUS_SUCCESS);
    let a = emu.add_adapter(InterruptResources::None).expect("init");
    let limits = ndis_emu::LsoLimits {
        max_offload_size: 0xF800,
        min_segment_count: 2,
        extension_headers: false,
    };
    let o = emu.offload(a).unwrap();
    assert_eq!(
        (o.hardware_lso.ipv4, o.hardware_lso.ipv6),
        (Some(limits), None)
    );
    assert_eq!(o.current_lso, o.hardware_lso, "*LsoV2IPv4 absent: on");
    assert_eq!(
        in_force_both(&emu, a).1,
        LargeSendOffload::empty(),
        "not bound yet"
    );
    assert_eq!(emu.restart(a), sys::NDIS_STATUS_SUCCESS);
    assert_eq!(in_force_both(&emu, a).1, LargeSendOffload::IPV4);

    let mut p = parameters([0; 5]);
    p[11] = 1; // LsoV2IPv4 disabled
    assert_eq!(
        emu.oid_set(a, sys::OID_TCP_OFFLOAD_PARAMETERS, &p).status,
        sys::NDIS_STATUS_SUCCESS
    );
    assert_eq!(in_force_both(&emu, a).1, LargeSendOffload::empty());
    assert_eq!(
        emu.offload(a).unwrap().current_lso.ipv4,
        None,
        "indicated off"
    );
    p[11] = 2;
    assert_eq!(
        emu.oid_set(a, sys::OID_TCP_OFFLOAD_PARAMETERS, &p).status,
        sys::NDIS_STATUS_SUCCESS
    );
    assert_eq!(emu.offload(a).unwrap().current_lso.ipv4, Some(limits));
    p[12] = 2; // LsoV2IPv6: not in the hardware
    assert_eq!(
        emu.oid_set(a, sys::OID_TCP_OFFLOAD_PARAMETERS, &p).status,
        sys::NDIS_STATUS_INVALID_PARAMETER
    );
    p[12] = 3;
    assert_eq!(
        emu.oid_set(a, sys::OID_TCP_OFFLOAD_PARAMETERS, &p).status,
        sys::NDIS_STATUS_INVALID_DATA
    );
    assert_eq!(in_force_both(&emu, a).1, LargeSendOffload::IPV4);

    assert_eq!(emu.pause(a), sys::NDIS_STATUS_SUCCESS);
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
    drop(emu);

    // The keyword switches it off at start.
    let emu = Emulator::new(Config::default());
    emu.set_keyword("*LsoV2IPv4", "0");
    assert_eq!(emu.load_driver(DRIVER_ENTRY), sys::STATUS_SUCCESS);
    let a = emu.add_adapter(InterruptResources::None).expect("init");
    let o = emu.offload(a).unwrap();
    assert_eq!(
        (o.hardware_lso.ipv4, o.current_lso.ipv4),
        (Some(limits), None)
    );
    emu.halt(a, sys::NdisHaltDeviceDisabled);
    emu.unload();
}
