//! `openim-emu`: runs the OpenIM emulator as a standalone process (for `imgate dev` and manual
//! testing) until Ctrl-C or SIGTERM, logging JSON lines through tracing-subscriber.

use std::time::Duration;

use clap::Parser;
use openim_emu::{Config, Emulator};
use tokio::net::TcpListener;

#[derive(Parser, Debug)]
#[command(name = "openim-emu", about = "In-memory OpenIM HTTP API / WS gateway emulator")]
struct Cli {
    /// Address of the HTTP API (OpenIM's port 10002).
    #[arg(long, default_value = "127.0.0.1:10002")]
    api_listen: String,
    /// Address of the WebSocket gateway (OpenIM's port 10001).
    #[arg(long, default_value = "127.0.0.1:10001")]
    ws_listen: String,
    /// `share.yml secret`.
    #[arg(long, default_value = "openIM123")]
    secret: String,
    /// Admin user IDs (repeat the flag for several).
    #[arg(long = "admin-user-id", default_values_t = vec!["imAdmin".to_string()])]
    admin_user_ids: Vec<String>,
    /// Require friendship for single-chat sends (friendVerify).
    #[arg(long)]
    friend_verify: bool,
    /// Token lifetime in seconds.
    #[arg(long, default_value_t = 90 * 86_400)]
    token_expire_secs: u64,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let cli = Cli::parse();
    let config = Config {
        secret: cli.secret,
        admin_user_ids: cli.admin_user_ids,
        token_expire: Duration::from_secs(cli.token_expire_secs),
        friend_verify: cli.friend_verify,
        ..Config::default()
    };
    let api = TcpListener::bind(&cli.api_listen).await?;
    let ws = TcpListener::bind(&cli.ws_listen).await?;
    let emu = Emulator::start_on(config, api, ws).await?;
    tracing::info!(api = %emu.api_url(), ws = %emu.ws_url(), "openim-emu listening");
    wait_for_signal().await;
    tracing::info!("shutting down");
    emu.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
