//! The three services as real processes (the built binaries, configured through the environment names the
//! operator sets), so a test can kill one with SIGKILL and start it again; a bounded stream of orders while
//! that happens; and the end check of every fault: each order the order service stored has exactly one
//! invoice and one shipment, and nothing was dead-lettered.

use super::wait_until;
use ordersystem_contract::wiring::env as wiring;
use ordersystem_testkit::schema::ServiceDb;
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Orders each fault test sends at least: a CI-sized run by default, more with `RELIABILITY_ORDERS`.
pub fn orders_per_test() -> usize {
    std::env::var("RELIABILITY_ORDERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300)
}

/// The target directory the tests were built into (`<target>/debug/deps/<test>` is running).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.ancestors()
        .nth(3)
        .expect("test executable lives in <target>/<profile>/deps")
        .to_path_buf()
}

fn cargo_build(args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(["build", "--locked", "--target-dir"])
        .arg(target_dir())
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cargo}: {e}"));
    assert!(status.success(), "cargo build {args:?} failed");
}

/// A built binary of this workspace: `ordersystem-invoicing`, `ordersystem-shipping`, or
/// `ordersystem-order-failpoints` (order with crash points, built only here: the feature never reaches a
/// default build, and building only this binary leaves `ordersystem-order` as it was).
pub fn binary(name: &str) -> PathBuf {
    if name == "ordersystem-order-failpoints" {
        cargo_build(&[
            "-p",
            "ordersystem-order",
            "--features",
            "failpoints",
            "--bin",
            name,
        ]);
    } else {
        cargo_build(&["-p", name, "--bin", name]);
    }
    target_dir().join("debug").join(name)
}

/// Several binaries of [`binary`], built off the async runtime.
pub async fn binaries<const N: usize>(names: [&'static str; N]) -> [PathBuf; N] {
    tokio::task::spawn_blocking(move || names.map(binary))
        .await
        .expect("cargo build ran")
}

/// Starts each service, then waits until every one answers `/readyz`.
pub async fn start_all(services: &mut [&mut ServiceProcess]) {
    for service in services.iter_mut() {
        service.start(&[]);
    }
    for service in services.iter() {
        service.wait_ready().await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// One service binary; killed when dropped. Its port and log file stay the same across restarts, so a
/// client keeps its URL and the log holds every incarnation.
pub struct ServiceProcess {
    pub db: ServiceDb,
    pub port: u16,
    bin: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl ServiceProcess {
    /// The database and Kafka settings the operator would set; `extra` adds service-specific ones.
    pub fn new(bin: PathBuf, db: ServiceDb, bootstrap: &str, topic: &str, extra: &[(&str, &str)]) -> Self {
        let port = free_port();
        let mut env: Vec<(String, String)> = [
            (wiring::LISTEN_ADDR, format!("127.0.0.1:{port}")),
            (wiring::LOG_FORMAT, "text".into()),
            (wiring::DATABASE_HOST, db.host.clone()),
            (wiring::DATABASE_PORT, db.port.to_string()),
            (wiring::DATABASE_NAME, db.name.clone()),
            (wiring::DATABASE_USER, db.user.clone()),
            (wiring::DATABASE_PASSWORD, db.password.clone()),
            (wiring::DATABASE_SCHEMA, db.schema.clone()),
            (wiring::DATABASE_SSLMODE, "prefer".into()),
            (wiring::KAFKA_BOOTSTRAP_SERVERS, bootstrap.into()),
            (wiring::KAFKA_TOPIC, topic.into()),
            (wiring::KAFKA_METADATA_REFRESH_MS, "5000".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let stem = bin.file_name().and_then(|n| n.to_str()).unwrap_or("service");
        let log = std::env::temp_dir().join(format!("{}.log", ordersystem_testkit::names::unique(stem)));
        Self {
            db,
            port,
            bin,
            env,
            log,
            child: None,
        }
    }

    /// A consumer service in group `group` with short timeouts, so a killed member is noticed quickly.
    pub fn consumer(bin: PathBuf, db: ServiceDb, bootstrap: &str, topic: &str, group: &str) -> Self {
        Self::new(
            bin,
            db,
            bootstrap,
            topic,
            &[
                (wiring::KAFKA_GROUP_ID, group),
                (wiring::KAFKA_GROUP_PROTOCOL, "consumer"),
                (wiring::KAFKA_MAX_POLL_INTERVAL_MS, "10000"),
                (wiring::RETRY_BACKOFF_MS, "200"),
                (wiring::RETRY_BACKOFF_MAX_MS, "1000"),
            ],
        )
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Start (again), with `extra` environment for this incarnation only.
    pub fn start(&mut self, extra: &[(&str, &str)]) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(&self.bin)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra.iter().copied())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        self.child = Some(child);
    }

    /// Wait until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        let url = self.url("/readyz");
        wait_until(
            &format!("{} ready", self.bin.display()),
            Duration::from_secs(60),
            || {
                let url = url.clone();
                async move { reqwest::get(&url).await.is_ok_and(|r| r.status().is_success()) }
            },
        )
        .await;
    }

    /// Whether the process started last is still running (was never restarted behind the test's back).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| child.try_wait().expect("wait").is_none())
    }

    /// SIGKILL: no shutdown hook, no commit, no leaving the group.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reaped");
        }
    }

    /// SIGTERM, and wait for the exit.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
            wait_until("the service exits after SIGTERM", Duration::from_secs(30), || {
                let exited = child.try_wait().expect("wait").is_some();
                async move { exited }
            })
            .await;
        }
    }

    /// The database password never reaches the log (every incarnation's).
    pub fn assert_no_password_in_log(&self) {
        assert!(
            !self.log().contains(&self.db.password),
            "{} logged its database password",
            self.bin.display()
        );
    }

    /// Everything every incarnation logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn wait_log(&self, needle: &str) {
        wait_until(
            &format!("{needle:?} in the log"),
            Duration::from_secs(60),
            || async { self.log().contains(needle) },
        )
        .await;
    }

    /// A metric of the running incarnation (counters start at 0 with every start).
    pub async fn metric(&self, name: &str) -> f64 {
        ordersystem_testkit::metrics::scrape(&self.url("/metrics"), name).await
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- {} ---\n{}", self.log.display(), self.log());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// Orders per second the load sends: bounded, so the services are tested, not the machine.
pub fn orders_per_second() -> u64 {
    std::env::var("RELIABILITY_RATE")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(50)
}

/// A steady stream of orders from a few workers at `orders_per_second`, until `finish`. A refused or
/// failed attempt (the service is down) is counted, and the next attempt is a new order.
pub struct Load {
    accepted: Arc<Mutex<BTreeSet<i64>>>,
    failed: Arc<AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

/// Orders in flight at once.
const WORKERS: u64 = 4;

impl Load {
    pub fn start(base_url: String) -> Self {
        let accepted = Arc::new(Mutex::new(BTreeSet::new()));
        let failed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let period = Duration::from_millis(1000 * WORKERS / orders_per_second().max(1));
        let workers = (0..WORKERS)
            .map(|worker| {
                let (accepted, failed, stop, url) = (
                    Arc::clone(&accepted),
                    Arc::clone(&failed),
                    Arc::clone(&stop),
                    format!("{base_url}/api/orders"),
                );
                tokio::spawn(async move {
                    let client = reqwest::Client::builder()
                        .timeout(Duration::from_secs(30))
                        .build()
                        .expect("client");
                    let mut pace = tokio::time::interval(period);
                    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    for n in (worker..).step_by(WORKERS as usize) {
                        pace.tick().await;
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        match place(&client, &url, n).await {
                            Some(id) => {
                                accepted.lock().expect("lock").insert(id);
                            }
                            None => {
                                failed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        Self {
            accepted,
            failed,
            stop,
            workers,
        }
    }

    pub fn accepted_count(&self) -> usize {
        self.accepted.lock().expect("lock").len()
    }

    /// Wait until `n` more orders than now were accepted.
    pub async fn wait_more(&self, n: usize) {
        let goal = self.accepted_count() + n;
        self.wait_accepted(goal).await;
    }

    /// Wait until at least `n` orders were accepted in all.
    pub async fn wait_accepted(&self, n: usize) {
        wait_until(
            &format!("{n} orders accepted"),
            Duration::from_secs(120),
            || async { self.accepted_count() >= n },
        )
        .await;
    }

    /// Stop once at least `at_least` orders were accepted; returns the accepted ids and how many
    /// attempts failed.
    pub async fn finish(self, at_least: usize) -> (BTreeSet<i64>, u64) {
        self.wait_accepted(at_least).await;
        self.stop.store(true, Ordering::Relaxed);
        for worker in self.workers {
            worker.await.expect("load worker");
        }
        let accepted = self.accepted.lock().expect("lock").clone();
        (accepted, self.failed.load(Ordering::Relaxed))
    }
}

async fn place(client: &reqwest::Client, url: &str, n: u64) -> Option<i64> {
    let body = json!({
        "customerId": n % 2 + 1,
        "shippingAddress": {"street": format!("Street {n}"), "zip": "10999", "city": "Berlin"},
        "billingAddress": {"street": "Krischerstr. 100", "zip": "40789", "city": "Monheim am Rhein"},
        "orderLine": [{"count": n % 5 + 1, "itemId": n % 4 + 1}]
    });
    let response = client.post(url).json(&body).send().await.ok()?;
    if response.status() != 201 {
        return None;
    }
    response.json::<serde_json::Value>().await.ok()?["id"].as_i64()
}

async fn ids(db: &ServiceDb, sql: &str) -> BTreeSet<i64> {
    let mut conn = db.connect().await;
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_all(&mut conn)
        .await
        .expect("ids")
        .into_iter()
        .collect()
}

async fn count(db: &ServiceDb, sql: &str) -> i64 {
    super::count(db, sql).await
}

/// A valid event for order `id`, as another writer on the topic would send it.
pub fn foreign_event(id: i64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": id,
        "customer": {"customerId": 1, "name": "Wolff", "firstname": "Eberhard", "email": "eberhard.wolff@gmail.com"},
        "updated": 1_685_091_732_000_i64,
        "shippingAddress": {"street": "Ohlauer Str. 43", "zip": "10999", "city": "Berlin"},
        "billingAddress": {"street": "Krischerstr. 100", "zip": "40789", "city": "Monheim am Rhein"},
        "orderLine": [{"count": 1, "item": {"itemId": 1, "name": "iPod", "price": 42.0}}],
        "numberOfLines": 1
    }))
    .expect("json")
}

/// The end of every fault: the outbox drains, every stored order (accepted or not answered) and every
/// `foreign` event (put on the topic by the test) has exactly one invoice and one shipment, every accepted
/// order is stored, and no dead letter was written. Returns the number of stored orders.
pub async fn assert_exactly_once(
    order: &ServiceDb,
    invoicing: &ServiceDb,
    shipping: &ServiceDb,
    accepted: &BTreeSet<i64>,
    foreign: &BTreeSet<i64>,
) -> usize {
    let extra = i64::try_from(foreign.len()).expect("count");
    wait_until(
        "outbox drained and every order invoiced and shipped",
        Duration::from_secs(120),
        || async {
            let orders = count(order, "SELECT count(*) FROM orders").await + extra;
            count(order, "SELECT count(*) FROM outbox WHERE sent_at IS NULL").await == 0
                && count(invoicing, "SELECT count(*) FROM invoices").await == orders
                && count(shipping, "SELECT count(*) FROM shipments").await == orders
        },
    )
    .await;
    let orders = ids(order, "SELECT id FROM orders").await;
    assert!(
        accepted.is_subset(&orders),
        "accepted orders missing from the order database: {:?}",
        accepted.difference(&orders).collect::<Vec<_>>()
    );
    let stored: BTreeSet<i64> = orders.union(foreign).copied().collect();
    // invoices.order_id and shipments.order_id are primary keys: equal sets mean exactly once each.
    assert_eq!(
        ids(invoicing, "SELECT order_id FROM invoices").await,
        stored,
        "invoices"
    );
    assert_eq!(
        ids(shipping, "SELECT order_id FROM shipments").await,
        stored,
        "shipments"
    );
    assert_eq!(
        count(order, "SELECT count(*) FROM outbox").await,
        i64::try_from(orders.len()).expect("count"),
        "one outbox row per order"
    );
    for (db, service) in [(invoicing, "invoicing"), (shipping, "shipping")] {
        assert_eq!(
            count(db, "SELECT count(*) FROM dead_letters").await,
            0,
            "{service} dead-lettered a good event"
        );
    }
    orders.len()
}

/// How often each key was published on `topic`: read from the beginning until every id in `expected` was
/// seen, then 3 s longer so a late duplicate would be counted too.
pub async fn records_per_key(bootstrap: &str, topic: &str, expected: &BTreeSet<i64>) -> HashMap<i64, usize> {
    use rdkafka::ClientConfig;
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::message::Message;
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", ordersystem_testkit::names::unique("topic-check"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut seen: HashMap<i64, usize> = HashMap::new();
    let mut until = None;
    loop {
        let wait = until.map_or(Duration::from_secs(60), |at: tokio::time::Instant| {
            at.saturating_duration_since(tokio::time::Instant::now())
        });
        match tokio::time::timeout(wait, consumer.recv()).await {
            Ok(message) => {
                let message = message.expect("receive");
                let key = message.key().and_then(|k| std::str::from_utf8(k).ok());
                let id: i64 = key.and_then(|k| k.parse().ok()).expect("order id key");
                *seen.entry(id).or_default() += 1;
                if until.is_none() && expected.iter().all(|id| seen.contains_key(id)) {
                    until = Some(tokio::time::Instant::now() + Duration::from_secs(3));
                }
            }
            Err(_) if until.is_some() => return seen,
            Err(_) => panic!(
                "not every order reached the topic: {} of {} seen",
                seen.len(),
                expected.len()
            ),
        }
    }
}
