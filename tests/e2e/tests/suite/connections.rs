//! Connections that hold a file descriptor without asking for anything, and labels a client could
//! invent (attacks.md E1 slowloris, issue 10 items 7 and 8).
//!
//! Every test speaks raw TCP to the real gateway, because HTTP client libraries never leave a
//! connection silent, half a head sent, or a method made up. A close is observed as the socket's
//! end (EOF or reset); each wait is bounded by [`BOUND`], far above the deadlines configured, so a
//! gateway that never closes fails the test instead of hanging it.

use e2e::raw::{closed_by_gateway, connect, BOUND};
use e2e::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A deadline no test waits for: whatever closes a connection within [`BOUND`] is another one.
const NEVER: u64 = 60_000;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame: the client half of the HTTP/2 connection preface.
const H2_SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];

async fn start(server_toml: &str) -> Harness {
    Harness::start_with(Options { server_toml: server_toml.into(), ..Options::default() }).await
}

/// One HTTP/1.1 keep-alive `GET` on `s`; returns the status (the body is read and dropped).
async fn get(s: &mut TcpStream, path: &str) -> u16 {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: gw\r\n\r\n").as_bytes()).await.expect("write");
    let answer = async {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = s.read(&mut buf).await.expect("read");
            assert!(n > 0, "connection closed before the answer: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("content-length");
        while got.len() < head_end + length {
            let n = s.read(&mut buf).await.expect("read");
            assert!(n > 0, "connection closed inside the body");
            got.extend_from_slice(&buf[..n]);
        }
        head.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("status line")
    };
    tokio::time::timeout(BOUND, answer).await.expect("an answer")
}

/// An HTTP/2 frame header.
fn frame(len: usize, kind: u8, flags: u8, stream: u32) -> Vec<u8> {
    let mut f = (len as u32).to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f
}

/// `GET /healthz` as an HTTP/2 HEADERS frame on stream 1 (HPACK: indexed `:method GET`,
/// `:scheme http`, literal `:path` and `:authority`).
fn h2_get_healthz() -> Vec<u8> {
    let mut block = vec![0x82, 0x86, 0x04, 8];
    block.extend_from_slice(b"/healthz");
    block.extend([0x01, 2]);
    block.extend_from_slice(b"gw");
    // END_STREAM | END_HEADERS
    let mut f = frame(block.len(), 1, 0x05, 1);
    f.extend(block);
    f
}

/// What an HTTP/2 peer saw until the gateway closed the connection.
#[derive(Default)]
struct H2Seen {
    stream_1_answered: bool,
    goaway: bool,
}

/// Plays a well-behaved HTTP/2 client without requests of its own (SETTINGS and PINGs are
/// acknowledged) until the gateway closes the connection; fails if it does not within [`BOUND`].
async fn h2_until_closed(s: &mut TcpStream) -> H2Seen {
    let mut seen = H2Seen::default();
    let run = async {
        loop {
            let mut head = [0u8; 9];
            match s.read_exact(&mut head).await {
                Ok(_) => {}
                Err(e)
                    if matches!(e.kind(), std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset) =>
                {
                    return;
                }
                Err(e) => panic!("read: {e}"),
            }
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let (kind, flags) = (head[3], head[4]);
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            let mut payload = vec![0u8; len];
            if s.read_exact(&mut payload).await.is_err() {
                return;
            }
            let reply = match (kind, flags & 1) {
                // SETTINGS, not an ACK: acknowledge.
                (4, 0) => Some(frame(0, 4, 1, 0)),
                // PING, not an ACK: answer with the same payload.
                (6, 0) => Some([frame(8, 6, 1, 0), payload.clone()].concat()),
                (7, _) => {
                    seen.goaway = true;
                    None
                }
                // DATA or HEADERS ending stream 1: the request was answered.
                (0 | 1, 1) if stream == 1 => {
                    seen.stream_1_answered = true;
                    None
                }
                _ => None,
            };
            if let Some(r) = reply {
                // The gateway may already be gone; the next read tells.
                let _ = s.write_all(&r).await;
            }
        }
    };
    tokio::time::timeout(BOUND, run).await.expect("the gateway closes the HTTP/2 connection");
    seen
}

async fn metric(h: &Harness, series: &str) -> f64 {
    h.metric(series).await.unwrap_or_else(|| panic!("{series} is exported"))
}

/// Waits (bounded) until the gateway's gauge of open API connections shows `n`.
async fn open_connections_reach(h: &Harness, n: f64) {
    let series = "imgate_connections_open{listener=\"api\"}";
    let wait = async {
        while h.metric(series).await != Some(n) {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(BOUND, wait).await.unwrap_or_else(|_| panic!("{series} never reached {n}"));
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_first_byte_deadline() {
    let h = start(&format!("first_byte_timeout_ms = 200\nheader_read_timeout_ms = {NEVER}\nidle_timeout_ms = {NEVER}"))
        .await;
    let mut s = connect(&h).await;
    let sent = closed_by_gateway(&mut s).await;
    assert!(sent.is_empty(), "no answer to a request never made: {:?}", String::from_utf8_lossy(&sent));
    // The deadline is per connection: the gateway still serves the next one.
    assert_eq!(get(&mut connect(&h).await, "/healthz").await, 200);
    h.shutdown().await;
}

#[tokio::test]
async fn half_a_request_head_is_closed_after_the_head_deadline() {
    let h = start(&format!("first_byte_timeout_ms = {NEVER}\nheader_read_timeout_ms = 200\nidle_timeout_ms = {NEVER}"))
        .await;
    // HTTP/1: the request line and one header, never the blank line.
    let mut s = connect(&h).await;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n").await.expect("write");
    closed_by_gateway(&mut s).await;
    // Half of the HTTP/2 preface: the gateway cannot even tell the protocol yet.
    let mut s = connect(&h).await;
    s.write_all(&H2_PREFACE[..16]).await.expect("write");
    closed_by_gateway(&mut s).await;
    h.shutdown().await;
}

#[tokio::test]
async fn an_http2_connection_that_never_sends_a_request_is_closed() {
    let h = start(&format!("first_byte_timeout_ms = {NEVER}\nheader_read_timeout_ms = 200\nidle_timeout_ms = {NEVER}"))
        .await;
    let mut s = connect(&h).await;
    s.write_all(&[H2_PREFACE, &H2_SETTINGS].concat()).await.expect("write");
    let seen = h2_until_closed(&mut s).await;
    assert!(!seen.stream_1_answered);
    h.shutdown().await;
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    let h = start(&format!("first_byte_timeout_ms = {NEVER}\nheader_read_timeout_ms = {NEVER}\nidle_timeout_ms = 300"))
        .await;
    // HTTP/1.1: one request, then nothing.
    let mut s = connect(&h).await;
    assert_eq!(get(&mut s, "/healthz").await, 200);
    let after = closed_by_gateway(&mut s).await;
    assert!(after.is_empty(), "nothing after the answer: {:?}", String::from_utf8_lossy(&after));
    // HTTP/2 (prior knowledge): one request answered, then a graceful GOAWAY and the close.
    let mut s = connect(&h).await;
    s.write_all(&[H2_PREFACE, &H2_SETTINGS, &h2_get_healthz()].concat()).await.expect("write");
    let seen = h2_until_closed(&mut s).await;
    assert!(seen.stream_1_answered, "the request was answered before the idle close");
    assert!(seen.goaway, "an idle HTTP/2 connection is closed with GOAWAY");
    h.shutdown().await;
}

#[tokio::test]
async fn beyond_max_connections_new_connections_are_shed_and_open_ones_served() {
    const MAX: usize = 20;
    // Long enough that the flood is still open while the test looks (loopback takes
    // milliseconds), short enough that the test then sees it expire.
    let h = start(&format!(
        "max_connections = {MAX}\nfirst_byte_timeout_ms = 3000\nheader_read_timeout_ms = {NEVER}\nidle_timeout_ms = {NEVER}"
    ))
    .await;
    let mut keep_alive = connect(&h).await;
    assert_eq!(get(&mut keep_alive, "/healthz").await, 200);
    // The flood: silent connections up to the cap.
    let mut silent = Vec::new();
    for _ in 1..MAX {
        silent.push(connect(&h).await);
    }
    open_connections_reach(&h, MAX as f64).await;
    // At the cap: new connections are closed at once, before a byte is read.
    for _ in 0..5 {
        let mut s = connect(&h).await;
        let sent = closed_by_gateway(&mut s).await;
        assert!(sent.is_empty(), "a shed connection gets no answer: {:?}", String::from_utf8_lossy(&sent));
    }
    assert_eq!(metric(&h, "imgate_connections_shed_total{listener=\"api\"}").await, 5.0);
    assert_eq!(
        metric(&h, "imgate_connections_open{listener=\"api\"}").await,
        MAX as f64,
        "the flood was still open: the shed ones were closed by the cap, not by a deadline"
    );
    // The connection opened before the flood is served all along.
    assert_eq!(get(&mut keep_alive, "/healthz").await, 200);
    // The first-byte deadline frees the flood's slots; then new connections are served again.
    for s in &mut silent {
        closed_by_gateway(s).await;
    }
    open_connections_reach(&h, 1.0).await;
    assert_eq!(get(&mut connect(&h).await, "/healthz").await, 200);
    assert_eq!(get(&mut keep_alive, "/healthz").await, 200);
    assert_eq!(metric(&h, "imgate_connections_shed_total{listener=\"api\"}").await, 5.0);
    h.shutdown().await;
}

#[tokio::test]
async fn client_chosen_methods_and_paths_never_become_label_values() {
    let h = Harness::start().await;
    let status = h.raw_status("FOOBAR /healthz HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status, 405);
    let status = h.raw_status("FOOBAR /no/such/route HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status, 404);
    assert_eq!(get(&mut connect(&h).await, "/no/such/path").await, 404);
    let text = h.http.get(&h.metrics_url).send().await.expect("metrics").text().await.expect("text");
    assert!(text.contains("route=\"/healthz\",method=\"other\",status=\"405\""), "{text}");
    assert!(text.contains("route=\"unmatched\",method=\"other\",status=\"404\""), "{text}");
    assert!(text.contains("route=\"unmatched\",method=\"GET\",status=\"404\""), "{text}");
    for invented in ["FOOBAR", "foobar", "/no/such"] {
        assert!(!text.contains(invented), "{invented} became a label value:\n{text}");
    }
    h.shutdown().await;
}
