//! Accepting connections: HTTP/1.1 and HTTP/2 with a header-read timeout, and graceful drain.
//!
//! axum's own `serve` has neither a header timeout (slowloris) nor a drain deadline, so this is
//! the small accept loop it would be, with both. On shutdown the listener closes at once (new
//! connections are refused), in-flight requests finish, idle keep-alive connections close, and
//! after `drain` whatever is left is cut.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

/// Per-listener limits of the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    pub header_read_timeout: Duration,
    pub drain: Duration,
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains for at most `opts.drain`.
pub async fn serve(listener: TcpListener, app: Router, opts: ServeOptions, shutdown: impl Future<Output = ()>) {
    let (stop_tx, stop_rx) = watch::channel(false);
    // Each connection task holds a clone of `done_rx`; when all are gone, the drain is over.
    let (done_tx, done_rx) = watch::channel(());
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
        spawn_connection(stream, peer, app.clone(), opts, stop_rx.clone(), done_rx.clone());
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

fn spawn_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Router,
    opts: ServeOptions,
    mut stop: watch::Receiver<bool>,
    done: watch::Receiver<()>,
) {
    let _ = stream.set_nodelay(true);
    let svc = app.map_request(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        req.map(axum::body::Body::new)
    });
    let svc = TowerToHyperService::new(svc);
    tokio::spawn(async move {
        let mut builder = Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).header_read_timeout(opts.header_read_timeout);
        builder.http2().timer(TokioTimer::new()).max_concurrent_streams(100);
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
        let mut conn = std::pin::pin!(conn);
        tokio::select! {
            res = conn.as_mut() => log_end(res),
            () = stopping(&mut stop) => {
                // Finish the request in flight, then close.
                conn.as_mut().graceful_shutdown();
                log_end(conn.await);
            }
        }
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
