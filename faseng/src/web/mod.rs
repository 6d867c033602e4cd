//! faseng's HTTP surface: small handlers over one shared state.

mod api;
pub mod bounds;
pub mod error;
mod freezes;
mod health;
mod html;
mod live;
mod pages;
mod webhook;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use chima_config::{Apps, Secret};
use chima_store::Store;

use crate::links::LinkSigner;
use crate::metrics::Metrics;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The job store.
    pub store: Arc<dyn Store>,
    /// This process's app.json, if it has one.
    pub apps: Option<Arc<Apps>>,
    /// Signs and checks the log page links, so that only people given a link can read a log.
    pub links: LinkSigner,
    /// The URL people and GitHub reach faseng at, for links.
    pub public_url: String,
    /// `GITHUB_WEBHOOK_SECRET`: without it, webhooks are refused (503).
    pub webhook_secret: Option<Secret>,
    /// `FASENG_API_TOKEN`: the bearer token of `/api/`.
    pub api_token: Option<Secret>,
    /// `FASENG_METRICS_TOKEN`: when set, `/metrics` needs it as a bearer token.
    pub metrics_token: Option<Secret>,
    /// The key chima's requests are signed with, if any (ARCHITECTURE.md, "Trust").
    pub signing_key: Option<chima_payload::SigningKey>,
    /// The webhook counters of `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Auto-deploy on green CI, when GitHub is configured.
    pub autodeploy: Option<crate::autodeploy::AutoDeployer>,
    /// The histograms of this process's engine, when it runs workers.
    pub engine_metrics: Option<Arc<chima_engine::metrics::EngineMetrics>>,
    /// `SLACK_API_URL`: besides Slack's own, the only host a chat route's
    /// `response_url` may point at (a fake Slack in tests).
    pub slack_api_url: String,
    /// `FASENG_MAX_STREAMS`, `FASENG_MAX_PAGE_LOADS`: open live log streams and page
    /// loads at once; beyond them, 503 (see `bounds.rs`).
    pub bounds: bounds::Bounds,
}

/// faseng's HTTP routes (webhooks, API, pages, `/metrics`, health) over `state`.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/deployments", get(api::list).post(api::create))
        .route("/deployments/{id}", get(api::get))
        .route("/deployments/{id}/cancel", post(api::cancel_one))
        .route("/deployments/{id}/approve", post(api::approve))
        .route("/deployments/{id}/reject", post(api::reject))
        .route(
            "/deployments/{id}/log",
            get(api::log).layer(axum::middleware::from_fn_with_state(
                state.clone(),
                bounds::page_load,
            )),
        )
        .route("/environments/{app}/{env}/cancel", post(api::cancel_env))
        .route(
            "/environments/{app}/{env}/rollback",
            get(api::rollback_target),
        )
        .route("/locks", get(api::locks))
        .route(
            "/autodeploy/{app}/{env}",
            get(api::autodeploy_state)
                .put(api::autodeploy_pause)
                .delete(api::autodeploy_resume),
        )
        .route("/locks/{app}/{env}", put(api::lock).delete(api::unlock))
        .route("/freezes", get(freezes::list))
        .route(
            "/freezes/{app}",
            axum::routing::delete(freezes::unfreeze_app),
        )
        .route(
            "/freezes/{app}/{env}",
            put(freezes::freeze).delete(freezes::unfreeze_scope),
        )
        .route(
            "/chat-routes/{source_key}",
            put(api::set_chat_route).delete(api::drop_chat_route),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            api::require_token,
        ))
        .layer(DefaultBodyLimit::max(64 * 1024));
    let page_load = axum::middleware::from_fn_with_state(state.clone(), bounds::page_load);
    Router::new()
        .nest("/api", api)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics))
        .route("/", get(pages::index).layer(page_load.clone()))
        .route("/deployments/{id}", get(pages::deployment).layer(page_load))
        .route(
            "/deployments/{id}/events",
            get(pages::events).layer(axum::middleware::from_fn_with_state(
                state.clone(),
                bounds::stream,
            )),
        )
        .route(
            crate::manifest::WEBHOOK_PATH,
            post(webhook::github).layer(DefaultBodyLimit::max(webhook::MAX_BODY_BYTES)),
        )
        .layer(trace_layer())
        .with_state(state)
}

/// A span per request (method and path, never the query: page links carry their
/// signature there), with the status and latency at debug level.
fn trace_layer() -> tower_http::trace::TraceLayer<
    tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>,
    impl Fn(&axum::http::Request<axum::body::Body>) -> tracing::Span + Clone,
> {
    tower_http::trace::TraceLayer::new_for_http().make_span_with(
        |req: &axum::http::Request<axum::body::Body>| {
            tracing::debug_span!("http", method = %req.method(), path = %req.uri().path())
        },
    )
}

/// Prometheus text: webhook counters, deployments queued and running, what this
/// process ran, outbox backlog. With `FASENG_METRICS_TOKEN`, only for its bearer.
/// A scrape reads only the partial indexes of unfinished deployments and undelivered
/// notifications: no table scan, however long the history.
async fn metrics(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> (StatusCode, String) {
    if let Some(token) = &state.metrics_token
        && !api::bearer_matches(&headers, token)
    {
        return (
            StatusCode::UNAUTHORIZED,
            "/metrics needs `Authorization: Bearer <FASENG_METRICS_TOKEN>`\n".to_string(),
        );
    }
    let mut out = String::new();
    state.metrics.render_webhooks(&mut out);
    if let Some(m) = &state.engine_metrics {
        m.render(&mut out);
    }
    match (
        state.store.count_active().await,
        state.store.outbox_backlog().await,
    ) {
        (Ok((queued, running)), Ok(backlog)) => {
            out.push_str("# HELP faseng_deployments Deployments not yet ended, by state.\n");
            out.push_str("# TYPE faseng_deployments gauge\n");
            out.push_str(&format!(
                "faseng_deployments{{state=\"queued\"}} {queued}\n"
            ));
            out.push_str(&format!(
                "faseng_deployments{{state=\"running\"}} {running}\n"
            ));
            out.push_str("# HELP faseng_outbox_backlog Notifications not yet delivered.\n");
            out.push_str("# TYPE faseng_outbox_backlog gauge\n");
            out.push_str(&format!("faseng_outbox_backlog {backlog}\n"));
            (StatusCode::OK, out)
        }
        _ => (StatusCode::SERVICE_UNAVAILABLE, out),
    }
}

#[cfg(test)]
mod tests;
