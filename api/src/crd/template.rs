//! `spec.<service>.template`: what a platform team sets on a service's pods, in the shape of Strimzi's
//! `template` (settings of the pod, and of the service's container). The operator's own settings stay:
//! the labels it selects by, the environment it wires the service with, the probes, the ports. What is
//! given here is added to them or, where a field says so, replaces the operator's default.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, LocalObjectReference, PodSecurityContext, SecurityContext, Toleration,
    TopologySpreadConstraint,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Customisation of the service's pods and of its container.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateSpec {
    /// Settings of the service's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodTemplate>,
    /// Settings of the service's container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerTemplate>,
}

/// Settings of a service's pods.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplate {
    /// Labels added to the pods. The operator's own (`app.kubernetes.io/name`, `instance`, `component`,
    /// `part-of`, `managed-by`) cannot be set here: Services, PodDisruptionBudgets and monitors select by
    /// them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations added to the pods (the operator's `ordersystem.io/*` ones excepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Nodes the pods may run on, by label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Taints the pods tolerate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Node and pod affinity of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// How the service's pods spread. When absent, its replicas spread across nodes
    /// (`kubernetes.io/hostname`, `maxSkew: 1`) where they can (`whenUnsatisfiable: ScheduleAnyway`), so a
    /// single node still runs them all; a list given here replaces that, and an empty list spreads nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,
    /// PriorityClass of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub priority_class_name: Option<String>,
    /// Secrets (in the resource's namespace) with the credentials to pull the service's image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    /// Replaces the operator's pod security context (non-root, uid and gid 65532, the runtime's seccomp
    /// profile). On OpenShift's restricted profile, which assigns the uid, give
    /// `{runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}`. Without `fsGroup`, the operator adds
    /// 65532 when certificates are mounted (their files are readable by that group only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<PodSecurityContext>,
}

/// Settings of a service's container.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerTemplate {
    /// Environment variables added to the container, e.g. `RUST_LOG` (`info` by default) or the services'
    /// tuning knobs (`services/README.md`). The ones the operator sets (the database, Kafka and listen
    /// settings) cannot be given here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<EnvVar>>,
    /// When the node pulls the image; Kubernetes' default when absent (`IfNotPresent` for a tag other than
    /// `latest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,
    /// Replaces the operator's container security context (no privilege escalation, a read-only root
    /// filesystem, no capabilities, non-root, the runtime's seccomp profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
}

/// Kubernetes' image pull policies.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ImagePullPolicy {
    Always,
    IfNotPresent,
    Never,
}
