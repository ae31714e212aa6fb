// Only for a tally binary built before it served /console/: serves console/dist with the same
// Content-Security-Policy as the server, and forwards everything else to the tally server.

import { createServer, request } from 'node:http';
import { readFile } from 'node:fs/promises';
import { join, normalize } from 'node:path';

export const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css' };

export function startProxy(dist, upstream) {
  const target = new URL(upstream);
  const server = createServer(async (req, res) => {
    if (req.url.startsWith('/console/')) {
      const path = req.url.split('?')[0].slice('/console/'.length) || 'index.html';
      const file = normalize(join(dist, path));
      if (!file.startsWith(dist)) return res.writeHead(404).end();
      try {
        const body = await readFile(file);
        const ext = file.slice(file.lastIndexOf('.'));
        res.writeHead(200, { 'Content-Type': TYPES[ext] ?? 'application/octet-stream', 'Content-Security-Policy': CSP });
        return res.end(body);
      } catch {
        return res.writeHead(404).end();
      }
    }
    const forward = request({ host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    forward.on('error', () => (res.headersSent ? res.destroy() : res.writeHead(502).end()));
    // A browser that goes away (a closed page's event stream) closes its upstream request too.
    res.on('close', () => forward.destroy());
    req.pipe(forward);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ url: `http://127.0.0.1:${server.address().port}`, close: () => { server.closeAllConnections(); server.close(); } })));
}
