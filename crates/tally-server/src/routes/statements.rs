//! `/v1/statements`: import a bank statement (camt.053 or MT940, the file as the body) for an
//! account, matched against its journal; read a statement's report as JSON, CSV or HTML.
//! CSV statements need a column layout and are imported with `tally statement import`.

use crate::auth::{EVENT_READERS, Principal};
use crate::body::{Path, Query, RawBody};
use crate::error::ApiError;
use crate::routes::reconciliations::{ReportQuery, rendered};
use crate::state::AppState;
use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tally_recon::render::render_statement;
use tally_recon::statement::{ImportOptions, import_statement, statement_report};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// The Tally account that mirrors the bank account (id or code).
    pub account: String,
    /// `camt053` or `mt940`; recognized from the file when absent.
    pub format: Option<String>,
    /// Amounts that differ by at most this much still match (a decimal amount; default 0).
    pub tolerance: Option<String>,
    /// Dates that differ by at most this many days still match (0 to 31; default 2).
    #[param(minimum = 0, maximum = 31)]
    pub date_window_days: Option<u32>,
}

/// An imported statement and its matching report.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatementView {
    pub statement_id: Uuid,
    /// False when the same file had been imported before: nothing was written.
    pub created: bool,
    /// Matches, unmatched entries on both sides, balances against Tally's, findings.
    #[schema(value_type = Object)]
    pub report: serde_json::Value,
}

#[utoipa::path(operation_id = "import_statement", post, path = "/v1/statements", tag = "reconciliation", params(ImportQuery),
    request_body(content = String, description = "The statement file (camt.053 XML or MT940)", content_type = "application/octet-stream"),
    responses((status = 201, body = StatementView, description = "Imported and matched"),
              (status = 200, body = StatementView, description = "The same file was imported before: its report"),
              (status = 409, description = "statement_exists_with_different_content"),
              (status = 422, description = "statement_malformed, statement_amount_invalid, statement_date_invalid, statement_balance_mismatch, statement_unsupported, statement_too_large, statement_currency_mismatch, statement_format_unknown")),
    security(("bearer" = [])))]
pub async fn import(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<ImportQuery>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    principal.require(EVENT_READERS)?;
    let format = match query.format.as_deref() {
        None => None,
        Some("camt053") => Some(tally_statement::Format::Camt053),
        Some("mt940") => Some(tally_statement::Format::Mt940),
        Some(_) => return Err(ApiError::bad_request("invalid_query", "format must be camt053 or mt940")),
    };
    let record = state.store.require_account(&query.account).await?;
    principal.require_account(record.account.id.0)?;
    let mut options = ImportOptions { format, ..ImportOptions::default() };
    if let Some(tolerance) = &query.tolerance {
        options.rules.amount_tolerance = tally_core::parse_amount(tolerance, record.scale)
            .map_err(|e| ApiError::bad_request("invalid_amount", format!("tolerance: {e}")))?;
    }
    if let Some(days) = query.date_window_days {
        options.rules.date_window_days = days;
    }
    let outcome =
        import_statement(&state.recon, &record.account.id.to_string(), &body, &options, &principal.actor()).await?;
    let status = if outcome.created { StatusCode::CREATED } else { StatusCode::OK };
    let view = StatementView {
        statement_id: outcome.statement_id,
        created: outcome.created,
        report: serde_json::to_value(&outcome.report).expect("reports serialize"),
    };
    Ok((status, axum::Json(view)).into_response())
}

#[utoipa::path(operation_id = "get_statement", get, path = "/v1/statements/{id}", tag = "reconciliation",
    params(("id" = Uuid, Path, description = "The statement's id"), ReportQuery),
    responses((status = 200, description = "The statement's report as JSON, CSV or HTML"),
              (status = 404, description = "statement_not_found")),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<Uuid>,
    Query(query): Query<ReportQuery>,
) -> Result<Response, ApiError> {
    principal.require(EVENT_READERS)?;
    let format = query.report_format()?;
    let report = statement_report(&state.recon, id).await?;
    Ok(rendered(render_statement(&report, format), format))
}
