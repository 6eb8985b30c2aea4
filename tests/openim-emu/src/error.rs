//! The emulator's error enum and the OpenIM response envelope.
//!
//! OpenIM answers every business or auth failure with HTTP 200 and the envelope
//! `{"errCode","errMsg","errDlt","data"}` (contract §3.1); `errMsg` is the short code name of
//! §3.3 and `errDlt` a detail text. This module is the single place that knows the numeric
//! codes and names, so handlers only pick a variant.

use axum::http::StatusCode;
use serde_json::{Map, Value};

/// Every failure a handler can report; each variant maps to one errCode of contract §3.3.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// 1001 with errMsg "ArgsError" and the given detail.
    #[error("ArgsError: {0}")]
    Args(String),
    /// 1001 for a JSON decode failure: errMsg is the (Go-like) json error text, errDlt "" (§1.4).
    #[error("json decode: {0}")]
    JsonDecode(String),
    /// 1001 answered with HTTP 400 (gin `BindJSON` on hand-written routes, §3.2).
    #[error("binding: {0}")]
    Binding(String),
    #[error("NoPermissionError: {0}")]
    NoPermission(String),
    #[error("DuplicateKeyError: {0}")]
    DuplicateKey(String),
    #[error("RecordNotFoundError: {0}")]
    RecordNotFound(String),
    #[error("UserIDNotFoundError: {0}")]
    UserIdNotFound(String),
    #[error("RegisteredAlreadyError: {0}")]
    RegisteredAlready(String),
    #[error("GroupIDNotFoundError: {0}")]
    GroupIdNotFound(String),
    #[error("GroupIDExisted: {0}")]
    GroupIdExisted(String),
    #[error("NotInGroupYetError: {0}")]
    NotInGroupYet(String),
    #[error("DismissedAlreadyError: {0}")]
    DismissedAlready(String),
    #[error("GroupRequestHandled: {0}")]
    GroupRequestHandled(String),
    #[error("CanNotAddYourselfError: {0}")]
    CanNotAddYourself(String),
    #[error("BlockedByPeer: {0}")]
    BlockedByPeer(String),
    #[error("NotPeersFriend: {0}")]
    NotPeersFriend(String),
    #[error("RelationshipAlreadyError: {0}")]
    RelationshipAlready(String),
    #[error("MutedInGroup: {0}")]
    MutedInGroup(String),
    #[error("MutedGroup: {0}")]
    MutedGroup(String),
    /// 1404: revoking a message that is already revoked.
    #[error("MsgAlreadyRevoke: {0}")]
    MsgAlreadyRevoke(String),
    #[error("TokenExpiredError")]
    TokenExpired,
    #[error("TokenInvalidError: {0}")]
    TokenInvalid(String),
    #[error("TokenMalformedError")]
    TokenMalformed,
    #[error("TokenNotValidYetError")]
    TokenNotValidYet,
    /// 1505: errMsg is the jwt library text (contract §3.3), e.g. "signature is invalid".
    #[error("TokenUnknownError: {0}")]
    TokenUnknown(String),
    #[error("TokenKickedError")]
    TokenKicked,
    #[error("TokenNotExistError")]
    TokenNotExist,
    /// 1602, WS handshake argument errors.
    #[error("ConnArgsErr: {0}")]
    ConnArgs(String),
    #[error("ServerInternalError: {0}")]
    ServerInternal(String),
    /// 500 with errMsg "panic error": a Go panic recovered by the RPC server (`T errs/panic.go`);
    /// the detail is the Go runtime text.
    #[error("panic error: {0}")]
    Panic(String),
}

impl ApiError {
    /// The errCode of the envelope.
    pub fn code(&self) -> i64 {
        use ApiError::*;
        match self {
            Args(_) | JsonDecode(_) | Binding(_) => 1001,
            NoPermission(_) => 1002,
            DuplicateKey(_) => 1003,
            RecordNotFound(_) => 1004,
            UserIdNotFound(_) => 1101,
            RegisteredAlready(_) => 1102,
            GroupIdNotFound(_) => 1201,
            GroupIdExisted(_) => 1202,
            NotInGroupYet(_) => 1203,
            DismissedAlready(_) => 1204,
            GroupRequestHandled(_) => 1206,
            CanNotAddYourself(_) => 1301,
            BlockedByPeer(_) => 1302,
            NotPeersFriend(_) => 1303,
            RelationshipAlready(_) => 1304,
            MutedInGroup(_) => 1402,
            MutedGroup(_) => 1403,
            MsgAlreadyRevoke(_) => 1404,
            TokenExpired => 1501,
            TokenInvalid(_) => 1502,
            TokenMalformed => 1503,
            TokenNotValidYet => 1504,
            TokenUnknown(_) => 1505,
            TokenKicked => 1506,
            TokenNotExist => 1507,
            ConnArgs(_) => 1602,
            ServerInternal(_) | Panic(_) => 500,
        }
    }

    /// The errMsg of the envelope (the short name of contract §3.3).
    pub fn msg(&self) -> String {
        use ApiError::*;
        let name = match self {
            Args(_) | Binding(_) => "ArgsError",
            JsonDecode(text) => return text.clone(),
            NoPermission(_) => "NoPermissionError",
            DuplicateKey(_) => "DuplicateKeyError",
            RecordNotFound(_) => "RecordNotFoundError",
            UserIdNotFound(_) => "UserIDNotFoundError",
            RegisteredAlready(_) => "RegisteredAlreadyError",
            GroupIdNotFound(_) => "GroupIDNotFoundError",
            GroupIdExisted(_) => "GroupIDExisted",
            NotInGroupYet(_) => "NotInGroupYetError",
            DismissedAlready(_) => "DismissedAlreadyError",
            GroupRequestHandled(_) => "GroupRequestHandled",
            CanNotAddYourself(_) => "CanNotAddYourselfError",
            BlockedByPeer(_) => "BlockedByPeer",
            NotPeersFriend(_) => "NotPeersFriend",
            RelationshipAlready(_) => "RelationshipAlreadyError",
            MutedInGroup(_) => "MutedInGroup",
            MutedGroup(_) => "MutedGroup",
            MsgAlreadyRevoke(_) => "MsgAlreadyRevoke",
            TokenExpired => "TokenExpiredError",
            TokenInvalid(_) => "TokenInvalidError",
            TokenMalformed => "TokenMalformedError",
            TokenNotValidYet => "TokenNotValidYetError",
            TokenUnknown(text) => return text.clone(),
            TokenKicked => "TokenKickedError",
            TokenNotExist => "TokenNotExistError",
            ConnArgs(_) => "args err, need token, sendID, platformID",
            ServerInternal(_) => "ServerInternalError",
            Panic(_) => "panic error",
        };
        name.to_string()
    }

    /// The errDlt of the envelope.
    pub fn detail(&self) -> String {
        use ApiError::*;
        match self {
            Args(d)
            | Binding(d)
            | NoPermission(d)
            | DuplicateKey(d)
            | RecordNotFound(d)
            | UserIdNotFound(d)
            | RegisteredAlready(d)
            | GroupIdNotFound(d)
            | GroupIdExisted(d)
            | NotInGroupYet(d)
            | DismissedAlready(d)
            | GroupRequestHandled(d)
            | CanNotAddYourself(d)
            | BlockedByPeer(d)
            | NotPeersFriend(d)
            | RelationshipAlready(d)
            | MutedInGroup(d)
            | MutedGroup(d)
            | MsgAlreadyRevoke(d)
            | Panic(d)
            | TokenInvalid(d)
            | ConnArgs(d)
            | ServerInternal(d) => d.clone(),
            JsonDecode(_) | TokenUnknown(_) | TokenExpired | TokenMalformed | TokenNotValidYet | TokenKicked
            | TokenNotExist => String::new(),
        }
    }

    /// HTTP status used to carry this error (400 only for binding errors of hand-written routes).
    pub fn http_status(&self) -> StatusCode {
        match self {
            ApiError::Binding(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::OK,
        }
    }
}

/// Build an envelope. `data` is omitted when `None` (an empty proto response has no `data` key).
pub fn envelope(err: Option<&ApiError>, data: Option<Value>) -> Value {
    let mut m = Map::new();
    match err {
        Some(e) => {
            m.insert("errCode".into(), Value::from(e.code()));
            m.insert("errMsg".into(), Value::from(e.msg()));
            m.insert("errDlt".into(), Value::from(e.detail()));
        }
        None => {
            m.insert("errCode".into(), Value::from(0));
            m.insert("errMsg".into(), Value::from(""));
            m.insert("errDlt".into(), Value::from(""));
        }
    }
    if let Some(d) = data {
        m.insert("data".into(), d);
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_omits_data_when_empty() {
        let v = envelope(None, None);
        assert_eq!(v.to_string(), r#"{"errCode":0,"errDlt":"","errMsg":""}"#);
        let e = envelope(Some(&ApiError::Args("header must have operationID".into())), None);
        assert_eq!(e["errCode"], 1001);
        assert_eq!(e["errMsg"], "ArgsError");
        assert_eq!(e["errDlt"], "header must have operationID");
    }
}
