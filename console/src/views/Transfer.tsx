// #/transfers/ID: the journal entry, status and kind, what it posts/voids/reverses and what
// posts/voids/reverses it, and (auditor, admin) its audit records.

import { type AuditRecord, type Page, type Transfer as TransferT, type TransferOutcome, type WhoAmI, seg, withQuery } from '../api';
import { formatTime } from '../format';
import { useGet } from '../hooks';
import { AUDIT_SHOWN, RELATED_SHOWN } from '../limits';
import { abilitiesOf } from '../roles';
import { AccountLink, Amount, ErrorBox, Field, Json, Loading, Section, Status, TransferLink } from '../ui';

const RELATION: Record<string, string> = {
  post_pending: 'posts',
  void_pending: 'voids',
  reversal: 'reverses',
};

function JournalEntry({ t }: { t: TransferT }) {
  return (
    <table class="journal" data-testid="journal-entry">
      <thead>
        <tr>
          <th>Account</th>
          <th class="num">Debit</th>
          <th class="num">Credit</th>
        </tr>
      </thead>
      <tbody>
        <tr>
          <td>
            <AccountLink id={t.from} label={t.from} />
          </td>
          <td class="num">
            <Amount value={t.amount} currency={t.currency} />
          </td>
          <td />
        </tr>
        <tr>
          <td>
            <AccountLink id={t.to} label={t.to} />
          </td>
          <td />
          <td class="num">
            <Amount value={t.amount} currency={t.currency} />
          </td>
        </tr>
      </tbody>
    </table>
  );
}

function Related({ t }: { t: TransferT }) {
  const children = useGet<Page<TransferOutcome>>(withQuery('/v1/transfers', { related: t.id, limit: RELATED_SHOWN }));
  const rows = children.data?.data.flatMap((o) => (o.transfer ? [o.transfer] : [])) ?? [];
  return (
    <Section title="Related transfers" id="related">
      {t.related_id && (
        <p data-testid="related-parent">
          This transfer {RELATION[t.kind] ?? 'refers to'} <TransferLink id={t.related_id} />.
        </p>
      )}
      <ErrorBox error={children.error} what="Transfers that refer to this one" />
      {children.data && rows.length === 0 && !t.related_id && <p class="muted">No related transfers.</p>}
      {rows.length > 0 && (
        <table data-testid="related-children">
          <thead>
            <tr>
              <th>Transfer</th>
              <th>Kind</th>
              <th>Status</th>
              <th>Created</th>
              <th class="num">Amount</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((r) => (
              <tr key={r.id}>
                <td>
                  <TransferLink id={r.id} />
                </td>
                <td>
                  {r.kind} <span class="muted">({RELATION[r.kind] ?? 'refers to'} this)</span>
                </td>
                <td>
                  <Status value={r.status} />
                </td>
                <td>{formatTime(r.created_at)}</td>
                <td class="num">
                  <Amount value={r.amount} currency={r.currency} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Section>
  );
}

function Audit({ id }: { id: string }) {
  const audit = useGet<Page<AuditRecord>>(withQuery('/v1/audit', { entity: id, limit: AUDIT_SHOWN }));
  const rows = audit.data?.data ?? [];
  return (
    <Section title="Audit" id="audit">
      <ErrorBox error={audit.error} />
      {audit.data && rows.length === 0 && <p class="muted">No audit records.</p>}
      {rows.length > 0 && (
        <table data-testid="audit-records">
          <thead>
            <tr>
              <th>At</th>
              <th>Action</th>
              <th>Actor</th>
              <th>Database user</th>
              <th>Before</th>
              <th>After</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((r) => (
              <tr key={r.id}>
                <td>{formatTime(r.at)}</td>
                <td>{r.action}</td>
                <td>{r.actor}</td>
                <td>{r.db_user}</td>
                <td>
                  <Json value={r.before} />
                </td>
                <td>
                  <Json value={r.after} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Section>
  );
}

export function Transfer({ id, me }: { id: string; me: WhoAmI }) {
  const outcome = useGet<TransferOutcome>(`/v1/transfers/${seg(id)}`);
  const can = abilitiesOf(me.role);
  const o = outcome.data;
  const t = o?.transfer ?? null;
  return (
    <div class="page">
      <h1>
        Transfer <span class="title-id">{id}</span>
      </h1>
      <ErrorBox error={outcome.error} />
      <Loading when={outcome.loading && !o} />
      {o && !t && (
        <Section title="Refused">
          <p>
            This id was refused: <code>{o.result}</code> (HTTP {o.status}). Nothing was applied.
          </p>
        </Section>
      )}
      {t && (
        <>
          <Section title="Journal entry">
            <JournalEntry t={t} />
            <dl class="fields">
              <Field label="Status">
                <Status value={t.status} />
              </Field>
              <Field label="Kind">{t.kind}</Field>
              <Field label="Amount">
                <Amount value={t.amount} currency={t.currency} />
              </Field>
              <Field label="Ledger">{t.ledger}</Field>
              <Field label="Created">{formatTime(t.created_at)}</Field>
              <Field label="Completed">{formatTime(t.completed_at)}</Field>
              {t.expires_at && <Field label="Expires">{formatTime(t.expires_at)}</Field>}
              <Field label="Reference">{t.reference ?? '–'}</Field>
              {t.metadata !== null && t.metadata !== undefined && (
                <Field label="Metadata">
                  <Json value={t.metadata} />
                </Field>
              )}
            </dl>
          </Section>
          <Related t={t} key={`r-${t.id}`} />
          {can.audit && <Audit id={t.id} key={`a-${t.id}`} />}
        </>
      )}
    </div>
  );
}
