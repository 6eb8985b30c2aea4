//! An in-memory emulator of OpenIM's HTTP API gateway and WebSocket handshake, built from
//! `shared/openim/contract.md`, so that imgate can be tested (and run with `imgate dev`) without a
//! real OpenIM deployment.
//!
//! It is deliberately faithful, weaknesses included (contract §10): `join_group` trusts the
//! body's `inviterUserID`, `search_msg` searches everyone's messages, `set_global_msg_recv_opt`
//! has no permission check, `get_users_info`/`get_groups_info` answer for anyone, and
//! `create_group` adds arbitrary existing users. The gateway is tested against those real
//! behaviours, so they must stay.
//!
//! Not emulated: gzip response compression, the BBR rate limiter, webhooks, most server-generated
//! notification messages (revoke and delete notifications are: `msg_manage`; group chats start at
//! seq 1 with the first user message), parts of the WebSocket gateway listed in [`ws`], and the
//! routes not listed in the module docs of each area (they answer 404 like an unknown path).

pub mod auth;
pub mod content;
pub mod conversation;
pub mod error;
pub mod friend;
pub mod group;
pub mod json;
pub mod jssdk;
pub mod msg;
pub mod msg_manage;
pub mod object;
pub mod server;
pub mod state;
pub mod token;
pub mod user;
pub mod versionlog;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use server::App;

/// Emulator configuration (defaults = OpenIM's shipped defaults).
#[derive(Clone, Debug)]
pub struct Config {
    /// `share.yml secret`: signs tokens and guards get_admin_token.
    pub secret: String,
    /// `imAdminUser.userIDs`; each is created at start (appMangerLevel 2, nickname "superAdmin").
    pub admin_user_ids: Vec<String>,
    /// Token lifetime; `expireTimeSeconds` in responses is this in seconds.
    pub token_expire: Duration,
    /// How long superseded admin tokens keep working before 1507.
    pub admin_token_grace: Duration,
    /// `friendVerify` of openim-rpc-msg.yml: single sends require friendship (1303).
    pub friend_verify: bool,
    /// WS read deadline (`pongWait`, 30 s): a connection that sends nothing that re-arms it
    /// for this long is closed ([`ws`]). Tests shorten it.
    pub ws_read_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            secret: "openIM123".into(),
            admin_user_ids: vec!["imAdmin".into()],
            token_expire: Duration::from_secs(90 * 86_400),
            admin_token_grace: Duration::from_secs(300),
            friend_verify: false,
            ws_read_timeout: Duration::from_secs(30),
        }
    }
}

/// A fault applied to every HTTP API request before it is handled.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    None,
    /// Answer late.
    Delay(Duration),
    /// Accept and never answer.
    Hang,
    /// Drop the TCP connection without any HTTP response.
    CloseConnection,
    /// Hold every request until [`Emulator::release`] (how many wait: [`Emulator::held`]), so a
    /// test can keep requests in flight at a moment of its choosing.
    Hold,
    /// Answer this HTTP status with an empty body, as OpenIM's panic recovery answers 500
    /// (contract §3.2): a 5xx storm.
    Status(u16),
    /// Handle the request (its effects are kept), then drop the connection before answering: a
    /// crash between doing and saying, the case where a caller cannot know whether a send happened.
    DropAfterHandling,
}

/// One POST handled by the API.
#[derive(Clone, Debug)]
pub struct SeenRequest {
    pub path: String,
    pub operation_id: Option<String>,
    /// Identity of a valid `token` header, if any.
    pub token_user_id: Option<String>,
    pub token_platform_id: Option<i32>,
    /// errCode answered (404 for an unknown path).
    pub err_code: i64,
}

/// Handle to a running emulator. Dropping it stops the listeners too.
pub struct Emulator {
    app: Arc<App>,
    api_addr: SocketAddr,
    ws_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Emulator {
    /// Bind API and WS listeners on 127.0.0.1:0 and start serving.
    pub async fn start(config: Config) -> std::io::Result<Emulator> {
        let api = TcpListener::bind("127.0.0.1:0").await?;
        let ws = TcpListener::bind("127.0.0.1:0").await?;
        Self::start_on(config, api, ws).await
    }

    /// Serve on the given listeners.
    pub async fn start_on(config: Config, api: TcpListener, ws: TcpListener) -> std::io::Result<Emulator> {
        let app = Arc::new(App::new(config));
        let api_addr = api.local_addr()?;
        let ws_addr = ws.local_addr()?;
        let (stop, stop_rx) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(server::serve(api, server::api_router(app.clone()), stop_rx.clone(), app.clone())),
            tokio::spawn(server::serve(ws, ws::ws_router(app.clone(), stop_rx.clone()), stop_rx, app.clone())),
        ];
        Ok(Emulator { app, api_addr, ws_addr, stop, tasks })
    }

    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    pub fn ws_addr(&self) -> SocketAddr {
        self.ws_addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api_addr)
    }

    /// `ws://127.0.0.1:PORT`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.ws_addr)
    }

    pub fn set_fault(&self, fault: Fault) {
        if let Ok(mut f) = self.app.fault.lock() {
            *f = fault;
        }
    }

    /// Requests waiting under [`Fault::Hold`].
    pub fn held(&self) -> usize {
        self.app.held.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Ends [`Fault::Hold`]: the fault is cleared and every held request goes on.
    pub fn release(&self) {
        self.set_fault(Fault::None);
        self.app.release.send_modify(|g| *g += 1);
    }

    /// HTTP API requests received so far, faulted ones included (a [`SeenRequest`] is recorded only
    /// for requests that were handled).
    pub fn received(&self) -> u64 {
        self.app.received.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Replaces the secret that signs tokens and guards `get_admin_token`, as an OpenIM restarted
    /// with another `share.yml secret` (its database kept): tokens signed before fail with 1505.
    pub fn set_secret(&self, secret: &str) {
        *self.app.secret.write().unwrap_or_else(|e| e.into_inner()) = secret.to_owned();
    }

    /// HTTP API requests being processed right now: received (see [`Emulator::received`]) and
    /// neither answered nor dropped yet — delayed, hung, held or being handled. 0 means no request
    /// can still change the database.
    pub fn active(&self) -> usize {
        self.app.active.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Restarts OpenIM with its database kept, as `docker compose restart` of its services does
    /// (MongoDB and Redis stay up): every open connection of both listeners (HTTP API and msg
    /// gateway) is dropped at once without an answer — a request being delayed or hung is never
    /// handled, one already handled stays done — then both listeners are closed for `down`, so
    /// connections are refused, then bound to the same addresses again. Users, messages, tokens
    /// and the fault ([`Emulator::set_fault`]) stay as they were. Returns once both listeners
    /// accept again; an error if a port could not be bound again (another socket took it). One
    /// restart at a time.
    pub async fn restart(&self, down: Duration) -> std::io::Result<()> {
        let mut rebound = self.app.rebound.subscribe();
        let back = *rebound.borrow_and_update() + 2;
        self.app.restarts.send_modify(|r| {
            r.generation += 1;
            r.down = down;
        });
        let came_back = tokio::time::timeout(down + Duration::from_secs(6), async {
            rebound.wait_for(|n| *n >= back).await.is_ok()
        })
        .await;
        match came_back {
            Ok(true) => Ok(()),
            _ => Err(std::io::Error::other("the emulator's listeners did not come back after a restart")),
        }
    }

    /// Every message stored, all conversations (in no particular order): what a look at OpenIM's
    /// MongoDB `msg` collection would show, e.g. to count how often a send was stored.
    pub fn stored_messages(&self) -> Vec<state::MsgData> {
        self.app.lock().messages.values().flatten().cloned().collect()
    }

    /// Requests seen so far, in order.
    pub fn seen(&self) -> Vec<SeenRequest> {
        self.app.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Stop the listeners and close open connections.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
