//! Scaling a consumer group up and down again and again while orders flow: invoicing goes 1 → 3 → 1
//! members per round (members join, then leave with SIGTERM, or are killed with SIGKILL in the last
//! round), shipping keeps one member. Every round waits until the partitions are shared among the live
//! members, proves the rebalances through the members' counters, and the run ends with every order
//! invoiced and shipped exactly once.

use crate::faults::{Load, assert_exactly_once, orders_per_test, shop_processes};
use crate::support::*;
use ordersystem_testkit::process::{ServiceProcess, start_all};
use ordersystem_testkit::{env, names};
use std::collections::BTreeSet;
use std::time::Duration;

/// Enough partitions that three members each own some.
const TOPIC_PARTITIONS: i32 = 6;

fn rounds() -> usize {
    std::env::var("RELIABILITY_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3)
}

/// Wait until the live members own every partition between them, each at least one.
async fn wait_shared(members: &[&ServiceProcess]) {
    wait_until(
        &format!(
            "{TOPIC_PARTITIONS} partitions shared by {} members",
            members.len()
        ),
        Duration::from_secs(90),
        || async {
            let mut sum = 0.0;
            for member in members {
                let owned = member.metric("ordersystem_assigned_partitions").await;
                if owned < 1.0 {
                    return false;
                }
                sum += owned;
            }
            sum == f64::from(TOPIC_PARTITIONS)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scaling_invoicing_up_and_down_repeatedly_under_load_loses_and_duplicates_nothing() {
    let bootstrap = env::kafka_bootstrap();
    let topic = names::unique("rebalance");
    create_topic(&bootstrap, &topic, TOPIC_PARTITIONS).await;
    let [mut order, mut first, mut shipping] =
        shop_processes("ordersystem-order", &[], &bootstrap, &topic, &env::database_url()).await;
    start_all(&mut [&mut first, &mut shipping, &mut order]).await;
    wait_shared(&[&first]).await;

    let target = orders_per_test();
    let rounds = rounds();
    let load = Load::start(order.url(""));
    for round in 0..rounds {
        let rebalances_before = first.metric("ordersystem_rebalances").await;
        let mut joined = [first.another(), first.another()];
        for m in &mut joined {
            m.start(&[]);
        }
        for m in &joined {
            m.wait_ready().await;
        }
        wait_shared(&[&first, &joined[0], &joined[1]]).await;
        load.wait_more(target / (2 * rounds)).await;
        let consumed_by_joined = joined[0].metric("ordersystem_events_consumed").await
            + joined[0].metric("ordersystem_duplicates_skipped").await
            + joined[1].metric("ordersystem_events_consumed").await
            + joined[1].metric("ordersystem_duplicates_skipped").await;
        // The last round's members die without leaving: their partitions return after the session.
        if round + 1 == rounds {
            for m in &mut joined {
                m.kill9();
            }
        } else {
            for m in &mut joined {
                m.stop().await;
            }
        }
        wait_shared(&[&first]).await;
        let rebalances = first.metric("ordersystem_rebalances").await - rebalances_before;
        eprintln!(
            "round {round}: the first member saw {rebalances} assignment changes; the joined members \
             handled {consumed_by_joined} events; {} orders accepted so far",
            load.accepted_count()
        );
        assert!(
            rebalances >= 2.0,
            "the first member gave partitions up and took them back (round {round}: {rebalances})"
        );
        assert!(
            consumed_by_joined > 0.0,
            "the joined members consumed from their partitions (round {round})"
        );
        load.wait_more(target / (2 * rounds)).await;
    }
    let (accepted, _) = load.finish(target).await;
    let stored = assert_exactly_once(&order.db, &first.db, &shipping.db, &accepted, &BTreeSet::new()).await;
    eprintln!("rebalance: {stored} orders over {rounds} rounds of 1 → 3 → 1 invoicing members");
    for service in [&mut first, &mut shipping, &mut order] {
        service.stop().await;
    }
}
