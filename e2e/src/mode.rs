//! Where the scenario runs, and the few things that differ between the two places; everything else in
//! the scenario is shared.
//!
//! - **local** (`E2E_MODE` unset or `local`): the control plane of `e2e/infra`, pods run by a node agent
//!   of this test on its own tainted Node, Kafka and PostgreSQL on loopback. The test installs the operator
//!   with helm itself, and reaches pods at their (loopback) pod IPs.
//! - **kind** (`E2E_MODE=kind`, set up by `e2e/kind.sh test`): a kind cluster with the images loaded, the
//!   operator and the development Kafka and PostgreSQL installed by `kind.sh`. Pods are reached through the
//!   API server's pod proxy (`kubectl proxy`); a container is crashed through the node's container runtime.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::Api;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;

use crate::env;
use crate::local_node::LocalNode;
use crate::shop::Service;

/// Environment of kind mode, set by `e2e/kind.sh`.
pub const E2E_MODE: &str = "E2E_MODE";
pub const KIND_KAFKA_BOOTSTRAP: &str = "E2E_KAFKA_BOOTSTRAP";
/// `<namespace>/<name>` of the development PostgreSQL's admin Secret.
pub const KIND_PG_ADMIN_SECRET: &str = "E2E_PG_ADMIN_SECRET";
/// Command prefix that runs `psql -tAc <query>` against the development PostgreSQL.
pub const KIND_PSQL: &str = "E2E_PSQL";

#[derive(Debug)]
pub enum Mode {
    Local(LocalNode),
    Kind,
}

impl Mode {
    /// Local mode starts its node agent here; kind mode finds everything installed.
    pub async fn from_env(client: &kube::Client) -> Mode {
        match std::env::var(E2E_MODE).as_deref() {
            Ok("kind") => Mode::Kind,
            Ok("local") | Err(_) => {
                Mode::Local(LocalNode::start(client, &crate::names::unique("e2e"), 77).await)
            }
            Ok(other) => panic!("{E2E_MODE}={other}: expected local or kind"),
        }
    }

    /// True where the test installs the operator itself (local); kind.sh installed it in kind mode.
    pub fn installs_operator(&self) -> bool {
        matches!(self, Mode::Local(_))
    }

    /// Annotations for the test's namespaces (local mode pins them to its node).
    pub fn namespace_annotations(&self) -> serde_json::Value {
        match self {
            Mode::Local(node) => node.pin_annotations(),
            Mode::Kind => json!({}),
        }
    }

    /// Kafka as the services and the operator see it.
    pub fn kafka_bootstrap(&self) -> String {
        match self {
            Mode::Local(_) => env::kafka_bootstrap(),
            Mode::Kind => env::require(KIND_KAFKA_BOOTSTRAP),
        }
    }

    /// The PostgreSQL admin Secret for the shop's namespace, named `name`.
    pub async fn admin_secret(&self, client: &kube::Client, name: &str) -> Secret {
        let data = match self {
            Mode::Local(_) => admin_from_url(&env::database_url()),
            Mode::Kind => {
                let reference = env::require(KIND_PG_ADMIN_SECRET);
                let (ns, secret) = reference.split_once('/').expect("<namespace>/<name>");
                let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
                let source = secrets
                    .get(secret)
                    .await
                    .expect("the development PostgreSQL's admin Secret");
                let data = source.data.unwrap_or_default();
                return serde_json::from_value(json!({"metadata": {"name": name}, "data": data}))
                    .expect("secret");
            }
        };
        serde_json::from_value(json!({"metadata": {"name": name}, "stringData": data})).expect("secret")
    }

    /// A client of one pod's HTTP port.
    pub fn service(&self, pod: &Pod) -> Service {
        match self {
            Mode::Local(_) => {
                let ip = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.pod_ip.clone())
                    .expect("pod IP");
                Service::new(format!("http://{ip}:8080"))
            }
            Mode::Kind => {
                let ns = pod.metadata.namespace.as_deref().expect("namespace");
                let name = pod.metadata.name.as_deref().expect("name");
                let (port, proxy) = kubectl_proxy();
                let base = format!("http://127.0.0.1:{port}/api/v1/namespaces/{ns}/pods/{name}:8080/proxy");
                Service::new(base).holding(Arc::new(proxy))
            }
        }
    }

    /// Crashes the pod's first container (kill -9 of its process).
    pub fn crash(&self, pod: &Pod) {
        let status = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .expect("container status");
        let id = status[0].container_id.as_deref().expect("container id");
        match self {
            Mode::Local(_) => {
                let pid: i32 = id
                    .strip_prefix("process://")
                    .and_then(|p| p.parse().ok())
                    .expect("process:// id");
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
                let pid = output(Command::new("docker").args([
                    "exec",
                    &node,
                    "crictl",
                    "inspect",
                    "--output",
                    "go-template",
                    "--template",
                    "{{.info.pid}}",
                    id,
                ]));
                output(Command::new("docker").args(["exec", &node, "kill", "-9", pid.trim()]));
            }
        }
    }

    /// Number of the given schemas that exist in the database.
    pub async fn existing_schemas(&self, schemas: &[String]) -> i64 {
        match self {
            Mode::Local(_) => {
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
                let mut words = psql.split_whitespace();
                let program = words.next().expect("E2E_PSQL command");
                output(Command::new(program).args(words).arg(query))
                    .trim()
                    .parse()
                    .expect("a count")
            }
        }
    }

    /// What to print when the scenario fails.
    pub fn logs(&self) -> String {
        match self {
            Mode::Local(node) => node.logs(),
            Mode::Kind => "kind mode: see `kubectl logs` of the pods in the test namespaces".into(),
        }
    }
}

fn admin_from_url(url: &str) -> serde_json::Value {
    let rest = url.strip_prefix("postgres://").expect("postgres:// URL");
    let (credentials, location) = rest.split_once('@').expect("user:password@host");
    let (username, password) = credentials.split_once(':').expect("user:password");
    let (host_port, dbname) = location.split_once('/').expect("host:port/db");
    let (host, port) = host_port.split_once(':').expect("host:port");
    json!({"host": host, "port": port, "dbname": dbname, "username": username, "password": password})
}

fn output(command: &mut Command) -> String {
    let out = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
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
    fn admin_secret_fields_come_from_the_database_url() {
        let data = admin_from_url("postgres://admin:s3cret@127.0.0.1:5432/shop");
        assert_eq!(data["host"], "127.0.0.1");
        assert_eq!(data["port"], "5432");
        assert_eq!(data["dbname"], "shop");
        assert_eq!(data["username"], "admin");
        assert_eq!(data["password"], "s3cret");
    }
}
