//! Drift, against the real API server, Kafka and PostgreSQL with the controller in-process as the chart's
//! ServiceAccount: what someone else changes is put back or reported, an edit or deletion of any owned
//! object reconciles at once through its watch, and at rest nothing is written.
//!
//! Timing: after a successful reconcile the operator looks again after `min(120 s, lag interval)`
//! (`spec.consumerLag.intervalSeconds`). Kafka and PostgreSQL send no events, so drift there is found by
//! that look; the tests that prove it set a short interval. The tests that prove a watch set the interval
//! to 600 s (so the periodic look is 120 s away), start from a reconcile that has just finished, and
//! allow far less than 120 s: only the watch can explain a quick return.
//! No nodes run these pods (the node is tainted), so the Deployments stay unavailable: their templates
//! are what is checked.

#[path = "support/ddl_log.rs"]
mod ddl_log;
#[path = "support/operator.rs"]
mod operator;
#[path = "support/replicas.rs"]
mod replicas;
#[path = "support/setup.rs"]
mod setup;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service as KubeService, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use ordersystem_e2e::control_plane::connect_as_admin;
use ordersystem_e2e::metrics;
use ordersystem_e2e::order_system::{condition, poke, shop_json, wait_condition};
use ordersystem_e2e::wait;
use ordersystem_operator::controller::kafka::{self, ConfigOp, KafkaClients};
use ordersystem_operator::crd::OrderSystem;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use replicas::{ReplicaLog, replica_owners};
use serde_json::json;
use setup::{Setup, setup};

/// The managed-by label every owned object carries.
const OWNED: &str = "app.kubernetes.io/managed-by=ordersystem-operator";
/// A lag interval that puts the periodic look 120 s away (the CRD allows 5 to 3600).
const SLOW_LOOK: i32 = 600;
/// How long an object may take to come back through its watch: far below the 120 s periodic look.
const WATCH_DEADLINE: Duration = Duration::from_secs(30);

/// `shop` (invoicing at 2 replicas, so it has a PDB) with one managed topic config and the given lag
/// interval.
fn spec(s: &Setup, lag_interval: i32) -> serde_json::Value {
    let mut os = shop_json(&s.topic, &s.bootstrap, "Delete");
    os["spec"]["kafka"]["topic"]["config"] = json!({"retention.ms": "3600000"});
    os["spec"]["consumerLag"] = json!({"intervalSeconds": lag_interval});
    os
}

impl Setup {
    /// Reconciles started and finished so far.
    fn reconciles(&self) -> (f64, f64) {
        let text = self.metrics.encode();
        (
            metrics::sum(&text, "ordersystem_operator_reconciles"),
            metrics::sum(&text, "ordersystem_operator_reconcile_duration_seconds_count"),
        )
    }

    /// Waits until `more` reconciles started after `since` have finished and none is running.
    async fn wait_reconciles(&self, since: f64, more: f64, within: Duration) {
        wait::until_ok(&format!("{more} more reconciles, finished"), within, || async {
            let (started, finished) = self.reconciles();
            if started >= since + more && finished >= started {
                Ok(())
            } else {
                Err(format!("started {started}, finished {finished}, since {since}"))
            }
        })
        .await;
    }

    /// Makes the controller reconcile now and waits until it has finished: the periodic look is then a
    /// whole interval away.
    async fn fresh_reconcile(&self) {
        let (started, _) = self.reconciles();
        poke(&self.api).await;
        self.wait_reconciles(started, 1.0, Duration::from_secs(60)).await;
    }

    /// Waits until all three Deployments exist (order is rolled out last).
    async fn wait_deployed(&self) {
        wait::until_some("all three deployed", Duration::from_secs(90), || {
            self.deployment("shop-order")
        })
        .await;
    }

    /// `kind/name` → `(uid, resourceVersion)` of every object of kind `K` carrying the managed-by label.
    async fn owned<K>(&self, kind: &str, into: &mut BTreeMap<String, (String, String)>)
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), &self.ns.name);
        let list = api
            .list_metadata(&ListParams::default().labels(OWNED))
            .await
            .expect("list owned objects");
        for object in list {
            into.insert(
                format!("{kind}/{}", object.name_any()),
                (
                    object.uid().unwrap_or_default(),
                    object.resource_version().unwrap_or_default(),
                ),
            );
        }
    }

    /// The resource and every object it owns: `kind/name` → `(uid, resourceVersion)`.
    async fn versions(&self) -> BTreeMap<String, (String, String)> {
        let mut versions = BTreeMap::new();
        let os = self.api.get("shop").await.expect("shop");
        versions.insert(
            "OrderSystem/shop".to_string(),
            (
                os.uid().unwrap_or_default(),
                os.resource_version().unwrap_or_default(),
            ),
        );
        self.owned::<Deployment>("Deployment", &mut versions).await;
        self.owned::<KubeService>("Service", &mut versions).await;
        self.owned::<ServiceAccount>("ServiceAccount", &mut versions)
            .await;
        self.owned::<PodDisruptionBudget>("PodDisruptionBudget", &mut versions)
            .await;
        self.owned::<Secret>("Secret", &mut versions).await;
        versions
    }

    /// The uid of `name` of kind `K`, if it exists.
    async fn uid_of<K>(&self, name: &str) -> Option<String>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), &self.ns.name);
        api.get_opt(name).await.ok().flatten().and_then(|o| o.uid())
    }

    /// Deletes `name` of kind `K` and waits until an object of that name with another uid exists;
    /// how long that took.
    async fn delete_and_wait_back<K>(&self, kind: &str, name: &str) -> Duration
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let old = self.uid_of::<K>(name).await.expect("exists before");
        self.fresh_reconcile().await;
        let api: Api<K> = Api::namespaced(self.client.clone(), &self.ns.name);
        let start = Instant::now();
        api.delete(name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("delete {kind} {name}: {e}"));
        wait::until_some(
            &format!("{kind} {name} back (its watch; the periodic look is 120 s away)"),
            WATCH_DEADLINE,
            || async {
                let uid = self.uid_of::<K>(name).await?;
                (uid != old).then_some(())
            },
        )
        .await;
        let took = start.elapsed();
        eprintln!("{kind} {name} deleted: back after {took:?}");
        took
    }
}

fn container(d: &Deployment) -> k8s_openapi::api::core::v1::Container {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|p| p.containers[0].clone())
        .expect("a container")
}

fn env_value(d: &Deployment, name: &str) -> Option<String> {
    container(d).env?.into_iter().find(|e| e.name == name)?.value
}

/// The topic's config `key` as the broker reports it.
async fn broker_config(bootstrap: &str, topic: &str, key: &str) -> Option<String> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let results = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &AdminOptions::new())
        .await
        .expect("DescribeConfigs");
    let resource = results.into_iter().next()?.ok()?;
    resource.get(key)?.value.clone()
}

/// Edits `shop-order`'s ServiceAccount by hand to mount a token, and waits until the operator has reverted
/// the edit.
async fn edit_service_account_and_wait_reverted(s: &Setup) {
    let accounts = Api::<ServiceAccount>::namespaced(s.client.clone(), &s.ns.name);
    accounts
        .patch(
            "shop-order",
            &PatchParams::default(),
            &Patch::Merge(&json!({"automountServiceAccountToken": true})),
        )
        .await
        .expect("edit ServiceAccount");
    wait::until_some("ServiceAccount edit reverted", WATCH_DEADLINE, || async {
        let sa = accounts.get("shop-order").await.ok()?;
        (sa.automount_service_account_token == Some(false)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_managed_topic_config_changed_at_the_broker_is_reverted_at_the_next_look() {
    // The look comes after min(120 s, 10 s) = 10 s.
    let s = setup("drift-config").await;
    s.create(spec(&s, 10)).await;
    wait_condition(&s.api, "TopicReady", "True", "TopicReady").await;
    s.wait_deployed().await;
    // At rest first: no Deployment event may trigger the reconcile that finds the change.
    settled(&s).await;
    s.fresh_reconcile().await;
    let looked = Instant::now();
    let admin = KafkaClients::default().admin(&s.bootstrap).expect("admin");
    kafka::alter_configs(
        &admin,
        &s.topic,
        &[("retention.ms".into(), ConfigOp::Set("60000".into()))],
    )
    .await
    .expect("changed at the broker");
    assert_eq!(
        broker_config(&s.bootstrap, &s.topic, "retention.ms")
            .await
            .as_deref(),
        Some("60000"),
        "the change took"
    );
    let changed = looked.elapsed();
    // No poke: only the periodic look can find it.
    wait::until_some(
        "retention.ms back to 3600000 at the broker",
        Duration::from_secs(40),
        || async {
            let value = broker_config(&s.bootstrap, &s.topic, "retention.ms").await?;
            (value == "3600000").then_some(())
        },
    )
    .await;
    let reverted = looked.elapsed();
    eprintln!(
        "retention.ms changed at the broker {changed:?} after a reconcile: reverted {reverted:?} after it \
         (the next look: min(120 s, lag interval 10 s) = 10 s)"
    );
    assert!(
        reverted >= Duration::from_secs(9),
        "reverted by the periodic look, not by another reconcile: {reverted:?}"
    );
    let os = s.api.get("shop").await.expect("shop");
    assert_eq!(
        os.status
            .and_then(|st| st.topic)
            .and_then(|t| t.managed_configs.get("retention.ms").cloned())
            .as_deref(),
        Some("3600000")
    );
    s.delete_shop_and_wait(90, "gone").await;
}

#[tokio::test]
async fn per_service_resources_reach_the_pod_template_and_a_hand_edited_deployment_returns_to_the_spec() {
    let s = setup("drift-deploy").await;
    let mut os = spec(&s, SLOW_LOOK);
    os["spec"]["shipping"] = json!({
        "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}}
    });
    s.create(os).await;
    s.wait_deployed().await;
    let shipping = s.deployment("shop-shipping").await.expect("shipping");
    let resources = container(&shipping).resources.expect("shipping has resources");
    let quantity =
        |map: &Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
         key: &str| map.as_ref().and_then(|m| m.get(key)).map(|q| q.0.clone());
    assert_eq!(quantity(&resources.requests, "cpu").as_deref(), Some("50m"));
    assert_eq!(quantity(&resources.requests, "memory").as_deref(), Some("32Mi"));
    assert_eq!(quantity(&resources.limits, "memory").as_deref(), Some("64Mi"));
    // A service whose spec names none gets the operator's small defaults.
    let invoicing = s.deployment("shop-invoicing").await.expect("invoicing");
    let defaults = container(&invoicing).resources.expect("default resources");
    assert_eq!(quantity(&defaults.requests, "cpu").as_deref(), Some("25m"));
    assert_eq!(quantity(&defaults.limits, "memory").as_deref(), Some("256Mi"));
    // A changed spec reaches the template.
    s.patch_spec(json!({"shipping": {"resources": {"limits": {"memory": "96Mi"}}}}))
        .await;
    wait::until_some("shipping's new limit", Duration::from_secs(60), || async {
        let d = s.deployment("shop-shipping").await?;
        let limits = container(&d).resources?.limits?;
        (limits.get("memory")?.0 == "96Mi").then_some(())
    })
    .await;

    // Someone edits shipping by hand: replicas, image, an env value and the resources. Shipping has fixed
    // replicas here; with `autoscaling: {external: true}` its replicas are not drift (see
    // `in_external_mode_the_replicas_are_handed_over_without_a_dip_and_an_autoscalers_count_stays`).
    let image = container(&shipping).image.expect("image");
    s.fresh_reconcile().await;
    let start = Instant::now();
    let edit = json!({"spec": {
        "replicas": 5,
        "template": {"spec": {"containers": [{
            "name": "shipping",
            "image": "ghcr.io/ordersystem/shipping:edited-by-hand",
            "env": [{"name": "LOG_FORMAT", "value": "text"}],
            "resources": {"limits": {"memory": "1Gi"}},
        }]}},
    }});
    let edited = Api::<Deployment>::namespaced(s.client.clone(), &s.ns.name)
        .patch(
            "shop-shipping",
            &PatchParams {
                field_manager: Some("kubectl-edit".into()),
                ..Default::default()
            },
            &Patch::Strategic(&edit),
        )
        .await
        .expect("edit by hand");
    assert_eq!(
        edited.spec.as_ref().and_then(|d| d.replicas),
        Some(5),
        "the edit took"
    );
    wait::until_some(
        "shipping back to the spec (its watch; the periodic look is 120 s away)",
        WATCH_DEADLINE,
        || async {
            let d = s.deployment("shop-shipping").await?;
            let c = container(&d);
            let memory = c.resources.as_ref()?.limits.as_ref()?.get("memory")?.0.clone();
            (d.spec.as_ref()?.replicas == Some(1)
                && c.image.as_deref() == Some(image.as_str())
                && env_value(&d, "LOG_FORMAT").as_deref() == Some("json")
                && memory == "96Mi")
                .then_some(())
        },
    )
    .await;
    eprintln!(
        "shipping edited by hand (replicas, image, env, resources): back to the spec after {:?}",
        start.elapsed()
    );
    s.delete_shop_and_wait(90, "gone").await;
}

#[tokio::test]
async fn each_owned_kind_deleted_or_edited_comes_back_through_its_watch() {
    let s = setup("drift-watch").await;
    s.create(spec(&s, SLOW_LOOK)).await;
    s.wait_deployed().await;
    let mut took = Vec::new();
    took.push((
        "ServiceAccount",
        s.delete_and_wait_back::<ServiceAccount>("ServiceAccount", "shop-shipping")
            .await,
    ));
    took.push((
        "PodDisruptionBudget",
        s.delete_and_wait_back::<PodDisruptionBudget>("PodDisruptionBudget", "shop-invoicing")
            .await,
    ));
    took.push((
        "Service",
        s.delete_and_wait_back::<KubeService>("Service", "shop-order")
            .await,
    ));
    took.push((
        "Deployment",
        s.delete_and_wait_back::<Deployment>("Deployment", "shop-shipping")
            .await,
    ));
    took.push((
        "Secret",
        s.delete_and_wait_back::<Secret>("Secret", "shop-invoicing-db")
            .await,
    ));

    // Edits: a ServiceAccount that mounts a token, a PDB that allows more disruption.
    s.fresh_reconcile().await;
    let start = Instant::now();
    edit_service_account_and_wait_reverted(&s).await;
    took.push(("ServiceAccount edited", start.elapsed()));

    s.fresh_reconcile().await;
    let start = Instant::now();
    let pdbs = Api::<PodDisruptionBudget>::namespaced(s.client.clone(), &s.ns.name);
    pdbs.patch(
        "shop-invoicing",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"maxUnavailable": 2}})),
    )
    .await
    .expect("edit PDB");
    wait::until_some("PDB edit reverted", WATCH_DEADLINE, || async {
        let pdb = pdbs.get("shop-invoicing").await.ok()?;
        let max = pdb.spec?.max_unavailable?;
        (max == k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1)).then_some(())
    })
    .await;
    took.push(("PodDisruptionBudget edited", start.elapsed()));

    // A Secret edited: its hash on the pod template changes, so that service rolls at once.
    let hash = |d: &Deployment| {
        d.spec
            .as_ref()?
            .template
            .metadata
            .as_ref()?
            .annotations
            .as_ref()?
            .get("ordersystem.io/secret-hash")
            .cloned()
    };
    let before = hash(&s.deployment("shop-order").await.expect("order")).expect("hash");
    s.fresh_reconcile().await;
    let start = Instant::now();
    Api::<Secret>::namespaced(s.client.clone(), &s.ns.name)
        .patch(
            "shop-order-db",
            &PatchParams::default(),
            &Patch::Merge(&json!({"stringData": {"note": "edited by hand"}})),
        )
        .await
        .expect("edit Secret");
    wait::until_some(
        "order's template carries the edited Secret's hash",
        WATCH_DEADLINE,
        || async {
            let after = hash(&s.deployment("shop-order").await?)?;
            (after != before).then_some(())
        },
    )
    .await;
    took.push(("Secret edited", start.elapsed()));
    eprintln!("reconciled through a watch (lag interval {SLOW_LOOK} s, periodic look after 120 s):");
    for (what, took) in &took {
        eprintln!("  {what}: {took:?}");
    }
    s.delete_shop_and_wait(90, "gone").await;
}

#[tokio::test]
async fn a_role_granted_another_services_schema_is_reported_not_isolated() {
    let s = setup("drift-isolation").await;
    s.create(spec(&s, 5)).await;
    let os = wait_condition(&s.api, "DatabaseReady", "True", "SchemasReady").await;
    let schemas = os.status.expect("status").schemas;
    assert!(schemas.iter().all(|schema| schema.privileges_verified));
    let of = |service: &str| {
        schemas
            .iter()
            .find(|schema| schema.service == service)
            .cloned()
            .expect("schema in status")
    };
    let (invoicing, shipping) = (of("invoicing"), of("shipping"));
    let grant = format!(
        "GRANT USAGE ON SCHEMA \"{}\" TO \"{}\"",
        shipping.schema, invoicing.role
    );
    let mut admin = connect_as_admin().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(grant))
        .execute(&mut admin)
        .await
        .expect("grant invoicing's role shipping's schema");
    let verified = |os: &OrderSystem, service: &str| {
        os.status
            .as_ref()?
            .schemas
            .iter()
            .find(|schema| schema.service == service)
            .map(|schema| schema.privileges_verified)
    };
    let os = wait::until_some(
        "invoicing not verified (the next look, 5 s)",
        Duration::from_secs(60),
        || async {
            let os = s.api.get("shop").await.ok()?;
            (verified(&os, "invoicing") == Some(false)).then_some(os)
        },
    )
    .await;
    assert_eq!(verified(&os, "shipping"), Some(true));
    assert_eq!(verified(&os, "order"), Some(true));
    assert_eq!(
        condition(&os, "DatabaseReady"),
        Some(("False".into(), "SchemasNotReady".into()))
    );
    let message = os
        .status
        .as_ref()
        .and_then(|st| st.conditions.iter().find(|c| c.type_ == "DatabaseReady"))
        .map(|c| c.message.clone())
        .unwrap_or_default();
    eprintln!("DatabaseReady=False SchemasNotReady: {message}");
    assert!(message.contains("invoicing"), "{message}");

    let revoke = format!(
        "REVOKE USAGE ON SCHEMA \"{}\" FROM \"{}\"",
        shipping.schema, invoicing.role
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(revoke))
        .execute(&mut admin)
        .await
        .expect("revoke");
    wait_condition(&s.api, "DatabaseReady", "True", "SchemasReady").await;
    s.delete_shop_and_wait(90, "gone").await;
}

#[tokio::test]
async fn a_topic_with_another_replication_factor_is_a_mismatch_and_left_alone() {
    let s = setup("drift-rf").await;
    ordersystem_e2e::kafka::create_topic(&s.bootstrap, &s.topic, 3).await;
    let admin = KafkaClients::default().admin(&s.bootstrap).expect("admin");
    let before = kafka::describe(&admin, &s.topic)
        .await
        .expect("describe")
        .expect("topic");
    let mut os = spec(&s, 5);
    os["spec"]["kafka"]["topic"]["replicationFactor"] = 2.into();
    s.create(os).await;
    let os = wait_condition(&s.api, "TopicReady", "False", "ReplicationFactorMismatch").await;
    let message = ordersystem_e2e::order_system::topic_message(&os);
    eprintln!("TopicReady=False ReplicationFactorMismatch: {message}");
    assert!(
        message.contains("replication factor 1, the spec asks for 2"),
        "{message}"
    );
    assert_eq!(condition(&os, "Ready").map(|c| c.0), Some("False".into()));
    let after = kafka::describe(&admin, &s.topic)
        .await
        .expect("describe")
        .expect("topic");
    assert_eq!(after.topic_id, before.topic_id, "not recreated");
    assert_eq!(after.replication_factor, 1);
    s.delete_shop_and_wait(90, "gone").await;
}

#[tokio::test]
async fn a_pre_existing_topic_is_adopted_with_its_records_and_its_managed_config_set() {
    let s = setup("drift-adopt").await;
    ordersystem_e2e::kafka::create_topic(&s.bootstrap, &s.topic, 3).await;
    let admin = KafkaClients::default().admin(&s.bootstrap).expect("admin");
    kafka::alter_configs(
        &admin,
        &s.topic,
        &[
            ("retention.ms".into(), ConfigOp::Set("1000000".into())),
            ("max.message.bytes".into(), ConfigOp::Set("200000".into())),
        ],
    )
    .await
    .expect("configs of the pre-existing topic");
    let (partition, offset) =
        ordersystem_e2e::kafka::produce(&s.bootstrap, &s.topic, "before-adoption", b"{}").await;
    let existing = kafka::describe(&admin, &s.topic)
        .await
        .expect("describe")
        .expect("topic");

    s.create(spec(&s, 5)).await;
    let os = wait_condition(&s.api, "TopicReady", "True", "TopicReady").await;
    let topic = os.status.and_then(|st| st.topic).expect("topic status");
    assert_eq!(
        topic.topic_id.as_deref(),
        Some(existing.topic_id.as_str()),
        "adopted, not recreated"
    );
    assert_eq!(topic.partitions, 3);
    assert_eq!(
        topic.managed_configs.get("retention.ms").map(String::as_str),
        Some("3600000")
    );
    assert_eq!(
        topic
            .unmanaged_configs
            .get("max.message.bytes")
            .map(String::as_str),
        Some("200000"),
        "a config the spec does not name is kept and reported"
    );
    assert_eq!(
        broker_config(&s.bootstrap, &s.topic, "retention.ms")
            .await
            .as_deref(),
        Some("3600000")
    );
    assert_eq!(
        broker_config(&s.bootstrap, &s.topic, "max.message.bytes")
            .await
            .as_deref(),
        Some("200000")
    );
    let record = ordersystem_e2e::kafka::read_from_start(&s.bootstrap, &s.topic);
    let message = tokio::time::timeout(Duration::from_secs(30), record.recv())
        .await
        .expect("the record written before adoption within 30 s")
        .expect("record");
    use rdkafka::Message;
    assert_eq!(
        (message.partition(), message.offset(), message.key()),
        (partition, offset, Some(&b"before-adoption"[..]))
    );
    s.wait_deployed().await;
    s.delete_shop_and_wait(90, "gone").await;
}

/// Waits until the versions of the resource and its objects stay the same across one reconcile (the
/// first rollout and kube-controller-manager's first status updates are over), and returns them.
async fn settled(s: &Setup) -> BTreeMap<String, (String, String)> {
    let start = Instant::now();
    loop {
        let before = s.versions().await;
        let (started, _) = s.reconciles();
        s.wait_reconciles(started, 1.0, Duration::from_secs(60)).await;
        let after = s.versions().await;
        if before == after {
            return after;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "still changing after 120 s: {before:#?} became {after:#?}"
        );
    }
}

/// The objects whose resourceVersion or uid differs between two snapshots.
fn changed(
    before: &BTreeMap<String, (String, String)>,
    after: &BTreeMap<String, (String, String)>,
) -> Vec<String> {
    before
        .keys()
        .chain(after.keys())
        .filter(|key| before.get(*key) != after.get(*key))
        .map(|key| format!("{key}: {:?} -> {:?}", before.get(key), after.get(key)))
        .collect()
}

/// Server-side applies the operator sent (`skipped`: false) or left out as unchanged (true), of `kind` or
/// of every kind.
fn applies(s: &Setup, skipped: bool, kind: Option<&str>) -> f64 {
    let name = if skipped {
        "ordersystem_operator_child_applies_skipped"
    } else {
        "ordersystem_operator_child_applies"
    };
    let text = s.metrics.encode();
    let of_kind: String = text
        .lines()
        .filter(|line| kind.is_none_or(|kind| line.contains(&format!("kind=\"{kind}\""))))
        .map(|line| format!("{line}\n"))
        .collect();
    metrics::sum(&of_kind, name)
}

#[tokio::test]
async fn at_rest_three_looks_change_no_resource_version() {
    // The look comes after min(120 s, 5 s) = 5 s.
    let s = setup("drift-rest").await;
    s.create(spec(&s, 5)).await;
    s.wait_deployed().await;
    wait_condition(&s.api, "ServicesAvailable", "False", "Unavailable").await;
    let before = settled(&s).await;
    let expected = [
        "OrderSystem/shop",
        "Deployment/shop-order",
        "Deployment/shop-invoicing",
        "Deployment/shop-shipping",
        "Service/shop-order",
        "Service/shop-invoicing",
        "Service/shop-shipping",
        "ServiceAccount/shop-order",
        "ServiceAccount/shop-invoicing",
        "ServiceAccount/shop-shipping",
        "PodDisruptionBudget/shop-invoicing",
        "Secret/shop-order-db",
        "Secret/shop-invoicing-db",
        "Secret/shop-shipping-db",
    ];
    for key in expected {
        assert!(before.contains_key(key), "{key} among {before:#?}");
    }
    // The children this spec does not want (two PDBs, three Ingresses, HTTPRoutes and NetworkPolicies)
    // were deleted once, by the first reconciles; looks at rest do not ask again.
    let deletions = || metrics::sum(&s.metrics.encode(), "ordersystem_operator_child_deletions");
    let deleted = deletions();
    assert!(deleted >= 11.0, "the unwanted children deleted once: {deleted}");
    let (started, _) = s.reconciles();
    let start = Instant::now();
    s.wait_reconciles(started, 3.0, Duration::from_secs(60)).await;
    assert_eq!(deletions(), deleted, "no DELETE sent again at rest");
    let after = s.versions().await;
    eprintln!(
        "three looks in {:?}: {} objects, resourceVersions {:?}",
        start.elapsed(),
        after.len(),
        after.values().map(|(_, v)| v).collect::<Vec<_>>()
    );
    let changed = changed(&before, &after);
    assert!(changed.is_empty(), "written at rest: {changed:#?}");
    s.delete_shop_and_wait(90, "gone").await;
}

#[tokio::test]
async fn at_rest_a_look_sends_no_apply_and_a_child_edited_by_hand_is_still_put_back() {
    // The look comes after min(120 s, 5 s) = 5 s.
    let s = setup("drift-noapply").await;
    s.create(spec(&s, 5)).await;
    s.wait_deployed().await;
    let before = settled(&s).await;
    // Each look has 3 ServiceAccounts, 3 Services, 1 PDB and 3 Deployments to apply; once they are as
    // applied, it sends none of them.
    let (sent, skipped) = (applies(&s, false, None), applies(&s, true, None));
    assert!(sent >= 10.0, "the first looks applied every child: {sent}");
    let (started, _) = s.reconciles();
    s.wait_reconciles(started, 3.0, Duration::from_secs(60)).await;
    assert_eq!(applies(&s, false, None), sent, "no apply sent at rest");
    let skipped_now = applies(&s, true, None);
    assert!(
        skipped_now >= skipped + 30.0,
        "three looks left out 10 applies each: {skipped} then {skipped_now}"
    );
    let changed = changed(&before, &s.versions().await);
    assert!(changed.is_empty(), "written at rest: {changed:#?}");

    // A hand edit changes the ServiceAccount's resourceVersion: the next look applies it again, and only
    // it, and the edit is gone.
    let sent_accounts = applies(&s, false, Some("ServiceAccount"));
    edit_service_account_and_wait_reverted(&s).await;
    let sent_after = applies(&s, false, Some("ServiceAccount"));
    assert!(
        sent_after > sent_accounts,
        "the edited ServiceAccount was applied again: {sent_accounts} then {sent_after}"
    );
    // The Deployment status the looks report comes from the listed Deployments when none is applied.
    wait_condition(&s.api, "ServicesAvailable", "False", "Unavailable").await;
    s.delete_shop_and_wait(90, "gone").await;
}

#[tokio::test]
async fn at_rest_three_looks_send_no_ddl_to_a_postgres_logging_it() {
    let pg = ddl_log::DdlLoggedPostgres::start("op-drift-ddl", 5446).await;
    let s = setup("drift-ddl").await;
    pg.put_admin_secret(&s.ns, "pg-ddl").await;
    let mut os = spec(&s, 5);
    os["spec"]["postgres"] = json!({"adminSecretRef": {"name": "pg-ddl"}, "sslMode": "disable"});
    s.create(os).await;
    wait_condition(&s.api, "DatabaseReady", "True", "SchemasReady").await;
    s.wait_deployed().await;
    let provisioning = pg.statements_since(0);
    eprintln!("DDL of the first reconciles:\n{}", provisioning.join("\n"));
    assert!(
        provisioning.iter().any(|sql| sql.starts_with("CREATE ROLE")),
        "the log shows the provisioning: {provisioning:#?}"
    );
    settled(&s).await;
    let offset = pg.log().len();
    let (started, _) = s.reconciles();
    let start = Instant::now();
    s.wait_reconciles(started, 3.0, Duration::from_secs(60)).await;
    let at_rest = pg.statements_since(offset);
    eprintln!(
        "three looks in {:?}: {} DDL statements",
        start.elapsed(),
        at_rest.len()
    );
    assert!(
        !at_rest.iter().any(|sql| sql.contains("ALTER ROLE")),
        "ALTER ROLE at rest: {at_rest:#?}"
    );
    assert!(at_rest.is_empty(), "DDL at rest: {at_rest:#?}");
    s.delete_shop_and_wait(90, "gone").await;
}

#[tokio::test]
async fn in_external_mode_the_replicas_are_handed_over_without_a_dip_and_an_autoscalers_count_stays() {
    use ordersystem_operator::controller::apply::REPLICAS_HANDOVER_MANAGER;
    use ordersystem_operator::names::FIELD_MANAGER;
    let s = setup("drift-external").await;
    let mut os = spec(&s, SLOW_LOOK);
    os["spec"]["invoicing"] = json!({"replicas": 3});
    s.create(os).await;
    s.wait_deployed().await;
    wait::until_some("invoicing at 3", Duration::from_secs(60), || async {
        let d = s.deployment("shop-invoicing").await?;
        (d.spec.as_ref()?.replicas == Some(3)).then_some(())
    })
    .await;
    let log = ReplicaLog::start(&s.client, &s.ns.name, "shop-invoicing").await;

    // The switch, the way a user makes it: `replicas` out, `autoscaling: {external: true}` in.
    s.fresh_reconcile().await;
    s.patch_spec(json!({"invoicing": {"replicas": null, "autoscaling": {"external": true}}}))
        .await;
    let external = wait::until_some("status reports the external mode", WATCH_DEADLINE, || async {
        let os = s.api.get("shop").await.ok()?;
        let scaling = os.status?.services?.invoicing.autoscaling?;
        (scaling.mode == ordersystem_operator::crd::ScalingMode::External).then_some(scaling)
    })
    .await;
    eprintln!("status.services.invoicing.autoscaling: {external:?}");
    assert_eq!(external.current_replicas, 3);
    // Two more looks in external mode change nothing.
    s.fresh_reconcile().await;
    s.fresh_reconcile().await;
    let values = log.values();
    eprintln!("invoicing spec.replicas through the switch: {values:?}");
    assert!(
        values.iter().all(|v| *v == Some(3)),
        "the switch never changed the replicas: {values:?}"
    );
    let d = s.deployment("shop-invoicing").await.expect("invoicing");
    let owners = replica_owners(&d);
    assert!(
        !owners.iter().any(|m| m == FIELD_MANAGER) && owners.iter().any(|m| m == REPLICAS_HANDOVER_MANAGER),
        "the operator let go of replicas, the hand-over manager holds them: {owners:?}"
    );

    // An autoscaler sets 5 through the scale subresource, as an HPA does: not drift, it stays.
    let deployments: Api<Deployment> = Api::namespaced(s.client.clone(), &s.ns.name);
    deployments
        .patch_scale(
            "shop-invoicing",
            &PatchParams {
                field_manager: Some("hpa-stand-in".into()),
                ..Default::default()
            },
            &Patch::Merge(&json!({"spec": {"replicas": 5}})),
        )
        .await
        .expect("the autoscaler's write");
    s.fresh_reconcile().await;
    s.fresh_reconcile().await;
    let d = s.deployment("shop-invoicing").await.expect("invoicing");
    assert_eq!(
        d.spec.as_ref().and_then(|d| d.replicas),
        Some(5),
        "the autoscaler's count stays"
    );
    assert_eq!(replica_owners(&d), vec!["hpa-stand-in".to_string()]);

    let values = log.values();
    eprintln!("invoicing spec.replicas throughout: {values:?}");
    let switch = values.iter().take_while(|v| **v != Some(5)).count();
    assert!(
        values[switch..].iter().all(|v| *v == Some(5)),
        "after the autoscaler's write nothing changed them: {values:?}"
    );
    s.delete_shop_and_wait(90, "gone").await;
}
