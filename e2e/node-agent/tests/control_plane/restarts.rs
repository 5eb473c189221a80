//! Probes and restart policy: readiness follows the probe, a failing liveness probe restarts the
//! container, repeated crashes back off, and `restartPolicy: Never` leaves a failed container down.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use serde_json::json;

use crate::support::{
    TestEnv, container_pid, http_get, pod_addr, pod_ready, restart_count, wait_for, with_env,
};

fn first_status(pod: &Pod) -> Option<ContainerStatus> {
    pod.status.as_ref()?.container_statuses.as_ref()?.first().cloned()
}

/// Waits until `check` holds for the pod, returning it.
async fn wait_pod(env: &TestEnv, name: &str, what: &str, check: impl Fn(&Pod) -> bool) -> Pod {
    let pods = env.pods();
    wait_for(Duration::from_secs(60), what, || async {
        let pod = pods.get(name).await.ok()?;
        check(&pod).then_some(pod)
    })
    .await
}

/// Asks the test binary to exit with `code`; the connection dies with the process, so no response.
async fn make_exit(pod: &Pod, code: i32) {
    let _ = http_get(pod_addr(pod), &format!("/exit/{code}")).await;
}

#[tokio::test]
async fn readiness_follows_the_readiness_probe_without_restarting() {
    with_env("agent-ready", async |env| {
        env.create_pod("flaky", env.testapp_pod_spec(json!([]), json!({})))
            .await;
        let pod = env.wait_ready("flaky").await;
        let (code, _) = http_get(pod_addr(&pod), "/fail/readyz")
            .await
            .expect("pod answers");
        assert_eq!(code, 200);
        let unready = wait_pod(env, "flaky", "Ready=False after the probe fails", |p| {
            !pod_ready(p)
        })
        .await;
        assert_eq!(restart_count(&unready), 0, "readiness failures never restart");
        assert_eq!(container_pid(&unready), container_pid(&pod), "same process");
        assert_eq!(unready.status.and_then(|s| s.phase).as_deref(), Some("Running"));
    })
    .await;
}

#[tokio::test]
async fn failing_liveness_probe_restarts_the_container() {
    with_env("agent-live", async |env| {
        let liveness = json!({"livenessProbe": {
            "httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1, "failureThreshold": 2,
        }});
        env.create_pod("sick", env.testapp_pod_spec(json!([]), liveness))
            .await;
        let pod = env.wait_ready("sick").await;
        http_get(pod_addr(&pod), "/fail/healthz")
            .await
            .expect("pod answers");
        let restarted = wait_pod(
            env,
            "sick",
            "a restart after liveness failures, Ready again",
            |p| restart_count(p) == 1 && pod_ready(p),
        )
        .await;
        assert_ne!(container_pid(&restarted), container_pid(&pod), "a new process");
    })
    .await;
}

#[tokio::test]
async fn repeated_crashes_back_off_and_keep_counting() {
    with_env("agent-loop", async |env| {
        env.create_pod("crasher", env.testapp_pod_spec(json!([]), json!({})))
            .await;
        let pod = env.wait_ready("crasher").await;
        make_exit(&pod, 1).await;
        let pod = wait_pod(env, "crasher", "the first restart", |p| {
            restart_count(p) == 1 && pod_ready(p)
        })
        .await;
        make_exit(&pod, 1).await;
        // The test agent's backoff is 2 s: the second crash waits in CrashLoopBackOff before restarting.
        let waiting = wait_pod(env, "crasher", "CrashLoopBackOff", |p| {
            first_status(p)
                .and_then(|s| s.state?.waiting?.reason)
                .is_some_and(|reason| reason == "CrashLoopBackOff")
        })
        .await;
        let last = first_status(&waiting)
            .and_then(|s| s.last_state?.terminated)
            .expect("lastState");
        assert_eq!(last.exit_code, 1);
        wait_pod(env, "crasher", "the second restart", |p| {
            restart_count(p) == 2 && pod_ready(p)
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn restart_policy_never_leaves_a_failed_container_down() {
    with_env("agent-never", async |env| {
        let mut spec = env.testapp_pod_spec(json!([]), json!({}));
        spec["restartPolicy"] = json!("Never");
        env.create_pod("once", spec).await;
        let pod = env.wait_ready("once").await;
        make_exit(&pod, 3).await;
        let failed = wait_pod(env, "once", "phase Failed", |p| {
            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
        })
        .await;
        let terminated = first_status(&failed)
            .and_then(|s| s.state?.terminated)
            .expect("terminated state");
        assert_eq!(terminated.exit_code, 3);
        assert_eq!(restart_count(&failed), 0);
    })
    .await;
}

#[tokio::test]
async fn a_pod_is_ready_only_while_every_container_is() {
    with_env("agent-two", async |env| {
        let mut spec = env.testapp_pod_spec(json!([]), json!({}));
        let sidecar = json!({
            "name": "side",
            "image": crate::support::TESTAPP_IMAGE,
            "env": [
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "LISTEN_ADDR", "value": "$(POD_IP):8081"},
            ],
            "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8081}, "periodSeconds": 1},
        });
        spec["containers"]
            .as_array_mut()
            .expect("containers")
            .push(sidecar);
        env.create_pod("pair", spec).await;
        let pod = env.wait_ready("pair").await;
        let mut side = pod_addr(&pod);
        side.set_port(8081);
        http_get(side, "/fail/readyz").await.expect("sidecar answers");
        let unready = wait_pod(env, "pair", "Ready=False for the sidecar", |p| !pod_ready(p)).await;
        let statuses = unready
            .status
            .and_then(|s| s.container_statuses)
            .unwrap_or_default();
        let ready: Vec<(String, bool)> = statuses.iter().map(|c| (c.name.clone(), c.ready)).collect();
        assert_eq!(ready, [("app".to_string(), true), ("side".to_string(), false)]);
    })
    .await;
}
