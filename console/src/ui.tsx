// Small shared pieces: errors with the API's code, amounts, ids, JSON shown as text.

import type { ComponentChildren } from 'preact';
import type { ApiError } from './api';
import { formatAmount, shortId, signOf } from './format';
import { href } from './router';

export function ErrorBox({ error, what }: { error: ApiError | null; what?: string }) {
  if (!error) return null;
  return (
    <div class="error" role="alert" data-code={error.code}>
      {what ? `${what}: ` : ''}
      <code>{error.code}</code> {error.message}
      {error.status ? ` (HTTP ${error.status})` : ''}
    </div>
  );
}

export function Loading({ when }: { when: boolean }) {
  return when ? <p class="muted">Loading…</p> : null;
}

export function Amount({ value, currency, signed }: { value: string; currency?: string; signed?: boolean }) {
  const sign = signOf(value);
  const cls = `amount${signed && sign < 0 ? ' negative' : ''}${signed && sign > 0 ? ' positive' : ''}`;
  return (
    <span class={cls}>
      {formatAmount(value)}
      {currency ? <span class="currency"> {currency}</span> : null}
    </span>
  );
}

export function AccountLink({ id, label }: { id: string; label?: string | null }) {
  return (
    <a href={href('accounts', id)} title={id} class="id">
      {label ?? shortId(id)}
    </a>
  );
}

export function TransferLink({ id }: { id: string }) {
  return (
    <a href={href('transfers', id)} title={id} class="id">
      {shortId(id)}
    </a>
  );
}

export function Status({ value }: { value: string }) {
  return <span class={`badge status-${value.replace(/[^a-z_]/g, '')}`}>{value}</span>;
}

export function Json({ value }: { value: unknown }) {
  if (value === null || value === undefined) return <span class="muted">–</span>;
  return <pre class="json">{JSON.stringify(value, null, 2)}</pre>;
}

export function Section({ title, children, id }: { title: string; children: ComponentChildren; id?: string }) {
  return (
    <section class="card" id={id}>
      <h2>{title}</h2>
      {children}
    </section>
  );
}

export function Field({ label, children }: { label: string; children: ComponentChildren }) {
  return (
    <div class="field">
      <dt>{label}</dt>
      <dd>{children}</dd>
    </div>
  );
}

/** Newer/older over cursor pages; both wait while a page loads. */
export function Pager({ page, hasPrevious, next, loading, onPrevious, onNext }: { page: number; hasPrevious: boolean; next: string | null; loading: boolean; onPrevious: () => void; onNext: () => void }) {
  return (
    <div class="pager">
      <button type="button" disabled={loading || !hasPrevious} onClick={onPrevious}>
        ← Newer
      </button>
      <span class="muted">page {page}</span>
      <button type="button" disabled={loading || next === null} onClick={onNext} data-testid="next-page">
        Older →
      </button>
    </div>
  );
}
