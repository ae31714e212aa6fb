// Amounts are decimal strings in the currency's scale ("-1234.50"): shown as they are, grouped
// by thousands, never through a float. Only the charts' y values become numbers.

const DECIMAL = /^(-?)(\d+)(?:\.(\d+))?$/;

/** `"-1234567.50"` → `"-1,234,567.50"`; text that is not a decimal is returned as it is. */
export function formatAmount(amount: string): string {
  const match = DECIMAL.exec(amount.trim());
  if (!match) return amount;
  const [, sign = '', whole = '0', fraction] = match;
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return `${sign}${grouped}${fraction !== undefined ? `.${fraction}` : ''}`;
}

/** The amount with its currency: `"1,234.50 USD"`. */
export function formatMoney(amount: string, currency: string): string {
  return `${formatAmount(amount)} ${currency}`;
}

/** -1, 0 or 1 for a decimal string, without parsing it to a number. */
export function signOf(amount: string): -1 | 0 | 1 {
  const match = DECIMAL.exec(amount.trim());
  if (!match) return 0;
  const digits = `${match[2] ?? ''}${match[3] ?? ''}`;
  if (/^0*$/.test(digits)) return 0;
  return match[1] === '-' ? -1 : 1;
}

/** For a chart's y value only: the nearest float (`NaN` when not a decimal). */
export function chartValue(amount: string): number {
  return DECIMAL.test(amount.trim()) ? Number(amount) : Number.NaN;
}

/** A rate or duration for the live figures: `1234.5` → `"1,234.5"`. */
export function formatNumber(value: number | null, digits = 1): string {
  if (value === null || !Number.isFinite(value)) return '–';
  return value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

/** Seconds as milliseconds for people: `0.0123` → `"12.3 ms"`. */
export function formatSeconds(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return '–';
  if (seconds < 1) return `${formatNumber(seconds * 1000, seconds < 0.01 ? 2 : 1)} ms`;
  return `${formatNumber(seconds, 2)} s`;
}

/** RFC 3339 → `2026-03-10 14:05:09Z` (the API's times are UTC). */
export function formatTime(text: string | null | undefined): string {
  if (!text) return '–';
  const match = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.\d+)?(Z|[+-]\d{2}:\d{2})$/.exec(text);
  return match ? `${match[1]} ${match[2]}${match[3] === 'Z' ? 'Z' : match[3]}` : text;
}

/** The end of an id, for tables (UUIDv7 ids of one moment share their first digits); the whole
 *  id is in the title. */
export function shortId(id: string): string {
  return id.length > 13 ? `…${id.slice(-12)}` : id;
}
