//! `/v1/audit` and `/v1/events`: pages, a long-poll, and a resumable server-sent event stream.

use crate::auth::{AUDITORS, EVENT_READERS, Principal};
use crate::body::Query;
use crate::error::ApiError;
use crate::routes::accounts::limit_of;
use crate::state::{AppState, EVENTS_WAIT_MAX};
use crate::views::{AuditView, EventView, Page};
use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use std::convert::Infallible;
use std::time::Duration;
use utoipa::IntoParams;

/// Events one stream message batch reads at most.
pub const STREAM_PAGE: i64 = 500;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// The `next_cursor` of the previous page (an audit row id); from the start when absent.
    #[param(minimum = 0)]
    pub after: Option<i64>,
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// An account or transfer id: only the rows about it (for a transfer, also the row of the
    /// batch that committed it).
    pub entity: Option<uuid::Uuid>,
}

#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = Page<AuditView>, description = "Oldest first")), security(("bearer" = [])))]
pub async fn audit(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<AuditQuery>,
    headers: axum::http::HeaderMap,
) -> Result<(crate::replica::Served, axum::Json<Page<AuditView>>), ApiError> {
    principal.require(AUDITORS)?;
    let limit = limit_of(query.limit)?;
    let (after, entity) = (query.after.unwrap_or(0), query.entity);
    let (served, rows) =
        state.read(&headers, |reads| async move { Ok(reads.store.audit_page_of(entity, after, limit).await?) }).await?;
    let next_cursor = rows.last().map(|row| row.id.to_string());
    Ok((served, axum::Json(Page { data: rows.into_iter().map(AuditView::from).collect(), next_cursor })))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Events after this sequence number (the previous page's `next_cursor`); one beyond the
    /// newest event reads as the newest event's.
    #[param(minimum = 0)]
    pub after: Option<i64>,
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// Seconds to wait for an event when there is none yet (0 to 30).
    #[param(minimum = 0, maximum = 30)]
    pub wait: Option<u64>,
    /// A ledger id or code: only the events of its accounts and transfers (and its own
    /// `ledger.created`); events of no one ledger are left out.
    pub ledger: Option<String>,
}

/// Waits until an event after `after` is committed, `wait` passes, or the server shuts down.
async fn wait_for_event(state: &AppState, after: i64, wait: Duration) {
    let mut last = state.last_event.clone();
    let mut shutdown = state.shutdown.clone();
    let deadline = tokio::time::sleep(wait);
    tokio::pin!(deadline);
    loop {
        if *last.borrow_and_update() > after || *shutdown.borrow() {
            return;
        }
        tokio::select! {
            _ = &mut deadline => return,
            changed = last.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => return,
        }
    }
}

/// `after` as a position in the outbox: past the newest event it is the newest event's seq (0
/// when there is none), so that a cursor never points beyond the events that exist and the
/// next event committed is not skipped.
async fn position(state: &AppState, after: i64) -> Result<i64, tally_store::StoreError> {
    Ok(after.clamp(0, state.store.last_event_seq().await?))
}

#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventsQuery),
    responses((status = 200, body = Page<EventView>,
               description = "In sequence order. next_cursor is always present: the seq of the page's last event; \
                              on an empty page, `after`, or the newest event's seq (0 when there is none) if `after` \
                              is beyond it. Pass it as `after` for the next page.")),
    security(("bearer" = [])))]
pub async fn events(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<EventsQuery>,
) -> Result<axum::Json<Page<EventView>>, ApiError> {
    principal.require(EVENT_READERS)?;
    let limit = limit_of(query.limit)?;
    let mut after = query.after.unwrap_or(0);
    let wait = Duration::from_secs(query.wait.unwrap_or(0));
    if wait > EVENTS_WAIT_MAX {
        return Err(ApiError::bad_request("invalid_query", "wait is 0 to 30 seconds"));
    }
    let ledgers = crate::routes::ledgers::scope(&state, &principal, query.ledger.as_deref()).await?;
    let ledgers = ledgers.as_deref();
    // Every event up to `newest` is committed before the read below starts, so a filtered page
    // that finds nothing may move the cursor past them all.
    let newest = state.store.last_event_seq().await?;
    let mut rows = state.store.events_with_subjects_in(after, limit, ledgers).await?;
    if rows.is_empty() {
        after = if ledgers.is_some() { newest } else { position(&state, after).await? };
        if !wait.is_zero() {
            // Answer before the request timeout would.
            let wait = wait.min(state.config.request_timeout.saturating_sub(Duration::from_secs(1)));
            wait_for_event(&state, after, wait).await;
            rows = state.store.events_with_subjects_in(after, limit, ledgers).await?;
        }
    }
    let next_cursor = Some(rows.last().map_or(after, |(event, _)| event.seq).to_string());
    let data = rows.into_iter().map(|(event, subject)| EventView::new(event, subject)).collect();
    Ok(axum::Json(Page { data, next_cursor }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// Events after this sequence number; `Last-Event-ID` takes precedence.
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// A ledger id or code: only its events (see `GET /v1/events`).
    pub ledger: Option<String>,
}

#[utoipa::path(get, path = "/v1/events/stream", tag = "events", params(StreamQuery,
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this event")),
    responses((status = 200, content_type = "text/event-stream",
               description = "Server-sent events: id is the seq, event the type, data the event as JSON")),
    security(("bearer" = [])))]
pub async fn stream(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    Query(query): Query<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    principal.require(EVENT_READERS)?;
    let resume =
        match headers.get("last-event-id") {
            Some(value) => {
                Some(value.to_str().ok().and_then(|text| text.trim().parse::<i64>().ok()).ok_or_else(|| {
                    ApiError::bad_request("invalid_header", "Last-Event-ID is an event sequence number")
                })?)
            }
            None => None,
        };
    let after = resume.or(query.after).unwrap_or(0);
    let ledgers = crate::routes::ledgers::scope(&state, &principal, query.ledger.as_deref()).await?;
    let stream =
        futures_util::stream::unfold((state, after, Vec::<EventView>::new()), move |(state, mut after, mut queue)| {
            let ledgers = ledgers.clone();
            async move {
                loop {
                    if let Some(event) = queue.pop() {
                        after = event.seq;
                        let message = Event::default()
                            .id(event.seq.to_string())
                            .event(event.event_type.clone())
                            .json_data(&event)
                            .expect("events serialize");
                        return Some((Ok(message), (state, after, queue)));
                    }
                    if *state.shutdown.borrow() {
                        return None;
                    }
                    // Read before the page: every event up to it is committed (see `events`).
                    let newest = match (&ledgers, state.store.last_event_seq().await) {
                        (None, _) => None,
                        (Some(_), Ok(newest)) => Some(newest),
                        (Some(_), Err(error)) => {
                            tracing::warn!(code = error.code(), %error, "event stream read failed");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            continue;
                        }
                    };
                    match state.store.events_with_subjects_in(after, STREAM_PAGE, ledgers.as_deref()).await {
                        Ok(rows) if !rows.is_empty() => {
                            // Popped from the back: store them newest first.
                            queue =
                                rows.into_iter().rev().map(|(event, subject)| EventView::new(event, subject)).collect();
                        }
                        Ok(_) => {
                            let next = match newest {
                                Some(newest) => Ok(newest),
                                None => position(&state, after).await,
                            };
                            match next {
                                Ok(position) => {
                                    after = position;
                                    wait_for_event(&state, after, EVENTS_WAIT_MAX).await;
                                }
                                Err(error) => {
                                    tracing::warn!(code = error.code(), %error, "event stream read failed");
                                    tokio::time::sleep(Duration::from_secs(1)).await;
                                }
                            }
                        }
                        Err(error) => {
                            tracing::warn!(code = error.code(), %error, "event stream read failed");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            }
        });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
