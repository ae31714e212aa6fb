//! Matching statement entries against ledger entries: see [`match_entries`].

use std::collections::HashMap;

use serde::Serialize;
use time::{Date, Duration};

use crate::Entry;

/// The most candidates one group search (rules 3 and 4) considers: those closest in date.
pub const GROUP_CANDIDATES_MAX: usize = 64;

/// The most search steps spent on one entry's group search.
pub const GROUP_SEARCH_NODES_MAX: u64 = 50_000;

/// The most steps (candidates scanned plus search steps) all group searches of one
/// [`match_entries`] call may take together; beyond it the remaining entries stay unmatched.
pub const GROUP_WORK_TOTAL_MAX: u64 = 20_000_000;

/// How often rule 2's pass for pairs without a counterparty is repeated at most.
const UNNAMED_PASSES_MAX: usize = 16;

const _: () = assert!(GROUP_CANDIDATES_MAX >= 2 && GROUP_CANDIDATES_MAX <= 128);
const _: () = assert!(GROUP_SEARCH_NODES_MAX > 0 && GROUP_SEARCH_NODES_MAX <= GROUP_WORK_TOTAL_MAX);

/// One posting of the ledger account the statement is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerEntry {
    pub transfer_id: String,
    /// The booking day in the ledger's time zone.
    #[serde(serialize_with = "crate::serialize_date")]
    pub date: Date,
    /// Signed from the account's point of view: a credit to the account +, a debit -.
    pub amount: i128,
    pub reference: Option<String>,
    pub counterparty: Option<String>,
    /// The other party's IBAN (normalised: upper case, no spaces), where the ledger knows it.
    pub counterparty_iban: Option<String>,
}

/// How close a match must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MatchRules {
    /// The largest accepted |statement amount - ledger amount|, in minor units (negative counts
    /// as 0).
    pub amount_tolerance: i128,
    /// The largest accepted distance between statement booking date and ledger date, in days.
    pub date_window_days: u32,
    /// The most entries on the "many" side of a group match (at most [`GROUP_CANDIDATES_MAX`]
    /// are used; below 2 turns group matching off).
    pub group_size_max: usize,
}

impl Default for MatchRules {
    fn default() -> Self {
        MatchRules { amount_tolerance: 0, date_window_days: 2, group_size_max: 8 }
    }
}

/// Which rule made a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchRule {
    Reference,
    AmountDateCounterparty,
    OneToMany,
    ManyToOne,
}

/// Statement entries and ledger entries that belong together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Match {
    pub rule: MatchRule,
    /// Indexes into the statement entries, ascending.
    pub statement_entries: Vec<usize>,
    /// Indexes into the ledger entries, ascending.
    pub ledger_entries: Vec<usize>,
    /// Statement sum - ledger sum, in minor units; within the tolerance, unless
    /// `before_charges`.
    pub difference: i128,
    /// The ledger entry matched the statement entry's amount before the bank's charges
    /// ([`Entry::amount_before_charges`]): `difference` is then the charges, and the amount
    /// before charges is within the tolerance of the ledger's.
    pub before_charges: bool,
}

/// Every statement index and every ledger index appears exactly once: in a match or unmatched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MatchOutcome {
    pub matches: Vec<Match>,
    /// Ascending.
    pub unmatched_statement: Vec<usize>,
    /// Ascending.
    pub unmatched_ledger: Vec<usize>,
}

/// Pairs statement entries with ledger entries.
///
/// Rules run in a fixed order, each only over what is still unmatched, and each entry on either
/// side is used at most once:
///
/// 1. **Reference**: the statement entry's `reference`, `end_to_end_id` or `bank_reference`
///    equals (trimmed, case-sensitive) a ledger entry's `reference` or `transfer_id`, same sign,
///    amounts within the tolerance (the entry's amount, or its amount before charges); no date
///    window, because a shared reference is stronger evidence than a date. Among several, the
///    closest amount, then the closest date, then the lowest index wins. Then,
///    for batched statement entries (two or more `details`) still unmatched: when every detail's
///    reference finds its own ledger entry (same sign, amount within tolerance) and the batch
///    total is within tolerance of their sum, the batch matches them all, recorded as
///    [`MatchRule::OneToMany`]. This is not limited by `group_size_max`: the bank itself states
///    what the batch is made of, and a netted batch may pair ledger entries of both signs.
/// 2. **AmountDateCounterparty**: same sign, amounts within tolerance, dates within the window.
///    When both sides give the counterparty's IBAN, the IBANs must be equal; otherwise, when both
///    name a counterparty, the names must agree after normalisation (trimmed, whitespace
///    collapsed, case-insensitive). Pairs that agree are taken first (on the entry's amount, then
///    on its amount before charges), the closest date and then the lowest index winning. A pair
///    where a side has no counterparty is taken only when
///    it is unambiguous both ways: the statement entry has exactly one such candidate and that
///    ledger entry has exactly one such candidate statement entry. This pass repeats while it
///    finds something, since each match can resolve another ambiguity.
/// 3. **OneToMany**: one statement entry equals, within tolerance, the sum of 2 to
///    `group_size_max` ledger entries of the same sign within the date window.
/// 4. **ManyToOne**: the mirror image: several statement entries sum to one ledger entry.
///
/// The group rules are subset-sum searches, exponential in general, so their work is capped: at
/// most [`GROUP_CANDIDATES_MAX`] candidates (the closest in date) per search, at most
/// [`GROUP_SEARCH_NODES_MAX`] search steps per entry and [`GROUP_WORK_TOTAL_MAX`] steps per call.
/// A search that runs out leaves its entry unmatched. Everything is deterministic: the same input
/// gives the same matches in the same order (by rule, then by the index that drove the rule).
///
/// A reversal is matched like any other entry, by its signed amount. Entries with amount 0 never
/// match (they have no sign).
pub fn match_entries(statement: &[Entry], ledger: &[LedgerEntry], rules: &MatchRules) -> MatchOutcome {
    let mut matcher = Matcher::new(statement, ledger, rules);
    matcher.by_reference();
    matcher.by_detail_references();
    matcher.by_amount_date_counterparty();
    if matcher.group_size_max >= 2 {
        matcher.one_to_many();
        matcher.many_to_one();
    }
    matcher.outcome()
}

/// What the amount and date rules look at, the same for a statement and a ledger entry.
#[derive(Clone, Copy)]
struct Side {
    amount: i128,
    date: Date,
}

struct Matcher<'a> {
    statement: &'a [Entry],
    ledger: &'a [LedgerEntry],
    statement_sides: Vec<Side>,
    ledger_sides: Vec<Side>,
    /// |difference| allowed, clamped to `AMOUNT_MAX` so that sums of candidates cannot overflow.
    tolerance: u128,
    window_days: u64,
    group_size_max: usize,
    statement_used: Vec<bool>,
    ledger_used: Vec<bool>,
    matches: Vec<Match>,
    group_work_left: u64,
}

fn same_sign(a: i128, b: i128) -> bool {
    a != 0 && a.signum() == b.signum()
}

fn days_apart(a: Date, b: Date) -> u64 {
    (a - b).whole_days().unsigned_abs()
}

/// Trimmed, whitespace collapsed, lower case; `None` when nothing is left.
fn normalize_name(name: Option<&str>) -> Option<String> {
    let collapsed = name?.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
    (!collapsed.is_empty()).then_some(collapsed)
}

fn trimmed(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|value| !value.is_empty())
}

/// Whether two counterparties are compatible and whether that rests on both naming the same one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Names {
    Same,
    Unknown,
    Different,
}

fn compare_names(a: &Option<String>, b: &Option<String>) -> Names {
    match (a, b) {
        (Some(a), Some(b)) if a == b => Names::Same,
        (Some(_), Some(_)) => Names::Different,
        _ => Names::Unknown,
    }
}

/// Who the other party is, as both sides can say it.
#[derive(Clone)]
struct Party {
    name: Option<String>,
    iban: Option<String>,
}

/// IBANs decide when both sides have one; names otherwise.
fn compare_parties(a: &Party, b: &Party) -> Names {
    match compare_names(&a.iban, &b.iban) {
        Names::Unknown => compare_names(&a.name, &b.name),
        decided => decided,
    }
}

fn normalize_iban(iban: Option<&str>) -> Option<String> {
    let compact = crate::normalize_account(iban?);
    (!compact.is_empty()).then_some(compact)
}

/// Indexes sorted by (key, index) with the range of a key found by binary search.
fn sorted_by<K: Ord + Copy>(len: usize, key: impl Fn(usize) -> K) -> Vec<(K, usize)> {
    let mut sorted: Vec<(K, usize)> = (0..len).map(|index| (key(index), index)).collect();
    sorted.sort_unstable();
    sorted
}

fn range_of<K: Ord + Copy>(sorted: &[(K, usize)], low: K, high: K) -> &[(K, usize)] {
    let start = sorted.partition_point(|(key, _)| *key < low);
    let end = sorted.partition_point(|(key, _)| *key <= high);
    sorted.get(start..end.max(start)).unwrap_or(&[])
}

impl<'a> Matcher<'a> {
    fn new(statement: &'a [Entry], ledger: &'a [LedgerEntry], rules: &MatchRules) -> Self {
        let tolerance = rules.amount_tolerance.clamp(0, tally_core::AMOUNT_MAX).unsigned_abs();
        Matcher {
            statement,
            ledger,
            statement_sides: statement
                .iter()
                .map(|entry| Side { amount: entry.amount, date: entry.booking_date })
                .collect(),
            ledger_sides: ledger.iter().map(|entry| Side { amount: entry.amount, date: entry.date }).collect(),
            tolerance,
            window_days: u64::from(rules.date_window_days),
            group_size_max: rules.group_size_max.min(GROUP_CANDIDATES_MAX),
            statement_used: vec![false; statement.len()],
            ledger_used: vec![false; ledger.len()],
            matches: Vec::new(),
            group_work_left: GROUP_WORK_TOTAL_MAX,
        }
    }

    fn amounts_close(&self, a: i128, b: i128) -> bool {
        same_sign(a, b) && a.abs_diff(b) <= self.tolerance
    }

    fn record(&mut self, rule: MatchRule, statement_entries: Vec<usize>, ledger_entries: Vec<usize>) {
        self.record_with(rule, statement_entries, ledger_entries, false);
    }

    fn record_with(
        &mut self,
        rule: MatchRule,
        mut statement_entries: Vec<usize>,
        mut ledger_entries: Vec<usize>,
        before_charges: bool,
    ) {
        statement_entries.sort_unstable();
        ledger_entries.sort_unstable();
        let statement_total =
            statement_entries.iter().fold(0i128, |sum, i| sum.saturating_add(self.statement[*i].amount));
        let ledger_total = ledger_entries.iter().fold(0i128, |sum, j| sum.saturating_add(self.ledger[*j].amount));
        let difference = statement_total.saturating_sub(ledger_total);
        assert!(before_charges || difference.unsigned_abs() <= self.tolerance);
        for i in &statement_entries {
            assert!(!self.statement_used[*i]);
            self.statement_used[*i] = true;
        }
        for j in &ledger_entries {
            assert!(!self.ledger_used[*j]);
            self.ledger_used[*j] = true;
        }
        self.matches.push(Match { rule, statement_entries, ledger_entries, difference, before_charges });
    }

    /// Ledger indexes by trimmed reference and transfer id.
    fn reference_index(&self) -> HashMap<&'a str, Vec<usize>> {
        let mut index: HashMap<&'a str, Vec<usize>> = HashMap::new();
        for (j, entry) in self.ledger.iter().enumerate() {
            let transfer_id = trimmed(Some(entry.transfer_id.as_str()));
            let reference = trimmed(entry.reference.as_deref()).filter(|reference| Some(*reference) != transfer_id);
            for key in [transfer_id, reference].into_iter().flatten() {
                index.entry(key).or_default().push(j);
            }
        }
        index
    }

    /// The best unused ledger entry among `candidates` for `amount` on `date`: closest amount,
    /// then closest date, then lowest index.
    fn best_by_reference(
        &self,
        candidates: impl Iterator<Item = usize>,
        amount: i128,
        date: Date,
        taken: &[usize],
    ) -> Option<usize> {
        candidates
            .filter(|j| !self.ledger_used[*j] && !taken.contains(j))
            .filter(|j| self.amounts_close(amount, self.ledger[*j].amount))
            .min_by_key(|j| (amount.abs_diff(self.ledger[*j].amount), days_apart(date, self.ledger[*j].date), *j))
    }

    fn by_reference(&mut self) {
        let index = self.reference_index();
        for i in 0..self.statement.len() {
            let entry = &self.statement[i];
            let mut keys: Vec<&str> = Vec::with_capacity(3);
            for key in [&entry.reference, &entry.end_to_end_id, &entry.bank_reference] {
                if let Some(key) = trimmed(key.as_deref())
                    && !keys.contains(&key)
                {
                    keys.push(key);
                }
            }
            let candidates =
                || keys.iter().flat_map(|key| index.get(key).map(Vec::as_slice).unwrap_or(&[]).iter().copied());
            if let Some(j) = self.best_by_reference(candidates(), entry.amount, entry.booking_date, &[]) {
                self.record(MatchRule::Reference, vec![i], vec![j]);
            } else if let Some(gross) = entry.amount_before_charges()
                && let Some(j) = self.best_by_reference(candidates(), gross, entry.booking_date, &[])
            {
                self.record_with(MatchRule::Reference, vec![i], vec![j], true);
            }
        }
    }

    fn by_detail_references(&mut self) {
        let index = self.reference_index();
        for i in 0..self.statement.len() {
            let entry = &self.statement[i];
            if self.statement_used[i] || entry.details.len() < 2 {
                continue;
            }
            let mut chosen: Vec<usize> = Vec::with_capacity(entry.details.len());
            for detail in &entry.details {
                let Some(key) = trimmed(detail.reference.as_deref()) else {
                    break;
                };
                let candidates = index.get(key).map(Vec::as_slice).unwrap_or(&[]).iter().copied();
                match self.best_by_reference(candidates, detail.amount, entry.booking_date, &chosen) {
                    Some(j) => chosen.push(j),
                    None => break,
                }
            }
            if chosen.len() != entry.details.len() {
                continue;
            }
            let ledger_total = chosen.iter().fold(0i128, |sum, j| sum.saturating_add(self.ledger[*j].amount));
            if entry.amount.abs_diff(ledger_total) <= self.tolerance {
                self.record(MatchRule::OneToMany, vec![i], chosen);
            }
        }
    }

    /// Entries on the other side that could pair with `side`: unused, same sign, amount within
    /// the tolerance, date within the window; ascending by amount, then index.
    fn candidates<'s>(
        &'s self,
        side: Side,
        tolerance: i128,
        others_by_amount: &'s [(i128, usize)],
        other_sides: &'s [Side],
        used: &'s [bool],
    ) -> impl Iterator<Item = usize> + 's {
        range_of(others_by_amount, side.amount.saturating_sub(tolerance), side.amount.saturating_add(tolerance))
            .iter()
            .map(|(_, index)| *index)
            .filter(move |index| !used[*index])
            .filter(move |index| self.amounts_close(side.amount, other_sides[*index].amount))
            .filter(move |index| days_apart(side.date, other_sides[*index].date) <= self.window_days)
    }

    fn by_amount_date_counterparty(&mut self) {
        let statement_names: Vec<Party> = self
            .statement
            .iter()
            .map(|entry| Party {
                name: normalize_name(entry.counterparty.as_deref()),
                iban: normalize_iban(entry.counterparty_iban.as_deref()),
            })
            .collect();
        let ledger_names: Vec<Party> = self
            .ledger
            .iter()
            .map(|entry| Party {
                name: normalize_name(entry.counterparty.as_deref()),
                iban: normalize_iban(entry.counterparty_iban.as_deref()),
            })
            .collect();
        let ledger_by_amount = sorted_by(self.ledger.len(), |j| self.ledger[j].amount);
        let statement_by_amount = sorted_by(self.statement.len(), |i| self.statement[i].amount);
        let tolerance = i128::try_from(self.tolerance).unwrap_or(i128::MAX);

        // Both sides name the same counterparty: on the amount, then on the amount before charges.
        for before_charges in [false, true] {
            for (i, party) in statement_names.iter().enumerate() {
                if self.statement_used[i] || (party.name.is_none() && party.iban.is_none()) {
                    continue;
                }
                let mut side = self.statement_sides[i];
                if before_charges {
                    let Some(gross) = self.statement[i].amount_before_charges() else { continue };
                    side.amount = gross;
                }
                let best = self
                    .candidates(side, tolerance, &ledger_by_amount, &self.ledger_sides, &self.ledger_used)
                    .filter(|j| compare_parties(party, &ledger_names[*j]) == Names::Same)
                    .min_by_key(|j| (days_apart(side.date, self.ledger_sides[*j].date), *j));
                if let Some(j) = best {
                    self.record_with(MatchRule::AmountDateCounterparty, vec![i], vec![j], before_charges);
                }
            }
        }

        // At least one side has no counterparty: only unambiguous pairs.
        for _ in 0..UNNAMED_PASSES_MAX {
            let mut found = false;
            for i in 0..self.statement.len() {
                if self.statement_used[i] {
                    continue;
                }
                let side = self.statement_sides[i];
                let compatible = |this: &Self, i: usize, j: usize| {
                    compare_parties(&statement_names[i], &ledger_names[j]) != Names::Different
                        && !this.statement_used[i]
                        && !this.ledger_used[j]
                };
                // Two candidates already make it ambiguous: no need to look for more.
                let ledger_candidates: Vec<usize> = self
                    .candidates(side, tolerance, &ledger_by_amount, &self.ledger_sides, &self.ledger_used)
                    .filter(|j| compatible(self, i, *j))
                    .take(2)
                    .collect();
                let [j] = ledger_candidates.as_slice() else {
                    continue;
                };
                let j = *j;
                let reverse: Vec<usize> = self
                    .candidates(
                        self.ledger_sides[j],
                        tolerance,
                        &statement_by_amount,
                        &self.statement_sides,
                        &self.statement_used,
                    )
                    .filter(|other| compatible(self, *other, j))
                    .take(2)
                    .collect();
                if reverse == [i] {
                    self.record(MatchRule::AmountDateCounterparty, vec![i], vec![j]);
                    found = true;
                }
            }
            if !found {
                break;
            }
        }
    }

    fn one_to_many(&mut self) {
        let ledger_by_date = sorted_by(self.ledger.len(), |j| self.ledger[j].date);
        for i in 0..self.statement.len() {
            if self.statement_used[i] {
                continue;
            }
            let bounds = GroupBounds {
                target: self.statement_sides[i],
                tolerance: self.tolerance,
                window_days: self.window_days,
                size_max: self.group_size_max,
            };
            let group =
                find_group(bounds, &ledger_by_date, &self.ledger_sides, &self.ledger_used, &mut self.group_work_left);
            if let Some(group) = group {
                self.record(MatchRule::OneToMany, vec![i], group);
            }
        }
    }

    fn many_to_one(&mut self) {
        let statement_by_date = sorted_by(self.statement.len(), |i| self.statement[i].booking_date);
        for j in 0..self.ledger.len() {
            if self.ledger_used[j] {
                continue;
            }
            let bounds = GroupBounds {
                target: self.ledger_sides[j],
                tolerance: self.tolerance,
                window_days: self.window_days,
                size_max: self.group_size_max,
            };
            let group = find_group(
                bounds,
                &statement_by_date,
                &self.statement_sides,
                &self.statement_used,
                &mut self.group_work_left,
            );
            if let Some(group) = group {
                self.record(MatchRule::ManyToOne, group, vec![j]);
            }
        }
    }

    fn outcome(self) -> MatchOutcome {
        let unused =
            |used: &[bool]| used.iter().enumerate().filter(|(_, used)| !**used).map(|(index, _)| index).collect();
        MatchOutcome {
            unmatched_statement: unused(&self.statement_used),
            unmatched_ledger: unused(&self.ledger_used),
            matches: self.matches,
        }
    }
}

/// What one group search looks for.
#[derive(Clone, Copy)]
struct GroupBounds {
    target: Side,
    tolerance: u128,
    window_days: u64,
    size_max: usize,
}

/// Finds 2..=`size_max` unused entries on the other side, same sign as the target and within the
/// date window, whose amounts sum to the target within the tolerance. Spends from `work_left`.
fn find_group(
    bounds: GroupBounds,
    others_by_date: &[(Date, usize)],
    other_sides: &[Side],
    used: &[bool],
    work_left: &mut u64,
) -> Option<Vec<usize>> {
    let target = bounds.target;
    let target_magnitude = target.amount.unsigned_abs();
    // Amounts beyond AMOUNT_MAX do not occur in a ledger; leaving them out keeps every sum of at
    // most GROUP_CANDIDATES_MAX candidates far from u128 overflow.
    let amount_max = tally_core::AMOUNT_MAX.unsigned_abs();
    if *work_left == 0 || target.amount == 0 || target_magnitude > amount_max {
        return None;
    }
    let window = Duration::days(i64::try_from(bounds.window_days).unwrap_or(i64::MAX));
    let first_day = target.date.saturating_sub(window);
    let last_day = target.date.saturating_add(window);
    let high = target_magnitude.saturating_add(bounds.tolerance);
    let low = target_magnitude.saturating_sub(bounds.tolerance);

    let in_window = range_of(others_by_date, first_day, last_day);
    *work_left = work_left.saturating_sub(u64::try_from(in_window.len()).unwrap_or(u64::MAX));
    // (magnitude, days apart, index)
    let mut items: Vec<(u128, u64, usize)> = in_window
        .iter()
        .map(|(_, index)| *index)
        .filter(|index| !used[*index])
        .filter(|index| same_sign(target.amount, other_sides[*index].amount))
        .map(|index| {
            (other_sides[index].amount.unsigned_abs(), days_apart(target.date, other_sides[index].date), index)
        })
        .filter(|(magnitude, _, _)| *magnitude <= high && *magnitude <= amount_max)
        .collect();
    // The closest in date are the likeliest parts of the group.
    items.sort_unstable_by_key(|(_, days, index)| (*days, *index));
    items.truncate(GROUP_CANDIDATES_MAX);
    if items.len() < 2 || *work_left == 0 {
        return None;
    }
    // Largest first: the reachable-sum bound in the search then prunes whole branches.
    items.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.2.cmp(&b.2)));
    let magnitudes: Vec<u128> = items.iter().map(|(magnitude, _, _)| *magnitude).collect();
    let mut prefix = Vec::with_capacity(magnitudes.len() + 1);
    prefix.push(0u128);
    for magnitude in &magnitudes {
        let last = prefix.last().copied().unwrap_or(0);
        prefix.push(last + magnitude);
    }
    let nodes_granted = GROUP_SEARCH_NODES_MAX.min(*work_left);
    let mut search = GroupSearch {
        magnitudes: &magnitudes,
        prefix: &prefix,
        low,
        high,
        size_max: bounds.size_max,
        nodes_left: nodes_granted,
        chosen: Vec::new(),
    };
    let found = search.run(0, 0);
    *work_left = work_left.saturating_sub(nodes_granted - search.nodes_left);
    found.then(|| search.chosen.iter().map(|position| items[*position].2).collect())
}

/// A bounded depth-first subset-sum search over magnitudes sorted largest first.
struct GroupSearch<'s> {
    magnitudes: &'s [u128],
    /// `prefix[k]` is the sum of the first `k` magnitudes.
    prefix: &'s [u128],
    low: u128,
    high: u128,
    size_max: usize,
    nodes_left: u64,
    chosen: Vec<usize>,
}

impl GroupSearch<'_> {
    /// Tries to complete `chosen` (summing to `sum`) with items from `start` on.
    fn run(&mut self, start: usize, sum: u128) -> bool {
        let picks_left = self.size_max.saturating_sub(self.chosen.len());
        if picks_left == 0 {
            return false;
        }
        let len = self.magnitudes.len();
        for position in start..len {
            if self.nodes_left == 0 {
                return false;
            }
            self.nodes_left -= 1;
            // The largest sum still reachable takes the next `picks_left` items; later starts
            // only reach less, so the whole loop can stop.
            let reach_end = (position + picks_left).min(len);
            if sum + (self.prefix[reach_end] - self.prefix[position]) < self.low {
                return false;
            }
            let next = sum + self.magnitudes[position];
            if next > self.high {
                continue;
            }
            self.chosen.push(position);
            if self.chosen.len() >= 2 && next >= self.low {
                return true;
            }
            if self.run(position + 1, next) {
                return true;
            }
            self.chosen.pop();
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn statement_entry(amount: i128, day: u8, reference: Option<&str>, counterparty: Option<&str>) -> Entry {
        let booking_date = date!(2026 - 03 - 01).replace_day(day).unwrap_or(date!(2026 - 03 - 01));
        Entry {
            reference: reference.map(str::to_owned),
            counterparty: counterparty.map(str::to_owned),
            ..Entry::booked(String::new(), booking_date, amount)
        }
    }

    fn ledger_entry(id: &str, amount: i128, day: u8, counterparty: Option<&str>) -> LedgerEntry {
        LedgerEntry {
            transfer_id: id.to_owned(),
            date: date!(2026 - 03 - 01).replace_day(day).unwrap_or(date!(2026 - 03 - 01)),
            amount,
            reference: None,
            counterparty: counterparty.map(str::to_owned),
            counterparty_iban: None,
        }
    }

    #[test]
    fn names_are_normalised() {
        assert_eq!(normalize_name(Some("  ACME   Corp\tGmbH ")), Some("acme corp gmbh".to_owned()));
        assert_eq!(normalize_name(Some("   ")), None);
        assert_eq!(normalize_name(Some("Bürobedarf")), normalize_name(Some("BÜROBEDARF")));
    }

    #[test]
    fn reference_needs_same_sign_and_tolerance() {
        let statement = [statement_entry(-500, 2, Some("R1"), None)];
        let ledger = [ledger_entry("R1", 500, 2, None), ledger_entry("t2", -502, 9, None)];
        let mut ledger = ledger.to_vec();
        ledger[1].reference = Some(" R1 ".to_owned());
        let strict = match_entries(&statement, &ledger, &MatchRules::default());
        assert!(strict.matches.is_empty());
        let loose = match_entries(&statement, &ledger, &MatchRules { amount_tolerance: 2, ..MatchRules::default() });
        assert_eq!(loose.matches.len(), 1);
        assert_eq!(loose.matches[0].ledger_entries, [1]);
        assert_eq!(loose.matches[0].difference, 2);
        assert_eq!(loose.matches[0].rule, MatchRule::Reference);
    }

    #[test]
    fn unnamed_pairs_need_to_be_unambiguous_both_ways() {
        // Two identical statement entries, one ledger entry: which one it is cannot be told.
        let statement = [statement_entry(-100, 2, None, None), statement_entry(-100, 2, None, None)];
        let ledger = [ledger_entry("t1", -100, 2, None)];
        let outcome = match_entries(&statement, &ledger, &MatchRules::default());
        assert!(outcome.matches.is_empty());
        assert_eq!(outcome.unmatched_statement, [0, 1]);

        // Once the named pair is taken, the unnamed one is unambiguous.
        let statement = [statement_entry(-100, 2, None, None), statement_entry(-100, 2, None, Some("ACME"))];
        let ledger = [ledger_entry("t1", -100, 2, Some("acme")), ledger_entry("t2", -100, 3, None)];
        let outcome = match_entries(&statement, &ledger, &MatchRules::default());
        let pairs: Vec<(Vec<usize>, Vec<usize>)> =
            outcome.matches.iter().map(|m| (m.statement_entries.clone(), m.ledger_entries.clone())).collect();
        assert_eq!(pairs, [(vec![1], vec![0]), (vec![0], vec![1])]);
    }

    #[test]
    fn end_to_end_ids_ibans_and_charges_take_part() {
        let mut by_end_to_end = statement_entry(-500, 2, Some("CUSTOMER-REF"), None);
        by_end_to_end.end_to_end_id = Some("E2E-1".to_owned());
        let mut charged = statement_entry(9_850, 3, Some("INV-9"), None);
        charged.charges = Some(crate::OtherAmount { currency: "EUR".into(), amount: "1.50".into(), minor: Some(150) });
        let mut by_iban = statement_entry(-700, 4, None, Some("Someone Else"));
        by_iban.counterparty_iban = Some("NL91 ABNA 0417 1643 00".to_owned());
        let statement = [by_end_to_end, charged, by_iban];
        let mut ledger = vec![
            ledger_entry("t1", -500, 2, None),
            ledger_entry("t2", 10_000, 3, None),
            ledger_entry("t3", -700, 4, Some("Jansen")),
            ledger_entry("t4", -700, 4, None),
        ];
        ledger[0].reference = Some("E2E-1".to_owned());
        ledger[1].reference = Some("INV-9".to_owned());
        ledger[2].counterparty_iban = Some("NL91ABNA0417164300".to_owned());
        let outcome = match_entries(&statement, &ledger, &MatchRules::default());
        let matched = |rule, i: usize, j: usize, difference, before_charges| Match {
            rule,
            statement_entries: vec![i],
            ledger_entries: vec![j],
            difference,
            before_charges,
        };
        assert_eq!(
            outcome.matches,
            [
                matched(MatchRule::Reference, 0, 0, 0, false),
                matched(MatchRule::Reference, 1, 1, -150, true),
                matched(MatchRule::AmountDateCounterparty, 2, 2, 0, false),
            ]
        );
        // Different IBANs never pair, whatever the names say.
        ledger[2].counterparty_iban = Some("DE89370400440532013000".to_owned());
        ledger[2].counterparty = Some("Someone Else".to_owned());
        let outcome = match_entries(&statement, &ledger, &MatchRules::default());
        assert!(outcome.matches.iter().all(|m| m.ledger_entries != [2]));
    }

    #[test]
    fn group_search_finds_subsets_and_respects_bounds() {
        let statement = [statement_entry(1000, 5, None, None)];
        let ledger: Vec<LedgerEntry> = [700, 150, 999, 300, 50]
            .iter()
            .enumerate()
            .map(|(j, amount)| ledger_entry(&format!("t{j}"), *amount, 5, None))
            .collect();
        let outcome = match_entries(&statement, &ledger, &MatchRules::default());
        assert_eq!(outcome.matches.len(), 1);
        assert_eq!(outcome.matches[0].rule, MatchRule::OneToMany);
        assert_eq!(outcome.matches[0].ledger_entries, [0, 3]);

        let single = match_entries(&statement, &ledger, &MatchRules { group_size_max: 1, ..MatchRules::default() });
        assert!(single.matches.is_empty());
    }

    #[test]
    fn adversarial_group_search_stays_bounded() {
        // Even amounts never sum to an odd target: a plain search would try every subset of the
        // 200 candidates; the bounded one gives up quickly.
        let statement: Vec<Entry> = (0..50).map(|k| statement_entry(2 * (1000 + k) + 1, 5, None, None)).collect();
        let ledger: Vec<LedgerEntry> = (0..200).map(|k| ledger_entry(&format!("t{k}"), 2 * k + 2, 5, None)).collect();
        let started = std::time::Instant::now();
        let rules = MatchRules { group_size_max: 64, ..MatchRules::default() };
        let outcome = match_entries(&statement, &ledger, &rules);
        assert!(outcome.matches.is_empty());
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
    }

    #[test]
    fn extreme_amounts_do_not_overflow() {
        let statement = [statement_entry(i128::MAX, 5, Some("x"), None), statement_entry(i128::MIN + 1, 5, None, None)];
        let ledger = [
            ledger_entry("x", i128::MAX, 5, None),
            ledger_entry("y", i128::MIN, 5, None),
            ledger_entry("z", i128::MIN, 5, None),
        ];
        let rules = MatchRules { amount_tolerance: i128::MAX, date_window_days: u32::MAX, group_size_max: usize::MAX };
        let outcome = match_entries(&statement, &ledger, &rules);
        let used: usize = outcome.matches.iter().map(|m| m.ledger_entries.len()).sum();
        assert_eq!(used + outcome.unmatched_ledger.len(), 3);
    }
}
