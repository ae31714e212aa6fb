//! The `tally` command. Parses arguments, sets up logging, opens the ledger and hands over to
//! the command; errors are reported here, at the edge, with their context.

mod args;
mod bench;
mod commands;
mod connect;
mod demo;
mod load;
mod loadcheck;
mod recon;
mod relay;
mod render;
mod serve;

use anyhow::Result;
use args::{Cli, Command, PgCommand, StandbyCommand};
use clap::Parser;
use connect::Database;
use render::Output;

/// mimalloc instead of the system allocator: the engine and the HTTP server allocate and free
/// many short-lived buffers across threads, where glibc's malloc spent over a quarter of the
/// process's CPU in a `tally bench --mode http` profile (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("TALLY_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    if let Err(error) = runtime.block_on(run(cli)) {
        match code_of(&error) {
            Some(code) => eprintln!("error: {} ({code})", render::error_line(&error)),
            None => eprintln!("error: {}", render::error_line(&error)),
        }
        let malformed = error.downcast_ref::<render::Malformed>().is_some();
        std::process::exit(if malformed { render::EXIT_MALFORMED } else { 1 });
    }
}

/// The stable code of an error that has one: the same code the HTTP API answers with.
fn code_of(error: &anyhow::Error) -> Option<&'static str> {
    if let Some(error) = error.downcast_ref::<tally_store::StoreError>() {
        return Some(error.code());
    }
    if let Some(error) = error.downcast_ref::<tally_recon::ReconError>() {
        return Some(error.code());
    }
    if let Some(error) = error.downcast_ref::<tally_engine::EngineError>() {
        return Some(error.code());
    }
    if let Some(error) = error.downcast_ref::<tally_core::CurrencyError>() {
        return Some(error.code());
    }
    if let Some(error) = error.downcast_ref::<tally_relay::RelayError>() {
        return Some(error.code());
    }
    if let Some(error) = error.downcast_ref::<tally_pg::PgError>() {
        return Some(error.code());
    }
    None
}

async fn run(cli: Cli) -> Result<()> {
    let out = Output { json: cli.json };
    if let Command::Pg(command) = &cli.command {
        return pg(&cli, &out, command).await;
    }
    if let Command::Bench(args) = &cli.command {
        return bench::bench(&cli, &out, args).await;
    }
    if let Command::BenchEod(args) = &cli.command {
        return bench::bench_eod(&cli, &out, args).await;
    }
    if let Command::Loadcheck(args) = &cli.command {
        let (_, passed) = loadcheck::run(&cli, args).await?;
        if !passed {
            std::process::exit(recon::EXIT_FINDINGS);
        }
        return Ok(());
    }
    if matches!(cli.command, Command::Serve(_)) && cli.json {
        // A flag that does not apply is refused, not ignored.
        return Err(render::Malformed {
            flag: "--json",
            value: String::new(),
            problem: "tally serve answers over HTTP in JSON already; it prints no JSON of its own".into(),
        }
        .into());
    }
    if let Command::Relay(args) = &cli.command {
        if cli.json {
            return Err(render::Malformed {
                flag: "--json",
                value: String::new(),
                problem: "tally relay prints lines of its state; it prints no JSON".into(),
            }
            .into());
        }
        // Refused before the database is opened: a relay with nothing to do, or a bad flag.
        relay::relay_configs(args)?;
    }
    let db = match &cli.command {
        Command::Serve(args) => {
            Database::open_with(&cli, connect::SERVER_POOL_SIZE, serve::engine_config(args)?).await?
        }
        _ => Database::open(&cli).await?,
    };
    let result = match cli.command {
        Command::Migrate => {
            let report = &db.migrations;
            let json = serde_json::json!({"migrated": true, "applied": report.applied, "current": report.current});
            out.value(&json, || match report.applied.as_slice() {
                [] => format!("the ledger schema is up to date (version {})", report.current),
                applied => {
                    let versions: Vec<String> = applied.iter().map(i32::to_string).collect();
                    format!(
                        "applied migrations {}; the ledger schema is at version {}",
                        versions.join(", "),
                        report.current
                    )
                }
            });
            Ok(())
        }
        Command::Account(command) => commands::account(&db, &out, command).await,
        Command::Currency(command) => commands::currency(&db, &out, command).await,
        Command::Ledger(command) => commands::ledger(&db, &out, command).await,
        Command::Transfer(args) => commands::transfer(&db, &out, args).await,
        Command::Balance { account, as_of: None } => commands::balance(&db, &out, &account).await,
        Command::Balance { account, as_of: Some(as_of) } => recon::balance_as_of(&db, &out, &account, &as_of).await,
        Command::History { account, limit, before } => commands::history(&db, &out, &account, limit, before).await,
        Command::Reconcile(args) if args.date.is_none() => commands::reconcile(&db, &out).await,
        Command::Reconcile(args) => recon::end_of_day(&db, &out, &args).await,
        Command::Days(command) => recon::days(&db, &out, command).await,
        Command::Statement(command) => recon::statement(&db, &out, command).await,
        Command::Expire => commands::expire(&db, &out).await,
        Command::Demo => demo::run(&db, &out).await,
        Command::Load(args) => load::run(&db, &args).await,
        Command::Serve(args) => serve::serve(&db, &args).await,
        Command::Key(command) => serve::key(&db, &out, command).await,
        Command::Relay(args) => relay::relay(&db, &args).await,
        Command::Webhook(command) => relay::webhook(&db, &out, command).await,
        Command::Pg(_) | Command::Bench(_) | Command::BenchEod(_) | Command::Loadcheck(_) => {
            unreachable!("handled above")
        }
    };
    db.close().await?;
    result
}

async fn pg(cli: &Cli, out: &Output, command: &PgCommand) -> Result<()> {
    anyhow::ensure!(cli.database_url.is_none(), "`tally pg` manages the embedded server; unset DATABASE_URL");
    let pg = connect::embedded(cli)?;
    match command {
        PgCommand::Start => {
            connect::start_embedded(&pg).await?;
            let conninfo = pg.connection_string(connect::LEDGER_DB);
            let standby = pg.is_standby();
            out.value(&serde_json::json!({"running": true, "standby": standby, "conninfo": conninfo}), || {
                let role = if standby { " as a standby (read-only, following its primary)" } else { "" };
                format!("PostgreSQL {} is running{role}\n  psql \"{conninfo}\"", pg.bins().version_major)
            });
        }
        PgCommand::Stop => {
            let stopped = pg.stop()?;
            out.value(&serde_json::json!({"stopped": stopped}), || {
                if stopped { "stopped".into() } else { "was not running".into() }
            });
        }
        PgCommand::Status => {
            let status = pg.status()?;
            let conninfo = pg.connection_string(connect::LEDGER_DB);
            let role = if status.standby { " as a standby" } else { "" };
            out.value(
                &serde_json::json!({"running": status.is_running(), "standby": status.standby, "pid": status.pid, "data_dir": pg.data_dir(), "conninfo": conninfo}),
                || match status.pid {
                    Some(pid) => {
                        format!("running{role} (pid {pid}) in {}\n  psql \"{conninfo}\"", pg.data_dir().display())
                    }
                    None => format!("not running ({}{role})", pg.data_dir().display()),
                },
            );
        }
        PgCommand::Standby(StandbyCommand::Create { from, name, asynchronous }) => {
            let primary = tally_pg::EmbeddedPg::new(from.join("pg"), pg.bins().clone());
            let options = tally_pg::StandbyOptions { name: name.clone(), synchronous: !asynchronous };
            let report = primary.create_standby(&pg, &options, &mut |step| eprintln!("{step}"))?;
            let conninfo = pg.connection_string(connect::LEDGER_DB);
            out.value(
                &serde_json::json!({"standby": pg.data_dir(), "primary": primary.data_dir(), "name": report.name,
                    "synchronous": report.synchronous, "copy_seconds": report.copy_time.as_secs_f64(),
                    "total_seconds": report.total_time.as_secs_f64(), "conninfo": conninfo}),
                || {
                    let kind = if report.synchronous { "a synchronous standby" } else { "an asynchronous replica" };
                    format!(
                        "{} is {kind} of {} named {}, running (made in {:.1} s)\n  psql \"{conninfo}\"\n\
                         Promote it with: tally pg promote --data-dir {}",
                        pg.data_dir().display(),
                        primary.data_dir().display(),
                        report.name,
                        report.total_time.as_secs_f64(),
                        cli.data_dir.display()
                    )
                },
            );
        }
        PgCommand::Promote => {
            eprintln!("promoting {}", pg.data_dir().display());
            let report = pg.promote()?;
            let conninfo = pg.connection_string(connect::LEDGER_DB);
            out.value(
                &serde_json::json!({"promoted": true, "promote_seconds": report.promote_time.as_secs_f64(),
                    "writable_after_seconds": report.writable_after.as_secs_f64(), "conninfo": conninfo}),
                || {
                    format!(
                        "promoted: {} is a primary and accepts writes ({:.2} s)\n  psql \"{conninfo}\"\n\
                         Its former primary must not run as a primary again; make it a standby of this one with \
                         `tally pg standby create --from {} --data-dir ...` in a new directory.",
                        pg.data_dir().display(),
                        report.writable_after.as_secs_f64(),
                        cli.data_dir.display()
                    )
                },
            );
        }
        PgCommand::Psql { args } => {
            connect::start_embedded(&pg).await?;
            let status = pg.psql_command(connect::LEDGER_DB).args(args).status()?;
            std::process::exit(status.code().unwrap_or(1));
        }
    }
    Ok(())
}
