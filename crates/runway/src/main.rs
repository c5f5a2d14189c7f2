//! The `runway` binary: `runway server` runs the platform, with the router in a process
//! of its own that it supervises (`runway router-process`, see `dataplane`); every other
//! command is a client of its App Runner API, signing requests with the key the server
//! saved.
//!
//! The binary wires the crates together and talks to people; it must hold no platform
//! logic of its own.

#![forbid(unsafe_code)]
// A command-line program prints its results.
#![allow(clippy::print_stdout)]

mod adapters;
mod client;
mod commands;
mod dataplane;
mod domains;
mod listeners;
mod network_commands;
mod networks;
mod profile;
mod runtime_catalog;
mod secrets;
mod server;
mod sources;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// runway: a self-hosted serverless web-hosting platform that speaks the App Runner API.
#[derive(Debug, Parser)]
#[command(name = "runway", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the platform.
    Server(Box<server::ServerArgs>),
    /// Stop the router process and every instance and remove runway's network from this
    /// host (takes the same options as `server`; the server must be stopped).
    Purge(Box<server::ServerArgs>),
    /// Restart the router process without refusing a connection (after upgrading
    /// runway): a new one takes over the listening sockets and routes, the old one
    /// finishes its requests in flight (takes the same options as `server`).
    RestartRouter(Box<server::ServerArgs>),
    /// List, describe and delete services.
    Services {
        #[command(subcommand)]
        command: commands::ServicesCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Deploy an image or a source directory: create the service, or deploy a new
    /// version of it.
    Deploy {
        #[command(flatten)]
        args: commands::DeployArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List repositories and tags in runway's image registry, and collect its garbage.
    Registry {
        #[command(subcommand)]
        command: commands::RegistryCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List connections and set their credentials (tokens, SSH keys, webhook secrets).
    Connections {
        #[command(subcommand)]
        command: commands::ConnectionsCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The managed runtimes' base images: list them, set one, check one.
    Runtimes {
        #[command(subcommand)]
        command: commands::RuntimesCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Associate custom domains with a service, list them with the DNS records to
    /// create, and disassociate them.
    Domains {
        #[command(subcommand)]
        command: commands::DomainsCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Secrets Manager: create, put, get (the value only with --show-value), ls, rm.
    Secrets {
        #[command(subcommand)]
        command: secrets::SecretsCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// SSM Parameter Store: put, get (a SecureString only with --with-decryption), ls, rm.
    Parameters {
        #[command(subcommand)]
        command: secrets::ParametersCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Private networks: VPCs, subnets (bridges or interfaces), security groups, VPC
    /// connectors and interface endpoints.
    Networks {
        #[command(subcommand)]
        command: network_commands::NetworksCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Make images: import a root filesystem as a base image for builds.
    Image {
        #[command(subcommand)]
        command: commands::ImageCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a service's logs: every instance's output, newest instance first.
    Logs {
        #[command(flatten)]
        args: commands::LogsArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Run the router process (started by `runway server`, not by people).
    #[command(hide = true)]
    RouterProcess(dataplane::RouterProcessArgs),
    /// Run an instance's shim (started by the runtime, not by people).
    #[command(hide = true)]
    Shim {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Show a service's event log.
    Events {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List a service's instances.
    Instances {
        #[command(subcommand)]
        command: commands::InstancesCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List a service's revisions.
    Revisions {
        #[command(subcommand)]
        command: commands::RevisionsCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Redeploy an earlier revision (by default the one before the current), without rebuilding.
    Rollback {
        name: String,
        revision: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Split a service's traffic between revisions: REVISION=PERCENT[:TAG]...
    Traffic {
        name: String,
        #[arg(required = true)]
        targets: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Sign in to a runway server on another machine and save it as a profile, so that
    /// later commands need no flags.
    Login(commands::LoginArgs),
    /// Show a service's operations.
    Operations {
        #[command(subcommand)]
        command: commands::OperationsCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// How the client finds and signs in to the server: a profile `runway login` saved (on
/// another machine), or the server's data directory (on the server's machine).
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// The profile to use [default: `default` if `runway login` saved one, else the data
    /// directory].
    #[arg(long, global = true, env = "RUNWAY_PROFILE")]
    profile: Option<String>,
    /// The server's data directory, where `endpoints.json` and `credentials` are
    /// [default: /var/lib/runway].
    #[arg(long, global = true, env = "RUNWAY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The API's URL (default: the profile's, or DATA_DIR/endpoints.json's).
    #[arg(long, global = true, env = "RUNWAY_ENDPOINT_URL")]
    endpoint_url: Option<String>,
    /// The only CA certificate (PEM) to trust for the API and the registry (default: the
    /// profile's, or the system's and the data directory's local CA).
    #[arg(long, global = true, env = "RUNWAY_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Output format: table or json.
    #[arg(long, short, global = true, default_value = "table")]
    output: commands::Output,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Shim { args } => return runway_runtime::shim::main(args.into_iter()),
        Command::RouterProcess(args) => dataplane::router_process(args),
        Command::Logs { args, client } => commands::logs(args, &client),
        Command::Server(args) => server::run(*args),
        Command::Login(args) => commands::login(args),
        Command::Purge(args) => server::purge(*args),
        Command::RestartRouter(args) => server::restart_router(*args),
        Command::Services { command, client } => commands::services(command, &client),
        Command::Deploy { args, client } => commands::deploy(args, &client),
        Command::Operations { command, client } => commands::operations(command, &client),
        Command::Registry { command, client } => commands::registry(command, &client),
        Command::Image { command, client } => commands::image(command, &client),
        Command::Connections { command, client } => commands::connections(command, &client),
        Command::Runtimes { command, client } => commands::runtimes(command, &client),
        Command::Domains { command, client } => commands::domains(command, &client),
        Command::Secrets { command, client } => secrets::secrets(command, &client),
        Command::Parameters { command, client } => secrets::parameters(command, &client),
        Command::Networks { command, client } => network_commands::networks(command, &client),
        Command::Events { name, client } => commands::events(name, &client),
        Command::Revisions { command, client } => commands::revisions(command, &client),
        Command::Instances { command, client } => commands::instances(command, &client),
        Command::Rollback {
            name,
            revision,
            client,
        } => commands::rollback(name, revision, &client),
        Command::Traffic {
            name,
            targets,
            client,
        } => commands::traffic(name, targets, &client),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("runway: {e:#}");
            ExitCode::FAILURE
        }
    }
}
