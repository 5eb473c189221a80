//! `ordersystem-operator check-install`: whether an installed operator works, for the chart's `helm test`
//! hook (`templates/tests/check-install.yaml`). Two questions, each answered with a sentence:
//! 1. does the operator answer `/readyz` through its Service (it runs and its OrderSystem cache synced)?
//! 2. is the OrderSystem CRD served, and may the operator's ServiceAccount list OrderSystems where it
//!    watches?

use std::time::Duration;

use kube::Api;
use kube::api::ListParams;
use kube::core::PartialObjectMeta;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::crd::OrderSystem;

/// The subcommand's name.
pub const SUBCOMMAND: &str = "check-install";

/// How long each question may take.
const TIMEOUT: Duration = Duration::from_secs(20);

/// Exit 0 when the operator answers and the CRD is served, 1 with the reason otherwise.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckInstall {
    /// `host:port` of the operator's Service (the chart passes `<release>-metrics.<namespace>.svc:8080`).
    #[arg(long)]
    pub operator: String,
}

/// Both answers, or the first that failed, as a sentence.
pub async fn check(
    client: kube::Client,
    namespace: Option<&str>,
    flags: &CheckInstall,
) -> Result<String, String> {
    let ready = tokio::time::timeout(TIMEOUT, readyz(&flags.operator))
        .await
        .map_err(|_| {
            format!(
                "The operator at {} did not answer /readyz within {TIMEOUT:?}.",
                flags.operator
            )
        })??;
    let api: Api<PartialObjectMeta<OrderSystem>> = match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let listed = tokio::time::timeout(TIMEOUT, api.list_metadata(&ListParams::default().limit(1)))
        .await
        .map_err(|_| format!("Listing OrderSystems took longer than {TIMEOUT:?}."))?;
    let where_ = namespace.map_or("all namespaces".to_string(), |ns| format!("namespace {ns}"));
    match listed {
        Ok(_) => Ok(format!(
            "The operator at {} answers /readyz ({ready}), and the OrderSystem CRD is served: its ServiceAccount \
             lists OrderSystems in {where_}.",
            flags.operator
        )),
        Err(kube::Error::Api(answer)) if answer.code == 404 => Err(
            "The OrderSystem CRD is not served: apply it with `kubectl apply --server-side -f crds/` (Helm installs \
             it only on `helm install`)."
                .to_string(),
        ),
        Err(kube::Error::Api(answer)) if answer.code == 403 => Err(format!(
            "The operator's ServiceAccount may not list OrderSystems in {where_}: {}.",
            answer.message
        )),
        Err(error) => Err(format!("Listing OrderSystems failed: {error}.")),
    }
}

/// `GET /readyz` on `authority` (plain HTTP/1.1, the operator's own endpoint): its status line's code and
/// body when it is 200, a sentence otherwise.
async fn readyz(authority: &str) -> Result<String, String> {
    let mut stream = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| format!("The operator's Service {authority} refused the connection: {e}."))?;
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("Sending GET /readyz to {authority} failed: {e}."))?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .await
        .map_err(|e| format!("Reading the answer of {authority} failed: {e}."))?;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) == Some("200") {
        Ok(body.trim().to_string())
    } else {
        Err(format!(
            "The operator at {authority} is not ready: /readyz answered `{status}` ({}).",
            body.trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-shot HTTP server on loopback answering with `response`.
    async fn answering(response: &'static str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut buffer = [0u8; 1024];
            let _ = stream.read(&mut buffer).await;
            let _ = stream.write_all(response.as_bytes()).await;
        });
        address
    }

    #[tokio::test]
    async fn ready_is_a_200_and_anything_else_says_what_answered() {
        let ok = answering("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nready").await;
        assert_eq!(readyz(&ok).await, Ok("ready".to_string()));
        let syncing = answering("HTTP/1.1 503 Service Unavailable\r\n\r\ncache not synced").await;
        let refused = readyz(&syncing).await.expect_err("503 is not ready");
        assert!(
            refused.contains("503 Service Unavailable") && refused.contains("cache not synced"),
            "{refused}"
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_a_refused_connection() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a port")
            .port();
        let refused = readyz(&format!("127.0.0.1:{port}"))
            .await
            .expect_err("nothing listens");
        assert!(refused.contains("refused the connection"), "{refused}");
    }
}
