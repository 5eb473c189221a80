//! A test's own secured broker (`KAFKA_SECURITY=sasl_ssl kafka.sh`): SASL_SSL on loopback with a test CA,
//! the SCRAM super user `admin`, and the StandardAuthorizer; or a mutual-TLS one (`KAFKA_SECURITY=ssl`)
//! whose clients need a certificate from the test CA and are known by its CN. Started by the test that
//! needs it, in its own port range, and wiped when the guard drops, also when the test fails.

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
    node_bootstrap: String,
    own: OwnInstance,
}

impl SecureBroker {
    /// Starts (formatting on first start) instance `instance` on `port` and `controller_port`.
    ///
    /// # Panics
    /// When the broker does not come up; `kafka.sh` prints its log tail.
    pub async fn start(instance: &str, port: u16, controller_port: u16) -> Self {
        Self::launch(instance, port, controller_port, "sasl_ssl", &[]).await
    }

    /// Like [`Self::start`], with PLAIN enabled too, for these users (name, password) besides the admin.
    /// With `client_cns` the listener also requires a client certificate from the test CA (issued for
    /// `admin` and each of them); the principal stays the SASL user.
    pub async fn start_with_plain_users(
        instance: &str,
        port: u16,
        controller_port: u16,
        users: &[(&str, &str)],
        client_cns: &[&str],
    ) -> Self {
        let users: Vec<String> = users.iter().map(|(u, p)| format!("{u}:{p}")).collect();
        let mut env = vec![("KAFKA_PLAIN_USERS", users.join(" "))];
        if !client_cns.is_empty() {
            env.push(("KAFKA_CLIENT_AUTH", "required".to_string()));
            env.push(("KAFKA_CLIENT_CERTS", client_cns.join(" ")));
        }
        Self::launch(instance, port, controller_port, "sasl_ssl", &env).await
    }

    /// A mutual-TLS broker: its listener requires a client certificate signed by the test CA, and the
    /// principal is the certificate's CN. Certificates are issued for `admin` (the super user) and for
    /// each of `client_cns`.
    pub async fn start_mutual_tls(
        instance: &str,
        port: u16,
        controller_port: u16,
        client_cns: &[&str],
    ) -> Self {
        Self::launch(
            instance,
            port,
            controller_port,
            "ssl",
            &[("KAFKA_CLIENT_CERTS", client_cns.join(" "))],
        )
        .await
    }

    async fn launch(
        instance: &str,
        port: u16,
        controller_port: u16,
        security: &str,
        env: &[(&'static str, String)],
    ) -> Self {
        let mut own = OwnInstance::kafka(instance, port, controller_port)
            .with_env("KAFKA_SECURITY", security)
            .with_env("KAFKA_ADMIN_PASSWORD", ADMIN_PASSWORD);
        for (key, value) in env {
            own = own.with_env(key, value.clone());
        }
        // A leftover of an aborted run would carry another CA: start from nothing.
        let own = own.start_fresh().await;
        let node_bootstrap = own.run("node-bootstrap").await;
        Self {
            instance: instance.to_string(),
            port,
            node_bootstrap,
            own,
        }
    }

    /// Stops the broker, keeping its state, to show what waits for it.
    pub async fn stop(&self) {
        self.own.run("stop").await;
    }

    /// Starts the broker again after [`Self::stop`].
    pub async fn resume(&self) {
        self.own.run("start").await;
    }

    /// Runs `kafka-acls` against the broker as the admin, e.g. `["--add", "--allow-principal", …]`.
    pub async fn acl(&self, args: &[&str]) {
        let mut all = vec!["acl"];
        all.extend_from_slice(args);
        self.own.run_args(&all).await;
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The bootstrap servers the real node's pods use: the broker's bridge listener, by the name the node's
    /// CoreDNS serves (the broker's certificate names it).
    pub fn node_bootstrap(&self) -> String {
        self.node_bootstrap.clone()
    }

    /// The test CA certificate (PEM file) that signed the broker's certificate.
    pub fn ca_path(&self) -> PathBuf {
        crate::env::state().join(&self.instance).join("tls/ca.crt")
    }

    /// The client certificate issued for `cn` (mutual-TLS brokers): PEM certificate and key files.
    pub fn client_cert_paths(&self, cn: &str) -> (PathBuf, PathBuf) {
        let tls = crate::env::state().join(&self.instance).join("tls");
        (tls.join(format!("{cn}.crt")), tls.join(format!("{cn}.key")))
    }

    /// The client certificate issued for `cn`: PEM certificate and key text.
    pub fn client_cert_pem(&self, cn: &str) -> (String, String) {
        let (cert, key) = self.client_cert_paths(cn);
        let read = |path: PathBuf| std::fs::read_to_string(path).expect("the client certificate is readable");
        (read(cert), read(key))
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
