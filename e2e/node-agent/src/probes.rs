//! Readiness and liveness probes against the pod's own loopback IP.
//!
//! `httpGet` (plain HTTP, 200–399 is success) and `tcpSocket` are checked for real. `exec`, `grpc` and
//! HTTPS probes have no faithful local equivalent: they count as passing and the override is logged once
//! per container start. Named ports resolve through the container's `ports`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The kubelet's defaults for unset probe fields.
const DEFAULT_TIMEOUT_SECONDS: i32 = 1;
const DEFAULT_PERIOD_SECONDS: i32 = 10;
const DEFAULT_FAILURE_THRESHOLD: i32 = 3;
const DEFAULT_SUCCESS_THRESHOLD: i32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("probe port {port} is not a port of the container")]
    UnknownPort { port: String },
    #[error("failed to connect to {addr}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("probe to {addr} timed out")]
    Timeout { addr: SocketAddr },
    #[error("failed to exchange HTTP with {addr}")]
    Http {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP probe {path} on {addr} returned {status}")]
    Status {
        addr: SocketAddr,
        path: String,
        status: String,
    },
}

/// How often and how patiently one probe runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
    pub success_threshold: u32,
}

impl Timing {
    pub fn of(probe: &Probe) -> Self {
        let seconds = |v: Option<i32>, default: i32| Duration::from_secs(v.unwrap_or(default).max(0) as u64);
        let count = |v: Option<i32>, default: i32| v.unwrap_or(default).max(1) as u32;
        Timing {
            initial_delay: seconds(probe.initial_delay_seconds, 0),
            period: seconds(probe.period_seconds, DEFAULT_PERIOD_SECONDS).max(Duration::from_secs(1)),
            timeout: seconds(probe.timeout_seconds, DEFAULT_TIMEOUT_SECONDS).max(Duration::from_secs(1)),
            failure_threshold: count(probe.failure_threshold, DEFAULT_FAILURE_THRESHOLD),
            success_threshold: count(probe.success_threshold, DEFAULT_SUCCESS_THRESHOLD),
        }
    }
}

/// Whether a probe can be checked locally; the reason when it cannot.
pub fn unsupported(probe: &Probe) -> Option<&'static str> {
    if let Some(http) = &probe.http_get {
        return (http.scheme.as_deref() == Some("HTTPS")).then_some("HTTPS probe");
    }
    if probe.tcp_socket.is_some() {
        return None;
    }
    Some(if probe.exec.is_some() {
        "exec probe"
    } else {
        "grpc probe"
    })
}

/// Runs `probe` once against `ip`. Unsupported probes pass.
pub async fn check(probe: &Probe, container: &Container, ip: IpAddr) -> Result<(), Error> {
    let timeout = Timing::of(probe).timeout;
    if let Some(http) = probe.http_get.as_ref().filter(|_| unsupported(probe).is_none()) {
        let addr = SocketAddr::new(ip, port(&http.port, container)?);
        let path = http.path.clone().unwrap_or_else(|| "/".into());
        let headers: Vec<(String, String)> = http
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        let status = tokio::time::timeout(timeout, http_status(addr, &path, &headers))
            .await
            .map_err(|_| Error::Timeout { addr })??;
        let ok = status.parse::<u16>().is_ok_and(|code| (200..400).contains(&code));
        return if ok {
            Ok(())
        } else {
            Err(Error::Status { addr, path, status })
        };
    }
    if let Some(tcp) = &probe.tcp_socket {
        let addr = SocketAddr::new(ip, port(&tcp.port, container)?);
        tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| Error::Timeout { addr })?
            .map_err(|source| Error::Connect { addr, source })?;
    }
    Ok(())
}

fn port(port: &IntOrString, container: &Container) -> Result<u16, Error> {
    let unknown = || Error::UnknownPort {
        port: format!("{port:?}"),
    };
    match port {
        IntOrString::Int(number) => u16::try_from(*number).map_err(|_| unknown()),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(unknown),
    }
}

/// One HTTP/1.1 GET; returns the status code text of the response's first line.
async fn http_status(addr: SocketAddr, path: &str, headers: &[(String, String)]) -> Result<String, Error> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|source| Error::Connect { addr, source })?;
    let http = |source| Error::Http { addr, source };
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.36\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(http)?;
    let mut head = Vec::new();
    let mut buf = [0u8; 256];
    // The status line is all we need; stop reading as soon as it is complete.
    while !head.contains(&b'\n') {
        let n = stream.read(&mut buf).await.map_err(http)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    Ok(line
        .split_whitespace()
        .nth(1)
        .unwrap_or("no response")
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn serve_once(response: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await;
            let _ = socket.write_all(response.as_bytes()).await;
        });
        addr
    }

    fn http_probe(port: u16) -> (Probe, Container) {
        let probe: Probe = serde_json::from_value(serde_json::json!({
            "httpGet": {"path": "/readyz", "port": "http"},
        }))
        .expect("probe");
        let container: Container = serde_json::from_value(serde_json::json!({
            "name": "c", "ports": [{"name": "http", "containerPort": port}],
        }))
        .expect("container");
        (probe, container)
    }

    #[tokio::test]
    async fn http_probe_passes_on_200_through_a_named_port() {
        let addr = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
        let (probe, container) = http_probe(addr.port());
        check(&probe, &container, addr.ip()).await.expect("ready");
    }

    #[tokio::test]
    async fn http_probe_fails_on_503() {
        let addr = serve_once("HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        let (probe, container) = http_probe(addr.port());
        let err = check(&probe, &container, addr.ip()).await.expect_err("not ready");
        assert!(
            matches!(err, Error::Status { ref status, .. } if status == "503"),
            "{err}"
        );
    }
}
