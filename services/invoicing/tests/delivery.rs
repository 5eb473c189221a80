//! The consumer loop's guarantees, proved with the invoicing service against the real broker and database:
//! redelivery creates nothing twice (and really happened), poison messages and conflicting duplicates are
//! dead-lettered without blocking the partition, two members share the partitions and one takes over when
//! the other stops (both group protocols), a KIP-848 group rolls to static classic members, and a database outage longer than max.poll.interval.ms does not
//! throw the member out of its group; records fetched together share one transaction.

mod support;

use ordersystem_service_kit::config::GroupProtocol;
use ordersystem_testkit::kafka::produce;
use ordersystem_testkit::proxy::Proxy;
use ordersystem_testkit::service::consumer_args;
use ordersystem_testkit::wait::until as wait_until;
use ordersystem_testkit::{env, names, schema};
use std::time::Duration;
use support::*;

const INVOICES: &str = "SELECT count(*) FROM invoices";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redelivered_events_create_nothing_twice_and_are_counted() {
    let bootstrap = env::kafka_bootstrap();
    let topic = names::unique("redeliver");
    create_topic(&bootstrap, &topic, 3).await;
    let db = schema::fresh_schema("invoicing").await;
    for id in 1..=5 {
        produce(&bootstrap, &topic, &id.to_string(), &event(id, id)).await;
    }
    let first = start_in_new_group(db.clone(), &bootstrap, &topic, GroupProtocol::Consumer).await;
    first.wait_count(INVOICES, 5).await;
    // The relay may publish a row twice (crash between acknowledgement and marking it sent).
    produce(&bootstrap, &topic, "3", &event(3, 3)).await;
    wait_until("duplicate counted", Duration::from_secs(60), || async {
        first.metric("ordersystem_duplicates_skipped").await == 1.0
    })
    .await;
    first.stop().await;

    // A member whose offsets were never committed (a crash before the commit) reads everything again:
    // a new group over the same schema is exactly that.
    let again = start_in_new_group(db, &bootstrap, &topic, GroupProtocol::Consumer).await;
    wait_until(
        "all six records redelivered and skipped",
        Duration::from_secs(60),
        || async { again.metric("ordersystem_duplicates_skipped").await == 6.0 },
    )
    .await;
    assert_eq!(
        again.metric("ordersystem_events_consumed").await,
        0.0,
        "nothing was stored a second time"
    );
    assert_eq!(again.count(INVOICES).await, 5);
    assert_eq!(again.count("SELECT count(*) FROM invoice_lines").await, 5);
    assert_eq!(again.count("SELECT count(*) FROM dead_letters").await, 0);
    again.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_messages_and_conflicts_are_dead_lettered_and_the_next_event_is_processed() {
    let bootstrap = env::kafka_bootstrap();
    let topic = names::unique("poison");
    create_topic(&bootstrap, &topic, 1).await;
    let invoicing = start_fresh(&bootstrap, &topic, GroupProtocol::Consumer).await;
    // One partition, so the valid events come after the poison ones in the same partition.
    produce(&bootstrap, &topic, "1", &event(1, 2)).await;
    let (_, bad_offset) = produce(&bootstrap, &topic, "x", b"this is not json").await;
    produce(&bootstrap, &topic, "2", &event(2, 0)).await;
    produce(&bootstrap, &topic, "1", &event(1, 3)).await; // same id, different content
    produce(&bootstrap, &topic, "3", &event(3, 1)).await;
    invoicing
        .wait_count("SELECT count(*) FROM invoices WHERE order_id = 3", 1)
        .await;
    invoicing.wait_count("SELECT count(*) FROM dead_letters", 3).await;
    let mut conn = invoicing.db.connect().await;
    let letters: Vec<(String, i64, Option<Vec<u8>>)> =
        sqlx::query_as(r#"SELECT reason, "offset", payload FROM dead_letters ORDER BY "offset""#)
            .fetch_all(&mut conn)
            .await
            .expect("dead letters");
    assert_eq!(
        letters[0],
        (
            "Undecodable".to_string(),
            bad_offset,
            Some(b"this is not json".to_vec())
        ),
        "raw bytes kept"
    );
    assert_eq!(letters[1].0, "Undecodable", "a count of zero is poison");
    assert_eq!(letters[2].0, "ConflictingDuplicate");
    let kept: i32 = sqlx::query_scalar("SELECT count FROM invoice_lines WHERE order_id = 1")
        .fetch_one(&mut conn)
        .await
        .expect("line");
    assert_eq!(kept, 2, "the first version stays");
    assert_eq!(invoicing.count(INVOICES).await, 2);
    assert_eq!(invoicing.metric("ordersystem_dead_letters").await, 3.0);
    invoicing.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_fetched_together_share_one_transaction_and_poison_among_them_is_still_dead_lettered() {
    let bootstrap = env::kafka_bootstrap();
    let topic = names::unique("batch");
    create_topic(&bootstrap, &topic, 1).await;
    // Everything is in the partition before the member starts, so it is fetched together.
    for id in 1..=40 {
        produce(&bootstrap, &topic, &id.to_string(), &event(id, 1)).await;
    }
    produce(&bootstrap, &topic, "x", b"this is not json").await;
    produce(&bootstrap, &topic, "5", &event(5, 9)).await; // same id, different content
    produce(&bootstrap, &topic, "7", &event(7, 1)).await; // same id, same content
    for id in 41..=60 {
        produce(&bootstrap, &topic, &id.to_string(), &event(id, 1)).await;
    }
    let invoicing = start_fresh(&bootstrap, &topic, GroupProtocol::Consumer).await;
    invoicing.wait_count(INVOICES, 60).await;
    invoicing.wait_count("SELECT count(*) FROM dead_letters", 2).await;
    let records = invoicing.metric("ordersystem_batch_records_sum").await;
    let transactions = invoicing.metric("ordersystem_batch_records_count").await;
    assert_eq!(records, 63.0, "every record went through a transaction once");
    assert!(
        transactions < records,
        "records fetched together share a transaction: {transactions} transactions for {records} records"
    );
    let mut conn = invoicing.db.connect().await;
    let reasons: Vec<String> = sqlx::query_scalar(r#"SELECT reason FROM dead_letters ORDER BY "offset""#)
        .fetch_all(&mut conn)
        .await
        .expect("dead letters");
    assert_eq!(reasons, ["Undecodable", "ConflictingDuplicate"]);
    let kept: i32 = sqlx::query_scalar("SELECT count FROM invoice_lines WHERE order_id = 5")
        .fetch_one(&mut conn)
        .await
        .expect("line");
    assert_eq!(kept, 1, "the first version stays");
    let lines: i64 = sqlx::query_scalar("SELECT count(*) FROM invoice_lines")
        .fetch_one(&mut conn)
        .await
        .expect("lines");
    assert_eq!(lines, 60, "each invoice with its one line, none twice");
    assert_eq!(invoicing.metric("ordersystem_events_consumed").await, 60.0);
    assert_eq!(invoicing.metric("ordersystem_duplicates_skipped").await, 1.0);
    invoicing.stop().await;
}

async fn two_members_share_partitions_and_one_takes_over(protocol: GroupProtocol) {
    let bootstrap = env::kafka_bootstrap();
    let topic = names::unique("share");
    create_topic(&bootstrap, &topic, 4).await;
    let db = schema::fresh_schema("invoicing").await;
    let group = names::unique("inv");
    let a = start_direct(db.clone(), &bootstrap, &topic, consumer_args(&group, protocol)).await;
    let b = start_direct(db.clone(), &bootstrap, &topic, consumer_args(&group, protocol)).await;
    wait_until(
        "each member owns two of the four partitions",
        Duration::from_secs(90),
        || async {
            a.metric("ordersystem_assigned_partitions").await == 2.0
                && b.metric("ordersystem_assigned_partitions").await == 2.0
        },
    )
    .await;
    for id in 1..=40 {
        produce(&bootstrap, &topic, &id.to_string(), &event(id, 1)).await;
    }
    a.wait_count(INVOICES, 40).await;
    let (by_a, by_b) = (
        a.metric("ordersystem_events_consumed").await,
        b.metric("ordersystem_events_consumed").await,
    );
    assert!(
        by_a > 0.0 && by_b > 0.0 && by_a + by_b == 40.0,
        "shared: a stored {by_a}, b stored {by_b}"
    );

    a.stop().await;
    wait_until(
        "the remaining member owns all four partitions",
        Duration::from_secs(90),
        || async { b.metric("ordersystem_assigned_partitions").await == 4.0 },
    )
    .await;
    for id in 41..=80 {
        produce(&bootstrap, &topic, &id.to_string(), &event(id, 1)).await;
    }
    b.wait_count(INVOICES, 80).await;
    assert_eq!(
        b.metric("ordersystem_events_consumed").await,
        by_b + 40.0,
        "b took over a's partitions"
    );
    assert_eq!(
        b.metric("ordersystem_duplicates_skipped").await,
        0.0,
        "a committed before leaving"
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_members_share_partitions_and_one_takes_over_with_the_consumer_protocol() {
    two_members_share_partitions_and_one_takes_over(GroupProtocol::Consumer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_members_share_partitions_and_one_takes_over_with_the_classic_protocol() {
    two_members_share_partitions_and_one_takes_over(GroupProtocol::Classic).await;
}

/// An upgrade rolls a group of KIP-848 members (the services' default before an instance id made them
/// static classic members) one pod at a time: the broker runs both protocols in one group
/// (`group.consumer.migration.policy`, `bidirectional` by Kafka's default), each record is stored once
/// through the handover, and once the last KIP-848 member has left the static member owns every partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_protocol_group_rolls_to_static_classic_members_storing_each_record_once() {
    let bootstrap = env::kafka_bootstrap();
    let topic = names::unique("roll");
    create_topic(&bootstrap, &topic, 4).await;
    let db = schema::fresh_schema("invoicing").await;
    let group = names::unique("inv");
    let assigned = "ordersystem_assigned_partitions";
    let old = start_direct(
        db.clone(),
        &bootstrap,
        &topic,
        consumer_args(&group, GroupProtocol::Consumer),
    )
    .await;
    wait_until(
        "the old member owns all four partitions",
        Duration::from_secs(90),
        || async { old.metric(assigned).await == 4.0 },
    )
    .await;
    for id in 1..=20 {
        produce(&bootstrap, &topic, &id.to_string(), &event(id, 1)).await;
    }
    old.wait_count(INVOICES, 20).await;

    // The new pod: an instance id (the operator's pod name) and no protocol named.
    let mut new_args = consumer_args(&group, GroupProtocol::Classic);
    new_args.group_protocol = None;
    new_args.group_instance_id = Some(names::unique("invoicing-pod"));
    assert_eq!(
        new_args.protocol(),
        GroupProtocol::Classic,
        "an instance id makes a classic member"
    );
    let new = start_direct(db.clone(), &bootstrap, &topic, new_args).await;
    wait_until(
        "the old and the new member share the partitions",
        Duration::from_secs(90),
        || async {
            let (by_old, by_new) = (old.metric(assigned).await, new.metric(assigned).await);
            by_old > 0.0 && by_new > 0.0 && by_old + by_new == 4.0
        },
    )
    .await;
    for id in 21..=40 {
        produce(&bootstrap, &topic, &id.to_string(), &event(id, 1)).await;
    }
    new.wait_count(INVOICES, 40).await;

    let by_old = old.metric("ordersystem_events_consumed").await;
    old.stop().await;
    wait_until(
        "the static member owns all four partitions",
        Duration::from_secs(90),
        || async { new.metric(assigned).await == 4.0 },
    )
    .await;
    // The broker turned the group back into a classic one, where a restarted static member is welcome.
    let broker_log =
        std::fs::read_to_string(env::state().join("kafka").join("kafka.log")).expect("the broker's log");
    assert!(
        broker_log.contains(&format!(
            "[GroupId {group}] Converted the consumer group to a classic group"
        )),
        "the broker did not convert {group} to a classic group when its last KIP-848 member left"
    );
    for id in 41..=60 {
        produce(&bootstrap, &topic, &id.to_string(), &event(id, 1)).await;
    }
    new.wait_count(INVOICES, 60).await;
    let by_new = new.metric("ordersystem_events_consumed").await;
    assert!(
        by_old >= 20.0 && by_new >= 20.0 && by_old + by_new == 60.0,
        "each record consumed once: the old member {by_old}, the new one {by_new}"
    );
    assert_eq!(
        new.metric("ordersystem_duplicates_skipped").await,
        0.0,
        "the old member committed before leaving"
    );
    new.stop().await;
}

async fn database_outage_keeps_the_member_in_its_group(protocol: GroupProtocol) {
    let bootstrap = env::kafka_bootstrap();
    let topic = names::unique("dbdown");
    create_topic(&bootstrap, &topic, 2).await;
    let db = schema::fresh_schema("invoicing").await;
    let proxy = Proxy::start(format!("{}:{}", db.host, db.port)).await;
    let args = consumer_args(&names::unique("inv"), protocol);
    let max_poll = Duration::from_millis(u64::from(args.max_poll_interval_ms));
    let invoicing = start(
        db,
        ("127.0.0.1".into(), proxy.addr.port()),
        &bootstrap,
        &topic,
        args,
    )
    .await;
    wait_until("partitions assigned", Duration::from_secs(60), || async {
        invoicing.metric("ordersystem_assigned_partitions").await == 2.0
    })
    .await;
    produce(&bootstrap, &topic, "1", &event(1, 1)).await;
    invoicing.wait_count(INVOICES, 1).await;
    let rebalances = invoicing.metric("ordersystem_rebalances").await;

    proxy.cut();
    for id in 2..=4 {
        produce(&bootstrap, &topic, &id.to_string(), &event(id, 1)).await;
    }
    // The outage itself: longer than max.poll.interval.ms, which is what would throw a blocked member out.
    tokio::time::sleep(max_poll + Duration::from_secs(5)).await;
    proxy.restore();
    invoicing.wait_count(INVOICES, 4).await;
    assert_eq!(
        invoicing.metric("ordersystem_rebalances").await,
        rebalances,
        "no rebalance during or after the outage"
    );
    assert_eq!(invoicing.metric("ordersystem_assigned_partitions").await, 2.0);
    assert_eq!(
        invoicing.count("SELECT count(*) FROM dead_letters").await,
        0,
        "a transient failure is not poison"
    );
    invoicing.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn database_outage_longer_than_max_poll_interval_keeps_the_member_with_the_consumer_protocol() {
    database_outage_keeps_the_member_in_its_group(GroupProtocol::Consumer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn database_outage_longer_than_max_poll_interval_keeps_the_member_with_the_classic_protocol() {
    database_outage_keeps_the_member_in_its_group(GroupProtocol::Classic).await;
}
