//! The Noise IK handshake (client-auth §3): message 1 in, a session and message 2 out.
//!
//! `Noise_IK_25519_ChaChaPoly_SHA256`, prologue `imgate/1`, gateway = responder, through `snow`
//! with the [`DalekResolver`](super::x25519::DalekResolver). The CPU part is plain functions
//! ([`read_message1`], [`Incoming::respond`]) so benchmarks measure exactly what requests run.
//! Order of checks in [`handle`]: per-address rate limit → body cap and shape (no curve operation
//! for bytes that cannot be a message 1) → low-order ephemeral → decrypt with each gateway key →
//! enrolled key, matching `device_id` → `ts` within ±300 s → `ts` newer than the device's last
//! (advanced only now, so a rejected message never moves it) → the device's user is not one of
//! OpenIM's privileged accounts → session. Every failure after the shape check is the same 401,
//! padded to the same number of X25519 operations; the reason goes to the audit trail only.
//! Message 1's payload is replayable by design: nothing but `device_id` and `ts` is read from it.
//!
//! The privilege check covers devices enrolled before an upgrade or a config change (enrollment
//! refuses privileged accounts too): an admin id is refused on the config alone; for any other
//! user OpenIM's `appMangerLevel` is read (`get_users_info`, reused for
//! `openim.privileged.level_cache_ms`), so a user promoted in OpenIM after enrollment gets no new
//! session. It runs last, so replays and forgeries never cost an OpenIM call. If OpenIM cannot
//! answer, no session is made and the client gets OpenIM's 502/504: it has proven its key, and a
//! 401 would tell it its credentials are wrong when they are not.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::{Extension, Json};
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine;
use bytes::Bytes;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::now_ms;
use super::x25519::{is_low_order, DalekResolver, DhCounter};
use crate::error::{ApiError, ErrorCode};
use crate::keys::GatewayKey;
use crate::openim::{CallCtx, OpenImError, Privilege};
use crate::state::AppState;
use crate::store::Session;
use crate::telemetry::RequestId;

pub const PROTOCOL: &str = "Noise_IK_25519_ChaChaPoly_SHA256";
pub const PROLOGUE: &[u8] = b"imgate/1";
/// Request body cap for `POST /v1/auth/handshake`.
pub const MAX_BODY: usize = 4096;
/// ±300 s around the gateway clock.
pub const MAX_SKEW_MS: i64 = 300_000;
/// IK message 1 = e (32) + encrypted s (32 + 16) + encrypted payload (payload + 16).
const MSG1_OVERHEAD: usize = 32 + 48 + 16;
const MAX_PAYLOAD: usize = 256;

/// Why a message 1 was refused.
#[derive(Debug)]
pub enum Reject {
    /// Not a message 1 at all (400): checked before any curve operation.
    Malformed(&'static str),
    /// Anything else (the generic 401); the reason is for the audit trail.
    Unauthenticated(&'static str),
    /// An authentic message 1 whose user's OpenIM privilege could not be read (OpenIM's 502/504).
    Upstream(OpenImError),
    /// The state store could not answer (503 `store_unavailable`): never a session unchecked.
    Store(crate::store::StoreError),
}

impl From<crate::store::StoreError> for Reject {
    fn from(e: crate::store::StoreError) -> Reject {
        Reject::Store(e)
    }
}

/// Message 1's payload: the only two fields the gateway reads.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Msg1Payload {
    pub device_id: String,
    pub ts: i64,
}

/// A decrypted message 1, ready to be answered.
pub struct Incoming {
    state: snow::HandshakeState,
    pub remote_static: [u8; 32],
    pub payload: Msg1Payload,
}

fn params() -> snow::params::NoiseParams {
    // A constant, valid pattern name: parsing cannot fail.
    PROTOCOL.parse().unwrap_or_else(|_| unreachable!("valid Noise pattern"))
}

/// The gateway's side of the handshake as `snow` is set up for it: imgate's resolver (every DH
/// counted and contributory only), the gateway's static key, the prologue. [`read_message1`]
/// builds each responder from it with [`PROTOCOL`] and [`PROLOGUE`]. Public but hidden for the
/// conformance vectors (host/tests/conformance_vectors.rs, attacks.md V5), which give it the
/// vectors' protocols and prologues and fix the ephemeral key before building.
#[doc(hidden)]
pub fn responder_builder<'a>(
    params: snow::params::NoiseParams,
    static_secret: &'a [u8],
    prologue: &'a [u8],
    counter: &DhCounter,
) -> Result<snow::Builder<'a>, snow::Error> {
    let resolver = Box::new(DalekResolver { counter: counter.clone() });
    snow::Builder::with_resolver(params, resolver).local_private_key(static_secret)?.prologue(prologue)
}

/// Decrypts message 1 with the first gateway key that opens it.
pub fn read_message1(keys: &[GatewayKey], counter: &DhCounter, msg: &[u8]) -> Result<Incoming, Reject> {
    if msg.len() < MSG1_OVERHEAD || msg.len() > MSG1_OVERHEAD + MAX_PAYLOAD {
        return Err(Reject::Malformed("message 1 has an impossible length"));
    }
    let mut e = [0u8; 32];
    e.copy_from_slice(&msg[..32]);
    if is_low_order(&e) {
        return Err(Reject::Unauthenticated("low-order ephemeral key"));
    }
    let mut payload = [0u8; MAX_PAYLOAD];
    for key in keys {
        let secret = key.secret.to_bytes();
        let mut hs = responder_builder(params(), &secret, PROLOGUE, counter)
            .and_then(|b| b.build_responder())
            .map_err(|_| Reject::Unauthenticated("noise setup"))?;
        let Ok(n) = hs.read_message(msg, &mut payload) else { continue };
        let remote: [u8; 32] = hs
            .get_remote_static()
            .and_then(|r| r.try_into().ok())
            .ok_or(Reject::Unauthenticated("no remote static key"))?;
        let payload: Msg1Payload = serde_json::from_slice(&payload[..n])
            .map_err(|_| Reject::Unauthenticated("message 1 payload is not the expected JSON"))?;
        return Ok(Incoming { state: hs, remote_static: remote, payload });
    }
    Err(Reject::Unauthenticated("message 1 does not decrypt under any gateway key"))
}

impl Incoming {
    /// Writes message 2 carrying `payload`.
    pub fn respond(mut self, payload: &[u8]) -> Result<Vec<u8>, Reject> {
        let mut out = vec![0u8; payload.len() + 32 + 16 + 64];
        let n = self.state.write_message(payload, &mut out).map_err(|_| Reject::Unauthenticated("message 2"))?;
        out.truncate(n);
        Ok(out)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HandshakeBody {
    msg: String,
}

#[derive(Serialize)]
struct Msg2Payload<'a> {
    session_id: &'a str,
    session_key: String,
    user_id: &'a str,
    platform_id: i32,
    expires_at: i64,
}

/// The request body of `POST /v1/auth/handshake` (`{"msg": "<base64>"}`, at most [`MAX_BODY`]
/// bytes) → message 1's bytes. No curve operation happens before this has passed.
pub(crate) fn decode_body(body: &[u8]) -> Result<Vec<u8>, ApiError> {
    if body.len() > MAX_BODY {
        return Err(ApiError::new(ErrorCode::PayloadTooLarge));
    }
    let parsed: HandshakeBody =
        serde_json::from_slice(body).map_err(|_| ApiError::bad_request("expected {\"msg\": \"<base64>\"}"))?;
    B64.decode(parsed.msg.as_bytes()).map_err(|_| ApiError::bad_request("msg is not base64"))
}

/// `POST /v1/auth/handshake`.
pub async fn handle(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(request): Extension<RequestId>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    if !state.config.auth.users {
        return Err(ApiError::new(ErrorCode::NotFound).with_message("user authentication is disabled on this gateway"));
    }
    state.handshake_limits.check(peer.ip())?;
    let msg = decode_body(&body)?;
    let counter = DhCounter::default();
    let result = accept(&state, &counter, &msg, &request).await;
    let ops = counter.get();
    let outcome = match &result {
        Ok(_) => "accepted",
        Err(Reject::Malformed(_)) => "malformed",
        Err(Reject::Upstream(_) | Reject::Store(_)) => "failed",
        Err(Reject::Unauthenticated(_)) => {
            // Every refusal costs what the most expensive one does (two DH per gateway key), so
            // timing tells an attacker nothing about which check failed.
            let target = 2 * state.gateway_keys.len() as u64;
            for _ in ops..target {
                counter.dummy_dh();
            }
            "refused"
        }
    };
    state.metrics.handshake_dh_operations.inc_by(counter.get());
    match result {
        Ok((session, msg2)) => {
            request.note_user(&session.user_id);
            request.note_reason(&format!(
                "handshake {outcome}: device {}, session {}",
                session.device_id, session.session_id
            ));
            Ok(Json(json!({ "msg": B64.encode(msg2) })))
        }
        Err(Reject::Malformed(why)) => {
            request.note_reason(&format!("handshake {outcome}: {why}"));
            Err(ApiError::bad_request("not a Noise IK message 1"))
        }
        Err(Reject::Unauthenticated(why)) => {
            request.note_reason(&format!("handshake {outcome}: {why}"));
            Err(ApiError::unauthenticated().with_detail(why))
        }
        Err(Reject::Store(e)) => {
            request.note_reason(&format!("handshake {outcome}: {e}"));
            Err(e.into())
        }
        Err(Reject::Upstream(e)) => {
            request.note_reason(&format!("handshake {outcome}: OpenIM privilege check: {}", e.outcome()));
            // Only "OpenIM could not answer" codes: an errCode mapped to 400/403/404 would read
            // as a verdict on the client's own request.
            let code = match &e {
                OpenImError::Timeout(_) => ErrorCode::UpstreamTimeout,
                OpenImError::Unavailable(_) => ErrorCode::UpstreamUnavailable,
                OpenImError::BadResponse(_) | OpenImError::NoRoute(_) => ErrorCode::UpstreamBadResponse,
                OpenImError::Api { .. } | OpenImError::InvalidCall(_) => ErrorCode::UpstreamRejected,
                OpenImError::TokenStore(_) => ErrorCode::StoreUnavailable,
                OpenImError::AuthFailed(_) => ErrorCode::UpstreamAuthFailed,
                // Its Retry-After with it.
                OpenImError::CircuitOpen { .. } => return Err(e.into()),
            };
            Err(ApiError::new(code).with_detail(e.to_string()))
        }
    }
}

/// Everything after the body is decoded: decrypt, check, create the session, answer.
async fn accept(
    state: &AppState,
    counter: &DhCounter,
    msg: &[u8],
    request: &RequestId,
) -> Result<(Session, Vec<u8>), Reject> {
    let incoming = read_message1(&state.gateway_keys, counter, msg)?;
    let device = state
        .store
        .device_by_key(&incoming.remote_static)
        .await?
        .ok_or(Reject::Unauthenticated("static key not enrolled"))?;
    if device.device_id != incoming.payload.device_id {
        return Err(Reject::Unauthenticated("device_id does not match the enrolled key"));
    }
    let now = now_ms();
    if (incoming.payload.ts - now).abs() > MAX_SKEW_MS {
        return Err(Reject::Unauthenticated("ts outside the ±300 s window"));
    }
    if !state.store.advance_handshake_ts(&device.public_key, incoming.payload.ts).await? {
        return Err(Reject::Unauthenticated("ts not newer than the last accepted one (replay)"));
    }
    match state.openim.privilege(&CallCtx::for_request(request), &device.user_id).await {
        Ok(None) => {}
        Ok(Some(Privilege::Admin)) => {
            return Err(Reject::Unauthenticated(
                "the device's user is an OpenIM admin id not in openim.privileged.allow_user_ids",
            ))
        }
        Ok(Some(Privilege::AppManager(_))) => {
            return Err(Reject::Unauthenticated(
                "the device's user has OpenIM appMangerLevel >= 2 and is not in openim.privileged.allow_user_ids",
            ))
        }
        Err(e) => return Err(Reject::Upstream(e)),
    }
    let auth = &state.config.auth;
    let mut key = [0u8; 32];
    let mut id = [0u8; 18];
    rand::rngs::OsRng.fill_bytes(&mut key);
    rand::rngs::OsRng.fill_bytes(&mut id);
    let session = Session {
        session_id: B64URL.encode(id),
        session_key: key,
        user_id: device.user_id.clone(),
        device_id: device.device_id.clone(),
        platform_id: device.platform_id,
        tier: device.tier.clone(),
        created_at_ms: now,
        expires_at_ms: now + auth.session_lifetime_secs as i64 * 1000,
        last_used_ms: now,
    };
    let payload = Msg2Payload {
        session_id: &session.session_id,
        session_key: B64.encode(session.session_key),
        user_id: &session.user_id,
        platform_id: session.platform_id,
        expires_at: session.expires_at_ms,
    };
    let payload = serde_json::to_vec(&payload).map_err(|_| Reject::Unauthenticated("message 2 payload"))?;
    let msg2 = incoming.respond(&payload)?;
    state.store.put_session(session.clone()).await?;
    Ok((session, msg2))
}

/// Handshake rate limits: per source address (IPv6 by /64) and for the whole gateway.
pub struct HandshakeLimits {
    per_address: governor::DefaultKeyedRateLimiter<std::net::IpAddr>,
    global: governor::DefaultDirectRateLimiter,
}

impl HandshakeLimits {
    pub fn new(per_address_per_sec: u32, per_address_burst: u32, global_per_sec: u32) -> HandshakeLimits {
        use governor::Quota;
        use std::num::NonZeroU32;
        let nz = |n: u32| NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN);
        HandshakeLimits {
            per_address: governor::RateLimiter::keyed(
                Quota::per_second(nz(per_address_per_sec)).allow_burst(nz(per_address_burst)),
            ),
            global: governor::RateLimiter::direct(
                Quota::per_second(nz(global_per_sec)).allow_burst(nz(global_per_sec)),
            ),
        }
    }

    /// 429 with `Retry-After` once an address (or everyone together) is over its budget.
    pub fn check(&self, ip: std::net::IpAddr) -> Result<(), ApiError> {
        use governor::clock::{Clock, DefaultClock};
        let key = match ip {
            std::net::IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
                let mut o = v6.octets();
                o[8..].fill(0);
                std::net::IpAddr::V6(o.into())
            }
            std::net::IpAddr::V6(v6) => {
                std::net::IpAddr::V4(v6.to_ipv4_mapped().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED))
            }
            v4 => v4,
        };
        let verdict = self.per_address.check_key(&key).and_then(|()| self.global.check());
        if self.per_address.len() > 100_000 {
            self.per_address.retain_recent();
        }
        verdict.map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let mut e = ApiError::new(ErrorCode::RateLimited).with_message("too many handshakes, retry later");
            e.retry_after_secs = Some(crate::ratelimit::retry_after_secs(wait));
            e
        })
    }
}
