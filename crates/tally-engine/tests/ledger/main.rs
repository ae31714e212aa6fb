//! Integration tests against a real PostgreSQL: every test gets its own fresh database.

mod accounts;
mod bad_input;
mod compat;
mod concurrency;
mod faults;
mod support;
mod transfers;
