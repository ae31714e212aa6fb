import { describe, expect, it } from 'vitest';
import { buckets, livePoint, parseMetrics, quantileBetween, scrapeOf, total } from '../src/metrics';

const BOUNDS = ['0.0005', '0.001', '0.0025', '0.005', '0.01', '0.025', '0.05', '0.1', '0.25', '0.5', '1.0', '2.5', '5.0', '10.0', '+Inf'];

function histogram(route: string, counts: number[]): string {
  return BOUNDS.map((le, i) => `tally_http_request_duration_seconds_bucket{le="${le}",route="${route}"} ${counts[i]}`).join('\n');
}

function exposition(transfers: number, batches: number, queue: number, batch: number[], list: number[]): string {
  return [
    '# HELP tally_http_requests HTTP requests by method, route and status.',
    '# TYPE tally_http_requests counter',
    'tally_http_requests_total{method="POST",route="/v1/transfers/batch",status="200"} 12',
    '# HELP tally_http_request_duration_seconds HTTP request latency by route.',
    '# TYPE tally_http_request_duration_seconds histogram',
    'tally_http_request_duration_seconds_sum{route="/v1/transfers/batch"} 0.5',
    'tally_http_request_duration_seconds_count{route="/v1/transfers/batch"} 12',
    histogram('/v1/transfers/batch', batch),
    histogram('/v1/accounts/{id_or_code}', list),
    '# HELP tally_engine_batches_committed Batches the engine committed since start.',
    '# TYPE tally_engine_batches_committed gauge',
    `tally_engine_batches_committed ${batches}`,
    '# TYPE tally_engine_transfers_committed gauge',
    `tally_engine_transfers_committed ${transfers}`,
    '# TYPE tally_engine_queue_depth gauge',
    `tally_engine_queue_depth ${queue}`,
    'tally_relay_lag{relay="a \\"quoted\\" one\\\\"} 3',
    '# EOF',
    '',
  ].join('\n');
}

describe('parseMetrics', () => {
  it('reads names, labels with escapes, and values', () => {
    const samples = parseMetrics(exposition(10, 2, 0, BOUNDS.map(() => 0), BOUNDS.map(() => 0)));
    expect(total(samples, 'tally_engine_transfers_committed')).toBe(10);
    expect(total(samples, 'tally_http_requests_total', (l) => l.route === '/v1/transfers/batch')).toBe(12);
    const relay = samples.find((s) => s.name === 'tally_relay_lag');
    expect(relay?.labels.relay).toBe('a "quoted" one\\');
    const inf = samples.find((s) => s.labels.le === '+Inf');
    expect(inf?.value).toBe(0);
    expect(total(samples, 'absent')).toBeNull();
  });

  it('skips lines that do not parse, and reads timestamps and special values', () => {
    const samples = parseMetrics('ok 1 1700000000\nbroken{a="x" 2\n{no_name} 3\nnan NaN\ninf +Inf\n');
    expect(samples.map((s) => s.name)).toEqual(['ok', 'nan', 'inf']);
    expect(samples[2]?.value).toBe(Number.POSITIVE_INFINITY);
  });
});

describe('quantiles from bucket deltas', () => {
  it('interpolates inside the bucket the rank falls in', () => {
    // 100 observations between the scrapes: 90 under 1 ms, 9 in (1 ms, 2.5 ms], 1 in (2.5, 5] ms.
    const before: [number, number][] = [[0.001, 5], [0.0025, 5], [0.005, 5], [Infinity, 5]];
    const after: [number, number][] = [[0.001, 95], [0.0025, 104], [0.005, 105], [Infinity, 105]];
    // rank 99: the 9th of the 9 in (0.001, 0.0025]: its upper bound.
    expect(quantileBetween(before, after, 0.99)).toBeCloseTo(0.0025, 10);
    // rank 50 of 90 in [0, 0.001]: 50/90 of the way.
    expect(quantileBetween(before, after, 0.5)).toBeCloseTo(0.001 * (50 / 90), 10);
  });

  it('gives the highest finite bound for the +Inf bucket, and null when nothing was observed', () => {
    expect(quantileBetween([], [[0.5, 0], [10, 0], [Infinity, 4]], 0.99)).toBe(10);
    expect(quantileBetween([[0.5, 3], [Infinity, 3]], [[0.5, 3], [Infinity, 3]], 0.99)).toBeNull();
    expect(quantileBetween([], [], 0.99)).toBeNull();
  });

  it('ignores earlier observations: only the deltas count', () => {
    // Before: 1000 slow requests. Between: 10 fast ones.
    const before: [number, number][] = [[0.001, 0], [1, 0], [Infinity, 1000]];
    const after: [number, number][] = [[0.001, 10], [1, 10], [Infinity, 1010]];
    expect(quantileBetween(before, after, 0.99)).toBeLessThanOrEqual(0.001);
  });
});

describe('live points', () => {
  it('computes transfers/s, mean batch size, queue and the transfer routes p99 between two scrapes', () => {
    const zero = BOUNDS.map(() => 0);
    const first = scrapeOf(exposition(1000, 100, 3, zero, zero), 10_000);
    // 2 s later: 4000 more transfers in 50 batches; 100 batch requests all ≤ 5 ms (99 ≤ 2.5 ms);
    // the slow account reads (route not a transfer route) do not count.
    const batch = [0, 0, 99, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100];
    const slow = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 50, 50];
    const second = scrapeOf(exposition(5000, 150, 7, batch, slow), 12_000);
    expect(buckets(parseMetrics(exposition(0, 0, 0, batch, slow)), 'tally_http_request_duration_seconds', () => true).at(-1)).toEqual([Infinity, 150]);
    const point = livePoint(first, second);
    expect(point.transfersPerSecond).toBe(2000);
    expect(point.batchSize).toBe(80);
    expect(point.queue).toBe(7);
    expect(point.p99).toBeCloseTo(0.0025, 10);
    expect(point.at).toBe(12);
  });

  it('gives no rate when a counter went back (a restart) and no batch size when nothing committed', () => {
    const zero = BOUNDS.map(() => 0);
    const a = scrapeOf(exposition(500, 10, 0, zero, zero), 0);
    const b = scrapeOf(exposition(20, 2, 0, zero, zero), 1000);
    expect(livePoint(a, b).transfersPerSecond).toBeNull();
    const c = scrapeOf(exposition(20, 2, 0, zero, zero), 2000);
    expect(livePoint(b, c).transfersPerSecond).toBe(0);
    expect(livePoint(b, c).batchSize).toBe(0);
    expect(livePoint(b, c).p99).toBeNull();
  });

  it('reads counters exposed with _total too', () => {
    const s = scrapeOf('tally_engine_transfers_committed_total 7\n# EOF\n', 0);
    expect(s.transfers).toBe(7);
  });
});
