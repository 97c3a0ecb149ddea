//! A local Atlas platform on the command line. Configured by the environment:
//!
//! - `ATLAS_FIXTURE` (or `ATLAS_DATA_FILE`): the Atlas data file to serve (required);
//! - `ATLAS_API_KEY`: the key to accept instead of the file's;
//! - `PORT` (absent or 0: a free port) and `BIND` (default `127.0.0.1`).
//!
//! Prints `listening <port>` on stdout once it accepts connections; logs go to stderr
//! (`RUST_LOG` filters them). SIGINT or SIGTERM stops it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use atlas_actix::emulator::Emulator;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

fn address() -> Result<SocketAddr, String> {
    let ip = match env("BIND") {
        Some(bind) => bind
            .parse::<IpAddr>()
            .map_err(|err| format!("BIND={bind:?}: {err}"))?,
        None => IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    let port = match env("PORT") {
        Some(port) => port
            .parse::<u16>()
            .map_err(|err| format!("PORT={port:?}: {err}"))?,
        None => 0,
    };
    Ok(SocketAddr::new(ip, port))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("atlas-emulator: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let file = env("ATLAS_FIXTURE")
        .or_else(|| env("ATLAS_DATA_FILE"))
        .ok_or(
            "set ATLAS_FIXTURE to the Atlas data file to serve (see examples/atlas-data.json)",
        )?;
    let mut emulator = Emulator::from_file(file)
        .map_err(|err| err.to_string())?
        .bind(address()?);
    if let Some(key) = env("ATLAS_API_KEY") {
        emulator = emulator.api_key(key);
    }
    actix_rt::System::new().block_on(async move {
        let (server, addr) = emulator.into_server().map_err(|err| format!("{err}"))?;
        // The harness and scripts wait for this line.
        println!("listening {}", addr.port());
        tracing::info!(%addr, "Atlas emulator ready");
        server.await.map_err(|err| err.to_string())
    })
}
