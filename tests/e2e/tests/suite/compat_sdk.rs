//! What the `@openim/client-sdk` npm package needs of the compatible surface beyond JSON routes
//! (issue 13): `/jssdk/*` with protobuf bodies (contract §1.3), CORS answers for configured
//! browser origins only.

use base64::Engine;
use e2e::*;
use imgate_client::Session;
use openim_wire::pb::jssdk::{GetActiveConversationsReq, GetConversationsReq, GetConversationsResp};
use prost::Message as _;
use serde_json::json;

async fn bearer(h: &Harness, s: &Session) -> String {
    let (status, tok) = into_json(h.client().call(s, "POST", "/v1/auth/token", None).await.expect("answer")).await;
    assert_eq!(status, 200, "{tok}");
    tok["token"].as_str().expect("token").to_owned()
}

async fn protobuf(h: &Harness, token: &str, path: &str, body: Vec<u8>) -> serde_json::Value {
    let res = h
        .http
        .post(h.url(&format!("/openim{path}")))
        .header("operationID", "op-pb")
        .header("token", token)
        .header("Content-Type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .expect("answer");
    into_json(res).await.1
}

#[tokio::test]
async fn jssdk_protobuf_bodies_are_decoded_bound_checked_and_forwarded_as_protobuf() {
    let h = Harness::start().await;
    let (_, alice) = h.session("alice").await;
    let (_, _bob) = h.session("bob").await;
    let tok = bearer(&h, &alice).await;
    // A text from alice to bob, so alice has a conversation.
    let (status, sent) = into_json(
        h.client()
            .call(
                &alice,
                "POST",
                "/v1/messages/user/bob",
                Some(&serde_json::to_vec(&json!({"text": "hi"})).expect("json")),
            )
            .await
            .expect("answer"),
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    let mine = GetConversationsReq { owner_user_id: String::new(), conversation_ids: vec!["si_alice_bob".into()] };
    let answer = protobuf(&h, &tok, "/jssdk/get_conversations", mine.encode_to_vec()).await;
    assert_eq!(answer["errCode"], 0, "{answer}");
    let data =
        base64::engine::general_purpose::STANDARD.decode(answer["data"].as_str().expect("base64 data")).expect("b64");
    let resp = GetConversationsResp::decode(&data[..]).expect("a protobuf answer");
    let conv = resp.conversations.first().and_then(|c| c.conversation.as_ref()).expect("the conversation");
    assert_eq!((conv.owner_user_id.as_str(), conv.conversation_id.as_str()), ("alice", "si_alice_bob"));
    let seen = h.emu.seen();
    let call = seen.iter().rfind(|s| s.path == "/jssdk/get_conversations").expect("forwarded");
    assert_eq!(call.token_user_id.as_deref(), Some("alice"));
    // Another owner, or someone else's conversation: refused, never forwarded.
    let before = h.emu.seen().len();
    let other = GetConversationsReq { owner_user_id: "bob".into(), conversation_ids: vec!["si_alice_bob".into()] };
    assert_eq!(protobuf(&h, &tok, "/jssdk/get_conversations", other.encode_to_vec()).await["errCode"], 1002);
    let foreign = GetConversationsReq { owner_user_id: "alice".into(), conversation_ids: vec!["si_bob_carol".into()] };
    assert_eq!(protobuf(&h, &tok, "/jssdk/get_conversations", foreign.encode_to_vec()).await["errCode"], 1002);
    assert_eq!(protobuf(&h, &tok, "/jssdk/get_conversations", b"\xff\xff".to_vec()).await["errCode"], 1001);
    assert_eq!(h.emu.seen().len(), before, "nothing refused reached OpenIM");
    let active = GetActiveConversationsReq { owner_user_id: String::new(), count: 10 };
    assert_eq!(protobuf(&h, &tok, "/jssdk/get_active_conversations", active.encode_to_vec()).await["errCode"], 0);
    h.shutdown().await;
}

#[tokio::test]
async fn cors_answers_only_for_configured_origins() {
    let h = Harness::start_with(Options {
        extra_toml: "[browser]\nallowed_origins = [\"https://app.example\"]\n".into(),
        ..Options::default()
    })
    .await;
    let preflight = |origin: &'static str| {
        h.http
            .request(reqwest::Method::OPTIONS, h.url("/openim/user/get_users_info"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "token,operationid,content-type")
            .send()
    };
    let ok = preflight("https://app.example").await.expect("answer");
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["access-control-allow-origin"], "https://app.example");
    assert!(ok.headers()["access-control-allow-headers"].to_str().expect("ascii").contains("token"));
    let evil = preflight("https://evil.example").await.expect("answer");
    assert!(evil.headers().get("access-control-allow-origin").is_none(), "no CORS grant for other origins");
    // /v1 is not for browsers: no CORS there.
    let v1 = h
        .http
        .request(reqwest::Method::OPTIONS, h.url("/v1/me"))
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .expect("answer");
    assert!(v1.headers().get("access-control-allow-origin").is_none());
    h.shutdown().await;
}
