//! `--tls`: verilimit also answers over HTTPS under Twilio's own hostnames, so an official SDK
//! that cannot change its base URL (Java, C#, PHP, Ruby, Go) reaches it unchanged once the name
//! `verify.twilio.com` resolves to verilimit (e.g. a docker-compose network alias) and the
//! application trusts verilimit's certificate authority.
//!
//! - The authority (a self-signed CA, ECDSA P-256) is made at first start and kept in the
//!   database (table `tls_authority`, one row), so restarts and every instance sharing a
//!   PostgreSQL database present the same CA; `sqlite::memory:` makes a new one each run. Or it
//!   is read from `--tls-ca-cert` / `--tls-ca-key`.
//! - The server certificate is issued by it at every start, for [`certificate_names`].
//! - Requests that came over TLS carry [`ViaTls`], so their `url`, `links` and paging URLs say
//!   `https://`.

use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

use crate::config::Config;
use crate::store::Store;

/// Marks a request that came over the TLS listener (a request extension).
#[derive(Clone, Copy, Debug)]
pub struct ViaTls;

/// The Twilio products whose hostnames the certificate names: Verify and Event Streams.
pub const PRODUCTS: &[&str] = &["verify", "events"];

/// Twilio Regions (`TWILIO_REGION`), from Twilio's "Regions" reference.
pub const REGIONS: &[&str] = &[
    "us1", "us2", "ie1", "au1", "br1", "de1", "jp1", "sg1", "in1",
];

/// Twilio's public Edge Locations (`TWILIO_EDGE`), from Twilio's "Edge Locations" reference.
pub const EDGES: &[&str] = &[
    "ashburn",
    "dublin",
    "frankfurt",
    "sao-paulo",
    "singapore",
    "sydney",
    "tokyo",
    "umatilla",
    "roaming",
];

/// Every name the server certificate is issued for: for Verify and Events, `P.twilio.com`,
/// `P.REGION.twilio.com` and `P.EDGE.REGION.twilio.com` (the forms the official SDKs build from
/// `TWILIO_REGION` / `TWILIO_EDGE`; an edge without a region means `us1`), then `localhost`,
/// `127.0.0.1`, `::1` and the `--tls-name` values.
pub fn certificate_names(extra: &[String]) -> Vec<String> {
    let mut names = Vec::new();
    for product in PRODUCTS {
        names.push(format!("{product}.twilio.com"));
        for region in REGIONS {
            names.push(format!("{product}.{region}.twilio.com"));
        }
        for edge in EDGES {
            for region in REGIONS {
                names.push(format!("{product}.{edge}.{region}.twilio.com"));
            }
        }
    }
    names.extend(["localhost", "127.0.0.1", "::1"].map(str::to_owned));
    for name in extra {
        let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// A certificate authority: its certificate (public) and private key, both PEM.
pub struct Authority {
    pub cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

impl Authority {
    /// A new CA, valid from yesterday (clock skew between containers) for ten years.
    pub fn generate() -> Result<Self, String> {
        let key = KeyPair::generate().map_err(|e| format!("cannot make a CA key: {e}"))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "verilimit");
        dn.push(
            DnType::CommonName,
            format!("verilimit local CA {:08x}", rand::random::<u32>()),
        );
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now() - time::Duration::days(1);
        params.not_after = now() + time::Duration::days(3650);
        let cert = params
            .self_signed(&key)
            .map_err(|e| format!("cannot make the CA certificate: {e}"))?;
        Ok(Authority {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The CA's private key, PEM (secret: never logged).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// An existing CA. Refuses a certificate that is not a CA, or a key that is not its own.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, String> {
        let key = KeyPair::from_pem(key_pem)
            .map_err(|e| format!("the CA key is not a PKCS#8 PEM private key: {e}"))?;
        let der = pem_certificate(cert_pem)?;
        let (_, x509) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| format!("the CA certificate cannot be parsed: {e}"))?;
        if !x509.is_ca() {
            return Err("the CA certificate is not a CA (basicConstraints CA:TRUE)".to_owned());
        }
        if x509.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err("the CA key does not belong to the CA certificate".to_owned());
        }
        Ok(Authority {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
        })
    }

    /// A server certificate for `names`, valid from yesterday for 397 days (issued anew at every
    /// start); returns it (the whole chain: clients hold the CA as their trust anchor) and its
    /// private key.
    pub fn issue(
        &self,
        names: &[String],
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
        let ca_key = KeyPair::from_pem(&self.key_pem).map_err(|e| format!("the CA key: {e}"))?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, ca_key)
            .map_err(|e| format!("the CA certificate: {e}"))?;
        let key = KeyPair::generate().map_err(|e| format!("cannot make a server key: {e}"))?;
        let mut params = CertificateParams::new(names.to_vec())
            .map_err(|e| format!("invalid certificate name: {e}"))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "verilimit");
        dn.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = now() - time::Duration::days(1);
        params.not_after = now() + time::Duration::days(397);
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|e| format!("cannot issue the server certificate: {e}"))?;
        let chain = vec![cert.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((chain, key))
    }
}

/// The first certificate of a PEM text, as DER.
fn pem_certificate(pem: &str) -> Result<CertificateDer<'static>, String> {
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| format!("no PEM certificate: {e:?}"))
}

/// What `--tls` needs to serve: the TLS acceptor and the CA certificate to publish.
#[derive(Clone)]
pub struct Tls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// The CA certificate, PEM (public: served at `GET /emulator/v1/ca.pem`).
    pub ca_pem: Arc<str>,
}

/// A server TLS configuration for `chain` and `key`: TLS 1.2 and 1.3 (ring), HTTP/1.1 by ALPN.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("TLS certificate: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Sets up `--tls` after the database is open and migrated: the CA (from the files given, the
/// database, or new), the server certificate, and the CA copy for `--tls-ca-out`.
pub async fn setup(config: &Config, store: &Store) -> Result<Tls, String> {
    let authority = match (&config.tls_ca_cert, &config.tls_ca_key) {
        (Some(cert), Some(key)) => {
            let read = |p: &Path| {
                std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
            };
            Authority::from_pem(&read(cert)?, &read(key)?)?
        }
        (None, None) => stored_authority(&config.database_url, store).await?,
        _ => return Err("--tls-ca-cert and --tls-ca-key must be given together".to_owned()),
    };
    let names = certificate_names(&config.tls_names);
    let (chain, key) = authority.issue(&names)?;
    let server = server_config(chain, key)?;
    if let Some(path) = &config.tls_ca_out {
        write_public_file(path, &authority.cert_pem)
            .map_err(|e| format!("cannot write the CA certificate to {}: {e}", path.display()))?;
    }
    tracing::info!(
        names = names.len(),
        ca_out = ?config.tls_ca_out,
        "TLS certificate issued by the verilimit CA"
    );
    Ok(Tls {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
        ca_pem: Arc::from(authority.cert_pem.as_str()),
    })
}

/// Whether `url` names a database that ends with the process.
fn is_in_memory(url: &str) -> bool {
    url.starts_with("sqlite::memory:") || url.contains(":memory:") || url.contains("mode=memory")
}

/// The CA kept in the database, made (and stored) if there is none yet. Every instance sharing a
/// PostgreSQL database gets the same one: the first insert wins, the others read it.
async fn stored_authority(url: &str, store: &Store) -> Result<Authority, String> {
    if is_in_memory(url) {
        return Authority::generate();
    }
    let fresh = Authority::generate()?;
    let (cert, key) = store
        .keep_tls_authority(fresh.cert_pem, fresh.key_pem, crate::state::real_now_ms())
        .await
        .map_err(|e| format!("cannot keep the TLS authority in the database: {e}"))?;
    Authority::from_pem(&cert, &key).map_err(|e| format!("the stored TLS authority: {e}"))
}

/// Writes `text` to `path` readable by all (0644), replacing it atomically (a reader sharing the
/// file through a volume never sees half of it).
fn write_public_file(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file path"))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    std::fs::write(&tmp, text)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
    }
    std::fs::rename(&tmp, path)
}

/// `GET /emulator/v1/ca.pem`: the CA certificate (public, no credentials).
pub async fn ca_pem(
    axum::Extension(tls): axum::Extension<Option<Arc<str>>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tls {
        Some(pem) => (
            [
                (
                    axum::http::header::CONTENT_TYPE,
                    "application/x-pem-file; charset=utf-8",
                ),
                (axum::http::header::CACHE_CONTROL, "no-store"),
            ],
            pem.to_string(),
        )
            .into_response(),
        None => crate::twilio::ApiError::not_found("/emulator/v1/ca.pem").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cover_the_sdk_host_forms() {
        let names = certificate_names(&["verilimit".into(), "VERIFY.twilio.com.".into()]);
        for n in [
            "verify.twilio.com",
            "events.twilio.com",
            "verify.ie1.twilio.com",
            "verify.sydney.au1.twilio.com",
            "events.ashburn.us1.twilio.com",
            "localhost",
            "127.0.0.1",
            "verilimit",
        ] {
            assert!(names.iter().any(|x| x == n), "{n} missing");
        }
        assert_eq!(
            names.iter().filter(|n| *n == "verify.twilio.com").count(),
            1
        );
    }

    #[test]
    fn an_authority_round_trips_and_issues() {
        let ca = Authority::generate().unwrap();
        let again = Authority::from_pem(&ca.cert_pem, &ca.key_pem).unwrap();
        let (chain, _) = again
            .issue(&certificate_names(&[]))
            .expect("issue a server certificate");
        assert_eq!(chain.len(), 1);
        assert!(!format!("{ca:?}").contains("PRIVATE KEY"));
        let other = Authority::generate().unwrap();
        assert!(Authority::from_pem(&ca.cert_pem, &other.key_pem).is_err());
        let (leaf, _) = ca.issue(&["x.test".into()]).unwrap();
        let leaf_pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &leaf[0])
        );
        let leaf_key = KeyPair::generate().unwrap().serialize_pem();
        assert!(Authority::from_pem(&leaf_pem, &leaf_key).is_err());
    }

    #[test]
    fn memory_databases_are_recognised() {
        assert!(is_in_memory("sqlite::memory:"));
        assert!(is_in_memory("sqlite://file:x?mode=memory"));
        assert!(!is_in_memory("sqlite://verilimit.db"));
    }
}
