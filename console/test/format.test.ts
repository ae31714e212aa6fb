import { describe, expect, it } from 'vitest';
import { chartValue, formatAmount, formatMoney, formatSeconds, formatTime, signOf } from '../src/format';

describe('amounts', () => {
  it('groups thousands and keeps every digit of the string', () => {
    expect(formatAmount('0.00')).toBe('0.00');
    expect(formatAmount('125.50')).toBe('125.50');
    expect(formatAmount('1234.5')).toBe('1,234.5');
    expect(formatAmount('-1234567.89')).toBe('-1,234,567.89');
    expect(formatAmount('1000')).toBe('1,000');
    // Beyond a float's precision: nothing is rounded.
    expect(formatAmount('12345678901234567890.123456789012345678')).toBe('12,345,678,901,234,567,890.123456789012345678');
    expect(formatMoney('100.00', 'USD')).toBe('100.00 USD');
  });

  it('returns text that is not a decimal as it is', () => {
    expect(formatAmount('n/a')).toBe('n/a');
    expect(formatAmount('1e5')).toBe('1e5');
  });

  it('tells the sign without a float', () => {
    expect(signOf('0.00')).toBe(0);
    expect(signOf('-0.00')).toBe(0);
    expect(signOf('-0.01')).toBe(-1);
    expect(signOf('99999999999999999999999.99')).toBe(1);
  });

  it('makes numbers only for charts', () => {
    expect(chartValue('12.50')).toBe(12.5);
    expect(chartValue('x')).toBeNaN();
  });

  it('formats durations and times', () => {
    expect(formatSeconds(0.0123)).toBe('12.3 ms');
    expect(formatSeconds(0.00042)).toBe('0.42 ms');
    expect(formatSeconds(2.5)).toBe('2.5 s');
    expect(formatSeconds(null)).toBe('–');
    expect(formatTime('2026-03-10T14:05:09.123456Z')).toBe('2026-03-10 14:05:09Z');
  });
});

describe('ids', () => {
  it('shortens to the distinctive end', async () => {
    const { shortId } = await import('../src/format');
    expect(shortId('01a24727-9d6d-7398-a5e7-484952c6dae3')).toBe('…484952c6dae3');
    expect(shortId('alice')).toBe('alice');
  });
});
