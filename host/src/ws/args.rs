//! The handshake arguments of a relayed WebSocket, parsed whole: OpenIM's query (or its single
//! `v=<base64url JSON>` form, contract §5.2) for SDK clients, the ticket query for imgate-native
//! clients. A parameter given twice is refused rather than guessed at.

use std::collections::HashMap;

use axum::http::HeaderMap;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use openim_wire::{Codec, Encoding};
use serde::Deserialize;

/// What an SDK asked for at the handshake.
#[derive(Debug, Clone)]
pub(crate) struct SdkArgs {
    pub(crate) send_id: String,
    /// The imgate bearer token (never forwarded).
    pub(crate) token: String,
    pub(crate) platform_id: i32,
    pub(crate) operation_id: String,
    pub(crate) codec: Codec,
    /// `isMsgResp`: the handshake's result comes as a text frame after an upgrade.
    pub(crate) msg_resp: bool,
}

/// An argument error: OpenIM's errCode 1602 and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ArgError(pub(crate) String);

/// The `v=` form's JSON (`S internal/msggateway/context.go:107-182`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VForm {
    #[serde(rename = "userID")]
    user_id: Option<String>,
    token: Option<String>,
    #[serde(rename = "platformID")]
    platform_id: Option<i64>,
    #[serde(rename = "operationID")]
    operation_id: Option<String>,
    compression: Option<String>,
    sdk_type: Option<String>,
    send_response: Option<bool>,
}

/// Go's `strconv.ParseBool`.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The query as a map; a key given twice is an error.
fn query_map(query: &str) -> Result<HashMap<String, String>, ArgError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query).map_err(|_| ArgError("the query is not URL-encoded".into()))?;
    let mut map = HashMap::with_capacity(pairs.len());
    for (k, v) in pairs {
        if map.insert(k.clone(), v).is_some() {
            return Err(ArgError(format!("{k} is given twice")));
        }
    }
    Ok(map)
}

/// Whether the client asked for `isMsgResp` (read leniently: it decides how even a malformed
/// handshake is answered).
pub(crate) fn wants_msg_resp(query: &str) -> bool {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    pairs.iter().any(|(k, v)| k == "isMsgResp" && parse_bool(v) == Some(true))
        || pairs.iter().filter(|(k, _)| k == "v").any(|(_, v)| {
            B64URL
                .decode(v.trim_end_matches('='))
                .ok()
                .and_then(|raw| serde_json::from_slice::<VForm>(&raw).ok())
                .and_then(|f| f.send_response)
                == Some(true)
        })
}

fn codec(sdk_type: Option<&str>, default: Encoding, compression: Option<&str>) -> Result<Codec, ArgError> {
    let encoding = match sdk_type {
        None | Some("") => default,
        Some("go") => Encoding::Gob,
        Some("js") => Encoding::Json,
        Some(other) => return Err(ArgError(format!("sdkType {other} is not go or js"))),
    };
    Ok(Codec { encoding, gzip: compression == Some("gzip") })
}

/// OpenIM's handshake arguments (query mode or `v=` mode).
pub(crate) fn parse_sdk(query: &str, headers: &HeaderMap) -> Result<SdkArgs, ArgError> {
    let q = query_map(query)?;
    let header_compression = headers.get("compression").and_then(|v| v.to_str().ok());
    if let Some(v) = q.get("v") {
        let raw = B64URL.decode(v.trim_end_matches('=')).map_err(|_| ArgError("v is not base64url".into()))?;
        let f: VForm = serde_json::from_slice(&raw).map_err(|_| ArgError("v is not the handshake JSON".into()))?;
        let platform_id = f.platform_id.and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
        let args = SdkArgs {
            send_id: f.user_id.unwrap_or_default(),
            token: f.token.unwrap_or_default(),
            platform_id,
            operation_id: f.operation_id.unwrap_or_default(),
            codec: codec(f.sdk_type.as_deref(), Encoding::Gob, f.compression.as_deref().or(header_compression))?,
            msg_resp: f.send_response.unwrap_or(false),
        };
        return check(args);
    }
    let get = |k: &str| q.get(k).map(String::as_str);
    let platform_id = match get("platformID") {
        Some(p) => p.parse::<i32>().map_err(|_| ArgError("platformID is not int".into()))?,
        None => 0,
    };
    match get("isBackground").map(parse_bool) {
        Some(Some(_)) => {}
        _ => return Err(ArgError("isBackground is not a bool".into())),
    }
    let msg_resp = match get("isMsgResp") {
        None => false,
        Some(v) => parse_bool(v).ok_or_else(|| ArgError("isMsgResp is not a bool".into()))?,
    };
    let args = SdkArgs {
        send_id: get("sendID").unwrap_or_default().to_owned(),
        token: get("token").unwrap_or_default().to_owned(),
        platform_id,
        operation_id: get("operationID").unwrap_or_default().to_owned(),
        codec: codec(get("sdkType"), Encoding::Gob, get("compression").or(header_compression))?,
        msg_resp,
    };
    check(args)
}

fn check(args: SdkArgs) -> Result<SdkArgs, ArgError> {
    if args.send_id.is_empty() {
        return Err(ArgError("sendID is empty".into()));
    }
    if args.token.is_empty() {
        return Err(ArgError("token is empty".into()));
    }
    if args.operation_id.is_empty() {
        return Err(ArgError("operationID is empty".into()));
    }
    if !crate::openim::is_user_platform(args.platform_id) {
        return Err(ArgError("platformID is invalid".into()));
    }
    Ok(args)
}

/// An imgate-native handshake: `ticket`, and optionally `sdkType` (default `js`) and
/// `compression=gzip`.
pub(crate) fn parse_native(query: &str) -> Result<(String, Codec), ArgError> {
    let q = query_map(query)?;
    let ticket = q.get("ticket").filter(|t| !t.is_empty()).ok_or_else(|| ArgError("ticket is missing".into()))?;
    let codec = codec(q.get("sdkType").map(String::as_str), Encoding::Json, q.get("compression").map(String::as_str))?;
    Ok((ticket.clone(), codec))
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: &str = "sendID=u1&token=t&platformID=5&operationID=op&isBackground=false";

    #[test]
    fn query_mode_as_openim_reads_it() {
        let a = parse_sdk(&format!("{Q}&sdkType=js&isMsgResp=true&compression=gzip"), &HeaderMap::new()).unwrap();
        assert_eq!((a.send_id.as_str(), a.platform_id, a.msg_resp), ("u1", 5, true));
        assert_eq!(a.codec, Codec { encoding: Encoding::Json, gzip: true });
        let a = parse_sdk(Q, &HeaderMap::new()).unwrap();
        assert_eq!(a.codec, Codec { encoding: Encoding::Gob, gzip: false }, "go (gob) is OpenIM's default");
        assert!(parse_sdk("sendID=u1&token=t&platformID=5&operationID=op", &HeaderMap::new()).is_err());
        assert!(parse_sdk(&format!("{Q}&sendID=u2"), &HeaderMap::new()).is_err(), "a key twice is refused");
        assert!(parse_sdk(&Q.replace("platformID=5", "platformID=10"), &HeaderMap::new()).is_err(), "admin platform");
        assert!(parse_sdk(&format!("{Q}&sdkType=rust"), &HeaderMap::new()).is_err());
    }

    #[test]
    fn v_mode_and_msg_resp_detection() {
        let json = r#"{"userID":"u1","token":"t","platformID":1,"operationID":"o","sdkType":"js","sendResponse":true}"#;
        let v = B64URL.encode(json);
        let a = parse_sdk(&format!("v={v}"), &HeaderMap::new()).unwrap();
        assert_eq!((a.send_id.as_str(), a.platform_id, a.msg_resp), ("u1", 1, true));
        assert!(wants_msg_resp(&format!("v={v}")));
        assert!(wants_msg_resp("isMsgResp=1&sendID="));
        assert!(!wants_msg_resp(Q));
    }

    #[test]
    fn native_query() {
        let (t, c) = parse_native("ticket=abc").unwrap();
        assert_eq!((t.as_str(), c.encoding), ("abc", Encoding::Json));
        assert!(parse_native("ticket=a&ticket=b").is_err());
        assert!(parse_native("").is_err());
    }
}
