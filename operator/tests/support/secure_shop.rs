//! The three services in the test process against a test's own secured broker, each configured with the
//! flags its pod's env would carry (its own database Secret, `sslmode=verify-full`, and the Kafka settings
//! the test gives it), and one order placed and awaited in invoicing and shipping. Included by the tests
//! that run the services (`#[path]`).

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Parser;
use ordersystem_e2e::control_plane::secret_value;
use ordersystem_e2e::wait;
use ordersystem_service_kit::shutdown::Trigger;

pub const SERVICES: [&str; 3] = ["invoicing", "shipping", "order"];

type Running = (
    &'static str,
    std::net::SocketAddr,
    Trigger,
    tokio::task::JoinHandle<()>,
);

pub struct Shop {
    running: Vec<Running>,
    http: reqwest::Client,
}

impl Shop {
    /// Starts the services of the `OrderSystem` `shop` in `namespace` on `bootstrap` and `topic`; `kafka`
    /// holds each service's Kafka security flags.
    pub async fn start(
        client: &kube::Client,
        namespace: &str,
        bootstrap: &str,
        topic: &str,
        kafka: &BTreeMap<&'static str, Vec<String>>,
    ) -> Self {
        ordersystem_service_kit::telemetry::init(ordersystem_service_kit::config::LogFormat::Text, "test");
        let mut running = Vec::new();
        for service in SERVICES {
            let db_secret = format!("shop-{service}-db");
            let db = |key: &'static str| secret_value(client, namespace, &db_secret, key);
            let mut args = vec![
                service.to_string(),
                format!("--database-host={}", db("host").await),
                format!("--database-port={}", db("port").await),
                format!("--database-name={}", db("dbname").await),
                format!("--database-user={}", db("username").await),
                format!("--database-password={}", db("password").await),
                format!("--database-schema={}", db("schema").await),
                "--database-sslmode=verify-full".into(),
                format!("--database-sslrootcert={}", ordersystem_e2e::env::postgres_ca()),
                format!("--kafka-bootstrap-servers={bootstrap}"),
                format!("--kafka-topic={topic}"),
            ];
            args.extend(kafka.get(service).cloned().unwrap_or_default());
            if service != "order" {
                args.push(format!("--kafka-group-id={namespace}.shop.{service}"));
            }
            running.push(spawn(service, args).await);
        }
        Self {
            running,
            http: reqwest::Client::new(),
        }
    }

    fn addr(&self, service: &str) -> std::net::SocketAddr {
        self.running
            .iter()
            .find(|r| r.0 == service)
            .map(|r| r.1)
            .expect("service runs")
    }

    /// Places one order through order's API and waits until invoicing and shipping each hold exactly
    /// that order; its id.
    pub async fn order_reaches_invoicing_and_shipping(&self) -> i64 {
        let order = serde_json::json!({
            "customerId": 1,
            "shippingAddress": {"street": "Ohlauer Str. 43", "zip": "10999", "city": "Berlin"},
            "billingAddress": {"street": "Krischerstr. 100", "zip": "40789", "city": "Monheim am Rhein"},
            "orderLine": [{"count": 2, "itemId": 1}]
        });
        let response = self
            .http
            .post(format!("http://{}/api/orders", self.addr("order")))
            .json(&order)
            .send()
            .await
            .expect("order answers");
        assert_eq!(response.status(), 201, "order accepted");
        let created: serde_json::Value = response.json().await.expect("json");
        let placed = created["id"].as_i64().expect("order id");
        for (service, path) in [("invoicing", "/api/invoices"), ("shipping", "/api/shipments")] {
            let what = format!("order {placed} at {service}");
            wait::until_some(&what, Duration::from_secs(60), || {
                let (http, url) = (self.http.clone(), format!("http://{}{path}", self.addr(service)));
                async move {
                    let stored: serde_json::Value = http.get(&url).send().await.ok()?.json().await.ok()?;
                    let ids: Vec<i64> = stored
                        .as_array()?
                        .iter()
                        .filter_map(|v| v["orderId"].as_i64())
                        .collect();
                    (ids == [placed]).then_some(())
                }
            })
            .await;
        }
        placed
    }

    pub async fn stop(self) {
        for (_, _, trigger, task) in self.running {
            trigger.fire();
            let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
        }
    }
}

async fn spawn(service: &'static str, args: Vec<String>) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (trigger, shutdown) = ordersystem_service_kit::shutdown::channel();
    let task = match service {
        "order" => {
            let config = ordersystem_order::config::Config::parse_from(args);
            tokio::spawn(async move {
                ordersystem_order::run(config, listener, shutdown)
                    .await
                    .expect("order ran")
            })
        }
        "invoicing" => {
            let config = ordersystem_invoicing::config::Config::parse_from(args);
            tokio::spawn(async move {
                ordersystem_invoicing::run(config, listener, shutdown)
                    .await
                    .expect("invoicing ran")
            })
        }
        _ => {
            let config = ordersystem_shipping::config::Config::parse_from(args);
            tokio::spawn(async move {
                ordersystem_shipping::run(config, listener, shutdown)
                    .await
                    .expect("shipping ran")
            })
        }
    };
    let http = reqwest::Client::new();
    wait::until_some(&format!("{service} ready"), Duration::from_secs(60), || {
        let (http, url) = (http.clone(), format!("http://{addr}/readyz"));
        async move {
            http.get(&url)
                .send()
                .await
                .ok()?
                .status()
                .is_success()
                .then_some(())
        }
    })
    .await;
    (service, addr, trigger, task)
}
