//! Where the end-to-end scenario runs, and the few things that differ between the two places; everything
//! else, including how pods are reached (the API server's pod proxy, `kubectl proxy`) and how a container is
//! crashed (through the node's container runtime), is the same code.
//!
//! - **real** (`E2E_MODE` unset or `real`): the test bed of `e2e/infra/up.sh`: the control plane and its
//!   real node (kubelet, containerd, CNI bridge, kube-proxy, CoreDNS) running the images
//!   `e2e/images/build-images.sh` imported. The test installs the operator with helm itself; the pods reach
//!   the host's Kafka and PostgreSQL on the bridge, by the names the node's CoreDNS serves.
//! - **kind** (`E2E_MODE=kind`, set up by `e2e/kind.sh test`): a kind cluster with the images loaded, the
//!   operator and the development Kafka and PostgreSQL installed by `kind.sh`.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::Api;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;

use ordersystem_contract::wiring::HTTP_PORT;

use crate::cluster::{self, run};
use crate::env;
use crate::real_node::{self, RealNode};
use crate::shop::Service;

/// Environment of kind mode, set by `e2e/kind.sh`.
pub const E2E_MODE: &str = "E2E_MODE";
pub const KIND_KAFKA_BOOTSTRAP: &str = "E2E_KAFKA_BOOTSTRAP";
/// `<namespace>/<name>` of the development PostgreSQL's admin Secret.
pub const KIND_PG_ADMIN_SECRET: &str = "E2E_PG_ADMIN_SECRET";
/// Command prefix that runs `psql -tAc <query>` against the development PostgreSQL.
pub const KIND_PSQL: &str = "E2E_PSQL";
/// Namespace where `kind.sh` installed the operator.
pub const KIND_OPERATOR_NAMESPACE: &str = "E2E_OPERATOR_NAMESPACE";

#[derive(Debug)]
pub enum Mode {
    Real(RealNode),
    Kind,
}

impl Mode {
    /// The mode `E2E_MODE` names (real unless it says kind).
    ///
    /// # Panics
    /// On another value, or when the real node is not Ready.
    pub async fn from_env(client: &kube::Client) -> Mode {
        match std::env::var(E2E_MODE).as_deref() {
            Ok("kind") => Mode::Kind,
            Ok("real") | Err(_) => Mode::real(client).await,
            Ok(other) => panic!("{E2E_MODE}={other}: expected real or kind"),
        }
    }

    /// The real node of the test bed, once it is Ready.
    pub async fn real(client: &kube::Client) -> Mode {
        let node = RealNode::from_env();
        node.wait_ready(client).await;
        Mode::Real(node)
    }

    /// Annotations for the test's namespaces (on the real node: every pod of them goes to the node).
    pub fn namespace_annotations(&self) -> serde_json::Value {
        match self {
            Mode::Real(node) => node.namespace_annotations(),
            Mode::Kind => json!({}),
        }
    }

    /// The operator as users install it ([`cluster::install_operator`]) as release `operator_ns` in that
    /// namespace, watching `shop_ns`. Returns the operator's namespace; in kind mode, the one `kind.sh`
    /// installed.
    pub fn install_operator(&self, operator_ns: &str, shop_ns: &str) -> String {
        if let Mode::Kind = self {
            return env::require(KIND_OPERATOR_NAMESPACE);
        }
        cluster::install_operator(operator_ns, shop_ns, &[]);
        operator_ns.to_string()
    }

    /// Uninstalls what [`Mode::install_operator`] installed (nothing in kind mode).
    pub fn uninstall_operator(&self, operator_ns: &str) {
        if let Mode::Real(_) = self {
            cluster::uninstall_operator(operator_ns);
        }
    }

    /// Kafka as the services and the operator see it.
    pub fn kafka_bootstrap(&self) -> String {
        match self {
            Mode::Real(_) => env::kafka_node_bootstrap(),
            Mode::Kind => env::require(KIND_KAFKA_BOOTSTRAP),
        }
    }

    /// The PostgreSQL admin Secret for the shop's namespace, named `name`.
    pub async fn admin_secret(&self, client: &kube::Client, name: &str) -> Secret {
        match self {
            Mode::Real(_) => {
                let data = admin_from_url(&env::database_url(), &env::postgres_node_host());
                serde_json::from_value(json!({"metadata": {"name": name}, "stringData": data}))
                    .expect("secret")
            }
            Mode::Kind => {
                let reference = env::require(KIND_PG_ADMIN_SECRET);
                let (ns, secret) = reference.split_once('/').expect("<namespace>/<name>");
                let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
                let source = secrets
                    .get(secret)
                    .await
                    .expect("the development PostgreSQL's admin Secret");
                let data = source.data.unwrap_or_default();
                serde_json::from_value(json!({"metadata": {"name": name}, "data": data})).expect("secret")
            }
        }
    }

    /// A client of one pod's HTTP port, through the API server's pod proxy (a `kubectl proxy` that lives
    /// as long as the client).
    pub fn service(&self, pod: &Pod) -> Service {
        let ns = pod.metadata.namespace.as_deref().expect("namespace");
        let name = pod.metadata.name.as_deref().expect("name");
        let (port, proxy) = kubectl_proxy();
        let base = format!("http://127.0.0.1:{port}/api/v1/namespaces/{ns}/pods/{name}:{HTTP_PORT}/proxy");
        Service::new(base).holding(Arc::new(proxy))
    }

    /// A client of a Service's HTTP port, the way users in the cluster reach it: on the real node its
    /// ClusterIP, which kube-proxy's rules on this machine route to a ready pod; in kind mode through the
    /// API server's service proxy.
    pub async fn service_of(&self, client: &kube::Client, ns: &str, name: &str) -> Service {
        match self {
            Mode::Real(_) => {
                let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), ns);
                let service = services.get(name).await.expect("the Service");
                let ip = service.spec.and_then(|s| s.cluster_ip).expect("a ClusterIP");
                Service::new(format!("http://{ip}:{HTTP_PORT}"))
            }
            Mode::Kind => {
                let (port, proxy) = kubectl_proxy();
                let base =
                    format!("http://127.0.0.1:{port}/api/v1/namespaces/{ns}/services/{name}:http/proxy");
                Service::new(base).holding(Arc::new(proxy))
            }
        }
    }

    /// Crashes the pod's first container: the node's container runtime names its process, which gets
    /// `kill -9`.
    pub fn crash(&self, pod: &Pod) {
        let status = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .expect("container status");
        let id = status[0].container_id.as_deref().expect("container id");
        match self {
            Mode::Real(_) => {
                let process = real_node::host_process(id);
                let pid = i32::try_from(process.pid).expect("a pid");
                kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill -9 the container's process");
            }
            Mode::Kind => {
                // A kind node is a container named after the Node; its runtime knows the process.
                let node = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .expect("scheduled pod");
                let id = id.split_once("://").map_or(id, |(_, id)| id);
                let pid = run(
                    "docker",
                    &[
                        "exec",
                        &node,
                        "crictl",
                        "inspect",
                        "--output",
                        "go-template",
                        "--template",
                        "{{.info.pid}}",
                        id,
                    ],
                );
                run("docker", &["exec", &node, "kill", "-9", pid.trim()]);
            }
        }
    }

    /// Another reference to today's image of `service`, for a roll: on the real node the image by digest
    /// (`<repository>@sha256:…`, which the node holds); in kind mode the `e2e-rolled` tag `kind.sh` loads.
    pub fn rolled_image(&self, service: &str) -> String {
        match self {
            Mode::Real(_) => real_node::pinned_image(&format!(
                "ghcr.io/ordersystem/{service}:{}",
                env!("CARGO_PKG_VERSION")
            )),
            Mode::Kind => format!("ghcr.io/ordersystem/{service}:e2e-rolled"),
        }
    }

    /// Number of the given schemas that exist in the database.
    pub async fn existing_schemas(&self, schemas: &[String]) -> i64 {
        match self {
            Mode::Real(_) => {
                use sqlx::Connection;
                let mut db = sqlx::PgConnection::connect(&env::database_url())
                    .await
                    .expect("connect as admin");
                sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname = ANY($1)")
                    .bind(schemas)
                    .fetch_one(&mut db)
                    .await
                    .expect("query schemas")
            }
            Mode::Kind => {
                // Schema names are validated by the operator ([a-z0-9_]); they are quoted anyway.
                let list: Vec<String> = schemas.iter().map(|s| format!("'{s}'")).collect();
                let query = format!(
                    "SELECT count(*) FROM pg_namespace WHERE nspname IN ({})",
                    list.join(",")
                );
                let psql = env::require(KIND_PSQL);
                let mut words: Vec<&str> = psql.split_whitespace().collect();
                let program = words.remove(0);
                words.push(&query);
                run(program, &words).trim().parse().expect("a count")
            }
        }
    }
}

/// The admin Secret's fields from a `postgres://user:password@host:port/db` URL, with the host the pods use.
fn admin_from_url(url: &str, host: &str) -> serde_json::Value {
    let rest = url.strip_prefix("postgres://").expect("postgres:// URL");
    let (credentials, location) = rest.rsplit_once('@').expect("user:password@host");
    let (username, password) = credentials.split_once(':').expect("user:password");
    let (host_port, dbname) = location.split_once('/').expect("host:port/db");
    let port = host_port.rsplit_once(':').map_or("5432", |(_, port)| port);
    let dbname = dbname.split('?').next().unwrap_or(dbname);
    json!({"host": host, "port": port, "dbname": dbname, "username": username, "password": password})
}

/// `kubectl proxy` on a free local port; ends with the returned child.
fn kubectl_proxy() -> (u16, KubectlProxy) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new("kubectl")
        .args(["proxy", "--port=0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl proxy");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("kubectl proxy output");
    // "Starting to serve on 127.0.0.1:41234"
    let port = line
        .rsplit(':')
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("unexpected kubectl proxy output: {line}"));
    (port, KubectlProxy(child))
}

/// A running `kubectl proxy`, ended on drop.
#[derive(Debug)]
pub struct KubectlProxy(Child);

impl Drop for KubectlProxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_secret_fields_come_from_the_database_url_with_the_pods_host() {
        let data = admin_from_url(
            "postgres://admin:s3cret@127.0.0.1:5432/shop?sslmode=disable",
            "postgres.example.internal",
        );
        assert_eq!(data["host"], "postgres.example.internal");
        assert_eq!(data["port"], "5432");
        assert_eq!(data["dbname"], "shop");
        assert_eq!(data["username"], "admin");
        assert_eq!(data["password"], "s3cret");
    }
}
