//! The local test-signing certificate: created once per machine and reused, like the
//! `WDRLocalTestCert` that windows-drivers-rs keeps in a Windows certificate store. It lives
//! outside the repository (a private key must never be committed) and is exported as a DER `.cer`
//! for the test VM's Root and TrustedPublisher stores.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use der::{Decode, DecodePem, Encode, EncodePem};
use rsa::RsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use sha2::Sha256;
use spki::{EncodePublicKey, SubjectPublicKeyInfoOwned};
use x509_cert::Certificate;
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::ext::pkix::ExtendedKeyUsage;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Validity;

use crate::asn1::EKU_CODE_SIGNING;
use crate::{Error, Result};

/// Environment variable that overrides where the certificate is kept.
pub const CERT_DIR_ENV: &str = "DRIVER_PACKAGE_CERT_DIR";
/// File in the certificate directory holding the private key and the certificate (one file, so
/// that two concurrent first runs cannot pair one run's key with the other's certificate).
pub const STORE_FILE: &str = "test-signing.pem";
pub const SUBJECT: &str = "CN=DriverPackageLocalTestCert,O=ndis-rs test signing (not trusted)";
/// RSA 3072: accepted by Windows kernel-mode code signing and by osslsigncode, and the size the
/// facts document's openssl recipe used.
pub const KEY_BITS: usize = 3072;
const VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// A key and its self-signed code-signing certificate.
#[derive(Clone)]
pub struct TestCert {
    pub key: RsaPrivateKey,
    pub cert: Certificate,
    pub path: PathBuf,
    /// Whether this run created it (false when an existing one was reused).
    pub created: bool,
}

impl std::fmt::Debug for TestCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCert")
            .field("path", &self.path)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

/// The directory used when neither a flag nor [`CERT_DIR_ENV`] says otherwise:
/// `$XDG_DATA_HOME/driver-package`, `~/.local/share/driver-package`, or on Windows
/// `%LOCALAPPDATA%\driver-package`.
pub fn default_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(CERT_DIR_ENV).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    if cfg!(windows)
        && let Some(d) = std::env::var_os("LOCALAPPDATA").filter(|v| !v.is_empty())
    {
        return Ok(PathBuf::from(d).join("driver-package"));
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(d).join("driver-package"));
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".local/share/driver-package")),
        None => Err(Error::msg(format!(
            "no place for the test certificate: set {CERT_DIR_ENV} (or HOME / XDG_DATA_HOME)"
        ))),
    }
}

impl TestCert {
    /// Loads the certificate from `dir`, creating it (and `dir`) on first use.
    pub fn load_or_create(dir: &Path) -> Result<TestCert> {
        let path = dir.join(STORE_FILE);
        if path.exists() {
            return Self::load(&path);
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::file(dir, format!("cannot create directory: {e}")))?;
        let (key, cert) = generate()?;
        let mut pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| Error::msg(format!("cannot encode the private key: {e}")))?
            .to_string();
        pem.push_str(&cert.to_pem(der::pem::LineEnding::LF)?);
        write_private(&path, pem.as_bytes())?;
        // Read back what is on disk: if another run won the race, use its certificate.
        let mut tc = Self::load(&path)?;
        tc.created = tc.cert == cert;
        Ok(tc)
    }

    pub fn load(path: &Path) -> Result<TestCert> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::file(path, format!("cannot read the test certificate: {e}")))?;
        let block = |label: &str| -> Result<&str> {
            let begin = format!("-----BEGIN {label}-----");
            let end = format!("-----END {label}-----");
            let s = text.find(&begin);
            let e = text.find(&end);
            match (s, e) {
                (Some(s), Some(e)) if s < e => Ok(&text[s..e + end.len()]),
                _ => Err(Error::file(
                    path,
                    format!("no {label} block; delete the file to create a new test certificate"),
                )),
            }
        };
        let key = RsaPrivateKey::from_pkcs8_pem(block("PRIVATE KEY")?)
            .map_err(|e| Error::file(path, format!("unreadable private key: {e}")))?;
        let cert = Certificate::from_pem(block("CERTIFICATE")?.as_bytes())
            .map_err(|e| Error::file(path, format!("unreadable certificate: {e}")))?;
        let spki = key
            .to_public_key()
            .to_public_key_der()
            .map_err(|e| Error::file(path, format!("cannot encode public key: {e}")))?;
        if cert.tbs_certificate.subject_public_key_info.to_der()? != spki.as_bytes() {
            return Err(Error::file(
                path,
                "the certificate does not belong to the private key; delete the file to start over",
            ));
        }
        let not_after = cert.tbs_certificate.validity.not_after.to_system_time();
        if not_after < std::time::SystemTime::now() {
            return Err(Error::file(
                path,
                "the test certificate has expired; delete the file to create a new one",
            ));
        }
        Ok(TestCert {
            key,
            cert,
            path: path.to_path_buf(),
            created: false,
        })
    }

    /// The certificate as DER, the `.cer` format certutil and Import-Certificate read.
    pub fn cer(&self) -> Result<Vec<u8>> {
        Ok(self.cert.to_der()?)
    }

    /// SHA-1 of the certificate: the "thumbprint" Windows shows and certutil accepts.
    pub fn thumbprint(&self) -> Result<String> {
        Ok(hex_upper(&crate::asn1::HashAlg::Sha1.digest(&self.cer()?)))
    }
}

fn generate() -> Result<(RsaPrivateKey, Certificate)> {
    let mut rng = rand_core::OsRng;
    let key = RsaPrivateKey::new(&mut rng, KEY_BITS)
        .map_err(|e| Error::msg(format!("RSA key generation failed: {e}")))?;
    let signer = SigningKey::<Sha256>::new(key.clone());
    let subject = Name::from_str(SUBJECT)?;
    let spki = SubjectPublicKeyInfoOwned::from_key(key.to_public_key())
        .map_err(|e| Error::msg(format!("cannot encode public key: {e}")))?;
    let mut serial = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rng, &mut serial);
    serial[0] &= 0x7F; // positive
    serial[0] |= 0x01; // and of full length
    let builder = CertificateBuilder::new(
        // Self-signed end-entity: CA:FALSE, digitalSignature, key identifiers.
        Profile::Leaf {
            issuer: subject.clone(),
            enable_key_agreement: false,
            enable_key_encipherment: false,
        },
        SerialNumber::new(&serial)?,
        Validity::from_now(VALIDITY)?,
        subject,
        spki,
        &signer,
    )
    .map_err(|e| Error::msg(format!("certificate builder: {e}")))?;
    let mut builder = builder;
    builder
        .add_extension(&ExtendedKeyUsage(vec![EKU_CODE_SIGNING]))
        .map_err(|e| Error::msg(format!("certificate builder: {e}")))?;
    let cert = builder
        .build::<rsa::pkcs1v15::Signature>()
        .map_err(|e| Error::msg(format!("certificate signing failed: {e}")))?;
    // Round-trip so the value compared later is exactly what the file holds.
    let cert = Certificate::from_der(&cert.to_der()?)?;
    Ok((key, cert))
}

/// Writes the key file readable by its owner only.
fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts
            .open(&tmp)
            .map_err(|e| Error::file(&tmp, format!("cannot write: {e}")))?;
        f.write_all(data)
            .map_err(|e| Error::file(&tmp, format!("cannot write: {e}")))?;
    }
    // Never replace a certificate another run already created: it may be trusted on a VM.
    if path.exists() {
        let _ = std::fs::remove_file(&tmp);
        return Ok(());
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::file(path, format!("cannot write: {e}")))
}

pub fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}
