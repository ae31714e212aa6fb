// Starts a `tally serve` on a fresh embedded database for the browser tests, and talks to it.

import { spawn, execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:net';

const run = promisify(execFile);
/** tally finds its PostgreSQL in .pg18/ upwards from the working directory: run it from the repository. */
const REPO = new URL('../..', import.meta.url).pathname;
export const TALLY_BIN = process.env.TALLY_BIN ?? `${REPO}target/release/tally`;
const KEY = /tly_[0-9a-f]{64}/;

/** The environment of every tally process: no DATABASE_URL, no console directory (the embedded copy is tested). */
function env() {
  const e = { ...process.env };
  delete e.DATABASE_URL;
  delete e.TALLY_CONSOLE_DIR;
  return e;
}

function log(...args) {
  console.log('[e2e]', ...args);
}

export async function startTally() {
  const dir = mkdtempSync(join(tmpdir(), 'tally-console-e2e-'));
  // As root the embedded PostgreSQL runs as an unprivileged user, which must reach the data directory.
  chmodSync(dir, 0o755);
  log(`starting ${TALLY_BIN} --data-dir ${dir} serve --listen 127.0.0.1:0`);
  const child = spawn(TALLY_BIN, ['--data-dir', dir, 'serve', '--listen', '127.0.0.1:0'], { env: env(), cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => {
    err += d;
    if (err.length > 200_000) err = err.slice(-100_000);
  });
  const ready = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`tally serve did not start in 180 s:\n${out}\n${err.slice(-4000)}`)), 180_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`tally serve exited (${code}):\n${out}\n${err.slice(-4000)}`));
    });
    child.stdout.on('data', (d) => {
      out += d;
      const served = /Tally serves (https?:\/\/[^\s]+)/.exec(out);
      const key = KEY.exec(out);
      if (served && key) {
        clearTimeout(timer);
        resolve({ url: served[1], adminKey: key[0] });
      }
    });
  });
  child.removeAllListeners('exit');
  log(`tally serves ${ready.url}`);
  const tally = {
    dir,
    url: ready.url,
    adminKey: ready.adminKey,
    stderr: () => err,
    async cli(...args) {
      const { stdout, stderr } = await run(TALLY_BIN, ['--data-dir', dir, ...args], { env: env(), cwd: REPO, timeout: 120_000 });
      return stdout + stderr;
    },
    async createKey(name, role, ...extra) {
      const text = await tally.cli('key', 'create', '--name', name, '--role', role, ...extra);
      const key = KEY.exec(text);
      if (!key) throw new Error(`no key in: ${text}`);
      return key[0];
    },
    /** Whether this binary's bench has --listen (its server's console, an operator key). */
    async benchListens() {
      const { stdout } = await run(TALLY_BIN, ['bench', '--help'], { env: env(), cwd: REPO });
      return stdout.includes('--listen');
    },
    /** Starts `tally bench --mode http --listen` on this data directory's PostgreSQL; resolves
     *  when it prints its console's address and key. */
    async startBench(seconds) {
      const port = await freePort();
      const args = ['--data-dir', dir, 'bench', '--mode', 'http', '--listen', `127.0.0.1:${port}`, '--accounts', '1000', '--duration', `${seconds}s`, '--concurrency', '16', '--json-out', join(dir, 'bench.json'), '--svg-out', join(dir, 'bench.svg')];
      log(`starting ${TALLY_BIN} ${args.join(' ')}`);
      const bench = spawn(TALLY_BIN, args, { env: env(), cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
      let text = '';
      const done = new Promise((resolve) => bench.on('exit', (code) => resolve(code)));
      const started = await new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          bench.kill('SIGTERM');
          reject(new Error(`tally bench printed no console address in 120 s:\n${text.slice(-4000)}`));
        }, 120_000);
        done.then((code) => {
          clearTimeout(timer);
          reject(new Error(`tally bench exited (${code}):\n${text.slice(-4000)}`));
        });
        const read = (d) => {
          text += d;
          const m = /listens on (http:\/\/[^\s;]+).*?(tly_[0-9a-f]{64})/s.exec(text);
          if (m) {
            clearTimeout(timer);
            resolve({ url: m[1], key: m[2] });
          }
        };
        bench.stderr.on('data', read);
        bench.stdout.on('data', (d) => {
          text += d;
        });
      });
      log(`bench serves ${started.url}`);
      return {
        ...started,
        output: () => text,
        async finished() {
          const timer = setTimeout(() => bench.kill('SIGTERM'), (seconds + 60) * 1000);
          const code = await done;
          clearTimeout(timer);
          return code;
        },
      };
    },
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await new Promise((resolve) => {
          const timer = setTimeout(() => {
            child.kill('SIGKILL');
            resolve();
          }, 20_000);
          child.on('exit', () => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
      try {
        await run(TALLY_BIN, ['--data-dir', dir, 'pg', 'stop'], { env: env(), cwd: REPO, timeout: 60_000 });
      } catch (e) {
        log(`pg stop: ${e.message}`);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return tally;
}

/** A JSON call to the API; throws with the answer when the status is not 2xx. */
export async function api(base, key, method, path, body) {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { Authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await response.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  if (!response.ok) {
    const error = new Error(`${method} ${path} → ${response.status} ${text.slice(0, 500)}`);
    error.status = response.status;
    error.body = json;
    throw error;
  }
  return { status: response.status, body: json };
}

export const uuid = () => randomUUID();

async function freePort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Sends batches of small transfers from `from` to `to` until `seconds` pass; bounded in time and count. */
export async function load(base, key, from, to, seconds, batch = 200) {
  const until = Date.now() + seconds * 1000;
  let sent = 0;
  for (let round = 0; Date.now() < until && round < 10_000; round++) {
    const transfers = Array.from({ length: batch }, () => ({ id: uuid(), from, to, amount: '0.01', currency: 'USD' }));
    await api(base, key, 'POST', '/v1/transfers/batch', { transfers });
    sent += batch;
  }
  return sent;
}
