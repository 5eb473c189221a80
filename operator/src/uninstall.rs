//! `ordersystem-operator check-uninstall`: whether the operator may go. Every `OrderSystem` carries the
//! finalizer [`FINALIZER`], which only a running operator releases; uninstalling the operator while one
//! exists leaves it, and its namespace, hanging in deletion. The chart runs this check as a `pre-delete`
//! hook Job (`templates/uninstall-check.yaml`), so `helm uninstall` fails and the operator keeps running
//! while any `OrderSystem` is left in the namespaces it watches; the message names each of them and the
//! way out.
//!
//! Only metadata is listed (`list` on `ordersystems`, the hook's only right), so an `OrderSystem` written
//! under a newer schema than this binary knows is still counted.

use std::time::Duration;

use kube::Api;
use kube::api::ListParams;
use kube::core::PartialObjectMeta;

use crate::crd::OrderSystem;
use crate::names::FINALIZER;

/// The subcommand's name.
pub const SUBCOMMAND: &str = "check-uninstall";

/// How many resources the refusal names before it says how many more there are.
const NAMED: usize = 20;

/// Forbidden answers tolerated while the hook's new RoleBinding reaches the API server's authorizer.
const FORBIDDEN_RETRIES: u32 = 10;
const FORBIDDEN_PAUSE: Duration = Duration::from_secs(1);

/// Exit 1, naming them, while OrderSystems exist where the operator watches (`--watch-namespace`, all
/// namespaces when empty): the chart's pre-delete hook.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CheckUninstall {
    /// The Helm release being uninstalled, named in the refusal's way out.
    #[arg(long)]
    pub release: Option<String>,
    /// The release's namespace.
    #[arg(long)]
    pub release_namespace: Option<String>,
    /// The release's revision whose hook this is: what `helm rollback` returns to after a refusal.
    #[arg(long)]
    pub release_revision: Option<u32>,
}

/// An `OrderSystem` that still exists.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Remaining {
    pub namespace: String,
    pub name: String,
    /// Deletion has started; the finalizer still waits for the operator.
    pub deleting: bool,
}

/// The outcome of the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing needs the operator any more: what to print.
    Safe(String),
    /// The operator must stay: the refusal to print.
    Refused(String),
}

/// Lists the `OrderSystem`s in `namespace` (all namespaces when `None`) and judges.
///
/// # Errors
/// When the API server cannot be asked, or refuses the list for longer than a new RoleBinding takes.
pub async fn check(
    client: kube::Client,
    namespace: Option<&str>,
    flags: &CheckUninstall,
) -> anyhow::Result<Verdict> {
    let api: Api<PartialObjectMeta<OrderSystem>> = match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let mut attempt = 0;
    let list = loop {
        match api.list_metadata(&ListParams::default()).await {
            Ok(list) => break Some(list),
            // No CRD: no OrderSystem can exist.
            Err(kube::Error::Api(status)) if status.code == 404 => break None,
            Err(kube::Error::Api(status)) if status.code == 403 && attempt < FORBIDDEN_RETRIES => {
                attempt += 1;
                tokio::time::sleep(FORBIDDEN_PAUSE).await;
            }
            Err(e) => {
                anyhow::bail!(
                    "cannot list OrderSystems {}: {e}; the uninstall check needs `list` on \
                     ordersystems.ordersystem.io there",
                    scope(namespace)
                )
            }
        }
    };
    let Some(list) = list else {
        return Ok(Verdict::Safe(
            "the OrderSystem CRD is not installed, so no OrderSystem exists: uninstalling is safe".into(),
        ));
    };
    let remaining = list
        .items
        .into_iter()
        .map(|os| Remaining {
            namespace: os.metadata.namespace.unwrap_or_default(),
            name: os.metadata.name.unwrap_or_default(),
            deleting: os.metadata.deletion_timestamp.is_some(),
        })
        .collect();
    Ok(verdict(remaining, namespace, flags))
}

/// `in namespace X` or `in any namespace`.
fn scope(namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("in namespace {ns}"),
        None => "in any namespace".into(),
    }
}

/// The verdict on the `OrderSystem`s that exist in `namespace` (all when `None`); no client.
pub fn verdict(mut remaining: Vec<Remaining>, namespace: Option<&str>, flags: &CheckUninstall) -> Verdict {
    if remaining.is_empty() {
        return Verdict::Safe(format!(
            "no OrderSystem exists {}: uninstalling the operator is safe",
            scope(namespace)
        ));
    }
    remaining.sort();
    let count = remaining.len();
    // noun, verb, each, them, their, gone, they keep
    let words = if count == 1 {
        [
            "OrderSystem",
            "exists",
            "It carries",
            "it",
            "its",
            "it is",
            "it then keeps",
        ]
    } else {
        [
            "OrderSystems",
            "exist",
            "Each carries",
            "them",
            "their",
            "they are",
            "they then keep",
        ]
    };
    let [noun, verb, each, them, their, gone, they_keep] = words;
    let mut named: Vec<String> = remaining
        .iter()
        .take(NAMED)
        .map(|r| {
            let suffix = if r.deleting { " (being deleted)" } else { "" };
            format!("{}/{}{suffix}", r.namespace, r.name)
        })
        .collect();
    if count > NAMED {
        named.push(format!("and {} more", count - NAMED));
    }
    let mut namespaces: Vec<&str> = remaining.iter().map(|r| r.namespace.as_str()).collect();
    namespaces.dedup();
    let delete: Vec<String> = namespaces
        .iter()
        .map(|ns| format!("kubectl delete ordersystems.ordersystem.io --all -n {ns}"))
        .collect();
    let in_namespace = flags
        .release_namespace
        .as_ref()
        .map(|ns| format!(" -n {ns}"))
        .unwrap_or_default();
    let anyway = match &flags.release {
        Some(release) => format!("helm uninstall {release}{in_namespace} --no-hooks"),
        None => "helm uninstall --no-hooks".into(),
    };
    // Helm marks the release `uninstalling` when a pre-delete hook fails, and `helm upgrade` then finds no
    // deployed release; a rollback to the revision that is running marks it deployed again.
    let keep = match (&flags.release, flags.release_revision) {
        (Some(release), Some(revision)) => format!(
            "To keep the operator instead: helm now lists the release as uninstalling and `helm upgrade` \
             refuses it until `helm rollback {release} {revision}{in_namespace}` has marked it deployed \
             again.\n"
        ),
        _ => String::new(),
    };
    Verdict::Refused(format!(
        "refusing to uninstall the operator: {count} {noun} still {verb} {}: {}.\n\
         {each} the finalizer {FINALIZER}, which only this operator releases: uninstalled now, \
         deleting {them} or {their} namespace would hang.\n\
         Delete {them} first and wait until {gone} gone ({}), then uninstall again.\n\
         {keep}\
         To uninstall anyway: {anyway} (or set uninstallCheck.enabled=false); {they_keep} the finalizer \
         until it is removed by hand, which skips {their} cleanup.",
        scope(namespace),
        named.join(", "),
        delete.join("; "),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remaining(namespace: &str, name: &str, deleting: bool) -> Remaining {
        Remaining {
            namespace: namespace.into(),
            name: name.into(),
            deleting,
        }
    }

    fn release() -> CheckUninstall {
        CheckUninstall {
            release: Some("ordersystem-operator".into()),
            release_namespace: Some("ordersystem-system".into()),
            release_revision: Some(3),
        }
    }

    #[test]
    fn several_resources_are_named_sorted_with_the_way_out() {
        let Verdict::Refused(message) = verdict(
            vec![
                remaining("shop", "demo", false),
                remaining("billing", "eu", true),
                remaining("shop", "archive", false),
            ],
            None,
            &release(),
        ) else {
            panic!("three OrderSystems refuse the uninstall");
        };
        assert_eq!(
            message,
            "refusing to uninstall the operator: 3 OrderSystems still exist in any namespace: \
             billing/eu (being deleted), shop/archive, shop/demo.\n\
             Each carries the finalizer ordersystem.io/cleanup, which only this operator releases: \
             uninstalled now, deleting them or their namespace would hang.\n\
             Delete them first and wait until they are gone \
             (kubectl delete ordersystems.ordersystem.io --all -n billing; \
             kubectl delete ordersystems.ordersystem.io --all -n shop), then uninstall again.\n\
             To keep the operator instead: helm now lists the release as uninstalling and `helm upgrade` \
             refuses it until `helm rollback ordersystem-operator 3 -n ordersystem-system` has marked it \
             deployed again.\n\
             To uninstall anyway: helm uninstall ordersystem-operator -n ordersystem-system --no-hooks \
             (or set uninstallCheck.enabled=false); they then keep the finalizer until it is removed by \
             hand, which skips their cleanup."
        );
    }

    #[test]
    fn one_resource_in_the_watched_namespace_is_singular() {
        let Verdict::Refused(message) = verdict(
            vec![remaining("shop", "demo", false)],
            Some("shop"),
            &CheckUninstall::default(),
        ) else {
            panic!("one OrderSystem refuses the uninstall");
        };
        assert!(
            message.starts_with(
                "refusing to uninstall the operator: 1 OrderSystem still exists in namespace shop: shop/demo.\n"
            ),
            "{message}"
        );
        assert!(
            message.contains("then uninstall again.\nTo uninstall anyway: helm uninstall --no-hooks"),
            "without the release, no rollback is named: {message}"
        );
    }

    #[test]
    fn a_long_list_names_twenty_and_counts_the_rest() {
        let many = (0..25)
            .map(|i| remaining("shop", &format!("s{i:02}"), false))
            .collect();
        let Verdict::Refused(message) = verdict(many, Some("shop"), &release()) else {
            panic!("25 OrderSystems refuse the uninstall");
        };
        assert!(message.contains("25 OrderSystems still exist"), "{message}");
        assert!(message.contains("shop/s19, and 5 more."), "{message}");
        assert!(!message.contains("shop/s20"), "{message}");
        assert_eq!(
            message.matches("kubectl delete").count(),
            1,
            "one command per namespace: {message}"
        );
    }

    #[test]
    fn none_left_is_safe() {
        assert_eq!(
            verdict(Vec::new(), Some("shop"), &release()),
            Verdict::Safe(
                "no OrderSystem exists in namespace shop: uninstalling the operator is safe".into()
            )
        );
    }
}
