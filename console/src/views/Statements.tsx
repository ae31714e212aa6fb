// #/statements: imported bank statements; #/statements/ID: one statement's matching against the
// journal (balances, matches, findings).

import { useState } from 'preact/hooks';
import { type Page, type StatementReport, type StatementSummary, seg, withQuery } from '../api';
import { formatTime } from '../format';
import { useGet } from '../hooks';
import { STATEMENTS_PAGE_SIZE } from '../limits';
import { href } from '../router';
import { AccountLink, Amount, ErrorBox, Field, Loading, Pager, Section, Status, TransferLink } from '../ui';
import { FindingsTable } from './Reconciliation';

export function Statements() {
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  const cursor = cursors[cursors.length - 1] ?? null;
  const page = useGet<Page<StatementSummary>>(withQuery('/v1/statements', { limit: STATEMENTS_PAGE_SIZE, cursor }));
  return (
    <div class="page">
      <h1>Statements</h1>
      <p class="muted">Bank statements imported (POST /v1/statements or tally statement import), newest first.</p>
      <Section title="Imported statements">
        <ErrorBox error={page.error} />
        <Loading when={page.loading && !page.data} />
        {page.data && page.data.data.length === 0 && <p class="muted">No statements imported.</p>}
        {page.data && page.data.data.length > 0 && (
          <table data-testid="statements">
            <thead>
              <tr>
                <th>Statement</th>
                <th>Account</th>
                <th>Bank account</th>
                <th>Format</th>
                <th>Period</th>
                <th class="num">Closing</th>
                <th class="num">Entries</th>
                <th>Status</th>
                <th>Imported</th>
              </tr>
            </thead>
            <tbody>
              {page.data.data.map((s) => (
                <tr key={s.id}>
                  <td>
                    <a href={href('statements', s.id)}>{s.statement_ref}</a>
                  </td>
                  <td>
                    <AccountLink id={s.account_id} label={s.account_code} />
                  </td>
                  <td>{s.bank_account}</td>
                  <td>{s.format}</td>
                  <td>{`${s.opening_date ?? '?'} – ${s.closing_date ?? '?'}`}</td>
                  <td class="num">{s.closing ? <Amount value={s.closing} currency={s.currency} /> : '–'}</td>
                  <td class="num">{s.entries}</td>
                  <td>
                    {s.status ? <Status value={s.status} /> : '–'} {s.findings ? `(${s.findings})` : ''}
                  </td>
                  <td>
                    {formatTime(s.imported_at)} <span class="muted">{s.imported_by}</span>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        {page.data && (
          <Pager
            page={cursors.length}
            hasPrevious={cursors.length > 1}
            loading={page.loading}
            next={page.data.next_cursor}
            onPrevious={() => setCursors((c) => c.slice(0, -1))}
            onNext={() => page.data?.next_cursor && setCursors((c) => [...c, page.data!.next_cursor])}
          />
        )}
      </Section>
    </div>
  );
}

export function Statement({ id }: { id: string }) {
  const report = useGet<StatementReport>(`/v1/statements/${seg(id)}`);
  const r = report.data;
  return (
    <div class="page">
      <h1>
        Statement <span class="title-id">{r?.statement_ref ?? id}</span>
      </h1>
      <p>
        <a href={href('statements')}>← all statements</a>
      </p>
      <ErrorBox error={report.error} />
      <Loading when={report.loading && !r} />
      {r && (
        <>
          <Section title="Matching">
            <dl class="fields">
              <Field label="Status">
                <Status value={r.status} />
              </Field>
              <Field label="Account">
                <AccountLink id={r.account_id} label={r.account_code} />
              </Field>
              <Field label="Currency">{r.currency}</Field>
              <Field label="Format">{r.format}</Field>
              <Field label="Period">{`${r.period_from ?? '?'} – ${r.period_to ?? '?'}`}</Field>
              <Field label="Statement entries">{r.statement_entries}</Field>
              <Field label="Ledger entries">{r.ledger_entries}</Field>
              <Field label="Matched">{r.matched}</Field>
              <Field label="Unmatched (statement)">{r.unmatched_statement}</Field>
              <Field label="Unmatched (ledger)">{r.unmatched_ledger}</Field>
              <Field label="Imported by">{`${r.actor}, ${formatTime(r.finished_at)}`}</Field>
            </dl>
          </Section>
          <Section title="Balances">
            <table>
              <thead>
                <tr>
                  <th>Which</th>
                  <th>Date</th>
                  <th class="num">Statement</th>
                  <th class="num">Tally</th>
                  <th class="num">Difference</th>
                </tr>
              </thead>
              <tbody>
                {r.balances.map((b) => (
                  <tr key={`${b.which}-${b.date}`}>
                    <td>{b.which}</td>
                    <td>{b.date}</td>
                    <td class="num">
                      <Amount value={b.statement} />
                    </td>
                    <td class="num">
                      <Amount value={b.tally} />
                    </td>
                    <td class="num">
                      <Amount value={b.difference} signed />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </Section>
          <Section title="Matches">
            {r.matches.length === 0 ? (
              <p class="muted">No matches.</p>
            ) : (
              <table data-testid="matches">
                <thead>
                  <tr>
                    <th>Rule</th>
                    <th>Statement entries</th>
                    <th>Transfers</th>
                    <th class="num">Amount</th>
                    <th class="num">Difference</th>
                  </tr>
                </thead>
                <tbody>
                  {r.matches.map((m, i) => (
                    <tr key={i}>
                      <td>{m.rule}</td>
                      <td>{m.statement_entries.join(', ')}</td>
                      <td>
                        {m.transfer_ids.map((t) => (
                          <span key={t}>
                            <TransferLink id={t} />{' '}
                          </span>
                        ))}
                      </td>
                      <td class="num">
                        <Amount value={m.amount} />
                      </td>
                      <td class="num">
                        <Amount value={m.difference} signed />
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </Section>
          <Section title="Breaks and findings">
            <FindingsTable findings={r.findings} />
          </Section>
        </>
      )}
    </div>
  );
}
