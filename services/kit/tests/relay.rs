//! The outbox relay against the real broker and database: per-key order across a relay restart and with
//! two relays at once, exactly one publication per row, and the partition of each key equal to the Java
//! client's murmur2 choice.

use ordersystem_contract::partition::partition_for_key;
use ordersystem_service_kit::config::{DatabaseArgs, KafkaArgs};
use ordersystem_service_kit::db::Database;
use ordersystem_service_kit::metrics::Metrics;
use ordersystem_service_kit::relay::{Relay, RelaySettings};
use ordersystem_service_kit::shutdown;
use ordersystem_testkit::{env, names, schema};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PARTITIONS: i32 = 4;

async fn create_topic(bootstrap: &str, topic: &str) {
    let admin: AdminClient<_> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("create topic request");
    for result in results {
        result.expect("topic created");
    }
}

fn database_args(db: &schema::ServiceDb) -> DatabaseArgs {
    DatabaseArgs {
        host: db.host.clone(),
        port: db.port,
        name: db.name.clone(),
        user: db.user.clone(),
        password: db.password.clone().into(),
        schema: db.schema.clone(),
        sslmode: "prefer".into(),
        sslrootcert: None,
        max_connections: 5,
    }
}

async fn sent_count(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL")
        .fetch_one(pool)
        .await
        .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_keep_per_key_order_across_restart_and_place_keys_like_java() {
    let bootstrap = env::kafka_bootstrap();
    let topic = names::unique("relay");
    create_topic(&bootstrap, &topic).await;
    let service_db = schema::fresh_schema("relay").await;
    let db = Database::connect_lazy(&database_args(&service_db)).expect("pool");
    sqlx::raw_sql(
        "CREATE TABLE outbox (id BIGSERIAL PRIMARY KEY, record_key TEXT NOT NULL, payload BYTEA NOT NULL,
           created_at TIMESTAMPTZ NOT NULL DEFAULT now(), sent_at TIMESTAMPTZ);
         CREATE INDEX outbox_unsent ON outbox (record_key, id) WHERE sent_at IS NULL;",
    )
    .execute(&db.pool)
    .await
    .expect("outbox table in the service's own schema");
    // 8 keys × 15 events, interleaved as concurrent orders would be.
    let keys: Vec<String> = (1..=8).map(|k| (k * 7919).to_string()).collect();
    for seq in 0..15 {
        for key in &keys {
            sqlx::query("INSERT INTO outbox (record_key, payload) VALUES ($1, $2)")
                .bind(key)
                .bind(format!("{key}:{seq}").into_bytes())
                .execute(&db.pool)
                .await
                .expect("insert");
        }
    }
    let total = (keys.len() * 15) as i64;
    let kafka = KafkaArgs {
        bootstrap_servers: bootstrap.clone(),
        topic: topic.clone(),
        metadata_refresh_ms: 30_000,
        security: Default::default(),
    };
    let settings = RelaySettings {
        message_timeout: Duration::from_secs(30),
        idle_poll: Duration::from_millis(50),
    };
    let start = |trigger_and_wait: shutdown::Shutdown| {
        let relay =
            Relay::new(&kafka, &settings, db.pool.clone(), Metrics::new(), Arc::default()).expect("relay");
        tokio::spawn(relay.run(trigger_and_wait))
    };
    // Two relays at once (two order replicas); the first is stopped mid-stream and started again.
    let (stop_a, wait_a) = shutdown::channel();
    let (stop_b, wait_b) = shutdown::channel();
    let relay_a = start(wait_a);
    let relay_b = start(wait_b);
    let deadline = Instant::now() + Duration::from_secs(60);
    while sent_count(&db.pool).await < 16 {
        assert!(Instant::now() < deadline, "relays published nothing within 60 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_a.fire();
    relay_a.await.expect("relay a stopped");
    let (stop_a2, wait_a2) = shutdown::channel();
    let relay_a2 = start(wait_a2);
    while sent_count(&db.pool).await < total {
        assert!(Instant::now() < deadline, "outbox not drained within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_a2.fire();
    stop_b.fire();
    relay_a2.await.expect("relay a2 stopped");
    relay_b.await.expect("relay b stopped");

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", names::unique("relay-check"))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let mut seen: HashMap<String, Vec<u32>> = HashMap::new();
    let mut count = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while count < total {
        let message = tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            consumer.recv(),
        )
        .await
        .unwrap_or_else(|_| panic!("only {count} of {total} events arrived"))
        .expect("receive");
        let key = String::from_utf8(message.key().expect("keyed").to_vec()).expect("utf-8 key");
        assert_eq!(
            message.partition(),
            partition_for_key(key.as_bytes(), PARTITIONS),
            "key {key} is not on the partition the Java client would choose"
        );
        let payload = String::from_utf8(message.payload().expect("payload").to_vec()).expect("utf-8");
        let (payload_key, seq) = payload.split_once(':').expect("key:seq");
        assert_eq!(payload_key, key);
        seen.entry(key).or_default().push(seq.parse().expect("seq"));
        count += 1;
    }
    for key in &keys {
        let expected: Vec<u32> = (0..15).collect();
        assert_eq!(
            seen.get(key),
            Some(&expected),
            "key {key}: events out of order, lost or duplicated"
        );
    }
}
