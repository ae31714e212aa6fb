//! HTTP API tests: the router driven in-process (one request at a time through `oneshot`), and a
//! real server on a loopback port, each test on its own fresh PostgreSQL 18 database.

mod accounts;
mod battery;
mod console;
mod faults;
mod feed;
mod ledgers;
mod ops;
mod reconciliation;
mod server;
mod support;
mod tls;
mod transfers;
mod webhooks;
