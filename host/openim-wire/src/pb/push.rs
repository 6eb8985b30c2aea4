//! OpenIM protobuf package `push` (the messages imgate and the emulator read): field numbers of
//! `P push/push.proto:16-21` (protocol v0.0.73-alpha.18), hand-written `prost` messages.

/// WS 2003 (logout) request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DelUserPushTokenReq {
    /// Whose push token (not checked by OpenIM, `S internal/push/push.go:46-52`).
    #[prost(string, tag = "1")]
    pub user_id: String,
    /// Which platform's token.
    #[prost(int32, tag = "2")]
    pub platform_id: i32,
}

/// WS 2003 reply (empty).
#[derive(Clone, PartialEq, prost::Message)]
pub struct DelUserPushTokenResp {}
