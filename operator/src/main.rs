//! The operator binary: parse flags, then print the CRD, check whether uninstalling is safe, or run the
//! controller and its HTTP endpoints.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::{Args, CommandFactory, FromArgMatches};
use ordersystem_operator::config::{Command, Config};
use ordersystem_operator::uninstall::{self, CheckUninstall, Verdict};
use ordersystem_operator::{crd, metrics::Metrics, run, web};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `check-uninstall` beside the subcommands of `Config`, with its own flags.
    let matches = Config::command()
        .subcommand(CheckUninstall::augment_args(clap::Command::new(
            uninstall::SUBCOMMAND,
        )))
        .get_matches();
    let Config {
        command,
        watch_namespace,
        http_addr,
        log_format,
        default_image_tag,
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
    if let Some(Command::Crd) = command {
        print!("{}", crd::crd_yaml());
        return Ok(());
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let subscriber = tracing_subscriber::fmt().with_env_filter(filter);
    if log_format == "json" {
        subscriber.json().init()
    } else {
        subscriber.init()
    }
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
    run::run(client, namespace, default_image_tag, metrics, ready).await;
    Ok(())
}
