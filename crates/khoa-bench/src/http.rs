//! One keep-alive HTTP/1.1 connection per virtual client, driven by hand with
//! `hyper::client::conn::http1` inside the client's own task: no pool, no retries, no redirects — nothing between the
//! request and the wire that the server's figure would silently include. Plus the small
//! request-building helpers the scenarios share.

use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

pub type Body = Full<Bytes>;

/// A complete answer: status and the whole body (always read, so the connection stays usable).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
    /// `Retry-After` in seconds, when the server sent one.
    pub retry_after: Option<Duration>,
}

impl Answer {
    /// The server shed the request (429 or 503): try again later.
    pub fn is_shed(&self) -> bool {
        matches!(
            self.status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        )
    }
}

/// A request that got no HTTP answer.
#[derive(Debug)]
pub enum TransportError {
    Connect(std::io::Error),
    Http(hyper::Error),
    /// The server closed the connection before answering.
    Closed,
    Timeout,
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Connect(e) => write!(f, "connect: {e}"),
            TransportError::Http(e) => write!(f, "http: {e}"),
            TransportError::Closed => f.write_str("the server closed the connection"),
            TransportError::Timeout => f.write_str("no answer before the deadline"),
        }
    }
}

impl std::error::Error for TransportError {}

impl From<hyper::Error> for TransportError {
    fn from(e: hyper::Error) -> Self {
        TransportError::Http(e)
    }
}

type Connection = http1::Connection<TokioIo<TcpStream>, Body>;

/// An open connection: the request half and the connection's I/O, polled by the client's own
/// task rather than a spawned one, so an exchange costs one task's wake-ups, not two — on a
/// single core the generator's overhead is part of every figure.
struct Link {
    sender: SendRequest<Body>,
    connection: Pin<Box<Connection>>,
}

impl Link {
    async fn open(addr: SocketAddr) -> Result<Self, TransportError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(TransportError::Connect)?;
        stream.set_nodelay(true).map_err(TransportError::Connect)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        Ok(Link {
            sender,
            connection: Box::pin(connection),
        })
    }

    /// Drives `f` (which uses the sender) while polling the connection's I/O; the connection
    /// ending first means no answer.
    async fn drive<T>(
        connection: &mut Pin<Box<Connection>>,
        f: impl Future<Output = Result<T, TransportError>>,
    ) -> Result<T, TransportError> {
        tokio::select! {
            biased;
            r = f => r,
            c = connection.as_mut() => Err(c.err().map_or(TransportError::Closed, TransportError::Http)),
        }
    }

    async fn ready(&mut self) -> Result<(), TransportError> {
        let sender = &mut self.sender;
        Self::drive(&mut self.connection, async { Ok(sender.ready().await?) }).await
    }

    async fn exchange(&mut self, req: Request<Body>) -> Result<Answer, TransportError> {
        let sender = &mut self.sender;
        Self::drive(&mut self.connection, async {
            let res = sender.send_request(req).await?;
            let status = res.status();
            let retry_after = res
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let body = res.into_body().collect().await?.to_bytes();
            Ok(Answer {
                status,
                body,
                retry_after,
            })
        })
        .await
    }
}

/// A virtual client's connection: opened on first use, reopened after any failure.
pub struct Conn {
    addr: SocketAddr,
    host: HeaderValue,
    link: Option<Link>,
}

impl Conn {
    pub fn new(addr: SocketAddr, host: HeaderValue) -> Self {
        Conn {
            addr,
            host,
            link: None,
        }
    }

    /// Opens the connection now, so that an unreachable server fails the run before it starts.
    pub async fn connect(&mut self) -> Result<(), TransportError> {
        self.ready().await.map(|_| ())
    }

    /// Sends `req` and reads the whole answer, giving up at `deadline`. A failed or abandoned
    /// exchange drops the connection: a late answer must not be read as the next one's.
    pub async fn send(
        &mut self,
        mut req: Request<Body>,
        deadline: Instant,
    ) -> Result<Answer, TransportError> {
        req.headers_mut()
            .entry(header::HOST)
            .or_insert_with(|| self.host.clone());
        let exchange = async {
            let link = self.ready().await?;
            link.exchange(req).await
        };
        let result = match tokio::time::timeout_at(deadline, exchange).await {
            Ok(r) => r,
            Err(_) => Err(TransportError::Timeout),
        };
        if result.is_err() {
            self.link = None;
        }
        result
    }

    /// A connection ready for a request. A kept-alive connection the server has closed in
    /// the meantime is replaced once: nothing was sent on it yet, so that is no retry.
    async fn ready(&mut self) -> Result<&mut Link, TransportError> {
        if let Some(mut link) = self.link.take()
            && link.ready().await.is_ok()
        {
            return Ok(self.link.insert(link));
        }
        let mut link = Link::open(self.addr).await?;
        link.ready().await?;
        Ok(self.link.insert(link))
    }
}

/// A request prepared once and sent many times (cloning only reference-counted parts).
#[derive(Debug, Clone)]
pub struct Template {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

pub const FORM: &str = "application/x-www-form-urlencoded";
pub const JSON: &str = "application/json";

impl Template {
    pub fn get(path: &str) -> anyhow::Result<Self> {
        Self::new(Method::GET, path, None, Bytes::new())
    }

    pub fn post(
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> anyhow::Result<Self> {
        Self::new(Method::POST, path, content_type, body.into())
    }

    fn new(
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> anyhow::Result<Self> {
        let uri: Uri = path
            .parse()
            .map_err(|e| anyhow::anyhow!("{path:?} is not a request path: {e}"))?;
        let mut headers = HeaderMap::new();
        if let Some(ct) = content_type {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct)?);
        }
        Ok(Template {
            method,
            uri,
            headers,
            body,
        })
    }

    pub fn header(mut self, name: HeaderName, value: &str) -> anyhow::Result<Self> {
        self.headers.insert(name, HeaderValue::from_str(value)?);
        Ok(self)
    }

    /// The same request with another body.
    pub fn with_body(&self, body: impl Into<Bytes>) -> Request<Body> {
        self.build(body.into())
    }

    pub fn request(&self) -> Request<Body> {
        self.build(self.body.clone())
    }

    fn build(&self, body: Bytes) -> Request<Body> {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// RFC 7617 Basic credentials, `id:secret` encoded as given.
pub fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// RFC 6749 §2.3.1: the OAuth 2.0 token endpoint form-encodes id and secret before Basic.
pub fn oauth2_basic(client_id: &str, secret: &str) -> String {
    basic(&form_component(client_id), &form_component(secret))
}

/// `application/x-www-form-urlencoded` body of `pairs`.
pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", form_component(k), form_component(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes everything but the unreserved characters; a space becomes `+`.
fn form_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies_escape_reserved_characters() {
        assert_eq!(
            form(&[("password", "@Password123"), ("scope", "a b"), ("x", "=&+")]),
            "password=%40Password123&scope=a+b&x=%3D%26%2B"
        );
    }

    #[test]
    fn basic_credentials_match_the_documents_sample() {
        // Seed 003's Java sample header.
        assert_eq!(
            basic(
                "customer-vietqrtest-user2468",
                "Y3VzdG9tZXItdmlldHFydGVzdC11c2VyMjQ2OA=="
            ),
            "Basic Y3VzdG9tZXItdmlldHFydGVzdC11c2VyMjQ2ODpZM1Z6ZEc5dFpYSXRkbWxsZEhGeWRHVnpkQzExYzJWeU1qUTJPQT09"
        );
    }

    #[test]
    fn templates_repeat_their_request() {
        let t = Template::post(
            "/connect/token",
            Some(FORM),
            "grant_type=client_credentials",
        )
        .unwrap()
        .header(header::AUTHORIZATION, "Basic eDp5")
        .unwrap();
        let r = t.request();
        assert_eq!(r.method(), Method::POST);
        assert_eq!(r.uri(), "/connect/token");
        assert_eq!(r.headers()[header::CONTENT_TYPE], FORM);
        assert_eq!(r.headers()[header::AUTHORIZATION], "Basic eDp5");
    }
}
