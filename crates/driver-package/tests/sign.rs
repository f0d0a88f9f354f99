//! Signing and catalogs, checked by tools nobody here wrote (osslsigncode, openssl), by a
//! third-party CTL reader (`windows-ctl`), and by re-verifying the RSA signatures in Rust.

mod common;

use std::path::Path;

use cms::signed_data::SignerIdentifier;
use der::{Decode, Encode};
use driver_package::asn1::{self, HashAlg};
use driver_package::catalog::{self, CatalogOptions, Member};
use driver_package::cert::TestCert;
use driver_package::{pe, sign};
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;

const INF: &str = "[Version]\r\nSignature=\"$WINDOWS NT$\"\r\n[Manufacturer]\r\n%M%=S,NTamd64\r\n[S.NTamd64]\r\n%D%=i, PCI\\VEN_1AF4&DEV_1041\r\n[Strings]\r\nM=\"m\"\r\nD=\"d\"\r\n";

fn osslsigncode_verify(args: &[&str], ca: &Path) -> Option<(bool, String)> {
    let tool = common::tool("osslsigncode")?;
    let mut cmd = std::process::Command::new(tool);
    cmd.arg("verify").arg("-CAfile").arg(ca).args(args);
    Some(common::run(&mut cmd))
}

/// Checks a SignedData's one signer in Rust: the messageDigest attribute matches the content,
/// and the RSA signature over the attributes verifies with the certificate's key.
fn verify_in_rust(pkcs7: &[u8], cert: &TestCert) {
    let sd = sign::read_signed_data(pkcs7).unwrap();
    let content = sd
        .encap_content_info
        .econtent
        .as_ref()
        .unwrap()
        .to_der()
        .unwrap();
    let digest = HashAlg::Sha256.digest(asn1::der_contents(&content).unwrap());
    let si = sd.signer_infos.0.get(0).unwrap();
    let SignerIdentifier::IssuerAndSerialNumber(ias) = &si.sid else {
        panic!("signer identified by key id")
    };
    assert_eq!(ias.serial_number, cert.cert.tbs_certificate.serial_number);
    let attrs = si.signed_attrs.as_ref().unwrap();
    let md = attrs
        .iter()
        .find(|a| a.oid == asn1::ID_MESSAGE_DIGEST)
        .unwrap();
    let md: der::asn1::OctetString = md.values.get(0).unwrap().decode_as().unwrap();
    assert_eq!(md.as_bytes(), digest.as_slice());
    let spki = cert
        .cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .unwrap();
    let key =
        VerifyingKey::<sha2::Sha256>::new(rsa::RsaPublicKey::from_public_key_der(&spki).unwrap());
    let sig = Signature::try_from(si.signature.as_bytes()).unwrap();
    key.verify(&attrs.to_der().unwrap(), &sig).unwrap();
    // A different message must not verify (the check above can fail).
    assert!(key.verify(b"something else", &sig).is_err());
}

#[test]
fn a_signed_image_verifies_with_osslsigncode_and_in_rust() {
    let dir = common::scratch("sign-pe");
    let cert = common::shared_cert();
    let ca = common::ca_pem(cert, &dir);
    let image = common::minimal_pe(1);
    let signed = sign::sign_pe(&image, cert, sign::DEFAULT_DESCRIPTION).unwrap();

    // The checksum covers the signature; the Authenticode digest ignores it.
    let stored = u32::from_le_bytes(signed[0x44 + 20 + 64..0x44 + 20 + 68].try_into().unwrap());
    assert_eq!(stored, pe_check::pe_checksum(&signed).unwrap());
    assert_ne!(stored, 0);
    assert_eq!(
        pe::authenticode_digest(&signed, HashAlg::Sha256).unwrap(),
        pe::authenticode_digest(&image, HashAlg::Sha256).unwrap()
    );
    let pkcs7 = pe::embedded_signature(&signed).unwrap().unwrap();
    verify_in_rust(&pkcs7, cert);
    // The signed content names the image's digest.
    let sd = sign::read_signed_data(&pkcs7).unwrap();
    assert_eq!(sd.encap_content_info.econtent_type, asn1::SPC_INDIRECT_DATA);
    let idc: asn1::SpcIndirectDataContent =
        sd.encap_content_info.econtent.unwrap().decode_as().unwrap();
    assert_eq!(
        idc.message_digest.digest.as_bytes(),
        pe::authenticode_digest(&image, HashAlg::Sha256).unwrap()
    );

    // Re-signing replaces the signature instead of stacking a second one.
    let resigned = sign::sign_pe(&signed, cert, "again").unwrap();
    assert!(
        resigned.len() < signed.len() + 64,
        "signature appended twice"
    );

    let path = dir.join("drv.sys");
    std::fs::write(&path, &resigned).unwrap();
    let Some((ok, out)) = osslsigncode_verify(&["-in", path.to_str().unwrap()], &ca) else {
        return;
    };
    assert!(ok, "{out}");
    assert!(out.contains("Signature verification: ok"), "{out}");
    let digest_hex =
        driver_package::cert::hex_upper(&pe::authenticode_digest(&image, HashAlg::Sha256).unwrap());
    assert!(
        out.contains(&format!("Calculated message digest : {digest_hex}")),
        "{out}"
    );

    // A changed code byte must break the signature.
    let mut tampered = resigned.clone();
    tampered[common::FILE_ALIGN + 7] ^= 0xFF;
    let bad = dir.join("tampered.sys");
    std::fs::write(&bad, &tampered).unwrap();
    let (ok, out) = osslsigncode_verify(&["-in", bad.to_str().unwrap()], &ca).unwrap();
    assert!(!ok, "tampered image verified:\n{out}");
}

fn build_catalog(dir: &Path, hash: HashAlg) -> (Vec<u8>, Vec<u8>) {
    let image = common::minimal_pe(2);
    let members = [
        Member::new("drv.sys", &image, hash).unwrap(),
        Member::new("drv.inf", INF.as_bytes(), hash).unwrap(),
    ];
    let opts = CatalogOptions {
        hash,
        hardware_ids: vec!["PCI\\VEN_1AF4&DEV_1041".into()],
        ..CatalogOptions::default()
    };
    let cat = catalog::build(&members, &opts).unwrap();
    std::fs::write(dir.join("drv.sys"), &image).unwrap();
    std::fs::write(dir.join("drv.inf"), INF).unwrap();
    (cat, image)
}

#[test]
fn a_catalog_parses_back_in_rust_and_with_windows_ctl() {
    let dir = common::scratch("catalog-parse");
    for hash in [HashAlg::Sha256, HashAlg::Sha1] {
        let (cat, image) = build_catalog(&dir, hash);
        let parsed = catalog::parse(&cat).unwrap();
        assert_eq!(parsed.signers, 0);
        assert_eq!(
            parsed.attributes,
            [
                ("OS".to_string(), "_v100_X64".to_string()),
                ("HWID1".to_string(), "pci\\ven_1af4&dev_1041".to_string())
            ]
        );
        assert_eq!(parsed.members.len(), 2);
        let sys = parsed
            .members
            .iter()
            .find(|m| m.file.as_deref() == Some("drv.sys"))
            .unwrap();
        let inf = parsed
            .members
            .iter()
            .find(|m| m.file.as_deref() == Some("drv.inf"))
            .unwrap();
        assert_eq!(sys.digest, pe::authenticode_digest(&image, hash).unwrap());
        assert_eq!(sys.indirect_type, asn1::SPC_PE_IMAGE_DATA.to_string());
        assert_eq!(sys.sip_guid.as_deref(), Some(asn1::SIP_PE_IMAGE));
        assert_eq!(inf.digest, hash.digest(INF.as_bytes()));
        assert_eq!(inf.indirect_type, asn1::SPC_CAB_DATA.to_string());
        assert_eq!(inf.sip_guid.as_deref(), Some(asn1::SIP_FLAT_FILE));
        assert_eq!(sys.tag, driver_package::cert::hex_upper(&sys.digest));
        assert_eq!(sys.os_attr.as_deref(), Some("2:10.0"));
        assert_eq!(sys.digest_oid, hash.oid().to_string());

        // A third-party CTL reader sees the same list.
        let ctl = windows_ctl::CertificateTrustList::from_der(std::io::Cursor::new(&cat)).unwrap();
        let subjects = ctl.trusted_subjects.unwrap();
        assert_eq!(subjects.len(), 2);
        let mut ids: Vec<Vec<u8>> = subjects.iter().map(|s| s.cert_id().to_vec()).collect();
        ids.sort();
        let mut expected: Vec<Vec<u8>> = [&sys.digest, &inf.digest]
            .iter()
            .map(|d| asn1::utf16le_z(&driver_package::cert::hex_upper(d)))
            .collect();
        expected.sort();
        assert_eq!(ids, expected);

        // Files compared with the catalog: unchanged passes, changed fails.
        let files = [dir.join("drv.sys"), dir.join("drv.inf")];
        catalog::verify_files(&parsed, &files).unwrap();
        std::fs::write(dir.join("drv.inf"), format!("{INF}; changed\r\n")).unwrap();
        let err = catalog::verify_files(&parsed, &files).unwrap_err();
        assert!(err.message.contains("differs"), "{err}");
    }
    assert!(catalog::parse(b"\x30\x03\x02\x01\x00").is_err());
    assert!(catalog::build(&[], &CatalogOptions::default()).is_err());
}

#[test]
fn a_signed_catalog_verifies_and_lists_the_image_for_osslsigncode() {
    let dir = common::scratch("catalog-sign");
    let cert = common::shared_cert();
    let ca = common::ca_pem(cert, &dir);
    for (hash, name) in [(HashAlg::Sha256, "sha256"), (HashAlg::Sha1, "sha1")] {
        let (cat, image) = build_catalog(&dir, hash);
        let signed = sign::sign_catalog(&cat, cert).unwrap();
        verify_in_rust(&signed, cert);
        assert_eq!(catalog::parse(&signed).unwrap().signers, 1);
        let cat_path = dir.join(format!("drv-{name}.cat"));
        std::fs::write(&cat_path, &signed).unwrap();
        // The signed image must stay a member: the catalog holds the Authenticode digest.
        let signed_sys = dir.join("drv-signed.sys");
        std::fs::write(&signed_sys, sign::sign_pe(&image, cert, "x").unwrap()).unwrap();
        let other = dir.join("other.sys");
        std::fs::write(&other, common::minimal_pe(3)).unwrap();

        let Some((ok, out)) = osslsigncode_verify(&["-in", cat_path.to_str().unwrap()], &ca) else {
            return;
        };
        assert!(ok, "{name}: {out}");
        assert!(out.contains("Signature verification: ok"), "{out}");
        for member in [dir.join("drv.sys"), signed_sys.clone()] {
            let (ok, out) = osslsigncode_verify(
                &[
                    "-catalog",
                    cat_path.to_str().unwrap(),
                    "-in",
                    member.to_str().unwrap(),
                ],
                &ca,
            )
            .unwrap();
            assert!(ok, "{name} {}: {out}", member.display());
            assert!(out.contains("File is signed in catalog"), "{out}");
        }
        let (ok, out) = osslsigncode_verify(
            &[
                "-catalog",
                cat_path.to_str().unwrap(),
                "-in",
                other.to_str().unwrap(),
            ],
            &ca,
        )
        .unwrap();
        assert!(
            !ok,
            "an image not in the catalog verified as a member:\n{out}"
        );
    }
}

#[test]
fn openssl_parses_the_catalog() {
    let dir = common::scratch("catalog-openssl");
    let (cat, _) = build_catalog(&dir, HashAlg::Sha256);
    let signed = sign::sign_catalog(&cat, common::shared_cert()).unwrap();
    let path = dir.join("drv.cat");
    std::fs::write(&path, &signed).unwrap();
    let Some(openssl) = common::tool("openssl") else {
        return;
    };
    let (ok, out) = common::run(
        std::process::Command::new(&openssl)
            .args(["asn1parse", "-inform", "DER", "-in"])
            .arg(&path),
    );
    assert!(ok, "{out}");
    for needle in [
        ":pkcs7-signedData",
        ":1.3.6.1.4.1.311.10.1",   // szOID_CTL
        ":1.3.6.1.4.1.311.12.1.1", // catalog list
        ":1.3.6.1.4.1.311.12.1.2", // catalog list member
        ":1.3.6.1.4.1.311.12.2.1", // name/value
        ":1.3.6.1.4.1.311.12.2.2", // member info
        ":1.3.6.1.4.1.311.2.1.4",  // SpcIndirectDataContent
        ":1.3.6.1.4.1.311.2.1.15", // PE image data
        ":1.3.6.1.4.1.311.2.1.25", // flat file
        ":sha256",
        ":rsaEncryption",
        ":messageDigest",
    ] {
        assert!(
            out.contains(needle),
            "`{needle}` missing from asn1parse output:\n{out}"
        );
    }
    // `_v100_X64` as NUL-terminated UTF-16LE in an OCTET STRING.
    let os_hex: String = asn1::utf16le_z("_v100_X64")
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    assert!(out.contains(&os_hex), "OS attribute missing:\n{out}");

    let (ok, out) = common::run(
        std::process::Command::new(&openssl)
            .args(["pkcs7", "-inform", "DER", "-print", "-in"])
            .arg(&path),
    );
    assert!(ok, "{out}");
    assert!(out.contains("type: pkcs7-signedData"), "{out}");
    assert!(out.contains("1.3.6.1.4.1.311.10.1"), "{out}");
    assert!(out.contains("CN=DriverPackageLocalTestCert"), "{out}");
    // Garbage is refused by the same parser (so the check above can fail).
    std::fs::write(&path, &signed[..signed.len() / 2]).unwrap();
    let (ok, _) = common::run(
        std::process::Command::new(&openssl)
            .args(["pkcs7", "-inform", "DER", "-print", "-in"])
            .arg(&path),
    );
    assert!(!ok);
}

#[test]
fn the_certificate_is_created_once_and_reused() {
    let dir = common::scratch("cert-reuse");
    let first = TestCert::load_or_create(&dir).unwrap();
    assert!(first.created);
    let second = TestCert::load_or_create(&dir).unwrap();
    assert!(!second.created);
    assert_eq!(first.cer().unwrap(), second.cer().unwrap());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&first.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "private key readable by others: {mode:o}");
    }
    // A code-signing certificate: the EKU is there.
    let eku = first
        .cert
        .tbs_certificate
        .extensions
        .as_ref()
        .unwrap()
        .iter()
        .find(|e| e.extn_id == der::oid::ObjectIdentifier::new_unwrap("2.5.29.37"))
        .unwrap();
    let ekus: Vec<der::oid::ObjectIdentifier> = Vec::from_der(eku.extn_value.as_bytes()).unwrap();
    assert_eq!(ekus, [asn1::EKU_CODE_SIGNING]);

    // Through the CLI, with the directory from the environment, and the .cer written out.
    let cer = dir.join("vionet.cer");
    for expect in ["reused", "reused"] {
        let (ok, out) = common::run(
            common::bin()
                .env(driver_package::cert::CERT_DIR_ENV, &dir)
                .args(["cert", "--export"])
                .arg(&cer),
        );
        assert!(ok, "{out}");
        assert!(
            out.contains(&format!(
                "({expect}; SHA-1 thumbprint {}",
                first.thumbprint().unwrap()
            )),
            "{out}"
        );
    }
    assert_eq!(std::fs::read(&cer).unwrap(), first.cer().unwrap());

    // Another directory gets another certificate; a damaged store is an error, not a new key.
    let other = TestCert::load_or_create(&common::scratch("cert-other")).unwrap();
    assert_ne!(other.cer().unwrap(), first.cer().unwrap());
    std::fs::write(&first.path, "garbage").unwrap();
    let err = TestCert::load_or_create(&dir).unwrap_err();
    assert!(err.message.contains("PRIVATE KEY"), "{err}");
}

#[test]
fn the_cli_signs_and_catalogs_a_package_directory() {
    let dir = common::scratch("cli-package");
    let certs = dir.join("certs");
    let pkg = dir.join("pkg");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(pkg.join("drv.sys"), common::minimal_pe(4)).unwrap();
    let inf = INF.replace(
        "[Strings]",
        "[SourceDisksFiles]\r\ndrv.sys = 1\r\n[Strings]",
    );
    std::fs::write(pkg.join("drv.inf"), &inf).unwrap();
    let drv = |args: &[&str]| {
        common::run(
            common::bin()
                .env(driver_package::cert::CERT_DIR_ENV, &certs)
                .args(args),
        )
    };
    let sys = pkg.join("drv.sys");
    let cat = pkg.join("drv.cat");
    let (ok, out) = drv(&["sign", sys.to_str().unwrap()]);
    assert!(ok && out.contains("(created;"), "{out}");
    let (ok, out) = drv(&[
        "catalog",
        "--inf",
        pkg.join("drv.inf").to_str().unwrap(),
        "-o",
        cat.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("2 members"), "{out}");
    let (ok, out) = drv(&["sign", cat.to_str().unwrap()]);
    assert!(ok && out.contains("(reused;"), "{out}");
    let parsed = catalog::parse(&std::fs::read(&cat).unwrap()).unwrap();
    assert_eq!(parsed.signers, 1);
    catalog::verify_files(&parsed, &[sys.clone(), pkg.join("drv.inf")]).unwrap();

    // A file the INF lists but the package lacks: error with file and line.
    std::fs::write(
        pkg.join("drv.inf"),
        inf.replace("drv.sys = 1", "drv.sys = 1\r\nmissing.dll = 1"),
    )
    .unwrap();
    let (ok, out) = drv(&[
        "--step",
        "inf2cat",
        "catalog",
        "--inf",
        pkg.join("drv.inf").to_str().unwrap(),
        "-o",
        cat.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        out.contains(&format!(
            "[inf2cat] error: {}:",
            pkg.join("drv.inf").display()
        )) && out.contains("missing.dll is listed in [SourceDisksFiles]"),
        "{out}"
    );
    // Something that is neither an image nor a catalog is refused.
    std::fs::write(pkg.join("notes.txt"), "hello").unwrap();
    let (ok, out) = drv(&["sign", pkg.join("notes.txt").to_str().unwrap()]);
    assert!(
        !ok && out.contains("notes.txt: neither a PE image"),
        "{out}"
    );
    // A truncated image is an error, not a panic.
    std::fs::write(pkg.join("short.sys"), &common::minimal_pe(5)[..300]).unwrap();
    let (ok, out) = drv(&["sign", pkg.join("short.sys").to_str().unwrap()]);
    assert!(!ok && out.contains("short.sys: not a PE32+ image"), "{out}");
    assert!(!out.contains("panicked"), "{out}");
}

#[test]
fn truncated_or_garbage_input_is_an_error_never_a_panic() {
    let cert = common::shared_cert();
    let image = sign::sign_pe(&common::minimal_pe(6), cert, "x").unwrap();
    for len in (0..image.len()).step_by(13) {
        let cut = &image[..len];
        let _ = pe::authenticode_digest(cut, HashAlg::Sha256);
        let _ = pe::embedded_signature(cut);
        let _ = Member::new("x.sys", cut, HashAlg::Sha256);
        assert!(sign::sign_pe(cut, cert, "x").is_err() || len >= common::FILE_ALIGN);
        let _ = catalog::parse(cut);
        let _ = sign::sign_catalog(cut, cert);
    }
    let mut noise = Vec::new();
    let mut x: u32 = 0x1234_5678;
    for _ in 0..4096 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        noise.push(x as u8);
    }
    let _ = driver_package::text::decode(&noise);
    let text = String::from_utf8_lossy(&noise);
    let _ = driver_package::check::check(&text, &Default::default());
    let _ = driver_package::stamp::stamp(
        text.as_bytes(),
        &driver_package::stamp::StampOptions {
            date: driver_package::stamp::DriverDate::parse("01/01/2026").unwrap(),
            version: driver_package::stamp::DriverVersion::parse("1").unwrap(),
            arch: "amd64".into(),
            catalog: "x.cat".into(),
            encoding: None,
            min_windows: Some((ndis_sys::availability::WINDOWS_10_1709, "Cargo.toml".into())),
        },
    );
}
