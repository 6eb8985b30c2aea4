//! The load generator: a closed loop of N clients, each on its own HTTP/1.1 keep-alive connection
//! (hyper's client connection API), sending its next request when the previous answer is in and
//! checked. Latencies go into an HDR histogram (microseconds); every answer is verified (status,
//! OpenIM's `errCode`, the shape of the /v1 answer) and failures are counted, never timed.
//!
//! The same generator serves every case; only the [`Target`] (address, path, body, credentials,
//! answer check) changes. Cases 4, 6 and 7 sign every request here (fresh nonce, HMAC over the
//! body hash), so their client does that work on the same machine.
//!
//! [`sequential`] sends a fixed number of requests one after the other (the store round trips
//! per request of case 7 are counted over such a run).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use imgate_client::Session;
use serde_json::Value;

use crate::setup::PEER;

/// How each request is authenticated.
pub(crate) enum Auth {
    /// OpenIM's `token` header (an OpenIM token, or an imgate bearer token on `/openim/*`); client
    /// i uses token i mod len.
    Token(Vec<String>),
    /// imgate's signed request (client-auth §4); client i uses session i mod len.
    Signed(Vec<Session>),
}

/// What a correct answer looks like.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Check {
    /// `get_users_info` in OpenIM's envelope: errCode 0 and the peer's record.
    OpenImLookup,
    /// `send_msg` in OpenIM's envelope: errCode 0 and a serverMsgID.
    OpenImSend,
    /// `POST /v1/users/lookup`: 200 and the peer's record, without `face_url` (stripped by the chain).
    V1Lookup,
    /// `POST /v1/users/lookup` on a gateway without plugins: 200 and the peer's record.
    V1LookupPlain,
    /// `POST /v1/messages/user/{peer}`: 200 and a server_msg_id.
    V1Send,
}

/// One kind of request against one server.
pub(crate) struct Target {
    /// `127.0.0.1:port`.
    pub(crate) addr: String,
    pub(crate) path: String,
    pub(crate) body: Bytes,
    pub(crate) auth: Auth,
    pub(crate) check: Check,
}

/// Failures of one run, by kind, with the first few messages.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub(crate) struct Errors {
    /// Connect failures, broken connections, timeouts.
    pub(crate) transport: u64,
    /// Answers with another status than 200.
    pub(crate) status: u64,
    /// 200 answers that are not the expected answer (errCode ≠ 0, wrong shape).
    pub(crate) answer: u64,
    pub(crate) samples: Vec<String>,
}

impl Errors {
    pub(crate) fn total(&self) -> u64 {
        self.transport + self.status + self.answer
    }
    pub(crate) fn note(&mut self, msg: String) {
        if self.samples.len() < 3 {
            self.samples.push(msg);
        }
    }
    pub(crate) fn merge(&mut self, o: &Errors) {
        self.transport += o.transport;
        self.status += o.status;
        self.answer += o.answer;
        for s in &o.samples {
            self.note(s.clone());
        }
    }
}

/// What one client saw in the measured window.
struct ClientResult {
    hist: Histogram<u64>,
    errors: Errors,
}

/// The measured window of a run.
pub(crate) struct RunResult {
    pub(crate) hist: Histogram<u64>,
    pub(crate) ok: u64,
    pub(crate) errors: Errors,
    pub(crate) elapsed: Duration,
}

/// A histogram of microseconds from 1 µs to 60 s, 3 significant digits.
pub(crate) fn new_hist() -> Result<Histogram<u64>, String> {
    Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())
}

/// Longest wait for one answer before it counts as a transport error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `conc` clients against `target`: `warmup` unmeasured, then `measure`. Requests started
/// in the measured window are the ones counted. `at_window` is called at the start and at the end
/// of the window (CPU samples).
pub(crate) async fn run(
    target: Arc<Target>,
    conc: usize,
    warmup: Duration,
    measure: Duration,
    mut at_window: impl FnMut(),
) -> Result<RunResult, String> {
    let start = Instant::now();
    let t0 = start + warmup;
    let t1 = t0 + measure;
    let mut tasks = Vec::with_capacity(conc);
    for i in 0..conc {
        let target = target.clone();
        tasks.push(tokio::spawn(async move { client(i, target, t0, t1).await }));
    }
    tokio::time::sleep_until(t0.into()).await;
    at_window();
    tokio::time::sleep_until(t1.into()).await;
    at_window();
    let mut hist = new_hist()?;
    let mut errors = Errors::default();
    for t in tasks {
        let r = t.await.map_err(|e| format!("load client panicked: {e}"))??;
        hist.add(&r.hist).map_err(|e| e.to_string())?;
        errors.merge(&r.errors);
    }
    Ok(RunResult { ok: hist.len(), hist, errors, elapsed: measure })
}

async fn connect(addr: &str) -> Result<SendRequest<Full<Bytes>>, String> {
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake {addr}: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn build(target: &Target, i: usize) -> Result<hyper::Request<Full<Bytes>>, String> {
    let mut req = hyper::Request::post(target.path.as_str())
        .header(hyper::header::HOST, target.addr.as_str())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header("operationID", "imgate-bench");
    match &target.auth {
        Auth::Token(tokens) => {
            if let Some(t) = tokens.get(i % tokens.len().max(1)) {
                req = req.header("token", t.as_str());
            }
        }
        Auth::Signed(sessions) => {
            if let Some(s) = sessions.get(i % sessions.len().max(1)) {
                for (k, v) in s.sign_request("POST", &target.path, &target.body, now_ms(), &Session::fresh_nonce()) {
                    req = req.header(k, v);
                }
            }
        }
    }
    req.body(Full::new(target.body.clone())).map_err(|e| e.to_string())
}

/// `Ok` if the answer is the one the case must give.
fn verify(check: Check, status: u16, body: &[u8]) -> Result<(), (bool, String)> {
    let text = || String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    if status != 200 {
        return Err((true, format!("HTTP {status}: {}", text())));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| (false, format!("not JSON ({e}): {}", text())))?;
    let good = match check {
        Check::OpenImLookup => v["errCode"] == 0 && v["data"]["usersInfo"][0]["userID"] == PEER,
        Check::OpenImSend => v["errCode"] == 0 && v["data"]["serverMsgID"].as_str().is_some_and(|s| !s.is_empty()),
        // The plugin chain's response-reshaper strips `face_url` of other users: its absence shows
        // the on-response hook ran on this very answer.
        Check::V1Lookup => v["users"][0]["user_id"] == PEER && v["users"][0].get("face_url").is_none(),
        Check::V1LookupPlain => v["users"][0]["user_id"] == PEER,
        Check::V1Send => v["server_msg_id"].as_str().is_some_and(|s| !s.is_empty()),
    };
    if good {
        Ok(())
    } else {
        Err((false, format!("wrong answer: {}", text())))
    }
}

/// `n` requests one after the other on one keep-alive connection, request k with the credentials
/// of client k (every session or token in turn), each answer checked: the right answers and the
/// failures. A broken connection is replaced (and counted as a transport error).
pub(crate) async fn sequential(target: &Target, n: u64) -> Result<(u64, Errors), String> {
    let (mut ok, mut errors) = (0, Errors::default());
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    for k in 0..n {
        if let Some(s) = sender.as_mut() {
            if s.ready().await.is_err() {
                sender = None;
            }
        }
        let s = match sender.as_mut() {
            Some(s) => s,
            None => sender.insert(connect(&target.addr).await?),
        };
        let req = build(target, k as usize)?;
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, async {
            let res = s.send_request(req).await.map_err(|e| e.to_string())?;
            let status = res.status().as_u16();
            let body = res.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
            Ok::<_, String>((status, body))
        })
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {REQUEST_TIMEOUT:?}")));
        match answer.map(|(status, body)| verify(target.check, status, &body)) {
            Ok(Ok(())) => ok += 1,
            Ok(Err((is_status, msg))) => {
                if is_status {
                    errors.status += 1;
                } else {
                    errors.answer += 1;
                }
                errors.note(msg);
            }
            Err(e) => {
                sender = None;
                errors.transport += 1;
                errors.note(e);
            }
        }
    }
    Ok((ok, errors))
}

async fn client(i: usize, target: Arc<Target>, t0: Instant, t1: Instant) -> Result<ClientResult, String> {
    let mut hist = new_hist()?;
    let mut errors = Errors::default();
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    loop {
        let begin = Instant::now();
        if begin >= t1 {
            break;
        }
        let measured = begin >= t0;
        // A connection the server closed between two requests is replaced without counting an error.
        if let Some(s) = sender.as_mut() {
            if s.ready().await.is_err() {
                sender = None;
            }
        }
        let s = match sender.as_mut() {
            Some(s) => s,
            None => match connect(&target.addr).await {
                Ok(s) => sender.insert(s),
                Err(e) => {
                    if measured {
                        errors.transport += 1;
                        errors.note(e);
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let req = build(&target, i)?;
        let begin = Instant::now();
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, async {
            let res = s.send_request(req).await.map_err(|e| e.to_string())?;
            let status = res.status().as_u16();
            let body = res.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
            Ok::<_, String>((status, body))
        })
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {REQUEST_TIMEOUT:?}")));
        let took = begin.elapsed();
        match answer {
            Ok((status, body)) => match verify(target.check, status, &body) {
                Ok(()) => {
                    if measured {
                        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
                        hist.saturating_record(us);
                    }
                }
                Err((is_status, msg)) => {
                    if measured {
                        if is_status {
                            errors.status += 1;
                        } else {
                            errors.answer += 1;
                        }
                        errors.note(msg);
                    }
                }
            },
            Err(e) => {
                sender = None;
                if measured {
                    errors.transport += 1;
                    errors.note(e);
                }
            }
        }
    }
    Ok(ClientResult { hist, errors })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_answer_is_checked() {
        let lookup =
            br#"{"errCode":0,"errMsg":"","errDlt":"","data":{"usersInfo":[{"userID":"benchpeer","nickname":"n"}]}}"#;
        assert!(verify(Check::OpenImLookup, 200, lookup).is_ok());
        assert!(matches!(verify(Check::OpenImLookup, 502, lookup), Err((true, _))), "status counts as status");
        let refused = br#"{"errCode":1002,"errMsg":"NoPermissionError","errDlt":"","data":null}"#;
        assert!(matches!(verify(Check::OpenImLookup, 200, refused), Err((false, _))), "OpenIM answers 200 on errors");
        let other = br#"{"errCode":0,"data":{"usersInfo":[{"userID":"someone"}]}}"#;
        assert!(verify(Check::OpenImLookup, 200, other).is_err());
        assert!(verify(Check::OpenImSend, 200, br#"{"errCode":0,"data":{"serverMsgID":"s1","sendTime":1}}"#).is_ok());
        assert!(verify(Check::OpenImSend, 200, br#"{"errCode":0,"data":{"serverMsgID":""}}"#).is_err());
        assert!(verify(Check::V1Lookup, 200, br#"{"users":[{"user_id":"benchpeer","nickname":"n"}]}"#).is_ok());
        let unreshaped = br#"{"users":[{"user_id":"benchpeer","nickname":"n","face_url":"u"}]}"#;
        assert!(verify(Check::V1Lookup, 200, unreshaped).is_err(), "the on-response plugin did not run");
        assert!(verify(Check::V1Send, 200, br#"{"server_msg_id":"m","client_msg_id":"c","send_time":1}"#).is_ok());
        assert!(matches!(verify(Check::V1Send, 200, b"<html>"), Err((false, _))));
        assert!(matches!(verify(Check::V1Send, 429, br#"{"code":"rate_limited"}"#), Err((true, _))));
    }

    #[test]
    fn signed_requests_carry_a_fresh_signature_each() {
        let session = Session {
            session_id: "c2Vzc2lvbi0x".into(),
            session_key: [7; 32],
            user_id: "u".into(),
            platform_id: 1,
            expires_at: 0,
        };
        let target = Target {
            addr: "127.0.0.1:1".into(),
            path: "/v1/users/lookup".into(),
            body: Bytes::from_static(b"{}"),
            auth: Auth::Signed(vec![session]),
            check: Check::V1Lookup,
        };
        let (a, b) = (build(&target, 0).unwrap(), build(&target, 5).unwrap());
        assert_ne!(a.headers()["x-imgate-nonce"], b.headers()["x-imgate-nonce"]);
        assert_ne!(a.headers()["x-imgate-signature"], b.headers()["x-imgate-signature"]);
        assert_eq!(a.headers()["x-imgate-session"], "c2Vzc2lvbi0x");
        assert_eq!(a.uri(), "/v1/users/lookup");
    }
}
