//! One HTTP/1.1 client over hyper for every request of a run: connections kept alive
//! and opened as needed (an open loop needs as many as there are requests waiting),
//! `TCP_NODELAY`, and a deadline per request.

use std::time::Duration;

use anyhow::{Context, anyhow};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// A header sent with every request of a target (`Authorization: Bearer …`).
pub type Header = (HeaderName, HeaderValue);

#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

/// What came back: the status and the whole body.
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Parses `Name: value`.
pub fn header(line: &str) -> anyhow::Result<Header> {
    let (name, value) = line
        .split_once(':')
        .ok_or_else(|| anyhow!("{line:?} is not a header (Name: value)"))?;
    Ok((
        HeaderName::from_bytes(name.trim().as_bytes()).context("a header's name")?,
        HeaderValue::from_str(value.trim()).context("a header's value")?,
    ))
}

impl Http {
    pub fn new(timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Self { client, timeout }
    }

    /// Sends one request; an `Err` is a transport failure or the deadline passed.
    pub async fn send(
        &self,
        method: Method,
        uri: Uri,
        headers: &[Header],
        json: Option<&serde_json::Value>,
    ) -> anyhow::Result<Answer> {
        let body = json.map(serde_json::to_vec).transpose()?.map(Bytes::from);
        self.send_json(method, uri, headers, body).await
    }

    /// [`Http::send`] with the JSON body already written.
    pub async fn send_json(
        &self,
        method: Method,
        uri: Uri,
        headers: &[Header],
        json: Option<Bytes>,
    ) -> anyhow::Result<Answer> {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let body = match json {
            Some(bytes) => {
                request = request.header("content-type", "application/json");
                Full::new(bytes)
            }
            None => Full::new(Bytes::new()),
        };
        let request = request.body(body)?;
        let exchange = async {
            let response = self.client.request(request).await?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, anyhow::Error>(Answer { status, body })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| anyhow!("no answer within {:?}", self.timeout))?
    }
}
