//! A service run as a real process (a built binary, or any program such as a JVM), configured through its
//! environment as the operator configures a pod, so a test can kill it with SIGKILL and start it again and
//! a benchmark can measure it: starting, waiting until it answers, its log, SIGTERM and SIGKILL.

use crate::schema::ServiceDb;
use crate::{metrics, names, wait};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use ordersystem_contract::wiring::env as wiring;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// The target directory the running test or program was built into (`<target>/<profile>/deps/<test>`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.ancestors()
        .nth(3)
        .expect("test executable lives in <target>/<profile>/deps")
        .to_path_buf()
}

/// What cargo sets for the running test only (its package, manifest, binaries). A build script that reads
/// one (ring reads `CARGO_PKG_NAME`) would see it change and rebuild, with all that depends on it, for a
/// build from a test but not for the same build from a shell.
const TEST_ONLY_ENV: [&str; 5] = [
    "CARGO_PKG_",
    "CARGO_MANIFEST_",
    "CARGO_CRATE_",
    "CARGO_BIN_",
    "CARGO_TARGET_TMPDIR",
];

fn cargo_build(args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(&cargo);
    for (name, _) in std::env::vars_os() {
        if name
            .to_str()
            .is_some_and(|name| TEST_ONLY_ENV.iter().any(|p| name.starts_with(p)))
        {
            command.env_remove(name);
        }
    }
    let status = command
        .args(["build", "--locked", "--target-dir"])
        .arg(target_dir())
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cargo}: {e}"));
    assert!(status.success(), "cargo build {args:?} failed");
}

/// A built binary of this workspace: `ordersystem-order`, `ordersystem-invoicing`, `ordersystem-shipping`,
/// `ordersystem-operator`, or `ordersystem-order-failpoints` (order with crash points, built only here: the
/// feature never reaches a default build, and building only this binary leaves `ordersystem-order` as it
/// was). Each is built as `./test.sh` builds it before the tests: selected with `--workspace`, so its
/// dependencies have the features the whole workspace gives them. Selected with `-p`, they would have
/// only the package's own, and on a fresh machine the test would compile another copy of most of them
/// inside its time limit.
///
/// # Panics
/// When the build fails.
pub fn binary(name: &str) -> PathBuf {
    if name == "ordersystem-order-failpoints" {
        cargo_build(&[
            "--workspace",
            "--features",
            "ordersystem-order/failpoints",
            "--bin",
            name,
        ]);
    } else {
        cargo_build(&["--workspace", "--bin", name]);
    }
    target_dir().join("debug").join(name)
}

/// Several binaries of [`binary`], built off the async runtime.
pub async fn binaries<const N: usize>(names: [&'static str; N]) -> [PathBuf; N] {
    tokio::task::spawn_blocking(move || names.map(binary))
        .await
        .expect("cargo build ran")
}

/// A free TCP port on loopback for a service to listen on.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// What the operator sets for every service: where it listens, its database login and schema, the broker
/// and the topic.
pub fn wiring(port: u16, db: &ServiceDb, bootstrap: &str, topic: &str) -> Vec<(String, String)> {
    [
        (wiring::LISTEN_ADDR, format!("127.0.0.1:{port}")),
        (wiring::DATABASE_HOST, db.host.clone()),
        (wiring::DATABASE_PORT, db.port.to_string()),
        (wiring::DATABASE_NAME, db.name.clone()),
        (wiring::DATABASE_USER, db.user.clone()),
        (wiring::DATABASE_PASSWORD, db.password.clone()),
        (wiring::DATABASE_SCHEMA, db.schema.clone()),
        (wiring::DATABASE_SSLMODE, "prefer".into()),
        (wiring::KAFKA_BOOTSTRAP_SERVERS, bootstrap.into()),
        (wiring::KAFKA_TOPIC, topic.into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn owned(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()))
}

/// One service process; killed when dropped. Its port and log file stay the same across restarts, so a
/// client keeps its URL and the log holds every incarnation.
#[derive(Debug)]
pub struct ServiceProcess {
    /// e.g. `invoicing-2`; the log file is named after it.
    pub name: String,
    /// e.g. `invoicing`.
    pub service: String,
    pub db: ServiceDb,
    pub port: u16,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    inherit_env: bool,
    log: PathBuf,
    /// A log in a directory of the caller's stays; a test's own log is removed unless the test failed.
    keep_log: bool,
    /// Behind a lock so that watching a process (`try_wait`) needs no exclusive borrow of it.
    child: Mutex<Option<Child>>,
}

impl ServiceProcess {
    /// `program` of `service` run with `env` alone, listening on `port`; not started yet. Its output goes
    /// to a log of its own in the temporary directory.
    pub fn launch(
        service: &str,
        program: PathBuf,
        db: ServiceDb,
        port: u16,
        env: Vec<(String, String)>,
    ) -> Self {
        let log = std::env::temp_dir().join(format!("{}.log", names::unique(service)));
        Self {
            name: service.to_string(),
            service: service.to_string(),
            db,
            port,
            program,
            args: Vec::new(),
            env,
            inherit_env: false,
            log,
            keep_log: false,
            child: Mutex::new(None),
        }
    }

    /// Arguments for the program.
    pub fn args(mut self, args: &[String]) -> Self {
        self.args.extend_from_slice(args);
        self
    }

    /// Keep the environment of this process besides `env` (a JVM finds itself through it).
    pub fn inheriting_env(mut self) -> Self {
        self.inherit_env = true;
        self
    }

    /// Named `name`, its log `<dir>/<name>.log` (emptied now), kept when the process is dropped.
    ///
    /// # Errors
    /// When the log file cannot be created.
    pub fn logging_to(mut self, name: String, dir: &Path) -> std::io::Result<Self> {
        self.log = dir.join(format!("{name}.log"));
        std::fs::File::create(&self.log)?;
        self.name = name;
        self.keep_log = true;
        Ok(self)
    }

    /// A binary of this workspace with the settings the operator would set, plain text logs, a 5 s
    /// metadata refresh, and `extra` (service-specific settings).
    pub fn new(bin: PathBuf, db: ServiceDb, bootstrap: &str, topic: &str, extra: &[(&str, &str)]) -> Self {
        let port = free_port();
        let mut env = wiring(port, &db, bootstrap, topic);
        env.extend(owned(&[
            (wiring::LOG_FORMAT, "text"),
            (wiring::KAFKA_METADATA_REFRESH_MS, "5000"),
        ]));
        env.extend(owned(extra));
        let stem = bin
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("service")
            .to_string();
        Self::launch(&stem, bin, db, port, env)
    }

    /// A consumer service in group `group` with short timeouts, so a killed member is noticed quickly.
    pub fn consumer(bin: PathBuf, db: ServiceDb, bootstrap: &str, topic: &str, group: &str) -> Self {
        let extra = [
            (wiring::KAFKA_GROUP_ID, group),
            (wiring::KAFKA_GROUP_PROTOCOL, "consumer"),
            (wiring::KAFKA_MAX_POLL_INTERVAL_MS, "10000"),
            (wiring::RETRY_BACKOFF_MS, "200"),
            (wiring::RETRY_BACKOFF_MAX_MS, "1000"),
        ];
        Self::new(bin, db, bootstrap, topic, &extra)
    }

    /// Another process of the same program and settings (another member of a consumer's group), on a port
    /// and log of its own; not started yet.
    pub fn another(&self) -> Self {
        let port = free_port();
        let mut env = self.env.clone();
        for (name, value) in &mut env {
            if name == wiring::LISTEN_ADDR {
                *value = format!("127.0.0.1:{port}");
            }
        }
        let mut process = Self::launch(&self.service, self.program.clone(), self.db.clone(), port, env);
        process.args.clone_from(&self.args);
        process.inherit_env = self.inherit_env;
        process
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn child(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Start (again), with `extra` environment for this incarnation only; its output is appended to the log.
    ///
    /// # Errors
    /// When the log cannot be opened or the program not started.
    ///
    /// # Panics
    /// When it is running already.
    pub fn try_start(&mut self, extra: &[(&str, &str)]) -> std::io::Result<()> {
        assert!(self.child().is_none(), "{} is running already", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut command = Command::new(&self.program);
        if !self.inherit_env {
            command.env_clear();
        }
        let child = command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra.iter().copied())
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()?;
        *self.child() = Some(child);
        Ok(())
    }

    /// [`try_start`](Self::try_start) for a test.
    ///
    /// # Panics
    /// When the process cannot be started.
    pub fn start(&mut self, extra: &[(&str, &str)]) {
        self.try_start(extra)
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.program.display()));
    }

    /// The process id of the incarnation started last.
    ///
    /// # Panics
    /// When it was never started.
    pub fn pid(&self) -> u32 {
        self.child().as_ref().map(Child::id).expect("started")
    }

    /// `Some(status)` once the process started last has exited.
    pub fn exited(&self) -> Option<ExitStatus> {
        self.child()
            .as_mut()
            .and_then(|child| child.try_wait().expect("wait"))
    }

    /// Whether the process started last is still running (was never restarted behind the test's back).
    pub fn is_running(&self) -> bool {
        self.child()
            .as_mut()
            .is_some_and(|child| child.try_wait().expect("wait").is_none())
    }

    /// Waits until `GET <path>` answers with a success.
    ///
    /// # Errors
    /// As soon as the process has exited, or after `timeout`.
    pub async fn wait_answering(&self, path: &str, timeout: Duration) -> Result<(), String> {
        let (http, url) = (reqwest::Client::new(), self.url(path));
        let answered = wait::within(timeout, || async {
            if http.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
                return Ok(Ok(()));
            }
            match self.exited() {
                Some(exit) => Ok(Err(format!(
                    "{} exited with {exit} before it was ready (see {})",
                    self.name,
                    self.log.display()
                ))),
                None => Err(format!("no success from {url}")),
            }
        })
        .await;
        answered.map_err(|last| format!("{} not ready within {timeout:?}: {last}", self.name))?
    }

    /// Waits until `/readyz` answers 200.
    ///
    /// # Panics
    /// When the process exits first, or after 60 s.
    pub async fn wait_ready(&self) {
        if let Err(e) = self.wait_answering("/readyz", Duration::from_secs(60)).await {
            panic!("{e}");
        }
    }

    /// SIGKILL: no shutdown hook, no commit, no leaving the group.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child().take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reaped");
        }
    }

    /// Sends SIGTERM to the running process (it finishes, commits and leaves its group).
    pub fn terminate(&self) {
        if let Some(pid) = self.child().as_ref().and_then(|c| i32::try_from(c.id()).ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }

    /// SIGTERM, and wait for the exit; its status, when the process was running.
    ///
    /// # Panics
    /// When the process has not exited 30 s later.
    pub async fn stop(&mut self) -> Option<ExitStatus> {
        self.terminate();
        wait::until(
            &format!("{} exits after SIGTERM", self.name),
            Duration::from_secs(30),
            || async { !self.is_running() },
        )
        .await;
        self.child()
            .take()
            .and_then(|mut child| child.try_wait().expect("wait"))
    }

    /// The database password never reaches the log (every incarnation's).
    pub fn assert_no_password_in_log(&self) {
        assert!(
            !self.log().contains(&self.db.password),
            "{} logged its database password",
            self.name
        );
    }

    /// Everything every incarnation logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Waits until `needle` appears in the log.
    ///
    /// # Panics
    /// After 60 s.
    pub async fn wait_log(&self, needle: &str) {
        wait::until(
            &format!("{needle:?} in the log of {}", self.name),
            Duration::from_secs(60),
            || async { self.log().contains(needle) },
        )
        .await;
    }

    /// A metric of the running incarnation (counters start at 0 with every start).
    pub async fn metric(&self, name: &str) -> f64 {
        metrics::scrape(&self.url("/metrics"), name).await
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if !self.keep_log {
            if std::thread::panicking() {
                eprintln!("--- {} ---\n{}", self.log.display(), self.log());
            } else {
                let _ = std::fs::remove_file(&self.log);
            }
        }
    }
}

/// Starts each service, then waits until every one answers `/readyz`.
pub async fn start_all(services: &mut [&mut ServiceProcess]) {
    for service in services.iter_mut() {
        service.start(&[]);
    }
    for service in services.iter() {
        service.wait_ready().await;
    }
}

/// SIGTERM every process, and wait up to 30 s for each before killing it.
pub async fn terminate_all(processes: &mut [ServiceProcess]) {
    for process in processes.iter() {
        process.terminate();
    }
    for process in processes {
        let exited = wait::within(Duration::from_secs(30), || async {
            process.exited().map(|_| ()).ok_or_else(String::new)
        })
        .await;
        if exited.is_err() {
            process.kill9();
        }
    }
}
