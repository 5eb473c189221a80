//! The real node works as a Kubernetes node should: it is Ready, runs pods under containerd, gives them no
//! default route, serves cluster DNS through CoreDNS, routes Services through kube-proxy (the API server's
//! own and a pod's), and answers `kubectl logs`, `exec` and `port-forward` through the API server.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::api::{Api, Patch, PatchParams};
use ordersystem_e2e::cluster::{create_namespace, delete_namespace_and_wait};
use ordersystem_e2e::names;
use ordersystem_e2e::real_node::{PortForward, RealNode, exec, kubectl};
use ordersystem_e2e::wait;
use serde_json::{Value, json};

const MANAGER: &str = "ordersystem-real-node-test";

async fn apply<K>(api: &Api<K>, name: &str, object: Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(object))
        .await
        .unwrap_or_else(|e| panic!("apply {name}: {e}"));
}

async fn wait_pod_ready(pods: &Api<Pod>, name: &str) -> Pod {
    wait::until_ok(&format!("pod {name} Ready"), Duration::from_secs(90), || async {
        let pod = pods.get(name).await.map_err(|e| e.to_string())?;
        let status = pod.status.clone().unwrap_or_default();
        let ready = status
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        if ready {
            Ok(pod)
        } else {
            Err(format!(
                "phase {:?}, {:?}",
                status.phase, status.container_statuses
            ))
        }
    })
    .await
}

/// The addresses of the answer in busybox nslookup's output: the `Address` lines after `Name:`, not the
/// server's (`Server:` and its `Address:` come first, and 10.0.0.10 contains 10.0.0.1).
fn answer_addresses(lookup: &str) -> Vec<&str> {
    lookup
        .lines()
        .skip_while(|l| !l.starts_with("Name:"))
        .filter_map(|l| l.strip_prefix("Address"))
        .filter_map(|rest| rest.split_once(':')?.1.split_whitespace().next())
        .collect()
}

#[test]
fn nslookup_answers_are_read_after_the_name_not_from_the_server_lines() {
    let lookup = "Server:\t\t10.0.0.10\nAddress:\t10.0.0.10:53\n\nName:\tkubernetes.default.svc.cluster.local\nAddress: 10.0.0.1\n\n";
    assert_eq!(answer_addresses(lookup), ["10.0.0.1"]);
    let server_only = "Server:\t\t10.0.0.10\nAddress:\t10.0.0.10:53\n\n** server can't find x: NXDOMAIN\n";
    assert!(answer_addresses(server_only).is_empty());
}

#[tokio::test]
async fn pods_on_the_real_node_get_cluster_dns_services_logs_and_exec_and_no_way_out() {
    let client = ordersystem_e2e::kube::client().await;
    let node = RealNode::from_env();
    let ready = node.wait_ready(&client).await;
    let runtime = ready
        .status
        .and_then(|s| s.node_info)
        .map(|i| i.container_runtime_version)
        .unwrap_or_default();
    assert!(
        runtime.starts_with("containerd://"),
        "the node runs containerd, not {runtime:?}"
    );

    let ns = names::unique("node-smoke");
    // Restricted: the API server itself refuses any pod here that the restricted profile does not allow.
    create_namespace(&client, &ns, json!({})).await;

    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let greeting = format!("hello from {ns}");
    apply(
        &config_maps,
        "www",
        json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "www"},
            "data": {"index.html": &greeting},
        }),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let mut web = node.debug_pod(
        "web",
        json!({"app": "web"}),
        &["httpd", "-f", "-vv", "-p", "8080", "-h", "/www"],
        json!({
            "volumes": [{"name": "www", "configMap": {"name": "www"}}],
        }),
    );
    web["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "www", "mountPath": "/www", "readOnly": true}]);
    web["spec"]["containers"][0]["readinessProbe"] = json!({"tcpSocket": {"port": 8080}, "periodSeconds": 1});
    apply(&pods, "web", web).await;
    apply(
        &pods,
        "probe",
        node.debug_pod(
            "probe",
            json!({"app": "probe"}),
            &["sh", "-c", "echo probe started; exec sleep 3600"],
            json!({}),
        ),
    )
    .await;
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    apply(
        &services,
        "web",
        json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        }),
    )
    .await;
    let probe = wait_pod_ready(&pods, "probe").await;
    wait_pod_ready(&pods, "web").await;
    let container_id = probe
        .status
        .and_then(|s| s.container_statuses)
        .and_then(|c| c.first().and_then(|c| c.container_id.clone()))
        .unwrap_or_default();
    assert!(
        container_id.starts_with("containerd://"),
        "probe runs under containerd: {container_id:?}"
    );

    // exec answers, and the pod has no default route: only its own subnet and the service range.
    let routes = exec(&ns, "probe", "ip route");
    assert!(
        !routes.lines().any(|l| l.starts_with("default")),
        "a pod has no default route:\n{routes}"
    );
    assert!(
        routes.contains("10.0.0.0/24"),
        "the service range is routed through the bridge:\n{routes}"
    );
    let outside = kubectl(&[
        "exec",
        "-n",
        &ns,
        "probe",
        "--",
        "nc",
        "-w",
        "2",
        "192.0.2.1",
        "80",
    ]);
    assert!(
        !outside.status.success(),
        "an address outside the test bed is unreachable from a pod"
    );
    assert!(
        String::from_utf8_lossy(&outside.stderr).contains("unreachable"),
        "no route out: {}",
        String::from_utf8_lossy(&outside.stderr)
    );

    // Cluster DNS through CoreDNS; nothing outside the cluster resolves (no forwarder).
    let lookup = exec(&ns, "probe", "nslookup kubernetes.default.svc.cluster.local");
    assert_eq!(
        answer_addresses(&lookup),
        ["10.0.0.1"],
        "kubernetes.default resolves to its ClusterIP, and to nothing else:\n{lookup}"
    );
    let resolv = exec(&ns, "probe", "cat /etc/resolv.conf");
    assert!(
        resolv.contains("nameserver 10.0.0.10"),
        "pods ask CoreDNS's Service:\n{resolv}"
    );
    let external = kubectl(&["exec", "-n", &ns, "probe", "--", "nslookup", "example.com."]);
    assert!(
        !String::from_utf8_lossy(&external.stdout).contains("Address: ") || !external.status.success(),
        "example.com must not resolve: {}",
        String::from_utf8_lossy(&external.stdout)
    );

    // The API server through the `kubernetes` Service's ClusterIP: Go's TLS server answers a plain request.
    let api = exec(
        &ns,
        "probe",
        "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 10.0.0.1 443",
    );
    assert!(
        api.contains("Client sent an HTTP request to an HTTPS server"),
        "the API server answers at 10.0.0.1:443: {api:?}"
    );
    // Another pod through a Service of its own, by its cluster DNS name.
    let host = format!("web.{ns}.svc.cluster.local");
    let page = exec(
        &ns,
        "probe",
        &format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {host} 80"),
    );
    assert!(
        page.contains(&greeting),
        "the web pod answers through its Service: {page:?}"
    );

    // kubectl logs, through the API server and the kubelet.
    let logs = kubectl(&["logs", "-n", &ns, "probe"]);
    assert!(
        logs.status.success(),
        "kubectl logs: {}",
        String::from_utf8_lossy(&logs.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&logs.stdout).trim(), "probe started");

    // kubectl port-forward, through the API server and the kubelet, from a loopback port to the web pod.
    let forward = PortForward::start(&ns, "web", 8080);
    let url = format!("http://127.0.0.1:{}/index.html", forward.local_port);
    let response = reqwest::get(&url)
        .await
        .unwrap_or_else(|e| panic!("GET {url} through kubectl port-forward: {e}"));
    assert!(response.status().is_success(), "GET {url}: {}", response.status());
    let body = response.text().await.expect("the page");
    assert_eq!(body, greeting, "the web pod answers through the port-forward");
    drop(forward);

    // An image that is not on the node is never fetched from beyond the machine: every registry the test
    // bed names points at a closed port on loopback.
    let mut absent = node.debug_pod("absent", json!({"app": "absent"}), &["true"], json!({}));
    absent["spec"]["containers"][0]["image"] = json!("ghcr.io/ordersystem/absent:never-built");
    absent["spec"]["containers"][0]["imagePullPolicy"] = json!("IfNotPresent");
    apply(&pods, "absent", absent).await;
    let refused = wait::until_ok(
        "the absent image's pull to fail",
        Duration::from_secs(60),
        || async {
            let pod = pods.get("absent").await.map_err(|e| e.to_string())?;
            let waiting = pod
                .status
                .and_then(|s| s.container_statuses)
                .and_then(|c| c.first().and_then(|c| c.state.clone()))
                .and_then(|s| s.waiting)
                .and_then(|w| w.message)
                .unwrap_or_default();
            if waiting.contains("127.0.0.1") || waiting.contains("lookup") {
                Ok(waiting)
            } else {
                Err(waiting)
            }
        },
    )
    .await;
    assert!(
        refused.contains("127.0.0.1:1"),
        "the pull went to the closed loopback port: {refused}"
    );
    assert!(
        !refused.contains("lookup "),
        "no name was looked up for the pull: {refused}"
    );

    delete_namespace_and_wait(&client, &ns).await;
}

/// A service pod whose image the node does not hold fails the wait for its readiness at once, saying so
/// (`ErrImageNeverPull` and the kubelet's message), instead of timing out minutes later.
#[tokio::test]
async fn a_pod_without_its_image_fails_the_wait_with_the_reason_not_a_timeout() {
    use futures::FutureExt;
    use ordersystem_e2e::cluster::ready_pods;

    let client = ordersystem_e2e::kube::client().await;
    let node = RealNode::from_env();
    node.wait_ready(&client).await;
    let ns = names::unique("node-missing-image");
    create_namespace(&client, &ns, node.namespace_annotations()).await;
    let mut pod = node.debug_pod(
        "shop-order-missing",
        json!({"app.kubernetes.io/instance": "shop", "app.kubernetes.io/component": "order"}),
        &["/bin/true"],
        json!({}),
    );
    pod["spec"]["containers"][0]["image"] = json!("ghcr.io/ordersystem/order:never-built");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    apply(&pods, "shop-order-missing", pod).await;

    let started = std::time::Instant::now();
    let outcome = std::panic::AssertUnwindSafe(ready_pods(&client, &ns, "shop", "order", 1))
        .catch_unwind()
        .await;
    let message = match outcome {
        Ok(_) => panic!("a pod without its image became Ready"),
        Err(panic) => panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(ToString::to_string))
            .unwrap_or_default(),
    };
    eprintln!("after {:?}: {message}", started.elapsed());
    assert!(message.contains("ErrImageNeverPull"), "{message}");
    assert!(
        message.contains("ghcr.io/ordersystem/order:never-built"),
        "{message}"
    );
    assert!(!message.contains("timed out"), "{message}");
    delete_namespace_and_wait(&client, &ns).await;
}

/// Every test namespace is restricted: the API server refuses a pod that runs as root with privilege
/// escalation allowed, and admits the same pod restricted as the tests' own pods are.
#[tokio::test]
async fn a_test_namespace_refuses_a_pod_the_restricted_profile_forbids() {
    use kube::api::PostParams;

    let client = ordersystem_e2e::kube::client().await;
    let node = RealNode::from_env();
    let ns = names::unique("node-restricted");
    create_namespace(&client, &ns, node.namespace_annotations()).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let restricted = node.debug_pod("restricted", json!({}), &["true"], json!({}));
    let admitted = pods
        .create(
            &dry_run,
            &serde_json::from_value(restricted.clone()).expect("pod"),
        )
        .await;
    let mut loose = restricted;
    loose["metadata"]["name"] = json!("loose");
    loose["spec"]["securityContext"] = json!({});
    loose["spec"]["containers"][0]["securityContext"] = json!({"allowPrivilegeEscalation": true});
    let refused = pods
        .create(&dry_run, &serde_json::from_value(loose).expect("pod"))
        .await;
    delete_namespace_and_wait(&client, &ns).await;

    admitted.expect("a restricted pod is admitted");
    let refused = refused.expect_err("a pod the restricted profile forbids is refused");
    assert!(
        refused
            .to_string()
            .contains(r#"violates PodSecurity "restricted"#),
        "refused by Pod Security admission: {refused}"
    );
}
