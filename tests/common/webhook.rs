//! The webhook receiver: a real HTTP server that records every delivery and
//! answers as its script says.

use std::time::{Duration, Instant};

/// One request the webhook receiver got.
#[derive(Debug, Clone)]
pub struct Hook {
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: serde_json::Value,
    pub at: Instant,
    /// The status the receiver answered.
    pub status: u16,
}

/// How the receiver answers: a script of statuses per path prefix, then 200
/// (202 for paths starting with /pd); `hang` never answers.
#[derive(Default)]
pub struct HookScript {
    pub script: std::collections::VecDeque<(u16, Option<String>)>,
    pub hang: bool,
}

/// A real HTTP server that records webhook deliveries.
pub struct Receiver {
    pub url: String,
    pub got: std::sync::Arc<std::sync::Mutex<Vec<Hook>>>,
    pub script: std::sync::Arc<std::sync::Mutex<HookScript>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        use axum::body::Bytes;
        use axum::http::{HeaderMap, StatusCode, Uri};
        use axum::response::IntoResponse;
        use std::sync::{Arc, Mutex};
        let got: Arc<Mutex<Vec<Hook>>> = Arc::default();
        let script: Arc<Mutex<HookScript>> = Arc::default();
        let (g, s) = (got.clone(), script.clone());
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let (g, s) = (g.clone(), s.clone());
            async move {
                let (hang, next) = {
                    let mut s = s.lock().unwrap();
                    (s.hang, s.script.pop_front())
                };
                if hang {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                let default = if uri.path().starts_with("/pd") {
                    202
                } else {
                    200
                };
                let (status, retry_after) = next.unwrap_or((default, None));
                g.lock().unwrap().push(Hook {
                    path: uri.path().to_owned(),
                    query: uri.query().unwrap_or("").to_owned(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                        .collect(),
                    body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
                    at: Instant::now(),
                    status,
                });
                let mut resp = (StatusCode::from_u16(status).unwrap(), "ok").into_response();
                if let Some(ra) = retry_after {
                    resp.headers_mut()
                        .insert("retry-after", ra.parse().unwrap());
                }
                resp
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url, got, script }
    }

    /// Requests answered 2xx on `path`.
    pub fn delivered(&self, path: &str) -> Vec<Hook> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.path == path && h.status < 300)
            .cloned()
            .collect()
    }

    /// The `webhook-id` header of every delivered request on `path`.
    pub fn webhook_ids(&self, path: &str) -> Vec<String> {
        self.delivered(path)
            .iter()
            .filter_map(|h| {
                h.headers
                    .iter()
                    .find(|(k, _)| k == "webhook-id")
                    .map(|(_, v)| v.clone())
            })
            .collect()
    }

    pub fn all(&self, path: &str) -> Vec<Hook> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.path == path)
            .cloned()
            .collect()
    }
}
