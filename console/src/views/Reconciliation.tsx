// #/reconciliation: the end-of-day runs; #/reconciliation/DAY: a day's report with its chart of
// transfers by hour, totals, checks and findings.

import { useMemo, useState } from 'preact/hooks';
import type uPlot from 'uplot';
import uPlotLib from 'uplot';
import { type ApiError, type Finding, type Page, type Reconciliation as ReconciliationT, type RunSummary, postJson, seg, withQuery } from '../api';
import { Chart } from '../chart';
import { formatTime } from '../format';
import { asApiError, useGet } from '../hooks';
import { RUNS_SHOWN } from '../limits';
import { href, navigate } from '../router';
import { AccountLink, Amount, ErrorBox, Field, Loading, Section, Status, TransferLink } from '../ui';

function RunForm() {
  const [day, setDay] = useState('');
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event: Event) => {
    event.preventDefault();
    if (!day) return;
    setBusy(true);
    setError(null);
    try {
      await postJson<ReconciliationT>('/v1/reconciliations', { date: day });
      navigate('reconciliation', day);
    } catch (e) {
      setError(asApiError(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="search" onSubmit={submit}>
      <label for="recon-day">Run the end of day for</label>
      <input id="recon-day" type="date" value={day} onInput={(e) => setDay(e.currentTarget.value)} />
      <button type="submit" disabled={busy || !day}>
        Reconcile
      </button>
      <ErrorBox error={error} />
    </form>
  );
}

export function Reconciliations() {
  const runs = useGet<Page<RunSummary>>(withQuery('/v1/reconciliations', { limit: RUNS_SHOWN }));
  return (
    <div class="page">
      <h1>Reconciliation</h1>
      <RunForm />
      <Section title="End-of-day runs">
        <ErrorBox error={runs.error} />
        <Loading when={runs.loading && !runs.data} />
        {runs.data && runs.data.data.length === 0 && <p class="muted">No runs yet.</p>}
        {runs.data && runs.data.data.length > 0 && (
          <table data-testid="runs">
            <thead>
              <tr>
                <th>Day</th>
                <th>Status</th>
                <th class="num">Findings</th>
                <th>Started</th>
                <th>Finished</th>
                <th>Actor</th>
              </tr>
            </thead>
            <tbody>
              {runs.data.data.map((r) => (
                <tr key={r.run_id}>
                  <td>
                    <a href={href('reconciliation', r.day)}>{r.day}</a>
                  </td>
                  <td>
                    <Status value={r.status} />
                  </td>
                  <td class="num">{r.findings ?? '–'}</td>
                  <td>{formatTime(r.started_at)}</td>
                  <td>{formatTime(r.finished_at)}</td>
                  <td>{r.actor}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Section>
    </div>
  );
}

const hourlyOptions: Omit<uPlot.Options, 'width' | 'height'> = {
  scales: { x: { time: false, range: (_u, min, max) => [min - 0.5, max + 0.5] }, y: { auto: true, range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] } },
  axes: [
    { label: 'hour of the ledger day', stroke: '#5b6472', grid: { show: false } },
    { label: 'transfers', stroke: '#5b6472', grid: { stroke: '#e6e8ec', width: 1 }, size: 60 },
  ],
  series: [{ label: 'hour' }, { label: 'transfers', stroke: '#2563eb', fill: 'rgba(37,99,235,0.35)', paths: uPlotLib.paths.bars!({ size: [0.8, 40] }), points: { show: false } }],
};

export function FindingsTable({ findings }: { findings: Finding[] }) {
  if (findings.length === 0) return <p class="muted" data-testid="no-findings">No findings.</p>;
  return (
    <table data-testid="findings">
      <thead>
        <tr>
          <th>Check</th>
          <th>Subject</th>
          <th>Currency</th>
          <th class="num">Expected</th>
          <th class="num">Found</th>
          <th class="num">Difference</th>
          <th>Detail</th>
        </tr>
      </thead>
      <tbody>
        {findings.map((f, i) => (
          <tr key={i}>
            <td>
              <code>{f.check}</code>
            </td>
            <td>{f.transfer_id ? <TransferLink id={f.transfer_id} /> : f.account_id ? <AccountLink id={f.account_id} /> : f.subject}</td>
            <td>{f.currency ?? '–'}</td>
            <td class="num">{f.expected ? <Amount value={f.expected} /> : '–'}</td>
            <td class="num">{f.found ? <Amount value={f.found} /> : '–'}</td>
            <td class="num">{f.difference ? <Amount value={f.difference} signed /> : '–'}</td>
            <td>{f.detail}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function DayReportView({ day }: { day: string }) {
  const run = useGet<ReconciliationT>(`/v1/reconciliations/${seg(day)}`);
  const report = run.data?.report ?? null;
  const hourly = useMemo<uPlot.AlignedData>(() => (report ? [report.hourly.map((h) => h.hour), report.hourly.map((h) => h.transfers)] : [[], []]), [report]);
  return (
    <div class="page">
      <h1>
        End of day <span class="title-id">{day}</span>
      </h1>
      <p>
        <a href={href('reconciliation')}>← all runs</a>
      </p>
      <ErrorBox error={run.error} />
      <Loading when={run.loading && !run.data} />
      {run.data && (
        <Section title="Run">
          <dl class="fields">
            <Field label="Status">
              <Status value={run.data.status} />
            </Field>
            <Field label="Run">
              <code>{run.data.run_id}</code>
            </Field>
            {run.data.error && <Field label="Error">{run.data.error}</Field>}
            {report && (
              <>
                <Field label="Day (time zone)">{`${report.day} (${report.time_zone})`}</Field>
                <Field label="Bounds">{`${formatTime(report.starts_at)} – ${formatTime(report.ends_at)}`}</Field>
                <Field label="Actor">{report.actor}</Field>
                <Field label="Snapshot">{report.snapshot}</Field>
                <Field label="Transfers">{report.transfers}</Field>
                <Field label="Rejected">{report.rejected}</Field>
                <Field label="Accounts touched">{report.accounts_touched}</Field>
                <Field label="Events">{report.events}</Field>
                <Field label="Batches">{report.batches}</Field>
                <Field label="Finished">{formatTime(report.finished_at)}</Field>
              </>
            )}
          </dl>
          {report?.filter && <p class="muted">{report.filter.note}</p>}
        </Section>
      )}
      {report && (
        <>
          <Section title="Transfers by hour">
            <Chart options={hourlyOptions} data={hourly} label="transfers by hour of the day" height={200} />
          </Section>
          <Section title="Findings" id="findings">
            <FindingsTable findings={report.findings} />
          </Section>
          <Section title="Totals">
            <table>
              <thead>
                <tr>
                  <th>Ledger</th>
                  <th>Currency</th>
                  <th class="num">Transfers</th>
                  <th class="num">Posted volume</th>
                  <th class="num">Debits posted</th>
                  <th class="num">Credits posted</th>
                  <th class="num">Debits pending</th>
                  <th class="num">Credits pending</th>
                </tr>
              </thead>
              <tbody>
                {report.currencies.map((c) => (
                  <tr key={`${c.ledger}-${c.currency}`}>
                    <td>{c.ledger}</td>
                    <td>{c.currency}</td>
                    <td class="num">{c.transfers}</td>
                    <td class="num">
                      <Amount value={c.posted_volume} />
                    </td>
                    <td class="num">
                      <Amount value={c.closing_debits_posted} />
                    </td>
                    <td class="num">
                      <Amount value={c.closing_credits_posted} />
                    </td>
                    <td class="num">
                      <Amount value={c.closing_debits_pending} />
                    </td>
                    <td class="num">
                      <Amount value={c.closing_credits_pending} />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </Section>
          <Section title="Checks">
            <table>
              <thead>
                <tr>
                  <th>Check</th>
                  <th>What it checks</th>
                  <th class="num">Findings</th>
                </tr>
              </thead>
              <tbody>
                {report.checks.map((c) => (
                  <tr key={c.check}>
                    <td>
                      <code>{c.check}</code>
                    </td>
                    <td>{c.description}</td>
                    <td class="num">{c.findings}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </Section>
        </>
      )}
    </div>
  );
}
