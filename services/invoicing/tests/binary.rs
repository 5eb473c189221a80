//! The built binary, configured only through the environment names the operator sets
//! (`ordersystem_contract::wiring::env`), logs JSON, serves its pages, and on SIGTERM finishes, commits and
//! leaves its group, exiting 0.

use ordersystem_contract::wiring::env as wiring;
use ordersystem_testkit::events::order_placed as event;
use ordersystem_testkit::kafka::{create_topic, produce};
use ordersystem_testkit::process::{self, ServiceProcess};
use ordersystem_testkit::wait::until as wait_until;
use ordersystem_testkit::{env, names, schema};
use std::path::PathBuf;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_runs_from_operator_env_and_leaves_its_group_on_sigterm() {
    let bootstrap = env::kafka_bootstrap();
    let topic = names::unique("binary");
    create_topic(&bootstrap, &topic, 2).await;
    produce(&bootstrap, &topic, "5", &event(5, 2)).await;
    let db = schema::fresh_schema("invoicing").await;
    let port = process::free_port();
    let mut env = process::wiring(port, &db, &bootstrap, &topic);
    let group = names::unique("ns.shop.invoicing");
    for (name, value) in [
        (wiring::LOG_FORMAT, "json"),
        (wiring::KAFKA_GROUP_ID, &group),
        (wiring::KAFKA_GROUP_PROTOCOL, "consumer"),
    ] {
        env.push((name.to_string(), value.to_string()));
    }
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_ordersystem-invoicing"));
    let mut invoicing = ServiceProcess::launch("invoicing", bin, db, port, env);
    invoicing.start(&[]);
    let url = invoicing.url("/api/invoices/5");
    wait_until("invoice 5 served by the binary", Duration::from_secs(60), || {
        let url = url.clone();
        async move { reqwest::get(&url).await.is_ok_and(|r| r.status().is_success()) }
    })
    .await;
    let exit = invoicing.stop().await.expect("the binary ran until SIGTERM");
    let text = invoicing.log();
    assert!(exit.success(), "exit {exit:?}; log:\n{text}");
    for needle in [
        "SIGTERM received",
        "partitions assigned",
        "offsets committed, leaving the group",
    ] {
        assert!(text.contains(needle), "log lacks {needle:?}:\n{text}");
    }
    invoicing.assert_no_password_in_log();
    let json_lines = text
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
        .count();
    assert!(json_lines >= 3, "LOG_FORMAT=json writes JSON lines:\n{text}");
}
