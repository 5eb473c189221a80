//! Leader election against the real API server: of two candidates on one Lease exactly one leads; when the
//! leader stops renewing (its loop killed, as SIGKILL would), it stops counting itself leader before the
//! other may start, and the other takes over within lease duration + retry period.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use ordersystem_e2e::control_plane::TestNamespace;
use ordersystem_operator::leader::{self, Leadership, LeaseConfig};
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
