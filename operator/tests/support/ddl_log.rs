//! A PostgreSQL cluster of the test's own (`postgres.sh` with `PG_INSTANCE`: initdb under the test bed's
//! state directory, run as the `postgres` OS user on a loopback port, SCRAM authentication, the same
//! non-superuser CREATEROLE admin as the shared one) that logs every DDL statement it runs
//! (`log_statement = ddl`), so a test can read which statements the operator sent. Included with
//! `#[path]` by the tests that use it; the instance is stopped and wiped when it drops.

use std::path::PathBuf;

use ordersystem_e2e::control_plane::TestNamespace;
use ordersystem_e2e::own_instance::OwnInstance;

/// The test bed's state directory, as `e2e/infra/lib.sh` sets it.
fn state_dir() -> PathBuf {
    PathBuf::from(std::env::var("ORDERSYSTEM_STATE").unwrap_or_else(|_| "/tmp/ordersystem".into()))
}

pub struct DdlLoggedPostgres {
    name: String,
    port: u16,
    url: String,
    _instance: OwnInstance,
}

impl DdlLoggedPostgres {
    /// Starts the instance `name` from nothing on 127.0.0.1:`port` and turns on `log_statement = ddl`.
    pub async fn start(name: &str, port: u16) -> Self {
        let instance = OwnInstance::postgres(name, port).start_fresh().await;
        let url = instance.run("url").await;
        let this = Self {
            name: name.to_string(),
            port,
            url,
            _instance: instance,
        };
        // Two commands: ALTER SYSTEM cannot run inside the transaction one `-c` with both would be.
        this.as_superuser(&[
            "ALTER SYSTEM SET log_statement = 'ddl'",
            "SELECT pg_reload_conf()",
        ])
        .await;
        // A reload is read by each backend at its next command: a fresh session shows it is in force.
        let shown = this.as_superuser(&["SHOW log_statement"]).await;
        assert_eq!(shown.trim(), "ddl", "log_statement in force");
        this
    }

    /// Runs each of `commands` with psql as the cluster's superuser over its Unix socket; psql's
    /// unaligned output.
    async fn as_superuser(&self, commands: &[&str]) -> String {
        let socket_dir = state_dir().join(&self.name);
        let mut command = format!(
            "psql -X -q -A -t -v ON_ERROR_STOP=1 -h '{}' -p {} -d postgres",
            socket_dir.display(),
            self.port
        );
        for sql in commands {
            command.push_str(&format!(" -c \"{sql}\""));
        }
        let output = tokio::process::Command::new("su")
            .args(["postgres", "-s", "/bin/bash", "-c", &command])
            .output()
            .await
            .expect("su postgres runs psql");
        assert!(
            output.status.success(),
            "psql on instance {}: {}",
            self.name,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The admin Secret `name` in `ns` for this instance (the keys an `OrderSystem`'s
    /// `postgres.adminSecretRef` names), from the URL `postgres.sh url` prints.
    pub async fn put_admin_secret(&self, ns: &TestNamespace, name: &str) {
        let rest = self.url.split_once("://").map(|(_, r)| r).expect("url scheme");
        let (credentials, location) = rest.rsplit_once('@').expect("url credentials");
        let (user, password) = credentials.split_once(':').expect("user:password");
        let dbname = location.split_once('/').map(|(_, db)| db).expect("url database");
        let port = self.port.to_string();
        ns.put_secret(
            name,
            "Opaque",
            &[
                ("host", "127.0.0.1"),
                ("port", &port),
                ("dbname", dbname),
                ("username", user),
                ("password", password),
            ],
        )
        .await;
    }

    /// The server log as it is now.
    pub fn log(&self) -> String {
        let path = state_dir().join(&self.name).join("postgres.log");
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The statements the server logged after the log had `offset` bytes (`log().len()` taken earlier).
    pub fn statements_since(&self, offset: usize) -> Vec<String> {
        let log = self.log();
        log.get(offset..)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.split_once("statement: ").map(|(_, sql)| sql.to_string()))
            .collect()
    }
}
