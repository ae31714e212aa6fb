//! The HTTP clients: each sends single transfers (`POST /v1/transfers`) and linked pairs (`POST
//! /v1/transfers/batch` with `atomic`: a bank payment and its fee) with ids of its own
//! choosing, as impatient clients behind a load balancer do. A request not answered within
//! the client timeout is abandoned (its connection closed, its transfer possibly still in
//! flight on that process) and the same transfer, same id and fields, is sent to another
//! process; a share of the transfers goes to two processes at once (a hedge). 408, 429, 5xx
//! and connection errors are retried elsewhere too, after a jittered backoff. A transfer is
//! decided by its first answer that applies it (201, 200) or refuses it by a rule (409, 422);
//! a pair by its first 200 answer to the batch, which holds one such result per transfer.

use crate::bank::Operation;
use crate::fleet::EngineFigures;
use crate::shared::{Answer, HttpRecord, Mix, Shared, TransferSpec, count};
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
    pub mix: Mix,
    pub client_timeout: Duration,
    pub hedge_fraction: f64,
}

/// What one request came to.
enum Reply {
    /// One answer per transfer of the request, in order.
    Decisive(Vec<Answer>),
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
            let operation = self.targets.mix.next(&mut self.rng);
            let hedged = self.rng.f64() < self.targets.hedge_fraction;
            let started = Instant::now();
            match self.decide(&operation, hedged).await {
                Some(answers) => {
                    self.shared.decided(started.elapsed());
                    let records = records_of(&operation, answers);
                    self.shared.http_records.lock().expect("records lock").extend(records);
                }
                None => self.shared.abandoned(),
            }
        }
    }

    /// Tries an operation until some answer decides it: its transfers' answers, in order;
    /// `None` when given up.
    async fn decide(&mut self, operation: &Operation, hedged: bool) -> Option<Vec<Vec<Answer>>> {
        let body = Bytes::from(request_body_of(operation).to_string());
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
                    tokio::join!(self.send(target, body.clone(), operation), self.send(other, body.clone(), operation));
                vec![first, second]
            } else {
                if attempt > 0 {
                    self.shared.http.resubmissions.fetch_add(1, Ordering::Relaxed);
                }
                vec![self.send(target, body.clone(), operation).await]
            };
            let mut answers: Vec<Vec<Answer>> = vec![Vec::new(); operation.transfers.len()];
            let mut decided = false;
            let mut back_off = false;
            for reply in replies {
                match reply {
                    Reply::Decisive(per_transfer) => {
                        assert_eq!(per_transfer.len(), answers.len(), "one answer per transfer");
                        for (answers, answer) in answers.iter_mut().zip(per_transfer) {
                            answers.push(answer);
                        }
                        decided = true;
                    }
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
            if decided {
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

    async fn send(&self, target: usize, body: Bytes, operation: &Operation) -> Reply {
        self.shared.http.requests.fetch_add(1, Ordering::Relaxed);
        let path = if operation.is_atomic() { "/v1/transfers/batch" } else { "/v1/transfers" };
        let request = hyper::Request::post(format!("http://{}{path}", self.targets.addrs[target]))
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
            Ok(Ok((status, bytes))) if operation.is_atomic() => classify_batch(status, &bytes, operation),
            Ok(Ok((status, bytes))) => classify(status, &bytes, &operation.transfers[0].1),
        }
    }
}

/// How long reading a process's `/metrics` may take.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads a process's engine figures from its `/metrics`; `None` when it does not answer in time
/// or the figures are not there.
pub async fn engine_figures(addr: SocketAddr, authorization: &str) -> Option<EngineFigures> {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let request = hyper::Request::get(format!("http://{addr}/metrics"))
        .header("authorization", authorization)
        .body(Full::new(Bytes::new()))
        .expect("a valid request");
    let exchange = async {
        let response = client.request(request).await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.into_body().collect().await.ok().map(|body| body.to_bytes())
    };
    let body = tokio::time::timeout(SCRAPE_TIMEOUT, exchange).await.ok()??;
    parse_engine_figures(&String::from_utf8_lossy(&body))
}

/// The engine's figures in an OpenMetrics text.
fn parse_engine_figures(text: &str) -> Option<EngineFigures> {
    let sample = |name: &str| {
        text.lines().find_map(|line| {
            let value = line.strip_prefix(name)?.strip_prefix(' ')?;
            value.trim().parse::<u64>().ok()
        })
    };
    Some(EngineFigures { batches: sample("tally_engine_batches_committed")?, reruns: sample("tally_engine_reruns")? })
}

/// One record per transfer of a decided operation; a pair's records name each other.
fn records_of(operation: &Operation, answers: Vec<Vec<Answer>>) -> Vec<HttpRecord> {
    assert_eq!(operation.transfers.len(), answers.len());
    assert!(operation.transfers.len() <= 2, "an operation is one transfer or a linked pair");
    let ids: Vec<uuid::Uuid> = operation.transfers.iter().map(|(_, spec)| spec.id).collect();
    operation
        .transfers
        .iter()
        .zip(answers)
        .enumerate()
        .map(|(index, ((kind, spec), answers))| HttpRecord {
            spec: *spec,
            kind: *kind,
            linked_with: (ids.len() == 2).then(|| ids[1 - index]),
            answers,
        })
        .collect()
}

/// The body of an operation's request: a transfer, or an atomic batch of its transfers.
fn request_body_of(operation: &Operation) -> Value {
    if operation.is_atomic() {
        let transfers: Vec<Value> = operation.transfers.iter().map(|(_, spec)| body_of(spec)).collect();
        json!({ "atomic": true, "transfers": transfers })
    } else {
        body_of(&operation.transfers[0].1)
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

/// Whether a transfer as the API shows it is the one that was sent.
fn same_transfer(view: &Value, spec: &TransferSpec) -> bool {
    let expected = body_of(spec);
    ["id", "from", "to", "amount", "currency"].iter().all(|field| view[field] == expected[field])
}

/// What an answer means for the transfer it was about.
fn classify(status: u16, bytes: &[u8], spec: &TransferSpec) -> Reply {
    let body: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    let answer = match status {
        200 | 201 if same_transfer(&body, spec) => Answer::Applied { created: status == 201 },
        200 | 201 => Answer::Unexpected(format!("{status} names another transfer: {body}")),
        408 | 429 | 500..=599 => return Reply::Retryable(status),
        _ => {
            let code = body["error"]["code"].as_str().unwrap_or("");
            match TransferResult::from_code(code) {
                Some(result) if result.is_recorded_rejection() => Answer::Rejected(result),
                _ => Answer::Unexpected(format!("{status} {code}")),
            }
        }
    };
    Reply::Decisive(vec![answer])
}

/// What a batch's answer means for each transfer of the operation: a 200 holds one result per
/// transfer, in order (`ok` applied by this request, `exists`, or a rule's code).
fn classify_batch(status: u16, bytes: &[u8], operation: &Operation) -> Reply {
    let specs: Vec<&TransferSpec> = operation.transfers.iter().map(|(_, spec)| spec).collect();
    let body: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    let all = |answer: Answer| Reply::Decisive(vec![answer; specs.len()]);
    match status {
        200 => {}
        408 | 429 | 500..=599 => return Reply::Retryable(status),
        _ => {
            let code = body["error"]["code"].as_str().unwrap_or("");
            return all(Answer::Unexpected(format!("batch answered {status} {code}")));
        }
    }
    let results = body["results"].as_array().map(Vec::as_slice).unwrap_or_default();
    if results.len() != specs.len() {
        return all(Answer::Unexpected(format!("batch of {} answered with {} results", specs.len(), results.len())));
    }
    let answers = results
        .iter()
        .zip(specs)
        .map(|(result, spec)| {
            let code = result["result"].as_str().unwrap_or("");
            if result["id"] != json!(spec.id) {
                return Answer::Unexpected(format!("batch result for {} in place of {}", result["id"], spec.id));
            }
            match code {
                "ok" | "exists" if same_transfer(&result["transfer"], spec) => {
                    Answer::Applied { created: code == "ok" }
                }
                "ok" | "exists" => Answer::Unexpected(format!("{code} names another transfer: {result}")),
                _ => match TransferResult::from_code(code) {
                    Some(rule) if rule.is_recorded_rejection() => Answer::Rejected(rule),
                    _ => Answer::Unexpected(format!("batch item {code}")),
                },
            }
        })
        .collect();
    Reply::Decisive(answers)
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
            Reply::Decisive(answers) if answers.len() == 1 => answers[0].clone(),
            _ => panic!("not one decisive answer"),
        }
    }

    fn decisive_batch(reply: Reply) -> Vec<Answer> {
        match reply {
            Reply::Decisive(answers) => answers,
            _ => panic!("not decisive"),
        }
    }

    #[test]
    fn batch_answers_are_classified_per_transfer() {
        use crate::bank::Kind;
        let (payment, fee) = (spec(), spec());
        let operation = Operation { transfers: vec![(Kind::Payment, payment), (Kind::Fee, fee)] };
        let item = |spec: &TransferSpec, result: &str| {
            let transfer = if result == "ok" || result == "exists" { body_of(spec) } else { Value::Null };
            json!({"id": spec.id, "result": result, "status": 0, "transfer": transfer})
        };
        let answer = |items: Vec<Value>| json!({"results": items, "applied": 0}).to_string();

        let applied = answer(vec![item(&payment, "ok"), item(&fee, "exists")]);
        assert_eq!(
            decisive_batch(classify_batch(200, applied.as_bytes(), &operation)),
            vec![Answer::Applied { created: true }, Answer::Applied { created: false }]
        );
        let refused = answer(vec![item(&payment, "insufficient_funds"), item(&fee, "linked_chain_failed")]);
        assert_eq!(
            decisive_batch(classify_batch(200, refused.as_bytes(), &operation)),
            vec![
                Answer::Rejected(TransferResult::InsufficientFunds),
                Answer::Rejected(TransferResult::LinkedChainFailed)
            ]
        );
        // Results out of order, too few, another transfer's body, or a refused batch: unexpected.
        let swapped = answer(vec![item(&fee, "ok"), item(&payment, "ok")]);
        let short = answer(vec![item(&payment, "ok")]);
        let mut other = item(&payment, "ok");
        other["transfer"]["amount"] = json!("99.99");
        let other = answer(vec![other, item(&fee, "ok")]);
        for bytes in [swapped.as_bytes(), short.as_bytes(), other.as_bytes()] {
            let answers = decisive_batch(classify_batch(200, bytes, &operation));
            assert!(matches!(answers[0], Answer::Unexpected(_)), "{answers:?}");
        }
        let malformed = br#"{"error":{"code":"invalid_body","message":"x"}}"#;
        let answers = decisive_batch(classify_batch(400, malformed, &operation));
        assert!(answers.len() == 2 && answers.iter().all(|a| matches!(a, Answer::Unexpected(_))));
        assert!(matches!(classify_batch(503, b"", &operation), Reply::Retryable(503)));

        let records = records_of(&operation, vec![vec![Answer::Applied { created: true }]; 2]);
        assert_eq!(records[0].linked_with, Some(fee.id));
        assert_eq!(records[1].linked_with, Some(payment.id));
        assert_eq!(request_body_of(&operation)["atomic"], true);
        assert_eq!(request_body_of(&operation)["transfers"][1]["id"], json!(fee.id));
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
    fn engine_figures_are_read_from_the_exposition() {
        let text = "# HELP tally_engine_batches_committed Batches the engine committed since start\n\
                    # TYPE tally_engine_batches_committed gauge\n\
                    tally_engine_batches_committed 120\n\
                    tally_engine_batches_committed_other 7\n\
                    tally_engine_reruns 31\n# EOF\n";
        assert_eq!(parse_engine_figures(text), Some(EngineFigures { batches: 120, reruns: 31 }));
        assert_eq!(parse_engine_figures("tally_engine_reruns 1\n"), None);
    }

    #[test]
    fn jitter_stays_below_the_ceiling() {
        for _ in 0..1_000 {
            assert!(jitter(BACKOFF_MAX) <= BACKOFF_MAX);
        }
    }
}
