// #/accounts: find an account by id or code, and list accounts page by page (a reader: its own).

import { useState } from 'preact/hooks';
import { type Account, type ApiError, type Page, type WhoAmI, getJson, seg, withQuery } from '../api';
import { asApiError, useGet } from '../hooks';
import { ACCOUNTS_PAGE_SIZE } from '../limits';
import { abilitiesOf } from '../roles';
import { navigate } from '../router';
import { AccountLink, Amount, ErrorBox, Loading, Pager, Section, Status } from '../ui';

function Search() {
  const [text, setText] = useState('');
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event: Event) => {
    event.preventDefault();
    const wanted = text.trim();
    if (!wanted) return;
    setBusy(true);
    setError(null);
    try {
      const account = await getJson<Account>(`/v1/accounts/${seg(wanted)}`);
      navigate('accounts', account.id);
    } catch (e) {
      setError(asApiError(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="search" onSubmit={submit}>
      <label for="account-search">Account id or code</label>
      <input id="account-search" name="account" value={text} onInput={(e) => setText(e.currentTarget.value)} placeholder="wallet:alice or 0190…" autocomplete="off" spellcheck={false} />
      <button type="submit" disabled={busy}>
        Find
      </button>
      <ErrorBox error={error} />
    </form>
  );
}

function AccountRows({ accounts }: { accounts: Account[] }) {
  return (
    <table class="accounts">
      <thead>
        <tr>
          <th>Code</th>
          <th>Id</th>
          <th>Ledger</th>
          <th>Status</th>
          <th class="num">Balance</th>
          <th class="num">Available</th>
        </tr>
      </thead>
      <tbody>
        {accounts.map((a) => (
          <tr key={a.id}>
            <td>{a.code ? <AccountLink id={a.id} label={a.code} /> : <span class="muted">–</span>}</td>
            <td>
              <AccountLink id={a.id} />
            </td>
            <td>{a.ledger}</td>
            <td>
              <Status value={a.status} />
            </td>
            <td class="num">
              <Amount value={a.balance} currency={a.currency} signed />
            </td>
            <td class="num">
              <Amount value={a.available} currency={a.currency} />
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function AllAccounts() {
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  const cursor = cursors[cursors.length - 1] ?? null;
  const page = useGet<Page<Account>>(withQuery('/v1/accounts', { limit: ACCOUNTS_PAGE_SIZE, cursor }));
  return (
    <Section title="Accounts">
      <ErrorBox error={page.error} />
      <Loading when={page.loading && !page.data} />
      {page.data && (
        <>
          {page.data.data.length === 0 ? <p class="muted">No accounts.</p> : <AccountRows accounts={page.data.data} />}
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

function ReaderAccounts({ ids }: { ids: string[] }) {
  return (
    <Section title="Your accounts">
      {ids.length === 0 ? (
        <p class="muted">This key reads no account.</p>
      ) : (
        <ul class="plain">
          {ids.map((id) => (
            <li key={id}>
              <AccountLink id={id} label={id} />
            </li>
          ))}
        </ul>
      )}
    </Section>
  );
}

export function Accounts({ me }: { me: WhoAmI }) {
  const can = abilitiesOf(me.role);
  return (
    <div class="page">
      <h1>Accounts</h1>
      <Search />
      {can.listAccounts ? <AllAccounts /> : <ReaderAccounts ids={me.accounts} />}
    </div>
  );
}
