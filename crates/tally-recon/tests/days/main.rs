//! Ledger days, point-in-time balances and the end-of-day run, against a real PostgreSQL 18:
//! every test gets its own fresh database, and moves the store's clock to write its transfers on
//! past days.

// Amounts are written in cents with the point as an underscore: 100_00 is 100.00.
#![allow(clippy::inconsistent_digit_grouping)]

mod end_of_day;
mod ledgers;
mod point_in_time;
mod random_days;
mod statements;
mod support;
