//! inf/vionet.inx, read with the packaging tool's INF reader: the entries a NIC INF needs, the
//! hardware IDs of the device the driver accepts, the MSI opt-in, and a declaration for every
//! registry keyword the driver reads — the list the driver exports and the list it was seen
//! reading on the emulator — with the type, default, range or values of its constant in
//! `vionet::adapter::keywords`.

use driver_package::check::{CheckOptions, check};
use driver_package::inf::Inf;
use ndis::keyword::{Keyword, Kind};

/// Counts the driver's heap allocations so unload can find leaks (see ndis_emu::DriverHeap).
#[cfg(not(windows))]
#[global_allocator]
static HEAP: ndis_emu::DriverHeap = ndis_emu::DriverHeap;

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

/// One `Ndi\params\<keyword>` declaration: its `type`, `default`, `min` and `max` (as written),
/// and the values of its `enum` subkey.
#[derive(Debug, Default)]
struct Declared {
    name: String,
    kind: Option<String>,
    default: Option<String>,
    min: Option<String>,
    max: Option<String>,
    values: Vec<String>,
}

/// The keywords `vionet.Reg` declares, in file order.
fn declared_keywords(inf: &Inf) -> Vec<Declared> {
    let mut out: Vec<Declared> = Vec::new();
    for e in inf.entries("vionet.Reg") {
        let Some(key) = e.value(1) else { continue };
        let prefix = "ndi\\params\\";
        let Some(rest) = key
            .get(..prefix.len())
            .filter(|p| p.eq_ignore_ascii_case(prefix))
            .and_then(|_| key.get(prefix.len()..))
            .filter(|rest| !rest.is_empty())
        else {
            continue;
        };
        let (name, subkey) = match rest.split_once('\\') {
            Some((name, subkey)) => (name, Some(subkey)),
            None => (rest, None),
        };
        let i = match out.iter().position(|d| d.name.eq_ignore_ascii_case(name)) {
            Some(i) => i,
            None => {
                out.push(Declared {
                    name: name.to_string(),
                    ..Declared::default()
                });
                out.len() - 1
            }
        };
        let d = &mut out[i];
        let value_name = e.value(2).unwrap_or_default();
        let data = || Some(e.value(4).unwrap_or_default().to_string());
        match subkey {
            Some(s) if s.eq_ignore_ascii_case("enum") => d.values.push(value_name.to_string()),
            Some(_) => {}
            None => match value_name.to_ascii_lowercase().as_str() {
                "type" => d.kind = data(),
                "default" => d.default = data(),
                "min" => d.min = data(),
                "max" => d.max = data(),
                _ => {}
            },
        }
    }
    out
}

/// Where the INF's declarations disagree with the driver's keyword constants: a keyword the
/// driver reads that is missing, declared with another type, default, range or set of values, or
/// a keyword declared that the driver does not read. Empty when they agree.
fn keyword_mismatches(inf: &Inf, keywords: &[Keyword]) -> Vec<String> {
    let declared = declared_keywords(inf);
    let mut problems = Vec::new();
    for d in &declared {
        if !keywords
            .iter()
            .any(|k| k.name.eq_ignore_ascii_case(&d.name))
        {
            problems.push(format!(
                "{} is declared but the driver does not read it",
                d.name
            ));
        }
    }
    for k in keywords {
        let Some(d) = declared
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case(k.name))
        else {
            problems.push(format!(
                "{} is read by the driver but not in Ndi\\params",
                k.name
            ));
            continue;
        };
        let mut expect = |what: &str, inf: Option<&str>, code: Option<String>| {
            if inf != code.as_deref() {
                problems.push(format!(
                    "{}: {what} is {inf:?} in the INF but {code:?} in the driver",
                    k.name
                ));
            }
        };
        let number = |v: u32| Some(v.to_string());
        match k.kind {
            Kind::Int { min, max, default } => {
                expect("type", d.kind.as_deref(), Some("int".into()));
                expect("default", d.default.as_deref(), number(default));
                expect("min", d.min.as_deref(), number(min));
                expect("max", d.max.as_deref(), number(max));
                let listed = (!d.values.is_empty()).then(|| format!("{:?}", d.values));
                expect("the enum values", listed.as_deref(), None);
            }
            Kind::Enum { values, default } => {
                expect("type", d.kind.as_deref(), Some("enum".into()));
                expect("default", d.default.as_deref(), number(default));
                let mut inf_values: Vec<Option<u32>> =
                    d.values.iter().map(|v| v.parse().ok()).collect();
                inf_values.sort();
                let mut code_values: Vec<Option<u32>> = values.iter().copied().map(Some).collect();
                code_values.sort();
                expect(
                    "the enum values",
                    Some(&format!("{inf_values:?}")),
                    Some(format!("{code_values:?}")),
                );
                expect("min", d.min.as_deref(), None);
                expect("max", d.max.as_deref(), None);
            }
            Kind::Text => {
                expect("type", d.kind.as_deref(), Some("edit".into()));
                expect("default", d.default.as_deref(), Some(String::new()));
            }
        }
    }
    problems
}

#[test]
fn every_keyword_is_declared_with_the_type_default_and_range_of_its_constant() {
    let (_, inf) = inx();
    let problems = keyword_mismatches(&inf, vionet::adapter::keywords::ALL);
    assert!(problems.is_empty(), "{problems:#?}");
    // The declarations are well formed on their own, too.
    for d in declared_keywords(&inf) {
        if let (Some(default), Some(min), Some(max)) = (&d.default, &d.min, &d.max) {
            let (default, min, max): (u32, u32, u32) = (
                default.parse().unwrap(),
                min.parse().unwrap(),
                max.parse().unwrap(),
            );
            assert!(min <= default && default <= max, "{d:?}");
        }
    }
}

#[test]
fn an_inf_that_disagrees_with_the_keyword_constants_fails_the_check() {
    let (text, _) = inx();
    // (line in inf/vionet.inx, its replacement, the keyword and what the check must name).
    let cases = [
        (
            r#"HKR, Ndi\params\*ReceiveBuffers,  max,       0, "1024""#,
            r#"HKR, Ndi\params\*ReceiveBuffers,  max,       0, "2048""#,
            "*ReceiveBuffers: max",
        ),
        (
            r#"HKR, Ndi\params\*NumRssQueues,    min,       0, "1""#,
            r#"HKR, Ndi\params\*NumRssQueues,    min,       0, "2""#,
            "*NumRssQueues: min",
        ),
        (
            r#"HKR, Ndi\params\*JumboPacket,    default,   0, "1514""#,
            r#"HKR, Ndi\params\*JumboPacket,    default,   0, "9014""#,
            "*JumboPacket: default",
        ),
        (
            r#"HKR, Ndi\params\*TransmitBuffers, type,      0, "int""#,
            r#"HKR, Ndi\params\*TransmitBuffers, type,      0, "long""#,
            "*TransmitBuffers: type",
        ),
        (
            r#"HKR, Ndi\params\*PriorityVLANTag,      default,   0, "3""#,
            r#"HKR, Ndi\params\*PriorityVLANTag,      default,   0, "2""#,
            "*PriorityVLANTag: default",
        ),
        (
            r#"HKR, Ndi\params\*LsoV2IPv6\enum, "1",       0, %Enabled%"#,
            "",
            "*LsoV2IPv6: the enum values",
        ),
        (
            r#"HKR, Ndi\params\NetworkAddress,   type,      0, "edit""#,
            r#"HKR, Ndi\params\NetworkAddress,   type,      0, "int""#,
            "NetworkAddress: type",
        ),
        (
            r#"HKR, Ndi\params\*UDPChecksumOffloadIPv6,      ParamDesc, 0, %UDPChksumOffv6%"#,
            r#"HKR, Ndi\params\*UDPChecksumOffloadIPv6x,     ParamDesc, 0, %UDPChksumOffv6%"#,
            "*UDPChecksumOffloadIPv6x is declared but the driver does not read it",
        ),
    ];
    for (line, replacement, expected) in cases {
        assert_eq!(
            text.matches(line).count(),
            1,
            "{line} is not in the INX once"
        );
        let inf = Inf::parse(&text.replacen(line, replacement, 1));
        assert!(inf.syntax_errors.is_empty(), "{:?}", inf.syntax_errors);
        let problems = keyword_mismatches(&inf, vionet::adapter::keywords::ALL);
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "{line} -> {replacement}: expected {expected:?} among {problems:#?}"
        );
    }
}

#[test]
fn a_keyword_constant_that_disagrees_with_the_inf_fails_the_check() {
    let (_, inf) = inx();
    let mut keywords = vionet::adapter::keywords::ALL.to_vec();
    let i = keywords
        .iter()
        .position(|k| k.name == "*ReceiveBuffers")
        .unwrap();
    keywords[i] = Keyword::int("*ReceiveBuffers", 64, 2048, 256);
    keywords.push(Keyword::text("*Unknown"));
    let problems = keyword_mismatches(&inf, &keywords);
    assert_eq!(
        problems,
        [
            "*ReceiveBuffers: max is Some(\"1024\") in the INF but Some(\"2048\") in the driver",
            "*Unknown is read by the driver but not in Ndi\\params",
        ],
    );
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
        .map(|k| k.name.to_string())
        .collect();
    listed.sort();
    assert_eq!(read, listed);
}

/// The NDIS range Cargo.toml declares for packaging ([package.metadata.ndis-driver]) is the one
/// the driver registers with at run time (`MiniportDriver::NDIS_VERSIONS`).
#[test]
fn the_declared_ndis_range_is_the_one_the_driver_registers() {
    use ndis::driver::MiniportDriver;
    let c = driver_package::winver::Contract::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/Cargo.toml"
    )))
    .unwrap();
    let v = <vionet::VioNet as MiniportDriver>::NDIS_VERSIONS;
    assert_eq!(
        (c.ndis_min.0, c.ndis_min.1, c.ndis_max.0, c.ndis_max.1),
        (v.min.major, v.min.minor, v.max.major, v.max.minor)
    );
}
