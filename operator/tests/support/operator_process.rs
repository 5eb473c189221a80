//! The operator binary as a process, so a test can kill it with SIGKILL and start it again. It runs with
//! the kubeconfig it is given (the tests give it one that impersonates the chart's ServiceAccount).

use std::process::{Child, Command, Stdio};

/// The operator binary as the chart's ServiceAccount, logging to a file.
pub struct OperatorProcess {
    child: Child,
    log: std::path::PathBuf,
}

impl OperatorProcess {
    pub fn start(kubeconfig: &std::path::Path, namespace: &str, log: &std::path::Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_ordersystem-operator"))
            .env_clear()
            .env("KUBECONFIG", kubeconfig)
            .env("WATCH_NAMESPACE", namespace)
            .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "info")
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
