import { useEffect, useState } from 'preact/hooks';
import { type ApiError, type WhoAmI, getJson, setUnauthenticatedHandler } from './api';
import { asApiError } from './hooks';
import { abilitiesOf } from './roles';
import { href, useRoute } from './router';
import { forgetKey, storedKey } from './session';
import { ErrorBox } from './ui';
import { Account } from './views/Account';
import { Accounts } from './views/Accounts';
import { Live } from './views/Live';
import { DayReportView, Reconciliations } from './views/Reconciliation';
import { SignIn } from './views/SignIn';
import { Statement, Statements } from './views/Statements';
import { Transfer } from './views/Transfer';

function NotAllowed() {
  return (
    <div class="page">
      <h1>Not for this key</h1>
      <p>This key's role may not see this page.</p>
    </div>
  );
}

function Page({ path, me }: { path: string[]; me: WhoAmI }) {
  const can = abilitiesOf(me.role);
  const [section, id] = path;
  switch (section) {
    case undefined:
    case 'accounts':
      return id ? <Account id={id} me={me} key={id} /> : <Accounts me={me} />;
    case 'transfers':
      return id ? <Transfer id={id} me={me} key={id} /> : <Accounts me={me} />;
    case 'live':
      return can.live ? <Live /> : <NotAllowed />;
    case 'reconciliation':
      if (!can.reconciliation) return <NotAllowed />;
      return id ? <DayReportView day={id} key={id} /> : <Reconciliations />;
    case 'statements':
      if (!can.reconciliation) return <NotAllowed />;
      return id ? <Statement id={id} key={id} /> : <Statements />;
    default:
      return (
        <div class="page">
          <h1>Not found</h1>
          <p>
            <a href={href('accounts')}>Accounts</a>
          </p>
        </div>
      );
  }
}

function Nav({ me, section, onSignOut }: { me: WhoAmI; section: string | undefined; onSignOut: () => void }) {
  const can = abilitiesOf(me.role);
  const link = (name: string, label: string) => (
    <a href={href(name)} class={section === name || (name === 'accounts' && section === undefined) ? 'active' : ''} data-nav={name}>
      {label}
    </a>
  );
  return (
    <header class="top">
      <span class="brand">Tally</span>
      <nav>
        {link('accounts', 'Accounts')}
        {can.live && link('live', 'Live')}
        {can.reconciliation && link('reconciliation', 'Reconciliation')}
        {can.reconciliation && link('statements', 'Statements')}
      </nav>
      <span class="who" data-testid="whoami">
        {me.name} <span class={`badge role-${me.role}`}>{me.role}</span>
        {me.ledgers.length > 0 && <span class="muted"> ledgers {me.ledgers.join(', ')}</span>}
      </span>
      <button type="button" class="quiet" onClick={onSignOut}>
        Sign out
      </button>
    </header>
  );
}

export function App() {
  const [me, setMe] = useState<WhoAmI | null>(null);
  const [checking, setChecking] = useState(storedKey() !== null);
  const [error, setError] = useState<ApiError | null>(null);
  const path = useRoute();

  const signOut = () => {
    forgetKey();
    setMe(null);
  };

  useEffect(() => {
    setUnauthenticatedHandler(() => {
      forgetKey();
      setMe(null);
    });
    if (storedKey() === null) return;
    getJson<WhoAmI>('/v1/whoami').then(
      (who) => {
        setMe(who);
        setChecking(false);
      },
      (e: unknown) => {
        setError(asApiError(e));
        setChecking(false);
      },
    );
  }, []);

  if (checking) return <p class="muted">Checking the key…</p>;
  if (!me)
    return (
      <>
        <ErrorBox error={error} />
        <SignIn onSignedIn={setMe} />
      </>
    );
  return (
    <>
      <Nav me={me} section={path[0]} onSignOut={signOut} />
      <main>
        <Page path={path} me={me} />
      </main>
    </>
  );
}
