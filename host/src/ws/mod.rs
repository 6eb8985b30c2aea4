//! The one real-time path: a WebSocket relay between clients and OpenIM's msg gateway
//! (client-auth §8, contract §5), so OpenIM stays unreachable and its tokens never leave imgate.
//!
//! Two doors lead in: `GET /openim/ws` for unmodified OpenIM SDKs (OpenIM's handshake query,
//! `token` = an imgate bearer token) and `GET /v1/ws?ticket=…` for imgate-native clients (a
//! single-use ticket from `POST /v1/ws/ticket`). Both authenticate as a route stage ([`auth`])
//! before anything else runs; the relay ([`relay`]) then dials OpenIM with the user's cached
//! OpenIM token, upgrades the client, and polices every client frame ([`policy`]): each frame is
//! decoded, bound to the session's user, its objects authorized, sends run through the same
//! plugin chain as the REST send routes, and what was checked is re-encoded. Server frames
//! (replies, pushes, kicks) pass down unchanged. [`Registry`] knows every live relayed socket, so
//! logout and revocation close them at once.

pub(crate) mod args;
pub mod auth;
pub mod direct;
pub(crate) mod policy;
mod registry;
pub mod relay;

pub use policy::WS_SEND_ROUTE;

use crate::state::AppState;

/// Sessions ended (logout, revocation, device deletion): their relayed sockets are closed now
/// and their direct-mode grants end (OpenIM `force_logout`), here and, in a fleet, on every other
/// instance (an event; an instance that misses it finds out when it re-synchronises, or at its
/// sockets' next look at the session).
pub async fn sessions_ended(state: &AppState, sessions: &[&str], why: Ended) {
    end_here(state, sessions, why).await;
    if let Some(fleet) = &state.fleet {
        if sessions.is_empty() {
            return;
        }
        let event = crate::fleet::events::Event::SessionsEnded {
            from: fleet.process().to_owned(),
            sessions: sessions.iter().map(|s| (*s).to_owned()).collect(),
            expired: why == Ended::Expired,
        };
        if let Err(e) = crate::fleet::events::publish(fleet, &event).await {
            tracing::warn!(error = %e, sessions = sessions.len(), "could not tell the other instances that sessions ended; their sockets close at the next look");
        }
    }
}

/// [`sessions_ended`] on this instance only (what an event from another instance asks).
pub async fn end_here(state: &AppState, sessions: &[&str], why: Ended) {
    state.ws.end_sessions(sessions.iter().copied(), why);
    direct::end(state, sessions.iter().copied()).await;
}
pub use registry::{Ended, Registry};
