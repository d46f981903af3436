//! Requests that carry a blob up, sent under an idle watchdog: a registry that takes no bytes
//! of the body, or sends no answer after the whole body, for the read timeout ends the request.
//!
//! reqwest's blocking client cannot do this: it has one deadline for a whole request (far too
//! short for a blob that takes hours, or none at all), and a request it has started cannot be
//! stopped from outside; its kernel-side guard (`TCP_USER_TIMEOUT`) only catches a peer that
//! stops acknowledging, not one that acknowledges and never answers. So each such request runs
//! on reqwest's async client, on a runtime of its own that lives only as long as the request:
//! the body is handed over in pieces, each piece the connection takes counts as progress, and
//! when the watchdog finds none for the read timeout the runtime is dropped, which closes the
//! connection. The answer (status, headers, at most [`limits::MAX_ERROR_BODY`] bytes of body)
//! is read under the same watchdog and returned as a blocking [`Response`], so that callers
//! treat it like any other.

use std::future::Future;
use std::io::Read;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use reqwest::blocking::Response;

use crate::error::{Error, RegistryError, RegistryErrorKind as Kind, Result};
use crate::limits;

/// The body of an upload: bytes read from `reader`, handed to the connection in pieces of
/// [`limits::UPLOAD_PIECE`] bytes as it takes them; `len` of them (with `Content-Length`), or
/// all it gives (chunked) when `len` is `None`.
pub struct UploadBody {
    reader: Box<dyn Read + Send>,
    len: Option<u64>,
}

impl UploadBody {
    /// `len` bytes of `reader` (which must hold at least that many).
    pub fn new(reader: impl Read + Send + 'static, len: u64) -> UploadBody {
        UploadBody {
            reader: Box::new(reader),
            len: Some(len),
        }
    }

    /// Everything `reader` gives until its end, of a length not known in advance.
    pub fn stream(reader: impl Read + Send + 'static) -> UploadBody {
        UploadBody {
            reader: Box::new(reader),
            len: None,
        }
    }
}

/// What the watchdog knows about a request: when it last made progress (none before the
/// connection asks for the body: until then the connect timeout is the bound), and whether the
/// whole body was handed over.
struct Watch {
    state: Mutex<(Option<Instant>, bool)>,
}

impl Watch {
    fn progressed(&self) {
        self.state.lock().expect("lock").0 = Some(Instant::now());
    }
    fn body_sent(&self) {
        *self.state.lock().expect("lock") = (Some(Instant::now()), true);
    }
    fn last(&self) -> (Option<Instant>, bool) {
        *self.state.lock().expect("lock")
    }
}

/// The body as the connection pulls it: every pull is progress (the connection took the
/// previous piece), and so is every piece read (time spent reading the file is not the
/// registry's).
struct WatchedBody {
    body: Mutex<UploadBody>,
    /// Bytes still to send, `None` for a body that ends where its reader does.
    left: Option<u64>,
    done: bool,
    watch: Arc<Watch>,
}

impl http_body::Body for WatchedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        this.watch.progressed();
        if this.done {
            this.watch.body_sent();
            return Poll::Ready(None);
        }
        let want = this
            .left
            .unwrap_or(u64::MAX)
            .min(limits::UPLOAD_PIECE as u64) as usize;
        let mut piece = vec![0u8; want];
        let reader = &mut this.body.get_mut().expect("lock").reader;
        let mut got = 0;
        while got < want {
            match reader.read(&mut piece[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
        }
        piece.truncate(got);
        match &mut this.left {
            Some(left) if got < want => {
                return Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the body ended {} bytes short", *left - got as u64),
                ))))
            }
            Some(left) => {
                *left -= got as u64;
                this.done = *left == 0;
            }
            None => this.done = got < want,
        }
        if this.done {
            this.watch.body_sent();
        } else {
            this.watch.progressed();
        }
        if got == 0 {
            return Poll::Ready(None);
        }
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(piece)))))
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        match self.left {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// How to reach the registry: the settings of the blocking clients, for an async one.
#[derive(Clone)]
pub struct Settings {
    pub verify: bool,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub certificates: Vec<reqwest::Certificate>,
}

/// Send `request` (method, URL and headers of a blocking request, already authorized) with
/// `body`, cutting it off when it makes no progress for the read timeout. `registry` and `what`
/// name the request in errors; `network_error` turns a failed exchange into one.
pub fn send(
    settings: &Settings,
    request: reqwest::blocking::Request,
    body: UploadBody,
    registry: &str,
    what: &str,
    network_error: &dyn Fn(reqwest::Error) -> Error,
) -> Result<Response> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::invalid(format!("cannot start an upload: {e}")))?;
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("modelcar/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(settings.connect_timeout)
        .tcp_keepalive(Duration::from_secs(30))
        // The connection dies with this request's runtime: none is kept for another.
        .pool_max_idle_per_host(0);
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "fuchsia"))]
    {
        b = b.tcp_user_timeout(settings.read_timeout);
    }
    if !settings.verify {
        b = b.danger_accept_invalid_certs(true);
    }
    for c in &settings.certificates {
        b = b.add_root_certificate(c.clone());
    }
    let client = b
        .build()
        .map_err(|e| Error::invalid(format!("cannot set up HTTPS: {e}")))?;

    let watch = Arc::new(Watch {
        state: Mutex::new((None, false)),
    });
    let url = request.url().clone();
    let mut async_request = reqwest::Request::new(request.method().clone(), url.clone());
    *async_request.headers_mut() = request.headers().clone();
    *async_request.body_mut() = Some(reqwest::Body::wrap(WatchedBody {
        left: body.len,
        done: body.len == Some(0),
        body: Mutex::new(body),
        watch: watch.clone(),
    }));

    let watched = watch.clone();
    let exchange = async move {
        let mut resp = client.execute(async_request).await?;
        // The answer's head came: the rest is the answer's body, of which only the head is kept.
        watched.body_sent();
        let mut kept = Vec::new();
        while (kept.len() as u64) < limits::MAX_ERROR_BODY {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    watched.progressed();
                    kept.extend_from_slice(&c);
                }
                // A broken answer body leaves what came; the status decides.
                _ => break,
            }
        }
        kept.truncate(limits::MAX_ERROR_BODY as usize);
        Ok::<_, reqwest::Error>((resp.status(), resp.version(), resp.headers().clone(), kept))
    };
    let idle = settings.read_timeout;
    let stalled = async move {
        loop {
            let deadline = match watch.last() {
                (Some(last), sent) if Instant::now() >= last + idle => return sent,
                (Some(last), _) => last + idle,
                // Still connecting: look again later.
                (None, _) => Instant::now() + idle,
            };
            tokio::time::sleep_until(deadline.into()).await;
        }
    };
    let outcome = runtime.block_on(first(exchange, stalled));
    // Dropping the runtime ends the connection's task, and with it the connection.
    drop(runtime);
    match outcome {
        Either::Left(Ok((status, version, headers, kept))) => {
            use reqwest::ResponseBuilderExt;
            let mut builder = http::Response::builder()
                .status(status)
                .version(version)
                .url(url);
            if let Some(h) = builder.headers_mut() {
                *h = headers;
            }
            let answer = builder
                .body(kept)
                .map_err(|e| Error::invalid(format!("cannot read an answer: {e}")))?;
            Ok(Response::from(answer))
        }
        Either::Left(Err(e)) => Err(network_error(e)),
        Either::Right(body_sent) => {
            let secs = idle.as_secs_f64();
            let message = if body_sent {
                // The whole body is with the connection, perhaps still in its buffers.
                format!("registry {registry} took no bytes and sent no answer for {secs} s while {what}")
            } else {
                format!("registry {registry} took no bytes for {secs} s while {what}")
            };
            Err(RegistryError::new(registry, Kind::TimedOut, message)
                .with_hint(
                    "the registry or the network stalled; try again later, or raise --read-timeout",
                )
                .into())
        }
    }
}

enum Either<L, R> {
    Left(L),
    Right(R),
}

/// Whichever of two futures finishes first.
async fn first<L: Future, R: Future>(left: L, right: R) -> Either<L::Output, R::Output> {
    let (mut left, mut right) = (std::pin::pin!(left), std::pin::pin!(right));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(l) = left.as_mut().poll(cx) {
            return Poll::Ready(Either::Left(l));
        }
        if let Poll::Ready(r) = right.as_mut().poll(cx) {
            return Poll::Ready(Either::Right(r));
        }
        Poll::Pending
    })
    .await
}
