//! The built binary, configured only through the environment names the operator sets
//! (`ordersystem_contract::wiring::env`), logs JSON, serves its pages, and on SIGTERM finishes, commits and
//! leaves its group, exiting 0.

mod support;

use ordersystem_contract::wiring::env as wiring;
use ordersystem_testkit::{env, names, schema};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_runs_from_operator_env_and_leaves_its_group_on_sigterm() {
    let bootstrap = env::kafka_bootstrap();
    let topic = names::unique("binary");
    create_topic(&bootstrap, &topic, 2).await;
    produce(&bootstrap, &topic, "5", &event(5, 2)).await;
    let db = schema::fresh_schema("invoicing").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port();
    let log_path = std::env::temp_dir().join(format!("{}.log", names::unique("invoicing-binary")));
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ordersystem-invoicing"))
        .env_clear()
        .env(wiring::LISTEN_ADDR, format!("127.0.0.1:{port}"))
        .env(wiring::LOG_FORMAT, "json")
        .env(wiring::DATABASE_HOST, &db.host)
        .env(wiring::DATABASE_PORT, db.port.to_string())
        .env(wiring::DATABASE_NAME, &db.name)
        .env(wiring::DATABASE_USER, &db.user)
        .env(wiring::DATABASE_PASSWORD, &db.password)
        .env(wiring::DATABASE_SCHEMA, &db.schema)
        .env(wiring::DATABASE_SSLMODE, "prefer")
        .env(wiring::KAFKA_BOOTSTRAP_SERVERS, &bootstrap)
        .env(wiring::KAFKA_TOPIC, &topic)
        .env(wiring::KAFKA_GROUP_ID, names::unique("ns.shop.invoicing"))
        .env(wiring::KAFKA_GROUP_PROTOCOL, "consumer")
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("binary starts");
    let url = format!("http://127.0.0.1:{port}/api/invoices/5");
    wait_until("invoice 5 served by the binary", Duration::from_secs(60), || {
        let url = url.clone();
        async move { reqwest::get(&url).await.is_ok_and(|r| r.status().is_success()) }
    })
    .await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "the binary did not exit within 30 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let text = std::fs::read_to_string(&log_path).expect("log");
    assert!(exit.success(), "exit {exit:?}; log:\n{text}");
    for needle in [
        "SIGTERM received",
        "partitions assigned",
        "offsets committed, leaving the group",
    ] {
        assert!(text.contains(needle), "log lacks {needle:?}:\n{text}");
    }
    assert!(
        !text.contains(&db.password),
        "the database password reached the log"
    );
    let json_lines = text
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
        .count();
    assert!(json_lines >= 3, "LOG_FORMAT=json writes JSON lines:\n{text}");
    let _ = std::fs::remove_file(&log_path);
}
