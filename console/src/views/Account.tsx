// #/accounts/ID: the account, its balance and available, its holds, its history page by page,
// and (admin) freeze/unfreeze.

import { useState } from 'preact/hooks';
import { type Account as AccountT, type ApiError, type Balance, type HistoryLine, type Page, type TransferOutcome, type WhoAmI, postJson, seg, withQuery } from '../api';
import { formatTime } from '../format';
import { asApiError, useGet } from '../hooks';
import { HISTORY_PAGE_SIZE, HOLDS_SHOWN } from '../limits';
import { abilitiesOf } from '../roles';
import { AccountLink, Amount, ErrorBox, Field, Json, Loading, Pager, Section, Status, TransferLink } from '../ui';

function FreezeButton({ account, reloading, onChanged }: { account: AccountT; reloading: boolean; onChanged: () => void }) {
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  if (account.status === 'closed') return null;
  const action = account.status === 'frozen' ? 'unfreeze' : 'freeze';
  const act = async () => {
    if (!window.confirm(`${action === 'freeze' ? 'Freeze' : 'Unfreeze'} account ${account.code ?? account.id}?`)) return;
    setBusy(true);
    setError(null);
    try {
      await postJson(`/v1/accounts/${seg(account.id)}/${action}`, { expected_version: account.version });
      onChanged();
    } catch (e) {
      setError(asApiError(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <div class="actions">
      <button type="button" class={action === 'freeze' ? 'danger' : ''} disabled={busy || reloading} onClick={act} data-testid="freeze-toggle">
        {action === 'freeze' ? 'Freeze account' : 'Unfreeze account'}
      </button>
      <ErrorBox error={error} />
    </div>
  );
}

function BalanceCard({ id }: { id: string }) {
  const balance = useGet<Balance>(`/v1/accounts/${seg(id)}/balance`);
  const b = balance.data;
  return (
    <Section title="Balance">
      <ErrorBox error={balance.error} />
      {b && (
        <div class="figures">
          <div class="figure" data-testid="balance">
            <span class="label">Balance</span>
            <Amount value={b.balance} currency={b.currency} signed />
          </div>
          <div class="figure" data-testid="available">
            <span class="label">Available</span>
            <Amount value={b.available} currency={b.currency} />
          </div>
          <div class="figure">
            <span class="label">Debits held</span>
            <Amount value={b.debits_pending} currency={b.currency} />
          </div>
          <div class="figure">
            <span class="label">Credits held</span>
            <Amount value={b.credits_pending} currency={b.currency} />
          </div>
        </div>
      )}
    </Section>
  );
}

function Holds({ id }: { id: string }) {
  const holds = useGet<Page<TransferOutcome>>(withQuery('/v1/transfers', { account: id, status: 'pending', limit: HOLDS_SHOWN }));
  const rows = holds.data?.data.flatMap((o) => (o.transfer ? [o.transfer] : [])) ?? [];
  return (
    <Section title="Holds" id="holds">
      <ErrorBox error={holds.error} />
      {holds.data && rows.length === 0 && <p class="muted">No pending transfers.</p>}
      {rows.length > 0 && (
        <table>
          <thead>
            <tr>
              <th>Transfer</th>
              <th>Created</th>
              <th>Expires</th>
              <th>Debit</th>
              <th>Credit</th>
              <th class="num">Amount</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((t) => (
              <tr key={t.id}>
                <td>
                  <TransferLink id={t.id} />
                </td>
                <td>{formatTime(t.created_at)}</td>
                <td>{formatTime(t.expires_at)}</td>
                <td>{t.from === id ? <strong>this</strong> : <AccountLink id={t.from} />}</td>
                <td>{t.to === id ? <strong>this</strong> : <AccountLink id={t.to} />}</td>
                <td class="num">
                  <Amount value={t.amount} currency={t.currency} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Section>
  );
}

function History({ id }: { id: string }) {
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  const cursor = cursors[cursors.length - 1] ?? null;
  const page = useGet<Page<HistoryLine>>(withQuery(`/v1/accounts/${seg(id)}/transfers`, { limit: HISTORY_PAGE_SIZE, cursor }));
  return (
    <Section title="History" id="history">
      <ErrorBox error={page.error} />
      <Loading when={page.loading && !page.data} />
      {page.data && (
        <>
          {page.data.data.length === 0 ? (
            <p class="muted">No transfers.</p>
          ) : (
            <table class="history" data-page={page.loading ? 'loading' : cursors.length}>
              <thead>
                <tr>
                  <th>Time</th>
                  <th>Transfer</th>
                  <th>Kind</th>
                  <th>Status</th>
                  <th>Other account</th>
                  <th>Actor</th>
                  <th class="num">Amount</th>
                </tr>
              </thead>
              <tbody>
                {page.data.data.map((line) => (
                  <tr key={`${line.transfer.id}-${line.direction}`}>
                    <td>{formatTime(line.transfer.created_at)}</td>
                    <td>
                      <TransferLink id={line.transfer.id} />
                    </td>
                    <td>{line.transfer.kind}</td>
                    <td>
                      <Status value={line.transfer.status} />
                    </td>
                    <td>
                      <AccountLink id={line.other_account_id} />
                    </td>
                    <td>{line.actor}</td>
                    <td class="num">
                      <Amount value={line.direction === 'debit' ? `-${line.transfer.amount}` : line.transfer.amount} currency={line.transfer.currency} signed />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          <Pager
            page={cursors.length}
            hasPrevious={cursors.length > 1}
            loading={page.loading}
            next={page.data.next_cursor}
            onPrevious={() => setCursors((c) => c.slice(0, -1))}
            onNext={() => page.data?.next_cursor && setCursors((c) => [...c, page.data!.next_cursor])}
          />
        </>
      )}
    </Section>
  );
}

export function Account({ id, me }: { id: string; me: WhoAmI }) {
  const account = useGet<AccountT>(`/v1/accounts/${seg(id)}`);
  const can = abilitiesOf(me.role);
  const a = account.data;
  return (
    <div class="page">
      <h1>
        Account <span class="title-id">{a?.code ?? id}</span>
      </h1>
      <ErrorBox error={account.error} />
      <Loading when={account.loading && !a} />
      {a && (
        <>
          <Section title="Account">
            <dl class="fields">
              <Field label="Id">
                <code>{a.id}</code>
              </Field>
              <Field label="Code">{a.code ?? '–'}</Field>
              <Field label="Ledger">{a.ledger}</Field>
              <Field label="Currency">{a.currency}</Field>
              <Field label="Status">
                <Status value={a.status} />
              </Field>
              <Field label="Overdraft limit">{a.unrestricted ? 'unrestricted' : a.overdraft_limit ? <Amount value={a.overdraft_limit} currency={a.currency} /> : '0'}</Field>
              <Field label="Version">{a.version}</Field>
              <Field label="Created">{formatTime(a.created_at)}</Field>
              <Field label="Updated">{formatTime(a.updated_at)}</Field>
              {a.metadata !== null && a.metadata !== undefined && (
                <Field label="Metadata">
                  <Json value={a.metadata} />
                </Field>
              )}
            </dl>
            {can.freeze && <FreezeButton account={a} reloading={account.loading} onChanged={account.reload} />}
          </Section>
          <BalanceCard id={a.id} key={`${a.id}-${a.version}`} />
          <Holds id={a.id} key={`h-${a.id}-${a.version}`} />
          <History id={a.id} key={`t-${a.id}`} />
        </>
      )}
    </div>
  );
}
