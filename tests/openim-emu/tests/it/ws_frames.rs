//! The WS gateway's binary frames (contract §5.4-§5.8) through a real WebSocket client: both
//! envelopes, gzip, every request identifier, pushes, subscriptions, the §10.5 weaknesses, the
//! fatal conditions, the frame limit and the read deadline.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use openim_emu::Config;
use openim_wire::pb::{msg as pbmsg, push as pbpush, sdkws};
use openim_wire::{ident, Codec, Encoding, Req, Resp};
use prost::Message as _;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

use crate::common::Env;

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

const GOB: Codec = Codec { encoding: Encoding::Gob, gzip: false };
const JSON: Codec = Codec { encoding: Encoding::Json, gzip: false };

/// How a connection ended, as the client saw it.
#[derive(Debug, PartialEq)]
enum End {
    /// A close frame with this code.
    CloseFrame(Option<u16>),
    /// The TCP connection was dropped (OpenIM's `conn.Close()`).
    Dropped,
}

/// A client connection speaking one codec.
struct Client {
    ws: Ws,
    codec: Codec,
    user: String,
    /// Frames read while waiting for something else.
    pending: VecDeque<Resp>,
    next_incr: u64,
}

impl Client {
    /// Connect `user` on `platform` with a fresh token; `extra` adds query parameters.
    async fn connect(env: &Env, user: &str, platform: i32, extra: &str) -> Client {
        let token = env.user_token(user, platform).await;
        Self::connect_with(env, user, platform, &token, extra, None).await
    }

    async fn connect_with(
        env: &Env,
        user: &str,
        platform: i32,
        token: &str,
        extra: &str,
        header: Option<(&'static str, &str)>,
    ) -> Client {
        let url = format!(
            "{}/?sendID={user}&token={token}&platformID={platform}&operationID=op-conn&isBackground=false{extra}",
            env.emu.ws_url()
        );
        let mut request = url.into_client_request().unwrap();
        if let Some((k, v)) = header {
            request.headers_mut().insert(k, v.parse().unwrap());
        }
        let (ws, resp) = connect_async(request).await.expect("ws connect");
        assert_eq!(resp.status().as_u16(), 101);
        let codec = Codec {
            encoding: if extra.contains("sdkType=js") { Encoding::Json } else { Encoding::Gob },
            gzip: extra.contains("compression=gzip") || header.is_some_and(|(_, v)| v == "gzip"),
        };
        Client { ws, codec, user: user.to_string(), pending: VecDeque::new(), next_incr: 1 }
    }

    /// Send a request frame; returns its msgIncr.
    async fn send(&mut self, id: i32, data: Vec<u8>) -> String {
        let incr = format!("{}_{}", self.user, self.next_incr);
        self.next_incr += 1;
        let req = Req {
            req_identifier: id,
            token: "ignored".into(),
            send_id: self.user.clone(),
            operation_id: format!("op-{incr}"),
            msg_incr: incr.clone(),
            data,
        };
        self.send_raw(self.codec.encode_req(&req)).await;
        incr
    }

    async fn send_raw(&mut self, frame: Vec<u8>) {
        self.ws.send(Message::Binary(frame.into())).await.unwrap();
    }

    /// Next raw data frame, or how the connection ended; 5 s at most.
    async fn next_raw(&mut self) -> Result<Message, End> {
        let read = async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(f))) => return Err(End::CloseFrame(f.map(|f| u16::from(f.code)))),
                    Some(Err(_)) | None => return Err(End::Dropped),
                    Some(Ok(m)) => return Ok(m),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(5), read).await.expect("a frame or the end within 5 s")
    }

    /// Next binary frame decoded, or `None` once the connection has ended.
    async fn frame(&mut self) -> Option<Resp> {
        match self.next_raw().await {
            Ok(Message::Binary(b)) => Some(self.codec.decode_resp(&b).expect("a Resp frame")),
            Ok(other) => panic!("unexpected frame {other:?}"),
            Err(_) => None,
        }
    }

    /// Send a request and wait for its reply (other frames are kept for [`Client::push`]).
    async fn call(&mut self, id: i32, data: Vec<u8>) -> Resp {
        let incr = self.send(id, data).await;
        loop {
            let r = self.frame().await.expect("a reply before the connection ends");
            if r.msg_incr == incr && r.req_identifier == id {
                assert_eq!(r.operation_id, format!("op-{incr}"), "operationID echoed");
                return r;
            }
            self.pending.push_back(r);
        }
    }

    /// A successful reply's data.
    async fn ok(&mut self, id: i32, data: Vec<u8>) -> Vec<u8> {
        let r = self.call(id, data).await;
        assert_eq!((r.err_code, r.err_msg.as_str()), (0, ""), "reply to {id}");
        r.data
    }

    /// The next frame with this identifier (a push).
    async fn push(&mut self, id: i32) -> Resp {
        if let Some(i) = self.pending.iter().position(|r| r.req_identifier == id) {
            return self.pending.remove(i).unwrap();
        }
        loop {
            let r = self.frame().await.expect("a push before the connection ends");
            if r.req_identifier == id {
                return r;
            }
            self.pending.push_back(r);
        }
    }

    /// How the connection ends; it must send no data frame first.
    async fn end(&mut self) -> End {
        match self.next_raw().await {
            Ok(m) => panic!("expected the connection to end, got {m:?}"),
            Err(e) => e,
        }
    }
}

fn text_msg(from: &str, to: &str, text: &str) -> sdkws::MsgData {
    sdkws::MsgData {
        send_id: from.into(),
        recv_id: to.into(),
        client_msg_id: format!("c-{text}"),
        sender_platform_id: 1,
        session_type: 1,
        msg_from: 100,
        content_type: 101,
        content: json!({ "content": text }).to_string().into_bytes(),
        create_time: 1,
        status: 1,
        ..Default::default()
    }
}

fn content_of(m: &sdkws::MsgData) -> String {
    serde_json::from_slice::<Value>(&m.content).unwrap()["content"].as_str().unwrap_or_default().to_string()
}

fn pushed(r: &Resp) -> sdkws::PushMessages {
    assert_eq!((r.req_identifier, r.msg_incr.as_str(), r.err_code), (ident::PUSH_MSG, "", 0));
    sdkws::PushMessages::decode(r.data.as_slice()).unwrap()
}

/// Every request identifier, in both envelopes: the same answers.
#[tokio::test]
async fn every_identifier_in_json_and_gob() {
    for extra in ["&sdkType=js", "", "&sdkType=go"] {
        let env = Env::new().await;
        env.register(&["a", "b"]).await;
        let mut a = Client::connect(&env, "a", 1, extra).await;
        let mut b = Client::connect(&env, "b", 2, extra).await;

        // 1003: the send pipeline, as the connection's user.
        let d = a.ok(ident::SEND_MSG, text_msg("a", "b", "hi").encode_to_vec()).await;
        let sent = pbmsg::SendMsgResp::decode(d.as_slice()).unwrap();
        assert_eq!((sent.client_msg_id.as_str(), sent.server_msg_id.len()), ("c-hi", 32), "{extra}");
        assert!(sent.send_time > 1_600_000_000_000 && sent.modify.is_none());

        // 1001
        let d = a.ok(ident::GET_NEWEST_SEQ, sdkws::GetMaxSeqReq { user_id: "a".into() }.encode_to_vec()).await;
        assert_eq!(sdkws::GetMaxSeqResp::decode(d.as_slice()).unwrap().max_seqs.get("si_a_b"), Some(&1));

        // 1002
        let range = sdkws::SeqRange { conversation_id: "si_a_b".into(), begin: 1, end: 10, num: 10 };
        let req = sdkws::PullMessageBySeqsReq { user_id: "b".into(), seq_ranges: vec![range], order: 0 };
        let d = b.ok(ident::PULL_MSG_BY_SEQ_LIST, req.encode_to_vec()).await;
        let pulled = sdkws::PullMessageBySeqsResp::decode(d.as_slice()).unwrap();
        let msgs = &pulled.msgs["si_a_b"].msgs;
        assert_eq!((msgs.len(), msgs[0].seq, content_of(&msgs[0])), (1, 1, "hi".to_string()));
        assert_eq!(msgs[0].server_msg_id, sent.server_msg_id);

        // 1005
        let conv = pbmsg::ConversationSeqs { conversation_id: "si_a_b".into(), seqs: vec![1, 2] };
        let req = pbmsg::GetSeqMessageReq { user_id: "b".into(), conversations: vec![conv], order: 0 };
        let d = b.ok(ident::PULL_MSG, req.encode_to_vec()).await;
        let got = pbmsg::GetSeqMessageResp::decode(d.as_slice()).unwrap();
        let pull = &got.msgs["si_a_b"];
        assert_eq!((pull.msgs.len(), pull.is_end, pull.end_seq), (1, true, 1), "seq 2 is past the end");

        // 1006
        let req = pbmsg::GetConversationsHasReadAndMaxSeqReq { user_id: "b".into(), ..Default::default() };
        let d = b.ok(ident::GET_CONV_MAX_READ_SEQ, req.encode_to_vec()).await;
        let seqs = pbmsg::GetConversationsHasReadAndMaxSeqResp::decode(d.as_slice()).unwrap();
        assert_eq!((seqs.seqs["si_a_b"].max_seq, seqs.seqs["si_a_b"].has_read_seq), (1, 0));

        // 1007
        let req =
            pbmsg::GetLastMessageReq { user_id: "b".into(), conversation_ids: vec!["si_a_b".into(), "si_x_y".into()] };
        let d = b.ok(ident::PULL_CONV_LAST_MESSAGE, req.encode_to_vec()).await;
        let last = pbmsg::GetLastMessageResp::decode(d.as_slice()).unwrap();
        assert_eq!((last.msgs.len(), content_of(&last.msgs["si_a_b"])), (1, "hi".to_string()));

        // 2004: no data.
        let req = sdkws::SetAppBackgroundStatusReq { user_id: "a".into(), is_background: true };
        assert!(a.ok(ident::SET_BACKGROUND_STATUS, req.encode_to_vec()).await.is_empty());

        // 2005: b is online on platform 2.
        let req = sdkws::SubUserOnlineStatus { subscribe_user_id: vec!["b".into()], ..Default::default() };
        let d = a.ok(ident::SUB_USER_ONLINE_STATUS, req.encode_to_vec()).await;
        let tips = sdkws::SubUserOnlineStatusTips::decode(d.as_slice()).unwrap();
        assert_eq!(
            tips.subscribers,
            vec![sdkws::SubUserOnlineStatusElem { user_id: "b".into(), online_platform_ids: vec![2] }]
        );

        // 2003: an empty reply, then the server closes.
        let req = pbpush::DelUserPushTokenReq { user_id: "a".into(), platform_id: 1 };
        assert!(a.ok(ident::LOGOUT_MSG, req.encode_to_vec()).await.is_empty());
        assert_eq!(a.end().await, End::Dropped, "{extra}");
    }
}

/// Handler errors are replies: errCode/errMsg set, data empty (`null` in JSON).
#[tokio::test]
async fn handler_errors_are_replies_with_empty_data() {
    let env = Env::new().await;
    env.register(&["a", "b"]).await;
    env.ok("/friend/add_black", &env.user_token("b", 3).await, json!({"ownerUserID": "b", "blackUserID": "a"})).await;
    let mut a = Client::connect(&env, "a", 1, "&sdkType=js").await;
    // CheckAccess(sendID): a cannot send as b.
    let r = a.call(ident::SEND_MSG, text_msg("b", "a", "x").encode_to_vec()).await;
    assert_eq!((r.err_code, r.err_msg.as_str(), r.data.len()), (1002, "NoPermissionError", 0));
    // The pipeline's own errors: blocked by the recipient.
    let r = a.call(ident::SEND_MSG, text_msg("a", "b", "x").encode_to_vec()).await;
    assert_eq!((r.err_code, r.err_msg.as_str()), (1302, "BlockedByPeer"));
    // MsgData.Check() before CheckAccess: empty content is 1001 even for someone else's sendID.
    let r = a.call(ident::SEND_MSG, sdkws::MsgData { send_id: "b".into(), ..Default::default() }.encode_to_vec()).await;
    assert_eq!((r.err_code, r.err_msg.as_str()), (1001, "ArgsError"));
    // 1001 for another user: CheckAccess.
    let r = a.call(ident::GET_NEWEST_SEQ, sdkws::GetMaxSeqReq { user_id: "b".into() }.encode_to_vec()).await;
    assert_eq!(r.err_code, 1002);
    // A payload that is not protobuf: a plain Go error, 500.
    let r = a.call(ident::SEND_MSG, vec![0xff, 0xff, 0xff]).await;
    assert_eq!((r.err_code, r.err_msg.as_str()), (500, "ServerInternalError"));
    // 1004 is answered by the RPC's validation, not fatal.
    let r = a.call(ident::SEND_SIGNAL_MSG, Vec::new()).await;
    assert_eq!((r.err_code, r.err_msg.as_str()), (1001, "ArgsError"));
    // On the wire, an error reply's data is JSON null.
    a.send(ident::GET_NEWEST_SEQ, sdkws::GetMaxSeqReq { user_id: "b".into() }.encode_to_vec()).await;
    let Ok(Message::Binary(raw)) = a.next_raw().await else { panic!("a reply") };
    assert!(String::from_utf8(raw.to_vec())
        .unwrap()
        .ends_with(r#""errCode":1002,"errMsg":"NoPermissionError","data":null}"#));
    // Still connected.
    a.ok(ident::GET_NEWEST_SEQ, sdkws::GetMaxSeqReq { user_id: "a".into() }.encode_to_vec()).await;
}

/// `compression=gzip` (query or header): binary frames both ways are gzip streams; text
/// heartbeats are not compressed.
#[tokio::test]
async fn gzip_frames_both_ways() {
    let env = Env::new().await;
    env.register(&["a"]).await;
    for (extra, header) in [("&compression=gzip", None), ("&sdkType=js", Some(("compression", "gzip")))] {
        let token = env.user_token("a", 1).await;
        let mut a = Client::connect_with(&env, "a", 1, &token, extra, header).await;
        assert!(a.codec.gzip);
        a.send(ident::GET_NEWEST_SEQ, sdkws::GetMaxSeqReq { user_id: "a".into() }.encode_to_vec()).await;
        let Ok(Message::Binary(raw)) = a.next_raw().await else { panic!("a reply") };
        assert_eq!(&raw[..2], &[0x1f, 0x8b], "a gzip stream");
        assert_eq!(a.codec.decode_resp(&raw).unwrap().err_code, 0);
        a.ws.send(Message::Text(json!({"type": "ping", "body": "x"}).to_string().into())).await.unwrap();
        let Ok(Message::Text(t)) = a.next_raw().await else { panic!("a text pong") };
        assert_eq!(serde_json::from_str::<Value>(t.as_str()).unwrap(), json!({"type": "pong", "body": "x"}));
        // An uncompressed frame on a gzip connection is fatal.
        a.send_raw(GOB.encode_req(&Req { req_identifier: 1001, send_id: "a".into(), ..Req::default() })).await;
        assert_eq!(a.end().await, End::Dropped);
    }
}

/// A stored message is pushed (2001) to the recipient and to the sender's connections
/// (senderSync), whatever path sent it; group messages to every member.
#[tokio::test]
async fn pushes_reach_recipients_and_senders_other_connections() {
    let env = Env::new().await;
    env.register(&["a", "b", "c"]).await;
    let mut a_ios = Client::connect(&env, "a", 1, "").await;
    let mut a_web = Client::connect(&env, "a", 5, "&sdkType=js").await;
    let mut b = Client::connect(&env, "b", 2, "&compression=gzip").await;

    // REST send_msg a → b.
    assert_eq!(env.send_text("a", "b", "rest").await.code(), 0);
    for c in [&mut b, &mut a_ios, &mut a_web] {
        let p = pushed(&c.push(ident::PUSH_MSG).await);
        let m = &p.msgs["si_a_b"].msgs[0];
        assert_eq!((m.seq, content_of(m).as_str(), m.send_id.as_str()), (1, "rest", "a"));
        assert!(p.notification_msgs.is_empty());
    }

    // WS 1003 from a's web connection: the reply, and a push to all three connections.
    a_web.ok(ident::SEND_MSG, text_msg("a", "b", "ws").encode_to_vec()).await;
    for c in [&mut b, &mut a_ios, &mut a_web] {
        let m = pushed(&c.push(ident::PUSH_MSG).await).msgs["si_a_b"].msgs[0].clone();
        assert_eq!((m.seq, content_of(&m).as_str(), m.status), (2, "ws", 2), "sending → sent");
    }

    // Online-only (isOnlineOnly turns senderSync off): the recipient only, not stored (seq 0).
    let body = json!({"sendID": "a", "recvID": "b", "content": {"content": "typing"}, "contentType": 101,
        "sessionType": 1, "isOnlineOnly": true});
    env.ok("/msg/send_msg", &env.admin, body).await;
    let m = pushed(&b.push(ident::PUSH_MSG).await).msgs["si_a_b"].msgs[0].clone();
    assert_eq!((m.seq, content_of(&m).as_str()), (0, "typing"));

    // A group message reaches every member's connections, the sender's included.
    let ta = env.user_token("a", 3).await;
    env.group(&ta, "a", "g1", &["b", "c"], 0).await;
    let mut c = Client::connect(&env, "c", 2, "&sdkType=js").await;
    assert_eq!(env.send_group("b", "g1", "all").await.code(), 0);
    for cl in [&mut b, &mut c, &mut a_ios, &mut a_web] {
        let m = pushed(&cl.push(ident::PUSH_MSG).await).msgs["sg_g1"].msgs[0].clone();
        assert_eq!(content_of(&m), "all");
    }
    // The online-only message never reached a (senderSync off): a_ios's next push was the
    // group message (an earlier one would have failed the `sg_g1` lookup), and none is left over.
    assert!(a_ios.pending.iter().all(|r| r.req_identifier != ident::PUSH_MSG));

    // An iOS connection in background gets no pushes; a's web connection still does. The push
    // is queued before send_msg answers, and a queued push is written before the next reply.
    let bg = sdkws::SetAppBackgroundStatusReq { user_id: "a".into(), is_background: true };
    a_ios.ok(ident::SET_BACKGROUND_STATUS, bg.encode_to_vec()).await;
    assert_eq!(env.send_text("b", "a", "bg").await.code(), 0);
    assert_eq!(content_of(&pushed(&a_web.push(ident::PUSH_MSG).await).msgs["si_a_b"].msgs[0]), "bg");
    a_ios.ok(ident::GET_NEWEST_SEQ, sdkws::GetMaxSeqReq { user_id: "a".into() }.encode_to_vec()).await;
    assert!(a_ios.pending.iter().all(|r| r.req_identifier != ident::PUSH_MSG), "{:?}", a_ios.pending);
}

/// §10.5: 1005 and 1007 check nothing; 1002 checks membership (except `n_`).
#[tokio::test]
async fn pulls_of_other_peoples_conversations() {
    let env = Env::new().await;
    env.register(&["a", "b", "eve"]).await;
    assert_eq!(env.send_text("a", "b", "secret").await.code(), 0);
    let mut eve = Client::connect(&env, "eve", 1, "").await;
    // 1005 with someone else's userID and conversation: answered.
    let conv = pbmsg::ConversationSeqs { conversation_id: "si_a_b".into(), seqs: vec![1] };
    let req = pbmsg::GetSeqMessageReq { user_id: "a".into(), conversations: vec![conv], order: 0 };
    let d = eve.ok(ident::PULL_MSG, req.encode_to_vec()).await;
    let got = pbmsg::GetSeqMessageResp::decode(d.as_slice()).unwrap();
    assert_eq!(content_of(&got.msgs["si_a_b"].msgs[0]), "secret");
    // 1007 likewise.
    let req = pbmsg::GetLastMessageReq { user_id: "eve".into(), conversation_ids: vec!["si_a_b".into()] };
    let d = eve.ok(ident::PULL_CONV_LAST_MESSAGE, req.encode_to_vec()).await;
    assert_eq!(content_of(&pbmsg::GetLastMessageResp::decode(d.as_slice()).unwrap().msgs["si_a_b"]), "secret");
    // 1002 as herself: no record of si_a_b, nothing returned.
    let range = sdkws::SeqRange { conversation_id: "si_a_b".into(), begin: 1, end: 10, num: 10 };
    let req = sdkws::PullMessageBySeqsReq { user_id: "eve".into(), seq_ranges: vec![range], order: 0 };
    let d = eve.ok(ident::PULL_MSG_BY_SEQ_LIST, req.encode_to_vec()).await;
    assert!(sdkws::PullMessageBySeqsResp::decode(d.as_slice()).unwrap().msgs.is_empty());
}

/// A frame OpenIM closes the connection for, sent by user `a` on a connection with `codec`.
fn fatal_frame(what: &str, codec: Codec) -> Vec<u8> {
    let req = |id: i32, send_id: &str| Req { req_identifier: id, send_id: send_id.into(), ..Req::default() };
    match what {
        "undecodable" if codec.gzip => GOB.encode_req(&req(1001, "a")),
        "undecodable" => vec![1, 2, 3],
        "json on a gob connection" => JSON.encode_req(&req(1001, "a")),
        "unknown reqIdentifier" => codec.encode_req(&req(9999, "a")),
        "push identifier as request" => codec.encode_req(&req(ident::PUSH_MSG, "a")),
        "sendID of another user" => codec.encode_req(&req(1001, "b")),
        "empty sendID" => codec.encode_req(&req(1001, "")),
        _ => unreachable!("{what}"),
    }
}

/// Fatal conditions: the TCP connection is dropped, no reply.
#[tokio::test]
async fn fatal_frames_close_without_reply() {
    let env = Env::new().await;
    env.register(&["a", "b"]).await;
    let cases = [
        "undecodable",
        "json on a gob connection",
        "unknown reqIdentifier",
        "push identifier as request",
        "sendID of another user",
        "empty sendID",
    ];
    for what in cases {
        for extra in ["", "&compression=gzip"] {
            let mut a = Client::connect(&env, "a", 1, extra).await;
            // On a gzip connection none of these is a gzip stream: fatal either way.
            a.send_raw(fatal_frame(what, a.codec)).await;
            assert_eq!(a.end().await, End::Dropped, "{what} {extra}");
        }
    }
    // Text other than a JSON heartbeat.
    let mut a = Client::connect(&env, "a", 1, "&sdkType=js").await;
    a.ws.send(Message::Text("hello".into())).await.unwrap();
    assert_eq!(a.end().await, End::Dropped);
}

/// Frames over 51 200 bytes: a close frame 1009 (gorilla's read limit), whatever the content.
#[tokio::test]
async fn frames_over_the_limit_close_with_1009() {
    let env = Env::new().await;
    env.register(&["a"]).await;
    let mut a = Client::connect(&env, "a", 1, "").await;
    // Just under the limit: answered (an undecodable MsgData, but a reply).
    let mut data = vec![0u8; 51_000];
    data[0] = 0xff;
    let frame = GOB.encode_req(&Req { req_identifier: 1003, send_id: "a".into(), data, ..Req::default() });
    assert!(frame.len() <= openim_wire::MAX_FRAME_BYTES);
    a.send_raw(frame).await;
    assert_eq!(a.frame().await.unwrap().err_code, 500);
    a.send_raw(vec![0; openim_wire::MAX_FRAME_BYTES + 1]).await;
    assert_eq!(a.end().await, End::CloseFrame(Some(u16::from(CloseCode::Size))));
}

/// A kicked connection gets 2002 in its own envelope, then is closed.
#[tokio::test]
async fn kicks_in_every_envelope() {
    let env = Env::new().await;
    env.register(&["a"]).await;
    for extra in ["", "&sdkType=js", "&compression=gzip", "&sdkType=js&compression=gzip"] {
        let mut old = Client::connect(&env, "a", 3, extra).await;
        let _new = Client::connect(&env, "a", 3, "").await;
        let kick = old.frame().await.expect("a 2002 frame");
        assert_eq!(kick, Resp { req_identifier: ident::KICK_ONLINE_MSG, ..Resp::default() }, "{extra}");
        assert_eq!(old.end().await, End::Dropped);
    }
}

/// 2005: the reply lists the current platforms; later connects and disconnects are pushed.
#[tokio::test]
async fn online_status_subscription() {
    let env = Env::new().await;
    env.register(&["a", "b"]).await;
    let mut a = Client::connect(&env, "a", 1, "&sdkType=js").await;
    let mut witness = Client::connect(&env, "a", 2, "").await;
    let sub = sdkws::SubUserOnlineStatus { subscribe_user_id: vec!["b".into()], ..Default::default() };
    witness.ok(ident::SUB_USER_ONLINE_STATUS, sub.encode_to_vec()).await;
    let d = a.ok(ident::SUB_USER_ONLINE_STATUS, sub.encode_to_vec()).await;
    let tips = sdkws::SubUserOnlineStatusTips::decode(d.as_slice()).unwrap();
    assert!(tips.subscribers[0].online_platform_ids.is_empty(), "b is offline");
    let status = |r: Resp| {
        assert_eq!((r.req_identifier, r.msg_incr.as_str()), (ident::SUB_USER_ONLINE_STATUS, ""));
        let t = sdkws::SubUserOnlineStatusTips::decode(r.data.as_slice()).unwrap();
        assert_eq!(t.subscribers[0].user_id, "b");
        t.subscribers[0].online_platform_ids.clone()
    };
    let b2 = Client::connect(&env, "b", 2, "").await;
    assert_eq!(status(a.push(ident::SUB_USER_ONLINE_STATUS).await), vec![2]);
    let b5 = Client::connect(&env, "b", 5, "").await;
    assert_eq!(status(a.push(ident::SUB_USER_ONLINE_STATUS).await), vec![2, 5]);
    drop(b2);
    assert_eq!(status(a.push(ident::SUB_USER_ONLINE_STATUS).await), vec![5]);
    // Unsubscribed: b's last disconnect is not pushed to a. Once the still-subscribed witness
    // has it, a's copy would have been queued too, and a queued push is written before the
    // reply to a's next request.
    let unsub = sdkws::SubUserOnlineStatus { unsubscribe_user_id: vec!["b".into()], ..Default::default() };
    a.ok(ident::SUB_USER_ONLINE_STATUS, unsub.encode_to_vec()).await;
    drop(b5);
    for want in [vec![2], vec![2, 5], vec![5], vec![]] {
        assert_eq!(status(witness.push(ident::SUB_USER_ONLINE_STATUS).await), want);
    }
    a.ok(ident::GET_NEWEST_SEQ, sdkws::GetMaxSeqReq { user_id: "a".into() }.encode_to_vec()).await;
    assert!(a.pending.iter().all(|r| r.req_identifier != ident::SUB_USER_ONLINE_STATUS), "{:?}", a.pending);
}

/// The read deadline: data frames, text pings and WS pings re-arm it; WS pongs do not (fbca49d).
/// The clients below send on a fixed pace, which is the behaviour under test, not a wait.
#[tokio::test]
async fn read_deadline_is_rearmed_by_data_and_pings_not_pongs() {
    const T: Duration = Duration::from_millis(1000);
    const PACE: Duration = Duration::from_millis(200);
    const KEEP: Duration = Duration::from_millis(3000);
    let env = Env::with(Config { ws_read_timeout: T, ..Config::default() }).await;
    env.register(&["a"]).await;

    /// Send `frame()` every PACE for KEEP; then whether the connection is still usable.
    async fn keep_alive(mut c: Client, frame: impl Fn() -> Message) -> (bool, Client) {
        let mut tick = tokio::time::interval(PACE);
        let start = Instant::now();
        while start.elapsed() < KEEP {
            tick.tick().await;
            if c.ws.send(frame()).await.is_err() {
                return (false, c);
            }
            // Drain answers (pongs, text pongs, replies) so nothing backs up.
            while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(1), c.ws.next()).await {
                if matches!(m, Ok(Message::Close(_)) | Err(_)) {
                    return (false, c);
                }
            }
        }
        let alive = c.ws.send(Message::Text(json!({"type": "ping"}).to_string().into())).await.is_ok()
            && matches!(c.next_raw().await, Ok(Message::Text(_)));
        (alive, c)
    }

    let idle = Client::connect(&env, "a", 1, "").await;
    let data = Client::connect(&env, "a", 2, "").await;
    let text = Client::connect(&env, "a", 3, "").await;
    let ping = Client::connect(&env, "a", 4, "").await;
    let pong = Client::connect(&env, "a", 6, "").await;
    let bg = GOB.encode_req(&Req {
        req_identifier: ident::SET_BACKGROUND_STATUS,
        send_id: "a".into(),
        data: sdkws::SetAppBackgroundStatusReq { user_id: "a".into(), is_background: false }.encode_to_vec(),
        ..Req::default()
    });
    let started = Instant::now();
    let idle = async move {
        let mut idle = idle;
        let end = idle.end().await;
        (end, started.elapsed())
    };
    let (idle, data, text, ping, pong) = tokio::join!(
        idle,
        keep_alive(data, || Message::Binary(bg.clone().into())),
        keep_alive(text, || Message::Text(json!({"type": "ping", "body": 1}).to_string().into())),
        keep_alive(ping, || Message::Ping(b"hb".to_vec().into())),
        keep_alive(pong, || Message::Pong(b"hb".to_vec().into())),
    );
    assert_eq!(idle.0, End::Dropped);
    assert!(idle.1 >= T - Duration::from_millis(50), "closed after {:?}", idle.1);
    assert!(data.0, "binary frames re-arm the deadline");
    assert!(text.0, "text pings re-arm the deadline");
    assert!(ping.0, "WS pings re-arm the deadline");
    assert!(!pong.0, "WS pongs do not re-arm the deadline");
}

/// The `v=` form carries the envelope choice and compression too.
#[tokio::test]
async fn v_form_selects_codec() {
    use base64::Engine;
    let env = Env::new().await;
    env.register(&["a"]).await;
    let token = env.user_token("a", 1).await;
    let v = json!({"userID": "a", "token": token, "platformID": 1, "operationID": "o", "sdkType": "js", "compression": "gzip"});
    let v = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let (ws, _) = connect_async(format!("{}/?v={v}", env.emu.ws_url())).await.unwrap();
    let codec = Codec { encoding: Encoding::Json, gzip: true };
    let mut a = Client { ws, codec, user: "a".into(), pending: VecDeque::new(), next_incr: 1 };
    a.ok(ident::GET_NEWEST_SEQ, sdkws::GetMaxSeqReq { user_id: "a".into() }.encode_to_vec()).await;
}
