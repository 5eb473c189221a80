//! The API server itself rejects invalid `OrderSystem`s with the schema's and the CEL rules' messages, and a
//! status computed from an older version of the object.
//! Needs the local control plane (`e2e/infra/up.sh`).

use kube::api::{Api, Patch, PatchParams, PostParams};
use ordersystem_e2e::control_plane::TestNamespace;
use ordersystem_e2e::order_system::{minimal_json, to_os};
use ordersystem_operator::crd::OrderSystem;
use serde_json::{Value, json};

async fn setup() -> (Api<OrderSystem>, TestNamespace) {
    let client = ordersystem_e2e::kube::client().await;
    let ns = TestNamespace::create(&client, "crd-val").await;
    (Api::namespaced(client, &ns.name), ns)
}

async fn create_err(api: &Api<OrderSystem>, value: Value) -> String {
    match api.create(&PostParams::default(), &to_os(value)).await {
        Ok(_) => panic!("the API server accepted an invalid OrderSystem"),
        Err(e) => e.to_string(),
    }
}

async fn patch(api: &Api<OrderSystem>, name: &str, patch: Value) -> Result<OrderSystem, kube::Error> {
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
}

fn assert_rejected(result: Result<OrderSystem, kube::Error>, message: &str) {
    match result {
        Ok(_) => panic!("the API server accepted a change it should reject ({message})"),
        Err(e) => assert!(e.to_string().contains(message), "expected {message:?} in: {e}"),
    }
}

#[tokio::test]
async fn zero_partitions_are_rejected_by_the_schema() {
    let (api, _ns) = setup().await;
    let mut os = minimal_json("shop", "t");
    os["spec"]["kafka"]["topic"]["partitions"] = json!(0);
    let err = create_err(&api, os).await;
    assert!(
        err.contains("spec.kafka.topic.partitions") && err.contains("greater than or equal to 1"),
        "{err}"
    );
}

#[tokio::test]
async fn cleanup_policy_inside_config_is_rejected() {
    let (api, _ns) = setup().await;
    let mut os = minimal_json("shop", "t");
    os["spec"]["kafka"]["topic"]["config"] = json!({"cleanup.policy": "compact"});
    let err = create_err(&api, os).await;
    assert!(err.contains("cleanup.policy is not allowed in config"), "{err}");
}

#[tokio::test]
async fn names_that_are_too_long_are_rejected() {
    let (api, _ns) = setup().await;
    let long_name = "a".repeat(54);
    let err = create_err(&api, minimal_json(&long_name, "t")).await;
    assert!(
        err.contains("metadata.name must be at most 53 characters"),
        "{err}"
    );

    let long_topic = "t".repeat(250);
    let err = create_err(&api, minimal_json("shop", &long_topic)).await;
    assert!(
        err.contains("spec.kafka.topic.name") && err.contains("Too long"),
        "{err}"
    );

    let err = create_err(&api, minimal_json("shop", "__internal")).await;
    assert!(err.contains("topic name must not start with '__'"), "{err}");
}

#[tokio::test]
async fn an_image_tag_that_is_no_tag_is_rejected_by_the_schema() {
    let (api, _ns) = setup().await;
    for bad in ["1.0 beta", "-rc", "a:b"] {
        let mut os = minimal_json("shop", "t");
        os["spec"]["imageTag"] = json!(bad);
        let err = create_err(&api, os).await;
        assert!(
            err.contains("spec.imageTag") && err.contains("should match"),
            "{bad}: {err}"
        );
    }
    let mut os = minimal_json("shop", "t");
    os["spec"]["imageTag"] = json!("2.0.0-rc.1");
    let created = api
        .create(&PostParams::default(), &to_os(os))
        .await
        .expect("a valid tag is accepted");
    assert_eq!(created.spec.image_tag.as_deref(), Some("2.0.0-rc.1"));
}

#[tokio::test]
async fn partitions_may_grow_but_never_shrink() {
    let (api, _ns) = setup().await;
    api.create(&PostParams::default(), &to_os(minimal_json("shop", "t")))
        .await
        .expect("valid create");
    let grown = patch(
        &api,
        "shop",
        json!({"spec": {"kafka": {"topic": {"partitions": 5}}}}),
    )
    .await
    .expect("growing is allowed");
    assert_eq!(grown.spec.kafka.topic.partitions, 5);
    let shrunk = patch(
        &api,
        "shop",
        json!({"spec": {"kafka": {"topic": {"partitions": 4}}}}),
    )
    .await;
    assert_rejected(shrunk, "partitions may not be decreased");
}

#[tokio::test]
async fn topic_name_is_immutable() {
    let (api, _ns) = setup().await;
    api.create(&PostParams::default(), &to_os(minimal_json("shop", "t")))
        .await
        .expect("valid create");
    let renamed = patch(
        &api,
        "shop",
        json!({"spec": {"kafka": {"topic": {"name": "other"}}}}),
    )
    .await;
    assert_rejected(renamed, "topic name is immutable");
}

#[tokio::test]
async fn replication_factor_can_be_neither_removed_nor_changed() {
    let (api, _ns) = setup().await;
    let mut os = minimal_json("shop", "t");
    os["spec"]["kafka"]["topic"]["replicationFactor"] = json!(1);
    api.create(&PostParams::default(), &to_os(os))
        .await
        .expect("valid create");
    let changed = patch(
        &api,
        "shop",
        json!({"spec": {"kafka": {"topic": {"replicationFactor": 3}}}}),
    )
    .await;
    assert_rejected(changed, "replicationFactor is immutable");
    // Removing it first (so a later re-add would not be a change of an existing field) is refused as well.
    let removed = patch(
        &api,
        "shop",
        json!({"spec": {"kafka": {"topic": {"replicationFactor": null}}}}),
    )
    .await;
    assert_rejected(removed, "replicationFactor is immutable");
}

#[tokio::test]
async fn replication_factor_cannot_be_patched_in_after_a_create_without_it() {
    let (api, _ns) = setup().await;
    api.create(&PostParams::default(), &to_os(minimal_json("shop", "t")))
        .await
        .expect("valid create");
    let added = patch(
        &api,
        "shop",
        json!({"spec": {"kafka": {"topic": {"replicationFactor": 2}}}}),
    )
    .await;
    assert_rejected(added, "replicationFactor is immutable");
    // Unrelated changes to the same object still pass the transition rule.
    let other = patch(&api, "shop", json!({"spec": {"paused": true}}))
        .await
        .expect("unrelated change allowed");
    assert!(other.spec.paused);
}

/// The manifests users start from (`examples/`) and the development shop the dev scripts apply are
/// accepted by the API server (schema and CEL rules) and by the operator's own validation.
#[tokio::test]
async fn the_shipped_example_and_development_manifests_are_valid() {
    let (api, _ns) = setup().await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for path in ["examples/shop.yaml", "e2e/dev-shop.yaml"] {
        let text = std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        let os: OrderSystem = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        let dry_run = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        let admitted = api
            .create(&dry_run, &os)
            .await
            .unwrap_or_else(|e| panic!("the API server refuses {path}: {e}"));
        if let Err(invalid) = ordersystem_operator::controller::validate::validate(&admitted) {
            panic!("the operator refuses {path}: {invalid}");
        }
    }
}

#[tokio::test]
async fn a_status_computed_from_an_object_that_changed_since_is_refused() {
    use ordersystem_operator::controller::status;
    let (api, _ns) = setup().await;
    let created = api
        .create(
            &PostParams::default(),
            &to_os(minimal_json("shop", "stale-status")),
        )
        .await
        .expect("create");
    let client = ordersystem_e2e::kube::client().await;
    let report = status::Report::invalid(&created, "a stale view".into());
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    let computed = status::compute(&created, &report, now);
    // Someone changes the object after the operator read it.
    patch(
        &api,
        "shop",
        json!({"metadata": {"annotations": {"example.com/touched": "yes"}}}),
    )
    .await
    .expect("annotate");
    let error = status::patch(&client, &created, computed.clone())
        .await
        .expect_err("a write from the older version is refused");
    assert!(
        matches!(&error, kube::Error::Api(status) if status.code == 409),
        "{error:?}"
    );
    assert!(
        api.get_status("shop").await.expect("get").status.is_none(),
        "nothing was written"
    );
    // From the current version it is written.
    let current = api.get("shop").await.expect("get");
    assert!(
        status::patch(&client, &current, computed).await.expect("written"),
        "a status was written"
    );
}

/// First contact through kubectl against the real API server: `explain` opens with the description, the
/// short name and the category list the resource, and `-o wide` adds the Ready condition's reason and message.
#[tokio::test]
async fn kubectl_explains_the_kind_and_finds_it_by_short_name_and_category() {
    let (api, ns) = setup().await;
    api.create(
        &PostParams::default(),
        &to_os(minimal_json("first-contact", "first-contact-orders")),
    )
    .await
    .expect("create");
    let kubectl = |args: &[&str]| {
        let output = std::process::Command::new("kubectl")
            .args(args)
            .output()
            .expect("kubectl runs (`. /tmp/ordersystem/env` puts it on PATH)");
        assert!(
            output.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let explained = kubectl(&["explain", "ordersystem"]);
    let opening: String = ordersystem_operator::crd::DESCRIPTION
        .split_whitespace()
        .take(8)
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        explained
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .contains(&opening),
        "kubectl explain shows the description:\n{explained}"
    );
    assert!(!explained.contains("Auto-generated"), "{explained}");
    for name in ["osys", "ordersys"] {
        let listed = kubectl(&["get", name, "-n", &ns.name, "-o", "name"]);
        assert!(
            listed.contains("ordersystem.ordersystem.io/first-contact"),
            "kubectl get {name} lists the resource: {listed}"
        );
    }
    let wide = kubectl(&["get", "osys", "-n", &ns.name, "-o", "wide"]);
    let header = wide.lines().next().unwrap_or_default();
    for column in ["READY", "PARTITIONS", "LAG", "AGE", "REASON", "MESSAGE"] {
        assert!(header.contains(column), "-o wide has {column}: {header}");
    }
    let narrow = kubectl(&["get", "osys", "-n", &ns.name]);
    assert!(
        !narrow.lines().next().unwrap_or_default().contains("MESSAGE"),
        "Reason and Message are wide-only: {narrow}"
    );
}

/// `shop` with invoicing as `invoicing` says.
fn with_invoicing(invoicing: Value) -> Value {
    let mut os = minimal_json("shop", "t");
    os["spec"]["invoicing"] = invoicing;
    os
}

#[tokio::test]
async fn replicas_and_autoscaling_are_mutually_exclusive_and_the_error_names_the_field() {
    let (api, _ns) = setup().await;
    let err = create_err(
        &api,
        with_invoicing(json!({"replicas": 2, "autoscaling": {"maxReplicas": 3}})),
    )
    .await;
    assert!(
        err.contains("spec.invoicing.replicas")
            && err.contains("replicas and autoscaling are mutually exclusive"),
        "{err}"
    );
    let err = create_err(&api, with_invoicing(json!({"autoscaling": {"minReplicas": 2}}))).await;
    assert!(
        err.contains("spec.invoicing.autoscaling.maxReplicas") && err.contains("maxReplicas is required"),
        "{err}"
    );
    let err = create_err(
        &api,
        with_invoicing(json!({"autoscaling": {"minReplicas": 4, "maxReplicas": 3}})),
    )
    .await;
    assert!(
        err.contains("spec.invoicing.autoscaling.minReplicas")
            && err.contains("must not be greater than maxReplicas"),
        "{err}"
    );
    let err = create_err(
        &api,
        with_invoicing(json!({"autoscaling": {"external": true, "maxReplicas": 3}})),
    )
    .await;
    assert!(
        err.contains("with external true the operator does not scale this service"),
        "{err}"
    );
}

/// Before autoscaling, `replicas` had the schema default 1, so every stored object has it. Such an object
/// stays valid; `autoscaling` is accepted in the change that removes `replicas`, and refused beside it.
#[tokio::test]
async fn a_resource_stored_with_the_old_default_replicas_stays_valid_and_switches_by_removing_them() {
    let (api, _ns) = setup().await;
    let mut os = with_invoicing(json!({"replicas": 1}));
    os["spec"]["shipping"] = json!({"replicas": 1});
    os["spec"]["order"] = json!({"replicas": 1});
    api.create(&PostParams::default(), &to_os(os))
        .await
        .expect("create");
    patch(&api, "shop", json!({"spec": {"paused": true}}))
        .await
        .expect("an unrelated change of an object with stored replicas");
    let beside = patch(
        &api,
        "shop",
        json!({"spec": {"invoicing": {"autoscaling": {"external": true}}}}),
    )
    .await;
    assert_rejected(beside, "replicas and autoscaling are mutually exclusive");
    let switched = patch(
        &api,
        "shop",
        json!({"spec": {"invoicing": {"replicas": null, "autoscaling": {"external": true}}}}),
    )
    .await
    .expect("replicas removed and autoscaling added in one change");
    assert_eq!(switched.spec.invoicing.replicas, None);
    // A new object without replicas gets none from the schema: the operator runs 1.
    let created = api
        .create(&PostParams::default(), &to_os(minimal_json("fresh", "t2")))
        .await
        .expect("create");
    assert_eq!(created.spec.invoicing.replicas, None);
    assert_eq!(created.spec.order.replicas, None);
}

/// The order service has no `autoscaling` in the schema: kubectl's strict field validation refuses it.
#[tokio::test]
async fn the_order_service_cannot_be_autoscaled() {
    let (_api, ns) = setup().await;
    let mut os = minimal_json("shop", "t");
    os["metadata"]["namespace"] = ns.name.clone().into();
    os["spec"]["order"] = json!({"autoscaling": {"maxReplicas": 3}});
    let mut child = std::process::Command::new("kubectl")
        .args(["create", "--dry-run=server", "--validate=strict", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl runs (PATH from /tmp/ordersystem/env)");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(os.to_string().as_bytes())
            .expect("write the manifest");
    }
    let output = child.wait_with_output().expect("kubectl finishes");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "kubectl accepted order.autoscaling");
    assert!(
        stderr.contains("unknown field \"spec.order.autoscaling\""),
        "{stderr}"
    );
}
