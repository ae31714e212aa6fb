//! The handlers, one module per resource.

pub mod accounts;
pub mod feed;
pub mod ledgers;
pub mod ops;
pub mod reconciliations;
pub mod statements;
pub mod transfers;
pub mod webhooks;
