//! `/v1/statements`: import a bank statement file (camt.053, camt.052, camt.054 or MT940, the
//! file as the body) of one or several statements, each mapped to the account that mirrors its
//! bank account and matched against its journal; read a statement's or a file's report as JSON,
//! CSV or HTML; list imported statements. CSV statements need a column layout and are imported
//! with `tally statement import`.
//!
//! A statement belongs to the ledger of the account it is matched against. A key scoped to
//! ledgers imports only into accounts of its ledgers, and sees only their statements: of a file,
//! the file's own content (its unmapped statements, notes) and its ledgers' statements.

use crate::auth::{EVENT_READERS, Principal};
use crate::body::{Path, Query, RawBody};
use crate::error::ApiError;
use crate::routes::reconciliations::{ReportQuery, ledger_view, rendered};
use crate::state::AppState;
use crate::views::Page;
use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tally_recon::ReconError;
use tally_recon::render::{ReportFormat, render_file, render_statement};
use tally_recon::report::LedgerRef;
use tally_recon::statement::{
    ImportOptions, StatementFilter, file_report, import_file, list_statements, parse_mapping_entry, statement_report,
};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// The Tally account that mirrors the file's bank account (id or code); needed unless `map`
    /// names every bank account of the file.
    pub account: Option<String>,
    /// Bank account to Tally account, comma-separated: `NL91ABNA0417164300=bank-nl,DE89370400440532013000=bank-de`.
    /// Statements of bank accounts mapped to nothing are reported as unmapped.
    pub map: Option<String>,
    /// `camt053`, `camt052`, `camt054` or `mt940`; recognized from the file when absent.
    pub format: Option<String>,
    /// The file's character set (`iso-8859-2`, `windows-1250`); UTF-8 or detected when absent.
    pub encoding: Option<String>,
    /// Amounts that differ by at most this much still match (a decimal amount; default 0).
    pub tolerance: Option<String>,
    /// Dates that differ by at most this many days still match (0 to 31; default 2).
    #[param(minimum = 0, maximum = 31)]
    pub date_window_days: Option<u32>,
}

/// An imported statement file and its report.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatementView {
    pub file_id: Uuid,
    /// The file's statement, when it holds exactly one that is recorded.
    pub statement_id: Option<Uuid>,
    /// False when the same file had been imported before and nothing of it is new: nothing was
    /// written.
    pub created: bool,
    /// Every statement of the file (imported, imported before, or unmapped), each imported one
    /// with its matches, unmatched entries on both sides, balances against Tally's and findings.
    #[schema(value_type = Object)]
    pub report: serde_json::Value,
}

#[utoipa::path(operation_id = "import_statement", post, path = "/v1/statements", tag = "reconciliation", params(ImportQuery),
    request_body(content = String, description = "The statement file (camt.053 XML or MT940)", content_type = "application/octet-stream"),
    responses((status = 201, body = StatementView, description = "Imported and matched"),
              (status = 200, body = StatementView, description = "The same file was imported before: its report"),
              (status = 409, description = "statement_exists_with_different_content"),
              (status = 422, description = "statement_malformed, statement_amount_invalid, statement_date_invalid, statement_balance_mismatch, statement_unsupported, statement_too_large, statement_currency_mismatch, statement_format_unknown, statement_mapping_invalid, statement_mapping_ambiguous")),
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
        Some(name) => {
            match tally_statement::Format::parse(name).filter(|format| *format != tally_statement::Format::Csv) {
                Some(format) => Some(format),
                None => {
                    return Err(ApiError::bad_request(
                        "invalid_query",
                        "format must be camt053, camt052, camt054 or mt940",
                    ));
                }
            }
        }
    };
    let mut mapping = Vec::new();
    for entry in query.map.as_deref().unwrap_or("").split(',').filter(|entry| !entry.trim().is_empty()) {
        mapping.push(parse_mapping_entry(entry)?);
    }
    // Every Tally account the import may touch must be one the key may act on; each is named
    // by its id from here on.
    let mut scale = None;
    let mut account = None;
    if let Some(named) = &query.account {
        let record = state.store.require_account(named).await?;
        principal.require_account(record.account.id.0)?;
        principal.require_ledger(record.account.ledger)?;
        scale = Some(record.scale);
        account = Some(record.account.id.to_string());
    }
    for (_, tally) in &mut mapping {
        let record = state.store.require_account(tally).await?;
        principal.require_account(record.account.id.0)?;
        principal.require_ledger(record.account.ledger)?;
        scale = scale.or(Some(record.scale));
        *tally = record.account.id.to_string();
    }
    let mut options =
        ImportOptions { format, account, mapping, encoding: query.encoding.clone(), ..ImportOptions::default() };
    if let Some(tolerance) = &query.tolerance {
        // The tolerance is written in the currency of the first account named.
        let scale = scale
            .ok_or_else(|| ApiError::from(ReconError::StatementMappingInvalid("name an account or a map".into())))?;
        options.rules.amount_tolerance = tally_core::parse_amount(tolerance, scale)
            .map_err(|e| ApiError::bad_request("invalid_amount", format!("tolerance: {e}")))?;
    }
    if let Some(days) = query.date_window_days {
        options.rules.date_window_days = days;
    }
    let outcome = import_file(&state.recon, &body, &options, &principal.actor()).await?;
    let status = if outcome.created { StatusCode::CREATED } else { StatusCode::OK };
    // The same file imported before under other mappings may hold statements of other ledgers.
    let report = match ledger_view(&state, &principal, None).await? {
        Some(ledgers) => outcome.report.filtered(&ledgers),
        None => outcome.report.clone(),
    };
    let view = StatementView {
        file_id: outcome.file_id,
        statement_id: outcome.only_statement(),
        created: outcome.created,
        report: serde_json::to_value(&report).expect("reports serialize"),
    };
    Ok((status, axum::Json(view)).into_response())
}

#[utoipa::path(operation_id = "get_statement", get, path = "/v1/statements/{id}", tag = "reconciliation",
    params(("id" = Uuid, Path, description = "The id of a statement, or of a statement file"), ReportQuery),
    responses((status = 200, description = "The statement's (or the file's) report as JSON, CSV or HTML; a file's restricted to the ledger asked for or the key's ledgers"),
              (status = 403, description = "ledger_forbidden: the statement (or every statement of the file) is of a ledger the key is not scoped to"),
              (status = 404, description = "statement_not_found (also: not of the ledger asked for)")),
    security(("bearer" = [])))]
pub async fn show(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<Uuid>,
    Query(query): Query<ReportQuery>,
    headers: axum::http::HeaderMap,
) -> Result<(crate::replica::Served, Response), ApiError> {
    principal.require(EVENT_READERS)?;
    let format = query.report_format()?;
    let ledgers = ledger_view(&state, &principal, query.ledger.as_deref()).await?;
    let (principal, ledgers) = (&principal, ledgers.as_deref());
    state.read(&headers, move |reads| async move { report(&reads.recon, principal, id, format, ledgers).await }).await
}

/// A statement's report, or a statement file's, as the caller may see it.
async fn report(
    recon: &tally_recon::Recon,
    principal: &Principal,
    id: Uuid,
    format: ReportFormat,
    ledgers: Option<&[LedgerRef]>,
) -> Result<Response, ApiError> {
    let shows = |ledger: i32| ledgers.is_none_or(|shown| shown.iter().any(|l| l.id == ledger));
    match statement_report(recon, id).await {
        Ok(report) => {
            if !shows(report.ledger) {
                return Err(not_shown(principal, &[report.ledger], id));
            }
            Ok(rendered(render_statement(&report, format), format))
        }
        Err(ReconError::StatementNotFound(_)) => {
            let report = file_report(recon, id).await?;
            let report = match ledgers {
                Some(shown) if !report.touches(shown) => {
                    let of: Vec<i32> = report.statements.iter().filter_map(|s| s.ledger_of()).collect();
                    return Err(not_shown(principal, &of, id));
                }
                Some(shown) => report.filtered(shown),
                None => report,
            };
            Ok(rendered(render_file(&report, format), format))
        }
        Err(error) => Err(error.into()),
    }
}

/// Why a statement (or a file whose statements are all) of `ledgers` is not shown: the key may
/// use none of those ledgers (403 `ledger_forbidden`, as for accounts), or the caller asked for
/// another ledger (404).
fn not_shown(principal: &Principal, ledgers: &[i32], id: Uuid) -> ApiError {
    let usable = ledgers.iter().any(|l| principal.may_use_ledger(tally_core::LedgerId(*l)));
    match ledgers.first() {
        Some(first) if !usable => principal.require_ledger(tally_core::LedgerId(*first)).expect_err("not usable"),
        _ => ApiError::from(ReconError::StatementNotFound(format!("{id} in the ledger asked for"))),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// A ledger id or code: its statements only (a key scoped to ledgers sees only theirs).
    pub ledger: Option<String>,
    /// An account id or code: its statements only.
    pub account: Option<String>,
    /// 1 to 1,000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page (statements are listed newest first).
    pub cursor: Option<Uuid>,
}

/// An imported statement in a listing: what it is, whose it is, and how its matching came out.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatementListView {
    pub id: Uuid,
    /// The ledger of its account.
    pub ledger: i32,
    pub account_id: Uuid,
    pub account_code: Option<String>,
    /// `mt940`, `camt053`, `camt052`, `camt054` or `csv`.
    pub format: String,
    pub statement_ref: String,
    pub bank_account: String,
    pub currency: String,
    pub opening_date: Option<String>,
    /// Decimal strings in the currency's scale.
    pub opening: Option<String>,
    pub closing_date: Option<String>,
    pub closing: Option<String>,
    pub entries: i32,
    pub file_id: Option<Uuid>,
    pub imported_at: String,
    pub imported_by: String,
    /// `clean` or `findings`: the matching when it was imported.
    pub status: Option<String>,
    pub findings: Option<i64>,
}

impl StatementListView {
    fn new(s: tally_recon::statement::StatementSummary) -> StatementListView {
        StatementListView {
            id: s.id,
            ledger: s.ledger,
            account_id: s.account_id,
            account_code: s.account_code,
            format: s.format,
            statement_ref: s.statement_ref,
            bank_account: s.bank_account,
            currency: s.currency,
            opening_date: s.opening_date,
            opening: s.opening,
            closing_date: s.closing_date,
            closing: s.closing,
            entries: s.entries,
            file_id: s.file_id,
            imported_at: s.imported_at,
            imported_by: s.imported_by,
            status: s.status,
            findings: s.findings,
        }
    }
}

const _: () = assert!(tally_store::queries::PAGE_SIZE_MAX <= tally_recon::statement::STATEMENTS_LISTED_MAX);

#[utoipa::path(operation_id = "list_statements", get, path = "/v1/statements", tag = "reconciliation", params(ListQuery),
    responses((status = 200, body = Page<StatementListView>, description = "Imported statements, newest first"),
              (status = 403, description = "ledger_forbidden: the key is scoped to other ledgers"),
              (status = 404, description = "ledger_not_found, account_not_found")),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<ListQuery>,
    headers: axum::http::HeaderMap,
) -> Result<(crate::replica::Served, axum::Json<Page<StatementListView>>), ApiError> {
    principal.require(EVENT_READERS)?;
    let limit = crate::routes::accounts::limit_of(query.limit)?;
    let ledgers = crate::routes::ledgers::scope(&state, &principal, query.ledger.as_deref()).await?;
    let account = match &query.account {
        Some(named) => Some(crate::routes::accounts::readable(&state.store, &principal, named).await?.account.id.0),
        None => None,
    };
    let filter = &StatementFilter { ledgers: ledgers.as_deref(), account, before: query.cursor };
    let (served, page) =
        state.read(&headers, |reads| async move { Ok(list_statements(&reads.recon, filter, limit).await?) }).await?;
    let next_cursor = (page.len() as i64 == limit).then(|| page.last().expect("full").id.to_string());
    Ok((served, axum::Json(Page { data: page.into_iter().map(StatementListView::new).collect(), next_cursor })))
}
