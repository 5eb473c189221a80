//! A test's own instance of an infrastructure component (a Kafka broker, a PostgreSQL cluster, an etcd
//! with its kube-apiserver), run by the same `e2e/infra` script as the shared one with the instance's name
//! and ports in the environment. A test that stops or restarts a component does it to its own instance,
//! never to what the other tests share. The guard resets (stops and wipes) the instance when it drops,
//! also when the test fails.

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone)]
struct Script {
    path: PathBuf,
    env: Vec<(&'static str, String)>,
    instance: String,
}

impl Script {
    fn new(file: &str, instance: &str, env: Vec<(&'static str, String)>) -> Self {
        Self {
            path: Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra").join(file),
            env,
            instance: instance.to_string(),
        }
    }

    /// Runs `script action`; its trimmed stdout, or what it said on stderr when it failed.
    fn run(&self, action: &str) -> Result<String, String> {
        self.run_args(&[action.to_string()])
    }

    /// Runs the script with `args` (an action and its arguments).
    fn run_args(&self, args: &[String]) -> Result<String, String> {
        let action = args.first().map_or("", String::as_str);
        let output = Command::new(&self.path)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.path.display()))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
        } else {
            Err(format!(
                "{} {action} failed for instance {}:\n{}",
                self.path.display(),
                self.instance,
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }
}

/// One instance of its own; reset when dropped.
#[derive(Debug)]
pub struct OwnInstance {
    script: Script,
}

impl OwnInstance {
    /// A broker: `KAFKA_INSTANCE=name kafka.sh`, clients on `port`, its controller on `controller_port`.
    pub fn kafka(name: &str, port: u16, controller_port: u16) -> Self {
        Self::new(
            "kafka.sh",
            name,
            vec![
                ("KAFKA_INSTANCE", name.to_string()),
                ("KAFKA_PORT", port.to_string()),
                ("KAFKA_CONTROLLER_PORT", controller_port.to_string()),
            ],
        )
    }

    /// A PostgreSQL cluster: `PG_INSTANCE=name postgres.sh` on `port`.
    pub fn postgres(name: &str, port: u16) -> Self {
        Self::new(
            "postgres.sh",
            name,
            vec![("PG_INSTANCE", name.to_string()), ("PG_PORT", port.to_string())],
        )
    }

    /// etcd and kube-apiserver: `CP_INSTANCE=name control-plane.sh`.
    pub fn control_plane(name: &str, etcd_port: u16, etcd_peer_port: u16, apiserver_port: u16) -> Self {
        Self::new(
            "control-plane.sh",
            name,
            vec![
                ("CP_INSTANCE", name.to_string()),
                ("CP_ETCD_PORT", etcd_port.to_string()),
                ("CP_ETCD_PEER_PORT", etcd_peer_port.to_string()),
                ("CP_APISERVER_PORT", apiserver_port.to_string()),
            ],
        )
    }

    fn new(file: &str, name: &str, env: Vec<(&'static str, String)>) -> Self {
        Self {
            script: Script::new(file, name, env),
        }
    }

    /// One more variable for the script, e.g. `KAFKA_SECURITY=sasl_ssl`.
    #[must_use]
    pub fn with_env(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.script.env.push((key, value.into()));
        self
    }

    /// Runs `action` (`start`, `stop`, `url`, …) on a blocking thread, so the test's other tasks keep
    /// running, and returns what the script printed on stdout.
    ///
    /// # Panics
    /// When the script fails, with what it said on stderr.
    pub async fn run(&self, action: &str) -> String {
        let (script, action) = (self.script.clone(), action.to_string());
        tokio::task::spawn_blocking(move || script.run(&action))
            .await
            .expect("the script's thread")
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// Runs an action with arguments, e.g. `kafka.sh acl --add …`, like [`Self::run`].
    ///
    /// # Panics
    /// When the script fails, with what it said on stderr.
    pub async fn run_args(&self, args: &[&str]) -> String {
        let (script, args) = (
            self.script.clone(),
            args.iter().map(ToString::to_string).collect::<Vec<_>>(),
        );
        tokio::task::spawn_blocking(move || script.run_args(&args))
            .await
            .expect("the script's thread")
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// [`Self::run`] from a context that may block.
    ///
    /// # Panics
    /// When the script fails, with what it said on stderr.
    pub fn run_blocking(&self, action: &str) -> String {
        self.script.run(action).unwrap_or_else(|error| panic!("{error}"))
    }

    /// `reset`, then `start`: from nothing, since a leftover of an aborted run may hold other state.
    pub async fn start_fresh(self) -> Self {
        self.run("reset").await;
        self.run("start").await;
        self
    }
}

impl Drop for OwnInstance {
    fn drop(&mut self) {
        if let Err(error) = self.script.run("reset") {
            eprintln!("{error}");
        }
    }
}
