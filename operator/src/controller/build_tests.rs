use super::*;
use crate::controller::validate::{tests::*, validate};

fn observed_all_ready(spec: &ValidSpec) -> Observed {
    Observed {
        secret_hashes: spec
            .services
            .iter()
            .map(|p| (p.service, format!("hash-{}", p.service.as_str())))
            .collect(),
        // With SASL every service has its identity Secret.
        kafka_secret_hashes: match spec.kafka_security.sasl {
            Some(_) => Service::ALL
                .into_iter()
                .map(|s| (s, format!("kafka-{}", s.as_str())))
                .collect(),
            None => BTreeMap::new(),
        },
        topic_ready: true,
        schemas_ready: Service::ALL.into_iter().collect(),
        deployed: Service::ALL.into_iter().collect(),
        postgres_port: Some(5432),
    }
}

fn env_of(d: &Deployment) -> BTreeMap<String, k8s_openapi::api::core::v1::EnvVar> {
    let spec = d
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec");
    spec.containers[0]
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.name.clone(), e))
        .collect()
}

/// The names of the Deployments `build` made.
fn deployment_names(desired: &Desired) -> Vec<String> {
    desired
        .deployments
        .iter()
        .filter_map(|d| d.metadata.name.clone())
        .collect()
}

fn deployment<'a>(desired: &'a Desired, name: &str) -> &'a Deployment {
    desired
        .deployments
        .iter()
        .find(|d| d.metadata.name.as_deref() == Some(name))
        .expect("deployment built")
}

#[test]
fn deployments_carry_replicas_env_from_secrets_and_owner() {
    let spec = validate(&os_from_yaml(MINIMAL)).expect("valid");
    let desired = build(&spec, &observed_all_ready(&spec));
    let invoicing = deployment(&desired, "shop-invoicing");
    assert_eq!(invoicing.spec.as_ref().and_then(|s| s.replicas), Some(2));
    assert_eq!(
        invoicing
            .metadata
            .owner_references
            .as_ref()
            .map(|o| o[0].uid.as_str()),
        Some("0b7c-uid")
    );
    let env = env_of(invoicing);
    let password = env[env::DATABASE_PASSWORD]
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref())
        .expect("secretKeyRef");
    assert_eq!(
        (password.name.as_str(), password.key.as_str()),
        ("shop-invoicing-db", "password")
    );
    assert!(
        env.values()
            .all(|e| e.name != env::DATABASE_PASSWORD || e.value.is_none()),
        "no literal password"
    );
    assert_eq!(
        env[env::KAFKA_GROUP_ID].value.as_deref(),
        Some("shopns.shop.invoicing")
    );
    assert_eq!(env[env::KAFKA_TOPIC].value.as_deref(), Some("orders"));
    assert_eq!(env[env::LISTEN_ADDR].value.as_deref(), Some("0.0.0.0:8080"));
    assert!(!env_of(deployment(&desired, "shop-order")).contains_key(env::KAFKA_GROUP_ID));
}

/// The image says which revision it is; a pod's environment must not say otherwise.
#[test]
fn no_pod_sets_the_build_revision_its_image_carries() {
    let spec = validate(&os_from_yaml(MINIMAL)).expect("valid");
    let desired = build(&spec, &observed_all_ready(&spec));
    for d in &desired.deployments {
        assert!(
            !env_of(d).contains_key(ordersystem_contract::build::REVISION_ENV),
            "{:?} sets {}",
            d.metadata.name,
            ordersystem_contract::build::REVISION_ENV
        );
    }
}

#[test]
fn every_service_keeps_serving_a_moment_after_it_is_told_to_stop() {
    let spec = validate(&os_from_yaml(MINIMAL)).expect("valid");
    let desired = build(&spec, &observed_all_ready(&spec));
    for name in ["shop-order", "shop-invoicing", "shop-shipping"] {
        let pod = deployment(&desired, name)
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod template");
        let sleep = pod.containers[0]
            .lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.as_ref())
            .and_then(|h| h.sleep.as_ref())
            .map(|s| s.seconds);
        assert_eq!(sleep, Some(PRE_STOP_SECONDS), "{name}: preStop sleep");
        let grace = pod.termination_grace_period_seconds.unwrap_or(30);
        assert!(
            grace > PRE_STOP_SECONDS + 10,
            "{name}: the grace period leaves time to finish after the sleep"
        );
    }
}

#[test]
fn pod_template_is_restricted_probed_and_hashed() {
    let spec = validate(&os_from_yaml(MINIMAL)).expect("valid");
    let desired = build(&spec, &observed_all_ready(&spec));
    let template = &deployment(&desired, "shop-order")
        .spec
        .as_ref()
        .expect("spec")
        .template;
    let annotations = template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref())
        .expect("annotations");
    assert_eq!(annotations[names::SECRET_HASH_ANNOTATION], "hash-order");
    let pod = template.spec.as_ref().expect("pod spec");
    assert_eq!(
        pod.security_context.as_ref().and_then(|s| s.run_as_non_root),
        Some(true)
    );
    let container = &pod.containers[0];
    let sc = container
        .security_context
        .as_ref()
        .expect("container securityContext");
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
        Some(vec!["ALL".to_string()])
    );
    let path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
    };
    assert_eq!(
        path(&container.liveness_probe).as_deref(),
        Some(wiring::HEALTHZ_PATH)
    );
    assert_eq!(
        path(&container.readiness_probe).as_deref(),
        Some(wiring::READYZ_PATH)
    );
}

#[test]
fn a_secret_change_changes_only_that_services_template() {
    let spec = validate(&os_from_yaml(MINIMAL)).expect("valid");
    let before = build(&spec, &observed_all_ready(&spec));
    let mut observed = observed_all_ready(&spec);
    observed.secret_hashes.insert(Service::Shipping, "rotated".into());
    let after = build(&spec, &observed);
    for name in ["shop-order", "shop-invoicing", "shop-shipping"] {
        let changed = deployment(&before, name).spec != deployment(&after, name).spec;
        assert_eq!(changed, name == "shop-shipping", "{name}");
    }
}

#[test]
fn a_kafka_identity_secret_change_rolls_only_that_service_and_plaintext_templates_carry_no_kafka_hash() {
    let plain = validate(&os_from_yaml(MINIMAL)).expect("valid");
    let desired = build(&plain, &observed_all_ready(&plain));
    let kafka_hash = |desired: &Desired, name: &str| {
        deployment(desired, name)
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(names::KAFKA_SECRET_HASH_ANNOTATION).cloned())
    };
    assert_eq!(kafka_hash(&desired, "shop-order"), None);

    let mut observed = observed_all_ready(&plain);
    observed.kafka_secret_hashes = Service::ALL
        .into_iter()
        .map(|s| (s, format!("kafka-{}", s.as_str())))
        .collect();
    let before = build(&plain, &observed);
    assert_eq!(
        kafka_hash(&before, "shop-invoicing").as_deref(),
        Some("kafka-invoicing")
    );
    observed
        .kafka_secret_hashes
        .insert(Service::Invoicing, "edited".into());
    let after = build(&plain, &observed);
    for name in ["shop-order", "shop-invoicing", "shop-shipping"] {
        let changed = deployment(&before, name).spec != deployment(&after, name).spec;
        assert_eq!(changed, name == "shop-invoicing", "{name}");
    }
    assert_eq!(kafka_hash(&after, "shop-invoicing").as_deref(), Some("edited"));
}

#[test]
fn pdbs_exist_only_from_two_replicas() {
    let spec = validate(&os_from_yaml(MINIMAL)).expect("valid");
    let desired = build(&spec, &observed_all_ready(&spec));
    let pdbs: Vec<_> = desired
        .pdbs
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    assert_eq!(pdbs, vec!["shop-invoicing"]);
    let max = desired.pdbs[0]
        .spec
        .as_ref()
        .and_then(|s| s.max_unavailable.clone());
    assert_eq!(
        max,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );
    let pdbs_to_delete: Vec<_> = desired
        .to_delete
        .iter()
        .filter(|(kind, _)| *kind == Removable::PodDisruptionBudget)
        .map(|(_, name)| name.as_str())
        .collect();
    assert_eq!(pdbs_to_delete, vec!["shop-shipping", "shop-order"]);
}

#[test]
fn first_rollout_waits_for_topic_then_schemas_then_consumers() {
    let spec = validate(&os_from_yaml(MINIMAL)).expect("valid");
    let nothing = build(&spec, &Observed::default());
    assert!(nothing.deployments.is_empty());
    assert!(nothing.waiting.iter().all(|(_, r)| *r == Reason::WaitingForTopic));

    let mut observed = observed_all_ready(&spec);
    observed.deployed.clear();
    let first = build(&spec, &observed);
    let names: Vec<_> = first
        .deployments
        .iter()
        .filter_map(|d| d.metadata.name.clone())
        .collect();
    assert_eq!(names, vec!["shop-invoicing", "shop-shipping"]);
    assert_eq!(first.waiting, vec![(Service::Order, Reason::WaitingForConsumers)]);

    // Once deployed, a service is never gated again, even when its backend is not ready.
    let mut later = observed_all_ready(&spec);
    later.topic_ready = false;
    later.schemas_ready.clear();
    assert_eq!(build(&spec, &later).deployments.len(), 3);
}

#[test]
fn a_deployed_service_whose_secret_hash_is_unknown_keeps_its_deployment_untouched() {
    let spec = validate(&os_from_yaml(MINIMAL)).expect("valid");
    let mut observed = observed_all_ready(&spec);
    observed.secret_hashes.remove(&Service::Shipping);
    let desired = build(&spec, &observed);
    // No template with an empty hash, which would roll shipping's pods for nothing.
    assert_eq!(deployment_names(&desired), vec!["shop-invoicing", "shop-order"]);
    assert!(desired.waiting.is_empty(), "deployed services never wait again");
}

#[test]
fn with_sasl_a_deployed_service_whose_kafka_identity_hash_is_unknown_keeps_its_deployment_untouched() {
    let spec = validate(&os_from_yaml(&with_scram(MINIMAL))).expect("valid");
    let mut observed = observed_all_ready(&spec);
    observed.kafka_secret_hashes.remove(&Service::Order);
    let desired = build(&spec, &observed);
    // No template without the Kafka hash, which would roll order's pods for nothing.
    assert_eq!(
        deployment_names(&desired),
        vec!["shop-invoicing", "shop-shipping"]
    );
    assert!(desired.waiting.is_empty(), "deployed services never wait again");
}

#[test]
fn services_and_service_accounts_are_built_for_every_service() {
    let spec = validate(&os_from_yaml(MINIMAL)).expect("valid");
    let desired = build(&spec, &Observed::default());
    assert_eq!(desired.services.len(), 3);
    assert_eq!(desired.service_accounts.len(), 3);
    let svc = &desired.services[0];
    let selector = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .expect("selector");
    assert_eq!(selector, names::selector_labels("shop", Service::Invoicing));
    assert_eq!(
        desired.service_accounts[0].automount_service_account_token,
        Some(false)
    );
}

/// MINIMAL with every certificate and identity a service can be given: Kafka TLS with a client
/// certificate, SCRAM, and PostgreSQL verified against its CA.
fn secured() -> String {
    MINIMAL
        .replace(
            "    bootstrapServers: kafka:9092\n",
            "    bootstrapServers: kafka:9093\n    tls: {caSecretRef: {name: kafka-ca}, clientCertificateSecretRef: {name: kafka-client}}\n    sasl: {mechanism: SCRAM-SHA-512, credentialsSecretRef: {name: kafka-admin}}\n",
        )
        .replace(
            "{adminSecretRef: {name: pg-admin}}",
            "{adminSecretRef: {name: pg-admin}, sslMode: verify-full, caSecretRef: {name: pg-ca}}",
        )
}

#[test]
fn secured_backends_mount_the_certificates_and_give_each_service_its_own_kafka_identity() {
    let yaml = secured();
    let spec = validate(&os_from_yaml(&yaml)).expect("valid");
    let desired = build(&spec, &observed_all_ready(&spec));
    let shipping = deployment(&desired, "shop-shipping");
    let env = env_of(shipping);
    let value = |name: &str| env[name].value.clone().unwrap_or_default();
    assert_eq!(value(env::KAFKA_SECURITY_PROTOCOL), "sasl_ssl");
    assert_eq!(value(env::KAFKA_SASL_MECHANISM), "SCRAM-SHA-512");
    assert_eq!(
        value(env::KAFKA_SSL_CA_LOCATION),
        "/etc/ordersystem/kafka-ca/ca.crt"
    );
    assert_eq!(
        value(env::KAFKA_SSL_KEY_LOCATION),
        "/etc/ordersystem/kafka-client/tls.key"
    );
    assert_eq!(
        value(env::DATABASE_SSLROOTCERT),
        "/etc/ordersystem/postgres-ca/ca.crt"
    );
    for key in [env::KAFKA_SASL_USERNAME, env::KAFKA_SASL_PASSWORD] {
        let reference = env[key]
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
            .expect("the Kafka identity comes from a secretKeyRef");
        assert_eq!(reference.name, "shop-shipping-kafka");
        assert!(env[key].value.is_none(), "no literal {key}");
    }
    let pod = shipping
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec");
    let volumes: Vec<_> = pod
        .volumes
        .iter()
        .flatten()
        .map(|v| {
            v.secret
                .as_ref()
                .and_then(|s| s.secret_name.clone())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(volumes, ["kafka-ca", "kafka-client", "pg-ca"]);
    // Only the keys the services read: a CA Secret's private key (if it has one) stays out of the pod.
    let projected: Vec<Vec<String>> = pod
        .volumes
        .iter()
        .flatten()
        .map(|v| {
            v.secret
                .as_ref()
                .and_then(|s| s.items.clone())
                .unwrap_or_default()
                .into_iter()
                .map(|item| item.key)
                .collect()
        })
        .collect();
    assert_eq!(
        projected,
        [vec!["ca.crt"], vec!["tls.crt", "tls.key"], vec!["ca.crt"]]
    );
    let mounts = pod.containers[0].volume_mounts.clone().unwrap_or_default();
    assert!(mounts.iter().all(|m| m.read_only == Some(true)) && mounts.len() == 3);
    assert_eq!(
        pod.security_context.as_ref().and_then(|s| s.fs_group),
        Some(65532)
    );
}

#[test]
fn a_plaintext_system_has_no_security_env_and_no_volumes() {
    let spec = validate(&os_from_yaml(MINIMAL)).expect("valid");
    let desired = build(&spec, &observed_all_ready(&spec));
    let order = deployment(&desired, "shop-order");
    let env = env_of(order);
    assert!(!env.contains_key(env::KAFKA_SECURITY_PROTOCOL));
    assert!(!env.contains_key(env::KAFKA_SASL_PASSWORD));
    let pod = order
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec");
    assert!(pod.volumes.is_none());
}

/// A shipping `template` with every field.
const TEMPLATED: &str = r#"
  shipping:
    template:
      pod:
        labels: {team: platform}
        annotations: {example.com/owner: team-a}
        nodeSelector: {disk: ssd}
        tolerations: [{key: dedicated, operator: Equal, value: shop, effect: NoSchedule}]
        affinity:
          nodeAffinity:
            requiredDuringSchedulingIgnoredDuringExecution:
              nodeSelectorTerms: [{matchExpressions: [{key: zone, operator: In, values: [a]}]}]
        topologySpreadConstraints: []
        priorityClassName: shop-critical
        imagePullSecrets: [{name: mirror}]
        securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
      container:
        env: [{name: RUST_LOG, value: debug}, {name: OUTBOX_POLL_MS, value: "50"}]
        imagePullPolicy: Always
        securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
"#;

fn pod_spec(d: &Deployment) -> &k8s_openapi::api::core::v1::PodSpec {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec")
}

#[test]
fn a_template_reaches_the_pods_of_its_service_only() {
    let spec = validate(&os_from_yaml(&format!("{MINIMAL}{TEMPLATED}"))).expect("valid");
    let desired = build(&spec, &observed_all_ready(&spec));
    let shipping = deployment(&desired, "shop-shipping");
    let meta = &shipping.spec.as_ref().expect("spec").template.metadata;
    let labels = meta.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
    assert_eq!(labels.get("team").map(String::as_str), Some("platform"));
    assert_eq!(
        labels.get(names::COMPONENT_LABEL).map(String::as_str),
        Some("shipping"),
        "the operator's labels stay"
    );
    let annotations = meta
        .as_ref()
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    assert_eq!(
        annotations.get("example.com/owner").map(String::as_str),
        Some("team-a")
    );
    assert!(annotations.contains_key(names::SECRET_HASH_ANNOTATION));
    let pod = pod_spec(shipping);
    assert_eq!(
        pod.node_selector
            .as_ref()
            .and_then(|s| s.get("disk"))
            .map(String::as_str),
        Some("ssd")
    );
    assert_eq!(pod.tolerations.as_ref().map(Vec::len), Some(1));
    assert!(
        pod.affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .is_some()
    );
    assert_eq!(
        pod.topology_spread_constraints, None,
        "an empty list spreads nothing"
    );
    assert_eq!(pod.priority_class_name.as_deref(), Some("shop-critical"));
    assert_eq!(
        pod.image_pull_secrets.as_ref().map(|s| s[0].name.as_str()),
        Some("mirror")
    );
    let context = pod.security_context.as_ref().expect("a pod security context");
    assert_eq!(
        context.run_as_user, None,
        "replaced whole: no uid of the operator's"
    );
    let container = &pod.containers[0];
    assert_eq!(container.image_pull_policy.as_deref(), Some("Always"));
    let env = env_of(shipping);
    assert_eq!(env["RUST_LOG"].value.as_deref(), Some("debug"));
    assert_eq!(env["OUTBOX_POLL_MS"].value.as_deref(), Some("50"));
    assert!(
        env.contains_key(env::DATABASE_PASSWORD),
        "the operator's env stays"
    );
    assert_eq!(
        container
            .security_context
            .as_ref()
            .and_then(|c| c.run_as_non_root),
        None,
        "replaced whole"
    );
    // The other services keep the operator's defaults.
    let order = pod_spec(deployment(&desired, "shop-order"));
    assert_eq!(order.priority_class_name, None);
    assert_eq!(
        order.security_context.as_ref().and_then(|c| c.run_as_user),
        Some(65532)
    );
}

#[test]
fn without_a_template_replicas_spread_across_nodes_where_they_can_and_requests_are_small() {
    let spec = validate(&os_from_yaml(MINIMAL)).expect("valid");
    let desired = build(&spec, &observed_all_ready(&spec));
    for d in &desired.deployments {
        let pod = pod_spec(d);
        let spread = pod
            .topology_spread_constraints
            .as_ref()
            .expect("a default spread");
        assert_eq!(
            (
                spread[0].topology_key.as_str(),
                spread[0].when_unsatisfiable.as_str(),
                spread[0].max_skew
            ),
            ("kubernetes.io/hostname", "ScheduleAnyway", 1)
        );
        let selected = spread[0]
            .label_selector
            .as_ref()
            .and_then(|s| s.match_labels.clone())
            .unwrap_or_default();
        let labels = d
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        assert!(
            selected.iter().all(|(k, v)| labels.get(k) == Some(v)),
            "the spread selects the service's own pods"
        );
        let resources = pod.containers[0].resources.as_ref().expect("resources");
        let requests = resources.requests.clone().unwrap_or_default();
        assert_eq!(requests.get("cpu").map(|q| q.0.as_str()), Some("25m"));
        assert!(
            !resources.limits.clone().unwrap_or_default().contains_key("cpu"),
            "no CPU limit"
        );
    }
}

/// The list a user's env is checked against holds every variable the operator sets, TLS, SASL and the
/// public URLs included.
#[test]
fn every_variable_the_operator_sets_is_one_a_template_may_not_set() {
    let published = "  expose:\n    ingress: {}\n    order: {host: shop.example.com}\n    invoicing: {host: inv.example.com}\n    shipping: {host: ship.example.com}\n";
    let yaml = format!("{}{published}", secured());
    let spec = validate(&os_from_yaml(&yaml)).expect("valid");
    let desired = build(&spec, &observed_all_ready(&spec));
    for d in &desired.deployments {
        for name in env_of(d).keys() {
            assert!(
                env::SET_BY_OPERATOR.contains(&name.as_str()),
                "{name} is set by the operator but missing from wiring::env::SET_BY_OPERATOR"
            );
        }
    }
}

#[test]
fn a_template_may_not_set_the_operators_labels_annotations_or_env() {
    let yaml = format!(
        "{MINIMAL}  order:\n    template:\n      pod:\n        labels: {{app.kubernetes.io/component: x}}\n        annotations: {{ordersystem.io/secret-hash: x}}\n      container:\n        env: [{{name: DATABASE_PASSWORD, value: x}}]\n"
    );
    let problems = validate(&os_from_yaml(&yaml)).expect_err("refused").to_string();
    for expected in [
        "spec.order.template.pod.labels sets app.kubernetes.io/component",
        "spec.order.template.pod.annotations sets ordersystem.io/secret-hash",
        "spec.order.template.container.env sets DATABASE_PASSWORD, which the operator sets itself",
    ] {
        assert!(problems.contains(expected), "{expected} in: {problems}");
    }
}

#[test]
fn tracing_names_each_service_its_collector_pod_and_sampler_and_is_absent_without_it() {
    let untraced = validate(&os_from_yaml(MINIMAL)).expect("valid");
    for d in &build(&untraced, &observed_all_ready(&untraced)).deployments {
        assert!(
            env_of(d).keys().all(|name| !name.starts_with("OTEL_")),
            "no tracing without spec.tracing"
        );
    }
    let yaml = format!(
        "{MINIMAL}  tracing: {{otlpEndpoint: \"http://collector.observability:4318\", samplePercent: 25}}\n"
    );
    let spec = validate(&os_from_yaml(&yaml)).expect("valid");
    let desired = build(&spec, &observed_all_ready(&spec));
    for service in Service::ALL {
        let d = deployment(&desired, &format!("shop-{}", service.as_str()));
        let env = env_of(d);
        let value = |name: &str| env[name].value.clone();
        assert_eq!(
            value(env::OTEL_EXPORTER_OTLP_ENDPOINT).as_deref(),
            Some("http://collector.observability:4318")
        );
        assert_eq!(
            value(env::OTEL_EXPORTER_OTLP_PROTOCOL).as_deref(),
            Some("http/protobuf")
        );
        assert_eq!(value(env::OTEL_SERVICE_NAME).as_deref(), Some(service.as_str()));
        assert_eq!(
            value(env::OTEL_RESOURCE_ATTRIBUTES),
            Some(format!(
                "k8s.namespace.name=shopns,k8s.deployment.name=shop-{},k8s.pod.name=$(OTEL_K8S_POD_NAME),service.namespace=shop",
                service.as_str()
            ))
        );
        let pod_name = env[env::OTEL_K8S_POD_NAME]
            .value_from
            .as_ref()
            .and_then(|from| from.field_ref.as_ref());
        assert_eq!(
            pod_name.map(|field| field.field_path.as_str()),
            Some("metadata.name")
        );
        // `$(OTEL_K8S_POD_NAME)` is expanded only when the variable comes first.
        let order: Vec<String> = pod_spec(d).containers[0]
            .env
            .iter()
            .flatten()
            .map(|e| e.name.clone())
            .collect();
        let position = |name: &str| order.iter().position(|n| n == name);
        assert!(position(env::OTEL_K8S_POD_NAME) < position(env::OTEL_RESOURCE_ATTRIBUTES));
        assert_eq!(
            value(env::OTEL_TRACES_SAMPLER).as_deref(),
            Some("parentbased_traceidratio")
        );
        assert_eq!(value(env::OTEL_TRACES_SAMPLER_ARG).as_deref(), Some("0.25"));
    }
    let everything = yaml.replace("samplePercent: 25", "samplePercent: 100");
    let spec = validate(&os_from_yaml(&everything)).expect("valid");
    let env = env_of(deployment(
        &build(&spec, &observed_all_ready(&spec)),
        "shop-order",
    ));
    assert!(env.contains_key(env::OTEL_EXPORTER_OTLP_ENDPOINT));
    assert!(
        !env.contains_key(env::OTEL_TRACES_SAMPLER),
        "100 % is the default sampler's"
    );
}
