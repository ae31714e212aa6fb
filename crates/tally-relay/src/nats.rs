//! The relay to NATS JetStream.
//!
//! Every event goes to the stream `config.stream` on the subject `<prefix>.<type>` (for example
//! `tally.transfer.posted`), its body the event as `GET /v1/events` shows it, with headers
//! `Nats-Msg-Id` (the event's sequence number: JetStream drops a second message with the same id
//! inside its duplicate window), `Tally-Seq`, `Tally-Type` and, for an event of one ledger,
//! `Tally-Ledger`. Events go out in pages, published
//! back to back and acknowledged in order; the cursor in PostgreSQL moves past a page only once
//! JetStream has acknowledged all of it. A relay killed mid-page sends that page again when it
//! (or a standby) resumes, and JetStream keeps one copy.

use crate::lease::Lease;
use crate::stats::Stats;
use crate::{Outbox, PAGE_EVENTS_MAX, RESTART_DELAY_MAX, RelayError, backoff, holder_name, sleep_or_shutdown};
use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tally_views::EventView;
use tokio::sync::watch;

/// Bounds on the configuration.
pub const DUPLICATE_WINDOW_MAX: Duration = Duration::from_secs(24 * 3600);
pub const POLL_INTERVAL_MAX: Duration = Duration::from_secs(10);
pub const NAME_LEN_MAX: usize = 64;
/// How long JetStream may take to acknowledge a message before the page is sent again.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq)]
pub struct NatsConfig {
    /// The NATS server, e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// The JetStream stream; created if missing, with the subjects `<prefix>.>`.
    pub stream: String,
    /// The first token of every subject.
    pub subject_prefix: String,
    /// JetStream's duplicate window for a stream the relay creates: how long a re-sent message
    /// is recognised by its id.
    pub duplicate_window: Duration,
    /// Events per page (published back to back, then acknowledged).
    pub page: i64,
    /// How often the relay looks for new events when it has caught up.
    pub poll_interval: Duration,
    /// How often a standby tries to take the lease.
    pub lease_poll: Duration,
}

impl NatsConfig {
    pub fn new(url: &str) -> NatsConfig {
        NatsConfig {
            url: url.to_owned(),
            stream: "TALLY".to_owned(),
            subject_prefix: "tally".to_owned(),
            duplicate_window: Duration::from_secs(120),
            page: PAGE_EVENTS_MAX,
            poll_interval: Duration::from_millis(20),
            lease_poll: Duration::from_secs(1),
        }
    }

    /// The relay's cursor and lease name.
    pub fn cursor_name(&self) -> String {
        format!("nats:{}", self.stream)
    }

    pub fn validate(&self) -> Result<(), RelayError> {
        let token = |text: &str| {
            !text.is_empty()
                && text.len() <= NAME_LEN_MAX
                && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !token(&self.stream) {
            return Err(RelayError::Config(format!(
                "stream name {:?}: 1 to {NAME_LEN_MAX} letters, digits, '_' or '-'",
                self.stream
            )));
        }
        if !self.subject_prefix.split('.').all(token) {
            return Err(RelayError::Config(format!(
                "subject prefix {:?}: tokens of letters, digits, '_' or '-', joined by '.'",
                self.subject_prefix
            )));
        }
        if self.duplicate_window.is_zero() || self.duplicate_window > DUPLICATE_WINDOW_MAX {
            return Err(RelayError::Config(format!("duplicate window: 1 s to {DUPLICATE_WINDOW_MAX:?}")));
        }
        if !(1..=PAGE_EVENTS_MAX).contains(&self.page) {
            return Err(RelayError::Config(format!("page: 1 to {PAGE_EVENTS_MAX} events")));
        }
        if self.poll_interval.is_zero() || self.poll_interval > POLL_INTERVAL_MAX {
            return Err(RelayError::Config(format!("poll interval: up to {POLL_INTERVAL_MAX:?}")));
        }
        if !(crate::lease::LEASE_POLL_MIN..=crate::lease::LEASE_POLL_MAX).contains(&self.lease_poll) {
            return Err(RelayError::Config("lease poll: 10 ms to 60 s".to_owned()));
        }
        if !self.url.starts_with("nats://") && !self.url.starts_with("tls://") {
            return Err(RelayError::Config(format!("NATS URL {:?}: nats://host:port", self.url)));
        }
        Ok(())
    }
}

fn nats_error(error: impl std::fmt::Display) -> RelayError {
    RelayError::Nats(error.to_string())
}

/// Relays events until `shutdown` turns true: stands by while another relay holds the lease,
/// and after any failure (NATS or PostgreSQL unreachable, the lease lost) starts over with
/// backoff. Returns an error only for an invalid configuration.
pub async fn run_nats(
    outbox: Outbox,
    config: NatsConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), RelayError> {
    config.validate()?;
    let name = config.cursor_name();
    let holder = holder_name();
    let mut failures = 0;
    loop {
        let Some(lease) = Lease::wait(&outbox, &name, &holder, config.lease_poll, &mut shutdown).await else {
            return Ok(());
        };
        outbox.stats().nats_active.store(true, Ordering::Relaxed);
        let result = relay_while_held(&outbox, &config, &lease, &mut shutdown, &mut failures).await;
        outbox.stats().nats_active.store(false, Ordering::Relaxed);
        drop(lease);
        match result {
            Ok(()) => return Ok(()),
            Err(error) => {
                failures += 1;
                let delay = backoff(Duration::from_millis(100), RESTART_DELAY_MAX, failures);
                tracing::warn!(relay = name, %error, ?delay, "relay stopped; starting over");
                if sleep_or_shutdown(delay, &mut shutdown).await {
                    return Ok(());
                }
            }
        }
    }
}

async fn relay_while_held(
    outbox: &Outbox,
    config: &NatsConfig,
    lease: &Lease,
    shutdown: &mut watch::Receiver<bool>,
    failures: &mut u32,
) -> Result<(), RelayError> {
    let client = async_nats::ConnectOptions::new()
        .name("tally-relay")
        .connection_timeout(Duration::from_secs(5))
        .connect(config.url.as_str())
        .await
        .map_err(nats_error)?;
    let js = jetstream::ContextBuilder::new()
        .ack_timeout(ACK_TIMEOUT)
        .max_ack_inflight(usize::try_from(PAGE_EVENTS_MAX).expect("small"))
        .backpressure_on_inflight(true)
        .build(client);
    js.get_or_create_stream(jetstream::stream::Config {
        name: config.stream.clone(),
        subjects: vec![format!("{}.>", config.subject_prefix)],
        duplicate_window: config.duplicate_window,
        description: Some("Tally's events, relayed from its outbox in commit order".to_owned()),
        ..Default::default()
    })
    .await
    .map_err(nats_error)?;
    let mut cursor = lease.cursor().await?;
    tracing::info!(stream = config.stream, cursor, "relaying events to NATS JetStream");
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        if !lease.is_held() {
            return Err(RelayError::LeaseLost(lease.name().to_owned()));
        }
        let events = outbox.store().events_with_subjects(cursor, config.page).await?;
        let Some((last, _)) = events.last() else {
            if sleep_or_shutdown(config.poll_interval, shutdown).await {
                return Ok(());
            }
            continue;
        };
        let last = last.seq;
        assert!(last > cursor, "events come after the cursor");
        let mut acks: Vec<PublishAckFuture> = Vec::with_capacity(events.len());
        let mut expected = cursor;
        for (event, subject) in events {
            expected += 1;
            assert_eq!(event.seq, expected, "the outbox has no gap");
            let view = EventView::new(event, subject);
            let mut message = PublishMessage::build()
                .payload(view.to_json().into())
                .message_id(view.seq.to_string())
                .header("Tally-Seq", view.seq.to_string().as_str())
                .header("Tally-Type", view.event_type.as_str());
            if let Some(ledger) = view.ledger {
                message = message.header("Tally-Ledger", ledger.to_string().as_str());
            }
            let subject = format!("{}.{}", config.subject_prefix, view.event_type);
            acks.push(js.send_publish(subject, message).await.map_err(nats_error)?);
        }
        // Each acknowledgement is counted as it comes, so that a page whose cursor update is
        // lost still shows in the counters (and its re-send as duplicates).
        for ack in acks {
            let duplicate = ack.await.map_err(nats_error)?.duplicate;
            Stats::add(&outbox.stats().nats_published, 1);
            Stats::add(&outbox.stats().nats_duplicates, u64::from(duplicate));
        }
        lease.advance(last).await?;
        cursor = last;
        *failures = 0;
        outbox.stats().nats_delivered_seq.store(last, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_are_checked() {
        assert!(NatsConfig::new("nats://127.0.0.1:4222").validate().is_ok());
        let bad = |change: fn(&mut NatsConfig)| {
            let mut config = NatsConfig::new("nats://127.0.0.1:4222");
            change(&mut config);
            config.validate().unwrap_err().code()
        };
        assert_eq!(bad(|c| c.stream = "a.b".into()), "relay_config_invalid");
        assert_eq!(bad(|c| c.stream = String::new()), "relay_config_invalid");
        assert_eq!(bad(|c| c.subject_prefix = "a.>".into()), "relay_config_invalid");
        assert_eq!(bad(|c| c.subject_prefix = "a..b".into()), "relay_config_invalid");
        assert_eq!(bad(|c| c.page = 0), "relay_config_invalid");
        assert_eq!(bad(|c| c.duplicate_window = Duration::ZERO), "relay_config_invalid");
        assert_eq!(bad(|c| c.url = "http://x".into()), "relay_config_invalid");
        let mut ok = NatsConfig::new("nats://127.0.0.1:4222");
        ok.subject_prefix = "ledger.eu-1".into();
        assert!(ok.validate().is_ok());
    }
}
