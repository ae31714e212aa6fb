//! The seed's SQL interface (schema `compat`, migration 0002): the seed's own Python client run
//! unmodified against it (tests/compat/check_seed.py), and the same interface through raw SQL.

use crate::support::*;
use std::process::Command;
use tally_core::{AccountId, BalanceRule, TransferResult};
use tokio_postgres::types::Type;

const PSYCOPG2_HINT: &str = "install psycopg2-binary: pip install psycopg2-binary";

/// The seed's `_check_balance_consistency` query, copied from the seed document, with `%s` as `$1::date`.
const SEED_RECONCILIATION_SQL: &str = "
            WITH calculated_balance AS (
                SELECT
                    account_id,
                    COALESCE(SUM(
                        CASE
                            WHEN to_account_id = account_id THEN amount
                            WHEN from_account_id = account_id THEN -amount
                            ELSE 0
                        END
                    ), 0) AS calc_balance
                FROM accounts a
                LEFT JOIN transactions t ON (
                    (t.from_account_id = a.account_id OR t.to_account_id = a.account_id)
                    AND t.status = 'success'
                    AND DATE(t.completed_at) <= $1::date
                )
                GROUP BY account_id
            )
            SELECT
                a.account_id,
                a.balance AS actual_balance,
                cb.calc_balance AS calculated_balance,
                a.balance - cb.calc_balance AS diff
            FROM accounts a
            JOIN calculated_balance cb ON a.account_id = cb.account_id
            WHERE ABS(a.balance - cb.calc_balance) > 0.01;  -- 容差0.01元
        ";

/// bank (unrestricted), alice and bob (no overdraft), all CNY; alice funded with 1000.00 from bank.
async fn seed_accounts(ledger: &Ledger) -> (AccountId, AccountId, AccountId) {
    let bank = ledger.open("bank", "CNY", BalanceRule::Unrestricted).await;
    let alice = ledger.open("alice", "CNY", BalanceRule::NoOverdraft).await;
    let bob = ledger.open("bob", "CNY", BalanceRule::NoOverdraft).await;
    assert_eq!(ledger.post(posted(bank, alice, 100_000)).await.result, TransferResult::Ok);
    (bank, alice, bob)
}

/// Fails (never skips) when python3 or psycopg2 is missing.
fn require_psycopg2() {
    let probe = Command::new("python3").args(["-c", "import psycopg2"]).output();
    match probe {
        Err(e) => panic!("python3 is required for the seed compatibility test ({e}); then {PSYCOPG2_HINT}"),
        Ok(out) if !out.status.success() => {
            panic!("python3 cannot import psycopg2: {PSYCOPG2_HINT}\n{}", String::from_utf8_lossy(&out.stderr))
        }
        Ok(_) => {}
    }
}

#[tokio::test]
async fn the_seeds_python_client_runs_unmodified_against_compat() {
    require_psycopg2();
    let ledger = ledger().await;
    seed_accounts(&ledger).await;

    let workspace = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let out = Command::new("python3")
        .args(["tests/compat/check_seed.py", &ledger.db.conninfo])
        .current_dir(workspace)
        .output()
        .expect("run python3 tests/compat/check_seed.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains(" 0 failed"),
        "tests/compat/check_seed.py failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    ledger.assert_consistent().await;
}

#[tokio::test]
async fn compat_sql_is_idempotent_checks_decimals_and_reconciles() {
    let ledger = ledger().await;
    let (bank, alice, bob) = seed_accounts(&ledger).await;
    let client = ledger.db.connect().await;
    client.batch_execute("SET search_path = compat").await.unwrap();

    // The same explicit transaction_id twice: one transfer, the same id back.
    let id = new_id().0;
    let call = "SELECT transfer_money($1::text, $2::text, $3::text::numeric, $4::text, $5::uuid)";
    let (from, to) = (alice.to_string(), bob.to_string());
    let first: uuid::Uuid = client.query_one(call, &[&from, &to, &"10.00", &"user-1", &id]).await.unwrap().get(0);
    let second: uuid::Uuid = client.query_one(call, &[&from, &to, &"10.00", &"user-1", &id]).await.unwrap().get(0);
    assert_eq!((first, second), (id, id));
    assert_eq!(ledger.balance(alice).await, 100_000 - 1_000);
    assert_eq!(ledger.balance(bob).await, 1_000);
    let rows: i64 =
        client.query_one("SELECT count(*) FROM transactions WHERE transaction_id = $1", &[&id]).await.unwrap().get(0);
    assert_eq!(rows, 1);
    let audit: i64 = client
        .query_one("SELECT count(*) FROM public.audit_log WHERE entity_id = $1", &[&id.to_string()])
        .await
        .unwrap()
        .get(0);
    assert_eq!(audit, 1, "a replay writes no second audit row");
    // The same id with another amount is refused, not posted.
    let err = client.query_one(call, &[&from, &to, &"11.00", &"user-1", &id]).await.unwrap_err();
    let message = err.as_db_error().map(|e| e.message().to_owned()).unwrap_or_else(|| err.to_string());
    assert!(message.contains("exists_with_different_fields"), "{message}");

    // More decimals than CNY has.
    let err = client.query_one(call, &[&from, &to, &"1.234", &"user-1", &new_id().0]).await.unwrap_err();
    let message = err.as_db_error().map(|e| e.message().to_owned()).unwrap_or_else(|| err.to_string());
    assert!(message.contains("amount_too_many_decimals"), "{message}");
    assert_eq!(ledger.balance(alice).await, 100_000 - 1_000);

    // Codes work as well as ids.
    let by_code = "SELECT transfer_money('bob', 'alice', 0.5, 'user-2')";
    client.query_one(by_code, &[]).await.unwrap();
    assert_eq!(ledger.balance(bob).await, 950);

    // A hold shows as 'pending' and moves no balance, only availability.
    let hold = ledger.post(pending(alice, bob, 200, None)).await.transfer.expect("hold applied").id.0;
    let row = client
        .query_one("SELECT status, amount::text FROM transactions WHERE transaction_id = $1", &[&hold])
        .await
        .unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, String>(1)), ("pending".to_owned(), "2.00".to_owned()));
    let row = client
        .query_one("SELECT balance::text, available::text FROM accounts WHERE account_code = 'alice'", &[])
        .await
        .unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, String>(1)), ("990.50".to_owned(), "988.50".to_owned()));

    // The seed's reconciliation query finds nothing as of today (current_date)...
    let statement = client.prepare_typed(SEED_RECONCILIATION_SQL, &[Type::TEXT]).await.unwrap();
    let today: String = client.query_one("SELECT current_date::text", &[]).await.unwrap().get(0);
    let rows = client.query(&statement, &[&today]).await.unwrap();
    assert!(rows.is_empty(), "seed reconciliation found {} inconsistent accounts", rows.len());
    // ...and is not vacuous: as of yesterday none of today's money had moved.
    let yesterday: String = client.query_one("SELECT (current_date - 1)::text", &[]).await.unwrap().get(0);
    let mut flagged: Vec<uuid::Uuid> =
        client.query(&statement, &[&yesterday]).await.unwrap().iter().map(|r| r.get(0)).collect();
    let mut expected = vec![bank.0, alice.0, bob.0];
    flagged.sort();
    expected.sort();
    assert_eq!(flagged, expected);

    ledger.assert_consistent().await;
}
