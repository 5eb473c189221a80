//! The chart's options installed for real on the real node: each reaches the operator's running pod (its
//! spec, its environment, its arguments, the uid its process runs as); `helm test` passes while the operator
//! runs and fails with a sentence once it is gone; and the ClusterRoles aggregated into `view` and `edit`
//! give a namespace's viewers and editors exactly the rights on OrderSystems they should have.

use std::time::Duration;

use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use ordersystem_e2e::cluster::{self, OnFailure, READY_WITHIN, create_namespace, install_operator, is_ready};
use ordersystem_e2e::mode::Mode;
use ordersystem_e2e::{names, real_node, wait};
use serde_json::json;

/// The uid and gid the options give the operator's pods instead of the chart's 65532.
const UID: &str = "65533";

/// Whether `user` may `verb` OrderSystems in `ns`, as the API server's authorizer answers.
async fn may(client: &kube::Client, user: &str, verb: &str, ns: &str) -> bool {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.to_string()),
            resource_attributes: Some(ResourceAttributes {
                group: Some("ordersystem.io".to_string()),
                resource: Some("ordersystems".to_string()),
                verb: Some(verb.to_string()),
                namespace: Some(ns.to_string()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    api.create(&PostParams::default(), &review)
        .await
        .expect("a SubjectAccessReview")
        .status
        .is_some_and(|s| s.allowed)
}

/// `helm test` of the release: its success and its output with the test pod's log.
fn helm_test(release: &str) -> (bool, String) {
    let output = cluster::output(
        "helm",
        &[
            "test",
            release,
            "--namespace",
            release,
            "--logs",
            "--timeout",
            "90s",
        ],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test]
async fn every_chart_option_reaches_the_operators_pod_helm_test_checks_it_and_viewers_and_editors_get_their_rights()
 {
    let client = ordersystem_e2e::kube::client().await;
    let mode = Mode::real(&client).await;
    let release = names::unique("options-system");
    let watched = names::unique("options-shop");
    let _on_failure = OnFailure {
        shop_ns: watched.clone(),
        operator_ns: release.clone(),
    };
    create_namespace(&client, &watched, mode.namespace_annotations()).await;
    create_namespace(&client, &release, mode.namespace_annotations()).await;
    let security = format!(
        "podSecurityContext.runAsNonRoot=true,podSecurityContext.runAsUser={UID},podSecurityContext.runAsGroup={UID},\
         podSecurityContext.seccompProfile.type=RuntimeDefault"
    );
    install_operator(
        &release,
        &watched,
        &[
            "priorityClassName=system-cluster-critical",
            "imagePullSecrets[0].name=mirror-credentials",
            "podLabels.team=platform",
            "podAnnotations.example\\.com/owner=team-a",
            "extraEnv[0].name=RUST_LOG",
            "extraEnv[0].value=debug",
            "extraArgs[0]=--log-format=text",
            "topologySpreadConstraints[0].maxSkew=1",
            "topologySpreadConstraints[0].topologyKey=kubernetes.io/hostname",
            "topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway",
            "topologySpreadConstraints[0].labelSelector.matchLabels.team=platform",
            &security,
            "securityContext.allowPrivilegeEscalation=false",
            "securityContext.readOnlyRootFilesystem=true",
            "securityContext.capabilities.drop[0]=ALL",
        ],
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), &release);
    // The operator's pods, not helm test's (which has a component label).
    let selector = format!(
        "app.kubernetes.io/instance={release},app.kubernetes.io/name=ordersystem-operator,!app.kubernetes.io/component"
    );
    let pod = wait::until_ok("the operator Ready", READY_WITHIN, || async {
        let list = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| e.to_string())?;
        list.items
            .into_iter()
            .find(is_ready)
            .ok_or("no Ready operator pod".to_string())
    })
    .await;

    // Each option, in the pod the API server admitted and the kubelet runs.
    let spec = pod.spec.clone().expect("a pod spec");
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(labels.get("team").map(String::as_str), Some("platform"));
    assert_eq!(
        annotations.get("example.com/owner").map(String::as_str),
        Some("team-a")
    );
    assert_eq!(
        spec.priority_class_name.as_deref(),
        Some("system-cluster-critical")
    );
    assert!(
        spec.priority.unwrap_or_default() > 1_000_000,
        "the class's priority was resolved"
    );
    assert_eq!(
        spec.image_pull_secrets
            .unwrap_or_default()
            .first()
            .map(|s| s.name.as_str()),
        Some("mirror-credentials")
    );
    let spread = spec.topology_spread_constraints.unwrap_or_default();
    assert_eq!(
        spread
            .first()
            .map(|c| (c.topology_key.as_str(), c.when_unsatisfiable.as_str())),
        Some(("kubernetes.io/hostname", "ScheduleAnyway"))
    );
    let container = &spec.containers[0];
    assert_eq!(
        container.args.as_deref(),
        Some(&["--log-format=text".to_string(), "run".to_string()][..])
    );
    let env = container.env.clone().unwrap_or_default();
    assert!(
        env.iter()
            .any(|e| e.name == "RUST_LOG" && e.value.as_deref() == Some("debug")),
        "{env:?}"
    );
    let pod_security = spec.security_context.expect("a pod security context");
    assert_eq!(pod_security.run_as_user, Some(UID.parse().expect("a uid")));

    // The running process: the uid of the override, and the log level and format of RUST_LOG and the flag.
    let container_id = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c[0].container_id.clone())
        .expect("a container id");
    let process = real_node::host_process(&container_id);
    assert_eq!(process.field("Uid"), format!("{UID} {UID} {UID} {UID}"));
    assert_eq!(process.field("Gid"), format!("{UID} {UID} {UID} {UID}"));
    let pod_name = pod.metadata.name.clone().expect("a name");
    let log = wait::until_ok("a DEBUG line in the operator's log", READY_WITHIN, || async {
        let log = cluster::pod_log(&release, &pod_name);
        log.lines()
            .any(|l| l.contains("DEBUG"))
            .then(|| log.clone())
            .ok_or("no DEBUG line yet".to_string())
    })
    .await;
    assert!(
        !log.lines().any(|l| l.trim_start().starts_with('{')),
        "--log-format=text: no JSON lines"
    );

    // helm test: passes while the operator runs; with no operator, fails and says why.
    let (passed, output) = helm_test(&release);
    assert!(passed, "helm test failed:\n{output}");
    assert!(output.contains("answers /readyz"), "{output}");
    cluster::run(
        "kubectl",
        &[
            "scale",
            "deployment",
            "--all",
            "--replicas=0",
            "--namespace",
            &release,
        ],
    );
    wait::until_ok("the operator gone", READY_WITHIN, || async {
        let left = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| e.to_string())?
            .items
            .len();
        (left == 0).then_some(()).ok_or(format!("{left} pods"))
    })
    .await;
    let (passed, output) = helm_test(&release);
    assert!(!passed, "helm test passed without an operator:\n{output}");
    assert!(
        output.contains("refused the connection") || output.contains("did not answer"),
        "the test pod says why:\n{output}"
    );

    // Aggregated ClusterRoles: a RoleBinding to `view` reads OrderSystems, one to `edit` changes them.
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &watched);
    for (user, role) in [("viewer@example.com", "view"), ("editor@example.com", "edit")] {
        let binding: RoleBinding = serde_json::from_value(json!({
            "metadata": {"name": role},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]
        }))
        .expect("a RoleBinding");
        bindings
            .patch(
                role,
                &PatchParams::apply("chart-options-test"),
                &Patch::Apply(&binding),
            )
            .await
            .expect("bind");
    }
    wait::until_ok("the aggregated rights", Duration::from_secs(60), || async {
        let rights = [
            may(&client, "viewer@example.com", "list", &watched).await,
            !may(&client, "viewer@example.com", "create", &watched).await,
            may(&client, "editor@example.com", "create", &watched).await,
            may(&client, "editor@example.com", "delete", &watched).await,
            !may(&client, "editor@example.com", "list", &release).await,
        ];
        rights.iter().all(|r| *r).then_some(()).ok_or(format!(
            "viewer list, not create; editor create, delete, not elsewhere: {rights:?}"
        ))
    })
    .await;

    cluster::uninstall_operator(&release);
    // helm test's pods outlive the release (a test hook is deleted only before the next test): the
    // namespaces go with them, so nothing finished is left on the node.
    for ns in [&watched, &release] {
        cluster::delete_namespace_and_wait(&client, ns).await;
    }
}
