//! The benchmark tool itself works: a tiny `services` run against the real Kafka and Postgres drives orders
//! through the built service binaries, passes its exactly-once check and writes its JSON. No figure is
//! asserted: the benchmark is the measure, not the test.

use std::process::Command;

#[test]
fn a_tiny_services_run_checks_exactly_once_and_writes_json() {
    let json = std::env::temp_dir().join(format!(
        "{}.json",
        ordersystem_testkit::names::unique("bench-smoke")
    ));
    let output = Command::new(env!("CARGO_BIN_EXE_ordersystem-bench"))
        .args([
            "services",
            "--rate",
            "50",
            "--count",
            "40",
            "--warmup",
            "0",
            "--duration",
            "20",
        ])
        .args([
            "--replicas",
            "2",
            "--partitions",
            "3",
            "--drain-timeout",
            "60",
            "--json",
        ])
        .arg(&json)
        .env("KAFKA_BOOTSTRAP", ordersystem_testkit::env::kafka_bootstrap())
        .env("DATABASE_URL", ordersystem_testkit::env::database_url())
        .output()
        .expect("the bench binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "bench failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stderr.contains("[bench]"),
        "progress is shown while it runs:\n{stderr}"
    );
    assert!(
        stdout.contains("exactly once          OK"),
        "the table reports the check:\n{stdout}"
    );

    let text = std::fs::read_to_string(&json).expect("--json writes the file");
    let value: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let report = &value["report"];
    let check = &report["exactly_once"];
    assert_eq!(check["problems"], serde_json::json!([]), "{text}");
    assert_eq!(check["accepted"], 40, "every order was accepted: {text}");
    assert_eq!(check["orders_stored"], 40, "{text}");
    assert_eq!(check["invoices"], 40, "one invoice per order: {text}");
    assert_eq!(check["shipments"], 40, "one shipment per order: {text}");
    assert_eq!(
        report["end_to_end_latency"]["samples"], 40,
        "every order's latency measured: {text}"
    );
    assert_eq!(
        report["processes"].as_array().map(Vec::len),
        Some(5),
        "order + 2 + 2 consumers: {text}"
    );
    assert!(
        report["startup_s"].as_f64().is_some_and(|s| s > 0.0),
        "time until ready measured: {text}"
    );
    assert!(report["machine_cpu_busy_percent"].as_f64().is_some(), "{text}");
    assert!(
        value["machine"]["cores"].as_u64().is_some_and(|c| c > 0),
        "{text}"
    );
    assert_eq!(
        report["durability"]["postgres"]["synchronous_commit"], "on",
        "{text}"
    );
    let _ = std::fs::remove_file(&json);
}
