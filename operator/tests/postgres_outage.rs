//! What the operator does with a Postgres it cannot use: an admin Secret that is missing, malformed or
//! carries a wrong password, and a server that is down, each become `DatabaseReady=False` with a reason
//! that says what is wrong, retried with backoff (failed reconciles and Warning events pile up), and the
//! resource recovers by itself when the server comes up; no password ever appears in status or Events.
//! The server is this test's own instance (`postgres.sh` with `PG_INSTANCE`), never the shared one.

#[path = "support/operator.rs"]
mod operator;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, PostParams};
use ordersystem_e2e::control_plane::TestNamespace;
use ordersystem_e2e::order_system::{
    delete_and_wait, failed_reconciles, minimal_json, poke, to_os, wait_condition, wait_event,
};
use ordersystem_e2e::own_instance::OwnInstance;
use ordersystem_e2e::wait;
use ordersystem_operator::crd::OrderSystem;
use ordersystem_operator::metrics::Metrics;
use ordersystem_operator::names::SECRET_HASH_ANNOTATION;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const INSTANCE: &str = "op-pg-outage";
const PORT: u16 = 5443;
const WRONG_PASSWORD: &str = "not-the-admin-password-3141";

/// `user:password` of the admin URL `postgres.sh url` prints.
fn admin_credentials(url: &str) -> (String, String) {
    let credentials = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .map(|(credentials, _)| credentials.to_string())
        .expect("url carries credentials");
    let (user, password) = credentials.split_once(':').expect("user:password");
    (user.to_string(), password.to_string())
}

/// Replaces the admin Secret with exactly `data` (created fresh, so no key of an earlier version stays).
async fn put_secret(secrets: &Api<Secret>, data: &serde_json::Value) {
    let _ = secrets.delete("pg-admin", &DeleteParams::default()).await;
    wait::until_some("the old admin Secret gone", Duration::from_secs(30), || async {
        secrets.get_opt("pg-admin").await.ok()?.is_none().then_some(())
    })
    .await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "pg-admin"},
        "stringData": data
    }))
    .expect("secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("admin secret created");
}

/// The `DatabaseReady` message once it is False for a reason containing `needle`.
async fn wait_database_message(api: &Api<OrderSystem>, needle: &str) -> String {
    poke(api).await;
    wait::until_some(
        &format!("DatabaseReady message with {needle:?}"),
        Duration::from_secs(90),
        || async {
            let os = api.get("shop").await.ok()?;
            let condition = os
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "DatabaseReady")?;
            (condition.status == "False"
                && condition.reason == "PostgresUnavailable"
                && condition.message.contains(needle))
            .then_some(condition.message)
        },
    )
    .await
}

#[tokio::test]
async fn admin_secret_problems_and_a_stopped_postgres_are_conditions_and_it_recovers_by_itself() {
    // Created now and stopped, so that starting it later is quick: the resource must recover within
    // the backoff of its first few failures.
    let own = OwnInstance::postgres(INSTANCE, PORT).start_fresh().await;
    own.run("stop").await;
    let (user, password) = admin_credentials(&own.run("url").await);
    let client = ordersystem_e2e::kube::client().await;
    let ns = TestNamespace::create(&client, "pg-outage").await;
    let metrics = Arc::new(Metrics::default());
    let operator = operator::start(&client, &ns.name, metrics.clone()).await;
    let api: Api<OrderSystem> = Api::namespaced(client.clone(), &ns.name);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let topic = ordersystem_e2e::names::unique("pg-outage");
    let mut os = minimal_json("shop", &topic);
    os["spec"]["kafka"]["bootstrapServers"] = ordersystem_e2e::env::kafka_bootstrap().into();
    os["spec"]["kafka"]["topic"]["replicationFactor"] = 1.into();
    os["spec"]["postgres"]["sslMode"] = "disable".into();
    os["spec"]["deletionPolicy"] = "Delete".into();
    api.create(&PostParams::default(), &to_os(os))
        .await
        .expect("create");

    // 1. Complete, but the server is down; it comes up, and the resource recovers without a poke: the
    //    backoff requeue finds it (Postgres sends no watch events).
    let complete = json!({"host": "127.0.0.1", "port": PORT.to_string(), "dbname": "ordersystem_test",
                          "username": user, "password": password});
    put_secret(&secrets, &complete).await;
    let message = wait_database_message(&api, &format!("127.0.0.1:{PORT}")).await;
    eprintln!("server down: {message}");
    wait::until_some(
        "a second failed reconcile (backoff)",
        Duration::from_secs(60),
        || async { (failed_reconciles(&metrics.encode()) >= 2.0).then_some(()) },
    )
    .await;
    own.run("start").await;
    wait_condition(&api, "DatabaseReady", "True", "SchemasReady").await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let secret_hashes = || async {
        let list = deployments.list(&Default::default()).await.ok()?;
        let hashes: Vec<(String, String)> = list
            .items
            .iter()
            .filter_map(|d| {
                let template = d
                    .spec
                    .as_ref()?
                    .template
                    .metadata
                    .as_ref()?
                    .annotations
                    .as_ref()?;
                Some((
                    d.metadata.name.clone()?,
                    template.get(SECRET_HASH_ANNOTATION)?.clone(),
                ))
            })
            .collect();
        (hashes.len() == 3).then_some(hashes)
    };
    let rolled_out = wait::until_some("the three Deployments", Duration::from_secs(60), secret_hashes).await;

    // 2. Bad admin Secrets, each named in the condition.
    let mut wrong = complete.clone();
    wrong["password"] = WRONG_PASSWORD.into();
    let mut no_password = complete.clone();
    no_password.as_object_mut().expect("object").remove("password");
    let mut bad_port = complete.clone();
    bad_port["port"] = "fifty-four-forty-three".into();
    for (case, data, needle) in [
        (
            "wrong password",
            Some(&wrong),
            "password authentication failed".to_string(),
        ),
        (
            "no password",
            Some(&no_password),
            "has no usable password".to_string(),
        ),
        (
            "port not a number",
            Some(&bad_port),
            "has no usable port".to_string(),
        ),
        (
            "no Secret",
            None,
            "failed to read admin Secret pg-admin".to_string(),
        ),
    ] {
        match data {
            Some(data) => put_secret(&secrets, data).await,
            None => {
                secrets
                    .delete("pg-admin", &DeleteParams::default())
                    .await
                    .expect("delete admin secret");
            }
        }
        let message = wait_database_message(&api, &needle).await;
        eprintln!("{case}: {message}");
    }
    let events: Api<Event> = Api::namespaced(client.clone(), &ns.name);
    let failed = wait_event(&events, "shop", "ReconcileFailed").await;
    assert_eq!(failed.type_.as_deref(), Some("Warning"));
    assert!(
        failed_reconciles(&metrics.encode()) >= 6.0,
        "every failed reconcile is counted"
    );
    // The database Secrets are unchanged, so no pod template changed while PostgreSQL was unusable.
    assert_eq!(
        secret_hashes().await,
        Some(rolled_out),
        "no rollout while the database was unusable"
    );

    // 3. The right Secret again.
    put_secret(&secrets, &complete).await;
    poke(&api).await;
    wait_condition(&api, "DatabaseReady", "True", "SchemasReady").await;

    // No password anywhere in status or Events.
    let status = serde_json::to_string(&api.get("shop").await.expect("get").status).expect("json");
    let all_events =
        serde_json::to_string(&events.list(&Default::default()).await.expect("events").items).expect("json");
    for secret in [password.as_str(), WRONG_PASSWORD] {
        assert!(!status.contains(secret), "a password reached the status");
        assert!(!all_events.contains(secret), "a password reached an Event");
    }

    delete_and_wait(&api, 90, "the resource deleted and its schemas dropped").await;
    drop(operator);
    tokio::task::spawn_blocking(move || drop(own))
        .await
        .expect("instance removed");
}
