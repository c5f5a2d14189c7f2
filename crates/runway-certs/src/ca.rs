//! The local certificate authority: an ECDSA P-256 key and a self-signed CA certificate,
//! made once per data directory, that signs the certificates runway serves until a public
//! CA (ACME) does.

use crate::{CA_FILE, CA_STATE, CertsError, Result, StoredCert, open_key, read_json, seal_context};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use runway_secrets::MasterKey;
use std::path::Path;
use time::{Duration, OffsetDateTime};

/// How long the CA is valid: long, since users trust it by hand.
const CA_VALIDITY: Duration = Duration::days(3650);
/// How long a served certificate is valid: what browsers accept at most (398 days).
const LEAF_VALIDITY: Duration = Duration::days(397);
/// Certificates start a little in the past, so a client whose clock is slightly behind
/// still accepts them.
const BACKDATE: Duration = Duration::hours(1);

/// The CA, with its key in memory for signing.
pub(crate) struct LocalCa {
    common_name: String,
    cert_pem: String,
    key: KeyPair,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa")
            .field("common_name", &self.common_name)
            .finish_non_exhaustive()
    }
}

/// A certificate issued by the CA.
pub(crate) struct Issued {
    /// The leaf, then the CA certificate, in PEM.
    pub chain_pem: String,
    /// The leaf's PKCS#8 private key in PEM.
    pub key_pem: String,
    /// Expiry as Unix seconds.
    pub not_after: i64,
}

/// The CA's parameters: rebuilt the same way to sign with a loaded key, so that issued
/// certificates name the CA exactly as its own certificate does.
fn ca_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "runway");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn random_serial() -> Result<SerialNumber> {
    // A fresh key's public point is as random as anything the CA has; its first bytes
    // make a unique serial without another source of randomness.
    let key = KeyPair::generate()?;
    let raw = key.public_key_raw();
    let mut bytes = raw.get(1..17).unwrap_or(raw).to_vec();
    if let Some(first) = bytes.first_mut() {
        // Positive and without a leading zero byte, as DER INTEGERs in serials must be.
        *first = (*first & 0x7f) | 0x40;
    }
    Ok(SerialNumber::from_slice(&bytes))
}

impl LocalCa {
    /// Loads the CA from `dir`, or creates it there; whether it was created.
    pub(crate) fn load_or_create(dir: &Path, master: &MasterKey) -> Result<(Self, bool)> {
        let state_path = dir.join(CA_STATE);
        let (ca, created) = match read_json::<StoredCert>(&state_path)? {
            Some(stored) => {
                let key_pem = open_key(master, &state_path, &stored.key_sealed)?;
                let key = KeyPair::from_pem(&key_pem).map_err(|e| CertsError::Corrupt {
                    path: state_path.display().to_string(),
                    reason: format!("the CA key: {e}"),
                })?;
                let common_name =
                    stored
                        .names
                        .first()
                        .cloned()
                        .ok_or_else(|| CertsError::Corrupt {
                            path: state_path.display().to_string(),
                            reason: "the CA has no name".into(),
                        })?;
                let ca = LocalCa {
                    common_name,
                    cert_pem: stored.chain_pem,
                    key,
                };
                (ca, false)
            }
            None => {
                let key = KeyPair::generate()?;
                let tag: String = key
                    .public_key_raw()
                    .iter()
                    .skip(1)
                    .take(4)
                    .map(|b| format!("{b:02x}"))
                    .collect();
                let common_name = format!("runway local CA {tag}");
                let mut params = ca_params(&common_name);
                let now = OffsetDateTime::now_utc();
                params.not_before = now - BACKDATE;
                params.not_after = now + CA_VALIDITY;
                params.serial_number = Some(random_serial()?);
                let cert = params.self_signed(&key)?;
                let stored = StoredCert {
                    names: vec![common_name.clone()],
                    chain_pem: cert.pem(),
                    key_sealed: master
                        .seal(&seal_context(&state_path), key.serialize_pem().as_bytes())?,
                    not_after: Some(params.not_after.unix_timestamp()),
                };
                // The sealed state is the source of truth; ca.pem is a copy for users,
                // rewritten below whenever it differs, so a crash between the two
                // writes heals on the next start.
                crate::write_json(&state_path, &stored)?;
                tracing::info!(name = %common_name, "created the local certificate authority");
                let ca = LocalCa {
                    common_name,
                    cert_pem: stored.chain_pem,
                    key,
                };
                (ca, true)
            }
        };
        let public = dir.join(CA_FILE);
        let on_disk = std::fs::read_to_string(&public).ok();
        if on_disk.as_deref() != Some(ca.cert_pem.as_str()) {
            runway_store::fs::write_atomic(&public, ca.cert_pem.as_bytes(), 0o644)?;
        }
        Ok((ca, created))
    }

    /// The CA certificate in PEM.
    pub(crate) fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues a server certificate for `names` (the first is also the subject's common
    /// name) with a new key.
    pub(crate) fn issue(&self, names: &[String]) -> Result<Issued> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.to_vec())?;
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, first);
        }
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + LEAF_VALIDITY;
        params.serial_number = Some(random_serial()?);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let issuer = Issuer::new(ca_params(&self.common_name), &self.key);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(Issued {
            chain_pem: format!("{}{}", cert.pem(), self.cert_pem),
            key_pem: key.serialize_pem(),
            not_after: params.not_after.unix_timestamp(),
        })
    }
}
