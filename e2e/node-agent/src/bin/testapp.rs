//! `ordersystem-testapp`: the node agent's test workload (image `ghcr.io/ordersystem/testapp`).
//!
//! Serves on `$LISTEN_ADDR`, else `$POD_IP:8080`, else `0.0.0.0:8080`:
//! - `/healthz`, `/readyz`: 200, or 503 after `/fail/healthz` or `/fail/readyz` (probe tests)
//! - `/exit/{code}`: exits with that code (crash tests)
//! - `/pid`: its process id
//! - `/env/{name}`: the value of an environment variable (404 if unset)
//! - `/file?path=…`: the content of a file (what a volume mount shows this process)
//! - `/kube/{resource}/{namespace}`: lists `configmaps` or `secrets` with the in-cluster identity
//!   (`/var/run/secrets/kubernetes.io/serviceaccount`, `KUBERNETES_SERVICE_HOST`) and returns the API
//!   server's HTTP status code
//!
//! On SIGTERM it prints `testapp: SIGTERM received` and exits 0, so a test can tell graceful stops from kills.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Set by `/fail/healthz` and `/fail/readyz`; a restarted process starts healthy and ready again.
static UNHEALTHY: AtomicBool = AtomicBool::new(false);
static UNREADY: AtomicBool = AtomicBool::new(false);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = match (std::env::var("LISTEN_ADDR"), std::env::var("POD_IP")) {
        (Ok(addr), _) => addr,
        (Err(_), Ok(ip)) => format!("{ip}:8080"),
        _ => "0.0.0.0:8080".to_string(),
    };
    let listener = TcpListener::bind(&addr).await?;
    println!("testapp: listening on {addr}");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = term.recv() => {
                println!("testapp: SIGTERM received");
                return Ok(());
            }
            accepted = listener.accept() => {
                let (socket, _) = accepted?;
                tokio::spawn(serve(socket));
            }
        }
    }
}

/// One request per connection: enough for probes and tests, and no HTTP framework to build.
async fn serve(mut socket: TcpStream) {
    let mut buf = vec![0u8; 4096];
    let n = socket.read(&mut buf).await.unwrap_or(0);
    let request = String::from_utf8_lossy(&buf[..n]);
    let target = request.split_whitespace().nth(1).unwrap_or("/").to_string();
    let (status, body) = route(&target).await;
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = socket.write_all(response.as_bytes()).await;
}

async fn route(target: &str) -> (&'static str, String) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query: HashMap<&str, &str> = query.split('&').filter_map(|kv| kv.split_once('=')).collect();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["healthz"] => probe(&UNHEALTHY),
        ["readyz"] => probe(&UNREADY),
        ["fail", "healthz"] => fail(&UNHEALTHY),
        ["fail", "readyz"] => fail(&UNREADY),
        ["exit", code] => {
            println!("testapp: exiting with {code} as asked");
            std::process::exit(code.parse().unwrap_or(1))
        }
        ["pid"] => ("200 OK", std::process::id().to_string()),
        ["env", name] => match std::env::var(name) {
            Ok(value) => ("200 OK", value),
            Err(_) => ("404 Not Found", format!("{name} is not set")),
        },
        ["file"] => match std::fs::read_to_string(query.get("path").copied().unwrap_or("")) {
            Ok(content) => ("200 OK", content),
            Err(error) => ("404 Not Found", error.to_string()),
        },
        ["kube", resource, namespace] => match list(resource, namespace).await {
            Ok(code) => ("200 OK", code.to_string()),
            Err(error) => ("500 Internal Server Error", format!("{error:#}")),
        },
        _ => ("404 Not Found", "no such path".into()),
    }
}

fn probe(failing: &AtomicBool) -> (&'static str, String) {
    if failing.load(Ordering::Relaxed) {
        ("503 Service Unavailable", "failing as asked".into())
    } else {
        ("200 OK", "ok".into())
    }
}

fn fail(flag: &AtomicBool) -> (&'static str, String) {
    flag.store(true, Ordering::Relaxed);
    ("200 OK", "failing from now on".into())
}

/// The API server's status code for listing `resource` in `namespace` as this pod's ServiceAccount.
async fn list(resource: &str, namespace: &str) -> anyhow::Result<u16> {
    let client = kube::Client::try_from(kube::Config::incluster()?)?;
    let params = ListParams::default();
    let result = match resource {
        "configmaps" => Api::<ConfigMap>::namespaced(client, namespace)
            .list(&params)
            .await
            .map(|_| ()),
        "secrets" => Api::<Secret>::namespaced(client, namespace)
            .list(&params)
            .await
            .map(|_| ()),
        other => anyhow::bail!("unsupported resource {other}"),
    };
    match result {
        Ok(()) => Ok(200),
        Err(kube::Error::Api(status)) => Ok(status.code),
        Err(error) => Err(error.into()),
    }
}
