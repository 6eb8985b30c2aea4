//! Bearer access tokens (client-auth §5), for unmodified OpenIM SDKs on the compatible surface.
//!
//! A token is 32 random bytes (b64url), minted by a signed call, stored only as its SHA-256, and
//! bound to its session: it ends when the session ends (logout, revocation, expiry) and lives at
//! most `auth.bearer_token_lifetime_secs`. It is never an OpenIM token, and only the OpenIM-
//! compatible surface accepts it. No token is minted for, and none authenticates, a session of
//! one of OpenIM's admin ids (`openim.admin_user_id`, `[openim.privileged] other_admin_user_ids`)
//! that `allow_user_ids` does not name: such a session can only predate that config (handshakes
//! refuse them), and OpenIM exempts those ids from its friend and blacklist checks.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::now_ms;
use super::signed::Caller;
use crate::openim::Privilege;
use crate::state::AppState;
use crate::store::StoreError;

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Mints a token for the caller's session; returns it and its end (ms), or the privilege that
/// forbids one (a configured check only: the handshake already asked OpenIM for the level).
pub async fn mint(state: &AppState, caller: &Caller) -> Result<Result<(String, i64), Privilege>, StoreError> {
    if let Some(p) = state.openim.configured_privilege(&caller.user_id) {
        return Ok(Err(p));
    }
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let token = B64URL.encode(raw);
    let lifetime = state.config.auth.bearer_token_lifetime_secs as i64 * 1000;
    let expires_at = (now_ms() + lifetime).min(caller.session_expires_at_ms);
    state.store.put_token(token_hash(&token), &caller.session_id, expires_at).await?;
    Ok(Ok((token, expires_at)))
}

/// The caller behind a bearer token, if the token and its session are both alive (an error if
/// the store could not say).
pub async fn authenticate(state: &AppState, token: &str) -> Result<Option<Caller>, StoreError> {
    if token.len() != 43 {
        return Ok(None);
    }
    let now = now_ms();
    let Some(sid) = state.store.token_session(&token_hash(token), now).await? else { return Ok(None) };
    let idle_ms = state.config.auth.session_idle_timeout_secs as i64 * 1000;
    let Some(caller) = state.store.live_session(&sid, now, idle_ms).await?.map(Caller::from) else { return Ok(None) };
    // A token minted before the config named this user an OpenIM admin is dead from now on.
    Ok(state.openim.configured_privilege(&caller.user_id).is_none().then_some(caller))
}
