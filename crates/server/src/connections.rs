//! How connections are served: hyper itself, not `axum::serve`, because a public server needs
//! what `axum::serve` leaves out.
//!
//! - A **header read timeout** (`limits.header_read_timeout`): a client that opens a connection
//!   and sends its request head slowly, or nothing at all, is disconnected (hyper's own timer,
//!   which runs from the connection's start). An idle keep-alive connection is closed after the
//!   same time. HTTP/1.1 only: cleartext HTTP/2 (prior knowledge) would bypass that timer, and
//!   clients and load balancers speak HTTP/1.1 to a backend like this one.
//! - The **peer address** in every request (`ConnectInfo<SocketAddr>`), for limits per client
//!   address (see `auth`).
//! - **Request bodies that stall or crawl end**: every body is wrapped in [`TimedBody`], which
//!   fails a read when no byte came for `limits.body_idle_timeout` or the whole body took longer
//!   than `limits.body_timeout`; the handler answers `408 request_timeout` and closes the
//!   connection (see `error`).
//! - **Clients that stop reading**: a write that makes no progress for `body_idle_timeout` (the
//!   client does not read its answer) ends the connection, so a slow reader holds neither a
//!   socket nor its send buffer for ever.
//! - **Graceful shutdown**: stop accepting, let requests in flight finish, close idle
//!   connections; wait for them at most `body_idle_timeout`.

use std::{
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use axum::{Router, body::Body, extract::ConnectInfo, http::Request};
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use tokio::{
    net::TcpListener,
    time::{Instant, Sleep},
};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How long a client may take over the parts of a request.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From the connection's first byte (or the end of the previous request) to the end of the
    /// request head.
    pub header_read: Duration,
    /// Longest wait for the next byte of a request body.
    pub body_idle: Duration,
    /// Longest time for a whole request body, from the handler's first read.
    pub body_total: Duration,
}

/// Serves `router` on `listener` until `stop` is cancelled, then finishes the requests in
/// flight.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    timeouts: Timeouts,
    stop: CancellationToken,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read);
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(connection) => connection,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let mut stream = tokio_io_timeout::TimeoutStream::new(stream);
        stream.set_write_timeout(Some(timeouts.body_idle));
        let stream = Box::pin(stream);
        let service = router.clone().map_request(move |mut request: Request<_>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request.map(|body| Body::new(TimedBody::new(Body::new(body), timeouts)))
        });
        let connection =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(timeouts.body_idle, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight at shutdown were cut off");
    }
}

/// Why a request body was cut off.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BodyTimeout(String);

/// A request body that fails when the client stalls (no byte for `body_idle`) or crawls (the
/// whole body takes longer than `body_total`). The clock starts at the first read, so time a
/// handler spends waiting for upload budget is not counted against the client.
pub struct TimedBody {
    inner: Body,
    timeouts: Timeouts,
    deadline: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
}

impl TimedBody {
    pub fn new(inner: Body, timeouts: Timeouts) -> Self {
        Self {
            inner,
            timeouts,
            deadline: None,
            timer: None,
        }
    }

    fn timeout(&self, now: Instant, deadline: Instant) -> axum::Error {
        let message = if now >= deadline {
            format!(
                "the request body took longer than {} s",
                self.timeouts.body_total.as_secs()
            )
        } else {
            format!(
                "no byte of the request body arrived for {} s",
                self.timeouts.body_idle.as_secs()
            )
        };
        axum::Error::new(BodyTimeout(message))
    }
}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let now = Instant::now();
        let deadline = *this.deadline.get_or_insert(now + this.timeouts.body_total);
        let idle = this.timeouts.body_idle;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.min(now + idle))));
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(_))) if Instant::now() >= deadline => {
                Poll::Ready(Some(Err(this.timeout(Instant::now(), deadline))))
            }
            Poll::Ready(frame) => {
                let next = deadline.min(Instant::now() + idle);
                timer.as_mut().reset(next);
                Poll::Ready(frame)
            }
            Poll::Pending => match timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(this.timeout(Instant::now(), deadline)))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The address a request came from, as the connection saw it.
pub fn peer(request: &axum::http::request::Parts) -> Option<SocketAddr> {
    request
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn timeouts(idle_ms: u64, total_ms: u64) -> Timeouts {
        Timeouts {
            header_read: Duration::from_secs(30),
            body_idle: Duration::from_millis(idle_ms),
            body_total: Duration::from_millis(total_ms),
        }
    }

    #[tokio::test]
    async fn a_stalled_body_times_out() {
        let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        tx.try_send(Ok(Bytes::from_static(b"0123456789"))).unwrap();
        let mut timed = TimedBody::new(Body::from_stream(rx), timeouts(200, 60_000));
        let first = timed.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap().len(), 10);
        let err = timed.frame().await.unwrap().unwrap_err();
        assert!(err.to_string().contains("no byte"), "{err}");
        drop(tx);
    }

    #[tokio::test]
    async fn a_crawling_body_hits_the_total_limit() {
        let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        let mut timed = TimedBody::new(Body::from_stream(rx), timeouts(10_000, 300));
        let sender = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                if tx.try_send(Ok(Bytes::from_static(b"x"))).is_err() && tx.is_closed() {
                    break;
                }
            }
        });
        let mut frames = 0;
        let err = loop {
            match timed.frame().await {
                Some(Ok(_)) => frames += 1,
                Some(Err(e)) => break e,
                None => panic!("the body ended"),
            }
        };
        assert!(err.to_string().contains("longer than"), "{err}");
        assert!(frames >= 1, "the body flowed before it was cut off");
        drop(timed);
        sender.await.unwrap();
    }
}
