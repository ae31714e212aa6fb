// The API key lives only in sessionStorage: gone when the tab closes, never in localStorage,
// cookies, URLs or logs.

const KEY_ITEM = 'tally.key';

export function storedKey(): string | null {
  try {
    return sessionStorage.getItem(KEY_ITEM);
  } catch {
    return null;
  }
}

export function storeKey(key: string): void {
  sessionStorage.setItem(KEY_ITEM, key);
}

export function forgetKey(): void {
  sessionStorage.removeItem(KEY_ITEM);
}

/** A Tally key: `tly_` and 64 hex digits (crates/tally-server/src/auth.rs). */
export function looksLikeKey(text: string): boolean {
  return /^tly_[0-9a-f]{64}$/.test(text);
}
