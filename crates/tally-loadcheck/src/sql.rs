//! The SQL-native writers: external clients of the seed's SQL interface, each on a connection
//! of its own, doing what the seed's Python `TransactionProcessor.transfer` does: `SET
//! search_path = compat`, then per transfer `SELECT transfer_money(from, to, amount, user_id)`
//! (amount in major units) and COMMIT; on an error whose text contains `版本冲突` it rolls back
//! and tries again, up to three times; any other error is the caller's.
//!
//! This module simulates a client outside Tally, so it is the one place outside `tally-store`
//! that writes SQL text. Every value goes in as a bind parameter.

use crate::shared::{AccountPicker, Shared, TransferSpec, count};
use rust_decimal::Decimal;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tally_core::TransferResult;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls, Statement};
use uuid::Uuid;

/// The seed's `max_retries`.
pub const SEED_ATTEMPTS_MAX: u32 = 3;
/// The seed retries on an error whose text contains this.
const VERSION_CONFLICT_TEXT: &str = "版本冲突";
/// Recognised in `pg_stat_activity`.
const APPLICATION_NAME: &str = "tally-loadcheck-sql";

/// One writer's connection and its prepared call.
pub struct SqlWriter {
    index: usize,
    conninfo: String,
    connection: Option<(Client, Statement)>,
    picker: AccountPicker,
    rng: fastrand::Rng,
}

/// What one call of the seed's `transfer` came to.
#[derive(Debug, PartialEq, Eq)]
enum Called {
    Applied(Uuid),
    Rejected(TransferResult),
    Failed(String),
}

/// Opens a writer's connection: what the seed's client does on construction.
async fn connect(conninfo: &str) -> Result<(Client, Statement), tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::from_str(conninfo)?;
    config.application_name(APPLICATION_NAME);
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(connection);
    client.batch_execute("SET search_path = compat").await?;
    let call = client
        .prepare_typed("SELECT transfer_money($1, $2, $3, $4)", &[Type::TEXT, Type::TEXT, Type::NUMERIC, Type::TEXT])
        .await?;
    Ok((client, call))
}

impl SqlWriter {
    /// Connects now, so that a database without the seed's interface fails the run at once.
    pub async fn connect(
        index: usize,
        conninfo: &str,
        picker: AccountPicker,
        seed: u64,
    ) -> Result<SqlWriter, tokio_postgres::Error> {
        let connection = connect(conninfo).await?;
        Ok(SqlWriter {
            index,
            conninfo: conninfo.to_owned(),
            connection: Some(connection),
            picker,
            rng: fastrand::Rng::with_seed(seed),
        })
    }

    /// Moves money until the workload is exhausted or the run is cut short.
    pub async fn run(mut self, shared: Arc<Shared>) {
        while shared.take() {
            shared.sql.started.fetch_add(1, Ordering::Relaxed);
            let spec = TransferSpec::random(&mut self.rng, &self.picker);
            let started = Instant::now();
            let called = self.transfer(&spec, &shared).await;
            shared.decided(started.elapsed());
            match called {
                Called::Applied(id) => {
                    shared.sql_records.lock().expect("records lock").push(TransferSpec { id, ..spec });
                }
                Called::Rejected(result) => count(&shared.sql.rejected, result.code()),
                Called::Failed(code) => count(&shared.sql.errors, &code),
            }
        }
    }

    /// The seed's `TransactionProcessor.transfer`.
    async fn transfer(&mut self, spec: &TransferSpec, shared: &Shared) -> Called {
        let from = spec.debit.0.to_string();
        let to = spec.credit.0.to_string();
        let amount = Decimal::from_i128_with_scale(spec.amount_minor, u32::from(crate::setup::SCALE));
        let user_id = format!("loadcheck-sql-{}", self.index);
        for _ in 0..SEED_ATTEMPTS_MAX {
            if self.connection.is_none() {
                match connect(&self.conninfo).await {
                    Ok(connection) => {
                        shared.sql.reconnects.fetch_add(1, Ordering::Relaxed);
                        self.connection = Some(connection);
                    }
                    Err(error) => return Called::Failed(code_of(&error)),
                }
            }
            let (client, call) = self.connection.as_mut().expect("connected above");
            let error = match call_once(client, call, &[&from, &to, &amount, &user_id]).await {
                Ok(id) => return Called::Applied(id),
                Err(error) => error,
            };
            if error.to_string().contains(VERSION_CONFLICT_TEXT)
                || error.as_db_error().is_some_and(|db| db.message().contains(VERSION_CONFLICT_TEXT))
            {
                shared.sql.version_conflict_retries.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            return match rule_of(&error) {
                Some(result) => Called::Rejected(result),
                None => self.failed(&error),
            };
        }
        Called::Failed("seed_retries_exhausted".into())
    }

    /// A failure; a lost connection is opened again before the next call.
    fn failed(&mut self, error: &tokio_postgres::Error) -> Called {
        if error.is_closed() || error.as_db_error().is_none() {
            self.connection = None;
        }
        Called::Failed(code_of(error))
    }
}

/// One transaction: the call, then COMMIT, or ROLLBACK after an error. A COMMIT that fails
/// is an error too: its outcome is not an acknowledgement.
async fn call_once(
    client: &mut Client,
    call: &Statement,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Uuid, tokio_postgres::Error> {
    let transaction = client.transaction().await?;
    match transaction.query_one(call, params).await {
        Ok(row) => {
            let id: Uuid = row.get(0);
            transaction.commit().await?;
            Ok(id)
        }
        Err(error) => {
            let _ = transaction.rollback().await;
            Err(error)
        }
    }
}

/// The rule `compat.transfer_money` refused a transfer by: its messages start with the code.
fn rule_of(error: &tokio_postgres::Error) -> Option<TransferResult> {
    let message = error.as_db_error()?.message();
    let code = message.split(':').next()?;
    TransferResult::from_code(code).filter(|result| !result.is_success())
}

fn code_of(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => db.code().code().to_owned(),
        None => "connection_lost".into(),
    }
}
