//! The webhook dispatcher: one task per active endpoint, each delivering that endpoint's events
//! in order.
//!
//! An endpoint's worker keeps at most one delivery open (the oldest event it has not had): it
//! POSTs it, records the attempt, and on a 2xx moves on. On anything else it tries again after
//! an exponential backoff with jitter (`retry_base` doubling up to `retry_max`); after
//! `attempts_max` attempts the delivery is *parked* and the endpoint gets nothing more until an
//! operator redelivers it (`Outbox::redeliver`), so that the endpoint still sees its events in
//! order. Workers share nothing but the lease's connection, on which they record attempts (one
//! statement each), so a slow or dead endpoint delays only itself, and never the posting path,
//! which does not know about webhooks at all.
//!
//! State lives in PostgreSQL (`webhook_endpoints.delivered_seq`, `webhook_deliveries`), so a
//! restarted dispatcher, or a standby that takes the lease, resumes where it stopped. An attempt
//! whose answer came but was not yet recorded is sent again: delivery is at least once, and a
//! receiver drops repeats by `Tally-Event-Seq`.

use crate::http::{Answer, Http};
use crate::lease::Lease;
use crate::stats::Stats;
use crate::webhooks::{DeliveryStatus, ERROR_LEN_MAX, WebhookRecord};
use crate::{
    Outbox, PAGE_EVENTS_MAX, RESTART_DELAY_MAX, RelayError, backoff, holder_name, signature, sleep_or_shutdown,
};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};
use tally_views::EventView;
use tally_views::events::type_matches;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// The dispatcher's lease and cursor name.
pub const LEASE_NAME: &str = "webhooks";
/// Bounds on the configuration.
pub const ATTEMPTS_MAX: u32 = 50;
pub const TIMEOUT_MAX: Duration = Duration::from_secs(60);
pub const RETRY_MAX_MAX: Duration = Duration::from_secs(24 * 3600);
pub const INTERVAL_MAX: Duration = Duration::from_secs(60);
/// Matching events a worker holds in memory at most.
pub const BUFFER_MAX: usize = PAGE_EVENTS_MAX as usize;

#[derive(Debug, Clone, PartialEq)]
pub struct WebhookConfig {
    /// Attempts before a delivery is parked (and again after each redelivery).
    pub attempts_max: u32,
    /// The first retry's delay; each further one doubles, up to `retry_max`; each is jittered
    /// between half and all of it.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// How long an endpoint has to answer (connecting included).
    pub timeout: Duration,
    /// How often new events are looked for.
    pub poll_interval: Duration,
    /// How often endpoints (registered, disabled, deleted, redelivered) are read again.
    pub refresh_interval: Duration,
    /// How often a standby dispatcher tries to take the lease.
    pub lease_poll: Duration,
}

impl Default for WebhookConfig {
    fn default() -> WebhookConfig {
        WebhookConfig {
            attempts_max: 12,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(3600),
            timeout: Duration::from_secs(10),
            poll_interval: Duration::from_millis(50),
            refresh_interval: Duration::from_secs(1),
            lease_poll: Duration::from_secs(1),
        }
    }
}

impl WebhookConfig {
    pub fn validate(&self) -> Result<(), RelayError> {
        let invalid = |what: &str| Err(RelayError::Config(what.to_owned()));
        if !(1..=ATTEMPTS_MAX).contains(&self.attempts_max) {
            return invalid("webhook attempts: 1 to 50");
        }
        if self.retry_base.is_zero() || self.retry_base > self.retry_max || self.retry_max > RETRY_MAX_MAX {
            return invalid("webhook retries: 0 < base <= max <= 24 h");
        }
        if self.timeout.is_zero() || self.timeout > TIMEOUT_MAX {
            return invalid("webhook timeout: up to 60 s");
        }
        for interval in [self.poll_interval, self.refresh_interval] {
            if interval.is_zero() || interval > INTERVAL_MAX {
                return invalid("webhook poll and refresh intervals: up to 60 s");
            }
        }
        if !(crate::lease::LEASE_POLL_MIN..=crate::lease::LEASE_POLL_MAX).contains(&self.lease_poll) {
            return invalid("lease poll: 10 ms to 60 s");
        }
        Ok(())
    }
}

/// Dispatches webhooks until `shutdown` turns true: stands by while another process holds the
/// lease, and starts over with backoff after any failure. Errs only on an invalid configuration.
pub async fn run_webhooks(
    outbox: Outbox,
    config: WebhookConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), RelayError> {
    config.validate()?;
    let holder = holder_name();
    let mut failures = 0;
    loop {
        let Some(lease) = Lease::wait(&outbox, LEASE_NAME, &holder, config.lease_poll, &mut shutdown).await else {
            return Ok(());
        };
        outbox.stats().webhooks_active.store(true, Ordering::Relaxed);
        let result = dispatch_while_held(&outbox, &config, Arc::new(lease), &mut shutdown, &mut failures).await;
        outbox.stats().webhooks_active.store(false, Ordering::Relaxed);
        match result {
            Ok(()) => return Ok(()),
            Err(error) => {
                failures += 1;
                let delay = backoff(Duration::from_millis(100), RESTART_DELAY_MAX, failures);
                tracing::warn!(%error, ?delay, "webhook dispatcher stopped; starting over");
                if sleep_or_shutdown(delay, &mut shutdown).await {
                    return Ok(());
                }
            }
        }
    }
}

struct Shared {
    outbox: Outbox,
    config: WebhookConfig,
    lease: Arc<Lease>,
    http: Http,
}

async fn dispatch_while_held(
    outbox: &Outbox,
    config: &WebhookConfig,
    lease: Arc<Lease>,
    shutdown: &mut watch::Receiver<bool>,
    failures: &mut u32,
) -> Result<(), RelayError> {
    let shared = Arc::new(Shared {
        outbox: outbox.clone(),
        config: config.clone(),
        lease: lease.clone(),
        http: Http::new(config.timeout),
    });
    let (newest_tx, newest_rx) = watch::channel(outbox.store().last_event_seq().await?);
    let mut workers: HashMap<Uuid, (watch::Sender<WebhookRecord>, JoinHandle<()>)> = HashMap::new();
    // Workers told to stop (their endpoint disabled or deleted) that may still be finishing an
    // attempt. No other worker starts for their endpoint until they have: an endpoint disabled
    // and enabled again at once would otherwise get two deliveries at a time, and repeats.
    let mut stopping: Vec<(Uuid, JoinHandle<()>)> = Vec::new();
    let mut next_refresh = Instant::now();
    let result = loop {
        if *shutdown.borrow() {
            break Ok(());
        }
        if !lease.is_held() {
            break Err(RelayError::LeaseLost(LEASE_NAME.to_owned()));
        }
        if Instant::now() >= next_refresh {
            next_refresh = Instant::now() + config.refresh_interval;
            let endpoints = match outbox.webhooks().await {
                Ok(endpoints) => endpoints,
                Err(error) => break Err(error),
            };
            // Dropping a worker's sender stops it: its endpoint was deleted or disabled.
            let gone: Vec<Uuid> = workers
                .iter()
                .filter(|(id, (_, handle))| {
                    handle.is_finished() || !endpoints.iter().any(|e| e.id == **id && e.status == "active")
                })
                .map(|(id, _)| *id)
                .collect();
            for id in gone {
                let (sender, handle) = workers.remove(&id).expect("listed");
                drop(sender);
                stopping.push((id, handle));
            }
            stopping.retain(|(_, handle)| !handle.is_finished());
            for endpoint in endpoints.into_iter().filter(|e| e.status == "active") {
                if let Some((sender, _)) = workers.get(&endpoint.id) {
                    sender.send_replace(endpoint);
                    continue;
                }
                if stopping.iter().any(|(id, _)| *id == endpoint.id) {
                    // Started at a later refresh, once the previous worker has stopped.
                    continue;
                }
                let id = endpoint.id;
                let (sender, receiver) = watch::channel(endpoint);
                let handle = tokio::spawn(worker(shared.clone(), receiver, newest_rx.clone(), shutdown.clone()));
                workers.insert(id, (sender, handle));
            }
        }
        match outbox.store().last_event_seq().await {
            Ok(newest) => {
                newest_tx.send_if_modified(|seen| std::mem::replace(seen, newest) != newest);
                // A pass went through: the next failure starts the backoff afresh.
                *failures = 0;
            }
            Err(error) => break Err(error.into()),
        }
        if sleep_or_shutdown(config.poll_interval, shutdown).await {
            break Ok(());
        }
    };
    // Stop the workers: an attempt in flight finishes (bounded by the timeout) or is abandoned,
    // in which case it is sent again later.
    let handles: Vec<JoinHandle<()>> =
        workers.into_values().map(|(_, handle)| handle).chain(stopping.into_iter().map(|(_, handle)| handle)).collect();
    let bound = config.timeout + Duration::from_secs(1);
    for handle in handles {
        let abort = handle.abort_handle();
        if tokio::time::timeout(bound, handle).await.is_err() {
            abort.abort();
        }
    }
    result
}

async fn worker(
    shared: Arc<Shared>,
    endpoint: watch::Receiver<WebhookRecord>,
    newest: watch::Receiver<i64>,
    shutdown: watch::Receiver<bool>,
) {
    let id = endpoint.borrow().id;
    if let Err(error) = deliver(&shared, endpoint, newest, shutdown).await {
        tracing::warn!(webhook = %id, %error, "webhook worker stopped; the dispatcher restarts it");
    }
}

/// The delivery an endpoint is on.
struct Head {
    seq: i64,
    event_type: String,
    attempts: i32,
    round_start: i32,
    next_at: SystemTime,
    parked: bool,
    event: Option<EventView>,
}

/// Whether the worker should stop: shutdown, or its endpoint gone or disabled.
fn stopping(endpoint: &watch::Receiver<WebhookRecord>, shutdown: &watch::Receiver<bool>) -> bool {
    *shutdown.borrow() || shutdown.has_changed().is_err() || endpoint.has_changed().is_err()
}

/// Waits for `delay`, a change of `signal`, or a stop; says whether to stop.
async fn wait<T>(
    delay: Duration,
    signal: &mut watch::Receiver<T>,
    endpoint: &mut watch::Receiver<WebhookRecord>,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = signal.changed() => {}
        changed = endpoint.changed() => if changed.is_err() { return true },
        _ = shutdown.changed() => {}
    }
    stopping(endpoint, shutdown)
}

async fn deliver(
    shared: &Shared,
    mut endpoint: watch::Receiver<WebhookRecord>,
    newest: watch::Receiver<i64>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), RelayError> {
    let (id, url, types) = {
        let e = endpoint.borrow();
        (e.id, e.url.clone(), e.event_types.clone())
    };
    // The position as it is now, not as the dispatcher last read it: a previous worker may have
    // moved it since.
    let (secret, delivered) = shared.outbox.webhook_secret(id).await?;
    let config = &shared.config;
    let mut head = open_delivery(shared, id).await?;
    // Every event up to `scanned` is delivered, in `buffer`, or does not match the filter.
    let mut scanned = head.as_ref().map_or(delivered, |h| h.seq);
    let mut buffer: VecDeque<EventView> = VecDeque::new();
    loop {
        if stopping(&endpoint, &shutdown) || !shared.lease.is_held() {
            return Ok(());
        }
        let mut current = match head.take() {
            Some(current) => current,
            None => {
                if buffer.is_empty() {
                    let page = shared.outbox.store().events_with_subjects(scanned, PAGE_EVENTS_MAX).await?;
                    let Some((last, _)) = page.last() else {
                        let mut newest = newest.clone();
                        if *newest.borrow_and_update() <= scanned
                            && wait(config.refresh_interval, &mut newest, &mut endpoint, &mut shutdown).await
                        {
                            return Ok(());
                        }
                        continue;
                    };
                    let last = last.seq;
                    for (event, subject) in page {
                        if types.iter().any(|pattern| type_matches(pattern, &event.event_type)) {
                            buffer.push_back(EventView::new(event, subject));
                        }
                    }
                    assert!(buffer.len() <= BUFFER_MAX);
                    if buffer.is_empty() {
                        advance(shared, id, last).await?;
                    }
                    scanned = last;
                    continue;
                }
                let event = buffer.pop_front().expect("not empty");
                Head {
                    seq: event.seq,
                    event_type: event.event_type.clone(),
                    attempts: 0,
                    round_start: 0,
                    next_at: SystemTime::now(),
                    parked: false,
                    event: Some(event),
                }
            }
        };
        if current.parked {
            // Parked: nothing more for this endpoint until an operator redelivers.
            let (_kept, mut never) = watch::channel(());
            if wait(config.refresh_interval, &mut never, &mut endpoint, &mut shutdown).await {
                return Ok(());
            }
            if let Some(reopened) = open_delivery(shared, id).await?.filter(|h| h.seq == current.seq && !h.parked) {
                tracing::info!(webhook = %id, seq = current.seq, "parked delivery redelivered");
                current.parked = false;
                current.round_start = reopened.round_start;
                current.attempts = reopened.attempts;
                current.next_at = SystemTime::now();
            }
            head = Some(current);
            continue;
        }
        if let Ok(delay) = current.next_at.duration_since(SystemTime::now()) {
            let (_kept, mut never) = watch::channel(());
            if wait(delay, &mut never, &mut endpoint, &mut shutdown).await {
                return Ok(());
            }
            if SystemTime::now() < current.next_at {
                head = Some(current);
                continue;
            }
        }
        let event = match current.event.take() {
            Some(event) => event,
            None => read_event(shared, current.seq).await?,
        };
        let body = event.to_json();
        let attempt = current.attempts + 1;
        let at = SystemTime::now();
        let unix = at.duration_since(SystemTime::UNIX_EPOCH).expect("after 1970").as_secs() as i64;
        let headers = [
            (signature::HEADER, signature::sign(&secret, unix, &body)),
            ("tally-event-seq", event.seq.to_string()),
            ("tally-event-type", event.event_type.clone()),
            ("tally-webhook-id", id.to_string()),
            ("tally-delivery-attempt", attempt.to_string()),
            ("user-agent", concat!("tally-webhooks/", env!("CARGO_PKG_VERSION")).to_owned()),
        ];
        let answer = shared.http.post(&url, &headers, body.into()).await;
        let round = u32::try_from(attempt - current.round_start).expect("attempts grow");
        let (status, next_at) = if answer.delivered() {
            (DeliveryStatus::Delivered, None)
        } else if round >= config.attempts_max {
            (DeliveryStatus::Parked, None)
        } else {
            (DeliveryStatus::Pending, Some(SystemTime::now() + backoff(config.retry_base, config.retry_max, round)))
        };
        // Delivered: the endpoint's position moves to this event, or past the events after it
        // that do not match when nothing else is waiting.
        let position = if buffer.is_empty() { scanned } else { event.seq };
        record(shared, id, &current, attempt, status, next_at, at, &answer, position).await?;
        let stats = shared.outbox.stats();
        match status {
            DeliveryStatus::Delivered => Stats::add(&stats.webhook_delivered, 1),
            DeliveryStatus::Pending => Stats::add(&stats.webhook_failed, 1),
            DeliveryStatus::Parked => {
                Stats::add(&stats.webhook_parked, 1);
                tracing::warn!(webhook = %id, seq = event.seq, attempts = attempt, "delivery parked");
            }
        }
        if status != DeliveryStatus::Delivered {
            current.attempts = attempt;
            current.parked = status == DeliveryStatus::Parked;
            current.next_at = next_at.unwrap_or_else(SystemTime::now);
            current.event = Some(event);
            head = Some(current);
        }
    }
}

/// The endpoint's open (pending or parked) delivery, if any.
async fn open_delivery(shared: &Shared, id: Uuid) -> Result<Option<Head>, RelayError> {
    let row = shared
        .lease
        .client()
        .query_opt(
            "SELECT seq, event_type, status, attempts, round_start, next_attempt_at FROM webhook_deliveries
             WHERE endpoint_id = $1 AND status <> 'delivered'",
            &[&id],
        )
        .await
        .map_err(|error| shared.lease.lost_or(error))?;
    Ok(row.map(|row| Head {
        seq: row.get(0),
        event_type: row.get(1),
        parked: row.get::<_, &str>(2) == "parked",
        attempts: row.get(3),
        round_start: row.get(4),
        next_at: row.get::<_, Option<SystemTime>>(5).unwrap_or_else(SystemTime::now),
        event: None,
    }))
}

async fn read_event(shared: &Shared, seq: i64) -> Result<EventView, RelayError> {
    let mut page = shared.outbox.store().events_with_subjects(seq - 1, 1).await?;
    let (event, subject) = page.pop().expect("an event that was delivered once is still in the outbox");
    assert_eq!(event.seq, seq);
    Ok(EventView::new(event, subject))
}

/// Moves the endpoint's position past events that do not match its filter.
async fn advance(shared: &Shared, id: Uuid, seq: i64) -> Result<(), RelayError> {
    shared
        .lease
        .client()
        .execute(
            "UPDATE webhook_endpoints SET delivered_seq = $2 WHERE id = $1 AND delivered_seq < $2
               AND NOT EXISTS (SELECT 1 FROM webhook_deliveries WHERE endpoint_id = $1 AND status <> 'delivered')",
            &[&id, &seq],
        )
        .await
        .map_err(|error| shared.lease.lost_or(error))?;
    Ok(())
}

/// Records an attempt, the delivery's new state and, when delivered, the endpoint's position:
/// one statement, on the lease's connection.
#[allow(clippy::too_many_arguments)]
async fn record(
    shared: &Shared,
    id: Uuid,
    head: &Head,
    attempt: i32,
    status: DeliveryStatus,
    next_at: Option<SystemTime>,
    at: SystemTime,
    answer: &Answer,
    position: i64,
) -> Result<(), RelayError> {
    let error: Option<String> = answer.error.as_ref().map(|e| e.chars().take(ERROR_LEN_MAX / 4).collect());
    let code = answer.status_code.map(i32::from);
    let duration_ms = i32::try_from(answer.duration.as_millis()).unwrap_or(i32::MAX);
    let recorded: i64 = shared
        .lease
        .client()
        .query_one(
            "WITH d AS (
                 INSERT INTO webhook_deliveries AS d (endpoint_id, seq, event_type, status, attempts, round_start,
                     next_attempt_at, last_status_code, last_error, delivered_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, CASE WHEN $4 = 'delivered' THEN now() END)
                 ON CONFLICT (endpoint_id, seq) DO UPDATE
                     SET status = excluded.status, attempts = excluded.attempts, next_attempt_at = excluded.next_attempt_at,
                         last_status_code = excluded.last_status_code, last_error = excluded.last_error,
                         delivered_at = excluded.delivered_at, updated_at = now()
                     WHERE d.status = 'pending' AND d.attempts = excluded.attempts - 1
                 RETURNING 1
             ), a AS (
                 INSERT INTO webhook_attempts (endpoint_id, seq, attempt, at, status_code, error, duration_ms)
                 SELECT $1, $2, $5, $10, $8, $9, $11 FROM d
             ), e AS (
                 UPDATE webhook_endpoints SET delivered_seq = $12, updated_at = now()
                 WHERE id = $1 AND $4 = 'delivered' AND delivered_seq < $12 AND EXISTS (SELECT 1 FROM d)
             )
             SELECT count(*) FROM d",
            &[
                &id,
                &head.seq,
                &head.event_type,
                &status.as_str(),
                &attempt,
                &head.round_start,
                &next_at,
                &code,
                &error,
                &at,
                &duration_ms,
                &position,
            ],
        )
        .await
        .map_err(|error| shared.lease.lost_or(error))?
        .get(0);
    if recorded != 1 {
        // Someone else changed the delivery (another dispatcher, or it was deleted): start over
        // from what the database says.
        return Err(RelayError::DeliveryChanged { id, seq: head.seq });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_are_checked() {
        assert!(WebhookConfig::default().validate().is_ok());
        let bad = |change: fn(&mut WebhookConfig)| {
            let mut config = WebhookConfig::default();
            change(&mut config);
            config.validate().unwrap_err().code()
        };
        assert_eq!(bad(|c| c.attempts_max = 0), "relay_config_invalid");
        assert_eq!(bad(|c| c.attempts_max = 51), "relay_config_invalid");
        assert_eq!(bad(|c| c.retry_base = Duration::ZERO), "relay_config_invalid");
        assert_eq!(bad(|c| c.retry_base = Duration::from_secs(7200)), "relay_config_invalid");
        assert_eq!(bad(|c| c.timeout = Duration::from_secs(61)), "relay_config_invalid");
        assert_eq!(bad(|c| c.poll_interval = Duration::ZERO), "relay_config_invalid");
    }
}
