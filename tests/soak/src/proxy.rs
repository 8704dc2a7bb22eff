//! The error-injecting proxy: an HTTP/1.1 server on the loopback that forwards every request to
//! LocalStack, except that while a rule of a service is active it answers a share of that
//! service's requests with an error of the service's own protocol (throttling, 500) or holds
//! them (past a function's timeout) before forwarding. The functions reach DynamoDB, Kinesis,
//! SNS and SQS through it (their `AWS_ENDPOINT_URL_<SERVICE>`), and so does the soak's producer
//! for Kinesis; everything else (the event source mappings, the checks) goes to LocalStack
//! directly.
//!
//! The service of a request is the one its SigV4 credential scope names
//! (`Credential=KEY/DATE/REGION/SERVICE/aws4_request`), so no body is parsed to tell.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rand::{Rng, SeedableRng};
use tokio::net::{TcpListener, TcpStream};

/// What a rule does to the requests it hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The service's throttling error (`ProvisionedThroughputExceededException`, HTTP 400).
    Throttle,
    /// An internal error (HTTP 500).
    ServerError,
    /// The request is held this long, then forwarded.
    Stall(Duration),
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Throttle => "throttled",
            Action::ServerError => "5xx",
            Action::Stall(_) => "stalled",
        }
    }
}

/// A fault of the proxy: `action` on `probability` of the requests of `service` (the SigV4
/// service name: `dynamodb`, `kinesis`, `sns`, `sqs`) until `until`.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The service.
    pub service: String,
    /// What happens to a hit request.
    pub action: Action,
    /// The share of the service's requests hit.
    pub probability: f64,
    /// When the rule stops.
    pub until: Instant,
}

#[derive(Debug)]
struct State {
    upstream: SocketAddr,
    rules: Mutex<Vec<Rule>>,
    rng: Mutex<rand::rngs::SmallRng>,
    /// (service, what happened) -> requests.
    counts: Mutex<BTreeMap<(String, String), u64>>,
}

impl State {
    fn count(&self, service: &str, what: &str) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        *counts.entry((service.to_owned(), what.to_owned())).or_default() += 1;
    }

    /// The action for a request of `service` now, if a rule hits it.
    fn decide(&self, service: &str) -> Option<Action> {
        let now = Instant::now();
        let mut rules = self.rules.lock().unwrap_or_else(PoisonError::into_inner);
        rules.retain(|r| r.until > now);
        let rule = rules.iter().find(|r| r.service == service)?;
        let draw: f64 = self.rng.lock().unwrap_or_else(PoisonError::into_inner).random();
        (draw < rule.probability).then_some(rule.action)
    }
}

/// A running proxy; its task ends with the process.
#[derive(Debug, Clone)]
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<State>,
}

impl FaultProxy {
    /// Starts a proxy on an ephemeral loopback port in front of `upstream`; `seed` draws which
    /// requests a rule hits.
    pub async fn start(upstream: SocketAddr, seed: u64) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            upstream,
            rules: Mutex::new(Vec::new()),
            rng: Mutex::new(rand::rngs::SmallRng::seed_from_u64(seed)),
            counts: Mutex::new(BTreeMap::new()),
        });
        let accept_state = Arc::clone(&state);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = Arc::clone(&accept_state);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(Arc::clone(&state), req));
                    if let Err(e) = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                    {
                        tracing::debug!("proxy connection: {e}");
                    }
                });
            }
        });
        Ok(FaultProxy { addr, state })
    }

    /// The proxy's URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Activates `rule` (alongside the others; the first active rule of a service applies).
    pub fn add(&self, rule: Rule) {
        self.state
            .rules
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(rule);
    }

    /// Requests so far by (service, what happened: `forwarded`, `throttled`, `5xx`, `stalled`,
    /// `upstream-error`).
    pub fn counts(&self) -> BTreeMap<(String, String), u64> {
        self.state.counts.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// The SigV4 service of a request (from its `Authorization` header), or `unsigned`.
pub fn service_of(authorization: Option<&str>) -> String {
    authorization
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split([',', ' ']).next())
        .and_then(|scope| scope.split('/').nth(3))
        .unwrap_or("unsigned")
        .to_owned()
}

/// The error response a service's SDK reads as `action` (`Throttle` or `ServerError`).
pub fn error_response(service: &str, action: Action) -> Response<Full<Bytes>> {
    let (status, code) = match action {
        Action::Throttle => (StatusCode::BAD_REQUEST, "ProvisionedThroughputExceededException"),
        Action::ServerError | Action::Stall(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalFailure"),
    };
    let message = format!("shardflow soak: injected {}", action.name());
    let (content_type, body) = match service {
        // awsJson 1.0 with the namespaced error type, as DynamoDB sends it
        "dynamodb" => (
            "application/x-amz-json-1.0",
            serde_json::json!({
                "__type": format!("com.amazonaws.dynamodb.v20120810#{code}"),
                "message": message,
            })
            .to_string(),
        ),
        // awsQuery (SNS): an XML error document
        "sns" => (
            "text/xml",
            format!(
                "<ErrorResponse><Error><Type>{}</Type><Code>{code}</Code><Message>{message}</Message></Error>\
                 <RequestId>soak</RequestId></ErrorResponse>",
                if status.is_server_error() { "Receiver" } else { "Sender" }
            ),
        ),
        // awsJson 1.1 / 1.0 (Kinesis, SQS, ...)
        _ => (
            "application/x-amz-json-1.1",
            serde_json::json!({ "__type": code, "message": message }).to_string(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}

async fn handle(state: Arc<State>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let service = service_of(
        request
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    );
    match state.decide(&service) {
        Some(Action::Stall(hold)) => {
            state.count(&service, "stalled");
            tokio::time::sleep(hold).await;
        }
        Some(action) => {
            state.count(&service, action.name());
            return Ok(error_response(&service, action));
        }
        None => {}
    }
    let (parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes();
    match forward(state.upstream, Request::from_parts(parts, Full::new(body))).await {
        Ok(response) => {
            state.count(&service, "forwarded");
            Ok(response)
        }
        Err(e) => {
            // LocalStack unreachable: the client sees a 502 and retries like any 5xx
            state.count(&service, "upstream-error");
            tracing::warn!("proxy: forwarding a {service} request failed: {e}");
            let mut response = Response::new(Full::new(Bytes::from(e.to_string())));
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            Ok(response)
        }
    }
}

async fn forward(upstream: SocketAddr, request: Request<Full<Bytes>>) -> anyhow::Result<Response<Full<Bytes>>> {
    let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(upstream)).await??;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let response = sender.send_request(request).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Response::from_parts(parts, Full::new(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_is_read_from_the_sigv4_credential_scope() {
        let auth = "AWS4-HMAC-SHA256 Credential=test/20261207/us-east-1/dynamodb/aws4_request, \
                    SignedHeaders=host;x-amz-date, Signature=abc";
        assert_eq!(service_of(Some(auth)), "dynamodb");
        assert_eq!(
            service_of(Some("AWS4-HMAC-SHA256 Credential=k/d/us-east-1/sns/aws4_request,Sig=1")),
            "sns"
        );
        assert_eq!(service_of(None), "unsigned");
        assert_eq!(service_of(Some("Basic abc")), "unsigned");
    }

    #[tokio::test]
    async fn an_active_rule_fails_its_service_only_and_stops_at_its_end() {
        // an upstream that answers every request with 200 "ok"
        let upstream = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let upstream_addr = upstream.local_addr().expect("addr");
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = upstream.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|_req: Request<Incoming>| async {
                        Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        let proxy = FaultProxy::start(upstream_addr, 1).await.expect("proxy");
        proxy.add(Rule {
            service: "dynamodb".into(),
            action: Action::Throttle,
            probability: 1.0,
            until: Instant::now() + Duration::from_millis(800),
        });
        let call = |service: &'static str| {
            let addr = proxy.addr;
            async move {
                let stream = TcpStream::connect(addr).await.expect("connect");
                let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .expect("handshake");
                tokio::spawn(conn);
                let request = Request::post("/")
                    .header(
                        "authorization",
                        format!("AWS4-HMAC-SHA256 Credential=k/d/us-east-1/{service}/aws4_request, S=1"),
                    )
                    .body(Full::new(Bytes::new()))
                    .expect("request");
                let response = sender.send_request(request).await.expect("send");
                let status = response.status();
                let body = response.into_body().collect().await.expect("body").to_bytes();
                (status, String::from_utf8_lossy(&body).into_owned())
            }
        };
        let (status, body) = call("dynamodb").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("ProvisionedThroughputExceededException"), "{body}");
        assert_eq!(call("sqs").await, (StatusCode::OK, "ok".to_owned()));
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert_eq!(call("dynamodb").await, (StatusCode::OK, "ok".to_owned()));
        let counts = proxy.counts();
        assert_eq!(counts.get(&("dynamodb".into(), "throttled".into())), Some(&1));
        assert_eq!(counts.get(&("dynamodb".into(), "forwarded".into())), Some(&1));
        assert_eq!(counts.get(&("sqs".into(), "forwarded".into())), Some(&1));
    }
}
