//! Raw-socket helpers the suites share: a TCP connection to the gateway that no HTTP library
//! tidies, reading until the gateway closes it, and the close code a relayed WebSocket ends with.
//! Every wait is bounded, so a gateway that never answers fails a test instead of hanging it.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use crate::Harness;

/// A WebSocket client connection, as `tokio_tungstenite::connect_async` returns it.
pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// The longest a close may take in these helpers; the deadlines under test are a fraction of it.
pub const BOUND: Duration = Duration::from_secs(10);

/// A plain TCP connection to the gateway's listener.
pub async fn connect(h: &Harness) -> TcpStream {
    TcpStream::connect(h.gateway_url.trim_start_matches("http://")).await.expect("connect")
}

/// Reads until the gateway closes the connection (EOF, or a reset: a close with unread data in
/// the gateway's buffer arrives as one); returns what it sent. Fails after [`BOUND`].
pub async fn closed_by_gateway(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let read_to_end = async {
        let mut buf = [0u8; 8192];
        loop {
            match s.read(&mut buf).await {
                Ok(0) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
                Err(e) => panic!("read: {e}"),
            }
        }
    };
    tokio::time::timeout(BOUND, read_to_end).await.expect("the gateway closes the connection");
    got
}

/// The close code the gateway ends `ws` with (data frames skipped), within 5 s; `None` when the
/// socket ends without a Close frame or with an error.
pub async fn ws_closed_with(ws: &mut Ws) -> Option<CloseCode> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("closed within 5 s") {
            Some(Ok(Message::Close(f))) => return f.map(|f| f.code),
            Some(Ok(_)) => continue,
            _ => return None,
        }
    }
}
