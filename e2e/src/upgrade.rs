//! What the upgrade tests read of a running build: a pod's uid and image, the revision its `build_info`
//! metric reports, and the one operator pod of a tag.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use crate::cluster::is_ready;
use crate::metrics;
use crate::mode::Mode;

/// The revision a pod's `build_info` metric reports (the operator's or a service's).
pub async fn revision(mode: &Mode, pod: &Pod) -> Result<String, String> {
    let text = mode.service(pod).metrics().await?;
    ["ordersystem_build_info", "ordersystem_operator_build_info"]
        .iter()
        .find_map(|name| metrics::label(&text, name, "revision"))
        .ok_or_else(|| "no build_info metric".to_string())
}

/// A pod's uid.
///
/// # Panics
/// When the pod has none (one read from the API server always has).
pub fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().expect("a uid")
}

/// The image of a pod's first container; empty when it has no spec.
pub fn image(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers[0].image.clone())
        .unwrap_or_default()
}

/// The one operator pod in `pods`, once it is Ready, runs the image of `tag` and no other is left (a
/// terminating one included); otherwise the images of the pods there are.
pub async fn operator_pod(pods: &Api<Pod>, tag: &str) -> Result<Pod, String> {
    let list = pods
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?;
    match list.items.as_slice() {
        [pod] if is_ready(pod) && image(pod).ends_with(&format!(":{tag}")) => Ok(pod.clone()),
        all => Err(format!(
            "operator pods: {:?}",
            all.iter().map(image).collect::<Vec<_>>()
        )),
    }
}
