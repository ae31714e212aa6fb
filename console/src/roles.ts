// What each role may do, as crates/tally-server/src/auth.rs and each route's
// `principal.require(...)` say. The console hides what a key may not do; the API refuses it anyway.

import type { Role } from './api';

const ADMINS: readonly Role[] = ['admin'];
const AUDITORS: readonly Role[] = ['admin', 'auditor'];
/** EVENT_READERS and OPERATORS in auth.rs: the same roles. */
const STAFF: readonly Role[] = ['admin', 'operator', 'auditor'];

export interface Abilities {
  /** GET /v1/accounts (a reader reads only its own accounts, by id). */
  listAccounts: boolean;
  /** POST /v1/accounts/{id}/freeze|unfreeze: ADMINS. */
  freeze: boolean;
  /** GET /metrics (OPERATORS) and /v1/events/stream (EVENT_READERS). */
  live: boolean;
  /** GET /v1/audit: AUDITORS. */
  audit: boolean;
  /** /v1/reconciliations and /v1/statements: EVENT_READERS. */
  reconciliation: boolean;
}

export function abilitiesOf(role: Role): Abilities {
  return {
    listAccounts: role !== 'reader',
    freeze: ADMINS.includes(role),
    live: STAFF.includes(role),
    audit: AUDITORS.includes(role),
    reconciliation: STAFF.includes(role),
  };
}
