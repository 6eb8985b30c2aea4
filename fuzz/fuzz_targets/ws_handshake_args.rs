//! Fuzz target `ws_handshake_args`: the query of a WebSocket upgrade through the relay's argument
//! parsers (`ws::args`, via `host::fuzzing`): OpenIM's handshake query and its `v=<base64url
//! JSON>` form for SDK clients (`parse_sdk`, with the `compression` header), the lenient
//! `isMsgResp` reader that decides how a refusal is answered, and the ticket query of
//! imgate-native clients (`parse_native`).
//!
//! Input: line 1 is the `compression` header value (empty line: no header), the rest the query.
//!
//! Asserts: accepted SDK arguments have a non-empty `sendID`, token and `operationID` and a user
//! platform; gzip is chosen only when `gzip` was asked for; in query mode (no `v`) the lenient
//! reader agrees with the parser on `isMsgResp`; a native handshake has a non-empty ticket.
#![no_main]

use host::fuzzing::{native_handshake, sdk_handshake, sdk_wants_msg_resp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (header, query) = text.split_once('\n').unwrap_or(("", &text));
    let header = (!header.is_empty()).then_some(header.as_bytes());
    let wants = sdk_wants_msg_resp(query);
    if let Ok(a) = sdk_handshake(query, header) {
        assert!(!a.send_id.is_empty() && !a.token.is_empty() && !a.operation_id.is_empty(), "{a:?}");
        assert!(host::openim::is_user_platform(a.platform_id), "platform {}", a.platform_id);
        // The parser refuses repeated keys, so the decoded pairs are unambiguous here.
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).expect("an accepted query decodes");
        let get = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        if get("v").is_none() {
            assert_eq!(wants, a.msg_resp, "isMsgResp read two ways: {query:?}");
            let asked = get("compression").or(header.and_then(|h| std::str::from_utf8(h).ok()));
            assert_eq!(a.codec.gzip, asked == Some("gzip"), "compression {asked:?} gave {:?}", a.codec);
        }
    }
    if let Ok((ticket, _)) = native_handshake(query) {
        assert!(!ticket.is_empty());
    }
});
