//! The `runway` binary: `runway server` runs the platform; every other command is a
//! client of its App Runner API, signing requests with the key the server saved.
//!
//! The binary wires the crates together and talks to people; it must hold no platform
//! logic of its own.

#![forbid(unsafe_code)]
// A command-line program prints its results.
#![allow(clippy::print_stdout)]

mod client;
mod commands;
mod server;

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
    Server(server::ServerArgs),
    /// List, describe and delete services.
    Services {
        #[command(subcommand)]
        command: commands::ServicesCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Create a service from an image, or deploy a new image to an existing one.
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
    /// Show a service's operations.
    Operations {
        #[command(subcommand)]
        command: commands::OperationsCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// How the client finds and signs in to the server.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// The server's data directory, where `endpoints.json` and `credentials` are.
    #[arg(long, global = true, env = "RUNWAY_DATA_DIR", default_value = server::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// The API's URL (default: from DATA_DIR/endpoints.json).
    #[arg(long, global = true, env = "RUNWAY_ENDPOINT_URL")]
    endpoint_url: Option<String>,
    /// Output format: table or json.
    #[arg(long, short, global = true, default_value = "table")]
    output: commands::Output,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server(args) => server::run(args),
        Command::Services { command, client } => commands::services(command, &client),
        Command::Deploy { args, client } => commands::deploy(args, &client),
        Command::Operations { command, client } => commands::operations(command, &client),
        Command::Registry { command, client } => commands::registry(command, &client),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("runway: {e:#}");
            ExitCode::FAILURE
        }
    }
}
