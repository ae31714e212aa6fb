import { describe, expect, it } from 'vitest';
import { SseParser } from '../src/sse';

describe('SseParser', () => {
  it('parses messages with id, event and data, keeping the last id', () => {
    const p = new SseParser();
    const out = p.push('id: 7\nevent: transfer.posted\ndata: {"seq":7}\n\n');
    expect(out).toEqual([{ id: '7', event: 'transfer.posted', data: '{"seq":7}' }]);
    expect(p.lastEventId).toBe('7');
  });

  it('joins data lines, skips comments (keep-alives), defaults the event to message', () => {
    const p = new SseParser();
    expect(p.push(':\n\n: keep-alive\n\ndata: a\ndata: b\n\n')).toEqual([{ id: null, event: 'message', data: 'a\nb' }]);
  });

  it('completes messages across chunks, whatever the split, and with CRLF or CR line ends', () => {
    const text = 'id:1\r\nevent:x\r\ndata:one\r\n\r\nid: 2\rdata: two\r\r';
    for (let split = 0; split <= text.length; split++) {
      const p = new SseParser();
      const out = [...p.push(text.slice(0, split)), ...p.push(text.slice(split))];
      expect(out, `split at ${split}`).toEqual([
        { id: '1', event: 'x', data: 'one' },
        { id: '2', event: 'message', data: 'two' },
      ]);
    }
  });

  it('reads retry, ignores unknown fields and an event with no data', () => {
    const p = new SseParser();
    expect(p.push('retry: 1500\nfoo: bar\nevent: lonely\n\n')).toEqual([]);
    expect(p.retry).toBe(1500);
    // The id carries over to the next message.
    expect(p.push('id: 9\n\ndata: later\n\n')).toEqual([{ id: '9', event: 'message', data: 'later' }]);
  });

  it('keeps a message that has not ended yet', () => {
    const p = new SseParser();
    expect(p.push('data: half')).toEqual([]);
    expect(p.push('\n')).toEqual([]);
    expect(p.push('\n')).toEqual([{ id: null, event: 'message', data: 'half' }]);
  });
});
