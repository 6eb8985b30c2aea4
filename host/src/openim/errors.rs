//! OpenIM's failures as types: its `errCode` catalogue (contract §3.3) and transport faults.

use std::time::Duration;

/// An OpenIM `errCode`, named where imgate cares which one it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrCode {
    ServerInternal,
    Args,
    NoPermission,
    DuplicateKey,
    RecordNotFound,
    UserIdNotFound,
    RegisteredAlready,
    GroupIdNotFound,
    GroupIdExisted,
    NotInGroupYet,
    DismissedAlready,
    CannotAddYourself,
    BlockedByPeer,
    NotPeersFriend,
    RelationshipAlready,
    MutedInGroup,
    MutedGroup,
    TokenExpired,
    TokenInvalid,
    TokenMalformed,
    TokenNotValidYet,
    TokenUnknown,
    TokenKicked,
    TokenNotExist,
    RateLimited,
    Other(i64),
}

impl ErrCode {
    pub fn from_code(code: i64) -> ErrCode {
        match code {
            500 => ErrCode::ServerInternal,
            1001 => ErrCode::Args,
            1002 => ErrCode::NoPermission,
            1003 => ErrCode::DuplicateKey,
            1004 => ErrCode::RecordNotFound,
            1101 => ErrCode::UserIdNotFound,
            1102 => ErrCode::RegisteredAlready,
            1201 => ErrCode::GroupIdNotFound,
            1202 => ErrCode::GroupIdExisted,
            1203 => ErrCode::NotInGroupYet,
            1204 => ErrCode::DismissedAlready,
            1301 => ErrCode::CannotAddYourself,
            1302 => ErrCode::BlockedByPeer,
            1303 => ErrCode::NotPeersFriend,
            1304 => ErrCode::RelationshipAlready,
            1402 => ErrCode::MutedInGroup,
            1403 => ErrCode::MutedGroup,
            1501 => ErrCode::TokenExpired,
            1502 => ErrCode::TokenInvalid,
            1503 => ErrCode::TokenMalformed,
            1504 => ErrCode::TokenNotValidYet,
            1505 => ErrCode::TokenUnknown,
            1506 => ErrCode::TokenKicked,
            1507 => ErrCode::TokenNotExist,
            429 => ErrCode::RateLimited,
            other => ErrCode::Other(other),
        }
    }

    pub fn code(self) -> i64 {
        match self {
            ErrCode::ServerInternal => 500,
            ErrCode::Args => 1001,
            ErrCode::NoPermission => 1002,
            ErrCode::DuplicateKey => 1003,
            ErrCode::RecordNotFound => 1004,
            ErrCode::UserIdNotFound => 1101,
            ErrCode::RegisteredAlready => 1102,
            ErrCode::GroupIdNotFound => 1201,
            ErrCode::GroupIdExisted => 1202,
            ErrCode::NotInGroupYet => 1203,
            ErrCode::DismissedAlready => 1204,
            ErrCode::CannotAddYourself => 1301,
            ErrCode::BlockedByPeer => 1302,
            ErrCode::NotPeersFriend => 1303,
            ErrCode::RelationshipAlready => 1304,
            ErrCode::MutedInGroup => 1402,
            ErrCode::MutedGroup => 1403,
            ErrCode::TokenExpired => 1501,
            ErrCode::TokenInvalid => 1502,
            ErrCode::TokenMalformed => 1503,
            ErrCode::TokenNotValidYet => 1504,
            ErrCode::TokenUnknown => 1505,
            ErrCode::TokenKicked => 1506,
            ErrCode::TokenNotExist => 1507,
            ErrCode::RateLimited => 429,
            ErrCode::Other(c) => c,
        }
    }

    /// OpenIM refused the token a call carried (1501-1507). Every OpenIM token is imgate's own,
    /// never a client's: expired, superseded (kicked), dropped after the admin grace period,
    /// signed with a secret OpenIM no longer has (1505 after a rotation) or of an unknown state.
    /// OpenIM checks the token before it does anything, so the call had no effect and may be
    /// repeated once with a fresh token — even a non-idempotent one — and a refusal that survives
    /// that is imgate's problem with OpenIM, never shown to a client as its own token's fault.
    pub fn is_token_error(self) -> bool {
        matches!(
            self,
            ErrCode::TokenExpired
                | ErrCode::TokenInvalid
                | ErrCode::TokenMalformed
                | ErrCode::TokenNotValidYet
                | ErrCode::TokenUnknown
                | ErrCode::TokenKicked
                | ErrCode::TokenNotExist
        )
    }
}

/// The errCodes OpenIM's catalogue names (contract §3.3, its 90000s and chat-app codes aside)
/// and the gRPC status codes it passes on (1-16): the ones a metric label may carry.
const CATALOGUE: &[i64] = &[
    429, 500, 1001, 1002, 1003, 1004, 1050, 1101, 1102, 1201, 1202, 1203, 1204, 1205, 1206, 1301, 1302, 1303, 1304,
    1305, 1401, 1402, 1403, 1404, 1501, 1502, 1503, 1504, 1505, 1506, 1507, 1520, 1601, 1602, 1603, 1604, 1701, 80000,
    90002, 90004, 90007,
];

/// The metric label of an errCode: `errcode_<n>` for a catalogued code, else `errcode_other`, so
/// an OpenIM (or a webhook) inventing codes cannot grow a metric family without bound.
pub(crate) fn errcode_label(code: i64) -> String {
    if (1..=16).contains(&code) || CATALOGUE.contains(&code) {
        format!("errcode_{code}")
    } else {
        "errcode_other".to_owned()
    }
}

/// Why a call to OpenIM failed. `Clone`: one failed token fetch is every waiter's answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OpenImError {
    /// Connection refused or reset before an answer: OpenIM is down or unreachable.
    #[error("OpenIM unreachable: {0}")]
    Unavailable(String),
    /// No complete answer within the per-call deadline.
    #[error("OpenIM did not answer within {0:?}")]
    Timeout(Duration),
    /// An answer that is not OpenIM's envelope (wrong status, not JSON, too large, cut short).
    #[error("invalid answer from OpenIM: {0}")]
    BadResponse(String),
    /// OpenIM has no such route (its gin `404 page not found`): an OpenIM version without it.
    #[error("OpenIM has no route {0}")]
    NoRoute(String),
    /// OpenIM answered with a non-zero errCode.
    #[error("OpenIM errCode {} ({msg}): {detail}", code.code())]
    Api { code: ErrCode, msg: String, detail: String },
    /// imgate refused to make the call (e.g. a platform id OpenIM would wrongly accept).
    #[error("invalid OpenIM call: {0}")]
    InvalidCall(String),
    /// The fleet's OpenIM token could not be read or minted through the shared store (Redis).
    #[error("OpenIM token store: {0}")]
    TokenStore(String),
    /// OpenIM refused imgate's own credentials (its admin token request): a misconfiguration of
    /// the gateway, never the caller's doing.
    #[error("OpenIM refused imgate's admin credentials: {0}")]
    AuthFailed(String),
    /// Not sent: the circuit of OpenIM's service is open (`why` = `open`), or too many of its
    /// calls are in flight (`max_in_flight`). See `openim::breaker`.
    #[error("OpenIM's {service} service is not called: circuit {why}")]
    CircuitOpen { service: &'static str, why: &'static str, retry_after: Duration },
}

impl From<crate::fleet::Unavailable> for OpenImError {
    fn from(e: crate::fleet::Unavailable) -> OpenImError {
        OpenImError::TokenStore(e.0)
    }
}

impl OpenImError {
    pub fn err_code(&self) -> Option<ErrCode> {
        match self {
            OpenImError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// A short label for metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            OpenImError::Unavailable(_) => "unavailable",
            OpenImError::Timeout(_) => "timeout",
            OpenImError::BadResponse(_) => "bad_response",
            OpenImError::NoRoute(_) => "no_route",
            OpenImError::Api { .. } => "errcode",
            OpenImError::InvalidCall(_) => "invalid_call",
            OpenImError::TokenStore(_) => "token_store",
            OpenImError::AuthFailed(_) => "auth_failed",
            OpenImError::CircuitOpen { .. } => "circuit_open",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_labels_name_catalogued_errcodes_and_lump_the_rest() {
        assert_eq!(errcode_label(1505), "errcode_1505");
        assert_eq!(errcode_label(14), "errcode_14", "gRPC Unavailable");
        assert_eq!(errcode_label(90004), "errcode_90004");
        for invented in [-1, 0, 17, 1999, 123_456_789, i64::MAX, i64::MIN] {
            assert_eq!(errcode_label(invented), "errcode_other", "{invented}");
        }
    }
}
