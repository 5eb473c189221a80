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
}

/// Accepts an image tag, or says why it is not one.
fn image_tag(tag: &str) -> Result<String, String> {
    match names::image_tag_problem(tag) {
        None => Ok(tag.to_string()),
        Some(problem) => Err(format!("the image tag {tag:?} {problem}")),
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
}
