//! The HTTP clients: each sends single transfers (`POST /v1/transfers`) with ids of its own
//! choosing, as impatient clients behind a load balancer do. A request not answered within
//! the client timeout is abandoned (its connection closed, its transfer possibly still in
//! flight on that process) and the same transfer, same id and fields, is sent to another
//! process; a share of the transfers goes to two processes at once (a hedge). 408, 429, 5xx
//! and connection errors are retried elsewhere too, after a jittered backoff. A transfer is
//! decided by its first answer that applies it (201, 200) or refuses it by a rule (409, 422).

use crate::shared::{AccountPicker, Answer, HttpRecord, Shared, TransferSpec, count};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tally_core::{TransferResult, format_amount};

/// Tries of one transfer at most (each to the next process), before it is given up.
pub const ATTEMPTS_MAX: u32 = 500;
/// Backoff after a retryable answer or a connection error: doubles from the base to the max.
pub const BACKOFF_BASE: Duration = Duration::from_millis(5);
pub const BACKOFF_MAX: Duration = Duration::from_millis(500);

const _: () = assert!(BACKOFF_BASE.as_millis() < BACKOFF_MAX.as_millis());

/// What the clients of a run share.
pub struct Targets {
    pub addrs: Vec<SocketAddr>,
    pub authorization: String,
    pub picker: AccountPicker,
    pub client_timeout: Duration,
    pub hedge_fraction: f64,
}

/// What one request came to.
enum Reply {
    Decisive(Answer),
    Timeout,
    Connection,
    Retryable(u16),
}

pub struct HttpClient {
    /// The process this client tries first.
    home: usize,
    /// One connection pool per process, so that a timed-out connection to one never delays
    /// a request to another.
    pools: Vec<Client<HttpConnector, Full<Bytes>>>,
    targets: Arc<Targets>,
    shared: Arc<Shared>,
    rng: fastrand::Rng,
}

impl HttpClient {
    pub fn new(home: usize, seed: u64, targets: Arc<Targets>, shared: Arc<Shared>) -> HttpClient {
        assert!(home < targets.addrs.len());
        let pools = targets
            .addrs
            .iter()
            .map(|_| {
                let mut connector = HttpConnector::new();
                connector.set_nodelay(true);
                Client::builder(TokioExecutor::new()).pool_max_idle_per_host(2).build(connector)
            })
            .collect();
        HttpClient { home, pools, targets, shared, rng: fastrand::Rng::with_seed(seed) }
    }

    /// Sends transfers until the workload is exhausted or the run is cut short.
    pub async fn run(mut self) {
        while self.shared.take() {
            self.shared.http.started.fetch_add(1, Ordering::Relaxed);
            let spec = TransferSpec::random(&mut self.rng, &self.targets.picker);
            let hedged = self.rng.f64() < self.targets.hedge_fraction;
            let started = Instant::now();
            match self.decide(&spec, hedged).await {
                Some(answers) => {
                    self.shared.decided(started.elapsed());
                    self.shared.http_records.lock().expect("records lock").push(HttpRecord { spec, answers });
                }
                None => self.shared.abandoned(),
            }
        }
    }

    /// Tries a transfer until some answer decides it; `None` when given up.
    async fn decide(&mut self, spec: &TransferSpec, hedged: bool) -> Option<Vec<Answer>> {
        let body = Bytes::from(body_of(spec).to_string());
        let processes = self.targets.addrs.len();
        let mut target = self.home;
        let mut backoff = BACKOFF_BASE;
        for attempt in 0..ATTEMPTS_MAX {
            if self.shared.is_aborted() {
                return None;
            }
            let replies = if hedged && attempt == 0 {
                self.shared.http.hedged.fetch_add(1, Ordering::Relaxed);
                let other = (target + 1) % processes;
                let (first, second) =
                    tokio::join!(self.send(target, body.clone(), spec), self.send(other, body.clone(), spec));
                vec![first, second]
            } else {
                if attempt > 0 {
                    self.shared.http.resubmissions.fetch_add(1, Ordering::Relaxed);
                }
                vec![self.send(target, body.clone(), spec).await]
            };
            let mut answers = Vec::new();
            let mut back_off = false;
            for reply in replies {
                match reply {
                    Reply::Decisive(answer) => answers.push(answer),
                    Reply::Timeout => {
                        self.shared.http.timeouts.fetch_add(1, Ordering::Relaxed);
                    }
                    Reply::Connection => {
                        self.shared.http.connection_errors.fetch_add(1, Ordering::Relaxed);
                        back_off = true;
                    }
                    Reply::Retryable(status) => {
                        count(&self.shared.http.retry_statuses, &status.to_string());
                        back_off = true;
                    }
                }
            }
            if !answers.is_empty() {
                return Some(answers);
            }
            // A timeout already waited; anything else waits before the next try.
            if back_off {
                tokio::time::sleep(jitter(backoff)).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            target = (target + 1) % processes;
        }
        self.shared.http.abandoned.fetch_add(1, Ordering::Relaxed);
        None
    }

    async fn send(&self, target: usize, body: Bytes, spec: &TransferSpec) -> Reply {
        self.shared.http.requests.fetch_add(1, Ordering::Relaxed);
        let request = hyper::Request::post(format!("http://{}/v1/transfers", self.targets.addrs[target]))
            .header("authorization", &self.targets.authorization)
            .header("content-type", "application/json")
            .body(Full::new(body))
            .expect("a valid request");
        let exchange = async {
            let response = self.pools[target].request(request).await.map_err(|_| ())?;
            let status = response.status().as_u16();
            let bytes = response.into_body().collect().await.map_err(|_| ())?.to_bytes();
            Ok::<_, ()>((status, bytes))
        };
        match tokio::time::timeout(self.targets.client_timeout, exchange).await {
            Err(_) => Reply::Timeout,
            Ok(Err(())) => Reply::Connection,
            Ok(Ok((status, bytes))) => classify(status, &bytes, spec),
        }
    }
}

/// The request body of a transfer: accounts by id, the amount as a decimal string.
pub fn body_of(spec: &TransferSpec) -> Value {
    json!({
        "id": spec.id,
        "from": spec.debit.0,
        "to": spec.credit.0,
        "amount": format_amount(spec.amount_minor, crate::setup::SCALE),
        "currency": crate::setup::CURRENCY,
    })
}

/// What an answer means for the transfer it was about.
fn classify(status: u16, bytes: &[u8], spec: &TransferSpec) -> Reply {
    let body: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    match status {
        200 | 201 => {
            let expected = body_of(spec);
            let same = ["id", "from", "to", "amount", "currency"].iter().all(|field| body[field] == expected[field]);
            if same {
                Reply::Decisive(Answer::Applied { created: status == 201 })
            } else {
                Reply::Decisive(Answer::Unexpected(format!("{status} names another transfer: {body}")))
            }
        }
        408 | 429 | 500..=599 => Reply::Retryable(status),
        _ => {
            let code = body["error"]["code"].as_str().unwrap_or("");
            match TransferResult::from_code(code) {
                Some(result) if result.is_recorded_rejection() => Reply::Decisive(Answer::Rejected(result)),
                _ => Reply::Decisive(Answer::Unexpected(format!("{status} {code}"))),
            }
        }
    }
}

/// Full jitter: a uniformly random pause below the ceiling, so that retries spread out.
fn jitter(ceiling: Duration) -> Duration {
    let micros = u64::try_from(ceiling.as_micros()).expect("small durations");
    Duration::from_micros(fastrand::u64(0..=micros))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_core::AccountId;
    use uuid::Uuid;

    fn spec() -> TransferSpec {
        TransferSpec {
            id: Uuid::now_v7(),
            debit: AccountId(Uuid::now_v7()),
            credit: AccountId(Uuid::now_v7()),
            amount_minor: 1234,
        }
    }

    fn decisive(reply: Reply) -> Answer {
        match reply {
            Reply::Decisive(answer) => answer,
            _ => panic!("not decisive"),
        }
    }

    #[test]
    fn answers_are_classified_by_status_and_code() {
        let spec = spec();
        let mut view = body_of(&spec);
        view["kind"] = json!("posted");
        let view = view.to_string();
        assert_eq!(decisive(classify(201, view.as_bytes(), &spec)), Answer::Applied { created: true });
        assert_eq!(decisive(classify(200, view.as_bytes(), &spec)), Answer::Applied { created: false });
        assert_eq!(body_of(&spec)["amount"], "12.34");

        let refused = br#"{"error":{"code":"insufficient_funds","message":"x"}}"#;
        assert_eq!(decisive(classify(422, refused, &spec)), Answer::Rejected(TransferResult::InsufficientFunds));
        let collided = br#"{"error":{"code":"exists_with_different_fields","message":"x"}}"#;
        assert!(matches!(decisive(classify(409, collided, &spec)), Answer::Unexpected(_)));
        let malformed = br#"{"error":{"code":"invalid_amount","message":"x"}}"#;
        assert!(matches!(decisive(classify(400, malformed, &spec)), Answer::Unexpected(_)));
        let other = body_of(&self::spec()).to_string();
        assert!(matches!(decisive(classify(201, other.as_bytes(), &spec)), Answer::Unexpected(_)));

        for status in [408, 429, 500, 503] {
            assert!(matches!(classify(status, b"", &spec), Reply::Retryable(s) if s == status));
        }
    }

    #[test]
    fn jitter_stays_below_the_ceiling() {
        for _ in 0..1_000 {
            assert!(jitter(BACKOFF_MAX) <= BACKOFF_MAX);
        }
    }
}
