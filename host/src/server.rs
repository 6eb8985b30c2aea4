//! Accepting connections: HTTP/1.1 and HTTP/2 with connection deadlines, a connection cap, and
//! graceful drain.
//!
//! axum's own `serve` has no connection deadlines, no cap and no drain deadline, so this is the
//! small accept loop it would be, with all three. A connection is only worth its file descriptor
//! while a request is coming or being answered, so each one is watched ([`Watch`]) through its
//! life:
//!
//! - first byte: a client that connects and sends nothing is closed after `first_byte`;
//! - head: from the first byte of a request until its head is parsed (hyper calls the service
//!   only then, for HTTP/1 and HTTP/2 alike), at most `head` (slowloris, attacks.md E1);
//! - idle: a keep-alive connection with no request in flight is closed after `idle`;
//! - stall: while a request is in flight, a connection on which no byte moves in either
//!   direction for `stall` is cut (a client that never reads its answer would otherwise hold its
//!   slot forever, attacks.md E3).
//!
//! hyper's own knobs cannot express this: its HTTP/1 `header_read_timeout` is one timer from the
//! end of the previous answer to the end of the next head (so idle keep-alive connections would
//! be cut at the head timeout, and the version detection of hyper-util's auto builder, which
//! reads first, has no timer at all), and HTTP/2 has no head or idle timeout, only keep-alive
//! pings, which a silent-but-alive peer answers. So the deadlines live here, fed by the two
//! places that see a connection's progress: its socket ([`Watched`]) and its service (a request
//! head was parsed; its answer was sent).
//!
//! An HTTP/1 request head whose lines end in a bare LF instead of CRLF is refused (400, then the
//! connection is closed) before hyper reads it: hyper accepts bare LF as RFC 9112 §2.2 allows, but
//! a proxy in front that does not would frame the same bytes differently (attacks.md E6).
//!
//! Open connections are capped (`max_connections` per listener): beyond the cap new connections
//! are closed at once (counted as shed), so the ones already open keep being served and the
//! process keeps file descriptors for OpenIM calls and its files. On shutdown the listener
//! closes at once (new connections are refused), in-flight requests finish, idle keep-alive
//! connections close, and after `drain` whatever is left is cut.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::time::Instant;
use tower::ServiceExt;

/// Per-listener limits of the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// From accept to the first byte.
    pub first_byte: Duration,
    /// From a request's first byte to its complete head.
    pub head: Duration,
    /// A keep-alive connection with no request in flight.
    pub idle: Duration,
    /// While a request is in flight: the longest time no byte moves either way.
    pub stall: Duration,
    /// Open connections at once; beyond it new ones are shed.
    pub max_connections: usize,
    pub drain: Duration,
}

/// The listener's connection metrics (series of the gateway's registry, see
/// `telemetry::Metrics::connections`).
#[derive(Debug, Clone, Default)]
pub struct ConnectionMetrics {
    pub open: Gauge,
    pub shed: Counter,
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains for at most `opts.drain`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    opts: ServeOptions,
    metrics: ConnectionMetrics,
    shutdown: impl Future<Output = ()>,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    // Each connection task holds a clone of `done_rx`; when all are gone, the drain is over.
    let (done_tx, done_rx) = watch::channel(());
    let slots = Arc::new(Semaphore::new(opts.max_connections.clamp(1, Semaphore::MAX_PERMITS)));
    // Shed since the cap was last reached: logged once per episode, not once per connection.
    let mut shedding: Option<u64> = None;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            conn = listener.accept() => match conn {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            // Closed before a byte is read: the connections already open keep their slots.
            drop(stream);
            metrics.shed.inc();
            let n = shedding.get_or_insert_with(|| {
                tracing::warn!(
                    max_connections = opts.max_connections,
                    "connection cap reached; shedding new connections"
                );
                0
            });
            *n += 1;
            continue;
        };
        if let Some(shed) = shedding.take() {
            tracing::info!(shed, "below the connection cap again");
        }
        metrics.open.inc();
        let slot = Slot { _permit: permit, open: metrics.open.clone() };
        spawn_connection(stream, peer, app.clone(), opts, slot, stop_rx.clone(), done_rx.clone());
    }
    drop(listener);
    drop(done_rx);
    let _ = stop_tx.send(true);
    let in_flight = done_tx.receiver_count();
    tracing::info!(connections = in_flight, "draining");
    if tokio::time::timeout(opts.drain, done_tx.closed()).await.is_err() {
        tracing::warn!(connections = done_tx.receiver_count(), "drain deadline passed; closing remaining connections");
    }
}

/// A connection's place under the cap, given back (and the gauge lowered) when its task ends.
struct Slot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    open: Gauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

fn spawn_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    opts: ServeOptions,
    slot: Slot,
    mut stop: watch::Receiver<bool>,
    done: watch::Receiver<()>,
) {
    let _ = stream.set_nodelay(true);
    let watch = Arc::new(Watch::new(opts));
    let io = TokioIo::new(Watched { stream, watch: watch.clone(), head: HeadScan::default() });
    let svc_watch = watch.clone();
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        // hyper calls the service once a request head is parsed: the head deadline is met.
        let busy = svc_watch.request_started(req.version());
        req.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        async move {
            let res = app.oneshot(req.map(axum::body::Body::new)).await;
            if res.as_ref().is_ok_and(|r| r.status() == hyper::StatusCode::SWITCHING_PROTOCOLS) {
                // Before the 101 is written, so before the client may send its first frame.
                busy.0.upgraded.store(true, std::sync::atomic::Ordering::Release);
            }
            // The request counts as in flight until hyper drops the answer's body: fully sent,
            // or the client went away.
            res.map(|r| r.map(|inner| Answer { inner, _busy: busy }))
        }
    });
    tokio::spawn(async move {
        let mut builder = Builder::new(TokioExecutor::new());
        // hyper's header timer would restart at the end of every answer and so cut idle
        // keep-alive connections at the head deadline; the watch keeps both deadlines instead.
        builder.http1().timer(TokioTimer::new()).header_read_timeout(None);
        builder.http2().timer(TokioTimer::new()).max_concurrent_streams(100);
        // Upgrades (the WebSocket relay) hand the connection to the relay, which keeps its own
        // deadlines and cap (`[ws]`); this loop and the connection's slot end there.
        let conn = builder.serve_connection_with_upgrades(io, svc);
        let mut conn = std::pin::pin!(conn);
        // A graceful close was asked for (shutdown, or the idle deadline): the next deadline cuts.
        let mut closing = false;
        loop {
            let deadline = watch.deadline();
            tokio::select! {
                res = conn.as_mut() => {
                    log_end(res);
                    break;
                }
                () = stopping(&mut stop), if !closing => {
                    // Finish the request in flight, then close.
                    closing = true;
                    watch.closing();
                    conn.as_mut().graceful_shutdown();
                }
                () = tokio::time::sleep_until(deadline) => {
                    let Some(phase) = watch.expired() else { continue };
                    if phase == Phase::Idle && !closing {
                        // Politely (HTTP/2 GOAWAY; HTTP/1 closes at once), within a head deadline.
                        closing = true;
                        watch.closing();
                        conn.as_mut().graceful_shutdown();
                        continue;
                    }
                    tracing::debug!(%peer, phase = phase.as_str(), "connection deadline passed; closing");
                    break;
                }
                () = watch.changed.notified() => {}
            }
        }
        drop(slot);
        drop(done);
    });
}

fn log_end(res: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(e) = res {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Resolves once shutdown is signalled (or the signal sender is gone).
async fn stopping(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}

/// Where a connection is in its life; each phase has its own deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Accepted, nothing received yet.
    FirstByte,
    /// Bytes of a request head arrived; the head is not complete.
    Head,
    /// At least one request in flight.
    Busy,
    /// Keep-alive, no request in flight.
    Idle,
    /// A graceful close was started and no request is in flight.
    Closing,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::FirstByte => "first_byte",
            Phase::Head => "head",
            Phase::Busy => "stall",
            Phase::Idle => "idle",
            Phase::Closing => "closing",
        }
    }
}

/// One connection's deadline, moved by its socket and its service (which for HTTP/2 run on
/// other tasks, hence the lock) and enforced by its task.
struct Watch {
    opts: ServeOptions,
    state: Mutex<WatchState>,
    /// Wakes the connection task when the deadline may have moved earlier.
    changed: Notify,
    /// The connection was upgraded (101, the WebSocket relay): its bytes are no HTTP any more.
    upgraded: std::sync::atomic::AtomicBool,
}

struct WatchState {
    phase: Phase,
    /// When the phase began; in `Busy`, when a byte last moved.
    since: Instant,
    in_flight: usize,
    /// The connection speaks HTTP/2 (known from its first request).
    h2: bool,
    /// A graceful close was started ([`Watch::closing`]).
    closing: bool,
}

impl Watch {
    fn new(opts: ServeOptions) -> Watch {
        let state =
            WatchState { phase: Phase::FirstByte, since: Instant::now(), in_flight: 0, h2: false, closing: false };
        Watch { opts, state: Mutex::new(state), changed: Notify::new(), upgraded: Default::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WatchState> {
        // The state is a few plain fields, consistent after any single assignment.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn deadline_of(&self, s: &WatchState) -> Instant {
        let limit = match s.phase {
            Phase::FirstByte => self.opts.first_byte,
            Phase::Head | Phase::Closing => self.opts.head,
            Phase::Busy => self.opts.stall,
            Phase::Idle => self.opts.idle,
        };
        s.since + limit
    }

    fn deadline(&self) -> Instant {
        self.deadline_of(&self.lock())
    }

    /// The phase whose deadline has passed, if it has (it may have moved since it was read).
    fn expired(&self) -> Option<Phase> {
        let s = self.lock();
        (self.deadline_of(&s) <= Instant::now()).then_some(s.phase)
    }

    fn enter(&self, s: &mut WatchState, phase: Phase) {
        s.phase = phase;
        s.since = Instant::now();
        self.changed.notify_one();
    }

    /// Bytes arrived from the client; returns whether they begin a request head (HTTP/1).
    fn read(&self) -> bool {
        let mut s = self.lock();
        let starts = matches!(s.phase, Phase::FirstByte) || (s.phase == Phase::Idle && !s.h2);
        match s.phase {
            Phase::FirstByte => self.enter(&mut s, Phase::Head),
            // The next HTTP/1 request began. (HTTP/2 peers send frames while idle, pings and
            // window updates, that are no request: for them only a request ends the idle phase.)
            Phase::Idle if !s.h2 => self.enter(&mut s, Phase::Head),
            Phase::Busy => s.since = Instant::now(),
            Phase::Head | Phase::Idle | Phase::Closing => {}
        }
        starts
    }

    /// Bytes went to the client.
    fn wrote(&self) {
        let mut s = self.lock();
        if s.phase == Phase::Busy {
            s.since = Instant::now();
        }
    }

    /// A request head was parsed; the request is in flight until the returned guard is dropped.
    fn request_started(self: &Arc<Self>, version: hyper::Version) -> Busy {
        let mut s = self.lock();
        s.in_flight += 1;
        s.h2 = version == hyper::Version::HTTP_2;
        // The deadline only moves later here: no need to wake the task.
        s.phase = Phase::Busy;
        s.since = Instant::now();
        Busy(self.clone())
    }

    /// A graceful close was started: once no request is in flight, the connection has a head
    /// deadline to finish closing (requests in flight keep their stall deadline).
    fn closing(&self) {
        let mut s = self.lock();
        s.closing = true;
        if s.phase == Phase::Idle {
            self.enter(&mut s, Phase::Closing);
        }
    }
}

/// A request in flight on its connection.
struct Busy(Arc<Watch>);

impl Drop for Busy {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 && s.phase == Phase::Busy {
            let next = if s.closing { Phase::Closing } else { Phase::Idle };
            self.0.enter(&mut s, next);
        }
    }
}

/// An answer's body, holding its request's [`Busy`] until hyper is done with it.
struct Answer {
    inner: axum::body::Body,
    _busy: Busy,
}

impl hyper::body::Body for Answer {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, reporting every byte moved to the connection's [`Watch`], and checking HTTP/1
/// request heads for bare LF line ends ([`HeadScan`]).
struct Watched {
    stream: TcpStream,
    watch: Arc<Watch>,
    head: HeadScan,
}

/// Where the scan of a connection's HTTP/1 request heads is: from a head's first byte to its
/// blank line (`\r\n\r\n`), a line at a time; then past its body (`Content-Length` bytes, or a
/// chunked body's chunks and trailer lines), so a request pipelined behind it in the same read is
/// scanned too. A body it cannot follow (a chunk size that is not hex) leaves it waiting for the
/// next read that starts a request: hyper refuses such a body and closes the connection. Never on
/// an HTTP/2 connection (its preface turns it off for good).
#[derive(Debug, Default)]
struct HeadScan {
    state: ScanState,
    /// The connection is HTTP/2: never scanned again.
    off: bool,
    /// The current line's last byte so far (a `\n` must follow a `\r`), and its length.
    prev: u8,
    line_len: usize,
    /// The current line's first bytes: enough to tell a framing header.
    line: Vec<u8>,
    /// The head's `Content-Length`, and whether it has a `Transfer-Encoding`.
    length: Option<u64>,
    encoded: bool,
    /// Bytes of the connection scanned so far (the HTTP/2 preface is at its very start).
    seen: usize,
}

#[derive(Debug, Default, PartialEq)]
enum ScanState {
    /// Between requests, or behind a body of unknown length.
    #[default]
    Waiting,
    Head,
    /// This many body bytes before the next head.
    Body(u64),
    /// A chunked body's chunk-size line (RFC 9112 §7.1).
    ChunkSize,
    /// This many bytes of a chunk and its CRLF before the next chunk-size line.
    Chunk(u64),
    /// The trailer section after the last chunk, up to its blank line.
    Trailers,
}

/// HTTP/2's connection preface begins so (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// Enough of a header line to read a framing header's name and a length.
const SCAN_LINE_MAX: usize = 64;

/// What a head with a bare LF gets before its connection is closed.
const BARE_LF_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 86\r\nconnection: close\r\n\r\n{\"code\":\"bad_request\",\"message\":\"request lines must end in CRLF\",\"request_id\":\"\"}";

impl HeadScan {
    /// Scans bytes just read; `starts` says they begin a new request. `Err` on a bare LF.
    fn scan(&mut self, mut bytes: &[u8], starts: bool) -> Result<(), ()> {
        if self.off {
            return Ok(());
        }
        if self.seen < H2_PREFACE.len() {
            let n = (H2_PREFACE.len() - self.seen).min(bytes.len());
            if bytes[..n] != H2_PREFACE[self.seen..self.seen + n] {
                self.seen = usize::MAX;
            } else {
                self.seen += n;
                if self.seen == H2_PREFACE.len() {
                    self.off = true;
                    return Ok(());
                }
            }
        }
        if starts {
            self.begin_head();
        }
        while !bytes.is_empty() {
            match self.state {
                ScanState::Waiting => return Ok(()),
                ScanState::Body(left) => match skip(&mut bytes, left) {
                    0 => self.begin_head(),
                    left => self.state = ScanState::Body(left),
                },
                ScanState::Chunk(left) => match skip(&mut bytes, left) {
                    0 => self.begin_chunk_size(),
                    left => self.state = ScanState::Chunk(left),
                },
                ScanState::Head | ScanState::ChunkSize | ScanState::Trailers => {
                    // A line at a time: memchr finds its end; its first bytes name a framing header.
                    let Some(i) = memchr::memchr(b'\n', bytes) else {
                        self.line_bytes(bytes);
                        return Ok(());
                    };
                    self.line_bytes(&bytes[..i]);
                    bytes = &bytes[i + 1..];
                    if self.prev != b'\r' {
                        return Err(());
                    }
                    let blank = self.line_len == 1; // `\r\n` alone
                    match self.state {
                        ScanState::Head if blank => self.end_head(),
                        ScanState::Head => self.header_line(),
                        ScanState::ChunkSize => self.chunk_size_line(),
                        // The blank line that ends the trailers ends the request.
                        _ if blank => self.begin_head(),
                        _ => self.new_line(),
                    }
                }
            }
        }
        Ok(())
    }

    /// Bytes of the current line (before its `\n`).
    fn line_bytes(&mut self, part: &[u8]) {
        if let Some(&last) = part.last() {
            self.prev = last;
            self.line_len += part.len();
            let room = SCAN_LINE_MAX.saturating_sub(self.line.len()).min(part.len());
            self.line.extend_from_slice(&part[..room]);
        }
    }

    fn begin_head(&mut self) {
        self.state = ScanState::Head;
        self.new_line();
        self.length = None;
        self.encoded = false;
    }

    fn new_line(&mut self) {
        self.prev = 0;
        self.line_len = 0;
        self.line.clear();
    }

    /// A header line ended: note the framing headers.
    fn header_line(&mut self) {
        let line = self.line.strip_suffix(b"\r").unwrap_or(&self.line);
        if let Some(value) = strip_name(line, b"content-length:") {
            let length = std::str::from_utf8(value).ok().and_then(|v| v.trim().parse().ok());
            self.length = length;
        } else if strip_name(line, b"transfer-encoding:").is_some() {
            self.encoded = true;
        }
        self.new_line();
    }

    fn begin_chunk_size(&mut self) {
        self.state = ScanState::ChunkSize;
        self.new_line();
    }

    /// A chunk-size line ended: `size[;extensions]`, the size in hex; 0 is the last chunk.
    fn chunk_size_line(&mut self) {
        let line = self.line.strip_suffix(b"\r").unwrap_or(&self.line);
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        // A line cut at SCAN_LINE_MAX within its digits (leading zeros) has no size to read here.
        let whole = digits < line.len() || self.line_len <= SCAN_LINE_MAX;
        let size = whole.then(|| std::str::from_utf8(&line[..digits]).ok()).flatten();
        let size = size.and_then(|h| u64::from_str_radix(h, 16).ok());
        self.new_line();
        self.state = match size {
            Some(0) => ScanState::Trailers,
            Some(n) => n.checked_add(2).map_or(ScanState::Waiting, ScanState::Chunk),
            // Not a chunk size (or one longer than the line kept): hyper refuses it.
            None => ScanState::Waiting,
        };
    }

    fn end_head(&mut self) {
        match (self.encoded, self.length) {
            // Transfer-Encoding wins over Content-Length (RFC 9112 §6.3); hyper refuses a request
            // whose last coding is not chunked, so the body is read as chunks.
            (true, _) => self.begin_chunk_size(),
            (false, Some(n)) if n > 0 => self.state = ScanState::Body(n),
            (false, _) => self.begin_head(),
        }
    }
}

/// Drops up to `left` bytes from the front of `bytes`; returns how many of the `left` are still to come.
fn skip(bytes: &mut &[u8], left: u64) -> u64 {
    let n = usize::try_from(left).unwrap_or(usize::MAX).min(bytes.len());
    *bytes = &bytes[n..];
    left - n as u64
}

/// The value of a header line named `name` (lower case, with its colon), if it is one.
fn strip_name<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    (line.len() >= name.len() && line[..name.len()].eq_ignore_ascii_case(name)).then(|| &line[name.len()..])
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let starts = self.watch.read();
            let this = &mut *self;
            let http = !this.watch.upgraded.load(std::sync::atomic::Ordering::Acquire);
            if http && this.head.scan(&buf.filled()[before..], starts).is_err() {
                // Answered here, where the bytes are: hyper would take the bare LF as a line end.
                let _ = this.stream.try_write(BARE_LF_ANSWER);
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, "bare LF in a request head")));
            }
        }
        res
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.watch.wrote();
        }
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.watch.wrote();
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// What the open-file limit lets this process hold: client connections of the listener, and
/// relayed WebSockets (each holds two descriptors: the client's and OpenIM's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdBudget {
    pub connections: usize,
    pub relayed: usize,
}

/// The caps this process can keep, given its open-file limit: raises the soft limit toward the
/// hard one as far as the listener's `max_connections` (counted 4/3 each: a busy one may hold an
/// OpenIM connection too), `also_open` connections of other listeners and `relayed` WebSockets
/// (exactly two descriptors each: the client's and OpenIM's) need, plus [`FD_RESERVE`] for the
/// listeners, the audit log and plugin files; when that does not fit, the listener keeps its cap
/// if it fits alone (else three quarters of the room) and the relay gets what is left. Without this a cap above the limit would never be reached: accept would fail
/// with EMFILE first, and the gateway, health checks included, would stop answering.
// `rlim_t` is `u64` on Linux but not on every unix: the casts are no-ops only on some targets.
#[allow(clippy::unnecessary_cast)]
pub fn fit_to_fd_limit(max_connections: usize, also_open: usize, relayed: usize) -> FdBudget {
    let asked = FdBudget { connections: max_connections, relayed };
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: `lim` is a valid, writable rlimit for getrlimit to fill.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return asked;
        }
        let (cur, max) = (lim.rlim_cur as u64, lim.rlim_max as u64);
        let http = (max_connections as u64).saturating_mul(4) / 3;
        let relay = (relayed as u64).saturating_mul(2);
        let reserve = FD_RESERVE + also_open as u64;
        let wanted = http.saturating_add(relay).saturating_add(reserve);
        let mut limit = cur;
        if cur < wanted && max > cur {
            let raised = libc::rlimit { rlim_cur: wanted.min(max) as libc::rlim_t, rlim_max: lim.rlim_max };
            // SAFETY: `raised` is a valid rlimit; a refusal leaves the limit as it was.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                limit = wanted.min(max);
            }
        }
        if wanted > limit {
            let fit = fit_into(limit, max_connections, also_open, relayed);
            tracing::warn!(
                max_connections,
                ws_max_connections = relayed,
                open_file_limit = limit,
                using_connections = fit.connections,
                using_relayed = fit.relayed,
                "server.max_connections and ws.max_connections (2 descriptors each) do not fit the open-file limit; capping lower"
            );
            return fit;
        }
    }
    #[cfg(not(unix))]
    let _ = also_open;
    asked
}

/// The caps that fit `limit` descriptors: the listener first (short requests, health checks
/// among them) if it fits alone, else three quarters of the room; the relay gets what is left
/// (a relayed socket is long-lived, and a full relay refuses cleanly with 1601).
fn fit_into(limit: u64, max_connections: usize, also_open: usize, relayed: usize) -> FdBudget {
    let room = limit.saturating_sub(FD_RESERVE + also_open as u64);
    let http = (max_connections as u64).saturating_mul(4) / 3;
    let connections = if http <= room { max_connections } else { usize::try_from(room / 4 * 3).unwrap_or(1).max(1) };
    let left = room.saturating_sub((connections as u64).saturating_mul(4) / 3);
    FdBudget { connections, relayed: usize::try_from(left / 2).unwrap_or(usize::MAX).clamp(1, relayed.max(1)) }
}

/// Descriptors kept beyond the connections: listeners, the audit log, plugin files, DNS.
pub const FD_RESERVE: u64 = 64;

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> ServeOptions {
        let s = Duration::from_secs;
        ServeOptions { first_byte: s(1), head: s(2), idle: s(3), stall: s(4), max_connections: 10, drain: s(1) }
    }

    #[test]
    fn heads_with_bare_lf_are_refused_crlf_heads_and_bodies_and_http2_are_not() {
        use super::HeadScan;
        let ok = |parts: &[(&[u8], bool)]| {
            let mut scan = HeadScan::default();
            parts.iter().all(|(bytes, starts)| scan.scan(bytes, *starts).is_ok())
        };
        assert!(ok(&[(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true)]));
        // A body after the blank line may hold bare LFs; the head split across reads is still read.
        assert!(ok(&[(b"POST / HTTP/1.1\r\nContent-Length: 3\r", true), (b"\n\r\na\nb", false)]));
        assert!(!ok(&[(b"GET / HTTP/1.1\nHost: a\n\n", true)]));
        assert!(!ok(&[(b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", true)]));
        assert!(!ok(&[(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true), (b"GET / HTTP/1.1\nHost: a\n\n", true)]));
        // Pipelined behind a request without a body, or behind a counted body, in the same read.
        assert!(!ok(&[(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\nHost: a\n\n", true)]));
        assert!(!ok(&[(b"POST / HTTP/1.1\r\ncontent-LENGTH: 4\r\n\r\na\nb\nGET / HTTP/1.1\n\n", true)]));
        assert!(ok(&[(b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\na\nb\nGET / HTTP/1.1\r\n\r\n", true)]));
        // Pipelined behind a chunked body (chunks holding bare LFs, an extension, trailers), in
        // the same read or split anywhere.
        let chunked: &[u8] = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\na\nb\r\nA\r\n\n\n\n\n\n\n\n\n\n\n\r\n0\r\nT: 1\r\n\r\n";
        let crlf_next: &[u8] = b"GET / HTTP/1.1\r\n\r\n";
        let lf_next: &[u8] = b"GET / HTTP/1.1\nHost: a\n\n";
        for (next, clean) in [(crlf_next, true), (lf_next, false)] {
            let whole = [chunked, next].concat();
            assert_eq!(ok(&[(&whole, true)]), clean, "{:?}", String::from_utf8_lossy(&whole));
            for cut in 1..whole.len() {
                let (a, b) = whole.split_at(cut);
                assert_eq!(ok(&[(a, true), (b, false)]), clean, "cut at {cut}");
            }
        }
        // The trailer section is lines too; a chunk size that is not hex is left to hyper.
        assert!(!ok(&[(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: 1\n\r\n", true)]));
        assert!(ok(&[(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET / HTTP/1.1\n\n", true)]));
        // 70 leading zeros: more than the scan keeps of a line, so no size it could misread as 0.
        let zeros =
            [&b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"[..], &[b'0'; 70], b"3\r\na\nb\r\n"].concat();
        assert!(ok(&[(&zeros, true)]));
        // HTTP/2: the preface, then binary frames full of 0x0a.
        assert!(ok(&[(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", true), (b"\x00\x0a\n\n", true)]));
        assert!(ok(&[(b"PRI * HT", true), (b"TP/2.0\r\n\r\nSM\r\n\r\n\n", true)]));
    }

    /// A well-formed HTTP/1.1 request: CRLF head; no body, a counted one, or chunks with
    /// extensions and trailers. Bodies hold bare LFs and CRs, which are data.
    fn request() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let data = || proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'a'), Just(b'0')], 0..40);
        let chunks = proptest::collection::vec((data(), any::<bool>(), 0usize..3), 0..4);
        prop_oneof![
            Just(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n".to_vec()),
            data().prop_map(|body| {
                [format!("POST /x HTTP/1.1\r\ncontent-length: {}\r\n\r\n", body.len()).as_bytes(), &body].concat()
            }),
            (chunks, any::<bool>()).prop_map(|(chunks, trailer)| {
                let mut r = b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                for (data, ext, zeros) in chunks.into_iter().filter(|c| !c.0.is_empty()) {
                    let ext = if ext { ";n=v" } else { "" };
                    r.extend(format!("{}{:X}{ext}\r\n", "0".repeat(zeros), data.len()).as_bytes());
                    r.extend(data);
                    r.extend(b"\r\n");
                }
                r.extend(b"0\r\n");
                if trailer {
                    r.extend(b"T: 1\r\n");
                }
                r.extend(b"\r\n");
                r
            }),
        ]
    }

    proptest::proptest! {
        /// Pipelined well-formed requests are never refused, and a bare-LF head behind them always
        /// is, however the bytes are cut into reads.
        #[test]
        fn the_head_scan_follows_pipelined_requests_across_any_reads(
            requests in proptest::collection::vec(request(), 1..5),
            cuts in proptest::collection::vec(proptest::prelude::any::<proptest::sample::Index>(), 0..4),
        ) {
            let clean = requests.concat();
            let dirty = [&clean[..], b"GET /healthz HTTP/1.1\nHost: gw\n\n"].concat();
            for (bytes, ok) in [(clean, true), (dirty, false)] {
                let mut at: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len())).collect();
                at.sort_unstable();
                let mut scan = HeadScan::default();
                let (mut from, mut result) = (0, Ok(()));
                for to in at.into_iter().chain([bytes.len()]) {
                    result = result.and_then(|()| scan.scan(&bytes[from..to], from == 0));
                    from = to;
                }
                proptest::prop_assert_eq!(result.is_ok(), ok, "{:?}", String::from_utf8_lossy(&bytes));
            }
        }
    }

    #[test]
    fn phases_follow_the_connection() {
        let w = Arc::new(Watch::new(opts()));
        let phase = |w: &Watch| w.lock().phase;
        assert_eq!(phase(&w), Phase::FirstByte);
        w.wrote();
        assert_eq!(phase(&w), Phase::FirstByte, "writes are no request");
        w.read();
        assert_eq!(phase(&w), Phase::Head);
        let a = w.request_started(hyper::Version::HTTP_11);
        let b = w.request_started(hyper::Version::HTTP_11);
        assert_eq!(phase(&w), Phase::Busy);
        drop(a);
        assert_eq!(phase(&w), Phase::Busy, "one request is still in flight");
        drop(b);
        assert_eq!(phase(&w), Phase::Idle);
        w.read();
        assert_eq!(phase(&w), Phase::Head, "an HTTP/1 byte after idle starts the next head");
    }

    #[test]
    fn http2_frames_while_idle_do_not_start_a_head() {
        let w = Arc::new(Watch::new(opts()));
        w.read();
        drop(w.request_started(hyper::Version::HTTP_2));
        assert_eq!(w.lock().phase, Phase::Idle);
        w.read();
        assert_eq!(w.lock().phase, Phase::Idle, "a ping is no request");
    }

    #[test]
    fn each_phase_has_its_own_deadline() {
        let w = Arc::new(Watch::new(opts()));
        let left = |w: &Watch| w.deadline() - w.lock().since;
        assert_eq!(left(&w), Duration::from_secs(1));
        w.read();
        assert_eq!(left(&w), Duration::from_secs(2));
        let busy = w.request_started(hyper::Version::HTTP_11);
        assert_eq!(left(&w), Duration::from_secs(4));
        drop(busy);
        assert_eq!(left(&w), Duration::from_secs(3));
        assert_eq!(w.expired(), None);
    }

    #[test]
    fn a_limit_that_fits_is_kept() {
        assert_eq!(fit_to_fd_limit(16, 0, 8), FdBudget { connections: 16, relayed: 8 });
    }

    #[test]
    fn a_short_limit_keeps_the_listener_and_gives_the_relay_what_is_left() {
        // The defaults (2 048 connections, 20 000 relayed) under a 20 000 hard limit.
        assert_eq!(fit_into(20_000, 2048, 16, 20_000), FdBudget { connections: 2048, relayed: 8595 });
        // A listener that does not fit alone: three quarters of the room, the relay at least one.
        assert_eq!(fit_into(1_080, 4096, 16, 100), FdBudget { connections: 750, relayed: 1 });
    }
}
