//! The operator's own connection to a secured Kafka: TLS trust and client certificate, SASL credentials,
//! all read from the Secrets the spec names, and librdkafka's last connection error, so a failed
//! handshake or login reaches the status with the broker's own words instead of a bare timeout. Secret material is only ever handed to librdkafka; `Debug` leaves it out.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use rdkafka::ClientConfig;
use rdkafka::error::RDKafkaErrorCode;

use super::Error;
use crate::conditions::Reason;
use crate::controller::validate::KafkaSecuritySpec;
use crate::crd::{CA_CERT_KEY, SaslMechanism, TLS_CERT_KEY, TLS_KEY_KEY};
use crate::names;
use ordersystem_contract::wiring::secret_keys;

/// The operator's resolved client settings: what `KafkaSecuritySpec` names, read from the Secrets.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ClientSecurity {
    protocol: &'static str,
    ca_pem: Option<String>,
    client_cert_pem: Option<(String, String)>,
    sasl: Option<(SaslMechanism, String, String)>,
}

impl std::fmt::Debug for ClientSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSecurity")
            .field("protocol", &self.protocol)
            .field("ca", &self.ca_pem.is_some())
            .field("client_certificate", &self.client_cert_pem.is_some())
            .field("sasl", &self.sasl.as_ref().map(|(m, user, _)| (m, user)))
            .finish()
    }
}

impl ClientSecurity {
    /// Plaintext, no authentication.
    pub fn plaintext() -> Self {
        Self {
            protocol: "plaintext",
            ..Self::default()
        }
    }

    /// Settings from literal values (tests and callers that already hold the material).
    pub fn new(
        spec_protocol: &'static str,
        ca_pem: Option<String>,
        client_cert_pem: Option<(String, String)>,
        sasl: Option<(SaslMechanism, String, String)>,
    ) -> Self {
        Self {
            protocol: spec_protocol,
            ca_pem,
            client_cert_pem,
            sasl,
        }
    }

    /// Sets `security.protocol` and the TLS and SASL keys on a librdkafka config.
    pub fn apply(&self, config: &mut ClientConfig) {
        config.set("security.protocol", self.protocol);
        if self.protocol.ends_with("ssl") {
            match &self.ca_pem {
                Some(pem) => config.set("ssl.ca.pem", pem),
                // Without a CA Secret: the well-known locations of the system trust store.
                None => config.set("ssl.ca.location", "probe"),
            };
        }
        if let Some((cert, key)) = &self.client_cert_pem {
            config.set("ssl.certificate.pem", cert).set("ssl.key.pem", key);
        }
        if let Some((mechanism, username, password)) = &self.sasl {
            config
                .set("sasl.mechanism", mechanism.as_kafka())
                .set("sasl.username", username)
                .set("sasl.password", password);
        }
    }

    /// A digest of everything above: admin clients are cached per bootstrap list and fingerprint, so
    /// changed credentials get a new client.
    pub fn fingerprint(&self) -> String {
        let mut bytes = Vec::new();
        let mut push = |s: &str| {
            bytes.extend_from_slice(s.as_bytes());
            bytes.push(0);
        };
        push(self.protocol);
        push(self.ca_pem.as_deref().unwrap_or_default());
        if let Some((cert, key)) = &self.client_cert_pem {
            push(cert);
            push(key);
        }
        if let Some((mechanism, username, password)) = &self.sasl {
            push(mechanism.as_kafka());
            push(username);
            push(password);
        }
        names::hash_hex(&bytes)
    }
}

/// Reads the Secrets the spec names (by name, never from a cache of all Secrets).
pub async fn read(
    client: &kube::Client,
    namespace: &str,
    spec: &KafkaSecuritySpec,
) -> Result<ClientSecurity, Error> {
    let api = Api::<Secret>::namespaced(client.clone(), namespace);
    let mut security = ClientSecurity {
        protocol: spec.protocol(),
        ..ClientSecurity::default()
    };
    if let Some(tls) = &spec.tls {
        if let Some(ca) = &tls.ca_secret_ref {
            let data = secret_data(&api, &ca.name).await?;
            security.ca_pem = Some(text(&data, &ca.name, CA_CERT_KEY)?);
        }
        if let Some(cert) = &tls.client_certificate_secret_ref {
            let data = secret_data(&api, &cert.name).await?;
            security.client_cert_pem = Some((
                text(&data, &cert.name, TLS_CERT_KEY)?,
                text(&data, &cert.name, TLS_KEY_KEY)?,
            ));
        }
    }
    if let Some(sasl) = &spec.sasl {
        let name = &sasl.credentials_secret_ref.name;
        let data = secret_data(&api, name).await?;
        security.sasl = Some((
            sasl.mechanism,
            text(&data, name, secret_keys::USERNAME)?,
            text(&data, name, secret_keys::PASSWORD)?,
        ));
    }
    Ok(security)
}

async fn secret_data(api: &Api<Secret>, name: &str) -> Result<BTreeMap<String, ByteString>, Error> {
    let secret = api.get(name).await.map_err(|source| Error::ReadSecret {
        name: name.to_string(),
        source,
    })?;
    Ok(secret.data.unwrap_or_default())
}

fn text(data: &BTreeMap<String, ByteString>, name: &str, key: &'static str) -> Result<String, Error> {
    data.get(key)
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Error::SecretKey {
            name: name.to_string(),
            key,
        })
}

/// Why the client could not talk to the brokers, as librdkafka reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionFailure {
    pub kind: FailureKind,
    /// librdkafka's message, which carries the broker's or OpenSSL's reason.
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The TLS handshake failed (unknown CA, host name mismatch, a plaintext listener, ...).
    Tls,
    /// The broker refused the SASL login (wrong password, unknown user, mechanism not enabled).
    Authentication,
    /// Anything else the client reported (connection refused, all brokers down, ...).
    Other,
}

impl FailureKind {
    /// Condition reason.
    pub fn reason(self) -> Reason {
        match self {
            Self::Tls => Reason::KafkaTlsFailed,
            Self::Authentication => Reason::KafkaAuthenticationFailed,
            Self::Other => Reason::KafkaUnavailable,
        }
    }
}

/// The client's errors since the last call (which also drains its log lines into `tracing`): the last TLS
/// or authentication failure, else the last error of any kind.
pub fn take_failure(admin: &super::Admin) -> Option<ConnectionFailure> {
    let (mut refused, mut other) = (None, None);
    for (code, message) in ordersystem_kafka_admin::drain_client_events(admin) {
        tracing::warn!(%code, message, "kafka admin client error");
        match classify(code, &message) {
            FailureKind::Other => other = Some((FailureKind::Other, message)),
            kind => refused = Some((kind, message)),
        }
    }
    refused
        .or(other)
        .map(|(kind, message)| ConnectionFailure { kind, message })
}

/// What kind of failure one client error is. With TLS 1.3 a broker that refuses the client certificate
/// (none, or one from an unknown CA) sends its alert after the client finished the handshake, so
/// librdkafka reports it as a transport failure on the first read, with OpenSSL's words for the alert.
fn classify(code: RDKafkaErrorCode, message: &str) -> FailureKind {
    match code {
        RDKafkaErrorCode::SSL => FailureKind::Tls,
        RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed => {
            FailureKind::Authentication
        }
        RDKafkaErrorCode::BrokerTransportFailure if message.contains("SSL routines") => FailureKind::Tls,
        _ => FailureKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_which_material_is_set_but_never_the_material() {
        let security = ClientSecurity::new(
            "sasl_ssl",
            Some("-----BEGIN CERTIFICATE-----ca".into()),
            Some(("cert".into(), "-----BEGIN PRIVATE KEY-----key".into())),
            Some((SaslMechanism::ScramSha512, "admin".into(), "hunter2".into())),
        );
        let text = format!("{security:?}");
        assert!(text.contains("admin") && text.contains("sasl_ssl"), "{text}");
        for secret in ["hunter2", "PRIVATE KEY", "BEGIN CERTIFICATE"] {
            assert!(!text.contains(secret), "{text}");
        }
    }

    #[test]
    fn a_refused_client_certificate_counts_as_tls_even_when_reported_as_a_transport_failure() {
        let alert = "ssl://127.0.0.1:9093/bootstrap: Receive failed: error:0A000412:SSL routines::sslv3 alert bad \
                     certificate: SSL alert number 42 (after 1ms in state APIVERSION_QUERY)";
        assert_eq!(
            classify(RDKafkaErrorCode::BrokerTransportFailure, alert),
            FailureKind::Tls
        );
        let refused = "127.0.0.1:9093/bootstrap: Connect to ipv4#127.0.0.1:9093 failed: Connection refused";
        assert_eq!(
            classify(RDKafkaErrorCode::BrokerTransportFailure, refused),
            FailureKind::Other
        );
        assert_eq!(
            classify(RDKafkaErrorCode::SSL, "SSL handshake failed"),
            FailureKind::Tls
        );
        assert_eq!(
            classify(
                RDKafkaErrorCode::SaslAuthenticationFailed,
                "Authentication failed"
            ),
            FailureKind::Authentication
        );
    }
}
