//! HTTP on loopback: `/metrics`, `/healthz`, `/readyz`, `/status` (axum).

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use crate::metrics::METRICS;
use crate::shutdown::Shutdown;
use crate::status::SharedStatus;

/// Binds `addr` and serves until shutdown.
pub async fn serve(
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
        .map_err(|e| anyhow::anyhow!("http.listen {addr}: cannot bind: {e}"))?;
    tracing::info!(%addr, "serving /metrics /healthz /readyz /status");
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.recv().await })
            .await;
    }))
}

async fn metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        METRICS.render(),
    )
}

async fn healthz(State(s): State<SharedStatus>) -> impl IntoResponse {
    let alive = s
        .get()
        .heartbeat
        .is_some_and(|h| h.elapsed() < Duration::from_secs(5));
    if alive {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "controller loop stalled\n")
    }
}

async fn readyz(State(s): State<SharedStatus>) -> impl IntoResponse {
    let st = s.get();
    let code = if st.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, format!("{}\n", st.summary()))
}

async fn status_json(State(s): State<SharedStatus>) -> impl IntoResponse {
    Json(s.get())
}
