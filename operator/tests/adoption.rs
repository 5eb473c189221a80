//! Coming back after `deletionPolicy: Retain`, taking over another resource's data only when asked, and
//! what a `Delete` resource edited into an invalid spec leaves behind: against the real API server (with
//! its garbage collector), Kafka and PostgreSQL, the controller running in-process as the chart's
//! ServiceAccount.

#[path = "support/operator.rs"]
mod operator;
#[path = "support/setup.rs"]
mod setup;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use ordersystem_e2e::control_plane::{connect_as, connect_as_admin, schema_exists};
use ordersystem_e2e::order_system::{condition, shop_json, wait_condition, wait_event};
use ordersystem_e2e::wait;
use ordersystem_operator::controller::kafka::{self, KafkaClients};
use ordersystem_operator::controller::postgres;
use ordersystem_operator::controller::validate::{self, ValidSpec};
use ordersystem_operator::crd::OrderSystem;
use ordersystem_operator::names::{self, Service};
use serde_json::json;
use setup::{Setup, setup};
use sqlx::Connection;
use std::time::Duration;

impl Setup {
    /// The login and password in invoicing's database Secret now.
    async fn invoicing_login(&self) -> (String, String) {
        let secret = names::db_secret_name("shop", Service::Invoicing);
        (
            self.ns.secret_value(&secret, "username").await,
            self.ns.secret_value(&secret, "password").await,
        )
    }

    /// The ownership comment of the schema `schema`.
    async fn schema_comment(&self, schema: &str) -> Option<String> {
        sqlx::query_scalar("SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = $1")
            .bind(schema)
            .fetch_one(&mut connect_as_admin().await)
            .await
            .expect("comment")
    }

    /// Drops what `shop` provisioned in PostgreSQL, whoever it was recorded for now.
    async fn drop_schemas(&self, os: &OrderSystem) {
        let spec: ValidSpec = validate::validate(os).expect("valid");
        let admin = postgres::read_admin(&self.client, &self.ns.name, "pg-admin")
            .await
            .expect("admin secret");
        postgres::drop_all(&admin, &spec).await.expect("drop");
    }
}

/// The topic id `os` records in its status.
fn topic_id(os: &OrderSystem) -> String {
    os.status
        .as_ref()
        .and_then(|s| s.topic.as_ref())
        .and_then(|t| t.topic_id.clone())
        .expect("topic id recorded")
}

#[tokio::test]
async fn a_resource_created_again_after_a_retain_deletion_takes_back_its_topic_and_schemas() {
    let s = setup("adopt-retain").await;
    s.create(shop_json(&s.topic, &s.bootstrap, "Retain")).await;
    let first = wait_condition(&s.api, "DatabaseReady", "True", "SchemasReady").await;
    wait_condition(&s.api, "TopicReady", "True", "TopicReady").await;
    let schema = names::pg_identifier(&s.ns.name, "shop", Service::Invoicing);
    let (user, old_password) = s.invoicing_login().await;
    let mut conn = connect_as(&user, &old_password).await.expect("invoicing logs in");
    sqlx::raw_sql("CREATE TABLE kept (note text); INSERT INTO kept VALUES ('before')")
        .execute(&mut conn)
        .await
        .expect("invoicing writes its schema");
    let _ = conn.close().await;

    s.delete_shop_and_wait(60, "shop released (Retain)").await;
    // The garbage collector removes the Secrets the deleted resource owned.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(s.client.clone(), &s.ns.name);
    let secret = names::db_secret_name("shop", Service::Invoicing);
    wait::until_some("the old Secret collected", Duration::from_secs(60), || async {
        secrets.get_opt(&secret).await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(schema_exists(&schema).await, "Retain keeps the schema");
    let claims: Api<ConfigMap> = Api::namespaced(s.client.clone(), &s.ns.name);
    let claims_only = ListParams::default().labels(names::TOPIC_CLAIM_LABEL);
    let kept_claims = claims.list(&claims_only).await.expect("claims").items;
    assert_eq!(kept_claims.len(), 1, "Retain keeps the claim on the topic");

    s.create(shop_json(&s.topic, &s.bootstrap, "Retain")).await;
    let again = wait_condition(&s.api, "DatabaseReady", "True", "SchemasReady").await;
    let again = match condition(&again, "TopicReady") {
        Some((status, _)) if status == "True" => again,
        _ => wait_condition(&s.api, "TopicReady", "True", "TopicReady").await,
    };
    assert_eq!(
        topic_id(&again),
        topic_id(&first),
        "the kept topic is taken back, not created anew"
    );
    let (user, new_password) = s.invoicing_login().await;
    assert_ne!(new_password, old_password, "a new Secret with a new password");
    let mut conn = connect_as(&user, &new_password)
        .await
        .expect("invoicing logs in with the new Secret");
    let note: String = sqlx::query_scalar("SELECT note FROM kept")
        .fetch_one(&mut conn)
        .await
        .expect("the kept table is readable");
    assert_eq!(note, "before");
    let _ = conn.close().await;
    assert!(
        connect_as(&user, &old_password).await.is_err(),
        "the collected Secret's password no longer logs in"
    );
    let uid = again.metadata.uid.clone().expect("uid");
    let comment = s.schema_comment(&schema).await.expect("a comment");
    assert_eq!(
        comment,
        names::owner_comment(&s.ns.name, "shop", &uid),
        "recorded for the new resource"
    );
    let events: Api<Event> = Api::namespaced(s.client.clone(), &s.ns.name);
    let schemas = wait_event(&events, "shop", "SchemasTakenOver").await;
    let note = schemas.note.unwrap_or_default();
    assert!(note.contains("kept with deletionPolicy Retain"), "{note}");
    assert_eq!(note.matches("Took over the schema and role").count(), 3, "{note}");
    let topic = wait_event(&events, "shop", "TopicClaimTakenOver").await;
    let note = topic.note.unwrap_or_default();
    assert!(
        note.starts_with(&format!("Took over the claim on topic {}", s.topic)),
        "{note}"
    );
    let claim = claims.list(&claims_only).await.expect("claims").items;
    let data = claim[0].data.clone().unwrap_or_default();
    assert_eq!(data.get("uid"), Some(&uid), "the claim names the new resource");
    assert_eq!(data.get("origin").map(String::as_str), Some("created"));

    s.patch_spec(json!({"deletionPolicy": "Delete"})).await;
    s.delete_shop_and_wait(90, "shop deleted (Delete)").await;
    assert!(
        !schema_exists(&schema).await,
        "Delete drops the schema it took back"
    );
}

#[tokio::test]
async fn a_schema_recorded_for_another_resource_is_a_conflict_until_the_annotation_names_it() {
    let s = setup("adopt-other").await;
    let schema = names::pg_identifier(&s.ns.name, "shop", Service::Shipping);
    let other = format!("{}/other", s.ns.name);
    let comment = names::owner_comment(&s.ns.name, "other", "uid-of-other");
    let ident = names::quote_ident(&schema);
    let mut admin = connect_as_admin().await;
    for sql in [
        format!("CREATE ROLE {ident}"),
        format!("GRANT {ident} TO CURRENT_USER"),
        format!("CREATE SCHEMA {ident} AUTHORIZATION {ident}"),
        format!("COMMENT ON SCHEMA {ident} IS '{comment}'"),
        format!("COMMENT ON ROLE {ident} IS '{comment}'"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut admin)
            .await
            .expect("the other resource's schema");
    }
    let _ = admin.close().await;

    s.create(shop_json(&s.topic, &s.bootstrap, "Delete")).await;
    let os = wait_condition(&s.api, "DatabaseReady", "False", "Conflict").await;
    let message = os
        .status
        .as_ref()
        .and_then(|st| st.conditions.iter().find(|c| c.type_ == "DatabaseReady"))
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains(&format!("belongs to OrderSystem {other}")),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "annotate this resource with ordersystem.io/adopt-from={other}"
        )),
        "{message}"
    );
    assert_eq!(
        s.schema_comment(&schema).await.as_deref(),
        Some(comment.as_str()),
        "left alone"
    );

    let adopt = json!({"metadata": {"annotations": {(names::ADOPT_FROM_ANNOTATION): other}}});
    s.api
        .patch("shop", &PatchParams::default(), &Patch::Merge(&adopt))
        .await
        .expect("annotate");
    let os = wait_condition(&s.api, "DatabaseReady", "True", "SchemasReady").await;
    let uid = os.metadata.uid.clone().expect("uid");
    assert_eq!(
        s.schema_comment(&schema).await,
        Some(names::owner_comment(&s.ns.name, "shop", &uid)),
        "recorded for the resource that took it over"
    );
    s.delete_shop_and_wait(90, "shop deleted").await;
    assert!(!schema_exists(&schema).await, "Delete drops what it took over");
}

#[tokio::test]
async fn a_delete_resource_edited_into_an_invalid_spec_names_what_it_keeps() {
    let s = setup("adopt-invalid").await;
    s.create(shop_json(&s.topic, &s.bootstrap, "Delete")).await;
    wait_condition(&s.api, "DatabaseReady", "True", "SchemasReady").await;
    let valid = wait_condition(&s.api, "TopicReady", "True", "TopicReady").await;
    // Passes the CRD's schema, refused by the operator's validation.
    s.patch_spec(json!({"invoicing": {"image": "not an image"}}))
        .await;
    wait_condition(&s.api, "Ready", "False", "InvalidSpec").await;
    s.delete_shop_and_wait(60, "shop released").await;

    let events: Api<Event> = Api::namespaced(s.client.clone(), &s.ns.name);
    let event = wait_event(&events, "shop", "CleanupSkipped").await;
    let note = event.note.unwrap_or_default();
    assert!(
        note.starts_with("The spec is invalid (invoicing image \"not an image\" is not an image reference)"),
        "{note}"
    );
    assert!(note.contains(&format!("topic {}", s.topic)), "{note}");
    let schema = names::pg_identifier(&s.ns.name, "shop", Service::Order);
    assert!(note.contains(&schema), "{note}");
    let admin = KafkaClients::default().admin(&s.bootstrap).expect("admin");
    assert!(
        kafka::describe(&admin, &s.topic)
            .await
            .expect("describe")
            .is_some(),
        "nothing deleted on a guess"
    );
    assert!(schema_exists(&schema).await);
    kafka::delete_topic(&admin, &s.topic).await.expect("delete topic");
    s.drop_schemas(&valid).await;
}

#[tokio::test]
async fn a_topic_found_before_any_claim_is_kept_by_delete_unless_the_annotation_asks() {
    let s = setup("adopt-found").await;
    ordersystem_e2e::kafka::create_topic(&s.bootstrap, &s.topic, 3).await;
    let admin = KafkaClients::default().admin(&s.bootstrap).expect("admin");
    let events: Api<Event> = Api::namespaced(s.client.clone(), &s.ns.name);

    s.create(shop_json(&s.topic, &s.bootstrap, "Delete")).await;
    let os = wait_condition(&s.api, "TopicReady", "True", "TopicReady").await;
    let found = wait_event(&events, "shop", "FoundTopic").await;
    assert!(
        found
            .note
            .unwrap_or_default()
            .contains("deletionPolicy Delete keeps it"),
        "the user is told at once"
    );
    let cluster_id = os
        .status
        .and_then(|st| st.topic)
        .and_then(|t| t.cluster_id)
        .expect("the cluster id in status");
    assert!(!cluster_id.is_empty());
    wait_condition(&s.api, "DatabaseReady", "True", "SchemasReady").await;
    s.delete_shop_and_wait(90, "shop deleted").await;
    let kept = wait_event(&events, "shop", "TopicKept").await;
    assert!(
        kept.note
            .unwrap_or_default()
            .contains("ordersystem.io/delete-found-topic=true"),
        "says how to delete it"
    );
    assert!(
        kafka::describe(&admin, &s.topic)
            .await
            .expect("describe")
            .is_some(),
        "a topic that existed before is kept"
    );

    let mut asked = shop_json(&s.topic, &s.bootstrap, "Delete");
    asked["metadata"]["annotations"] = json!({(names::DELETE_FOUND_TOPIC_ANNOTATION): "true"});
    s.create(asked).await;
    wait_condition(&s.api, "TopicReady", "True", "TopicReady").await;
    wait_condition(&s.api, "DatabaseReady", "True", "SchemasReady").await;
    s.delete_shop_and_wait(90, "shop deleted with the annotation")
        .await;
    assert!(
        kafka::describe(&admin, &s.topic)
            .await
            .expect("describe")
            .is_none(),
        "deleted when the resource asks"
    );
}
