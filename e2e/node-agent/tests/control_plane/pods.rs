//! Pods as processes: Deployments through KCM and the scheduler, restarts, graceful deletion, env from
//! Secrets, and the pod's own ServiceAccount identity.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;

use crate::support::{
    TestEnv, container_pid, http_get, pod_addr, pod_ready, process_alive, restart_count, wait_for, with_env,
};

const APP_LABEL: &str = "app";

/// Ready pods of the Deployment's label, once there are exactly `count`.
async fn wait_ready_pods(env: &TestEnv, app: &str, count: usize) -> Vec<Pod> {
    let pods = env.pods();
    let params = ListParams::default().labels(&format!("{APP_LABEL}={app}"));
    wait_for(
        Duration::from_secs(90),
        &format!("{count} Ready pods of {app}"),
        || async {
            let list = pods.list(&params).await.ok()?;
            let live: Vec<Pod> = list
                .items
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            (live.len() == count && live.iter().all(pod_ready)).then_some(live)
        },
    )
    .await
}

async fn create_deployment(env: &TestEnv, name: &str, replicas: i32) -> Api<Deployment> {
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &env.namespace);
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {APP_LABEL: name}},
            "template": {
                "metadata": {"labels": {APP_LABEL: name}},
                "spec": env.testapp_pod_spec(json!([]), json!({})),
            },
        },
    }))
    .expect("deployment");
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create deployment");
    deployments
}

/// Each pod answers on its own IP with its own process.
async fn distinct_pids(pods: &[Pod]) -> BTreeSet<String> {
    let mut pids = BTreeSet::new();
    for pod in pods {
        let (code, pid) = http_get(pod_addr(pod), "/pid")
            .await
            .expect("pod answers on its IP");
        assert_eq!(code, 200);
        pids.insert(pid);
    }
    pids
}

#[tokio::test]
async fn deployment_of_two_becomes_ready_and_scaling_to_three_starts_a_third_process() {
    with_env("agent-deploy", async |env| {
        let deployments = create_deployment(env, "web", 2).await;
        let pods = wait_ready_pods(env, "web", 2).await;
        let ips: BTreeSet<_> = pods.iter().map(pod_addr).collect();
        assert_eq!(ips.len(), 2, "each pod has its own IP: {ips:?}");
        assert_eq!(distinct_pids(&pods).await.len(), 2);

        let replica_sets: Api<ReplicaSet> = Api::namespaced(env.client.clone(), &env.namespace);
        wait_for(
            Duration::from_secs(60),
            "the ReplicaSet to report 2 ready",
            || async {
                let list = replica_sets.list(&ListParams::default()).await.ok()?;
                let status = list.items.first()?.status.clone()?;
                (status.ready_replicas == Some(2) && status.available_replicas == Some(2)).then_some(())
            },
        )
        .await;
        wait_for(
            Duration::from_secs(60),
            "the Deployment to report 2 ready",
            || async {
                let status = deployments.get("web").await.ok()?.status?;
                (status.ready_replicas == Some(2)).then_some(())
            },
        )
        .await;

        let scale = json!({"spec": {"replicas": 3}});
        deployments
            .patch("web", &PatchParams::default(), &Patch::Merge(&scale))
            .await
            .expect("scale to 3");
        let pods = wait_ready_pods(env, "web", 3).await;
        assert_eq!(distinct_pids(&pods).await.len(), 3, "three processes answer");
        wait_for(
            Duration::from_secs(60),
            "the Deployment to report 3 ready",
            || async {
                let status = deployments.get("web").await.ok()?.status?;
                (status.ready_replicas == Some(3)).then_some(())
            },
        )
        .await;
    })
    .await;
}

#[tokio::test]
async fn killed_process_is_restarted_counted_and_ready_again() {
    with_env("agent-crash", async |env| {
        env.create_pod("crashy", env.testapp_pod_spec(json!([]), json!({})))
            .await;
        let pod = env.wait_ready("crashy").await;
        let pid = container_pid(&pod);
        assert_eq!(restart_count(&pod), 0);
        kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill -9 the container process");

        let pods = env.pods();
        let restarted = wait_for(Duration::from_secs(60), "restartCount 1 and Ready", || async {
            let pod = pods.get("crashy").await.ok()?;
            (restart_count(&pod) == 1 && pod_ready(&pod) && container_pid(&pod) != pid).then_some(pod)
        })
        .await;
        let statuses = restarted
            .status
            .and_then(|s| s.container_statuses)
            .unwrap_or_default();
        let last = statuses[0]
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.clone())
            .expect("lastState");
        assert_eq!(last.exit_code, 137, "SIGKILL is reported as 128 + 9");
        let (code, _) = http_get(pod_addr(&pod), "/readyz")
            .await
            .expect("restarted process answers");
        assert_eq!(code, 200);
    })
    .await;
}

#[tokio::test]
async fn deleting_a_pod_stops_its_process_with_sigterm_and_removes_the_pod() {
    with_env("agent-delete", async |env| {
        env.create_pod("doomed", env.testapp_pod_spec(json!([]), json!({})))
            .await;
        let pod = env.wait_ready("doomed").await;
        let pid = container_pid(&pod);
        assert!(process_alive(pid));

        let pods = env.pods();
        let started = Instant::now();
        pods.delete("doomed", &Default::default())
            .await
            .expect("delete pod");
        wait_for(Duration::from_secs(30), "the pod object to be gone", || async {
            matches!(pods.get_opt("doomed").await, Ok(None)).then_some(())
        })
        .await;
        assert!(!process_alive(pid), "process {pid} outlived its pod");
        // The grace period is 10 s; the test binary exits at once on SIGTERM, so no SIGKILL was needed.
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
        let log = std::fs::read_to_string(env.agent.container_log_path(&env.namespace, "doomed", "app"))
            .expect("container log");
        assert!(log.contains("testapp: SIGTERM received"), "log:\n{log}");
    })
    .await;
}

#[tokio::test]
async fn secret_and_config_map_env_secret_volume_and_field_refs_reach_the_process() {
    with_env("agent-env", async |env| {
        let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.namespace);
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "creds"},
            "stringData": {"password": "s3cr3t-value", "user": "alice"},
        }))
        .expect("secret");
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .expect("create secret");
        let config_maps: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.namespace);
        let config_map: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "settings"},
            "data": {"mode": "fast", "LEVEL": "7"},
        }))
        .expect("config map");
        config_maps
            .create(&PostParams::default(), &config_map)
            .await
            .expect("create config map");
        let extra_env = json!([
            {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
            {"name": "DB_URL", "value": "postgres://$(POD_NAMESPACE)@db/$$(NOT_EXPANDED)"},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
        ]);
        let mut spec = env.testapp_pod_spec(
            extra_env,
            json!({
                "volumeMounts": [{"name": "creds", "mountPath": "/etc/testapp/creds", "readOnly": true}],
                "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
            }),
        );
        spec["volumes"] = json!([{"name": "creds", "secret": {"secretName": "creds"}}]);
        env.create_pod("envy", spec).await;
        let pod = env.wait_ready("envy").await;
        let addr = pod_addr(&pod);
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .expect("pod IP");

        let get = |path: String| async move { http_get(addr, &path).await.expect("pod answers") };
        assert_eq!(get("/env/DB_PASSWORD".into()).await, (200, "s3cr3t-value".into()));
        assert_eq!(get("/env/LISTEN_ADDR".into()).await, (200, format!("{ip}:8080")));
        assert_eq!(get("/env/POD_NAME".into()).await, (200, "envy".into()));
        let url = format!("postgres://{}@db/$(NOT_EXPANDED)", env.namespace);
        assert_eq!(get("/env/DB_URL".into()).await, (200, url));
        assert_eq!(get("/env/MODE".into()).await, (200, "fast".into()));
        assert_eq!(get("/env/CFG_LEVEL".into()).await, (200, "7".into()));
        // Pods run on the host, so they are given the API server the agent's kubeconfig names.
        let config = kube::Config::infer().await.expect("kubeconfig");
        let api_host = config.cluster_url.host().expect("server host").to_string();
        assert_eq!(get("/env/KUBERNETES_SERVICE_HOST".into()).await, (200, api_host));
        let file = get("/file?path=/etc/testapp/creds/user".into()).await;
        assert_eq!(
            file,
            (200, "alice".into()),
            "the secret volume is mounted for the pod"
        );
        assert!(
            !std::path::Path::new("/etc/testapp/creds/user").exists(),
            "the mount is private to the pod, the host sees an empty mount point"
        );
    })
    .await;
}

#[tokio::test]
async fn service_account_token_has_exactly_the_accounts_permissions() {
    with_env("agent-sa", async |env| {
        let ns = env.namespace.clone();
        let client = env.client.clone();
        let account: ServiceAccount =
            serde_json::from_value(json!({"metadata": {"name": "reader"}})).expect("service account");
        Api::<ServiceAccount>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &account)
            .await
            .expect("create service account");
        let role: Role = serde_json::from_value(json!({
            "metadata": {"name": "configmap-reader"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}],
        }))
        .expect("role");
        Api::<Role>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &role)
            .await
            .expect("role");
        let binding: RoleBinding = serde_json::from_value(json!({
            "metadata": {"name": "reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "configmap-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}],
        }))
        .expect("role binding");
        Api::<RoleBinding>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &binding)
            .await
            .expect("role binding");

        let mut spec = env.testapp_pod_spec(json!([]), json!({}));
        spec["serviceAccountName"] = json!("reader");
        env.create_pod("identity", spec).await;
        let pod = env.wait_ready("identity").await;
        let addr = pod_addr(&pod);
        let status_of = |path: String| async move {
            let (code, body) = http_get(addr, &path).await.expect("pod answers");
            assert_eq!(code, 200, "in-cluster client failed: {body}");
            body
        };
        assert_eq!(
            status_of(format!("/kube/configmaps/{ns}")).await,
            "200",
            "the Role grants this"
        );
        assert_eq!(
            status_of(format!("/kube/secrets/{ns}")).await,
            "403",
            "the Role does not grant secrets"
        );
        assert_eq!(
            status_of("/kube/configmaps/default".into()).await,
            "403",
            "nor other namespaces"
        );
    })
    .await;
}

#[tokio::test]
async fn pods_bound_to_another_node_are_left_alone() {
    with_env("agent-other", async |env| {
        let mut elsewhere = env.testapp_pod_spec(json!([]), json!({}));
        elsewhere["nodeName"] = json!(format!("{}-elsewhere", env.agent.node));
        env.create_pod("elsewhere", elsewhere).await;
        env.create_pod("mine", env.testapp_pod_spec(json!([]), json!({})))
            .await;
        // Both events reach the agent's watch at about the same time; once its own pod is Ready the
        // other one would have been started too, had the agent taken it.
        env.wait_ready("mine").await;
        let other = env.pods().get("elsewhere").await.expect("pod exists");
        let status = other.status.unwrap_or_default();
        assert_eq!(status.pod_ip, None, "the agent gave it an IP");
        assert_eq!(status.container_statuses, None, "the agent ran it");
        let log_path = env.agent.container_log_path(&env.namespace, "elsewhere", "app");
        assert!(!log_path.exists(), "the agent started its process");
        // Nobody finalizes a pod of a node that does not exist: delete it at once.
        let now = kube::api::DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        env.pods().delete("elsewhere", &now).await.expect("delete pod");
    })
    .await;
}

#[tokio::test]
async fn a_changed_config_map_reaches_its_mounted_file_while_the_pod_runs() {
    with_env("agent-refresh", async |env| {
        let config_maps: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.namespace);
        let config_map: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "tuning"},
            "data": {"batch": "10"},
        }))
        .expect("config map");
        config_maps
            .create(&PostParams::default(), &config_map)
            .await
            .expect("create config map");
        let mut spec = env.testapp_pod_spec(
            json!([]),
            json!({"volumeMounts": [{"name": "tuning", "mountPath": "/etc/testapp/tuning"}]}),
        );
        spec["volumes"] = json!([{
            "name": "tuning",
            "configMap": {"name": "tuning", "items": [{"key": "batch", "path": "batch-size"}]},
        }]);
        env.create_pod("tuned", spec).await;
        let pod = env.wait_ready("tuned").await;
        let addr = pod_addr(&pod);
        let read = || async move {
            http_get(addr, "/file?path=/etc/testapp/tuning/batch-size")
                .await
                .expect("pod answers")
        };
        assert_eq!(read().await, (200, "10".into()), "items map the key to its path");

        let change = json!({"data": {"batch": "25"}});
        config_maps
            .patch("tuning", &PatchParams::default(), &Patch::Merge(&change))
            .await
            .expect("patch");
        // The test agent rewrites volumes every 2 s.
        wait_for(
            Duration::from_secs(30),
            "the new value in the mounted file",
            || async { (read().await == (200, "25".to_string())).then_some(()) },
        )
        .await;
        let same = env.pods().get("tuned").await.expect("pod");
        assert_eq!(container_pid(&same), container_pid(&pod), "no restart was needed");
    })
    .await;
}
