//! The reference driver on the emulator, against the virtio-net device model, as the tests in
//! `tests/support/nic.rs` start it: one adapter per fuzz input, so that every input starts from
//! the same state and a finding replays from its input alone.

use ndis_emu::devices::virtio_net::{VirtioNet, VirtioNetConfig};
use ndis_emu::{AdapterId, Config, DeviceId, Emulator, InterruptResources};
use ndis_sys as sys;

/// Leak accounting of the driver's heap: `unload` bug-checks on what the driver left behind.
#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

pub const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

pub struct Nic {
    pub emu: Emulator,
    pub adapter: AdapterId,
    pub device: DeviceId,
}

impl Nic {
    /// vionet with `keywords` set, on a 1-pair device (MSI-X) that `tweak` may change.
    pub fn start(keywords: &[(&str, &str)], tweak: impl FnOnce(&mut VirtioNetConfig)) -> Nic {
        let emu = Emulator::new(Config {
            cpus: 2,
            ..Config::default()
        });
        for (k, v) in keywords {
            emu.set_keyword(k, v);
        }
        assert_eq!(emu.load_driver(vionet::DRIVER_ENTRY), sys::STATUS_SUCCESS);
        let mut cfg = VirtioNetConfig::new(1);
        cfg.queue_size = 64;
        tweak(&mut cfg);
        let adapter = emu
            .add_adapter_with(
                InterruptResources::MsiX {
                    requested: 4,
                    granted: 4,
                },
                Box::new(VirtioNet::new(cfg)),
            )
            .expect("MiniportInitializeEx");
        let device = emu.device_of(adapter);
        assert_eq!(emu.restart(adapter), sys::NDIS_STATUS_SUCCESS);
        Nic {
            emu,
            adapter,
            device,
        }
    }

    pub fn net<R>(&self, f: impl FnOnce(&mut VirtioNet, &mut ndis_emu::pci::Bus<'_>) -> R) -> R {
        self.emu.with_device::<VirtioNet, R>(self.device, f)
    }

    /// A set request, completed if the driver pended it.
    pub fn set(&self, oid: u32, data: &[u8]) -> ndis_emu::OidResult {
        let mut r = self.emu.oid_set(self.adapter, oid, data);
        if r.status == sys::NDIS_STATUS_PENDING {
            self.emu.run_dpcs();
            r = self.emu.oid_completion().expect("a pended set completes");
        }
        r
    }

    /// Promiscuous: every frame the device delivers reaches the protocol.
    pub fn accept_all(&self) {
        let f = sys::NDIS_PACKET_TYPE_PROMISCUOUS.to_le_bytes();
        assert_eq!(
            self.set(sys::OID_GEN_CURRENT_PACKET_FILTER, &f).status,
            sys::NDIS_STATUS_SUCCESS
        );
    }

    /// Pause, halt and unload, after checking the device model saw no rule broken; unload
    /// bug-checks (a panic, so a finding) on anything leaked.
    pub fn stop(self) {
        let errors = self.net(|n, _| n.driver_errors().to_vec());
        assert!(
            errors.is_empty(),
            "driver errors seen by the device: {errors:?}"
        );
        self.emu.return_receives(self.adapter);
        assert_eq!(self.emu.pause(self.adapter), sys::NDIS_STATUS_SUCCESS);
        self.emu.halt(self.adapter, sys::NdisHaltDeviceDisabled);
        self.emu.unload();
    }
}
