//! Leader election against the real API server: of two candidates on one Lease exactly one leads; when the
//! leader stops renewing (its loop killed, as SIGKILL would), it stops counting itself leader before the
//! other may start, and the other takes over within lease duration + retry period. Then two operators
//! with one lease: only the leader reconciles, and the standby takes over when the leader is killed. And
//! the write gate: a client whose leadership has ended sends no write to the API server, but still reads.

#[path = "support/operator.rs"]
mod operator;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use ordersystem_e2e::control_plane::TestNamespace;
use ordersystem_e2e::order_system::{delete_and_wait, patch_spec, shop_json, wait_condition};
use ordersystem_e2e::wait;
use ordersystem_operator::leader::{self, Leadership, LeaseConfig, NotLeading};
use ordersystem_operator::metrics::Metrics;
use serde_json::json;
use tokio::time::Instant;

fn config(namespace: &str, identity: &str) -> LeaseConfig {
    LeaseConfig {
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(500),
        ..LeaseConfig::new(namespace, "ordersystem-operator-test", identity)
    }
}

/// Samples both candidates every 50 ms for `period`; panics if both lead at once. Returns when `done`
/// holds (or `period` passed) how long that took.
async fn watch_both(
    a: &Leadership,
    b: &Leadership,
    period: Duration,
    done: impl Fn(bool, bool) -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < period {
        let (a_leads, b_leads) = (a.is_leading(), b.is_leading());
        assert!(!(a_leads && b_leads), "two leaders at once");
        if done(a_leads, b_leads) {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test]
async fn one_candidate_leads_and_the_other_takes_over_only_after_the_leader_stopped() {
    let client = ordersystem_e2e::kube::client().await;
    let ns = TestNamespace::create(&client, "leader").await;
    let (a, a_task) = leader::elect(client.clone(), config(&ns.name, "a"));
    let (b, b_task) = leader::elect(client.clone(), config(&ns.name, "b"));
    watch_both(&a, &b, Duration::from_secs(10), |a, b| a || b)
        .await
        .expect("a leader within 10 s");
    // Several renewals: the leader keeps the lease, the other follows.
    let steady = watch_both(&a, &b, Duration::from_secs(4), |a, b| !a && !b).await;
    assert_eq!(steady, None, "the leader keeps leading while it renews");
    let (leader, leader_task, other, other_name) = if a.is_leading() {
        (&a, &a_task, &b, "b")
    } else {
        (&b, &b_task, &a, "a")
    };

    leader_task.abort();
    let stopped = Instant::now();
    let took_over = watch_both(&a, &b, Duration::from_secs(10), |_, _| other.is_leading())
        .await
        .expect("the other leads within 10 s");
    assert!(
        !leader.is_leading(),
        "the stopped leader no longer counts itself leader"
    );
    // It may start only once the record stood still for the lease duration (3 s), and does so within one
    // more retry period (0.5 s) and a request.
    assert!(
        took_over >= Duration::from_millis(2500) && took_over <= Duration::from_secs(5),
        "took over after {took_over:?} (stopped at {stopped:?})"
    );
    let lease = Api::<Lease>::namespaced(client.clone(), &ns.name)
        .get("ordersystem-operator-test")
        .await
        .expect("the lease");
    let spec = lease.spec.expect("spec");
    assert_eq!(spec.holder_identity.as_deref(), Some(other_name));
    assert_eq!(spec.lease_transitions, Some(1));
    a_task.abort();
    b_task.abort();
}

#[tokio::test]
async fn of_two_operators_on_one_lease_only_the_leader_reconciles_and_the_standby_takes_over() {
    let client = ordersystem_e2e::kube::client().await;
    let ns = TestNamespace::with_admin_secret(&client, "leader-op").await;
    let (a_metrics, b_metrics) = (Arc::new(Metrics::default()), Arc::new(Metrics::default()));
    let a = operator::start_elected(&client, config(&ns.name, "a"), a_metrics.clone()).await;
    let b = operator::start_elected(&client, config(&ns.name, "b"), b_metrics.clone()).await;
    let topic = ordersystem_e2e::names::unique("leader");
    let bootstrap = ordersystem_e2e::env::kafka_bootstrap();
    ns.create_system(shop_json(&topic, &bootstrap, "Delete")).await;
    let api = ns.systems();
    wait_condition(&api, "TopicReady", "True", "TopicReady").await;
    let leads = |m: &Metrics| m.leader.get() == 1;
    assert!(leads(&a_metrics) ^ leads(&b_metrics), "exactly one leads");
    let (leader, standby, standby_metrics) = if leads(&a_metrics) {
        (a, b, b_metrics)
    } else {
        (b, a, a_metrics)
    };
    assert_eq!(
        standby_metrics.reconciles.get(),
        0,
        "the standby reconciles nothing"
    );

    // Killed: its election and controller stop with it, renewing nothing.
    drop(leader);
    let killed = Instant::now();
    wait::until_some("the standby leads", Duration::from_secs(15), || async {
        leads(&standby_metrics).then_some(())
    })
    .await;
    eprintln!(
        "the standby led {:?} after the leader was killed",
        killed.elapsed()
    );
    patch_spec(&api, json!({"kafka": {"topic": {"partitions": 4}}})).await;
    wait::until_some(
        "the new leader adds the partition",
        Duration::from_secs(60),
        || async {
            let os = api.get("shop").await.ok()?;
            (os.status?.topic?.partitions == 4).then_some(())
        },
    )
    .await;
    assert!(standby_metrics.reconciles.get() > 0, "the new leader reconciles");
    delete_and_wait(&api, 90, "shop deleted by the new leader").await;
    drop(standby);
}

fn config_map(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    }
}

/// Whether `error` is the gate's refusal, as kube reports it.
fn refused_by_gate(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Service(source) if source.is::<NotLeading>())
}

#[tokio::test]
async fn a_client_whose_leadership_ended_sends_no_write_to_the_api_server_but_still_reads() {
    let client = ordersystem_e2e::kube::client().await;
    let ns = TestNamespace::create(&client, "leader-gate").await;
    let (leadership, election) = leader::elect(client.clone(), config(&ns.name, "gated"));
    let gated = leader::gated_client(
        client.clone(),
        Some(leadership.clone()),
        &leader::user_agent(Some("gated")),
    );
    let through_gate: Api<ConfigMap> = Api::namespaced(gated, &ns.name);
    let direct: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    wait::until_some("the candidate leads", Duration::from_secs(10), || async {
        leadership.is_leading().then_some(())
    })
    .await;
    through_gate
        .create(&PostParams::default(), &config_map("while-leading"))
        .await
        .expect("a write while leading passes");

    // No renewal from now on: leadership ends at its deadline (2 s after the last renewal).
    election.abort();
    wait::until_some(
        "leadership ends at its deadline",
        Duration::from_secs(5),
        || async { (!leadership.is_leading()).then_some(()) },
    )
    .await;
    let created = through_gate
        .create(&PostParams::default(), &config_map("after-the-lease"))
        .await
        .expect_err("a create after the lease is refused");
    assert!(refused_by_gate(&created), "refused by the gate: {created:?}");
    assert!(
        ordersystem_operator::controller::describe_error(&created)
            .contains("no longer holds the leader lease"),
        "the error says why: {created}"
    );
    let deleted = through_gate
        .delete("while-leading", &DeleteParams::default())
        .await
        .expect_err("a delete after the lease is refused");
    assert!(refused_by_gate(&deleted), "refused by the gate: {deleted:?}");

    assert!(
        direct.get_opt("after-the-lease").await.expect("read").is_none(),
        "the refused create never reached the API server"
    );
    assert!(
        direct.get_opt("while-leading").await.expect("read").is_some(),
        "the refused delete never reached the API server"
    );
    let read = through_gate
        .get("while-leading")
        .await
        .expect("a GET through the gate still works");
    assert_eq!(read.metadata.name.as_deref(), Some("while-leading"));
    let listed = through_gate.list(&Default::default()).await.expect("a list too");
    assert!(
        listed
            .items
            .iter()
            .any(|m| m.metadata.name.as_deref() == Some("while-leading"))
    );
}
