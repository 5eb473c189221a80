//! The one versions file drives the k8s-openapi feature and the kind node image.

use ordersystem_e2e::versions::{compiled_kubernetes_minor, minor_of, pinned};

#[test]
fn compiled_kubernetes_version_matches_versions_file() {
    let pinned = pinned();
    let k8s = &pinned["KUBERNETES_VERSION"];
    assert_eq!(
        minor_of(k8s),
        Some(compiled_kubernetes_minor()),
        "versions.env pins Kubernetes {k8s}, but k8s-openapi is compiled with feature v1_{}: change the feature in \
         the workspace Cargo.toml",
        compiled_kubernetes_minor()
    );
}

#[test]
fn kind_node_image_follows_versions_file() {
    let pinned = pinned();
    let kind_config = include_str!("../../kind-config.yaml");
    let image = &pinned["KIND_NODE_IMAGE"];
    assert!(
        kind_config.contains(&format!("image: {image}\n")),
        "kind-config.yaml must use the node image {image} from versions.env"
    );
    assert!(
        image.ends_with(&pinned["KUBERNETES_VERSION"]),
        "KIND_NODE_IMAGE must be tagged with KUBERNETES_VERSION"
    );
}
