//! Lingering close for uploads.
//!
//! CARTO often answers `/copyfrom` before the client has sent all of its body: a 400 when the byte limit is passed
//! or a row is rejected, a 401 or 429 before the COPY starts. If the server then closed the socket with the rest of
//! the body unread, the kernel would answer the client's next bytes with a TCP reset, and a reset can destroy the
//! answer in the client's receive buffer before it reads it: the client would see "broken pipe" instead of CARTO's
//! message. Real CARTO sits behind nginx, whose lingering close reads and discards what the client still sends
//! after an answer, so the client gets the answer. [`LingeringBody`] does the same: when the handler drops an
//! upload's body before its end, the rest is read and discarded on a task of its own (while hyper writes the
//! answer), until the client ends or stops sending for `IDLE`, or for at most `TOTAL`, as nginx's
//! `lingering_timeout` and `lingering_time` do.
use axum::body::Body;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// nginx's `lingering_timeout`: the longest wait for more bytes of an abandoned body.
const IDLE: Duration = Duration::from_secs(5);
/// nginx's `lingering_time`: the longest time an abandoned body is read.
const TOTAL: Duration = Duration::from_secs(30);

/// A request body that is drained, not reset, when dropped before its end.
pub struct LingeringBody {
    inner: Option<Body>,
    ended: bool,
}

impl LingeringBody {
    pub fn new(inner: Body) -> Self {
        LingeringBody { inner: Some(inner), ended: false }
    }
}

impl HttpBody for LingeringBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(None) };
        let r = Pin::new(inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            this.ended = true;
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map(|b| b.size_hint()).unwrap_or_default()
    }
}

impl Drop for LingeringBody {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else { return };
        if self.ended || inner.is_end_stream() {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(drain(inner));
        }
    }
}

/// Read and discard the rest of a body, within nginx's lingering limits.
async fn drain(body: Body) {
    let mut body = std::pin::pin!(body);
    let _ = tokio::time::timeout(TOTAL, async move {
        // Until the end, a broken connection, or a client gone quiet.
        while let Ok(Some(Ok(_))) = tokio::time::timeout(IDLE, std::future::poll_fn(|cx| body.as_mut().poll_frame(cx))).await {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A body of `n` chunks that counts the chunks read from it.
    fn counted(n: usize, read: Arc<AtomicUsize>) -> Body {
        let s = futures_util::stream::iter(0..n).map(move |_| {
            read.fetch_add(1, Ordering::SeqCst);
            Ok::<Bytes, std::io::Error>(Bytes::from_static(b"0123456789\n"))
        });
        Body::from_stream(s)
    }

    #[tokio::test]
    async fn a_body_dropped_early_is_read_to_its_end() {
        let read = Arc::new(AtomicUsize::new(0));
        let mut b = LingeringBody::new(counted(100, read.clone()));
        let first = std::future::poll_fn(|cx| Pin::new(&mut b).poll_frame(cx)).await;
        assert!(matches!(first, Some(Ok(_))));
        drop(b);
        for _ in 0..100 {
            if read.load(Ordering::SeqCst) == 100 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(read.load(Ordering::SeqCst), 100, "the rest of the body was drained");
    }

    #[tokio::test]
    async fn a_body_read_to_its_end_needs_no_drain() {
        let read = Arc::new(AtomicUsize::new(0));
        let mut b = LingeringBody::new(counted(3, read.clone()));
        while let Some(f) = std::future::poll_fn(|cx| Pin::new(&mut b).poll_frame(cx)).await {
            assert!(f.is_ok());
        }
        assert!(b.is_end_stream());
        drop(b);
        assert_eq!(read.load(Ordering::SeqCst), 3);
    }
}
