//! Writes the seed corpora of `fuzz/seeds/<target>/` (`fuzz/run --write-seeds`): small, valid
//! inputs of every target, built with the gateway's own encoders and the independent client's,
//! so each target starts from inputs that reach its deep paths.
//! The files are committed; libFuzzer reads them as a second, read-only corpus (`fuzz/run`).

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine;
use imgate_fuzz::CODECS;
use openim_wire::{pb, Req, Resp};
use prost::Message;

struct Seeds {
    dir: PathBuf,
}

impl Seeds {
    fn target(root: &Path, name: &str) -> Seeds {
        let dir = root.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("seed dir");
        Seeds { dir }
    }

    fn put(&self, name: &str, bytes: impl AsRef<[u8]>) {
        std::fs::write(self.dir.join(name), bytes).expect("seed file");
    }
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn handshake(root: &Path) {
    let s = Seeds::target(root, "handshake");
    let gw = imgate_fuzz::gateway_key();
    let payload = br#"{"device_id":"dev-1","ts":1767225600000}"#;
    let mut hs = snow::Builder::new(host::auth::handshake::PROTOCOL.parse().expect("pattern"))
        .local_private_key(&[0x42; 32])
        .and_then(|b| b.remote_public_key(gw.public.as_bytes()))
        .and_then(|b| b.prologue(host::auth::handshake::PROLOGUE))
        .and_then(|b| b.build_initiator())
        .expect("initiator");
    let mut m1 = vec![0u8; 512];
    let n = hs.write_message(payload, &mut m1).expect("message 1");
    m1.truncate(n);
    s.put("body-genuine", cat(&[b"B", serde_json::json!({ "msg": B64.encode(&m1) }).to_string().as_bytes()]));
    s.put("body-not-base64", br#"B{"msg":"!!"}"#);
    s.put("m1-genuine", cat(&[b"M", &m1]));
    s.put("payload", cat(&[b"P", payload]));
    s.put("payload-unknown-field", cat(&[b"P", br#"{"device_id":"d","ts":1,"user_id":"admin"}"#]));
    s.put("payload-too-long", cat(&[b"P", &[b' '; 300]]));
    s.put("tamper", cat(&[b"T", &[0, 40, 1], payload]));
}

fn signed_request(root: &Path) {
    let s = Seeds::target(root, "signed_request");
    s.put(
        "signed-post",
        "S\nPOST\n/v1/messages?dry=1\ncontent-type: application/json\n\n{\"to\":\"u2\",\"text\":\"hi\"}",
    );
    s.put("signed-get-odd-path", "S\nGET\n/v1/users/%2F..;x?a=b&a=c&%00=1\n\n");
    s.put("gateway-me", "PS\nGET\n/v1/me\nx-request-id: fuzz-1\n\n");
    s.put("gateway-token", "PS\nPOST\n/v1/auth/token\ncontent-type: application/json\n\n{}");
    s.put("gateway-lookup", "PS\nPOST\n/v1/users/lookup\ncontent-type: application/json\n\n{\"user_ids\":[\"bob\"]}");
    s.put("gateway-send", "PS\nPOST\n/v1/messages/user/bob\ncontent-type: application/json\n\n{\"text\":\"hi\"}");
    s.put(
        "gateway-unsigned-compat",
        "P\nPOST\n/openim/user/get_users_info\noperationID: op\ntoken: abc\n\n{\"userIDs\":[\"bob\"]}",
    );
    s.put("gateway-bad-header", "PS\nGET\n/v1/me\nx_under_score: 1\n\n");
    s.put(
        "spec-vector",
        "\nPOST\n/v1/messages?dry=1\nx-imgate-session: $SESSION\nx-imgate-timestamp: $NOW\n\
         x-imgate-nonce: n0nce-0000000001\nx-imgate-signature: PuIjC0mMY3zzii7A9nJYsHA4bIobFf6SrZfIvo2UCyU\n\n\
         {\"to\":\"u2\",\"text\":\"hi\"}",
    );
    s.put(
        "duplicate-headers",
        "\nGET\n/v1/me\nx-imgate-session: $SESSION\nx-imgate-session: other\nx-imgate-timestamp: +1\n\
         x-imgate-nonce: short\nx-imgate-signature: \n\n",
    );
}

fn admin_jwt(root: &Path) {
    let s = Seeds::target(root, "admin_jwt");
    let h = r#"{"alg":"HS256","kid":"hs","typ":"JWT"}"#;
    s.put(
        "signed",
        format!("S{h}\n{{\"iss\":\"https://idp.fuzz\",\"aud\":\"imgate-admin\",\"sub\":\"ops\",\"exp\":NOW,\"iat\":NOW,\"scope\":\"imgate:admin devices:write\"}}"),
    );
    s.put(
        "signed-aud-list-nbf",
        format!("S{h}\n{{\"iss\":\"https://idp.fuzz\",\"aud\":[\"x\",\"imgate-admin\"],\"sub\":\"ops\",\"exp\":NOW,\"nbf\":NOW}}"),
    );
    s.put("signed-alg-none", "S{\"alg\":\"none\",\"kid\":\"hs\"}\n{\"sub\":\"x\"}");
    s.put("signed-crit", "S{\"alg\":\"HS256\",\"kid\":\"hs\",\"crit\":[\"exp\"]}\n{\"exp\":NOW}");
    s.put("signed-ed-kid", "S{\"alg\":\"HS256\",\"kid\":\"ed\"}\n{\"iss\":\"https://ed.fuzz\",\"exp\":NOW}");
    s.put("raw-bearer", "RBearer eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzIn0.eyJzdWIiOiJ4In0.c2ln");
    s.put("raw-basic", "RBasic dXNlcjpwYXNz");
    let ed = host::keys::generate_admin_key().expect("key");
    let der: Vec<u8> =
        B64.decode(ed.public_pem.lines().filter(|l| !l.starts_with("-----")).collect::<String>()).expect("pem body");
    let x = B64URL.encode(&der[der.len() - 32..]);
    s.put(
        "jwks",
        format!("J{{\"keys\":[{{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"kid\":\"k1\",\"alg\":\"EdDSA\",\"use\":\"sig\",\"x\":\"{x}\"}}]}}"),
    );
    s.put("jwks-rsa-in-ed", "J{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"r\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}");
}

fn config(root: &Path, repo: &Path) {
    let s = Seeds::target(root, "config");
    for f in ["valid.toml", "invalid.toml", "routes_valid.toml", "routes_invalid.toml"] {
        s.put(f, std::fs::read(repo.join("host/tests/fixtures").join(f)).expect("fixture"));
    }
    s.put("compose.toml", std::fs::read(repo.join("deploy/compose/imgate.toml")).expect("compose config"));
    s.put(
        "minimal.toml",
        "[openim]\napi_url = \"http://127.0.0.1:10002\"\nws_url = \"ws://127.0.0.1:10001\"\nsecret = \"openIM123\"\n",
    );
    s.put(
        "tables.toml",
        r#"[openim]
api_url = "http://127.0.0.1:10002"
ws_url = "ws://127.0.0.1:10001"
secret = "openIM123"
[openim.privileged]
allow_user_ids = ["bot"]
[[admin.issuer]]
issuer = "https://idp"
audience = "imgate-admin"
algorithms = ["EdDSA"]
keys = [{ kid = "k1", file = "admin.pub" }]
[auth]
session_lifetime_secs = 86400
[ws]
max_connections = 100
[rate_limits.default]
per_second = 20
burst = 40
tiers = { gold = { per_second = 100, burst = 200 } }
[rate_limits.send]
per_second = 5
burst = 10
[rate_limits.admin]
per_second = 10
burst = 50
[telemetry]
log_format = "pretty"
log_level = "imgate=debug,info"
"#,
    );
    s.put(
        "plugins.toml",
        r#"[openim]
api_url = "http://127.0.0.1:10002"
ws_url = "ws://127.0.0.1:10001"
secret_file = "openim.secret"
[store]
backend = "redis"
url = "redis://127.0.0.1:6379/0"
[[plugin]]
name = "content-filter"
path = "plugins/content_filter.wasm"
capabilities = ["config"]
limits = { cpu_ms = 10, memory_bytes = 8388608 }
[[route_plugins]]
route = "send_text_to_user"
plugins = [{ plugin = "content-filter", config = { words = ["spam"], action = "mask" }, failure = "closed" }]
[[route_plugins]]
routes = ["update_profile", "openim.user.update_user_info_ex"]
plugins = [{ plugin = "content-filter", config = { words = ["spam"], action = "block", fields = ["/nickname"] } }]
"#,
    );
}

fn compat_body(root: &Path) {
    use host::routes::compat::ALLOWED;
    let s = Seeds::target(root, "compat_body");
    let index = |path: &str| ALLOWED.iter().position(|(p, _)| *p == path).expect("allowed path") as u8;
    let put = |name: &str, path: &str, protobuf: bool, body: &[u8]| {
        s.put(name, cat(&[&[index(path), u8::from(protobuf)], body]));
    };
    put("update-user-info", "/user/update_user_info", false, br#"{"userInfo":{"userID":"alice","nickname":"A"}}"#);
    put(
        "go-key-folding",
        "/user/update_user_info",
        false,
        "{\"USERINFO\":{\"u\u{17f}erID\":\"alice\",\"x\":1}}".as_bytes(),
    );
    put(
        "pull-msg",
        "/msg/pull_msg_by_seq",
        false,
        br#"{"userID":"alice","seqRanges":[{"conversationID":"si_alice_bob","begin":1,"end":10,"num":10}],"order":0}"#,
    );
    put(
        "create-group",
        "/group/create_group",
        false,
        br#"{"ownerUserID":"alice","memberUserIDs":[],"groupInfo":{"groupName":"g"}}"#,
    );
    put(
        "set-conversations",
        "/conversation/set_conversations",
        false,
        br#"{"userIDs":["alice"],"conversation":{"conversationID":"si_alice_bob","userID":"bob","isPinned":true}}"#,
    );
    put("caller-in", "/friend/get_designated_friend_apply", false, br#"{"fromUserID":"alice","toUserID":"bob"}"#);
    put("users-info", "/user/get_users_info", false, br#"{"userIDs":["alice","bob"]}"#);
    put(
        "object",
        "/object/initiate_multipart_upload",
        false,
        br#"{"name":"alice/x.png","size":10,"contentType":"image/png"}"#,
    );
    put("null", "/msg/get_server_time", false, b"null");
    let conv =
        pb::jssdk::GetConversationsReq { owner_user_id: "alice".into(), conversation_ids: vec!["si_alice_bob".into()] };
    put("jssdk-conversations", "/jssdk/get_conversations", true, &conv.encode_to_vec());
    let active = pb::jssdk::GetActiveConversationsReq { owner_user_id: String::new(), count: 20 };
    put("jssdk-active", "/jssdk/get_active_conversations", true, &active.encode_to_vec());
}

/// One client frame of each kind the relay reads, from alice.
fn client_reqs() -> Vec<(&'static str, Req)> {
    let req = |id: i32, data: Vec<u8>| Req {
        req_identifier: id,
        token: "imgate-bearer".into(),
        send_id: "alice".into(),
        operation_id: "op-1".into(),
        msg_incr: "7".into(),
        data,
    };
    let msg = |session_type: i32, recv: &str, group: &str| {
        pb::sdkws::MsgData {
            send_id: "alice".into(),
            recv_id: recv.into(),
            group_id: group.into(),
            client_msg_id: "c1".into(),
            session_type,
            content_type: 101,
            content: br#"{"content":"hi"}"#.to_vec(),
            ..Default::default()
        }
        .encode_to_vec()
    };
    vec![
        ("newest-seq", req(1001, pb::sdkws::GetMaxSeqReq { user_id: "alice".into() }.encode_to_vec())),
        (
            "pull-by-seq",
            req(
                1002,
                pb::sdkws::PullMessageBySeqsReq {
                    user_id: String::new(),
                    seq_ranges: vec![pb::sdkws::SeqRange {
                        conversation_id: "si_alice_bob".into(),
                        begin: 1,
                        end: 5,
                        num: 5,
                    }],
                    order: 0,
                }
                .encode_to_vec(),
            ),
        ),
        ("send-single", req(1003, msg(1, "bob", ""))),
        ("send-group", req(1003, msg(3, "", "mgroup"))),
        (
            "pull-msg",
            req(
                1005,
                pb::msg::GetSeqMessageReq {
                    user_id: "alice".into(),
                    conversations: vec![pb::msg::ConversationSeqs {
                        conversation_id: "sg_mgroup".into(),
                        seqs: vec![1, 2],
                    }],
                    order: 0,
                }
                .encode_to_vec(),
            ),
        ),
        (
            "max-read-seq",
            req(
                1006,
                pb::msg::GetConversationsHasReadAndMaxSeqReq {
                    user_id: "alice".into(),
                    conversation_ids: vec!["n_si_alice_bob".into()],
                    return_pinned: false,
                }
                .encode_to_vec(),
            ),
        ),
        (
            "last-message",
            req(
                1007,
                pb::msg::GetLastMessageReq { user_id: "alice".into(), conversation_ids: vec!["sg_xgroup".into()] }
                    .encode_to_vec(),
            ),
        ),
        (
            "logout",
            req(2003, pb::push::DelUserPushTokenReq { user_id: "alice".into(), platform_id: 1 }.encode_to_vec()),
        ),
        (
            "background",
            req(
                2004,
                pb::sdkws::SetAppBackgroundStatusReq { user_id: "alice".into(), is_background: true }.encode_to_vec(),
            ),
        ),
        (
            "sub-status",
            req(
                2005,
                pb::sdkws::SubUserOnlineStatus { subscribe_user_id: vec!["bob".into()], unsubscribe_user_id: vec![] }
                    .encode_to_vec(),
            ),
        ),
        ("signal", req(1004, Vec::new())),
        ("mallory", Req { send_id: "mallory".into(), ..req(1001, Vec::new()) }),
    ]
}

fn server_resps() -> Vec<(&'static str, Resp)> {
    let push = pb::sdkws::PushMessages {
        msgs: [(
            "si_alice_bob".to_owned(),
            pb::sdkws::PullMsgs {
                msgs: vec![pb::sdkws::MsgData {
                    send_id: "bob".into(),
                    recv_id: "alice".into(),
                    seq: 3,
                    ..Default::default()
                }],
                is_end: true,
                end_seq: 3,
            },
        )]
        .into(),
        notification_msgs: Default::default(),
    };
    vec![
        ("push", Resp { req_identifier: 2001, data: push.encode_to_vec(), ..Resp::default() }),
        ("kick", Resp { req_identifier: 2002, ..Resp::default() }),
        (
            "error-reply",
            Resp {
                req_identifier: 1003,
                msg_incr: "7".into(),
                operation_id: "op-1".into(),
                err_code: 1302,
                err_msg: "BlockedByPeer".into(),
                data: Vec::new(),
            },
        ),
        (
            "newest-seq-reply",
            Resp {
                req_identifier: 1001,
                msg_incr: "7".into(),
                data: pb::sdkws::GetMaxSeqResp {
                    max_seqs: [("si_alice_bob".to_owned(), 9)].into(),
                    ..Default::default()
                }
                .encode_to_vec(),
                ..Resp::default()
            },
        ),
    ]
}

fn ws(root: &Path) {
    let frames = Seeds::target(root, "ws_frame");
    let policy = Seeds::target(root, "ws_policy");
    let names = ["json", "gob", "json-gzip", "gob-gzip"];
    for (i, codec) in CODECS.iter().enumerate() {
        for (name, req) in client_reqs() {
            let frame = codec.encode_req(&req);
            frames.put(&format!("req-{}-{name}", names[i]), cat(&[&[i as u8], &frame]));
            policy.put(&format!("{}-{name}", names[i]), cat(&[&[i as u8], &frame]));
        }
        for (name, resp) in server_resps() {
            frames.put(&format!("resp-{}-{name}", names[i]), cat(&[&[i as u8 | 4], &codec.encode_resp(&resp)]));
        }
    }
    // The wrapped form (the target builds the envelope): identifier - 1000 as i16, then the payload.
    for (name, req) in client_reqs() {
        let id = i16::try_from(req.req_identifier - 1000).expect("small identifier").to_be_bytes();
        policy.put(&format!("wrapped-gob-{name}"), cat(&[&[1 | 4], &id, &req.data]));
    }
}

fn ws_handshake_args(root: &Path) {
    let s = Seeds::target(root, "ws_handshake_args");
    s.put("query", "\nsendID=alice&token=t&platformID=5&operationID=op&isBackground=false&sdkType=js&isMsgResp=true&compression=gzip");
    s.put("query-gob-header", "gzip\nsendID=alice&token=t&platformID=1&operationID=op&isBackground=0");
    let v = r#"{"userID":"alice","token":"t","platformID":1,"operationID":"o","sdkType":"js","sendResponse":true,"compression":"gzip"}"#;
    s.put("v-form", format!("\nv={}", B64URL.encode(v)));
    s.put("native", "\nticket=abc&sdkType=go&compression=gzip");
    s.put("duplicate", "\nsendID=a&sendID=b&ticket=x&ticket=y");
}

fn openim_response(root: &Path) {
    let s = Seeds::target(root, "openim_response");
    let ok = |data: &str| format!("200\n{{\"errCode\":0,\"errMsg\":\"\",\"errDlt\":\"\",\"data\":{data}}}");
    let token = ok(r#"{"token":"adm","expireTimeSeconds":86400}"#);
    let users = ok(
        r#"{"usersInfo":[{"userID":"bob","nickname":"B","faceURL":"","ex":"secret","createTime":1,"appMangerLevel":2,"globalRecvMsgOpt":1}]}"#,
    );
    let msgs = ok(
        r#"{"msgs":{"si_alice_bob":{"Msgs":[{"sendID":"bob","recvID":"alice","seq":1},{"sendID":"bob","recvID":"carol","seq":2}],"isEnd":true},"sg_g1":{"Msgs":[{"sendID":"x","groupID":"g2"}]}},"notificationMsgs":{}}"#,
    );
    let members = ok(r#"{"members":[{"userID":"bob","roleLevel":60,"ex":"note","appMangerLevel":2}]}"#);
    let stale = "200\n{\"errCode\":1501,\"errMsg\":\"TokenExpiredError\",\"errDlt\":\"\"}".to_owned();
    let sep = "\n===\n";
    s.put("user-info", format!("U\n{token}{sep}{users}"));
    s.put("privilege-then-role", format!("PG\n{token}{sep}{users}{sep}{members}"));
    s.put("passthrough-pull", format!("R\n{token}{sep}{token}{sep}{msgs}"));
    s.put("passthrough-users", format!("Q\n{token}{sep}{token}{sep}{users}"));
    s.put("stale-token", format!("T\n{token}{sep}{stale}{sep}{token}{sep}{}", ok(r#"{"serverTime":1767225600000}"#)));
    s.put("not-an-envelope", format!("A\n{token}{sep}404\n404 page not found{sep}502\n<html>"));
    s.put(
        "refused-credentials",
        "U\n200\n{\"errCode\":1002,\"errMsg\":\"NoPermissionError\",\"errDlt\":\"secret wrong\"}",
    );
}

fn main() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = fuzz.join("seeds");
    handshake(&root);
    signed_request(&root);
    admin_jwt(&root);
    config(&root, &fuzz.join(".."));
    compat_body(&root);
    ws(&root);
    ws_handshake_args(&root);
    openim_response(&root);
    println!("seeds written to {}", root.display());
}
