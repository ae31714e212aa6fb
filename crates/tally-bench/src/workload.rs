//! What the benchmark's clients send: account choice (uniform or Zipf) and the transfer mix.

use tally_core::{AccountId, TransferId, TransferKind, TransferRequest};
use uuid::Uuid;

/// Picks accounts: uniformly, or by a Zipf law over a random permutation of the accounts (so
/// the hot accounts are not simply the first ids).
pub struct AccountPicker {
    accounts: Vec<AccountId>,
    /// Zipf only: cumulative probability of ranks 1..=n.
    cumulative: Option<Vec<f64>>,
}

impl AccountPicker {
    pub fn uniform(accounts: Vec<AccountId>) -> AccountPicker {
        assert!(accounts.len() >= 2);
        AccountPicker { accounts, cumulative: None }
    }

    pub fn zipf(mut accounts: Vec<AccountId>, exponent: f64) -> AccountPicker {
        assert!(accounts.len() >= 2 && exponent > 0.0);
        fastrand::shuffle(&mut accounts);
        let weights: Vec<f64> = (1..=accounts.len()).map(|rank| 1.0 / (rank as f64).powf(exponent)).collect();
        let total: f64 = weights.iter().sum();
        let mut running = 0.0;
        let cumulative = weights
            .iter()
            .map(|w| {
                running += w / total;
                running
            })
            .collect();
        AccountPicker { accounts, cumulative: Some(cumulative) }
    }

    pub fn pick(&self, rng: &mut fastrand::Rng) -> AccountId {
        let index = match &self.cumulative {
            None => rng.usize(..self.accounts.len()),
            Some(cumulative) => {
                let u = rng.f64();
                cumulative.partition_point(|c| *c < u).min(self.accounts.len() - 1)
            }
        };
        self.accounts[index]
    }

    /// Two different accounts.
    pub fn pair(&self, rng: &mut fastrand::Rng) -> (AccountId, AccountId) {
        let debit = self.pick(rng);
        loop {
            let credit = self.pick(rng);
            if credit != debit {
                return (debit, credit);
            }
        }
    }

    /// The share of picks that land on the hottest account (for the report).
    pub fn hottest_share(&self) -> f64 {
        match &self.cumulative {
            None => 1.0 / self.accounts.len() as f64,
            Some(cumulative) => cumulative[0],
        }
    }
}

/// Builds one client's requests. Holds placed in one request are resolved (posted in full or
/// voided, alternately) in the client's next request, so every hold is valid when resolved.
pub struct Client {
    rng: fastrand::Rng,
    pending_percent: u8,
    open_holds: Vec<TransferId>,
    resolve_by_posting: bool,
}

/// The largest amount a benchmark transfer moves, in minor units; accounts are funded far above
/// what a run can spend, so every transfer is valid and any refusal is a defect.
pub const BENCH_AMOUNT_MAX: i128 = 1_000;

impl Client {
    pub fn new(seed: u64, pending_percent: u8) -> Client {
        assert!(pending_percent <= 100);
        Client {
            rng: fastrand::Rng::with_seed(seed),
            pending_percent,
            open_holds: Vec::new(),
            resolve_by_posting: true,
        }
    }

    pub fn next_request(&mut self, picker: &AccountPicker, size: usize) -> Vec<TransferRequest> {
        let mut requests = Vec::with_capacity(size);
        for hold in std::mem::take(&mut self.open_holds) {
            if requests.len() == size {
                self.open_holds.push(hold);
                continue;
            }
            let kind = if self.resolve_by_posting { TransferKind::PostPending } else { TransferKind::VoidPending };
            self.resolve_by_posting = !self.resolve_by_posting;
            requests.push(TransferRequest::acting_on(TransferId(Uuid::now_v7()), kind, hold, None));
        }
        while requests.len() < size {
            let (debit, credit) = picker.pair(&mut self.rng);
            let amount = self.rng.i128(1..=BENCH_AMOUNT_MAX);
            let mut request = TransferRequest::posted(TransferId(Uuid::now_v7()), debit, credit, amount);
            if self.rng.u8(0..100) < self.pending_percent {
                request.kind = TransferKind::Pending;
                self.open_holds.push(request.id);
            }
            requests.push(request);
        }
        requests
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts(n: u128) -> Vec<AccountId> {
        (1..=n).map(|i| AccountId(Uuid::from_u128(i))).collect()
    }

    #[test]
    fn zipf_is_skewed_and_uniform_is_not() {
        let mut rng = fastrand::Rng::with_seed(7);
        let zipf = AccountPicker::zipf(accounts(10_000), 1.0);
        let hottest = zipf.accounts[0];
        let hits = (0..100_000).filter(|_| zipf.pick(&mut rng) == hottest).count();
        // For s = 1 and n = 10,000 the top rank has p = 1/H(n) ≈ 0.102.
        assert!((9_000..11_500).contains(&hits), "{hits}");
        assert!((zipf.hottest_share() - 0.102).abs() < 0.002);
        let uniform = AccountPicker::uniform(accounts(10));
        let first = (0..100_000).filter(|_| uniform.pick(&mut rng) == uniform.accounts[0]).count();
        assert!((9_000..11_000).contains(&first), "{first}");
    }

    #[test]
    fn holds_are_resolved_in_the_next_request() {
        let picker = AccountPicker::uniform(accounts(100));
        let mut client = Client::new(1, 100);
        let first = client.next_request(&picker, 3);
        assert!(first.iter().all(|r| r.kind == TransferKind::Pending));
        let second = client.next_request(&picker, 3);
        let resolved: Vec<_> = second.iter().map(|r| (r.kind, r.related_id)).collect();
        assert_eq!(resolved[0], (TransferKind::PostPending, Some(first[0].id)));
        assert_eq!(resolved[1], (TransferKind::VoidPending, Some(first[1].id)));
        assert_eq!(resolved[2], (TransferKind::PostPending, Some(first[2].id)));
    }
}
