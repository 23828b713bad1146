//! HTTP on loopback: `/metrics`, `/healthz`, `/readyz`, `/status` (axum).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use crate::ops::metrics::{Format, METRICS};
use crate::ops::status::SharedStatus;
use crate::shutdown::Shutdown;

/// Binds `addr` and serves until shutdown.
pub(crate) async fn serve(
    addr: SocketAddr,
    status: SharedStatus,
    mut shutdown: Shutdown,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status_json))
        .with_state(status);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("http.listen {addr}: cannot bind"))?;
    tracing::info!(%addr, "serving /metrics /healthz /readyz /status");
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.recv().await })
            .await;
    }))
}

/// `/metrics` in the format the scraper asks for (`Accept`): OpenMetrics
/// when asked for, else the classic text format 0.0.4.
async fn metrics(headers: HeaderMap) -> impl IntoResponse {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    (
        [(header::CONTENT_TYPE, format.content_type())],
        METRICS.render_as(format),
    )
}

async fn healthz(State(s): State<SharedStatus>) -> impl IntoResponse {
    let alive = s
        .with(|st| {
            st.heartbeat
                .is_some_and(|h| h.elapsed() < Duration::from_secs(5))
        })
        .unwrap_or(false);
    if alive {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "controller loop stalled\n")
    }
}

async fn readyz(State(s): State<SharedStatus>) -> impl IntoResponse {
    let (ready, summary) = s
        .with(|st| (st.ready(), st.summary()))
        .unwrap_or((false, "status unavailable".into()));
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, format!("{summary}\n"))
}

async fn status_json(State(s): State<SharedStatus>) -> impl IntoResponse {
    let mut st = s.get();
    st.tasks_alive = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    Json(st)
}
