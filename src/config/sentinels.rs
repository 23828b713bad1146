//! How to reach the sentinels: `sentinel_auth` (ACL user, password from the
//! environment or a file) and `sentinel_tls` (CA, client certificate, name).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::keyed;
use super::secret::{Secret, SecretSource};

/// Where a secret comes from: an environment variable or a file
/// (e.g. `/run/credentials/sentinel-vip.service/...` with systemd `LoadCredential=`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSentinelAuth {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password_env: Option<String>,
    #[serde(default)]
    password_file: Option<PathBuf>,
}

/// How the watcher proves who it is to the sentinels, and checks who they are:
/// ACL credentials and, with `sentinel_tls`, TLS.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(try_from = "RawSentinelAuth")]
pub struct SentinelAuth {
    pub username: Option<String>,
    /// The password, once [`crate::config::Config::resolve_sentinel_password`]
    /// has read it (parsing reads no secret).
    pub password: Option<Secret>,
    /// Where the password comes from (`password_env` or `password_file`).
    pub password_source: Option<SecretSource>,
    /// Copied from the top-level `sentinel_tls` key by [`Config::parse`].
    pub tls: Option<SentinelTls>,
}

impl SentinelAuth {
    /// The config key the password comes from, for messages.
    pub fn password_key(&self) -> &'static str {
        match self.password_source {
            Some(SecretSource::Env(_)) => "sentinel_auth.password_env",
            _ => "sentinel_auth.password_file",
        }
    }
}

impl TryFrom<RawSentinelAuth> for SentinelAuth {
    type Error = String;
    fn try_from(raw: RawSentinelAuth) -> Result<Self, String> {
        let password_source = match (raw.password_env, raw.password_file) {
            (Some(_), Some(_)) => {
                return Err(keyed(
                    "password_env",
                    "set password_env or password_file, not both",
                ))
            }
            (Some(var), None) if var.is_empty() => {
                return Err(keyed("password_env", "name an environment variable"))
            }
            (Some(var), None) => Some(SecretSource::Env(var)),
            (None, Some(path)) => Some(SecretSource::File(path)),
            (None, None) => None,
        };
        Ok(SentinelAuth {
            username: raw.username,
            password: None,
            password_source,
            tls: None,
        })
    }
}

/// `sentinel_tls` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSentinelTls {
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    cert_file: Option<PathBuf>,
    #[serde(default)]
    key_file: Option<PathBuf>,
    #[serde(default)]
    server_name: Option<String>,
}

/// TLS to the sentinels, ready to use: the certificate files are read and the
/// rustls client configuration is built while the config loads, so a missing
/// file, a PEM without a certificate or a key that does not match its
/// certificate is a config error naming the key, not a failure at first connect.
///
/// The configuration carries its own crypto provider (aws-lc-rs, the one the AWS
/// SDK links too), so it never depends on the process-level default.
#[derive(Clone, Deserialize)]
#[serde(try_from = "RawSentinelTls")]
pub struct SentinelTls {
    pub client: std::sync::Arc<fred::rustls::ClientConfig>,
    /// The name checked against each sentinel's certificate instead of its address.
    pub server_name: Option<String>,
    /// The CA file, or None for the system's roots (for messages only).
    pub ca_file: Option<PathBuf>,
    /// Whether a client certificate is presented (`tls-auth-clients yes`).
    pub client_cert: bool,
}

impl fmt::Debug for SentinelTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentinelTls")
            .field("ca_file", &self.ca_file)
            .field("server_name", &self.server_name)
            .field("client_cert", &self.client_cert)
            .finish()
    }
}

impl TryFrom<RawSentinelTls> for SentinelTls {
    type Error = String;
    fn try_from(raw: RawSentinelTls) -> Result<Self, String> {
        use fred::rustls::{self, client::WebPkiServerVerifier, pki_types};
        use pki_types::pem::PemObject;
        use pki_types::{CertificateDer, PrivateKeyDer, ServerName};
        use std::sync::Arc;

        fn certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| keyed(key, format!("cannot read {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(keyed(
                    key,
                    format!("{} holds no PEM certificate", path.display()),
                ));
            }
            Ok(certs)
        }

        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        match &raw.ca_file {
            Some(path) => {
                for c in certs("ca_file", path)? {
                    roots.add(c).map_err(|e| {
                        keyed(
                            "ca_file",
                            format!("{}: not a CA certificate: {e}", path.display()),
                        )
                    })?;
                }
            }
            None => {
                for c in fred::rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(c);
                }
                if roots.is_empty() {
                    return Err(keyed(
                        "ca_file",
                        "no ca_file given and no system CA certificates found; set ca_file to the CA that signed the sentinels' certificates",
                    ));
                }
            }
        }
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| keyed("ca_file", e))?;
        let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> = match &raw.server_name {
            Some(name) => {
                let name = ServerName::try_from(name.clone()).map_err(|_| {
                    keyed(
                        "server_name",
                        format!("{name:?} is neither a DNS name nor an IP address"),
                    )
                })?;
                Arc::new(VerifyAs {
                    inner: webpki,
                    name,
                })
            }
            None => webpki,
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| keyed("ca_file", e))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let client = match (&raw.cert_file, &raw.key_file) {
            (Some(cert), Some(key)) => {
                let chain = certs("cert_file", cert)?;
                let pk = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    keyed(
                        "key_file",
                        format!("cannot read a PEM private key from {}: {e}", key.display()),
                    )
                })?;
                builder.with_client_auth_cert(chain, pk).map_err(|e| {
                    keyed(
                        "key_file",
                        format!("{} does not go with {}: {e}", key.display(), cert.display()),
                    )
                })?
            }
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) => {
                return Err(keyed(
                    "key_file",
                    "cert_file is set: set key_file (the client certificate's private key) too",
                ))
            }
            (None, Some(_)) => {
                return Err(keyed(
                    "cert_file",
                    "key_file is set: set cert_file (the client certificate) too",
                ))
            }
        };
        Ok(SentinelTls {
            client: Arc::new(client),
            server_name: raw.server_name,
            ca_file: raw.ca_file,
            client_cert: raw.cert_file.is_some(),
        })
    }
}

/// Verifies a sentinel's certificate for a configured name instead of the
/// address dialled (`sentinel_tls.server_name`): sentinels listed by IP whose
/// certificates carry only a DNS name. Chain, expiry and signatures are checked
/// as usual.
#[derive(Debug)]
struct VerifyAs {
    inner: std::sync::Arc<fred::rustls::client::WebPkiServerVerifier>,
    name: fred::rustls::pki_types::ServerName<'static>,
}

impl fred::rustls::client::danger::ServerCertVerifier for VerifyAs {
    fn verify_server_cert(
        &self,
        end_entity: &fred::rustls::pki_types::CertificateDer<'_>,
        intermediates: &[fred::rustls::pki_types::CertificateDer<'_>],
        _dialled: &fred::rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: fred::rustls::pki_types::UnixTime,
    ) -> Result<fred::rustls::client::danger::ServerCertVerified, fred::rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &fred::rustls::pki_types::CertificateDer<'_>,
        dss: &fred::rustls::DigitallySignedStruct,
    ) -> Result<fred::rustls::client::danger::HandshakeSignatureValid, fred::rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &fred::rustls::pki_types::CertificateDer<'_>,
        dss: &fred::rustls::DigitallySignedStruct,
    ) -> Result<fred::rustls::client::danger::HandshakeSignatureValid, fred::rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<fred::rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
