//! Command-line flags of the operator, each with an environment fallback.

use std::net::SocketAddr;

use crate::names;

/// Kubernetes operator for the event-driven order system.
#[derive(Debug, clap::Parser)]
#[command(version, about)]
pub struct Config {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Watch only this namespace; all namespaces when empty.
    #[arg(long, env = "WATCH_NAMESPACE", default_value = "")]
    pub watch_namespace: String,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// Log format: `json` (in a cluster) or `text`.
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// Tag of the service images (`ghcr.io/ordersystem/<service>:<tag>`) for a resource's service that is
    /// deployed for the first time with neither its own `image` nor `spec.imageTag`. A service already
    /// deployed keeps its image: changing this, or upgrading the operator, rolls nothing.
    #[arg(long, env = "DEFAULT_IMAGE_TAG", default_value = names::DEFAULT_IMAGE_TAG, value_parser = image_tag)]
    pub default_image_tag: String,
    /// Registry and repository prefix of the service images (`<registry>/<service>:<tag>`), e.g. a
    /// mirror's `registry.example.com/ordersystem`, for every service image the operator names from a tag
    /// (`spec.imageTag`, or the default tag). A service already deployed keeps its recorded image until its
    /// resource sets `imageTag`; a service's own `image` is used as given.
    #[arg(long, env = "IMAGE_REGISTRY", default_value = names::IMAGE_REGISTRY, value_parser = image_registry)]
    pub image_registry: String,
    #[command(flatten)]
    pub leader_election: LeaderElection,
}

/// Leader election, for more than one replica: only the holder of the Lease reconciles.
#[derive(Debug, clap::Args)]
pub struct LeaderElection {
    /// Name of the Lease the replicas compete for, in the operator's namespace; empty: no election (run
    /// exactly one replica).
    #[arg(
        long = "leader-election-lease",
        env = "LEADER_ELECTION_LEASE",
        default_value = ""
    )]
    pub lease: String,
    /// How long the holder's record must stand still before a standby takes the lease.
    #[arg(long, env = "LEADER_ELECTION_LEASE_DURATION_SECONDS", default_value_t = 15)]
    pub leader_election_lease_duration_seconds: u64,
    /// How long after its last renewal the holder still reconciles; shorter than the lease duration.
    #[arg(long, env = "LEADER_ELECTION_RENEW_DEADLINE_SECONDS", default_value_t = 10)]
    pub leader_election_renew_deadline_seconds: u64,
    /// Time between two attempts to take or renew the lease.
    #[arg(long, env = "LEADER_ELECTION_RETRY_PERIOD_SECONDS", default_value_t = 2)]
    pub leader_election_retry_period_seconds: u64,
    /// This replica's name in the lease (the chart sets the pod's name).
    #[arg(long, env = "POD_NAME", default_value = "ordersystem-operator")]
    pub pod_name: String,
}

/// Accepts an image tag, or says why it is not one.
fn image_tag(tag: &str) -> Result<String, String> {
    match names::image_tag_problem(tag) {
        None => Ok(tag.to_string()),
        Some(problem) => Err(format!("the image tag {tag:?} {problem}")),
    }
}

/// Accepts a registry and repository prefix, or says why it is not one.
fn image_registry(registry: &str) -> Result<String, String> {
    match names::image_registry_problem(registry) {
        None => Ok(registry.to_string()),
        Some(problem) => Err(format!("the image registry {registry:?} {problem}")),
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print the OrderSystem CustomResourceDefinition as YAML (the source of `crds/`).
    Crd,
    /// Run the controller (the default).
    Run,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn the_default_image_tag_is_the_operators_version_unless_a_flag_names_a_valid_one() {
        let parsed = Config::try_parse_from(["ordersystem-operator"]).expect("no flags parse");
        assert_eq!(parsed.default_image_tag, env!("CARGO_PKG_VERSION"));
        let parsed = Config::try_parse_from(["ordersystem-operator", "--default-image-tag", "0.2.0-rc.1"])
            .expect("a tag parses");
        assert_eq!(parsed.default_image_tag, "0.2.0-rc.1");
        let refused = Config::try_parse_from(["ordersystem-operator", "--default-image-tag", "a:b"])
            .expect_err("a colon is refused");
        assert!(
            refused
                .to_string()
                .contains("the image tag \"a:b\" has a character other than"),
            "{refused}"
        );
    }

    #[test]
    fn the_image_registry_is_the_projects_unless_a_flag_names_a_mirror() {
        let parsed = Config::try_parse_from(["ordersystem-operator"]).expect("no flags parse");
        assert_eq!(parsed.image_registry, "ghcr.io/ordersystem");
        let parsed = Config::try_parse_from([
            "ordersystem-operator",
            "--image-registry",
            "mirror.internal:5000/os",
        ])
        .expect("a mirror parses");
        assert_eq!(parsed.image_registry, "mirror.internal:5000/os");
        let refused =
            Config::try_parse_from(["ordersystem-operator", "--image-registry", "mirror.internal/os/"])
                .expect_err("a trailing slash is refused");
        assert!(
            refused
                .to_string()
                .contains("the image registry \"mirror.internal/os/\" has a path"),
            "{refused}"
        );
    }
}
