//! inf/vionet.inx, read with the packaging tool's INF reader: the entries a NIC INF needs, the
//! hardware IDs of the device the driver accepts, the MSI opt-in, and a declaration for every
//! registry keyword the driver reads — the list the driver exports and the list it was seen
//! reading on the emulator.

use driver_package::check::{CheckOptions, check};
use driver_package::inf::Inf;

fn inx() -> (String, Inf) {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/inf/vionet.inx"))
        .expect("inf/vionet.inx");
    let inf = Inf::parse(&text);
    assert!(inf.syntax_errors.is_empty(), "{:?}", inf.syntax_errors);
    (text, inf)
}

fn value<'a>(inf: &'a Inf, section: &'a str, key: &str) -> &'a str {
    inf.entries(section)
        .find(|e| e.key_is(key))
        .and_then(|e| e.value(0))
        .unwrap_or_else(|| panic!("[{section}] {key} missing"))
}

#[test]
fn the_packaging_checker_finds_nothing_wrong() {
    let (text, _) = inx();
    let findings = check(
        &text,
        &CheckOptions {
            msi: true,
            ..CheckOptions::default()
        },
    );
    assert!(findings.is_empty(), "{findings:?}");
}

#[test]
fn class_bus_and_ndis_interface_entries() {
    let (_, inf) = inx();
    assert_eq!(value(&inf, "Version", "Class"), "Net");
    assert_eq!(
        value(&inf, "Version", "ClassGUID").to_ascii_lowercase(),
        "{4d36e972-e325-11ce-bfc1-08002be10318}"
    );
    assert_eq!(value(&inf, "Version", "CatalogFile"), "vionet.cat");
    let ndi = "vionet.ndi.NT";
    assert_eq!(value(&inf, ndi, "Characteristics"), "0x84");
    assert_eq!(value(&inf, ndi, "BusType"), "5");
    assert_eq!(value(&inf, ndi, "*IfType"), "6");
    assert_eq!(value(&inf, ndi, "*MediaType"), "0");
    assert_eq!(value(&inf, ndi, "*PhysicalMediaType"), "14");
    let reg: Vec<Vec<String>> = inf
        .entries("vionet.Reg")
        .map(|e| e.values.clone())
        .collect();
    let has = |key: &str, name: &str, data: &str| {
        reg.iter()
            .any(|v| v.len() >= 5 && v[1].eq_ignore_ascii_case(key) && v[2] == name && v[4] == data)
    };
    assert!(has("Ndi\\Interfaces", "UpperRange", "ndis5"));
    assert!(has("Ndi\\Interfaces", "LowerRange", "ethernet"));
    assert!(has("Ndi", "Service", "vionet"));
    let service = inf
        .entries("vionet.ndi.NT.Services")
        .find(|e| e.key_is("AddService"))
        .expect("AddService");
    assert_eq!(service.value(0), Some("vionet"));
    let flags = driver_package::check::parse_number(service.value(1).unwrap()).unwrap();
    assert_eq!(flags & 0x2, 0x2, "SPSVCINST_ASSOCSERVICE");
    assert_eq!(value(&inf, "vionet.Service", "ServiceType"), "1");
}

#[test]
fn hardware_ids_name_modern_virtio_net_with_and_without_subsystem() {
    let (_, inf) = inx();
    let ids: Vec<String> = inf
        .sections
        .iter()
        .filter(|s| s.name.to_ascii_lowercase().starts_with("standard.nt"))
        .flat_map(|s| {
            s.entries
                .iter()
                .filter_map(|e| e.value(1).map(str::to_string))
        })
        .collect();
    assert!(
        ids.contains(&"PCI\\VEN_1AF4&DEV_1041".to_string()),
        "{ids:?}"
    );
    assert!(
        ids.contains(&"PCI\\VEN_1AF4&DEV_1041&SUBSYS_11001AF4&REV_01".to_string()),
        "{ids:?}"
    );
    for id in &ids {
        assert_eq!(driver_package::check::hardware_id_problem(id), None, "{id}");
    }
}

#[test]
fn msi_is_enabled_in_the_hardware_key() {
    let (_, inf) = inx();
    let msi: Vec<Vec<String>> = inf
        .entries("vionet.EnableMSI")
        .map(|e| e.values.clone())
        .collect();
    let get = |name: &str| {
        msi.iter()
            .find(|v| v.get(2).is_some_and(|n| n == name))
            .and_then(|v| v.get(4).cloned())
    };
    assert_eq!(get("MSISupported").as_deref(), Some("1"));
    let limit: u32 = get("MessageNumberLimit").unwrap().parse().unwrap();
    assert!(limit >= 2 * 16 + 2, "enough messages for 16 pairs (2N+2)");
    assert!(
        inf.entries("vionet.ndi.NT.HW")
            .any(|e| e.key_is("AddReg") && e.value(0) == Some("vionet.EnableMSI"))
    );
}

/// `Ndi\params\<keyword>` declarations (keyword -> (default, min, max)).
fn declared_keywords(inf: &Inf) -> Vec<(String, String, String, String)> {
    let mut out: Vec<(String, String, String, String)> = Vec::new();
    for e in inf.entries("vionet.Reg") {
        let Some(key) = e.value(1) else { continue };
        let Some(name) = key.strip_prefix("Ndi\\params\\") else {
            continue;
        };
        let i = match out.iter().position(|k| k.0 == name) {
            Some(i) => i,
            None => {
                out.push((
                    name.to_string(),
                    String::new(),
                    String::new(),
                    String::new(),
                ));
                out.len() - 1
            }
        };
        let data = e.value(4).unwrap_or_default().to_string();
        match e.value(2).unwrap_or_default() {
            "default" => out[i].1 = data,
            "min" => out[i].2 = data,
            "max" => out[i].3 = data,
            _ => {}
        }
    }
    out
}

#[test]
fn every_keyword_the_driver_reads_is_declared_with_a_default_and_range() {
    let (_, inf) = inx();
    let declared = declared_keywords(&inf);
    for keyword in vionet::adapter::keywords::ALL {
        assert!(
            declared.iter().any(|d| d.0 == *keyword),
            "{keyword} is read by the driver but not in Ndi\\params"
        );
    }
    for keyword in vionet::adapter::keywords::NUMERIC {
        let k = declared
            .iter()
            .find(|d| d.0 == *keyword)
            .unwrap_or_else(|| panic!("{keyword} is read by the driver but not in Ndi\\params"));
        assert!(
            !k.1.is_empty() && !k.2.is_empty() && !k.3.is_empty(),
            "{k:?}"
        );
        let (default, min, max): (u32, u32, u32) = (
            k.1.parse().unwrap(),
            k.2.parse().unwrap(),
            k.3.parse().unwrap(),
        );
        assert!(min <= default && default <= max, "{k:?}");
    }
}

#[cfg(not(windows))]
#[test]
fn what_the_driver_reads_on_the_emulator_is_exactly_what_it_declares() {
    use ndis_emu::devices::virtio_net::{VirtioNet, VirtioNetConfig};
    use ndis_emu::{Config, Emulator, InterruptResources};
    let emu = Emulator::new(Config::default());
    assert_eq!(emu.load_driver(vionet::DRIVER_ENTRY), 0);
    let a = emu
        .add_adapter_with(
            InterruptResources::msix(4),
            Box::new(VirtioNet::new(VirtioNetConfig::new(1))),
        )
        .expect("initialize");
    emu.halt(a, ndis_sys::NdisHaltDeviceDisabled);
    emu.unload();
    let mut read = emu.keywords_read();
    read.sort();
    let mut listed: Vec<String> = vionet::adapter::keywords::ALL
        .iter()
        .map(|s| s.to_string())
        .collect();
    listed.sort();
    assert_eq!(read, listed);
}
