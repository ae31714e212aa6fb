// The Prometheus/OpenMetrics text that GET /metrics answers, parsed, and the live figures
// computed from two scrapes: transfers/s and the mean batch size from counter deltas, the queue
// depth, and the p99 latency of the transfer routes from the histogram's bucket deltas.

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parseValue(text: string): number {
  switch (text) {
    case '+Inf':
    case 'Inf':
      return Number.POSITIVE_INFINITY;
    case '-Inf':
      return Number.NEGATIVE_INFINITY;
    case 'NaN':
      return Number.NaN;
    default:
      return Number(text);
  }
}

/** Parses `name{a="x",b="y"} value [timestamp]` lines; comments and `# EOF` are skipped, and so is
 *  any line that does not parse. */
export function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const nameMatch = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
    if (!nameMatch) continue;
    const name = nameMatch[0];
    let rest = line.slice(name.length);
    const labels: Record<string, string> = {};
    if (rest.startsWith('{')) {
      let i = 1;
      let ok = false;
      while (i < rest.length) {
        while (rest[i] === ' ' || rest[i] === ',') i++;
        if (rest[i] === '}') {
          ok = true;
          i++;
          break;
        }
        const labelMatch = /^([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"/.exec(rest.slice(i));
        if (!labelMatch) break;
        i += labelMatch[0].length;
        let value = '';
        let closed = false;
        while (i < rest.length) {
          const c = rest[i];
          if (c === '\\') {
            const next = rest[i + 1];
            value += next === 'n' ? '\n' : (next ?? '');
            i += 2;
          } else if (c === '"') {
            closed = true;
            i++;
            break;
          } else {
            value += c;
            i++;
          }
        }
        if (!closed) break;
        labels[labelMatch[1] as string] = value;
      }
      if (!ok) continue;
      rest = rest.slice(i);
    }
    const fields = rest.trim().split(/\s+/);
    if (fields.length < 1 || fields[0] === '') continue;
    const value = parseValue(fields[0] as string);
    if (Number.isNaN(value) && fields[0] !== 'NaN') continue;
    samples.push({ name, labels, value });
  }
  return samples;
}

/** The sum of the samples named `name` whose labels pass `where` (null when there is none). */
export function total(samples: Sample[], name: string, where: (labels: Record<string, string>) => boolean = () => true): number | null {
  let sum: number | null = null;
  for (const s of samples) {
    if (s.name === name && where(s.labels)) sum = (sum ?? 0) + s.value;
  }
  return sum;
}

/** Cumulative bucket counts by upper bound, summed over the series that pass `where`, sorted by bound. */
export function buckets(samples: Sample[], histogram: string, where: (labels: Record<string, string>) => boolean): [number, number][] {
  const byBound = new Map<number, number>();
  for (const s of samples) {
    if (s.name !== `${histogram}_bucket` || !where(s.labels)) continue;
    const le = s.labels.le;
    if (le === undefined) continue;
    const bound = parseValue(le);
    if (Number.isNaN(bound)) continue;
    byBound.set(bound, (byBound.get(bound) ?? 0) + s.value);
  }
  return [...byBound.entries()].sort((a, b) => a[0] - b[0]);
}

/** The q-quantile of what was observed between two scrapes of a histogram's cumulative buckets,
 *  interpolated linearly inside the bucket it falls in (as Prometheus' histogram_quantile); the
 *  highest finite bound when it falls in the +Inf bucket; null when nothing was observed. */
export function quantileBetween(before: [number, number][], after: [number, number][], q: number): number | null {
  const earlier = new Map(before);
  const deltas = after.map(([bound, count]) => [bound, Math.max(0, count - (earlier.get(bound) ?? 0))] as [number, number]);
  const last = deltas[deltas.length - 1];
  if (!last) return null;
  const count = last[1];
  if (count <= 0) return null;
  const rank = q * count;
  let lowerBound = 0;
  let lowerCount = 0;
  for (const [bound, cumulative] of deltas) {
    if (cumulative >= rank) {
      if (bound === Number.POSITIVE_INFINITY) return lowerBound;
      const inBucket = cumulative - lowerCount;
      if (inBucket <= 0) return bound;
      return lowerBound + (bound - lowerBound) * ((rank - lowerCount) / inBucket);
    }
    lowerBound = bound;
    lowerCount = cumulative;
  }
  return lowerBound;
}

export const METRIC = {
  transfers: 'tally_engine_transfers_committed',
  batches: 'tally_engine_batches_committed',
  queue: 'tally_engine_queue_depth',
  latency: 'tally_http_request_duration_seconds',
} as const;

/** The routes whose latency the live p99 is of: the ones that move money. */
export const TRANSFER_ROUTES: readonly string[] = [
  '/v1/transfers',
  '/v1/transfers/batch',
  '/v1/transfers/{id}/post',
  '/v1/transfers/{id}/void',
  '/v1/transfers/{id}/reverse',
];

const isTransferRoute = (labels: Record<string, string>): boolean => TRANSFER_ROUTES.includes(labels.route ?? '');

/** One scrape, reduced to what the live page needs. */
export interface Scrape {
  at: number; // milliseconds
  transfers: number | null;
  batches: number | null;
  queue: number | null;
  latency: [number, number][];
}

export function scrapeOf(text: string, at: number): Scrape {
  const samples = parseMetrics(text);
  // A gauge is exposed as its name; a counter as name_total: accept either.
  const read = (name: string) => total(samples, name) ?? total(samples, `${name}_total`);
  return {
    at,
    transfers: read(METRIC.transfers),
    batches: read(METRIC.batches),
    queue: read(METRIC.queue),
    latency: buckets(samples, METRIC.latency, isTransferRoute),
  };
}

export interface LivePoint {
  at: number; // seconds
  transfersPerSecond: number | null;
  batchSize: number | null;
  queue: number | null;
  p99: number | null; // seconds
}

/** The figures between two scrapes. A counter that went down (a restart) gives no rate. */
export function livePoint(before: Scrape, after: Scrape): LivePoint {
  const seconds = (after.at - before.at) / 1000;
  const delta = (a: number | null, b: number | null) => (a === null || b === null || b < a ? null : b - a);
  const transfers = delta(before.transfers, after.transfers);
  const batches = delta(before.batches, after.batches);
  return {
    at: after.at / 1000,
    transfersPerSecond: transfers === null || seconds <= 0 ? null : transfers / seconds,
    batchSize: transfers === null || batches === null ? null : batches === 0 ? 0 : transfers / batches,
    queue: after.queue,
    p99: quantileBetween(before.latency, after.latency, 0.99),
  };
}
