//! `tally bench` and `tally bench-eod`: the arguments into a `tally_bench` configuration, one
//! call, the report as tables or JSON. The benchmarks themselves are the `tally-bench` crate.

use crate::args::{BenchArgs, BenchEodArgs, BenchMode, Cli, Distribution};
use crate::connect;
use crate::render::Output;
use anyhow::{Context, Result};
use tally_bench::{BenchConfig, Database, EodConfig, EventsOutConfig};

/// Where a benchmark runs: `--database-url`, or the embedded server in `--data-dir`.
fn database(cli: &Cli) -> Result<Database> {
    Ok(match &cli.database_url {
        Some(url) => Database::Url(url.clone()),
        None => Database::Embedded(connect::embedded(cli)?),
    })
}

pub async fn bench(cli: &Cli, out: &Output, args: &BenchArgs) -> Result<()> {
    let config = BenchConfig {
        mode: match args.mode {
            BenchMode::Engine => tally_bench::BenchMode::Engine,
            BenchMode::Direct => tally_bench::BenchMode::Direct,
            BenchMode::Http => tally_bench::BenchMode::Http,
        },
        accounts: args.accounts,
        duration: humantime::parse_duration(&args.duration).context("--duration")?,
        distribution: match args.distribution {
            Distribution::Uniform => tally_bench::Distribution::Uniform,
            Distribution::Zipf => tally_bench::Distribution::Zipf,
        },
        zipf_exponent: args.zipf_exponent,
        concurrency: args.concurrency,
        batch_size: args.batch_size,
        pending_percent: args.pending_percent,
        committers: args.committers,
        speculative: !args.no_speculation,
        linger: std::time::Duration::from_micros(args.linger_us),
        seed: args.seed,
        events_out: EventsOutConfig {
            nats_url: args.nats_url.clone(),
            nats_after_load: args.nats_after,
            nats_keep_stream: args.nats_keep_stream,
            drain_timeout: humantime::parse_duration(&args.nats_drain_timeout).context("--nats-drain-timeout")?,
            webhooks_dead: args.webhooks_dead,
            webhook_sink: args.webhook_sink,
        },
        replica_url: args.replica_url.clone(),
        http_listen: args.listen,
    };
    let report = tally_bench::run_bench(&database(cli)?, &config).await?;
    report.write_json(&args.json_out)?;
    report.write_svg(&args.svg_out)?;
    out.value(&serde_json::to_value(&report)?, || {
        format!("{}\nwrote {} and {}", report.table(), args.json_out.display(), args.svg_out.display())
    });
    Ok(())
}

pub async fn bench_eod(cli: &Cli, out: &Output, args: &BenchEodArgs) -> Result<()> {
    let day_sizes = args
        .day_sizes
        .split(',')
        .map(|s| s.trim().replace('_', "").parse::<i64>().context("--day-sizes: comma-separated numbers"))
        .collect::<Result<_>>()?;
    let config = EodConfig { accounts: args.accounts, day_sizes, reuse: args.reuse };
    let report = tally_bench::run_eod(&database(cli)?, &config).await?;
    let json = serde_json::to_value(&report)?;
    std::fs::write(&args.json_out, serde_json::to_string_pretty(&json)?)?;
    out.value(&json, || format!("{}\nwrote {}", report.table(), args.json_out.display()));
    Ok(())
}
