//! `/auth/*` routes (contract §4): admin and user tokens, parse_token, force_logout.

use serde::Deserialize;
use serde_json::json;

use crate::error::ApiError;
use crate::json::decode;
use crate::server::{Ctx, HResult, Handler};
use crate::token::{self, ADMIN_PLATFORM};

pub fn routes() -> Vec<(&'static str, Handler)> {
    vec![
        ("/auth/get_admin_token", get_admin_token as Handler),
        ("/auth/get_user_token", get_user_token),
        ("/auth/parse_token", parse_token),
        ("/auth/force_logout", force_logout),
    ]
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AdminTokenReq {
    secret: String,
    #[serde(rename = "userID")]
    user_id: String,
}

fn get_admin_token(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let req: AdminTokenReq = decode(body)?;
    let cfg = ctx.config();
    let ctx_secret = ctx.app.secret();
    if req.secret != ctx_secret {
        return Err(ApiError::NoPermission("secret invalid".into()));
    }
    if !ctx.app.is_admin_id(&req.user_id) {
        return Err(ApiError::Args("userID is error".into()));
    }
    let mut st = ctx.lock();
    if st.user(&req.user_id).is_none() {
        return Err(ApiError::RecordNotFound(format!("user {} not found", req.user_id)));
    }
    let tok = token::issue_admin_token(&mut st, &ctx_secret, &req.user_id, cfg.token_expire, cfg.admin_token_grace)?;
    Ok(Some(json!({"token": tok, "expireTimeSeconds": cfg.token_expire.as_secs() as i64})))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct UserTokenReq {
    #[serde(rename = "platformID")]
    platform_id: i32,
    #[serde(rename = "userID")]
    user_id: String,
}

fn get_user_token(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let req: UserTokenReq = decode(body)?;
    ctx.require_admin()?;
    if req.platform_id == ADMIN_PLATFORM {
        return Err(ApiError::NoPermission("platformID invalid. platformID must not be adminPlatformID".into()));
    }
    if ctx.app.is_admin_id(&req.user_id) {
        return Err(ApiError::NoPermission("don't get Admin token".into()));
    }
    let cfg = ctx.config();
    let ctx_secret = ctx.app.secret();
    let mut st = ctx.lock();
    let level = st.user(&req.user_id).map(|u| u.app_manger_level);
    match level {
        None => return Err(ApiError::RecordNotFound(format!("user {} not found", req.user_id))),
        Some(l) if l >= 3 => return Err(ApiError::Args("app account can`t get token".into())),
        Some(_) => {}
    }
    let tok = token::issue_user_token(&mut st, &ctx_secret, &req.user_id, req.platform_id, cfg.token_expire)?;
    Ok(Some(json!({"token": tok, "expireTimeSeconds": cfg.token_expire.as_secs() as i64})))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ParseTokenReq {
    token: String,
}

fn parse_token(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let req: ParseTokenReq = decode(body)?;
    let cfg = ctx.config();
    let ctx_secret = ctx.app.secret();
    let claims = token::verify(&ctx.lock(), &ctx_secret, &cfg.admin_user_ids, &req.token)?;
    Ok(Some(json!({
        "userID": claims.user_id,
        "platformID": claims.platform_id,
        "expireTimeSeconds": claims.exp.unwrap_or(0),
    })))
}

fn force_logout(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let req: UserTokenReq = decode(body)?;
    if !(1..=10).contains(&req.platform_id) {
        return Err(ApiError::Args("platformID is invalid".into()));
    }
    ctx.require_admin()?;
    ctx.app.ws.kick(&req.user_id, req.platform_id, None);
    token::kick_all(&mut ctx.lock(), &req.user_id, req.platform_id, None);
    Ok(None)
}
