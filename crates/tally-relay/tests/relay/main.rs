//! Integration tests of the relay against a real PostgreSQL 18 (a fresh database per test), the
//! real NATS JetStream server (127.0.0.1:4222, or `TALLY_TEST_NATS_URL`; the tests fail, not
//! skip, when it is not there: start `nats-server -js`) and real HTTP receivers.

mod nats;
mod support;
mod webhooks;
