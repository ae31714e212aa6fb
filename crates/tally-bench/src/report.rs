//! The benchmark's result: a table for people, JSON for programs, an SVG chart.

use crate::BenchError;
use crate::events_out::{EventsOutReport, LagSummary};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use hdrhistogram::Histogram;
use plotters::prelude::*;
use serde::Serialize;
use std::path::Path;

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    pub fn from_histogram(h: &Histogram<u64>) -> Latency {
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub mode: String,
    pub accounts: usize,
    pub distribution: String,
    pub zipf_exponent: f64,
    pub hottest_account_share: f64,
    pub concurrency: usize,
    pub batch_size: usize,
    pub pending_percent: u8,
    pub duration_seconds: f64,
    pub transfers_per_second: f64,
    pub committed: u64,
    pub refused_valid: u64,
    pub overloaded: u64,
    pub requests: u64,
    pub latency_ms: Latency,
    pub mean_batch_size: f64,
    /// Batches the speculative engine could not commit and ran again with account locks.
    pub speculation_reruns: u64,
    pub wal_bytes_per_transfer: Option<f64>,
    pub cpu_seconds_tally: f64,
    pub cpu_seconds_postgres: Option<f64>,
    /// Tally's CPU (this process: engine, server and clients alike) per committed transfer, in
    /// µs; null when nothing committed.
    pub tally_cpu_us_per_transfer: Option<f64>,
    /// PostgreSQL's CPU (every server process) per committed transfer, in µs; null when the
    /// server's CPU could not be measured (it runs where /proc cannot see it) or nothing
    /// committed.
    pub postgres_cpu_us_per_transfer: Option<f64>,
    pub peak_rss_mib_tally: f64,
    pub peak_rss_mib_postgres: Option<f64>,
    /// Wall-clock seconds the batch commits spent per stage, summed over all batches.
    pub commit_stages_seconds: Vec<(String, f64)>,
    pub conservation_ok: bool,
    pub findings: Vec<String>,
    pub throughput_per_second: Vec<f64>,
    /// Tally's resident memory, sampled once a second: flat means it does not grow with the
    /// number of transfers processed.
    pub tally_rss_mib_per_second: Vec<f64>,
    /// (latency upper bound in ms, share of requests at or below it).
    pub latency_distribution_ms: Vec<(f64, f64)>,
    /// Events pushed out during the run (`--nats-url`, `--webhooks-dead`, `--webhook-sink`);
    /// null when nothing was.
    pub events_out: Option<EventsOutReport>,
    /// The replica's lag during the load (`--replica-url`); null without one.
    pub replica_lag: Option<crate::replica_lag::ReplicaLagReport>,
    pub postgres_settings: Vec<(String, String)>,
    pub machine: String,
    pub command: String,
}

/// CPU seconds per committed transfer, in µs: `cpu_seconds` × 1e6 ÷ `committed`. `None` when the
/// CPU time is unknown or nothing committed.
pub fn cpu_us_per_transfer(cpu_seconds: Option<f64>, committed: u64) -> Option<f64> {
    match (cpu_seconds, committed) {
        (Some(seconds), 1..) => Some(seconds * 1e6 / committed as f64),
        _ => None,
    }
}

/// A WAL position as PostgreSQL prints it (`16/B374D848`: the high and low 32 bits in hex).
fn parse_lsn(lsn: &str) -> Option<u64> {
    let (high, low) = lsn.split_once('/')?;
    let high = u32::from_str_radix(high, 16).ok()?;
    let low = u32::from_str_radix(low, 16).ok()?;
    Some(u64::from(high) << 32 | u64::from(low))
}

/// WAL bytes written between two positions, per committed transfer. `None` when nothing
/// committed or a position is not an LSN.
pub fn wal_per_transfer(before: &str, after: &str, transfers: u64) -> Option<f64> {
    if transfers == 0 {
        return None;
    }
    let bytes = parse_lsn(after)?.checked_sub(parse_lsn(before)?)?;
    Some(bytes as f64 / transfers as f64)
}

pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    format!("{cpus} CPUs ({model}), {memory_gib:.0} GiB")
}

/// The cumulative latency distribution at a few dozen points, for the chart and the JSON.
pub fn distribution(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let quantiles = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9999, 1.0];
    quantiles.iter().map(|q| (h.value_at_quantile(*q) as f64 / 1000.0, *q)).collect()
}

impl BenchReport {
    pub fn table(&self) -> String {
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED).set_header(["measure", "value"]);
        let opt = |v: Option<f64>, unit: &str| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.1}{unit}"));
        let rows: Vec<(&str, String)> = vec![
            ("mode", self.mode.clone()),
            (
                "workload",
                format!(
                    "{} accounts, {}{}, {} clients x {} transfer(s) per request, {}% holds",
                    self.accounts,
                    self.distribution,
                    if self.distribution == "zipf" {
                        format!(
                            " s={} (hottest account {:.1}%)",
                            self.zipf_exponent,
                            self.hottest_account_share * 100.0
                        )
                    } else {
                        String::new()
                    },
                    self.concurrency,
                    self.batch_size,
                    self.pending_percent
                ),
            ),
            ("transfers/s", format!("{:.0}", self.transfers_per_second)),
            ("committed", self.committed.to_string()),
            ("refused (valid)", self.refused_valid.to_string()),
            ("overloaded requests", self.overloaded.to_string()),
            (
                "latency p50 / p99 / p999 / max",
                format!(
                    "{:.2} / {:.2} / {:.2} / {:.2} ms",
                    self.latency_ms.p50, self.latency_ms.p99, self.latency_ms.p999, self.latency_ms.max
                ),
            ),
            ("mean batch size", format!("{:.0}", self.mean_batch_size)),
            ("speculation reruns (batches)", self.speculation_reruns.to_string()),
            ("WAL per transfer", opt(self.wal_bytes_per_transfer, " B")),
            (
                "CPU seconds: tally / postgres",
                format!("{:.1} / {}", self.cpu_seconds_tally, opt(self.cpu_seconds_postgres, "")),
            ),
            (
                "CPU per transfer: tally / postgres",
                format!(
                    "{} / {}",
                    opt(self.tally_cpu_us_per_transfer, " µs"),
                    opt(self.postgres_cpu_us_per_transfer, " µs")
                ),
            ),
            (
                "peak RSS: tally / postgres",
                format!("{:.0} MiB / {}", self.peak_rss_mib_tally, opt(self.peak_rss_mib_postgres, " MiB")),
            ),
            ("tally RSS: second 1 / middle / last", self.rss_trend()),
            (
                "conservation and balance rules",
                if self.conservation_ok { "ok".into() } else { format!("BROKEN: {:?}", self.findings) },
            ),
        ];
        for (name, value) in rows {
            table.add_row(vec![name.to_owned(), value]);
        }
        let total: f64 = self.commit_stages_seconds.iter().map(|(_, s)| s).sum();
        let mut stages = Table::new();
        stages.load_preset(UTF8_FULL_CONDENSED).set_header([
            "batch commit stage",
            "seconds",
            "share",
            "µs per transfer",
        ]);
        for (name, seconds) in &self.commit_stages_seconds {
            let share = if total > 0.0 { seconds / total * 100.0 } else { 0.0 };
            let per_transfer = if self.committed > 0 { seconds * 1e6 / self.committed as f64 } else { 0.0 };
            stages.add_row(vec![
                name.clone(),
                format!("{seconds:.2}"),
                format!("{share:.0}%"),
                format!("{per_transfer:.2}"),
            ]);
        }
        let mut text = format!("{table}\n{stages}");
        if let Some(events_out) = &self.events_out {
            text = format!("{text}\n{}", events_out.table());
        }
        if let Some(lag) = &self.replica_lag {
            text = format!("{text}\n{}", lag.table());
        }
        text
    }

    /// Tally's RSS at the first, middle and last sampled second.
    fn rss_trend(&self) -> String {
        let samples = &self.tally_rss_mib_per_second;
        match (samples.first(), samples.get(samples.len() / 2), samples.last()) {
            (Some(first), Some(middle), Some(last)) => format!("{first:.0} / {middle:.0} / {last:.0} MiB"),
            _ => "n/a".to_owned(),
        }
    }

    pub fn write_json(&self, path: &Path) -> Result<(), BenchError> {
        std::fs::write(path, serde_json::to_vec_pretty(self)?)?;
        Ok(())
    }

    /// Two panels: throughput per second over the run, and the latency distribution.
    pub fn write_svg(&self, path: &Path) -> Result<(), BenchError> {
        self.draw(path).map_err(|error| BenchError::Chart(error.to_string()))
    }

    fn draw(&self, path: &Path) -> Result<(), Box<dyn std::error::Error + 'static>> {
        let root = SVGBackend::new(path, (1000, 420)).into_drawing_area();
        root.fill(&WHITE)?;
        let (left, right) = root.split_horizontally(520);
        let seconds = self.throughput_per_second.len().max(1) as f64;
        let top = self.throughput_per_second.iter().copied().fold(1.0, f64::max) * 1.15;
        let mut chart = ChartBuilder::on(&left)
            .caption(format!("{} mode: transfers per second", self.mode), ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..seconds, 0.0..top)?;
        chart.configure_mesh().x_desc("seconds").y_desc("transfers/s").draw()?;
        let points = self.throughput_per_second.iter().enumerate().map(|(i, v)| (i as f64 + 1.0, *v));
        chart.draw_series(LineSeries::new(points, &BLUE))?;

        let max_ms = self.latency_distribution_ms.last().map_or(1.0, |(ms, _)| ms.max(0.001));
        let mut latency = ChartBuilder::on(&right)
            .caption("latency distribution (share of requests at or below)", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d((0.01..max_ms * 1.1).log_scale(), 0.0..1.0)?;
        latency.configure_mesh().x_desc("milliseconds (log)").y_desc("share").draw()?;
        let points = self.latency_distribution_ms.iter().map(|(ms, q)| (ms.max(0.01), *q));
        latency.draw_series(LineSeries::new(points, &RED))?;
        root.present()?;
        Ok(())
    }
}

impl EventsOutReport {
    /// The "events out" section of the report.
    pub fn table(&self) -> String {
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED).set_header(["events out", "value"]);
        let rate = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.0}/s"));
        let lag = |l: Option<LagSummary>, unit: &str| {
            l.map_or_else(|| "n/a".to_owned(), |l| format!("{:.0} / {:.0} / {:.0}{unit}", l.max, l.p50, l.p99))
        };
        let mut rows: Vec<(String, String)> = Vec::new();
        if let Some(nats) = &self.nats {
            rows.push(("NATS stream".into(), format!("{} at {}", nats.stream, nats.url)));
            rows.push((
                "setup events published before the load".into(),
                match nats.setup_catch_up_seconds {
                    Some(seconds) => format!(
                        "{} in {seconds:.1} s ({})",
                        nats.setup_events,
                        rate(nats.setup_catch_up_events_per_second)
                    ),
                    None => format!("{}: NOT caught up within the drain timeout", nats.setup_events),
                },
            ));
            rows.push((
                "events written during the load".into(),
                format!("{} ({:.0}/s)", nats.events_written_during_load, nats.events_written_per_second),
            ));
            if nats.relay_during_load {
                rows.push((
                    "events published during the load".into(),
                    format!("{} ({:.0}/s)", nats.events_published_during_load, nats.relay_events_per_second_under_load),
                ));
                rows.push(("lag max / p50 / p99 (events)".into(), lag(nats.lag_events, "")));
                rows.push(("lag max / p50 / p99 (oldest unpublished)".into(), lag(nats.lag_ms, " ms")));
            } else {
                rows.push(("relay during the load".into(), "stopped (--nats-after)".into()));
            }
            rows.push((
                "backlog when the load stopped, drain".into(),
                match nats.drain_seconds {
                    Some(seconds) => format!(
                        "{} events, drained in {seconds:.2} s ({})",
                        nats.backlog_at_load_end,
                        rate(nats.drain_events_per_second)
                    ),
                    None => format!("{} events, NOT drained within the drain timeout", nats.backlog_at_load_end),
                },
            ));
            rows.push((
                "final lag / stream messages / events".into(),
                format!(
                    "{} / {} / {} ({} duplicates{})",
                    nats.final_lag_events,
                    nats.stream_messages,
                    nats.events_total,
                    nats.duplicates,
                    if nats.stream_kept { ", stream kept" } else { ", stream deleted" }
                ),
            ));
        }
        if let Some(webhooks) = &self.webhooks {
            if webhooks.dead_endpoints > 0 {
                rows.push((
                    "dead webhook endpoints".into(),
                    format!(
                        "{} at {}: {} failed attempts, {} delivered, {} parked",
                        webhooks.dead_endpoints,
                        webhooks.dead_url.as_deref().unwrap_or("?"),
                        webhooks.failed_attempts,
                        webhooks.dead_delivered,
                        webhooks.parked
                    ),
                ));
            }
            if webhooks.sink {
                rows.push((
                    "webhook sink deliveries during the load".into(),
                    format!(
                        "{} ({}), lag at the load's end {}",
                        webhooks.sink_delivered_during_load,
                        rate(webhooks.sink_deliveries_per_second),
                        webhooks.sink_lag_at_load_end.map_or_else(|| "n/a".to_owned(), |lag| lag.to_string())
                    ),
                ));
            }
        }
        for (name, value) in rows {
            table.add_row(vec![name, value]);
        }
        table.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_per_transfer_is_microseconds_per_committed_transfer() {
        assert_eq!(cpu_us_per_transfer(Some(71.7), 1_000_000), Some(71.7));
        assert_eq!(cpu_us_per_transfer(Some(2.0), 4), Some(500_000.0));
        let figure = cpu_us_per_transfer(Some(20.7), 1_580_220).expect("measured");
        assert!((figure - 13.099_442).abs() < 1e-5, "{figure}");
        assert_eq!(cpu_us_per_transfer(None, 1_000), None, "not measured");
        assert_eq!(cpu_us_per_transfer(Some(1.5), 0), None, "nothing committed");
    }

    #[test]
    fn wal_per_transfer_from_two_positions() {
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(parse_lsn("16"), None);
        assert_eq!(parse_lsn("G/0"), None);
        // Across the 4 GiB boundary of the low half.
        assert_eq!(wal_per_transfer("0/FFFFFF00", "1/100", 2), Some(256.0));
        assert_eq!(wal_per_transfer("1/0", "1/3E8", 10), Some(100.0));
        assert_eq!(wal_per_transfer("1/0", "1/3E8", 0), None);
        assert_eq!(wal_per_transfer("2/0", "1/0", 10), None, "positions never go back");
    }
}
