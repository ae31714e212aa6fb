// Server-sent events read with fetch (EventSource cannot send the Authorization header): an
// incremental parser of the text/event-stream format, and a reader that reconnects and resumes
// after the last event id.

import { authHeaders } from './api';

export interface SseMessage {
  id: string | null;
  event: string;
  data: string;
}

/** Feed it text as it arrives; it returns the messages completed by each piece. */
export class SseParser {
  private buffer = '';
  private data: string[] = [];
  private event = '';
  private sawCr = false;
  /** The last `id:` seen (kept across messages, as the spec says). */
  lastEventId: string | null = null;
  /** The server's `retry:` in milliseconds, if it sent one. */
  retry: number | null = null;

  push(chunk: string): SseMessage[] {
    let text = chunk;
    // A CRLF split across two pieces: the LF belongs to the CR already taken as a line end.
    if (this.sawCr && text.startsWith('\n')) text = text.slice(1);
    this.sawCr = text.endsWith('\r');
    this.buffer += text;
    const out: SseMessage[] = [];
    const lines = this.buffer.split(/\r\n|\r|\n/);
    this.buffer = lines.pop() ?? '';
    for (const line of lines) {
      const message = this.line(line);
      if (message) out.push(message);
    }
    return out;
  }

  private line(line: string): SseMessage | null {
    if (line === '') {
      if (this.data.length === 0) {
        this.event = '';
        return null;
      }
      const message = { id: this.lastEventId, event: this.event || 'message', data: this.data.join('\n') };
      this.data = [];
      this.event = '';
      return message;
    }
    if (line.startsWith(':')) return null;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'data':
        this.data.push(value);
        break;
      case 'event':
        this.event = value;
        break;
      case 'id':
        if (!value.includes('\0')) {
          this.lastEventId = value;
        }
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.retry = Number(value);
        break;
      default:
        break;
    }
    return null;
  }
}

export interface StreamOptions {
  url: string;
  /** Resume after this event id (sent as Last-Event-ID). */
  lastEventId: string | null;
  onMessage: (message: SseMessage) => void;
  onState: (state: 'connecting' | 'open' | 'retrying' | 'closed', error?: string) => void;
  signal: AbortSignal;
  retryMs?: number;
}

/** Reads the stream until `signal` aborts, reconnecting after errors from the last id seen. */
export async function followStream(options: StreamOptions): Promise<void> {
  let lastId = options.lastEventId;
  const retryMs = options.retryMs ?? 2000;
  while (!options.signal.aborted) {
    options.onState('connecting');
    let failure = 'stream ended';
    try {
      const headers: Record<string, string> = { ...authHeaders(), Accept: 'text/event-stream' };
      if (lastId !== null) headers['Last-Event-ID'] = lastId;
      const response = await fetch(options.url, { headers, signal: options.signal, cache: 'no-store' });
      if (!response.ok || !response.body) {
        failure = `HTTP ${response.status}`;
        try {
          const body = (await response.json()) as { error?: { code?: string } };
          if (body.error?.code) failure = body.error.code;
        } catch {
          // keep the status
        }
        if (response.status === 401 || response.status === 403) {
          options.onState('closed', failure);
          return;
        }
      } else {
        options.onState('open');
        const parser = new SseParser();
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          for (const message of parser.push(value)) {
            if (message.id !== null) lastId = message.id;
            options.onMessage(message);
          }
        }
      }
    } catch (error) {
      if (options.signal.aborted) break;
      failure = error instanceof Error ? error.message : String(error);
    }
    if (options.signal.aborted) break;
    options.onState('retrying', failure);
    await new Promise((resolve) => setTimeout(resolve, retryMs));
  }
  options.onState('closed');
}
