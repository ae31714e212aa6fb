//! `tally loadcheck`: the arguments into a `tally_loadcheck::LoadConfig`, one run per round, the
//! reports as tables or JSON, and exit status 4 when a round failed a check.

use crate::args::{Cli, LoadcheckArgs, ScenarioArg};
use crate::connect;
use anyhow::{Context, Result};
use tally_loadcheck::{LoadConfig, LoadReport, Scenario, Workload};

/// The database the embedded server runs load checks in, recreated for every round.
const LOADCHECK_DB: &str = "tally_loadcheck";
/// Rounds of one command at most.
pub const ROUNDS_MAX: u32 = 1_000;

fn config(args: &LoadcheckArgs, database_url: &str) -> Result<LoadConfig> {
    let tally_bin = std::env::current_exe().context("finding the tally binary for the child processes")?;
    let mut config = LoadConfig::new(tally_bin, database_url);
    config.processes = args.processes;
    config.sql_writers = args.sql_writers;
    config.scenario = match args.scenario {
        ScenarioArg::HotAccounts => Scenario::HotAccounts,
        ScenarioArg::Bank => Scenario::Bank,
    };
    config.accounts = args.accounts;
    config.customers = args.customers;
    config.house_accounts = args.house_accounts;
    config.zipf_exponent = args.zipf_exponent;
    config.clients_per_process = args.clients;
    config.workload = match args.transfers {
        Some(count) => Workload::Transfers(count),
        None => Workload::Duration(humantime::parse_duration(&args.duration).context("--duration")?),
    };
    config.client_timeout = humantime::parse_duration(&args.client_timeout).context("--client-timeout")?;
    config.hedge_fraction = args.hedge_fraction;
    config.deadline = args.deadline.as_deref().map(humantime::parse_duration).transpose().context("--deadline")?;
    config.stall_timeout = humantime::parse_duration(&args.stall_timeout).context("--stall-timeout")?;
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    config.progress = true;
    config.validate()?;
    Ok(config)
}

/// Runs the rounds; returns the reports and whether every round passed.
pub async fn run(cli: &Cli, args: &LoadcheckArgs) -> Result<(Vec<LoadReport>, bool)> {
    anyhow::ensure!((1..=ROUNDS_MAX).contains(&args.rounds), "--rounds must be 1 to {ROUNDS_MAX}");
    let embedded = match &cli.database_url {
        Some(_) => None,
        None => {
            let pg = connect::embedded(cli)?;
            let outcome = connect::start_embedded(&pg).await?;
            Some((pg, outcome))
        }
    };
    let rounds = rounds(cli, args, embedded.as_ref().map(|(pg, _)| pg)).await;
    if let Some((pg, tally_pg::StartOutcome::Started)) = embedded {
        pg.stop().context("stopping the embedded PostgreSQL")?;
    }
    let (reports, passed) = rounds?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else if reports.len() > 1 {
        let failed: Vec<String> =
            reports.iter().enumerate().filter(|(_, r)| !r.passed()).map(|(i, _)| (i + 1).to_string()).collect();
        println!(
            "{} of {} rounds passed{}",
            reports.len() - failed.len(),
            reports.len(),
            if failed.is_empty() { String::new() } else { format!("; failed: rounds {}", failed.join(", ")) }
        );
    }
    Ok((reports, passed))
}

async fn rounds(
    cli: &Cli,
    args: &LoadcheckArgs,
    embedded: Option<&tally_pg::EmbeddedPg>,
) -> Result<(Vec<LoadReport>, bool)> {
    let mut reports = Vec::with_capacity(args.rounds as usize);
    let mut passed = true;
    for round in 0..args.rounds {
        let database_url = match (&cli.database_url, embedded) {
            (Some(url), _) => url.clone(),
            (None, Some(pg)) => {
                recreate_database(pg).await?;
                pg.connection_string(LOADCHECK_DB)
            }
            (None, None) => unreachable!("embedded when no URL is given"),
        };
        let mut config = config(args, &database_url)?;
        config.seed = config.seed.wrapping_add(u64::from(round));
        let report = tally_loadcheck::run(&config).await.with_context(|| format!("round {}", round + 1))?;
        if !cli.json {
            println!("round {} of {}\n{}\n", round + 1, args.rounds, report.table());
        }
        let round_passed = report.passed();
        passed &= round_passed;
        reports.push(report);
        if !round_passed && cli.database_url.is_some() {
            eprintln!("round {} failed; later rounds on this database would only find the same damage", round + 1);
            break;
        }
    }
    Ok((reports, passed))
}

/// Drops the load check's database, if a round left one, and creates it empty.
async fn recreate_database(pg: &tally_pg::EmbeddedPg) -> Result<()> {
    let admin = pg.connection_string("postgres");
    tally_store::drop_database_if_exists(&admin, LOADCHECK_DB).await?;
    tally_store::create_database_if_missing(&admin, LOADCHECK_DB).await?;
    Ok(())
}
