//! `tally relay` (events out, in a process of its own) and `tally webhook` (endpoints and their
//! delivery logs). Everything goes through `tally_relay::Outbox`; the audit actor is the CLI's.

use crate::args::{DeliveryStatusArg, NatsArgs, RelayArgs, WebhookArgs, WebhookCommand};
use crate::connect::Database;
use crate::render::{Malformed, Output, say, table};
use anyhow::{Context, Result};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tally_relay::{DeliveryQuery, DeliveryRecord, DeliveryStatus, NatsConfig, Outbox, RelayError, WebhookConfig};
use tally_server::views::{CreatedWebhookView, DeliveryView, WebhookView};
use tokio::sync::watch;

/// Connections `tally relay` opens for its relays (beside one per lease), and a `tally webhook`
/// command.
const RELAY_POOL_SIZE: usize = 4;
const WEBHOOK_COMMAND_POOL_SIZE: usize = 2;
/// How often `tally relay` looks whether its relays hold their leases.
const STATUS_POLL: Duration = Duration::from_millis(100);
/// A relay that has not taken its lease this long after starting is reported standing by.
const STANDBY_AFTER: Duration = Duration::from_secs(2);
/// How long a stopping relay may finish what it is sending; then it is cut off, which loses
/// nothing (its position is in the database, and delivery is at least once).
const STOP_BOUND: Duration = Duration::from_secs(5);

const _: () = assert!(RELAY_POOL_SIZE >= tally_relay::POOL_SIZE_MIN && RELAY_POOL_SIZE <= tally_relay::POOL_SIZE_MAX);
const _: () = assert!(
    WEBHOOK_COMMAND_POOL_SIZE >= tally_relay::POOL_SIZE_MIN && WEBHOOK_COMMAND_POOL_SIZE <= tally_relay::POOL_SIZE_MAX
);

/// The NATS relay the flags ask for, checked; `None` without `--nats-url`.
pub fn nats_config(args: &NatsArgs) -> Result<Option<NatsConfig>> {
    let Some(url) = &args.nats_url else { return Ok(None) };
    let mut config = NatsConfig::new(url);
    if let Some(stream) = &args.nats_stream {
        config.stream = stream.clone();
    }
    if let Some(prefix) = &args.nats_subject_prefix {
        config.subject_prefix = prefix.clone();
    }
    config.validate()?;
    Ok(Some(config))
}

/// The webhook dispatcher's configuration: the defaults, changed by the flags given; checked.
pub fn webhook_config(args: &WebhookArgs) -> Result<WebhookConfig> {
    let mut config = WebhookConfig::default();
    if let Some(attempts) = args.webhook_attempts {
        config.attempts_max = attempts;
    }
    if let Some(text) = &args.webhook_retry_base {
        config.retry_base = humantime::parse_duration(text).context("--webhook-retry-base")?;
    }
    if let Some(text) = &args.webhook_timeout {
        config.timeout = humantime::parse_duration(text).context("--webhook-timeout")?;
    }
    config.validate()?;
    Ok(config)
}

/// What `tally relay` is asked to run; refuses a relay with nothing to do, and webhook flags
/// without `--webhooks`.
pub fn relay_configs(args: &RelayArgs) -> Result<(Option<NatsConfig>, Option<WebhookConfig>)> {
    if !args.webhooks && args.webhook.given() {
        return Err(Malformed {
            flag: "--webhook-attempts, --webhook-retry-base, --webhook-timeout",
            value: String::new(),
            problem: "apply only with --webhooks".into(),
        }
        .into());
    }
    let nats = nats_config(&args.nats)?;
    let webhooks = if args.webhooks { Some(webhook_config(&args.webhook)?) } else { None };
    if nats.is_none() && webhooks.is_none() {
        return Err(Malformed {
            flag: "tally relay",
            value: String::new(),
            problem: "nothing to relay: give --nats-url URL (or TALLY_NATS_URL), --webhooks, or both".into(),
        }
        .into());
    }
    Ok((nats, webhooks))
}

/// One relay of this process, as `tally relay` reports it.
struct Running {
    /// `nats:<stream>` or `webhooks`: the lease's name.
    name: String,
    /// What it does while it holds its lease.
    doing: String,
    active: fn(&tally_relay::Stats) -> &AtomicBool,
    task: tokio::task::JoinHandle<Result<(), RelayError>>,
    /// What was last said of it: holding the lease or not.
    said: Option<bool>,
}

/// Runs the relays until SIGTERM or Ctrl-C, saying when each holds its lease or stands by.
pub async fn relay(db: &Database, args: &RelayArgs) -> Result<()> {
    let (nats, webhooks) = relay_configs(args)?;
    let stop = crate::serve::stop_signal()?;
    let outbox = Outbox::new(&db.store, RELAY_POOL_SIZE);
    let (shutdown_sender, shutdown) = watch::channel(false);
    let mut relays = Vec::new();
    if let Some(config) = nats {
        relays.push(Running {
            name: config.cursor_name(),
            doing: format!(
                "relaying events to {} (stream {}, subjects {}.<type>)",
                config.url, config.stream, config.subject_prefix
            ),
            active: |stats| &stats.nats_active,
            task: tokio::spawn(tally_relay::run_nats(outbox.clone(), config, shutdown.clone())),
            said: None,
        });
    }
    if let Some(config) = webhooks {
        relays.push(Running {
            name: tally_relay::dispatch::LEASE_NAME.to_owned(),
            doing: "dispatching webhooks".to_owned(),
            active: |stats| &stats.webhooks_active,
            task: tokio::spawn(tally_relay::run_webhooks(outbox.clone(), config, shutdown.clone())),
            said: None,
        });
    }
    say(format!("tally relay {}: started (SIGTERM or Ctrl-C stops it)", tally_relay::holder_name()));
    let started = Instant::now();
    tokio::pin!(stop);
    let failed = loop {
        tokio::select! {
            () = &mut stop => break None,
            () = tokio::time::sleep(STATUS_POLL) => {}
        }
        if let Some(index) = relays.iter().position(|relay| relay.task.is_finished()) {
            // The relays run until told to stop: one that ended refused its configuration.
            let finished = relays.remove(index);
            let name = finished.name;
            break Some(match finished.task.await {
                Ok(Err(error)) => anyhow::Error::from(error).context(name),
                Ok(Ok(())) => anyhow::anyhow!("{name}: the relay stopped by itself"),
                Err(join) => anyhow::anyhow!("{name}: the relay failed: {join}"),
            });
        }
        report(&outbox, &mut relays, started.elapsed() >= STANDBY_AFTER).await;
    };
    if failed.is_none() {
        say("stopping: finishing what is being sent (what is not is sent again by the next relay)");
    }
    let _ = shutdown_sender.send(true);
    let deadline = tokio::time::Instant::now() + STOP_BOUND;
    for relay in relays {
        let abort = relay.task.abort_handle();
        match tokio::time::timeout_at(deadline, relay.task).await {
            Ok(Ok(Err(error))) if failed.is_none() => {
                tracing::warn!(relay = relay.name, %error, "the relay stopped with an error")
            }
            Ok(_) => {}
            Err(_) => {
                abort.abort();
                tracing::warn!(relay = relay.name, bound = ?STOP_BOUND, "cut off at the stop bound; it resumes from its position");
            }
        }
    }
    outbox.close();
    match failed {
        Some(error) => Err(error),
        None => {
            say("stopped");
            Ok(())
        }
    }
}

/// Says, for each relay whose state changed, whether it holds its lease or stands by (and who
/// holds the lease, when the database says).
async fn report(outbox: &Outbox, relays: &mut [Running], settled: bool) {
    for relay in relays.iter_mut() {
        let active = (relay.active)(outbox.stats()).load(Ordering::Relaxed);
        if relay.said == Some(active) || (relay.said.is_none() && !active && !settled) {
            continue;
        }
        if active {
            say(format!("{}: holding the lease, {}", relay.name, relay.doing));
        } else {
            let holder = match outbox.positions().await {
                Ok(positions) => positions.relays.into_iter().find(|r| r.name == relay.name).and_then(|r| r.holder),
                Err(_) => None,
            };
            let by = holder.map(|holder| format!(" (held by {holder})")).unwrap_or_default();
            let lost = if relay.said == Some(true) { "lost the lease; " } else { "" };
            say(format!("{}: {lost}standing by: another relay holds the lease{by}", relay.name));
        }
        relay.said = Some(active);
    }
}

fn delivery_status(arg: DeliveryStatusArg) -> DeliveryStatus {
    match arg {
        DeliveryStatusArg::Pending => DeliveryStatus::Pending,
        DeliveryStatusArg::Delivered => DeliveryStatus::Delivered,
        DeliveryStatusArg::Parked => DeliveryStatus::Parked,
    }
}

fn or_dash(text: Option<String>) -> String {
    text.unwrap_or_else(|| "-".to_owned())
}

/// An endpoint as a two-column table.
fn webhook_table(view: &WebhookView) -> String {
    let mut rows = table(&["field", "value"]);
    for (field, value) in [
        ("id", view.id.to_string()),
        ("url", view.url.clone()),
        ("event types", view.event_types.join(", ")),
        ("status", view.status.clone()),
        ("delivered up to", view.delivered_seq.to_string()),
        (
            "parked",
            or_dash(view.parked_seq.map(|seq| format!("event {seq} (tally webhook redeliver {} {seq})", view.id))),
        ),
        ("description", or_dash(view.description.clone())),
        ("created", format!("{} by {}", view.created_at, view.created_by)),
    ] {
        rows.add_row([field.to_owned(), value]);
    }
    rows.to_string()
}

fn deliveries_table(views: &[DeliveryView], next: Option<i64>) -> String {
    let mut rows = table(&["seq", "type", "status", "attempts", "last answer", "next attempt", "delivered"]);
    for d in views {
        let answer = match (&d.last_error, d.last_status_code) {
            (Some(error), _) => error.clone(),
            (None, Some(code)) => code.to_string(),
            (None, None) => "-".to_owned(),
        };
        rows.add_row([
            d.seq.to_string(),
            d.event_type.clone(),
            d.status.clone(),
            d.attempts.to_string(),
            answer,
            or_dash(d.next_attempt_at.clone()),
            or_dash(d.delivered_at.clone()),
        ]);
    }
    match next {
        Some(seq) => format!("{rows}\nolder deliveries: --before {seq}"),
        None => rows.to_string(),
    }
}

fn delivery_text(view: &DeliveryView) -> String {
    let mut text = deliveries_table(std::slice::from_ref(view), None);
    if !view.attempt_log.is_empty() {
        let mut attempts = table(&["attempt", "at", "status", "error", "ms"]);
        for a in &view.attempt_log {
            attempts.add_row([
                a.attempt.to_string(),
                a.at.clone(),
                or_dash(a.status_code.map(|code| code.to_string())),
                or_dash(a.error.clone()),
                a.duration_ms.to_string(),
            ]);
        }
        text.push_str(&format!("\n{attempts}"));
    }
    text
}

pub async fn webhook(db: &Database, out: &Output, command: WebhookCommand) -> Result<()> {
    let outbox = Outbox::new(&db.store, WEBHOOK_COMMAND_POOL_SIZE);
    let result = run_webhook_command(db, &outbox, out, command).await;
    outbox.close();
    result
}

async fn run_webhook_command(db: &Database, outbox: &Outbox, out: &Output, command: WebhookCommand) -> Result<()> {
    match command {
        WebhookCommand::Add { url, events, description, after_seq } => {
            let new = tally_relay::NewWebhook { url, event_types: events, description, after_seq };
            let (record, secret) = outbox.create_webhook(&db.actor, new).await?;
            let created = CreatedWebhookView { webhook: WebhookView::new(&record), secret };
            out.value(&serde_json::to_value(&created)?, || {
                format!(
                    "{}\nsecret: {}\nThe secret is shown only now and will not be shown again: keep it to verify each \
                     delivery's Tally-Signature header.",
                    webhook_table(&created.webhook),
                    created.secret
                )
            });
        }
        WebhookCommand::List => {
            let views: Vec<WebhookView> = outbox.webhooks().await?.iter().map(WebhookView::new).collect();
            out.value(&serde_json::to_value(&views)?, || {
                let mut rows =
                    table(&["id", "url", "event types", "status", "delivered up to", "parked", "description"]);
                for v in &views {
                    rows.add_row([
                        v.id.to_string(),
                        v.url.clone(),
                        v.event_types.join(","),
                        v.status.clone(),
                        v.delivered_seq.to_string(),
                        or_dash(v.parked_seq.map(|seq| seq.to_string())),
                        or_dash(v.description.clone()),
                    ]);
                }
                rows.to_string()
            });
        }
        WebhookCommand::Show { id } => {
            let view = WebhookView::new(&outbox.webhook(id).await?);
            out.value(&serde_json::to_value(&view)?, || webhook_table(&view));
        }
        WebhookCommand::Disable { id } | WebhookCommand::Enable { id } => {
            let active = matches!(command, WebhookCommand::Enable { .. });
            let view = WebhookView::new(&outbox.set_webhook_active(&db.actor, id, active).await?);
            out.value(&serde_json::to_value(&view)?, || format!("webhook {} is {}", view.id, view.status));
        }
        WebhookCommand::Delete { id } => {
            outbox.delete_webhook(&db.actor, id).await?;
            out.value(&json!({"id": id, "deleted": true}), || {
                format!("webhook {id} is deleted, with its delivery log")
            });
        }
        WebhookCommand::Deliveries { id, status, limit, before } => {
            if !(1..=tally_relay::webhooks::DELIVERIES_PAGE_MAX).contains(&limit) {
                return Err(Malformed {
                    flag: "--limit",
                    value: limit.to_string(),
                    problem: format!("must be 1 to {}", tally_relay::webhooks::DELIVERIES_PAGE_MAX),
                }
                .into());
            }
            let query = DeliveryQuery { status: status.map(delivery_status), before_seq: before, limit };
            let records: Vec<DeliveryRecord> = outbox.deliveries(id, &query).await?;
            let views: Vec<DeliveryView> = records.iter().map(DeliveryView::new).collect();
            let full = i64::try_from(views.len()).is_ok_and(|n| n >= limit);
            let next = views.last().map(|d| d.seq).filter(|_| full);
            out.value(&json!({"deliveries": serde_json::to_value(&views)?, "next_before": next}), || {
                deliveries_table(&views, next)
            });
        }
        WebhookCommand::Redeliver { id, seq } => {
            let view = DeliveryView::new(&outbox.redeliver(&db.actor, id, seq).await?);
            out.value(&serde_json::to_value(&view)?, || {
                format!("redelivering event {seq} to webhook {id}\n{}", delivery_text(&view))
            });
        }
    }
    Ok(())
}
