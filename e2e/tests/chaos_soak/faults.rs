//! Each fault of the schedule done to the running shop the way its own test does it, followed until it took
//! effect and the shop is whole again; what shows that it took effect comes back as one line of evidence,
//! and a fault that shows no effect fails the soak.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use ordersystem_api::crd::OrderSystem;
use ordersystem_e2e::cluster::{READY_WITHIN, is_ready, pods, ready_pods};
use ordersystem_e2e::kafka_cluster::KafkaCluster;
use ordersystem_e2e::node_shop::NodeShop;
use ordersystem_e2e::own_instance::OwnInstance;
use ordersystem_e2e::wait;
use serde_json::json;

use crate::load::Load;
use crate::schedule::Fault;

pub const SYSTEM: &str = "shop";
/// How long a fault's effect may take to show: the controller fences a killed broker after its session
/// timeout (9 s).
const SHOWS_WITHIN: Duration = Duration::from_secs(90);
/// How long a killed container may take to run and be Ready again: the kubelet delays each restart of a
/// container that ran less than 10 minutes twice as long as the last, up to 5 minutes, and a long soak
/// kills the same container that often.
const RESTARTED_WITHIN: Duration = Duration::from_secs(6 * 60);

/// The shop under the soak and what it runs on.
pub struct Chaos {
    pub shop: NodeShop,
    pub cluster: KafkaCluster,
    pub postgres: OwnInstance,
    pub topic: String,
    pub load: Load,
    /// The invoicing members the spec asks for now.
    pub invoicing: i32,
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |s| s.iter().map(|c| c.restart_count).sum())
}

fn name(pod: &Pod) -> String {
    pod.name_any()
}

fn uids(pods: &[Pod]) -> BTreeSet<String> {
    pods.iter().filter_map(|p| p.metadata.uid.clone()).collect()
}

impl Chaos {
    pub fn systems(&self) -> Api<OrderSystem> {
        self.shop.systems()
    }

    /// Does `fault`; its evidence.
    pub async fn inject(&mut self, fault: &Fault) -> String {
        match fault {
            Fault::KillPod(service) => self.kill_pod(service).await,
            Fault::RestartBroker { id, kill } => self.restart_broker(*id, *kill).await,
            Fault::RestartPostgres { down } => self.restart_postgres(*down).await,
            Fault::KillOperator => self.kill_operator().await,
            Fault::ScaleInvoicing(n) => self.scale_invoicing(*n).await,
            Fault::AddPartitions(n) => self.add_partitions(*n).await,
            Fault::Rotate(service) => self.rotate(service).await,
        }
    }

    /// Waits until every service has its Ready pods and the resource is `Ready`.
    pub async fn whole(&self) {
        for service in ["order", "invoicing", "shipping"] {
            self.ready_pods_of(service).await;
        }
        self.shop.ready(SYSTEM).await;
    }

    /// Waits until `service` has as many Ready pods as the spec asks for now (the invoicing members, one of
    /// each other service); those pods.
    async fn ready_pods_of(&self, service: &str) -> Vec<Pod> {
        let count = if service == "invoicing" { self.invoicing } else { 1 };
        ready_pods(
            &self.shop.client,
            &self.shop.shop_ns,
            SYSTEM,
            service,
            usize::try_from(count).expect("a count"),
        )
        .await
    }

    /// Waits until `pod` of `namespace` restarted (more restarts than `before`) and is Ready again; its
    /// restarts then.
    async fn restarted(&self, namespace: &str, pod: &str, before: i32) -> i32 {
        let api: Api<Pod> = Api::namespaced(self.shop.client.clone(), namespace);
        wait::until_ok(
            &format!("{pod} restarted and Ready"),
            RESTARTED_WITHIN,
            || async {
                let now = api.get(pod).await.map_err(|e| e.to_string())?;
                let count = restarts(&now);
                (count > before && is_ready(&now))
                    .then_some(count)
                    .ok_or(format!("{count} restarts, Ready {}", is_ready(&now)))
            },
        )
        .await
    }

    async fn kill_pod(&self, service: &str) -> String {
        let (client, ns) = (&self.shop.client, &self.shop.shop_ns);
        let mut ready: Vec<Pod> = pods(client, ns, SYSTEM, service).await;
        ready.retain(is_ready);
        ready.sort_by_key(name);
        let pod = ready.first().unwrap_or_else(|| panic!("no Ready {service} pod"));
        let before = restarts(pod);
        self.shop.mode.crash(pod);
        let after = self.restarted(ns, &name(pod), before).await;
        format!("{}: restarts {before} -> {after}, Ready again", name(pod))
    }

    async fn kill_operator(&self) -> String {
        let ns = &self.shop.operator_ns;
        let api: Api<Pod> = Api::namespaced(self.shop.client.clone(), ns);
        let all = api
            .list(&ListParams::default())
            .await
            .expect("the operator's pods")
            .items;
        let pod = all.iter().find(|p| is_ready(p)).expect("a Ready operator pod");
        let before = restarts(pod);
        self.shop.mode.crash(pod);
        let after = self.restarted(ns, &name(pod), before).await;
        format!("{}: restarts {before} -> {after}, Ready again", name(pod))
    }

    async fn restart_broker(&self, id: i32, kill: bool) -> String {
        let before = self.cluster.partitions(&self.topic).await.expect("metadata");
        let led = before.values().filter(|(l, _)| *l == Some(id)).count();
        let logged: Vec<usize> = self
            .cluster
            .ids()
            .iter()
            .map(|b| self.cluster.log(*b).len())
            .collect();
        let started = Instant::now();
        if kill {
            self.cluster.kill_broker(id).await;
        } else {
            self.cluster.stop_brokers(&[id]).await;
        }
        let out = wait::until_ok(&format!("broker {id} out of every ISR"), SHOWS_WITHIN, || async {
            let now = self.cluster.partitions(&self.topic).await?;
            let still = now
                .values()
                .filter(|(l, isr)| *l == Some(id) || isr.contains(&id))
                .count();
            (still == 0)
                .then_some(now.clone())
                .ok_or(format!("broker {id} still leads or follows in sync {still}"))
        })
        .await;
        let moved = before
            .iter()
            .filter(|(p, (l, _))| *l == Some(id) && out.get(p).is_some_and(|(now, _)| now.is_some()))
            .count();
        assert_eq!(moved, led, "every partition broker {id} led has a new leader");
        let fenced = started.elapsed();
        let errors = self.broker_errors(id, &logged);
        self.cluster.start_brokers(&[id]).await;
        let all = self.cluster.ids();
        wait::until_ok("every replica back in sync", SHOWS_WITHIN, || async {
            let now = self.cluster.partitions(&self.topic).await?;
            let lagging = now
                .values()
                .filter(|(_, isr)| !all.iter().all(|b| isr.contains(b)))
                .count();
            (lagging == 0)
                .then_some(())
                .ok_or(format!("{lagging} partitions not in sync"))
        })
        .await;
        format!(
            "broker {id} out of every ISR after {fenced:.1?} ({led} partitions it led have new leaders; {errors}), \
             back in sync on all {} partitions after {:.1?}",
            out.len(),
            started.elapsed()
        )
    }

    /// What the other brokers logged at WARN or ERROR since their logs were `logged` bytes long: how many
    /// lines, and the first.
    fn broker_errors(&self, down: i32, logged: &[usize]) -> String {
        let lines: Vec<String> = self
            .cluster
            .ids()
            .into_iter()
            .zip(logged)
            .filter(|(b, _)| *b != down)
            .flat_map(|(b, from)| {
                let log = self.cluster.log(b);
                let new = log.get(*from..).unwrap_or_default().to_string();
                new.lines()
                    .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
                    .map(|l| format!("broker {b}: {l}"))
                    .collect::<Vec<_>>()
            })
            .collect();
        let first: String = lines
            .first()
            .map_or("", String::as_str)
            .chars()
            .take(240)
            .collect();
        format!(
            "the others logged {} WARN/ERROR lines, first: {first:?}",
            lines.len()
        )
    }

    async fn restart_postgres(&self, down: Duration) -> String {
        let before = self.load.tally();
        self.postgres.run("stop").await;
        tokio::time::sleep(down).await;
        self.postgres.run("start").await;
        let restarted = self.load.tally().accepted.len();
        // Counted once orders are accepted again: a request the outage held up ends later than the outage.
        let after = wait::until_ok("orders accepted again", READY_WITHIN, || async {
            let now = self.load.tally();
            (now.accepted.len() > restarted)
                .then_some(now.clone())
                .ok_or(format!("{} accepted", now.accepted.len()))
        })
        .await;
        let refused = after.refusals() - before.refusals();
        assert!(
            refused > 0,
            "no order refused while PostgreSQL was down for {down:?}: {:?}",
            after.refused
        );
        format!(
            "{refused} of {} orders refused until accepted again (refusals by kind {:?} -> {:?})",
            after.sent - before.sent,
            before.refused,
            after.refused
        )
    }

    async fn scale_invoicing(&mut self, n: i32) -> String {
        let from = self.invoicing;
        let patch = json!({"spec": {"invoicing": {"replicas": n}}});
        self.systems()
            .patch(SYSTEM, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("scale invoicing");
        self.invoicing = n;
        let (client, ns) = (&self.shop.client, &self.shop.shop_ns);
        let ready = ready_pods(
            client,
            ns,
            SYSTEM,
            "invoicing",
            usize::try_from(n).expect("a count"),
        )
        .await;
        format!(
            "invoicing {from} -> {n}: Ready {:?}",
            ready.iter().map(name).collect::<Vec<_>>()
        )
    }

    async fn add_partitions(&self, to: i32) -> String {
        let systems = self.systems();
        let patch = json!({"spec": {"kafka": {"topic": {"partitions": to}}}});
        systems
            .patch(SYSTEM, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("raise partitions");
        let mut seen: Vec<String> = Vec::new();
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let os = systems.get(SYSTEM).await.expect("get");
            let status = os.status.unwrap_or_default();
            if let Some(c) = status.conditions.iter().find(|c| c.type_ == "Progressing")
                && seen.last() != Some(&c.message)
            {
                seen.push(c.message.clone());
            }
            if status.topic.map(|t| t.partitions) == Some(to) {
                break;
            }
            assert!(Instant::now() < deadline, "partitions never added: {seen:?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(
            seen.iter().any(|m| m.contains("intake stopped")),
            "the drain was visible in Progressing: {seen:?}"
        );
        let on_broker = self
            .cluster
            .partitions(&self.topic)
            .await
            .expect("metadata")
            .len();
        assert_eq!(
            on_broker,
            usize::try_from(to).expect("a count"),
            "the brokers' partitions"
        );
        format!("{on_broker} partitions on the brokers; Progressing said {seen:?}")
    }

    async fn rotate(&self, service: &str) -> String {
        let (client, ns) = (&self.shop.client, &self.shop.shop_ns);
        let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
        let secret = format!("{SYSTEM}-{service}-db");
        let user = |s: Secret| {
            let bytes = s.data.and_then(|d| d.get("username").cloned()).expect("username");
            String::from_utf8(bytes.0).expect("utf-8")
        };
        let old_user = user(secrets.get(&secret).await.expect("the Secret"));
        let old_pods = uids(&pods(client, ns, SYSTEM, service).await);
        let rotated_events = || async {
            let events: Api<Event> = Api::namespaced(client.clone(), ns);
            let list = events.list(&ListParams::default()).await.expect("events").items;
            list.iter()
                .filter(|e| e.reason.as_deref() == Some("CredentialsRotated"))
                .map(|e| e.series.as_ref().map_or(1, |s| s.count))
                .sum::<i32>()
        };
        let events_before = rotated_events().await;
        let annotate = json!({"metadata": {"annotations": {"ordersystem.io/rotate-credentials": service}}});
        self.systems()
            .patch(SYSTEM, &PatchParams::default(), &Patch::Merge(&annotate))
            .await
            .expect("annotate");
        wait::until_ok("rotation finished", READY_WITHIN, || async {
            let os = self.systems().get(SYSTEM).await.map_err(|e| e.to_string())?;
            let s = secrets.get(&secret).await.map_err(|e| e.to_string())?;
            let pending = os.annotations().contains_key("ordersystem.io/rotate-credentials")
                || s.annotations().contains_key("ordersystem.io/retire-login");
            (!pending).then_some(()).ok_or("still rotating".to_string())
        })
        .await;
        let new_user = user(secrets.get(&secret).await.expect("the Secret"));
        assert_ne!(new_user, old_user, "{service} logs in as the other login");
        let now = self.ready_pods_of(service).await;
        assert!(uids(&now).is_disjoint(&old_pods), "{service} rolled");
        let events_after = rotated_events().await;
        assert_eq!(
            events_after,
            events_before + 1,
            "one CredentialsRotated Event more"
        );
        format!(
            "{service}: login {old_user} -> {new_user}, pods rolled to {:?}, CredentialsRotated {events_before} -> {events_after}",
            now.iter().map(name).collect::<Vec<_>>()
        )
    }
}
