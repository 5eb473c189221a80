//! The outbox relay against the real broker and database: per-key order across a relay restart, with two
//! relays at once and with one relay's rounds overlapping; exactly one publication per row; a row the
//! producer refuses holds back only its own key; and the partition of each key equal to the Java client's
//! murmur2 choice; a round's asynchronous commit stays its own, and an abandoned round gives its rows back;
//! published rows are deleted after their retention, nothing else.

use ordersystem_contract::partition::partition_for_key;
use ordersystem_service_kit::config::{DatabaseArgs, KafkaArgs};
use ordersystem_service_kit::db::{Database, WarmConnections};
use ordersystem_service_kit::metrics::Metrics;
use ordersystem_service_kit::relay::store::{self, Round, delete_sent_before};
use ordersystem_service_kit::relay::{BATCH, Relay, RelaySettings};
use ordersystem_service_kit::shutdown;
use ordersystem_testkit::kafka::{create_topic, read_from_start};
use ordersystem_testkit::service::database_args;
use ordersystem_testkit::{env, names, schema};

use rdkafka::message::Message;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

const PARTITIONS: i32 = 4;

async fn sent_count(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL")
        .fetch_one(pool)
        .await
        .expect("count")
}

/// A fresh schema with the outbox table, made by the kit's own migration as every service gets it, and a
/// pool of at most `max_connections` as the schema's own role.
async fn outbox_db(prefix: &str, max_connections: u32) -> (schema::ServiceDb, Database) {
    let service_db = schema::fresh_schema(prefix).await;
    let args = DatabaseArgs {
        max_connections,
        ..database_args(&service_db)
    };
    let db = Database::connect_lazy(&args).expect("pool");
    store::MIGRATOR
        .run(&db.pool)
        .await
        .expect("outbox table in the service's own schema");
    (service_db, db)
}

async fn insert(pool: &sqlx::PgPool, key: &str, payload: &[u8]) {
    sqlx::query("INSERT INTO outbox (record_key, payload) VALUES ($1, $2)")
        .bind(key)
        .bind(payload)
        .execute(pool)
        .await
        .expect("insert");
}

fn kafka_args(bootstrap: &str, topic: &str) -> KafkaArgs {
    KafkaArgs {
        bootstrap_servers: bootstrap.to_string(),
        topic: topic.to_string(),
        metadata_refresh_ms: 30_000,
        security: Default::default(),
    }
}

fn settings() -> RelaySettings {
    RelaySettings {
        message_timeout: Duration::from_secs(30),
        idle_poll: Duration::from_millis(50),
        keep_sent: Duration::from_secs(3_600),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_keep_per_key_order_across_restart_and_place_keys_like_java() {
    let bootstrap = env::kafka_bootstrap();
    let topic = names::unique("relay");
    create_topic(&bootstrap, &topic, PARTITIONS).await;
    let (_, db) = outbox_db("relay", 5).await;
    // 8 keys × 15 events, interleaved as concurrent orders would be.
    let keys: Vec<String> = (1..=8).map(|k| (k * 7919).to_string()).collect();
    for seq in 0..15 {
        for key in &keys {
            insert(&db.pool, key, format!("{key}:{seq}").as_bytes()).await;
        }
    }
    let total = (keys.len() * 15) as i64;
    let (kafka, settings) = (kafka_args(&bootstrap, &topic), settings());
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

    let consumer = read_from_start(&bootstrap, &topic);
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

/// Everything on `topic` from the start, as key → payloads in topic order, once `expected` records arrived.
async fn read_topic(bootstrap: &str, topic: &str, expected: usize) -> HashMap<String, Vec<String>> {
    let consumer = read_from_start(bootstrap, topic);
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for count in 0..expected {
        let message = tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            consumer.recv(),
        )
        .await
        .unwrap_or_else(|_| panic!("only {count} of {expected} events arrived"))
        .expect("receive");
        let key = String::from_utf8(message.key().expect("keyed").to_vec()).expect("utf-8 key");
        let payload = message.payload().expect("payload");
        let payload = String::from_utf8_lossy(&payload[..payload.len().min(64)]).into_owned();
        seen.entry(key).or_default().push(payload);
    }
    seen
}

/// One relay, rounds overlapping (a full round of keys' first rows, then the next keys' while the first
/// round awaits its acknowledgements). The oldest row of one key is refused by the producer (larger than
/// `message.max.bytes`): its round marks only the others, the refused row stays unsent, and the key's later
/// rows are held back (never published ahead of it) while every other key drains in order. Once the row
/// is fixed, the key's events follow in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_rounds_keep_per_key_order_and_a_refused_row_holds_back_only_its_key() {
    let bootstrap = env::kafka_bootstrap();
    let topic = names::unique("relay-overlap");
    create_topic(&bootstrap, &topic, PARTITIONS).await;
    let (_, db) = outbox_db("relay_overlap", 5).await;
    const HELD: &str = "held";
    const SEQS: usize = 3;
    // More keys than two rounds take, so a round is due while the one before awaits acknowledgements.
    let keys: Vec<String> = (1..=2 * BATCH + 200).map(|k| (k * 104_729).to_string()).collect();
    let too_large = vec![b'x'; 2 * 1024 * 1024];
    insert(&db.pool, HELD, &too_large).await;
    for seq in 0..SEQS {
        for key in &keys {
            insert(&db.pool, key, format!("{key}:{seq}").as_bytes()).await;
        }
        insert(&db.pool, HELD, format!("{HELD}:{}", seq + 1).as_bytes()).await;
    }
    let others = (keys.len() * SEQS) as i64;
    let metrics = Metrics::new();
    let wake = Arc::new(Notify::new());
    let relay = Relay::new(
        &kafka_args(&bootstrap, &topic),
        &settings(),
        db.pool.clone(),
        metrics.clone(),
        Arc::clone(&wake),
    )
    .expect("relay");
    let (stop, waiter) = shutdown::channel();
    let running = tokio::spawn(relay.run(waiter));

    let deadline = Instant::now() + Duration::from_secs(90);
    while sent_count(&db.pool).await < others {
        assert!(Instant::now() < deadline, "other keys not drained within 90 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        metrics.relay_rounds_overlapped.get() > 0,
        "a round was published while an earlier one awaited its acknowledgements"
    );
    let unsent: Vec<(String, i64)> =
        sqlx::query_as("SELECT record_key, id FROM outbox WHERE sent_at IS NULL ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .expect("unsent rows");
    assert_eq!(
        unsent.len(),
        SEQS + 1,
        "only the held key's rows are unsent: {unsent:?}"
    );
    assert!(unsent.iter().all(|(key, _)| key == HELD));
    assert_eq!(
        metrics.events_produced.get(),
        others as u64,
        "nothing of the held key was published"
    );

    // Fix the refused row: the relay publishes it, then the key's later rows, in order.
    sqlx::query("UPDATE outbox SET payload = $1 WHERE id = $2")
        .bind(format!("{HELD}:0").into_bytes())
        .bind(unsent[0].1)
        .execute(&db.pool)
        .await
        .expect("fix the refused row");
    wake.notify_one();
    let total = others + (SEQS + 1) as i64;
    while sent_count(&db.pool).await < total {
        assert!(Instant::now() < deadline, "held key not drained within 90 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.fire();
    running.await.expect("relay stopped");

    let seen = read_topic(&bootstrap, &topic, total as usize).await;
    let expected: Vec<String> = (0..=SEQS).map(|seq| format!("{HELD}:{seq}")).collect();
    assert_eq!(
        seen.get(HELD),
        Some(&expected),
        "the held key: once each, in order"
    );
    for key in &keys {
        let expected: Vec<String> = (0..SEQS).map(|seq| format!("{key}:{seq}")).collect();
        assert_eq!(
            seen.get(key),
            Some(&expected),
            "key {key}: out of order, lost or duplicated"
        );
    }
    assert_eq!(seen.len(), keys.len() + 1, "no other keys on the topic");
}

/// A round's transaction commits without waiting for its flush, and only it: its connection, kept for the
/// next round, commits durably afterwards, as an order's insert on it must. A round dropped unfinished (a
/// failure on the way) gives its rows back at once and leaves no transaction on any connection.
#[tokio::test]
async fn a_round_commits_asynchronously_and_an_abandoned_round_gives_its_rows_back() {
    // Every round and check below is on the one connection there is.
    let (service_db, db) = outbox_db("relay", 1).await;
    insert(&db.pool, "finished", b"1").await;
    let warm = WarmConnections::new(db.pool.clone());

    let (mut round, rows) = Round::lock_next(&warm, BATCH).await.expect("round begins");
    assert_eq!(rows.len(), 1, "the row is locked by the round");
    assert_eq!(
        (rows[0].key.as_str(), rows[0].payload.as_slice()),
        ("finished", b"1".as_slice())
    );
    assert_eq!(synchronous_commit(&mut round).await, "off", "inside the round");
    round
        .finish(&warm, &[rows[0].id])
        .await
        .expect("marked and committed");
    let mut kept = warm.take().await.expect("the round's connection, kept");
    assert_eq!(synchronous_commit(&mut kept).await, "on", "after the round");
    drop(kept);
    assert_eq!(sent_count(&db.pool).await, 1, "the mark committed");

    insert(&db.pool, "abandoned", b"2").await;
    let (mut round, rows) = Round::lock_next(&warm, BATCH).await.expect("round begins");
    assert_eq!(rows.len(), 1);
    let abandoned = rows[0].id;
    let abandoned_session: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *round)
        .await
        .expect("query");
    drop(round);
    // The abandoned round's session ends and the pool opens another; until the server has ended the old
    // one, its lock may still be held, so the next round may first find nothing.
    let deadline = Instant::now() + Duration::from_secs(10);
    let rows = loop {
        let (round, rows) = Round::lock_next(&warm, BATCH).await.expect("round begins");
        if !rows.is_empty() || Instant::now() > deadline {
            drop(round);
            break rows;
        }
        round.finish(&warm, &[]).await.expect("empty round ends");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        rows.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![abandoned],
        "the abandoned round's row is eligible again, unsent"
    );
    let mut check = service_db.connect().await;
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = $1")
        .bind(abandoned_session)
        .fetch_one(&mut check)
        .await
        .expect("query");
    assert_eq!(
        sessions, 0,
        "the abandoned round's session was closed, not pooled"
    );
}

async fn synchronous_commit(conn: &mut sqlx::PgConnection) -> String {
    sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(conn)
        .await
        .expect("show synchronous_commit")
}

/// Published rows older than the retention are deleted, in several statements when there are many; an
/// unsent row, and every row after it, stays until it is published and old too; a young row stays.
#[tokio::test]
async fn published_rows_past_their_retention_are_deleted_and_nothing_else() {
    let (_, db) = outbox_db("relay", 5).await;
    let two_hours = Some(7_200.0);
    sqlx::query(
        "INSERT INTO outbox (record_key, payload, sent_at)
         SELECT 'old-' || g, 'x', now() - make_interval(secs => $1) FROM generate_series(1, 12000) g",
    )
    .bind(two_hours)
    .execute(&db.pool)
    .await
    .expect("old rows");
    for (key, sent_ago) in [
        ("unsent", None),
        ("old-after-unsent", two_hours),
        ("young", Some(1.0)),
    ] {
        sqlx::query(
            "INSERT INTO outbox (record_key, payload, sent_at) VALUES ($1, 'x', now() - make_interval(secs => $2))",
        )
        .bind(key)
        .bind(sent_ago)
        .execute(&db.pool)
        .await
        .expect("row");
    }
    let keep = Duration::from_secs(3_600);
    let left = || async {
        sqlx::query_scalar::<_, String>("SELECT record_key FROM outbox ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .expect("rows left")
    };

    assert_eq!(delete_sent_before(&db.pool, keep).await.expect("delete"), 12_000);
    assert_eq!(left().await, ["unsent", "old-after-unsent", "young"]);

    sqlx::query("UPDATE outbox SET sent_at = now() - make_interval(secs => $1) WHERE record_key = 'unsent'")
        .bind(two_hours)
        .execute(&db.pool)
        .await
        .expect("published long ago");
    assert_eq!(delete_sent_before(&db.pool, keep).await.expect("delete"), 2);
    assert_eq!(left().await, ["young"]);
    assert_eq!(delete_sent_before(&db.pool, keep).await.expect("delete"), 0);
}
