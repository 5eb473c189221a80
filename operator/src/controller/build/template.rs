//! A service's `template` (placement, pull secrets, labels, annotations, environment, security contexts)
//! laid over the pod template `build_deployment` made, and the placement the operator gives by default.

use serde_json::{Value, json};

use super::super::validate::{ServicePlan, ValidSpec};
use crate::names;

/// The default spread: a service's replicas across nodes where they can, all on one node where not.
pub fn default_spread(spec: &ValidSpec, plan: &ServicePlan) -> Value {
    json!([{
        "maxSkew": 1,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": names::selector_labels(&spec.name, plan.service)},
    }])
}

/// Lays `plan.template` over `template`, the Deployment's pod template. `validate` has refused what it
/// may not set (the operator's labels, annotations and environment), so nothing here is overwritten that
/// the operator relies on.
pub fn apply(template: &mut Value, spec: &ValidSpec, plan: &ServicePlan) {
    let pod = plan.template.pod.clone().unwrap_or_default();
    let container = plan.template.container.clone().unwrap_or_default();
    for (key, value) in pod.labels.unwrap_or_default() {
        template["metadata"]["labels"][key] = json!(value);
    }
    for (key, value) in pod.annotations.unwrap_or_default() {
        template["metadata"]["annotations"][key] = json!(value);
    }
    let pod_spec = &mut template["spec"];
    match pod.topology_spread_constraints {
        None => pod_spec["topologySpreadConstraints"] = default_spread(spec, plan),
        Some(list) if list.is_empty() => {}
        Some(list) => pod_spec["topologySpreadConstraints"] = json!(list),
    }
    if let Some(selector) = pod.node_selector {
        pod_spec["nodeSelector"] = json!(selector);
    }
    if let Some(tolerations) = pod.tolerations {
        pod_spec["tolerations"] = json!(tolerations);
    }
    if let Some(affinity) = pod.affinity {
        pod_spec["affinity"] = json!(affinity);
    }
    if let Some(class) = pod.priority_class_name {
        pod_spec["priorityClassName"] = json!(class);
    }
    if let Some(secrets) = pod.image_pull_secrets {
        pod_spec["imagePullSecrets"] = json!(secrets);
    }
    if let Some(context) = pod.security_context {
        pod_spec["securityContext"] = json!(context);
    }
    let main = &mut pod_spec["containers"][0];
    if let Some(env) = container.env
        && let Some(list) = main["env"].as_array_mut()
    {
        list.extend(env.into_iter().map(|var| json!(var)));
    }
    if let Some(policy) = container.image_pull_policy {
        main["imagePullPolicy"] = json!(policy);
    }
    if let Some(context) = container.security_context {
        main["securityContext"] = json!(context);
    }
}
