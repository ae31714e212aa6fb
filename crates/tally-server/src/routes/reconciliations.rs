//! `/v1/reconciliations`: run the end of day for a ledger day, and read its stored report as
//! JSON, CSV (the findings) or a self-contained HTML page.
//!
//! A day closes for every ledger at once, and its stored report is whole. `ledger` (id or code)
//! shows it restricted to one ledger: that ledger's totals, figures and findings, with a
//! `filter` saying so; a key scoped to ledgers always sees it restricted to its ledgers.

use crate::auth::{EVENT_READERS, Principal};
use crate::body::{Json, Path, Query};
use crate::error::ApiError;
use crate::state::AppState;
use crate::views::Page;
use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tally_core::LedgerId;
use tally_recon::render::{ReportFormat, render_day};
use tally_recon::report::{DayReport, LedgerRef};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// How long `POST /v1/reconciliations` waits for the run before answering 202 (the run goes on).
pub const RECONCILIATION_WAIT_MAX: Duration = Duration::from_secs(20);

/// Which day to reconcile.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReconciliationBody {
    /// The ledger day, `YYYY-MM-DD`; it must have ended (plus a minute).
    pub date: String,
    /// A ledger id or code: answer with that ledger's part of the report (the day closes, and
    /// is checked, for every ledger).
    pub ledger: Option<String>,
}

/// A run: running, finished with its report, or failed with its error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReconciliationView {
    pub run_id: Uuid,
    pub day: String,
    /// `running`, `clean`, `findings` or `failed`.
    pub status: String,
    /// The report (summary, totals per ledger and currency, figures per ledger, volume by hour,
    /// checks, findings) once finished; restricted to the ledgers asked for or the key's, with
    /// `filter` saying so.
    #[schema(value_type = Option<Object>)]
    pub report: Option<serde_json::Value>,
    pub error: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// `json` (default), `csv` (the findings table) or `html` (a self-contained page).
    pub format: Option<String>,
    /// A ledger id or code: that ledger's part of the report only.
    pub ledger: Option<String>,
}

impl ReportQuery {
    /// The asked format: JSON when absent.
    pub fn report_format(&self) -> Result<ReportFormat, ApiError> {
        match self.format.as_deref() {
            None => Ok(ReportFormat::Json),
            Some(text) => ReportFormat::parse(text)
                .ok_or_else(|| ApiError::bad_request("invalid_query", "format must be json, csv or html")),
        }
    }
}

/// The ledgers a caller sees, by id and code: the one asked for (which the key must be allowed),
/// else the key's (`None`: every ledger, the whole report).
pub async fn ledger_view(
    state: &AppState,
    principal: &Principal,
    asked: Option<&str>,
) -> Result<Option<Vec<LedgerRef>>, ApiError> {
    let Some(ids) = crate::routes::ledgers::scope(state, principal, asked).await? else { return Ok(None) };
    let ledgers = state.store.ledgers().await?;
    let named =
        |id: &LedgerId| ledgers.iter().find(|l| l.id == *id).map(|l| LedgerRef { id: id.0, code: l.code.clone() });
    // Ledgers are never deleted: every id the scope names is found.
    Ok(Some(ids.iter().filter_map(named).collect()))
}

/// The day report as a caller with this view sees it.
fn seen(report: DayReport, view: &Option<Vec<LedgerRef>>) -> DayReport {
    match view {
        Some(ledgers) => report.filtered(ledgers),
        None => report,
    }
}

/// A rendered report with its content type.
pub fn rendered(text: String, format: ReportFormat) -> Response {
    let mut response = text.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    response
}

fn view(
    run_id: Uuid,
    day: &str,
    status: &str,
    report: Option<&tally_recon::report::DayReport>,
    error: Option<String>,
) -> ReconciliationView {
    ReconciliationView {
        run_id,
        day: day.to_owned(),
        status: status.to_owned(),
        report: report.map(|r| serde_json::to_value(r).expect("reports serialize")),
        error,
    }
}

#[utoipa::path(operation_id = "run_reconciliation", post, path = "/v1/reconciliations", tag = "reconciliation", request_body = ReconciliationBody,
    responses((status = 200, body = ReconciliationView, description = "The run finished: its report"),
              (status = 202, body = ReconciliationView, description = "Still running: read it with GET /v1/reconciliations/{date}"),
              (status = 403, description = "ledger_forbidden: the key is scoped to other ledgers"),
              (status = 409, description = "day_not_closed, reconciliation_running")),
    security(("bearer" = [])))]
pub async fn run(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Json(body): Json<ReconciliationBody>,
) -> Result<Response, ApiError> {
    principal.require(EVENT_READERS)?;
    let day = tally_recon::days::parse_day(&body.date)?;
    let ledgers = ledger_view(&state, &principal, body.ledger.as_deref()).await?;
    let run_id = Uuid::now_v7();
    let recon = state.recon.clone();
    let actor = principal.actor();
    let mut task = tokio::spawn(async move {
        tally_recon::eod::run_end_of_day_as(&recon, run_id, day, &actor, &tally_recon::Quiet).await
    });
    let text = tally_recon::days::format_day(day);
    let wait = RECONCILIATION_WAIT_MAX.min(state.config.request_timeout / 2);
    match tokio::time::timeout(wait, &mut task).await {
        Ok(joined) => {
            let report = joined.map_err(|e| ApiError::internal(format!("the reconciliation task failed: {e}")))??;
            let report = seen(report, &ledgers);
            Ok((StatusCode::OK, axum::Json(view(run_id, &text, report.status.as_str(), Some(&report), None)))
                .into_response())
        }
        Err(_) => {
            let mut response =
                (StatusCode::ACCEPTED, axum::Json(view(run_id, &text, "running", None, None))).into_response();
            let location = HeaderValue::from_str(&format!("/v1/reconciliations/{text}")).expect("ascii");
            response.headers_mut().insert(header::LOCATION, location);
            Ok(response)
        }
    }
}

/// Which runs to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    /// 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page (a run id).
    pub cursor: Option<Uuid>,
    /// A ledger id or code: status and findings as that ledger sees them.
    pub ledger: Option<String>,
}

/// Runs listed at once by default.
pub const RUNS_PAGE_DEFAULT: i64 = 50;

/// One end-of-day run in the list.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunSummaryView {
    pub run_id: Uuid,
    pub day: String,
    /// `running`, `clean`, `findings` or `failed`.
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// Findings in the report (restricted to the ledgers asked for or the key's).
    pub findings: Option<i64>,
    pub actor: String,
}

#[utoipa::path(operation_id = "list_reconciliations", get, path = "/v1/reconciliations", tag = "reconciliation",
    params(RunsQuery),
    responses((status = 200, body = Page<RunSummaryView>, description = "End-of-day runs, newest first"),
              (status = 403, description = "ledger_forbidden: the key is scoped to other ledgers")),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<RunsQuery>,
    headers: axum::http::HeaderMap,
) -> Result<(crate::replica::Served, axum::Json<Page<RunSummaryView>>), ApiError> {
    principal.require(EVENT_READERS)?;
    let limit =
        crate::routes::accounts::page_limit(query.limit.or(Some(RUNS_PAGE_DEFAULT)), tally_recon::eod::RUNS_PAGE_MAX)?;
    let ledgers = ledger_view(&state, &principal, query.ledger.as_deref()).await?;
    let (cursor, with_reports) = (query.cursor, ledgers.is_some());
    let (served, runs) = state
        .read(&headers, |reads| async move {
            Ok(tally_recon::eod::recent_runs(&reads.recon, cursor, limit, with_reports).await?)
        })
        .await?;
    let next_cursor = (runs.len() as i64 == limit).then(|| runs.last().expect("a full page").run_id.to_string());
    let data = runs
        .into_iter()
        .map(|run| {
            // A restricted view's status and findings are its report's.
            let (status, findings) = match run.report.map(|report| seen(report, &ledgers)) {
                Some(report) => (report.status.as_str().to_owned(), Some(report.findings.len() as i64)),
                None => (run.status, run.findings),
            };
            RunSummaryView {
                run_id: run.run_id,
                day: run.day,
                status,
                started_at: run.started_at,
                finished_at: run.finished_at,
                findings,
                actor: run.actor,
            }
        })
        .collect();
    Ok((served, axum::Json(Page { data, next_cursor })))
}

#[utoipa::path(operation_id = "get_reconciliation", get, path = "/v1/reconciliations/{date}", tag = "reconciliation",
    params(("date" = String, Path, description = "The ledger day, YYYY-MM-DD"), ReportQuery),
    responses((status = 200, body = ReconciliationView, description = "The day's latest run (JSON), or its report as CSV or HTML, restricted to the ledger asked for or the key's ledgers"),
              (status = 403, description = "ledger_forbidden: the key is scoped to other ledgers"),
              (status = 404, description = "reconciliation_not_found: the day was never reconciled"),
              (status = 409, description = "reconciliation_running: CSV and HTML exist once the run finished")),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(date): Path<String>,
    Query(query): Query<ReportQuery>,
    headers: axum::http::HeaderMap,
) -> Result<(crate::replica::Served, Response), ApiError> {
    principal.require(EVENT_READERS)?;
    let format = query.report_format()?;
    let day = tally_recon::days::parse_day(&date)?;
    let ledgers = ledger_view(&state, &principal, query.ledger.as_deref()).await?;
    let text = tally_recon::days::format_day(day);
    let text = text.as_str();
    let (served, run) = state
        .read(&headers, |reads| async move {
            tally_recon::eod::latest_report(&reads.recon, day).await?.ok_or_else(|| {
                ApiError::new(StatusCode::NOT_FOUND, "reconciliation_not_found", format!("{text} was never reconciled"))
            })
        })
        .await?;
    let report = run.report.map(|report| seen(report, &ledgers));
    // A filtered run's status is its view's.
    let status = report.as_ref().map_or(run.status.as_str(), |r| r.status.as_str());
    match (format, &report) {
        (ReportFormat::Json, report) => {
            Ok((served, axum::Json(view(run.run_id, text, status, report.as_ref(), run.error.clone())).into_response()))
        }
        (_, Some(report)) => Ok((served, rendered(render_day(report, format), format))),
        (_, None) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "reconciliation_running",
            format!("the latest run of {text} is {status}: it has no report"),
        )),
    }
}
