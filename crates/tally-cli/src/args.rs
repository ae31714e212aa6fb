//! Command-line arguments (clap derive). Parsing only; no behaviour.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "tally", version, about = "Tally: a double-entry ledger on PostgreSQL 18")]
pub struct Cli {
    /// PostgreSQL connection string or URL. Without it (and without DATABASE_URL), Tally runs
    /// its own embedded PostgreSQL 18 in --data-dir.
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Data directory of the embedded PostgreSQL.
    #[arg(long, global = true, env = "TALLY_DATA_DIR", hide_env_values = true, default_value = "tally-data")]
    pub data_dir: PathBuf,

    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply database migrations and say which ran (every command also migrates first).
    Migrate,
    /// Open, inspect and change accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Register and list currencies and user-defined assets.
    #[command(subcommand)]
    Currency(CurrencyCommand),
    /// Move money: `tally transfer --from A --to B --amount 12.34`, or act on a transfer.
    Transfer(TransferArgs),
    /// Show an account's balance, now or as of a past time.
    Balance {
        /// Account id or code.
        account: String,
        /// The balance as of this time (RFC 3339, e.g. 2026-03-10T17:00:00Z): from the nearest
        /// closed day's snapshot plus the journal since.
        #[arg(long)]
        as_of: Option<String>,
    },
    /// Show an account's transfers, newest first.
    History {
        /// Account id or code.
        account: String,
        /// At most this many entries.
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// Only entries older than this cursor (the `seq` of the last entry of the previous page).
        #[arg(long)]
        before: Option<i64>,
    },
    /// Reconcile: without --date, check the whole ledger agrees with itself; with --date, run
    /// the end of day for that ledger day (close it, check it, store the report).
    Reconcile(ReconcileArgs),
    /// Import bank statement files (camt.053/052/054, MT940, CSV) and match each statement against
    /// the journal of the account that mirrors its bank account.
    #[command(subcommand)]
    Statement(StatementCommand),
    /// Show or set what a ledger day is (time zone and cut-off), and list the closed days.
    #[command(subcommand)]
    Days(DaysCommand),
    /// Expire every hold whose timeout has passed.
    Expire,
    /// Show Tally at work: opens accounts, moves money, shows balances, history and a reconciliation.
    Demo,
    /// Serve the HTTP API (REST v1) until SIGTERM or Ctrl-C.
    Serve(ServeArgs),
    /// Create, list and revoke API keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Make, list and show ledgers: sets of books. Every account belongs to one; a transfer
    /// stays inside one. Everything that never names a ledger is in `default`.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Relay events out of the ledger in a process of its own, until SIGTERM or Ctrl-C: to NATS
    /// JetStream (--nats-url), to the registered webhooks (--webhooks), or both. Of several
    /// relays on one database (`tally serve` dispatches webhooks too, unless --no-webhooks), one
    /// holds each lease and the others stand by.
    Relay(RelayArgs),
    /// Register, list, show, disable, enable and delete webhook endpoints; read their delivery
    /// logs; redeliver a parked delivery.
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Manage the embedded PostgreSQL server.
    #[command(subcommand)]
    Pg(PgCommand),
    /// Measure throughput and latency on a fresh benchmark database (embedded: `tally_bench`).
    Bench(BenchArgs),
    /// Measure the end-of-day run on a generated ledger (embedded: database `tally_bench_eod`).
    BenchEod(BenchEodArgs),
    /// Run several `tally serve` processes and SQL-native writers on shared hot accounts (or a
    /// bank's customers and house accounts: --scenario bank) with impatient, resubmitting
    /// clients, then check every acknowledged transfer and the books, and report each process's
    /// engine batches and re-runs (embedded: a fresh database `tally_loadcheck` per round).
    Loadcheck(LoadcheckArgs),
    /// Endless load with intent and ack logs, for the crash harness.
    #[command(hide = true)]
    Load(LoadArgs),
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// The ledger day to reconcile (YYYY-MM-DD), or `yesterday` for the newest day that has ended.
    #[arg(long)]
    pub date: Option<String>,
    /// How to show the report: a table on the terminal, or json, csv (the findings) or html (a
    /// self-contained page with a chart of the day's volume by hour). With --date: the check of
    /// the whole ledger without it prints a table (or --json).
    #[arg(long, value_enum, default_value = "table", requires = "date")]
    pub format: ReportFormatArg,
    /// Write the report to this file instead of standard output. With --date.
    #[arg(long, requires = "date")]
    pub output: Option<PathBuf>,
    /// Show the report restricted to this ledger (id or code): its totals, figures and findings,
    /// marked as filtered. The day closes and is checked for every ledger, and the stored report
    /// stays whole. With --date.
    #[arg(long, requires = "date")]
    pub ledger: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormatArg {
    Table,
    Json,
    Csv,
    Html,
}

#[derive(Debug, Subcommand)]
pub enum StatementCommand {
    /// Import a statement file of one or several statements, map each to the Tally account that
    /// mirrors its bank account, match it against that account's journal and compare its
    /// balances with Tally's. Importing the same file again changes nothing.
    Import(Box<StatementImportArgs>),
    /// Show the report of an imported statement, or of an imported file.
    Show {
        /// The statement's or the file's id, as `import` printed it.
        id: uuid::Uuid,
        /// Only in this ledger (id or code): a statement of another ledger is not found; a file
        /// shows its statements of this ledger (and its unmapped ones).
        #[arg(long)]
        ledger: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: ReportFormatArg,
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// List imported statements, newest first, with the outcome of their matching.
    List {
        /// Only the statements of this ledger (id or code).
        #[arg(long)]
        ledger: Option<String>,
        /// Only the statements of this account (id or code).
        #[arg(long)]
        account: Option<String>,
        /// How many (1 to 1000).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..=1000))]
        limit: i64,
        /// Only statements older than this one (the last of the previous page).
        #[arg(long)]
        before: Option<uuid::Uuid>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatementFormatArg {
    /// camt.053/052/054 or MT940, recognized by content (CSV must be named).
    Auto,
    Camt053,
    Camt052,
    Camt054,
    Mt940,
    Csv,
}

#[derive(Debug, Args)]
pub struct StatementImportArgs {
    /// The statement file.
    pub file: PathBuf,
    /// The Tally account that mirrors the file's bank account (id or code), for a file whose
    /// statements (those --map does not name) are all of one bank account.
    #[arg(long)]
    pub account: Option<String>,
    /// BANK_ACCOUNT=TALLY_ACCOUNT: the Tally account (id or code) that mirrors a bank account
    /// (an IBAN or the MT940 :25: value). Repeatable. Statements of bank accounts mapped to
    /// nothing are reported as unmapped.
    #[arg(long = "map", value_name = "BANK_ACCOUNT=TALLY_ACCOUNT")]
    pub map: Vec<String>,
    /// A file of BANK_ACCOUNT=TALLY_ACCOUNT lines (blank lines and # comments skipped), read as
    /// more --map entries.
    #[arg(long)]
    pub map_file: Option<PathBuf>,
    /// The file's character set (iso-8859-2, windows-1250, ...); by default UTF-8, or detected
    /// when the file is not UTF-8.
    #[arg(long)]
    pub encoding: Option<String>,
    #[arg(long, value_enum, default_value = "auto")]
    pub format: StatementFormatArg,
    /// Amounts that differ by at most this much still match (a decimal amount).
    #[arg(long, default_value = "0")]
    pub tolerance: String,
    /// Dates that differ by at most this many days still match.
    #[arg(long, default_value_t = 2)]
    pub date_window_days: u32,
    /// How to show the report.
    #[arg(long, value_enum, default_value = "table")]
    pub report: ReportFormatArg,
    /// Write the report to this file instead of standard output.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// CSV: the statement's own id (CSV files do not carry one).
    #[arg(long)]
    pub statement_id: Option<String>,
    /// CSV: the opening balance, `YYYY-MM-DD:AMOUNT` (signed: a debit balance is negative).
    #[arg(long)]
    pub opening_balance: Option<String>,
    /// CSV: the closing balance, `YYYY-MM-DD:AMOUNT`.
    #[arg(long)]
    pub closing_balance: Option<String>,
    /// CSV: the column of the booking date.
    #[arg(long, default_value = "date")]
    pub csv_date: String,
    /// CSV: the column of the amount (signed, unless --csv-credit-debit names a C/D column).
    #[arg(long, default_value = "amount")]
    pub csv_amount: String,
    #[arg(long)]
    pub csv_credit_debit: Option<String>,
    #[arg(long, default_value = "reference")]
    pub csv_reference: String,
    #[arg(long, default_value = "counterparty")]
    pub csv_counterparty: String,
    #[arg(long)]
    pub csv_description: Option<String>,
    #[arg(long)]
    pub csv_value_date: Option<String>,
    /// CSV: the field separator.
    #[arg(long, default_value_t = ',')]
    pub csv_delimiter: char,
    /// CSV: the date format, in the `time` crate's description syntax.
    #[arg(long, default_value = "[year]-[month]-[day]")]
    pub csv_date_format: String,
    /// CSV: amounts use a decimal comma (`1234,56`).
    #[arg(long)]
    pub csv_decimal_comma: bool,
}

#[derive(Debug, Subcommand)]
pub enum DaysCommand {
    /// The time zone and cut-off, and the newest closed days.
    Show,
    /// Set the time zone and cut-off (until a day with transfers is closed; days before the
    /// ledger's first transfer never close).
    Set {
        /// An IANA time zone, e.g. Europe/Berlin.
        #[arg(long, default_value = "UTC")]
        time_zone: String,
        /// When a day ends, HH:MM in that time zone; 24:00 is midnight at the end of the day.
        #[arg(long, default_value = "24:00")]
        cutoff: String,
    },
}

#[derive(Debug, Args)]
pub struct BenchEodArgs {
    /// Accounts of the generated ledger.
    #[arg(long, default_value_t = 1_000_000)]
    pub accounts: i64,
    /// Transfers on each generated day, oldest first; the days end with yesterday.
    #[arg(long, default_value = "10000000,10000000,100000")]
    pub day_sizes: String,
    /// Reconcile the ledger an earlier run generated (reopening its days) instead of generating
    /// a new one.
    #[arg(long)]
    pub reuse: bool,
    /// Where to write the result as JSON.
    #[arg(long, default_value = "tally-bench-eod.json")]
    pub json_out: PathBuf,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    #[arg(long)]
    pub intent_log: PathBuf,
    #[arg(long)]
    pub ack_log: PathBuf,
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    #[arg(long, default_value_t = 10)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// engine: batched through the posting engine; direct: one SQL transaction per transfer;
    /// http: through the HTTP API on a loopback port (posted transfers only).
    #[arg(long, value_enum, default_value = "engine")]
    pub mode: BenchMode,
    /// With --mode http: where the API server listens (default: a free loopback port). It
    /// prints its operator console's address and key, to watch the run live.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// Accounts to open and fund before the run.
    #[arg(long, default_value_t = 100_000)]
    pub accounts: usize,
    /// How long to run, e.g. 60s, 2m.
    #[arg(long, default_value = "60s")]
    pub duration: String,
    /// How clients pick accounts.
    #[arg(long, value_enum, default_value = "zipf")]
    pub distribution: Distribution,
    #[arg(long, default_value_t = 1.0)]
    pub zipf_exponent: f64,
    /// Concurrent clients; each sends a request and waits for its answer before the next.
    #[arg(long, default_value_t = 1_000)]
    pub concurrency: usize,
    /// Transfers per client request (1 = one transfer per request).
    #[arg(long, default_value_t = 1)]
    pub batch_size: usize,
    /// Share of transfers that are holds; each is posted or voided in the client's next request.
    #[arg(long, default_value_t = 0)]
    pub pending_percent: u8,
    /// Batches the engine commits at once.
    #[arg(long, default_value_t = 3)]
    pub committers: usize,
    /// Lock accounts for the whole batch instead of deciding on the state earlier batches
    /// will leave (the engine's speculative pipelining).
    #[arg(long)]
    pub no_speculation: bool,
    /// How long the engine lets a batch fill, in microseconds.
    #[arg(long, default_value_t = 1_000)]
    pub linger_us: u64,
    /// Seed for the clients' random choices.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where to write the result as JSON.
    #[arg(long, default_value = "tally-bench.json")]
    pub json_out: PathBuf,
    /// Where to write the chart (throughput over time, latency distribution).
    #[arg(long, default_value = "tally-bench.svg")]
    pub svg_out: PathBuf,
    /// A streaming replica of the benchmark's database (libpq string or URL, naming the
    /// database `tally_bench` on the replica): its lag is sampled every 10 ms during the load,
    /// and its catch-up timed after it. On the embedded server, make one with `tally pg standby
    /// create --async`.
    #[arg(long, value_name = "URL")]
    pub replica_url: Option<String>,
    /// Relay every event to NATS JetStream at this URL during the run, from this process, on a
    /// stream of the run's own (BENCH_<time>_<pid>_<n>, deleted at the end), and report the
    /// relay's throughput, its lag sampled every 100 ms, and its drain time.
    #[arg(long, value_name = "URL")]
    pub nats_url: Option<String>,
    /// With --nats-url: stop the relay while the load runs, and time it draining the backlog
    /// after.
    #[arg(long, requires = "nats_url")]
    pub nats_after: bool,
    /// With --nats-url: keep the run's stream.
    #[arg(long, requires = "nats_url")]
    pub nats_keep_stream: bool,
    /// With --nats-url: how long to wait for the relay to publish every event, before the
    /// load and after it.
    #[arg(long, default_value = "300s")]
    pub nats_drain_timeout: String,
    /// Register this many webhook endpoints at a port that refuses connections (all event
    /// types), and run the webhook dispatcher during the run.
    #[arg(long, default_value_t = 0)]
    pub webhooks_dead: usize,
    /// Run an HTTP receiver in this process that answers 200, register a webhook endpoint at
    /// it, and report deliveries per second.
    #[arg(long)]
    pub webhook_sink: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BenchMode {
    Engine,
    Direct,
    /// Through the HTTP API, served in this process on a loopback port.
    Http,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Distribution {
    Uniform,
    Zipf,
}

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Open an account.
    Create {
        /// Currency or asset code, e.g. CNY, USD, JPY.
        #[arg(long)]
        currency: String,
        /// Client-chosen account id (a UUID); generated (UUIDv7) when absent.
        #[arg(long)]
        id: Option<uuid::Uuid>,
        /// External code, unique within the ledger, e.g. wallet:alice.
        #[arg(long)]
        code: Option<String>,
        /// The ledger (id or code) the account belongs to; `default` when absent.
        #[arg(long)]
        ledger: Option<String>,
        /// Allow the balance to go this far below zero (a decimal amount).
        #[arg(long, conflicts_with = "unrestricted")]
        overdraft_limit: Option<String>,
        /// No balance bound at all: for system accounts (equity, settlement, fees).
        #[arg(long)]
        unrestricted: bool,
        /// JSON metadata (at most 4 KiB).
        #[arg(long)]
        metadata: Option<String>,
    },
    /// Show one account.
    Show { account: String },
    /// List accounts.
    List {
        #[arg(long)]
        currency: Option<String>,
        /// Only accounts of this ledger (id or code).
        #[arg(long)]
        ledger: Option<String>,
        #[arg(long, value_enum)]
        status: Option<StatusArg>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// Only accounts whose id sorts after this one.
        #[arg(long)]
        after: Option<uuid::Uuid>,
    },
    /// Freeze an account: no money moves in or out until it is unfrozen.
    Freeze(StatusChangeArgs),
    /// Unfreeze a frozen account.
    Unfreeze(StatusChangeArgs),
    /// Close an empty account for good.
    Close(StatusChangeArgs),
}

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Make a ledger (idempotent: the same code with the same fields changes nothing).
    Create {
        /// 1 to 63 lower-case letters, digits, _ or -, starting with a letter: eu-wallets.
        code: String,
        /// For people; the code when absent.
        #[arg(long)]
        name: Option<String>,
        /// JSON metadata (at most 4 KiB).
        #[arg(long)]
        metadata: Option<String>,
    },
    /// List every ledger.
    List,
    /// Show one ledger, by id or code.
    Show { ledger: String },
}

#[derive(Debug, Args)]
pub struct StatusChangeArgs {
    pub account: String,
    /// Only change the account if it is still at this version.
    #[arg(long)]
    pub expected_version: Option<i64>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StatusArg {
    Active,
    Frozen,
    Closed,
}

#[derive(Debug, Subcommand)]
pub enum CurrencyCommand {
    /// Register a user-defined asset with its number of decimals (0 to 18).
    Add {
        code: String,
        #[arg(long)]
        scale: u8,
    },
    /// Show a currency's scale.
    Show { code: String },
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct TransferArgs {
    #[command(subcommand)]
    pub action: Option<TransferAction>,
    /// Account to debit (money leaves it): id or code.
    #[arg(long, required = true)]
    pub from: Option<String>,
    /// Account to credit (money enters it): id or code.
    #[arg(long, required = true)]
    pub to: Option<String>,
    /// Decimal amount in the accounts' currency, e.g. 12.34.
    #[arg(long, required = true, allow_hyphen_values = true)]
    pub amount: Option<String>,
    /// Must equal the accounts' currency when given.
    #[arg(long)]
    pub currency: Option<String>,
    /// The transfer id (a UUID), its idempotency key: retrying with the same id never moves
    /// money twice. Generated when absent.
    #[arg(long)]
    pub id: Option<uuid::Uuid>,
    /// Only apply if the debit account is at this version.
    #[arg(long)]
    pub expected_from_version: Option<i64>,
    /// Only apply if the credit account is at this version.
    #[arg(long)]
    pub expected_to_version: Option<i64>,
    /// Place a hold instead of moving money; capture it with `transfer post`.
    #[arg(long)]
    pub pending: bool,
    /// With --pending: the hold expires after this long, e.g. 60s, 15m, 2h.
    #[arg(long, requires = "pending")]
    pub timeout: Option<String>,
    /// Your own reference for the transfer (an invoice or order number; at most 256 bytes),
    /// kept in the journal and matched against bank statements.
    #[arg(long)]
    pub reference: Option<String>,
    /// JSON metadata (at most 4 KiB).
    #[arg(long)]
    pub metadata: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TransferAction {
    /// Capture a pending transfer, fully or partly (--amount).
    Post {
        pending_id: uuid::Uuid,
        #[arg(long, allow_hyphen_values = true)]
        amount: Option<String>,
        #[arg(long)]
        id: Option<uuid::Uuid>,
    },
    /// Release a pending transfer.
    Void {
        pending_id: uuid::Uuid,
        #[arg(long)]
        id: Option<uuid::Uuid>,
    },
    /// Move a posted transfer's money back with a new transfer that points to it.
    Reverse {
        transfer_id: uuid::Uuid,
        #[arg(long)]
        id: Option<uuid::Uuid>,
    },
    /// Show a transfer (or the recorded rejection under that id).
    Show { transfer_id: uuid::Uuid },
}

#[derive(Debug, Subcommand)]
pub enum PgCommand {
    /// Start the embedded server and keep it running (other commands then reuse it).
    Start,
    /// Stop the embedded server.
    Stop,
    /// Say whether the embedded server runs, and how to connect to it.
    Status,
    /// Open psql on the ledger database (extra arguments go to psql).
    Psql {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Make --data-dir a streaming standby of another data directory's running server.
    #[command(subcommand)]
    Standby(StandbyCommand),
    /// Promote the standby in --data-dir to primary (`pg_ctl promote`) and wait until it accepts
    /// writes. Its former primary must not run as a primary again.
    Promote,
}

#[derive(Debug, Subcommand)]
pub enum StandbyCommand {
    /// Copy the running primary of --from into --data-dir (a new or empty directory) with
    /// pg_basebackup, start it as a streaming standby, and make it the primary's synchronous
    /// standby (synchronous_standby_names): every COMMIT on the primary then waits until this
    /// standby has it, and waits while it is down. `tally pg start` starts it as a standby;
    /// `tally pg promote` makes it the primary.
    Create {
        /// The primary's data directory (as its --data-dir); its server must be running.
        #[arg(long, value_name = "DATA_DIR")]
        from: PathBuf,
        /// The standby's application_name on the primary and the name of its replication slot
        /// (lowercase letters, digits, underscores).
        #[arg(long, default_value = tally_pg::STANDBY_NAME_DEFAULT)]
        name: String,
        /// An asynchronous replica instead (for reads): the primary does not wait for it, and
        /// it may lack the last transactions the primary acknowledged.
        #[arg(long = "async")]
        asynchronous: bool,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Largest request body in bytes, except on the batch endpoint.
    #[arg(long, default_value_t = 1 << 20)]
    pub body_limit: usize,
    /// Largest body of POST /v1/transfers/batch in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    pub batch_body_limit: usize,
    /// Open connections at most.
    #[arg(long, default_value_t = 10_000)]
    pub max_connections: usize,
    /// Requests handled at once at most; beyond, 503 overloaded.
    #[arg(long, default_value_t = 20_000)]
    pub max_in_flight: usize,
    /// Requests per second per API key (0: no limit).
    #[arg(long, default_value_t = 100_000)]
    pub rate_limit: u32,
    /// Longest a request may run, e.g. 30s.
    #[arg(long, default_value = "30s")]
    pub request_timeout: String,
    /// Serve HTTPS: the PEM certificate chain (leaf first). Needs --tls-key.
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// Reconcile each ledger day this long after it ended (e.g. 10m), as `tally reconcile
    /// --date` would; `off` for no scheduled reconciliation.
    #[arg(long, default_value = "10m")]
    pub reconcile_after: String,
    /// The longest a shutdown (SIGTERM, Ctrl-C) takes, e.g. 30s. Transfers still unfinished
    /// shortly before it are rolled back where possible and answered `outcome_unknown`.
    #[arg(long, default_value = "30s")]
    pub shutdown_timeout: String,
    /// How long the engine keeps trying to find out whether a batch whose COMMIT went
    /// unanswered (the database lost mid-commit) committed, before its callers are answered
    /// outcome_unknown; up to 60s and below --request-timeout. With a standby, set it above the
    /// time a failover takes (noticing the loss and promoting), so that those callers get a
    /// definite answer from the new primary [default: 5s].
    #[arg(long, value_name = "DURATION")]
    pub resolve_within: Option<String>,
    /// A streaming replica of the database (libpq string or URL): history, transfer lookups,
    /// listings, statements, reports and balances as of a time are read there when it is fresh
    /// enough; everything else, and every balance a transfer is decided on, stays on the
    /// primary. Answers say where they were read (`Tally-Read-From`).
    #[arg(long, value_name = "URL", env = "TALLY_REPLICA_URL", hide_env_values = true)]
    pub replica_url: Option<String>,
    /// Reads go to the primary while the replica lags more than this (up to 1h).
    #[arg(long, value_name = "DURATION", default_value = "1s", requires = "replica_url")]
    pub replica_max_lag: String,
    /// How long a read with `Tally-Min-Lsn` (read-your-writes: the `Tally-Commit-Lsn` of the
    /// caller's last write) waits for the replica to replay past it before it goes to the
    /// primary (up to 10s).
    #[arg(long, value_name = "DURATION", default_value = "500ms", requires = "replica_url")]
    pub replica_wait: String,
    /// Serve the operator console (`/console/`) from this directory (a build of `console/`)
    /// instead of the copy built into this binary: for working on the console.
    #[arg(long, value_name = "DIR", env = "TALLY_CONSOLE_DIR")]
    pub console_dir: Option<PathBuf>,
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Dispatch no webhooks in this process (by default it does, unless another process on the
    /// database holds the dispatcher's lease: then it stands by). `tally relay --webhooks` can
    /// dispatch them instead.
    #[arg(long, conflicts_with_all = ["webhook_attempts", "webhook_retry_base", "webhook_timeout"])]
    pub no_webhooks: bool,
    #[command(flatten)]
    pub webhook: WebhookArgs,
}

/// Where to relay events in NATS JetStream.
#[derive(Debug, Args)]
pub struct NatsArgs {
    /// Relay every event to NATS JetStream at this URL (nats://host:port), each exactly once in
    /// the stream (its Nats-Msg-Id is the event's sequence number).
    #[arg(long, env = "TALLY_NATS_URL", value_name = "URL")]
    pub nats_url: Option<String>,
    /// The JetStream stream, created if missing [default: TALLY].
    #[arg(long, value_name = "NAME", requires = "nats_url")]
    pub nats_stream: Option<String>,
    /// The first token of every subject: `<prefix>.<event type>` [default: tally].
    #[arg(long, value_name = "PREFIX", requires = "nats_url")]
    pub nats_subject_prefix: Option<String>,
}

/// How webhooks are delivered.
#[derive(Debug, Args)]
pub struct WebhookArgs {
    /// Attempts before a webhook delivery is parked (1 to 50) [default: 12].
    #[arg(long, value_name = "N")]
    pub webhook_attempts: Option<u32>,
    /// The first retry's delay, e.g. 1s; each further one doubles, up to an hour, with jitter
    /// [default: 1s].
    #[arg(long, value_name = "DURATION")]
    pub webhook_retry_base: Option<String>,
    /// How long an endpoint has to answer, connecting included, e.g. 10s (at most 60s)
    /// [default: 10s].
    #[arg(long, value_name = "DURATION")]
    pub webhook_timeout: Option<String>,
}

impl WebhookArgs {
    /// Whether any of these flags was given.
    pub fn given(&self) -> bool {
        self.webhook_attempts.is_some() || self.webhook_retry_base.is_some() || self.webhook_timeout.is_some()
    }
}

#[derive(Debug, Args)]
pub struct RelayArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Dispatch the registered webhooks.
    #[arg(long)]
    pub webhooks: bool,
    #[command(flatten)]
    pub webhook: WebhookArgs,
}

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Register an endpoint; prints it with its signing secret, which is shown only this once.
    Add {
        /// Where deliveries are POSTed (http:// or https://).
        url: String,
        /// Event types to deliver, comma-separated: types (transfer.posted), families
        /// (transfer.*) or everything (*).
        #[arg(long, value_delimiter = ',', required = true, value_name = "TYPES")]
        events: Vec<String>,
        /// What the endpoint is for (at most 256 characters).
        #[arg(long)]
        description: Option<String>,
        /// Deliver the events after this sequence number (0: every event so far); by default
        /// only events to come.
        #[arg(long, value_name = "SEQ")]
        after_seq: Option<i64>,
    },
    /// List endpoints (never their secrets).
    List,
    /// Show an endpoint.
    Show { id: uuid::Uuid },
    /// Stop delivering to an endpoint until it is enabled again.
    Disable { id: uuid::Uuid },
    /// Deliver to an endpoint again, from where it stopped.
    Enable { id: uuid::Uuid },
    /// Delete an endpoint and its delivery log (the audit log keeps that it existed).
    Delete { id: uuid::Uuid },
    /// An endpoint's delivery log, newest first, with each delivery's attempts.
    Deliveries {
        id: uuid::Uuid,
        #[arg(long, value_enum)]
        status: Option<DeliveryStatusArg>,
        /// At most this many deliveries (1 to 1,000).
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// Only deliveries of events before this sequence number (the previous page's last).
        #[arg(long, value_name = "SEQ")]
        before: Option<i64>,
    },
    /// Send a parked delivery again now; the endpoint's later events follow it in order.
    Redeliver { id: uuid::Uuid, seq: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeliveryStatusArg {
    Pending,
    Delivered,
    Parked,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a key and print it once (only its hash is stored).
    Create {
        /// A unique name; the audit trail records `key:<name>`.
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        role: RoleArg,
        /// For a reader: an account (id or code) it may read. Repeat for several.
        #[arg(long = "account")]
        accounts: Vec<String>,
        /// Scope the key to a ledger (id or code): it reads and changes only that ledger's
        /// accounts and transfers. Repeat for several; none means every ledger.
        #[arg(long = "ledger")]
        ledgers: Vec<String>,
    },
    /// List keys (never the keys themselves).
    List,
    /// Revoke a key by name; it stops working within a second.
    Revoke { name: String },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RoleArg {
    /// Keys and accounts, and everything else.
    Admin,
    /// Move money; read accounts and transfers.
    Operator,
    /// Read everything, including audit and events.
    Auditor,
    /// Read only the named accounts.
    Reader,
}

/// `tally loadcheck --scenario`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScenarioArg {
    HotAccounts,
    Bank,
}

#[derive(Debug, Args)]
pub struct LoadcheckArgs {
    /// `tally serve` processes on the database.
    #[arg(long, default_value_t = 2)]
    pub processes: usize,
    /// Connections calling the seed's `compat.transfer_money`, as its Python client does.
    #[arg(long, default_value_t = 4)]
    pub sql_writers: usize,
    /// What the writers do. hot-accounts: single transfers among --accounts hot accounts.
    /// bank: --customers customer accounts that may not go negative and --house-accounts
    /// bank-owned ones (the first collects fees, the others are settlement accounts); 80%
    /// payments between customers, each with a 0.5% fee to the fees account in the same atomic
    /// request, 10% deposits and 10% withdrawals between settlement and customers; then every
    /// account's balance is checked against the acknowledged transfers.
    #[arg(long, value_enum, default_value = "hot-accounts")]
    pub scenario: ScenarioArg,
    /// Hot accounts every writer moves money among (hot-accounts).
    #[arg(long, default_value_t = 8)]
    pub accounts: usize,
    /// Customers of the bank, each funded with 200.00 (bank).
    #[arg(long, default_value_t = 1_000)]
    pub customers: usize,
    /// House accounts of the bank: fees, then settlement accounts (bank; at least 2).
    #[arg(long, default_value_t = 4)]
    pub house_accounts: usize,
    /// Skew of the account choice (hot accounts, or customers): account i (from 0) has weight
    /// 1/(i+1)^s; 0 is uniform.
    #[arg(long, default_value_t = 0.0)]
    pub zipf_exponent: f64,
    /// HTTP clients per process.
    #[arg(long, default_value_t = 24)]
    pub clients: usize,
    /// Transfers per round in all (HTTP and SQL; a payment and its fee count as one); instead of
    /// --duration.
    #[arg(long, conflicts_with = "duration")]
    pub transfers: Option<u64>,
    /// How long each round sends new transfers, e.g. 30s.
    #[arg(long, default_value = "30s")]
    pub duration: String,
    /// How long an HTTP client waits before it resubmits the same transfer to another process.
    #[arg(long, default_value = "200ms")]
    pub client_timeout: String,
    /// The share of HTTP transfers (0 to 1) sent to two processes at once.
    #[arg(long, default_value_t = 0.1)]
    pub hedge_fraction: f64,
    /// Rounds to run; each on a fresh database when embedded. On --database-url, the rounds
    /// stop at the first failure (a broken ledger would fail every later round too).
    #[arg(long, default_value_t = 1)]
    pub rounds: u32,
    /// Each round's load must end by then (default: the duration plus a minute, or 5 minutes
    /// for --transfers).
    #[arg(long)]
    pub deadline: Option<String>,
    /// A round that decides no transfer for this long is hung.
    #[arg(long, default_value = "15s")]
    pub stall_timeout: String,
    /// Seed of the first round's random choices (each round adds its number).
    #[arg(long)]
    pub seed: Option<u64>,
}
