//! `/jssdk/get_conversations` and `/jssdk/get_active_conversations` with protobuf bodies, as the
//! `@openim/client-sdk` npm package sends them (contract §1.3: `application/x-protobuf` in, the
//! usual envelope out with `data` the base64 of the protobuf answer).
//!
//! The protobuf request is decoded into the same canonical JSON object a JSON body yields, so
//! the route's rules and plugins read one shape; what they checked is encoded back to protobuf
//! and forwarded with the caller's token. The answer is the caller's own conversations
//! (`ownerUserID` is bound), so it goes back as OpenIM sent it.

use axum::body::Bytes;
use axum::http::{header, HeaderMap};
use axum::response::Response;
use openim_wire::pb::jssdk::{GetActiveConversationsReq, GetConversationsReq};
use prost::Message as _;
use serde_json::{Map, Value};

use super::gojson::MAX_LIST as MAX_LIST_ITEMS;
use super::refuse;
use crate::auth::Caller;
use crate::openim::{As, CallCtx, PROTOBUF};
use crate::state::AppState;
use crate::telemetry::RequestId;

/// Whether the body is protobuf (OpenIM's test: the content type contains one of these).
pub(super) fn is_protobuf(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("application/protobuf") || ct.contains("application/x-protobuf"))
}

/// A protobuf request of a `/jssdk` route as its canonical JSON object.
pub(super) fn to_json(path: &str, body: &[u8]) -> Result<Map<String, Value>, String> {
    let mut obj = Map::new();
    match path {
        "/jssdk/get_conversations" => {
            let r = GetConversationsReq::decode(body).map_err(|_| "the body is not a GetConversationsReq")?;
            if r.conversation_ids.len() > MAX_LIST_ITEMS {
                return Err(format!("conversationIDs: more than {MAX_LIST_ITEMS} items"));
            }
            if !r.owner_user_id.is_empty() {
                obj.insert("ownerUserID".into(), r.owner_user_id.into());
            }
            obj.insert("conversationIDs".into(), r.conversation_ids.into());
        }
        "/jssdk/get_active_conversations" => {
            let r =
                GetActiveConversationsReq::decode(body).map_err(|_| "the body is not a GetActiveConversationsReq")?;
            if !r.owner_user_id.is_empty() {
                obj.insert("ownerUserID".into(), r.owner_user_id.into());
            }
            obj.insert("count".into(), r.count.into());
        }
        _ => return Err("protobuf bodies are for /jssdk routes only".into()),
    }
    Ok(obj)
}

/// The checked canonical object back to protobuf.
fn to_protobuf(path: &str, obj: &Map<String, Value>) -> Option<Vec<u8>> {
    let owner = obj.get("ownerUserID")?.as_str()?.to_owned();
    match path {
        "/jssdk/get_conversations" => {
            let ids = obj.get("conversationIDs").and_then(Value::as_array).cloned().unwrap_or_default();
            let conversation_ids = ids.iter().map(|v| v.as_str().map(str::to_owned)).collect::<Option<Vec<_>>>()?;
            Some(GetConversationsReq { owner_user_id: owner, conversation_ids }.encode_to_vec())
        }
        "/jssdk/get_active_conversations" => {
            let count = obj.get("count").and_then(Value::as_i64).unwrap_or(0);
            Some(GetActiveConversationsReq { owner_user_id: owner, count }.encode_to_vec())
        }
        _ => None,
    }
}

/// Forwards the checked request as protobuf; OpenIM's answer goes back as sent.
pub(super) async fn forward(
    state: &AppState,
    rid: &RequestId,
    ctx: &CallCtx,
    caller: &Caller,
    path: &str,
    obj: &Map<String, Value>,
) -> Response {
    let Some(body) = to_protobuf(path, obj) else {
        return refuse(rid, 1001, &format!("{path}: the body does not fit the protobuf request"));
    };
    let who = As::User { user_id: &caller.user_id, platform_id: caller.platform_id };
    match state.openim.call_raw_as(ctx, path, Bytes::from(body), PROTOBUF, who).await {
        Ok(answer) => {
            if answer.err_code != 0 {
                rid.note_refusal(&format!("compat: {path}: OpenIM answered errCode {}", answer.err_code));
            }
            crate::error::foreign_answer(answer.status, answer.body)
        }
        Err(e) => super::refusal(rid, &crate::error::ApiError::from(e)),
    }
}
