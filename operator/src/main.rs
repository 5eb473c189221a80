//! The operator binary: parse flags, then print the CRD, check whether uninstalling is safe or whether the
//! installation works, or run the controller and its HTTP endpoints.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::{Args, CommandFactory, FromArgMatches};
use ordersystem_operator::config::{Command, Config, LeaderElection};
use ordersystem_operator::install_check::{self, CheckInstall};
use ordersystem_operator::leader::LeaseConfig;
use ordersystem_operator::uninstall::{self, CheckUninstall, Verdict};
use ordersystem_operator::{crd, metrics::Metrics, names, run, web};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `check-uninstall` and `check-install` beside the subcommands of `Config`, with their own flags.
    let matches = Config::command()
        .subcommand(CheckUninstall::augment_args(
            clap::Command::new(uninstall::SUBCOMMAND)
                .about("Exit 1, naming them, while OrderSystems exist where the operator watches (helm pre-delete hook)"),
        ))
        .subcommand(CheckInstall::augment_args(
            clap::Command::new(install_check::SUBCOMMAND)
                .about("Exit 1 unless the operator answers /readyz and the OrderSystem CRD is served (helm test)"),
        ))
        .get_matches();
    let Config {
        command,
        watch_namespace,
        http_addr,
        log_format,
        default_image_tag,
        image_registry,
        leader_election,
    } = Config::from_arg_matches(&matches)?;
    if let Some((uninstall::SUBCOMMAND, flags)) = matches.subcommand() {
        let flags = CheckUninstall::from_arg_matches(flags)?;
        let namespace = (!watch_namespace.is_empty()).then_some(watch_namespace.as_str());
        let client = kube::Client::try_default().await?;
        match uninstall::check(client, namespace, &flags).await? {
            Verdict::Safe(message) => println!("{message}"),
            Verdict::Refused(message) => {
                eprintln!("{message}");
                std::process::exit(1);
            }
        }
        return Ok(());
    }
    if let Some((install_check::SUBCOMMAND, flags)) = matches.subcommand() {
        let flags = CheckInstall::from_arg_matches(flags)?;
        let namespace = (!watch_namespace.is_empty()).then_some(watch_namespace.as_str());
        let client = kube::Client::try_default().await?;
        match install_check::check(client, namespace, &flags).await {
            Ok(message) => println!("{message}"),
            Err(message) => {
                eprintln!("{message}");
                std::process::exit(1);
            }
        }
        return Ok(());
    }
    if let Some(Command::Crd) = command {
        print!("{}", crd::crd_yaml());
        return Ok(());
    }
    // The services' subscriber: the same line shape, each reconcile a span with trace and span ids,
    // exported over OTLP when the chart sets the standard variables.
    ordersystem_telemetry::init(
        if log_format == "json" {
            ordersystem_telemetry::LogFormat::Json
        } else {
            ordersystem_telemetry::LogFormat::Text
        },
        "ordersystem-operator",
    );
    let client = kube::Client::try_default().await?;
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(http_addr).await?;
    let app = web::router(web::WebState {
        ready: ready.clone(),
        metrics: metrics.clone(),
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    let namespace = (!watch_namespace.is_empty()).then_some(watch_namespace);
    let lease = lease_config(&client, &leader_election)?;
    let elected = run::Elected {
        namespace,
        images: names::ServiceImages {
            registry: image_registry,
            default_tag: default_image_tag,
        },
        lease,
    };
    if let run::Ended::LostLease = run::run_elected(client, elected, metrics, ready).await {
        // Another replica may take the lease from now on; this one wrote nothing since its deadline. The
        // Deployment starts it again, as a standby.
        tracing::error!("lost the leader lease: exiting so that only the new leader reconciles");
        tokio::task::spawn_blocking(ordersystem_telemetry::shutdown)
            .await
            .ok();
        std::process::exit(1);
    }
    tokio::task::spawn_blocking(ordersystem_telemetry::shutdown)
        .await
        .ok();
    Ok(())
}

/// The election settings from the flags; `None` without a lease name.
fn lease_config(client: &kube::Client, flags: &LeaderElection) -> anyhow::Result<Option<LeaseConfig>> {
    if flags.lease.is_empty() {
        return Ok(None);
    }
    let seconds = std::time::Duration::from_secs;
    let (duration, deadline, retry) = (
        seconds(flags.leader_election_lease_duration_seconds),
        seconds(flags.leader_election_renew_deadline_seconds),
        seconds(flags.leader_election_retry_period_seconds),
    );
    if !(retry < deadline && deadline < duration) {
        anyhow::bail!(
            "leader election needs retry period < renew deadline < lease duration, got {}s, {}s and {}s",
            retry.as_secs(),
            deadline.as_secs(),
            duration.as_secs()
        );
    }
    // The pod's name, made unique per process: a replica restarted in the same pod is a new candidate.
    let identity = format!("{}_{:08x}", flags.pod_name, rand::random::<u32>());
    Ok(Some(LeaseConfig {
        lease_duration: duration,
        renew_deadline: deadline,
        retry_period: retry,
        ..LeaseConfig::new(client.default_namespace(), &flags.lease, &identity)
    }))
}
