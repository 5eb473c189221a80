//! Every object of every file in examples/ is what the API server accepts and, for an OrderSystem, what the
//! operator accepts: each one passes a server-side dry run of a server-side apply with strict field
//! validation (an unknown or misplaced field is an error, not a dropped field), Strimzi's and CloudNativePG's
//! kinds against those projects' own CRDs (e2e/infra/example-crds.sh serves them; neither operator runs here),
//! and each admitted OrderSystem passes `validate`.
//! Needs the local control plane (`e2e/infra/up.sh`).

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use ordersystem_e2e::control_plane::TestNamespace;
use ordersystem_operator::crd::OrderSystem;
use serde::Deserialize;

/// Each example and the kinds of its objects, in order: a file that loses or gains an object fails here
/// until this list says so.
const EXAMPLES: &[(&str, &[&str])] = &[
    ("examples/shop.yaml", &["OrderSystem"]),
    ("examples/shop-cloudnative-pg.yaml", &["Cluster", "OrderSystem"]),
    (
        "examples/shop-strimzi.yaml",
        &[
            "KafkaNodePool",
            "Kafka",
            "KafkaUser",
            "KafkaUser",
            "KafkaUser",
            "KafkaUser",
            "OrderSystem",
        ],
    ),
];

/// The objects of a multi-document YAML file.
fn objects(path: &str, text: &str) -> Vec<DynamicObject> {
    serde_yaml::Deserializer::from_str(text)
        .map(|document| DynamicObject::deserialize(document).unwrap_or_else(|e| panic!("{path}: {e}")))
        .collect()
}

fn gvk(path: &str, object: &DynamicObject) -> GroupVersionKind {
    let types = object
        .types
        .as_ref()
        .unwrap_or_else(|| panic!("{path}: an object without apiVersion and kind"));
    let (group, version) = types
        .api_version
        .split_once('/')
        .unwrap_or(("", types.api_version.as_str()));
    GroupVersionKind::gvk(group, version, &types.kind)
}

#[tokio::test]
async fn every_example_passes_a_server_side_dry_run_and_the_operators_validation() {
    let client = ordersystem_e2e::kube::client().await;
    let ns = TestNamespace::create(&client, "examples").await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let apply = PatchParams::apply("ordersystem-examples-test")
        .dry_run()
        .validation_strict();
    for (path, kinds) in EXAMPLES {
        let text = std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        let objects = objects(path, &text);
        let found: Vec<String> = objects.iter().map(|o| gvk(path, o).kind).collect();
        assert_eq!(&found, kinds, "{path}: the kinds of its objects");
        for mut object in objects {
            let gvk = gvk(path, &object);
            let name = object
                .metadata
                .name
                .clone()
                .unwrap_or_else(|| panic!("{path}: a {} without a name", gvk.kind));
            let what = format!("{path}: {} {name}", gvk.kind);
            let (resource, _) = kube::discovery::pinned_kind(&client, &gvk)
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "{what}: the API server does not serve {}/{} {} ({e}); e2e/infra/example-crds.sh \
                         installs the CRDs of the examples' other operators",
                        gvk.group, gvk.version, gvk.kind
                    )
                });
            // The examples say `kubectl -n <namespace> apply`: none names a namespace of its own.
            assert_eq!(object.metadata.namespace, None, "{what}: names a namespace");
            object.metadata.namespace = Some(ns.name.clone());
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name, &resource);
            let admitted = api
                .patch(&name, &apply, &Patch::Apply(&object))
                .await
                .unwrap_or_else(|e| panic!("{what}: the API server refuses it: {e}"));
            if gvk.kind == "OrderSystem" {
                let value = serde_json::to_value(&admitted).expect("serialize");
                let os: OrderSystem = serde_json::from_value(value).unwrap_or_else(|e| panic!("{what}: {e}"));
                if let Err(invalid) = ordersystem_operator::controller::validate::validate(&os) {
                    panic!("{what}: the operator refuses it: {invalid}");
                }
            }
        }
    }
    // Nothing was stored: every request above was a dry run.
    let stored = Api::<OrderSystem>::namespaced(client.clone(), &ns.name)
        .list(&Default::default())
        .await
        .expect("list");
    assert!(stored.items.is_empty(), "a dry run stored an OrderSystem");
}
