//! The benchmarks' operating errors, with stable codes. A run that measures something bad (a
//! refused valid transfer, books that do not balance, findings at the end of day) is not an
//! error: it is a report that says so.

use tally_engine::EngineError;
use tally_recon::ReconError;
use tally_relay::RelayError;
use tally_store::StoreError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum BenchError {
    /// A setting out of its bounds; the message names the flag of `tally bench`/`bench-eod`.
    #[error("{0}")]
    Invalid(String),
    #[error("the benchmark database is not empty")]
    DatabaseNotEmpty,
    #[error("funding the accounts failed: {0}")]
    FundingFailed(&'static str),
    #[error("generating the ledger: {0}")]
    Generation(String),
    #[error("a benchmark client panicked: {0}")]
    ClientPanicked(String),
    #[error("the HTTP client: {0}")]
    Http(String),
    #[error("the API server: {0}")]
    Server(String),
    #[error("NATS: {0}")]
    Nats(String),
    #[error("events out: {0}")]
    Task(String),
    #[error("drawing the chart: {0}")]
    Chart(String),
    #[error("the embedded PostgreSQL: {0}")]
    EmbeddedPg(#[from] tally_pg::PgError),
    #[error("input/output: {0}")]
    Io(#[from] std::io::Error),
    #[error("the report as JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Recon(#[from] ReconError),
    #[error(transparent)]
    Relay(#[from] RelayError),
}

impl BenchError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            BenchError::Invalid(_) => "bench_settings_invalid",
            BenchError::DatabaseNotEmpty => "bench_database_not_empty",
            BenchError::FundingFailed(_) => "bench_funding_failed",
            BenchError::Generation(_) => "bench_generation_failed",
            BenchError::ClientPanicked(_) => "bench_client_panicked",
            BenchError::Http(_) => "bench_http_failed",
            BenchError::Server(_) => "bench_server_failed",
            BenchError::Nats(_) => "bench_nats_failed",
            BenchError::Task(_) => "bench_events_out_failed",
            BenchError::Chart(_) => "bench_chart_failed",
            BenchError::EmbeddedPg(_) => "embedded_postgres_failed",
            BenchError::Io(_) => "io_error",
            BenchError::Json(_) => "json_error",
            BenchError::Store(error) => error.code(),
            BenchError::Engine(error) => error.code(),
            BenchError::Recon(error) => error.code(),
            BenchError::Relay(error) => error.code(),
        }
    }
}
