// #/live: transfers/s, mean batch size, queue depth and p99 latency of the transfer routes,
// scraped from /metrics every second and charted; and a tail of the event stream.

import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import type uPlot from 'uplot';
import { type EventRecord, type Page, getJson, getText, withQuery } from '../api';
import { Chart } from '../chart';
import { formatNumber, formatSeconds, formatTime } from '../format';
import { asApiError } from '../hooks';
import { CHART_POINTS, EVENTS_KEPT, SCRAPE_INTERVAL_MS, STREAM_RETRY_MS } from '../limits';
import { type LivePoint, type Scrape, livePoint, scrapeOf } from '../metrics';
import { href } from '../router';
import { followStream } from '../sse';
import { ErrorBox, Section } from '../ui';
import type { ApiError } from '../api';

const axisStroke = '#5b6472';
const grid = { stroke: '#e6e8ec', width: 1 };
/** The time axis: whole seconds, as HH:MM:SS UTC. */
const timeAxis: uPlot.Axis = {
  stroke: axisStroke,
  grid,
  space: 70,
  incrs: [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600],
  values: (_u, ticks) => ticks.map((t) => new Date(t * 1000).toISOString().slice(11, 19)),
};

const throughputOptions: Omit<uPlot.Options, 'width' | 'height'> = {
  scales: { x: { time: true }, tps: { auto: true, range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] }, batch: { auto: true, range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] } },
  axes: [
    timeAxis,
    { scale: 'tps', label: 'transfers/s', stroke: axisStroke, grid, size: 60 },
    { scale: 'batch', label: 'mean batch size', side: 1, stroke: axisStroke, grid: { show: false }, size: 50 },
  ],
  series: [
    {},
    { label: 'transfers/s', scale: 'tps', stroke: '#2563eb', width: 2, fill: 'rgba(37,99,235,0.08)', value: (_u, v) => formatNumber(v) },
    { label: 'mean batch size', scale: 'batch', stroke: '#d97706', width: 1.5, value: (_u, v) => formatNumber(v) },
  ],
};

const latencyOptions: Omit<uPlot.Options, 'width' | 'height'> = {
  scales: { x: { time: true }, ms: { auto: true, range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] }, queue: { auto: true, range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] } },
  axes: [
    timeAxis,
    { scale: 'ms', label: 'p99 ms', stroke: axisStroke, grid, size: 60 },
    { scale: 'queue', label: 'queue depth', side: 1, stroke: axisStroke, grid: { show: false }, size: 50 },
  ],
  series: [
    {},
    { label: 'p99 latency (ms)', scale: 'ms', stroke: '#dc2626', width: 2, value: (_u, v) => formatNumber(v, 2) },
    { label: 'queue depth', scale: 'queue', stroke: '#059669', width: 1.5, value: (_u, v) => formatNumber(v, 0) },
  ],
};

function useMetrics(): { points: LivePoint[]; error: ApiError | null } {
  const [points, setPoints] = useState<LivePoint[]>([]);
  const [error, setError] = useState<ApiError | null>(null);
  const last = useRef<Scrape | null>(null);
  useEffect(() => {
    let busy = false;
    let stopped = false;
    const scrape = async () => {
      if (busy || stopped) return;
      busy = true;
      try {
        const text = await getText('/metrics');
        const now = scrapeOf(text, Date.now());
        const before = last.current;
        last.current = now;
        if (before && !stopped) {
          const point = livePoint(before, now);
          setPoints((old) => [...old, point].slice(-CHART_POINTS));
        }
        setError(null);
      } catch (e) {
        setError(asApiError(e));
      } finally {
        busy = false;
      }
    };
    void scrape();
    const timer = setInterval(() => void scrape(), SCRAPE_INTERVAL_MS);
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }, []);
  return { points, error };
}

function Figure({ label, value, testid }: { label: string; value: string; testid: string }) {
  return (
    <div class="figure" data-testid={testid}>
      <span class="label">{label}</span>
      <span class="value">{value}</span>
    </div>
  );
}

/** Where an event's subject is shown in the console, if anywhere. */
function subjectLink(event: EventRecord): string | null {
  if (event.type.startsWith('transfer.')) return href('transfers', event.entity_id);
  if (event.type.startsWith('account.')) return href('accounts', event.entity_id);
  if (event.type === 'reconciliation.finished' || event.type === 'ledger_day.closed') return null;
  return null;
}

/** The newest event's sequence number (an `after` beyond it reads as it). */
const FAR_AHEAD = Number.MAX_SAFE_INTEGER;

function EventTail() {
  const [events, setEvents] = useState<EventRecord[]>([]);
  const [state, setState] = useState('connecting');
  const [error, setError] = useState<ApiError | null>(null);
  useEffect(() => {
    const abort = new AbortController();
    (async () => {
      let start = 0;
      try {
        const newest = await getJson<Page<EventRecord>>(withQuery('/v1/events', { after: FAR_AHEAD, limit: 1 }));
        start = Math.max(0, Number(newest.next_cursor ?? 0) - EVENTS_KEPT);
      } catch (e) {
        setError(asApiError(e));
        return;
      }
      await followStream({
        url: '/v1/events/stream',
        lastEventId: String(start),
        signal: abort.signal,
        retryMs: STREAM_RETRY_MS,
        onState: (s, why) => setState(why ? `${s}: ${why}` : s),
        onMessage: (message) => {
          let event: EventRecord;
          try {
            event = JSON.parse(message.data) as EventRecord;
          } catch {
            return;
          }
          setEvents((old) => [event, ...old].slice(0, EVENTS_KEPT));
        },
      });
    })();
    return () => abort.abort();
  }, []);
  return (
    <Section title="Event stream" id="events">
      <p class="muted" data-testid="stream-state">
        {state} · the last {EVENTS_KEPT} events, newest first
      </p>
      <ErrorBox error={error} />
      <table class="events" data-testid="event-tail">
        <thead>
          <tr>
            <th class="num">Seq</th>
            <th>At</th>
            <th>Type</th>
            <th>Ledger</th>
            <th>Subject</th>
          </tr>
        </thead>
        <tbody>
          {events.map((e) => {
            const link = subjectLink(e);
            return (
              <tr key={e.seq}>
                <td class="num">{e.seq}</td>
                <td>{formatTime(e.at)}</td>
                <td>{e.type}</td>
                <td>{e.ledger ?? '–'}</td>
                <td>{link ? <a href={link} class="id">{e.entity_id}</a> : <span class="id">{e.entity_id}</span>}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </Section>
  );
}

export function Live() {
  const { points, error } = useMetrics();
  const latest = points[points.length - 1] ?? null;
  const throughput = useMemo<uPlot.AlignedData>(() => [points.map((p) => p.at), points.map((p) => p.transfersPerSecond), points.map((p) => p.batchSize)], [points]);
  const latency = useMemo<uPlot.AlignedData>(() => [points.map((p) => p.at), points.map((p) => (p.p99 === null ? null : p.p99 * 1000)), points.map((p) => p.queue)], [points]);
  return (
    <div class="page">
      <h1>Live</h1>
      <ErrorBox error={error} what="GET /metrics" />
      <div class="figures live-figures">
        <Figure label="Transfers/s" value={formatNumber(latest?.transfersPerSecond ?? null)} testid="tps" />
        <Figure label="Mean batch size" value={formatNumber(latest?.batchSize ?? null)} testid="batch-size" />
        <Figure label="Queue depth" value={formatNumber(latest?.queue ?? null, 0)} testid="queue" />
        <Figure label="p99 latency (transfer routes)" value={formatSeconds(latest?.p99 ?? null)} testid="p99" />
      </div>
      <Section title="Throughput">
        <Chart options={throughputOptions} data={throughput} label="transfers per second and mean batch size" />
      </Section>
      <Section title="Latency and queue">
        <Chart options={latencyOptions} data={latency} label="p99 latency and queue depth" />
      </Section>
      <EventTail />
    </div>
  );
}
