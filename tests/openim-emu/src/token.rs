//! OpenIM's token model (contract §4): HS256 JWTs plus a server-side state map per
//! (userID, platformID).
//!
//! Claims are `{"UserID","PlatformID","exp","iat"}` with `iat = now - 5s`. Verification is JWT
//! first (1501 expired / 1503 malformed / 1504 not valid yet / 1505 bad signature), then the state
//! map (normal → ok, kicked → 1506, other → 1505, absent → 1507 unless it is an admin token still
//! in its grace period). Multi-login policy 1 (the default) is applied at creation time.
//!
//! One deliberate difference: two tokens minted for the same (user, platform) within the same
//! second would be byte-identical in OpenIM; here `iat` is moved back a second at a time until
//! the token is new, so "reissue kicks the old token" also holds for back-to-back calls.

use std::time::{Duration, Instant};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::state::{now_s, State, TOKEN_KICKED, TOKEN_NORMAL};

/// The admin platform ID (§4.3).
pub const ADMIN_PLATFORM: i32 = 10;

/// JWT claims, with Go's field names (§4.2).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    #[serde(rename = "UserID")]
    pub user_id: String,
    #[serde(rename = "PlatformID")]
    pub platform_id: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
}

/// Sign claims with the shared secret.
fn sign(secret: &str, claims: &Claims) -> Result<String, ApiError> {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret.as_bytes()))
        .map_err(|e| ApiError::ServerInternal(e.to_string()))
}

/// Verify signature and expiry only (step 1 of §4.4).
pub fn parse_jwt(secret: &str, token: &str) -> Result<Claims, ApiError> {
    let mut v = Validation::new(Algorithm::HS256);
    v.leeway = 0;
    v.validate_nbf = true;
    v.required_spec_claims.clear();
    match jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(secret.as_bytes()), &v) {
        Ok(data) => Ok(data.claims),
        Err(e) => Err(match e.kind() {
            ErrorKind::ExpiredSignature => ApiError::TokenExpired,
            ErrorKind::ImmatureSignature => ApiError::TokenNotValidYet,
            ErrorKind::InvalidSignature => ApiError::TokenUnknown("signature is invalid".into()),
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                ApiError::TokenUnknown("signing method (alg) is unavailable".into())
            }
            _ => ApiError::TokenMalformed,
        }),
    }
}

/// Full verification: JWT, then the state map (§4.4).
pub fn verify(st: &State, secret: &str, admins: &[String], token: &str) -> Result<Claims, ApiError> {
    let claims = parse_jwt(secret, token)?;
    let key = (claims.user_id.clone(), claims.platform_id);
    match st.tokens.get(&key).and_then(|m| m.get(token)) {
        Some(&TOKEN_NORMAL) => Ok(claims),
        Some(&TOKEN_KICKED) => Err(ApiError::TokenKicked),
        Some(_) => Err(ApiError::TokenUnknown("token state unknown".into())),
        None => {
            let in_grace =
                admins.contains(&claims.user_id) && st.admin_grace.get(token).is_some_and(|end| *end > Instant::now());
            if in_grace {
                Ok(claims)
            } else {
                Err(ApiError::TokenNotExist)
            }
        }
    }
}

/// Mint a JWT that is not already in the state map of (user, platform).
fn mint(st: &State, secret: &str, user_id: &str, platform_id: i32, expire: Duration) -> Result<String, ApiError> {
    let now = now_s();
    let existing = st.tokens.get(&(user_id.to_string(), platform_id));
    for back in 0..600 {
        let claims = Claims {
            user_id: user_id.to_string(),
            platform_id,
            exp: Some(now + expire.as_secs() as i64),
            iat: Some(now - 5 - back),
        };
        let tok = sign(secret, &claims)?;
        let seen = existing.is_some_and(|m| m.contains_key(&tok)) || st.admin_grace.contains_key(&tok);
        if !seen {
            return Ok(tok);
        }
    }
    Err(ApiError::ServerInternal("could not mint a fresh token".into()))
}

/// Issue a user token under multi-login policy 1 (§4.2): delete non-normal or unparsable tokens
/// of the user, kick every token of the same platform, store the new one.
pub fn issue_user_token(
    st: &mut State,
    secret: &str,
    user_id: &str,
    platform_id: i32,
    expire: Duration,
) -> Result<String, ApiError> {
    let tok = mint(st, secret, user_id, platform_id, expire)?;
    for ((uid, pid), map) in st.tokens.iter_mut() {
        if uid != user_id {
            continue;
        }
        map.retain(|t, s| *s == TOKEN_NORMAL && parse_jwt(secret, t).is_ok());
        if *pid == platform_id {
            for s in map.values_mut() {
                *s = TOKEN_KICKED;
            }
        }
    }
    st.tokens.entry((user_id.to_string(), platform_id)).or_default().insert(tok.clone(), TOKEN_NORMAL);
    Ok(tok)
}

/// Issue an admin token (platform 10): earlier admin tokens of that user move to the grace set
/// (§4.1) and leave the live map.
pub fn issue_admin_token(
    st: &mut State,
    secret: &str,
    user_id: &str,
    expire: Duration,
    grace: Duration,
) -> Result<String, ApiError> {
    let tok = mint(st, secret, user_id, ADMIN_PLATFORM, expire)?;
    let key = (user_id.to_string(), ADMIN_PLATFORM);
    let old = st.tokens.remove(&key).unwrap_or_default();
    let end = Instant::now() + grace;
    for (t, s) in old {
        if s == TOKEN_NORMAL {
            st.admin_grace.entry(t).or_insert(end);
        }
    }
    let now = Instant::now();
    st.admin_grace.retain(|_, e| *e > now);
    st.tokens.entry(key).or_default().insert(tok.clone(), TOKEN_NORMAL);
    Ok(tok)
}

/// Mark every token of (user, platform) kicked (force_logout, WS multi-login).
pub fn kick_all(st: &mut State, user_id: &str, platform_id: i32, except: Option<&str>) {
    if let Some(map) = st.tokens.get_mut(&(user_id.to_string(), platform_id)) {
        for (t, s) in map.iter_mut() {
            if Some(t.as_str()) != except {
                *s = TOKEN_KICKED;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_errors_map_to_codes() {
        assert_eq!(parse_jwt("s", "not-a-jwt").unwrap_err().code(), 1503);
        let c = Claims { user_id: "u".into(), platform_id: 1, exp: Some(now_s() + 100), iat: Some(now_s() - 5) };
        let t = sign("other", &c).unwrap();
        let e = parse_jwt("s", &t).unwrap_err();
        assert_eq!((e.code(), e.msg().as_str()), (1505, "signature is invalid"));
        let c = Claims { exp: Some(now_s() - 10), ..c };
        assert_eq!(parse_jwt("s", &sign("s", &c).unwrap()).unwrap_err().code(), 1501);
    }

    #[test]
    fn reissue_is_distinct_and_kicks() {
        let mut st = State::default();
        let a = issue_user_token(&mut st, "s", "u", 1, Duration::from_secs(60)).unwrap();
        let b = issue_user_token(&mut st, "s", "u", 1, Duration::from_secs(60)).unwrap();
        assert_ne!(a, b);
        assert_eq!(verify(&st, "s", &[], &a).unwrap_err().code(), 1506);
        assert!(verify(&st, "s", &[], &b).is_ok());
    }
}
