//! A real browser for a test: Debian's headless Chromium in a network namespace of its own on the test
//! bed's bridge (`e2e/infra/browser.sh`), driven over WebDriver by chromedriver through fantoccini. It
//! reaches the bridge address and nothing else, so what it opens must listen there ([`bridge_ip`]).
//! Screenshots go to `<target dir>/browser-screenshots/<test>/`, numbered in the order taken.

use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The host's address on the test bed's bridge: the one address the browser can reach.
pub fn bridge_ip() -> String {
    ordersystem_testkit::env::require("ORDERSYSTEM_NODE_BRIDGE_IP")
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("infra/browser.sh")
}

/// `browser.sh action`: its trimmed stdout; panics with what it said when it fails.
fn run(action: &str) -> String {
    let output = Command::new(script())
        .arg(action)
        .output()
        .unwrap_or_else(|e| panic!("cannot run browser.sh {action}: {e}"));
    assert!(
        output.status.success(),
        "browser.sh {action} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// The browser of one test; stopped (chromedriver, Chromium and the namespace) when dropped.
pub struct Browser {
    pub client: Client,
    shots: PathBuf,
    taken: usize,
}

impl Browser {
    /// Starts the browser for `test` (the name of its screenshots' directory) and opens a session.
    pub async fn start(test: &str) -> Browser {
        run("start");
        let mut capabilities = Capabilities::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({"binary": run("binary"), "args": ["--window-size=412,915"]}),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&run("webdriver"))
            .await
            .unwrap_or_else(|e| panic!("no WebDriver session: {e}"));
        let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
            PathBuf::from,
        );
        let shots = target.join("browser-screenshots").join(test);
        let _ = std::fs::remove_dir_all(&shots);
        std::fs::create_dir_all(&shots).expect("screenshot directory");
        Browser {
            client,
            shots,
            taken: 0,
        }
    }

    /// A PNG of what the browser shows now, as `NN-name.png`; returns its path.
    pub async fn screenshot(&mut self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        self.taken += 1;
        let path = self.shots.join(format!("{:02}-{name}.png", self.taken));
        std::fs::write(&path, png).expect("screenshot written");
        eprintln!("screenshot: {}", path.display());
        path
    }

    /// Ends the session, then the browser.
    pub async fn stop(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("stop").output();
    }
}
