//! `spec.tracing`: the standard OpenTelemetry variables that make a service export its spans to the
//! collector, named as the service and the pod it comes from.

use ordersystem_contract::wiring::env as otel;
use serde_json::{Value, json};

use crate::controller::validate::{ServicePlan, ValidSpec};

/// The container's tracing variables; none without `spec.tracing`, so a service exports nothing.
pub fn env(spec: &ValidSpec, plan: &ServicePlan) -> Vec<Value> {
    let Some(tracing) = &spec.tracing else {
        return Vec::new();
    };
    let mut env = vec![
        json!({"name": otel::OTEL_EXPORTER_OTLP_ENDPOINT, "value": tracing.otlp_endpoint}),
        json!({"name": otel::OTEL_EXPORTER_OTLP_PROTOCOL, "value": "http/protobuf"}),
        json!({"name": otel::OTEL_SERVICE_NAME, "value": plan.service.as_str()}),
        // Set before the attributes: `$(…)` reads only variables set above it.
        json!({"name": otel::OTEL_K8S_POD_NAME, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
        json!({"name": otel::OTEL_RESOURCE_ATTRIBUTES, "value": format!(
            "k8s.namespace.name={},k8s.deployment.name={},k8s.pod.name=$({}),service.namespace={}",
            spec.namespace, plan.child_name, otel::OTEL_K8S_POD_NAME, spec.name
        )}),
    ];
    if let Some(percent) = tracing.sample_percent.filter(|percent| *percent < 100) {
        env.push(json!({"name": otel::OTEL_TRACES_SAMPLER, "value": "parentbased_traceidratio"}));
        env.push(json!({"name": otel::OTEL_TRACES_SAMPLER_ARG, "value": format!("{:.2}", f64::from(percent) / 100.0)}));
    }
    env
}
