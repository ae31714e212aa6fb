// Sign in with an API key: checked with GET /v1/whoami, then kept in sessionStorage only.

import { useState } from 'preact/hooks';
import { type ApiError, type WhoAmI, getJson } from '../api';
import { asApiError } from '../hooks';
import { looksLikeKey, storeKey } from '../session';
import { ErrorBox } from '../ui';

export function SignIn({ onSignedIn }: { onSignedIn: (me: WhoAmI) => void }) {
  const [key, setKey] = useState('');
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event: Event) => {
    event.preventDefault();
    const text = key.trim();
    if (!looksLikeKey(text)) {
      setError({ name: 'ApiError', status: 0, code: 'key_malformed', message: 'a Tally key is tly_ and 64 hex digits' } as ApiError);
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const me = await getJson<WhoAmI>('/v1/whoami', text);
      storeKey(text);
      setKey('');
      onSignedIn(me);
    } catch (e) {
      setError(asApiError(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="signin">
      <form class="card" onSubmit={submit} autocomplete="off">
        <h1>Tally console</h1>
        <p class="muted">Sign in with an API key. It is kept in this tab only (sessionStorage) and forgotten when the tab closes.</p>
        <label for="api-key">API key</label>
        <input id="api-key" name="api-key" type="password" value={key} onInput={(e) => setKey(e.currentTarget.value)} placeholder="tly_…" autocomplete="off" spellcheck={false} required />
        <button type="submit" disabled={busy}>
          Sign in
        </button>
        <ErrorBox error={error} />
      </form>
    </main>
  );
}
