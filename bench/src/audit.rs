//! What an API server's audit log says about one client: its requests within a time window, counted once
//! each (an audit event's `auditID`: a watch is logged when it starts and again when it ends) and grouped
//! by verb and resource. The log is the one `control-plane.sh` keeps for an instance started with
//! `CP_AUDIT=all`: every request at Metadata level, no bodies.

use anyhow::{Context, Result};
use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event {
    #[serde(rename = "auditID")]
    audit_id: String,
    verb: String,
    #[serde(default)]
    user_agent: String,
    request_received_timestamp: String,
    object_ref: Option<ObjectRef>,
}

#[derive(Debug, Deserialize)]
struct ObjectRef {
    resource: Option<String>,
    subresource: Option<String>,
}

/// The requests of one client in one window.
#[derive(Debug, Clone, Serialize)]
pub struct Requests {
    pub total: u64,
    /// `verb resource[/subresource]` → requests, e.g. `get secrets`, `patch ordersystems/status`.
    pub by_kind: BTreeMap<String, u64>,
}

/// Requests received in `[from, to)` whose User-Agent starts with `agent`, from every audit log file in
/// `dir` (`audit.log` and the one rotated copy beside it).
pub fn requests(dir: &Path, agent: &str, from: Timestamp, to: Timestamp) -> Result<Requests> {
    let mut seen = HashSet::new();
    let mut by_kind = BTreeMap::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let path = entry?.path();
        let is_audit = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("audit") && n.ends_with(".log"));
        if !is_audit {
            continue;
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        for line in text.lines().filter(|line| line.contains(agent)) {
            // A line cut short by rotation or by the writer still writing is skipped.
            let Ok(event) = serde_json::from_str::<Event>(line) else {
                continue;
            };
            let Ok(received) = event.request_received_timestamp.parse::<Timestamp>() else {
                continue;
            };
            if !event.user_agent.starts_with(agent) || received < from || received >= to {
                continue;
            }
            if seen.insert(event.audit_id) {
                *by_kind
                    .entry(kind(&event.verb, event.object_ref.as_ref()))
                    .or_insert(0) += 1;
            }
        }
    }
    Ok(Requests {
        total: by_kind.values().sum(),
        by_kind,
    })
}

fn kind(verb: &str, object: Option<&ObjectRef>) -> String {
    let resource = object.and_then(|o| o.resource.as_deref()).unwrap_or("-");
    match object.and_then(|o| o.subresource.as_deref()) {
        Some(sub) => format!("{verb} {resource}/{sub}"),
        None => format!("{verb} {resource}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_request_of_the_agent_in_the_window_counts_once() {
        let dir = std::env::temp_dir().join(ordersystem_testkit::names::unique("audit-test"));
        std::fs::create_dir_all(&dir).unwrap();
        let line = |id: &str, agent: &str, at: &str, verb: &str, resource: &str| {
            format!(
                r#"{{"auditID":"{id}","stage":"ResponseComplete","verb":"{verb}","userAgent":"{agent}","requestReceivedTimestamp":"{at}","objectRef":{{"resource":"{resource}"}}}}"#
            )
        };
        let log = [
            line(
                "a",
                "ordersystem-operator/0.1 (x)",
                "2026-01-01T00:00:10.000000Z",
                "get",
                "secrets",
            ),
            // a watch: logged when it starts and when it ends, one request
            line(
                "b",
                "ordersystem-operator/0.1 (x)",
                "2026-01-01T00:00:20.000000Z",
                "watch",
                "deployments",
            ),
            line(
                "b",
                "ordersystem-operator/0.1 (x)",
                "2026-01-01T00:00:20.000000Z",
                "watch",
                "deployments",
            ),
            line(
                "c",
                "kubectl/v1.36",
                "2026-01-01T00:00:30.000000Z",
                "get",
                "secrets",
            ),
            line(
                "d",
                "ordersystem-operator/0.1 (x)",
                "2026-01-01T00:01:30.000000Z",
                "get",
                "secrets",
            ),
            "{\"auditID\":\"e\",\"verb\":\"get\",\"userAgent\":\"ordersystem-operator/0.1".to_string(),
        ]
        .join("\n");
        std::fs::write(dir.join("audit.log"), log).unwrap();
        let from: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let to: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let counted = requests(&dir, "ordersystem-operator/", from, to).unwrap();
        assert_eq!(counted.total, 2);
        assert_eq!(counted.by_kind.get("get secrets"), Some(&1));
        assert_eq!(counted.by_kind.get("watch deployments"), Some(&1));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
