//! A test's own secured broker (`KAFKA_SECURITY=sasl_ssl kafka.sh`): SASL_SSL on loopback with a test CA,
//! the SCRAM super user `admin`, and the StandardAuthorizer. Started by the test that needs it, in its own
//! port range, and wiped when the guard drops, also when the test fails.

use std::path::PathBuf;

use rdkafka::ClientConfig;

use crate::own_instance::OwnInstance;

/// The broker's super user, added when its log directory is formatted.
pub const ADMIN_USER: &str = "admin";
/// Its password (test-only; `KAFKA_ADMIN_PASSWORD` of `kafka.sh`).
pub const ADMIN_PASSWORD: &str = "admin-test-secret";

/// A running secured broker instance; stopped and wiped on drop.
pub struct SecureBroker {
    instance: String,
    port: u16,
    _own: OwnInstance,
}

impl SecureBroker {
    /// Starts (formatting on first start) instance `instance` on `port` and `controller_port`.
    ///
    /// # Panics
    /// When the broker does not come up; `kafka.sh` prints its log tail.
    pub async fn start(instance: &str, port: u16, controller_port: u16) -> Self {
        // A leftover of an aborted run would carry another CA: start from nothing.
        let own = OwnInstance::kafka(instance, port, controller_port)
            .with_env("KAFKA_SECURITY", "sasl_ssl")
            .with_env("KAFKA_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .start_fresh()
            .await;
        Self {
            instance: instance.to_string(),
            port,
            _own: own,
        }
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The test CA certificate (PEM file) that signed the broker's certificate.
    pub fn ca_path(&self) -> PathBuf {
        crate::env::state().join(&self.instance).join("tls/ca.crt")
    }

    /// The CA certificate's PEM text.
    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.ca_path()).expect("the broker's CA certificate is readable")
    }

    /// A client config for `user` with SCRAM-SHA-512 over TLS, trusting the test CA.
    pub fn client_config(&self, user: &str, password: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", self.bootstrap())
            .set("security.protocol", "sasl_ssl")
            .set("ssl.ca.location", self.ca_path().to_string_lossy())
            .set("sasl.mechanism", "SCRAM-SHA-512")
            .set("sasl.username", user)
            .set("sasl.password", password);
        config
    }
}
