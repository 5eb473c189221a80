//! Pod status from what the agent observed: phase, container statuses, conditions, IPs.
//!
//! Pure: takes the containers' records and returns the `status` JSON the agent patches. Condition
//! transition times are kept in [`Conditions`] so an unchanged status is byte-for-byte the same and the
//! agent can skip the write.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

/// A container's state, as in `containerStatuses[].state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Waiting {
        reason: String,
        message: String,
    },
    Running {
        started_at: DateTime<Utc>,
    },
    Terminated {
        exit_code: i32,
        signal: Option<i32>,
        reason: String,
        started_at: DateTime<Utc>,
        finished_at: DateTime<Utc>,
    },
}

/// What the agent knows about one container; shared between its supervisor and the pod worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    pub image: String,
    pub state: State,
    pub last_state: Option<State>,
    pub restart_count: u32,
    pub ready: bool,
    /// PID of the current or last process, reported as `containerID: process://<pid>`.
    pub pid: Option<u32>,
}

impl Record {
    pub fn waiting(name: &str, image: &str, reason: &str, message: &str) -> Self {
        Record {
            name: name.to_string(),
            image: image.to_string(),
            state: State::Waiting {
                reason: reason.to_string(),
                message: message.to_string(),
            },
            last_state: None,
            restart_count: 0,
            ready: false,
            pid: None,
        }
    }

    /// Waiting before its first start: the pod is still Pending.
    fn never_started(&self) -> bool {
        matches!(self.state, State::Waiting { .. }) && self.pid.is_none()
    }
}

/// Pod conditions with stable transition times.
#[derive(Debug, Default)]
pub struct Conditions {
    since: BTreeMap<&'static str, (bool, DateTime<Utc>)>,
}

impl Conditions {
    fn set(&mut self, kind: &'static str, status: bool, now: DateTime<Utc>) -> Value {
        let entry = self.since.entry(kind).or_insert((status, now));
        if entry.0 != status {
            *entry = (status, now);
        }
        json!({
            "type": kind,
            "status": if status { "True" } else { "False" },
            "lastTransitionTime": time(entry.1),
        })
    }
}

/// The pod-level facts besides the containers.
#[derive(Debug, Clone)]
pub struct PodFacts {
    pub pod_ip: Option<Ipv4Addr>,
    pub host_ip: Ipv4Addr,
    pub start_time: DateTime<Utc>,
    /// `Always`, `OnFailure` or `Never`.
    pub restart_policy: String,
}

/// The `status` object for a pod whose containers are `records`.
pub fn pod_status(
    facts: &PodFacts,
    records: &[Record],
    conditions: &mut Conditions,
    now: DateTime<Utc>,
) -> Value {
    let phase = phase(records, &facts.restart_policy);
    let all_ready = !records.is_empty() && records.iter().all(|r| r.ready);
    let mut status = json!({
        "phase": phase,
        "hostIP": facts.host_ip.to_string(),
        "hostIPs": [{"ip": facts.host_ip.to_string()}],
        "startTime": time(facts.start_time),
        "conditions": [
            conditions.set("PodScheduled", true, now),
            conditions.set("Initialized", true, now),
            conditions.set("ContainersReady", all_ready, now),
            conditions.set("Ready", all_ready, now),
        ],
        "containerStatuses": records.iter().map(container_status).collect::<Vec<_>>(),
    });
    if let Some(ip) = facts.pod_ip {
        status["podIP"] = json!(ip.to_string());
        status["podIPs"] = json!([{"ip": ip.to_string()}]);
    }
    status
}

/// Pending until every container has started; Succeeded/Failed once all have ended for good; else Running.
pub fn phase(records: &[Record], restart_policy: &str) -> &'static str {
    if records.is_empty() || records.iter().any(Record::never_started) {
        return "Pending";
    }
    let exit_codes: Option<Vec<i32>> = records
        .iter()
        .map(|r| match r.state {
            State::Terminated { exit_code, .. } => Some(exit_code),
            _ => None,
        })
        .collect();
    match exit_codes {
        // Under `Always` a terminated container is only between restarts (or being stopped).
        Some(codes) if restart_policy != "Always" || codes.iter().all(|c| *c == 0) => {
            if codes.iter().all(|c| *c == 0) {
                "Succeeded"
            } else {
                "Failed"
            }
        }
        _ => "Running",
    }
}

fn container_status(record: &Record) -> Value {
    let mut status = json!({
        "name": record.name,
        "image": record.image,
        "imageID": "",
        "ready": record.ready,
        "restartCount": record.restart_count,
        "started": matches!(record.state, State::Running { .. }),
        "state": state(&record.state),
        "lastState": record.last_state.as_ref().map_or(json!({}), state),
    });
    if let Some(pid) = record.pid {
        status["containerID"] = json!(format!("process://{pid}"));
    }
    status
}

fn state(state: &State) -> Value {
    match state {
        State::Waiting { reason, message } => json!({"waiting": {"reason": reason, "message": message}}),
        State::Running { started_at } => json!({"running": {"startedAt": time(*started_at)}}),
        State::Terminated {
            exit_code,
            signal,
            reason,
            started_at,
            finished_at,
        } => {
            let mut t = json!({
                "exitCode": exit_code, "reason": reason,
                "startedAt": time(*started_at), "finishedAt": time(*finished_at),
            });
            if let Some(signal) = signal {
                t["signal"] = json!(signal);
            }
            json!({"terminated": t})
        }
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(ready: bool) -> Record {
        Record {
            state: State::Running {
                started_at: Utc::now(),
            },
            ready,
            pid: Some(42),
            ..Record::waiting("c", "img", "", "")
        }
    }

    fn terminated(code: i32) -> Record {
        let now = Utc::now();
        Record {
            state: State::Terminated {
                exit_code: code,
                signal: None,
                reason: "Completed".into(),
                started_at: now,
                finished_at: now,
            },
            pid: Some(42),
            ..Record::waiting("c", "img", "", "")
        }
    }

    #[test]
    fn phase_is_pending_until_every_container_has_started() {
        assert_eq!(
            phase(
                &[running(true), Record::waiting("d", "i", "ImageNotMapped", "")],
                "Always"
            ),
            "Pending"
        );
        assert_eq!(phase(&[running(false)], "Always"), "Running");
    }

    #[test]
    fn phase_is_final_only_when_no_restart_follows() {
        assert_eq!(phase(&[terminated(1)], "Never"), "Failed");
        assert_eq!(phase(&[terminated(0)], "OnFailure"), "Succeeded");
        assert_eq!(phase(&[terminated(1)], "Always"), "Running");
    }

    #[test]
    fn ready_needs_every_container_ready_and_keeps_its_transition_time() {
        let facts = PodFacts {
            pod_ip: Some(Ipv4Addr::new(127, 0, 0, 9)),
            host_ip: Ipv4Addr::LOCALHOST,
            start_time: Utc::now(),
            restart_policy: "Always".into(),
        };
        let mut conditions = Conditions::default();
        let t0 = Utc::now() - chrono::Duration::seconds(60);
        let first = pod_status(&facts, &[running(true), running(false)], &mut conditions, t0);
        assert_eq!(first["conditions"][3]["type"], "Ready");
        assert_eq!(first["conditions"][3]["status"], "False");
        assert_eq!(first["podIP"], "127.0.0.9");
        assert_eq!(first["containerStatuses"][0]["containerID"], "process://42");
        let again = pod_status(
            &facts,
            &[running(true), running(false)],
            &mut conditions,
            Utc::now(),
        );
        assert_eq!(first, again, "unchanged status must not change transition times");
        let ready = pod_status(
            &facts,
            &[running(true), running(true)],
            &mut conditions,
            Utc::now(),
        );
        assert_eq!(ready["conditions"][3]["status"], "True");
    }
}
