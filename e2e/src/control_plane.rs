//! The world of one control-plane test: the CRD installed from `crds/`, a namespace of its own that is
//! deleted when the test ends, the Secrets an `OrderSystem` names, logins to the test database, and the
//! operator binary as a process. Nothing here knows the operator's code: a test that runs the controller
//! in-process starts it itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use ordersystem_api::crd::OrderSystem;
use ordersystem_testkit::secure_kafka::{ADMIN_PASSWORD, ADMIN_USER, SecureBroker};

use crate::{env, names};

const CRD_YAML: &str = include_str!("../../crds/ordersystem.io_ordersystems.yaml");

/// The field manager of everything the tests apply.
const MANAGER: &str = "ordersystem-tests";

/// The admin Secret every test `OrderSystem` names (`spec.postgres.adminSecretRef`).
pub const ADMIN_SECRET: &str = "pg-admin";

/// Installs the committed CRD (server-side apply, so concurrent tests agree) and waits until it is served.
pub async fn install_crd(client: &kube::Client) {
    let crd: CustomResourceDefinition = serde_yaml::from_str(CRD_YAML).expect("crds/ parses");
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.metadata.name.clone().expect("CRD has a name");
    api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&crd))
        .await
        .expect("the CRD from crds/ installs");
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(api, &name, conditions::is_crd_established()),
    )
    .await
    .expect("CRD established within 30s")
    .expect("watching the CRD");
}

/// Runs a cleanup future to completion from `Drop`, also while a test panics: on its own thread and
/// runtime, because the test's runtime may be shutting down.
pub fn block_on_cleanup<F: std::future::Future<Output = ()> + Send + 'static>(cleanup: F) {
    let thread = std::thread::spawn(move || {
        if let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
            runtime.block_on(async { tokio::time::timeout(Duration::from_secs(30), cleanup).await.ok() });
        }
    });
    let _ = thread.join();
}

/// A namespace of the shared control plane with the CRD installed, deleted on drop, so a failing test
/// still cleans up.
pub struct TestNamespace {
    pub name: String,
    client: kube::Client,
}

impl TestNamespace {
    /// Installs the CRD and creates a namespace named after `prefix`.
    pub async fn create(client: &kube::Client, prefix: &str) -> Self {
        install_crd(client).await;
        let name = names::unique(prefix);
        let ns: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("namespace");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        Self {
            name,
            client: client.clone(),
        }
    }

    /// [`TestNamespace::create`], with the admin Secret [`ADMIN_SECRET`] from `DATABASE_URL`.
    pub async fn with_admin_secret(client: &kube::Client, prefix: &str) -> Self {
        let ns = Self::create(client, prefix).await;
        create_admin_secret(client, &ns.name, ADMIN_SECRET).await;
        ns
    }

    /// The `OrderSystem`s of this namespace.
    pub fn systems(&self) -> Api<OrderSystem> {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Creates the `OrderSystem` described by `os` (JSON, as in the YAML a user applies).
    pub async fn create_system(&self, os: serde_json::Value) {
        self.systems()
            .create(&PostParams::default(), &crate::order_system::to_os(os))
            .await
            .expect("create");
    }

    /// Creates or replaces Secret `name` of `type_` (`Opaque`, `kubernetes.io/tls`) with `data`.
    pub async fn put_secret(&self, name: &str, type_: &str, data: &[(&str, &str)]) {
        put_secret(&self.client, &self.name, name, type_, data).await;
    }

    /// The Secret `kafka-ca` with `broker`'s CA, as `spec.kafka.tls.caSecretRef` names it.
    pub async fn put_kafka_ca(&self, broker: &SecureBroker) {
        self.put_secret("kafka-ca", "Opaque", &[("ca.crt", &broker.ca_pem())])
            .await;
    }

    /// The `kubernetes.io/tls` Secret `kafka-client` with a client certificate and its key.
    pub async fn put_kafka_client_certificate(&self, cert: &str, key: &str) {
        self.put_secret(
            "kafka-client",
            "kubernetes.io/tls",
            &[("tls.crt", cert), ("tls.key", key)],
        )
        .await;
    }

    /// The Secret `kafka-admin` with the secured broker's admin login, as `spec.kafka.sasl` names it.
    pub async fn put_kafka_admin(&self) {
        self.put_login("kafka-admin", ADMIN_USER, ADMIN_PASSWORD).await;
    }

    /// The Secret `name` with a `username` and a `password`.
    pub async fn put_login(&self, name: &str, username: &str, password: &str) {
        self.put_secret(name, "Opaque", &[("username", username), ("password", password)])
            .await;
    }

    /// The decoded value of one key of Secret `name`.
    pub async fn secret_value(&self, name: &str, key: &str) -> String {
        secret_value(&self.client, &self.name, name, key).await
    }

    /// The Deployment `name`, if it exists.
    pub async fn deployment(&self, name: &str) -> Option<Deployment> {
        Api::<Deployment>::namespaced(self.client.clone(), &self.name)
            .get_opt(name)
            .await
            .ok()
            .flatten()
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let name = self.name.clone();
        // A fresh client: the test's client is driven by the test's runtime, which may be gone.
        block_on_cleanup(async move {
            let client = crate::kube::client().await;
            // A test that failed midway may leave a finalizer no operator will ever release.
            let systems: Api<OrderSystem> = Api::namespaced(client.clone(), &name);
            if let Ok(list) = systems.list(&Default::default()).await {
                let unblock = serde_json::json!({"metadata": {"finalizers": null}});
                for os in list {
                    let os_name = os.metadata.name.unwrap_or_default();
                    let _ = systems
                        .patch(&os_name, &PatchParams::default(), &Patch::Merge(&unblock))
                        .await;
                }
            }
            let api: Api<Namespace> = Api::all(client);
            let _ = api.delete(&name, &DeleteParams::background()).await;
        });
    }
}

/// Creates the admin Secret an `OrderSystem` names, from `DATABASE_URL`
/// (`postgres://user:password@host:port/dbname`), with CloudNativePG's `user` key to prove it is accepted.
pub async fn create_admin_secret(client: &kube::Client, namespace: &str, name: &str) {
    let url = env::database_url();
    let rest = url
        .split_once("://")
        .map(|(_, r)| r)
        .expect("DATABASE_URL has a scheme");
    let (credentials, location) = rest.rsplit_once('@').expect("DATABASE_URL has credentials");
    let (user, password) = credentials.split_once(':').expect("DATABASE_URL has a password");
    let (hostport, dbname) = location.split_once('/').expect("DATABASE_URL has a database");
    let dbname = dbname.split('?').next().unwrap_or(dbname);
    let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "5432"));
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "stringData": {"host": host, "port": port, "dbname": dbname, "user": user, "password": password},
    }))
    .expect("secret");
    Api::<Secret>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &secret)
        .await
        .expect("create admin secret");
}

/// Creates or replaces Secret `name` of `type_` (`Opaque`, `kubernetes.io/tls`) with `data`.
pub async fn put_secret(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    type_: &str,
    data: &[(&str, &str)],
) {
    let data: BTreeMap<&str, &str> = data.iter().copied().collect();
    let secret: Secret = serde_json::from_value(
        serde_json::json!({"metadata": {"name": name}, "type": type_, "stringData": data}),
    )
    .expect("secret");
    Api::<Secret>::namespaced(client.clone(), namespace)
        .patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&secret))
        .await
        .expect("apply secret");
}

/// The decoded value of one key of a Secret.
pub async fn secret_value(client: &kube::Client, namespace: &str, name: &str, key: &str) -> String {
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .expect("secret exists");
    let bytes = secret
        .data
        .and_then(|d| d.get(key).cloned())
        .expect("key present");
    String::from_utf8(bytes.0).expect("utf-8")
}

/// A connection as `user` with `password` to the test database.
pub async fn connect_as(user: &str, password: &str) -> Result<sqlx::PgConnection, sqlx::Error> {
    use sqlx::Connection;
    let options: sqlx::postgres::PgConnectOptions = env::database_url().parse().expect("DATABASE_URL parses");
    sqlx::PgConnection::connect_with(&options.username(user).password(password)).await
}

/// A connection as the test database's admin role (`DATABASE_URL`).
pub async fn connect_as_admin() -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect(&env::database_url())
        .await
        .expect("admin connects")
}

/// Whether the schema `name` exists in the test database.
pub async fn schema_exists(name: &str) -> bool {
    catalog_has(
        "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
        name,
    )
    .await
}

/// Whether the role `name` exists in the test database.
pub async fn role_exists(name: &str) -> bool {
    catalog_has("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", name).await
}

async fn catalog_has(query: &'static str, name: &str) -> bool {
    sqlx::query_scalar(query)
        .bind(name)
        .fetch_one(&mut connect_as_admin().await)
        .await
        .expect("query")
}

/// The operator binary as a process, so a test can kill it with SIGKILL and start it again. It runs with
/// the kubeconfig it is given (the tests give it one that impersonates the chart's ServiceAccount) and
/// logs to a file, shown when the test fails.
pub struct OperatorProcess {
    child: Child,
    log: PathBuf,
}

impl OperatorProcess {
    /// Starts `binary` watching `namespace`, appending its log to `log`: JSON lines, as in a cluster, and
    /// its spans to the test bed's collector, as with the chart's `tracing.otlpEndpoint`.
    pub fn start(binary: &Path, kubeconfig: &Path, namespace: &str, log: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let child = Command::new(binary)
            .env_clear()
            .env("KUBECONFIG", kubeconfig)
            .env("WATCH_NAMESPACE", namespace)
            .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "info")
            .env("LOG_FORMAT", "json")
            .envs(ordersystem_testkit::otlp::exporting())
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .expect("the operator binary starts");
        Self {
            child,
            log: log.to_path_buf(),
        }
    }

    /// Whether it still runs (was never restarted behind the test's back).
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }

    /// SIGKILL: no shutdown of any kind.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- operator log ---\n{text}");
        }
    }
}

/// The shared API server's audit log of writes (`e2e/infra/control-plane.sh`): `logs/audit.log` beside the
/// kubeconfig of `KUBECONFIG`.
pub fn audit_log() -> PathBuf {
    let kubeconfig = PathBuf::from(env::require(crate::kube::KUBECONFIG));
    kubeconfig
        .parent()
        .expect("KUBECONFIG names a file in the control plane's directory")
        .join("logs")
        .join("audit.log")
}

/// One write the API server's audit log recorded (Metadata level: who, what and when, no bodies).
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditedWrite {
    pub verb: String,
    #[serde(rename = "requestURI")]
    pub request_uri: String,
    #[serde(default)]
    pub user_agent: String,
    /// RFC 3339 with microseconds, by this machine's clock (the API server runs here).
    pub request_received_timestamp: String,
    pub response_status: Option<AuditedStatus>,
}

/// The answer to an audited write.
#[derive(Debug, serde::Deserialize)]
pub struct AuditedStatus {
    pub code: Option<u16>,
}

impl AuditedWrite {
    /// When the API server received the request.
    pub fn received(&self) -> k8s_openapi::jiff::Timestamp {
        self.request_received_timestamp
            .parse()
            .expect("an RFC 3339 requestReceivedTimestamp")
    }
}

/// Every write the audit log holds so far whose User-Agent contains `agent`. Panics when there is no
/// audit log: the API server was started before `control-plane.sh` asked for one
/// (`e2e/infra/control-plane.sh restart-apiserver` applies it).
pub fn audited_writes(agent: &str) -> Vec<AuditedWrite> {
    let path = audit_log();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| {
        panic!(
            "no audit log at {} ({error}): run e2e/infra/control-plane.sh restart-apiserver",
            path.display()
        )
    });
    text.lines()
        .filter(|line| line.contains(agent))
        .map(|line| serde_json::from_str::<AuditedWrite>(line).expect("an audit event"))
        .filter(|write| write.user_agent.contains(agent))
        .collect()
}
