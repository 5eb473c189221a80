//! validate (pure, no client): turns an `OrderSystem` into the `ValidSpec` every later step consumes, or
//! says why it cannot be reconciled. Checks only what the CRD schema and CEL rules cannot express; an
//! invalid spec is reported in status and waits for a change, it is not retried.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};

use super::autoscale::Scaling;
use crate::crd::{
    AutoscalingSpec, CleanupPolicy, DeletionPolicy, ExposeSpec, KafkaSasl, KafkaTls, MAX_NAME_LEN,
    NetworkPolicySpec, OrderSystem, PublicEndpoint, SaslMechanism, ServiceCredentials, SslMode, TemplateSpec,
    TracingSpec,
};
use crate::names::{self, Service, ServiceImages};
use ordersystem_contract::wiring::env;

/// A spec that passed validation: the single input of the backends and of `build`.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidSpec {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub owner: OwnerReference,
    pub bootstrap_servers: String,
    /// TLS and SASL of every Kafka client, the operator's and the services'.
    pub kafka_security: KafkaSecuritySpec,
    pub topic: ValidTopic,
    pub admin_secret: String,
    pub ssl_mode: SslMode,
    /// Secret with the CA certificate of the Postgres server, for `verify-ca` and `verify-full`.
    pub postgres_ca_secret: Option<String>,
    pub services: Vec<ServicePlan>,
    pub deletion_policy: DeletionPolicy,
    pub paused: bool,
    /// The owner recorded on schemas and roles this resource may take over (`ordersystem.io/adopt-from`).
    pub adopt_from: Option<String>,
    /// `spec.expose`: no two services at one host and path.
    pub expose: Option<ExposeSpec>,
    pub network_policy: Option<NetworkPolicySpec>,
    /// `spec.tracing`: the collector the services export spans to.
    pub tracing: Option<TracingSpec>,
}

/// The topic as the spec wants it.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidTopic {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: Option<i32>,
    /// Every config we manage, `cleanup.policy` included.
    pub configs: BTreeMap<String, String>,
}

/// One service: its workload and its names in Kubernetes, Postgres and Kafka.
#[derive(Clone, Debug, PartialEq)]
pub struct ServicePlan {
    pub service: Service,
    /// The replicas to write: the spec's, or (autoscaled) what `decide` decided. In external mode only
    /// reported: `build` leaves the field to the external autoscaler.
    pub replicas: i32,
    /// Who decides `replicas`.
    pub scaling: Scaling,
    pub image: String,
    pub resources: Option<ResourceRequirements>,
    /// `spec.<service>.template`, checked by [`check_template`].
    pub template: TemplateSpec,
    pub child_name: String,
    pub secret_name: String,
    /// Secret with the service's own Kafka identity (used when `kafka.sasl` is set).
    pub kafka_secret_name: String,
    /// The service's Kafka user (created by the operator with a SCRAM mechanism).
    pub kafka_user: String,
    /// Schema and role share one name.
    pub db_identifier: String,
    pub group_id: Option<String>,
}

impl ValidSpec {
    /// The consumer services with their group ids.
    pub fn consumer_groups(&self) -> Vec<(Service, String)> {
        self.services
            .iter()
            .filter_map(|plan| Some((plan.service, plan.group_id.clone()?)))
            .collect()
    }

    /// `<namespace>/<name>`: how ownership records and topic claims name the resource.
    pub fn qualified_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The public endpoint of `service`, when `spec.expose` publishes it.
    pub fn endpoint(&self, service: Service) -> Option<&PublicEndpoint> {
        endpoint(self.expose.as_ref()?, service)
    }

    /// The URL people reach `service` at, when it is published.
    pub fn public_url(&self, service: Service) -> Option<String> {
        let expose = self.expose.as_ref()?;
        let tls = expose.https
            || expose
                .ingress
                .as_ref()
                .is_some_and(|i| i.tls_secret_name.is_some());
        Some(self.endpoint(service)?.url(if tls { "https" } else { "http" }))
    }

    /// The distinct ports of the bootstrap servers, in order.
    pub fn kafka_ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self
            .bootstrap_servers
            .split(',')
            .filter_map(|server| server.trim().rsplit_once(':')?.1.parse().ok())
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    pub fn plan(&self, service: Service) -> &ServicePlan {
        // `validate` always fills all three services.
        self.services
            .iter()
            .find(|p| p.service == service)
            .expect("every service is planned")
    }
}

/// TLS and SASL as the spec asks for them (validated: PLAIN only with TLS).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KafkaSecuritySpec {
    pub tls: Option<KafkaTls>,
    pub sasl: Option<KafkaSasl>,
}

impl KafkaSecuritySpec {
    /// librdkafka's `security.protocol`.
    pub fn protocol(&self) -> &'static str {
        match (self.tls.is_some(), self.sasl.is_some()) {
            (false, false) => "plaintext",
            (true, false) => "ssl",
            (false, true) => "sasl_plaintext",
            (true, true) => "sasl_ssl",
        }
    }

    /// The mechanism when the operator gives every service its own SCRAM user and ACLs.
    pub fn scram(&self) -> Option<SaslMechanism> {
        let sasl = self.sasl.as_ref()?;
        (sasl.mechanism.is_scram() && sasl.service_credentials == ServiceCredentials::Operator)
            .then_some(sasl.mechanism)
    }

    /// The services' Kafka users and their Secrets are the user's to create: always with PLAIN, and with
    /// SCRAM under `serviceCredentials: Provided`.
    pub fn provided_credentials(&self) -> bool {
        self.sasl.is_some() && self.scram().is_none()
    }
}

/// Why a spec cannot be reconciled; shown as `Ready=False reason=InvalidSpec`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidSpec {
    pub problems: Vec<String>,
}

impl std::fmt::Display for InvalidSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.problems.join("; "))
    }
}

/// [`validate_with`] the project's registry and the tag of the images this operator was released with, as
/// when it runs without `--image-registry` and `--default-image-tag`.
pub fn validate(os: &OrderSystem) -> Result<ValidSpec, InvalidSpec> {
    validate_with(os, &ServiceImages::default())
}

/// `images` names the project's images: their registry, and the tag for a service deployed for the first
/// time (see [`decide_image`]).
/// Long on purpose: one list of checks, each collecting its problem, so every problem is reported at once.
pub fn validate_with(os: &OrderSystem, images: &ServiceImages) -> Result<ValidSpec, InvalidSpec> {
    let mut problems = Vec::new();
    let name = os.name_any();
    let namespace = os.namespace().unwrap_or_default();
    if namespace.is_empty() {
        problems.push("the resource has no namespace".to_string());
    }
    if name.len() > MAX_NAME_LEN {
        problems.push(format!("metadata.name is longer than {MAX_NAME_LEN} characters"));
    }
    let owner = os.controller_owner_ref(&());
    if owner.is_none() {
        problems.push("the resource has no uid yet".to_string());
    }
    let spec = &os.spec;
    check_bootstrap(&spec.kafka.bootstrap_servers, &mut problems);
    let topic = &spec.kafka.topic;
    if topic.config.contains_key("cleanup.policy") {
        problems.push("cleanup.policy is not allowed in config; use cleanupPolicy".to_string());
    }
    for key in topic.config.keys() {
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
        {
            problems.push(format!("config key {key:?} is not a Kafka config name"));
        }
    }
    if topic.cleanup_policy == CleanupPolicy::Compact && topic.config.contains_key("retention.ms") {
        problems
            .push("retention.ms has no effect with cleanupPolicy compact; use compact,delete".to_string());
    }
    check_security(os, &mut problems);
    check_scaling(os, &mut problems);
    check_template(os, &name, &mut problems);
    check_expose(os, &mut problems);
    let mut services = Vec::new();
    for service in Service::ALL {
        let image = decide_image(os, service, images);
        let mut plan = plan_service(&namespace, &name, service, service_spec(os, service), image);
        if let Some(recorded) = recorded_schema(os, service) {
            plan.db_identifier = recorded;
        }
        if let Some(problem) = names::pg_identifier_problem(&plan.db_identifier) {
            problems.push(format!(
                "{} schema name {:?} {problem}",
                service.as_str(),
                plan.db_identifier
            ));
        }
        if plan.image.trim().is_empty() || plan.image.chars().any(char::is_whitespace) {
            problems.push(format!(
                "{} image {:?} is not an image reference",
                service.as_str(),
                plan.image
            ));
        }
        services.push(plan);
    }
    let (Some(owner), true) = (owner, problems.is_empty()) else {
        return Err(InvalidSpec { problems });
    };
    let mut configs = topic.config.clone();
    configs.insert("cleanup.policy".into(), topic.cleanup_policy.as_kafka().into());
    Ok(ValidSpec {
        uid: owner.uid.clone(),
        owner,
        namespace,
        name,
        bootstrap_servers: spec.kafka.bootstrap_servers.clone(),
        kafka_security: KafkaSecuritySpec {
            tls: spec.kafka.tls.clone(),
            sasl: spec.kafka.sasl.clone(),
        },
        topic: ValidTopic {
            name: topic.name.clone(),
            partitions: topic.partitions,
            replication_factor: topic.replication_factor,
            configs,
        },
        admin_secret: spec.postgres.admin_secret_ref.name.clone(),
        ssl_mode: spec.postgres.ssl_mode,
        postgres_ca_secret: spec.postgres.ca_secret_ref.as_ref().map(|r| r.name.clone()),
        services,
        deletion_policy: spec.deletion_policy,
        paused: spec.paused,
        adopt_from: os.annotations().get(names::ADOPT_FROM_ANNOTATION).cloned(),
        expose: spec.expose.clone(),
        network_policy: spec.network_policy.clone(),
        tracing: spec.tracing.clone(),
    })
}

/// The endpoint `expose` gives `service`.
fn endpoint(expose: &ExposeSpec, service: Service) -> Option<&PublicEndpoint> {
    match service {
        Service::Order => expose.order.as_ref(),
        Service::Invoicing => expose.invoicing.as_ref(),
        Service::Shipping => expose.shipping.as_ref(),
    }
}

/// Two services published at one host and path would each claim the other's requests.
fn check_expose(os: &OrderSystem, problems: &mut Vec<String>) {
    let Some(expose) = &os.spec.expose else {
        return;
    };
    let mut seen: BTreeMap<(&str, &str), Service> = BTreeMap::new();
    for service in Service::ALL {
        let Some(endpoint) = endpoint(expose, service) else {
            continue;
        };
        if let Some(first) = seen.insert((&endpoint.host, endpoint.path()), service) {
            problems.push(format!(
                "spec.expose publishes {} and {} both at {}{}: give each its own host or path",
                first.as_str(),
                service.as_str(),
                endpoint.host,
                endpoint.path()
            ));
        }
    }
}

/// The schema name this resource's status records for `service`: kept over the computed one, so a rule
/// for names that changed between releases never moves a running service to an empty schema. Checked
/// like a computed one below.
fn recorded_schema(os: &OrderSystem, service: Service) -> Option<String> {
    let schemas = &os.status.as_ref()?.schemas;
    let recorded = schemas.iter().find(|s| s.service == service.as_str())?;
    Some(recorded.schema.clone())
}

/// The one place that decides a service's image, first match wins:
/// 1. the service's own `image` in the spec;
/// 2. `spec.imageTag`: the project's image with that tag, from the operator's registry;
/// 3. the image its status records, the one it was deployed with: upgrading the operator, or changing
///    its default tag or registry, rolls nothing;
/// 4. the project's image with the operator's default tag, for a service never deployed.
pub fn decide_image(os: &OrderSystem, service: Service, images: &ServiceImages) -> String {
    if let Some(image) = service_spec(os, service).image {
        return image.clone();
    }
    if let Some(tag) = &os.spec.image_tag {
        return images.image(service, tag);
    }
    recorded_image(os, service).unwrap_or_else(|| images.default_image(service))
}

/// The image this resource's status records for `service`, if any.
fn recorded_image(os: &OrderSystem, service: Service) -> Option<String> {
    let recorded = &os.status.as_ref()?.services.as_ref()?.of(service).image;
    Some(recorded.clone()).filter(|image| !image.is_empty())
}

/// What the three services' specs have in common, with the consumers' `autoscaling` (the order service
/// has none: it does not consume).
struct Workload<'a> {
    replicas: Option<i32>,
    autoscaling: Option<&'a AutoscalingSpec>,
    image: Option<&'a String>,
    resources: Option<&'a ResourceRequirements>,
    template: Option<&'a TemplateSpec>,
}

fn service_spec(os: &OrderSystem, service: Service) -> Workload<'_> {
    match service {
        Service::Order => Workload {
            replicas: os.spec.order.replicas,
            autoscaling: None,
            image: os.spec.order.image.as_ref(),
            resources: os.spec.order.resources.as_ref(),
            template: os.spec.order.template.as_ref(),
        },
        Service::Invoicing | Service::Shipping => {
            let spec = match service {
                Service::Invoicing => &os.spec.invoicing,
                _ => &os.spec.shipping,
            };
            Workload {
                replicas: spec.replicas,
                autoscaling: spec.autoscaling.as_ref(),
                image: spec.image.as_ref(),
                resources: spec.resources.as_ref(),
                template: spec.template.as_ref(),
            }
        }
    }
}

/// What the schema's CEL rules already refuse, checked again for an object the API server never saw
/// with this schema (a test fixture, an object stored before the rule existed and never changed).
fn check_scaling(os: &OrderSystem, problems: &mut Vec<String>) {
    for service in [Service::Invoicing, Service::Shipping] {
        let workload = service_spec(os, service);
        let Some(autoscaling) = workload.autoscaling else {
            continue;
        };
        let field = format!("spec.{}", service.as_str());
        if workload.replicas.is_some() {
            problems.push(format!(
                "{field}.replicas and {field}.autoscaling are mutually exclusive: remove replicas to let \
                 autoscaling decide the number of pods"
            ));
        }
        if autoscaling.external {
            continue;
        }
        match (autoscaling.min_replicas, autoscaling.max_replicas) {
            (_, None) => problems.push(format!(
                "{field}.autoscaling.maxReplicas is required to scale on lag (or set external: true)"
            )),
            (Some(min), Some(max)) if min > max => problems.push(format!(
                "{field}.autoscaling.minReplicas ({min}) is greater than maxReplicas ({max})"
            )),
            _ => {}
        }
    }
}

/// What a service's `template` may not set: the labels the operator selects by, its own annotations, and
/// the environment it wires the service with.
fn check_template(os: &OrderSystem, name: &str, problems: &mut Vec<String>) {
    for service in Service::ALL {
        let Some(template) = service_spec(os, service).template else {
            continue;
        };
        let field = format!("spec.{}.template", service.as_str());
        let pod = template.pod.clone().unwrap_or_default();
        let operators = names::labels(name, service);
        for key in pod.labels.unwrap_or_default().keys() {
            if operators.contains_key(key) {
                problems.push(format!(
                    "{field}.pod.labels sets {key}, a label the operator gives the pods and selects them by"
                ));
            }
        }
        for key in pod.annotations.unwrap_or_default().keys() {
            if key.starts_with(names::ANNOTATION_PREFIX) {
                problems.push(format!(
                    "{field}.pod.annotations sets {key}: annotations under {} are the operator's",
                    names::ANNOTATION_PREFIX
                ));
            }
        }
        let container = template.container.clone().unwrap_or_default();
        for var in container.env.unwrap_or_default() {
            if env::SET_BY_OPERATOR.contains(&var.name.as_str()) {
                problems.push(format!(
                    "{field}.container.env sets {}, which the operator sets itself",
                    var.name
                ));
            }
        }
    }
}

fn plan_service(
    namespace: &str,
    name: &str,
    service: Service,
    spec: Workload<'_>,
    image: String,
) -> ServicePlan {
    let scaling = Scaling::from_spec(spec.autoscaling);
    ServicePlan {
        service,
        // Autoscaled: a first guess, replaced by `decide` before anything is built.
        replicas: match &scaling {
            Scaling::Lag(policy) => policy.min,
            Scaling::Fixed | Scaling::External => spec.replicas.unwrap_or(1),
        },
        scaling,
        image,
        resources: spec.resources.cloned(),
        template: spec.template.cloned().unwrap_or_default(),
        child_name: names::child_name(name, service),
        secret_name: names::db_secret_name(name, service),
        kafka_secret_name: names::kafka_secret_name(name, service),
        kafka_user: names::kafka_user(namespace, name, service),
        db_identifier: names::pg_identifier(namespace, name, service),
        group_id: service
            .is_consumer()
            .then(|| names::group_id(namespace, name, service)),
    }
}

/// Combinations the schema allows but that would not do what they say.
fn check_security(os: &OrderSystem, problems: &mut Vec<String>) {
    let (kafka, postgres) = (&os.spec.kafka, &os.spec.postgres);
    if kafka.tls.is_none()
        && kafka
            .sasl
            .as_ref()
            .is_some_and(|s| s.mechanism == SaslMechanism::Plain)
    {
        problems.push(
            "kafka.sasl.mechanism PLAIN sends the password in the clear: it needs kafka.tls".to_string(),
        );
    }
    if postgres.ca_secret_ref.is_some()
        && !matches!(postgres.ssl_mode, SslMode::VerifyCa | SslMode::VerifyFull)
    {
        problems.push(format!(
            "postgres.caSecretRef is only used with sslMode verify-ca or verify-full, not {}",
            postgres.ssl_mode.as_libpq()
        ));
    }
}

fn check_bootstrap(servers: &str, problems: &mut Vec<String>) {
    for server in servers.split(',') {
        let server = server.trim();
        let valid = server
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
        if !valid {
            problems.push(format!("bootstrap server {server:?} is not host:port"));
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A valid resource as it comes back from the API server (uid and namespace set).
    pub(crate) fn os_from_yaml(yaml: &str) -> OrderSystem {
        serde_yaml::from_str(yaml).expect("test YAML is an OrderSystem")
    }

    /// `yaml` with TLS and SCRAM-SHA-512 to its brokers.
    pub(crate) fn with_scram(yaml: &str) -> String {
        yaml.replace(
            "    bootstrapServers: kafka:9092\n",
            "    bootstrapServers: kafka:9092\n    tls: {caSecretRef: {name: kafka-ca}}\n    sasl: {mechanism: SCRAM-SHA-512, credentialsSecretRef: {name: k}}\n",
        )
    }

    pub(crate) const MINIMAL: &str = r#"
apiVersion: ordersystem.io/v1alpha1
kind: OrderSystem
metadata: {name: shop, namespace: shopns, uid: 0b7c-uid}
spec:
  kafka:
    bootstrapServers: kafka:9092
    topic: {name: orders, partitions: 3, config: {retention.ms: "1000"}}
  postgres: {adminSecretRef: {name: pg-admin}}
  invoicing: {replicas: 2}
"#;

    #[test]
    fn a_minimal_resource_is_valid_with_defaults_filled_in() {
        let spec = validate(&os_from_yaml(MINIMAL)).expect("valid");
        assert_eq!(
            spec.topic.configs.get("cleanup.policy").map(String::as_str),
            Some("delete")
        );
        assert_eq!(
            spec.topic.configs.get("retention.ms").map(String::as_str),
            Some("1000")
        );
        let invoicing = spec.plan(Service::Invoicing);
        assert_eq!(invoicing.replicas, 2);
        assert_eq!(invoicing.db_identifier, "os_shopns_shop_invoicing");
        assert_eq!(invoicing.group_id.as_deref(), Some("shopns.shop.invoicing"));
        assert_eq!(
            invoicing.image,
            format!("ghcr.io/ordersystem/invoicing:{}", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(spec.plan(Service::Order).group_id, None);
        assert_eq!(spec.deletion_policy, DeletionPolicy::Retain);
    }

    /// MINIMAL as deployed with `recorded` images (order, invoicing, shipping) in its status.
    fn deployed_with(yaml: &str, recorded: [&str; 3]) -> OrderSystem {
        let mut os = os_from_yaml(yaml);
        let service = |image: &str| crate::crd::ServiceStatus {
            image: image.into(),
            ..Default::default()
        };
        os.status = Some(crate::crd::OrderSystemStatus {
            services: Some(crate::crd::ServicesStatus {
                order: service(recorded[0]),
                invoicing: service(recorded[1]),
                shipping: service(recorded[2]),
            }),
            ..Default::default()
        });
        os
    }

    fn images(spec: &ValidSpec) -> [&str; 3] {
        [Service::Order, Service::Invoicing, Service::Shipping].map(|s| spec.plan(s).image.as_str())
    }

    /// The project's registry with `default_tag`.
    fn tagged(default_tag: &str) -> ServiceImages {
        ServiceImages {
            default_tag: default_tag.into(),
            ..ServiceImages::default()
        }
    }

    #[test]
    fn a_mirror_serves_every_image_named_from_a_tag_and_a_recorded_image_stays() {
        let mirror = ServiceImages {
            registry: "mirror.internal/os".into(),
            default_tag: "2.0.0".into(),
        };
        let spec = validate_with(&os_from_yaml(MINIMAL), &mirror).expect("valid");
        assert_eq!(images(&spec)[0], "mirror.internal/os/order:2.0.0");
        let recorded = ["ghcr.io/ordersystem/order:1.0.0", "", ""];
        let spec = validate_with(&deployed_with(MINIMAL, recorded), &mirror).expect("valid");
        assert_eq!(
            images(&spec),
            [
                "ghcr.io/ordersystem/order:1.0.0",
                "mirror.internal/os/invoicing:2.0.0",
                "mirror.internal/os/shipping:2.0.0"
            ]
        );
        let moved = MINIMAL.replace("spec:\n", "spec:\n  imageTag: 2.1.0\n");
        let spec = validate_with(&deployed_with(&moved, recorded), &mirror).expect("valid");
        assert_eq!(images(&spec)[0], "mirror.internal/os/order:2.1.0");
    }

    #[test]
    fn a_service_never_deployed_gets_the_operators_default_tag() {
        let os = os_from_yaml(MINIMAL);
        let spec = validate_with(&os, &tagged("2.0.0")).expect("valid");
        assert_eq!(
            images(&spec),
            [
                "ghcr.io/ordersystem/order:2.0.0",
                "ghcr.io/ordersystem/invoicing:2.0.0",
                "ghcr.io/ordersystem/shipping:2.0.0"
            ]
        );
    }

    #[test]
    fn a_deployed_service_keeps_its_recorded_image_whatever_the_operators_default() {
        let recorded = [
            "ghcr.io/ordersystem/order:1.0.0",
            "ghcr.io/ordersystem/invoicing:1.0.0",
            "ghcr.io/ordersystem/shipping:1.0.0",
        ];
        let os = deployed_with(MINIMAL, recorded);
        for default_tag in ["1.0.0", "2.0.0", names::DEFAULT_IMAGE_TAG] {
            let spec = validate_with(&os, &tagged(default_tag)).expect("valid");
            assert_eq!(images(&spec), recorded, "default tag {default_tag}");
        }
        // `validate` without a tag is the build's default: the record wins there too.
        assert_eq!(images(&validate(&os).expect("valid")), recorded);
    }

    #[test]
    fn an_empty_record_is_no_record() {
        let os = deployed_with(MINIMAL, ["", "ghcr.io/ordersystem/invoicing:1.0.0", ""]);
        let spec = validate_with(&os, &tagged("2.0.0")).expect("valid");
        assert_eq!(
            images(&spec),
            [
                "ghcr.io/ordersystem/order:2.0.0",
                "ghcr.io/ordersystem/invoicing:1.0.0",
                "ghcr.io/ordersystem/shipping:2.0.0"
            ]
        );
    }

    #[test]
    fn the_spec_wide_tag_moves_every_service_without_an_image_of_its_own() {
        let yaml = MINIMAL.replace("spec:\n", "spec:\n  imageTag: 2.1.0\n").replace(
            "invoicing: {replicas: 2}",
            "invoicing: {replicas: 2, image: 'registry.example/inv:7'}",
        );
        let recorded = [
            "ghcr.io/ordersystem/order:1.0.0",
            "registry.example/inv:7",
            "ghcr.io/ordersystem/shipping:1.0.0",
        ];
        let spec = validate_with(&deployed_with(&yaml, recorded), &tagged("9.9.9")).expect("valid");
        assert_eq!(
            images(&spec),
            [
                "ghcr.io/ordersystem/order:2.1.0",
                "registry.example/inv:7",
                "ghcr.io/ordersystem/shipping:2.1.0"
            ]
        );
    }

    #[test]
    fn a_services_own_image_wins_over_the_tag_the_record_and_the_default() {
        let yaml = MINIMAL.replace("spec:\n", "spec:\n  imageTag: 2.1.0\n").replace(
            "invoicing: {replicas: 2}",
            "invoicing: {replicas: 2, image: 'registry.example/inv:7'}",
        );
        let recorded = ["a", "registry.example/inv:6", "c"];
        let os = deployed_with(&yaml, recorded);
        assert_eq!(
            decide_image(&os, Service::Invoicing, &tagged("9.9.9")),
            "registry.example/inv:7"
        );
        // Without the spec-wide tag a service's own image still comes first; the others keep theirs.
        let yaml = yaml.replace("  imageTag: 2.1.0\n", "");
        let spec = validate_with(&deployed_with(&yaml, recorded), &tagged("9.9.9")).expect("valid");
        assert_eq!(images(&spec), ["a", "registry.example/inv:7", "c"]);
    }

    #[test]
    fn bad_bootstrap_servers_and_images_are_all_reported() {
        let yaml = MINIMAL
            .replace("kafka:9092", "kafka:notaport,:1")
            .replace("invoicing: {replicas: 2}", "invoicing: {image: 'has space'}");
        let invalid = validate(&os_from_yaml(&yaml)).expect_err("invalid");
        let text = invalid.to_string();
        assert!(text.contains("\"kafka:notaport\" is not host:port"), "{text}");
        assert!(text.contains("\":1\" is not host:port"), "{text}");
        assert!(text.contains("invoicing image"), "{text}");
    }

    #[test]
    fn retention_with_pure_compaction_is_refused() {
        let yaml = MINIMAL.replace("partitions: 3,", "partitions: 3, cleanupPolicy: compact,");
        let invalid = validate(&os_from_yaml(&yaml)).expect_err("invalid");
        assert!(invalid.to_string().contains("retention.ms has no effect"));
    }

    #[test]
    fn plain_without_tls_and_a_postgres_ca_without_verification_are_refused() {
        let yaml = MINIMAL
            .replace(
                "    bootstrapServers: kafka:9092\n",
                "    bootstrapServers: kafka:9092\n    sasl: {mechanism: PLAIN, credentialsSecretRef: {name: k}}\n",
            )
            .replace(
                "{adminSecretRef: {name: pg-admin}}",
                "{adminSecretRef: {name: pg-admin}, sslMode: require, caSecretRef: {name: pg-ca}}",
            );
        let text = validate(&os_from_yaml(&yaml)).expect_err("invalid").to_string();
        assert!(text.contains("PLAIN sends the password in the clear"), "{text}");
        assert!(
            text.contains("caSecretRef is only used with sslMode verify-ca"),
            "{text}"
        );
    }

    #[test]
    fn tls_and_scram_give_sasl_ssl_with_per_service_identities() {
        let spec = validate(&os_from_yaml(&with_scram(MINIMAL))).expect("valid");
        assert_eq!(spec.kafka_security.protocol(), "sasl_ssl");
        assert_eq!(spec.kafka_security.scram(), Some(SaslMechanism::ScramSha512));
    }

    #[test]
    fn a_resource_without_uid_is_not_reconciled() {
        let yaml = MINIMAL.replace(", uid: 0b7c-uid", "");
        assert!(validate(&os_from_yaml(&yaml)).is_err());
    }

    #[test]
    fn the_protocol_follows_tls_and_sasl() {
        let sasl = KafkaSasl {
            mechanism: SaslMechanism::ScramSha256,
            credentials_secret_ref: crate::crd::SecretRef { name: "c".into() },
            service_credentials: ServiceCredentials::Operator,
        };
        let spec = |tls: bool, sasl_on: bool| KafkaSecuritySpec {
            tls: tls.then(KafkaTls::default),
            sasl: sasl_on.then(|| sasl.clone()),
        };
        assert_eq!(spec(false, false).protocol(), "plaintext");
        assert_eq!(spec(true, false).protocol(), "ssl");
        assert_eq!(spec(false, true).protocol(), "sasl_plaintext");
        assert_eq!(spec(true, true).protocol(), "sasl_ssl");
        assert_eq!(spec(true, true).scram(), Some(SaslMechanism::ScramSha256));
        assert!(!spec(true, true).provided_credentials());
    }

    #[test]
    fn the_services_credentials_are_provided_with_plain_or_when_the_spec_says_so() {
        let security = |mechanism, service_credentials| KafkaSecuritySpec {
            tls: Some(KafkaTls::default()),
            sasl: Some(KafkaSasl {
                mechanism,
                credentials_secret_ref: crate::crd::SecretRef { name: "c".into() },
                service_credentials,
            }),
        };
        let provided = security(SaslMechanism::ScramSha512, ServiceCredentials::Provided);
        assert_eq!(provided.scram(), None, "the operator makes no SCRAM users");
        assert!(provided.provided_credentials());
        assert_eq!(provided.protocol(), "sasl_ssl");
        let plain = security(SaslMechanism::Plain, ServiceCredentials::Operator);
        assert_eq!(plain.scram(), None);
        assert!(
            plain.provided_credentials(),
            "PLAIN users cannot be made through Kafka"
        );
        assert!(!KafkaSecuritySpec::default().provided_credentials());
    }
}
