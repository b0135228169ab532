// The server's admission gate (lib/server/admission.ts): at most maxRunning tickets run, up to
// maxQueued wait in arrival order, the rest are refused; a waiter that is cancelled gives its
// place up, and a released slot passes to the oldest waiter.
import { describe, expect, it } from 'vitest';

import { Admission } from '../lib/server/admission';

const settled = async (p: Promise<unknown>) => {
  let done = false;
  p.then(() => (done = true), () => (done = true));
  await new Promise((r) => setImmediate(r));
  return done;
};

describe('Admission', () => {
  it('runs maxRunning, queues maxQueued, refuses the rest', async () => {
    const a = new Admission(2, 1);
    const t1 = a.tryEnter()!, t2 = a.tryEnter()!, t3 = a.tryEnter()!;
    expect(a.tryEnter()).toBeUndefined();
    expect([a.runningCount, a.queuedCount]).toEqual([2, 1]);
    expect(await settled(t1.ready)).toBe(true);
    expect(await settled(t3.ready)).toBe(false);
    t1.release();
    expect(await settled(t3.ready)).toBe(true);
    expect([a.runningCount, a.queuedCount]).toEqual([2, 0]);
    t1.release(); // idempotent: does not free a second slot
    expect(a.runningCount).toBe(2);
    t2.release();
    t3.release();
    expect([a.runningCount, a.queuedCount]).toEqual([0, 0]);
  });

  it('grants slots in arrival order', async () => {
    const a = new Admission(1, 3);
    const first = a.tryEnter()!;
    const order: number[] = [];
    const waiting = [1, 2, 3].map((i) => { const t = a.tryEnter()!; t.ready.then(() => order.push(i)); return t; });
    first.release();
    await new Promise((r) => setImmediate(r));
    waiting[0].release();
    await new Promise((r) => setImmediate(r));
    waiting[1].release();
    await new Promise((r) => setImmediate(r));
    expect(order).toEqual([1, 2, 3]);
  });

  it('a cancelled waiter leaves the queue and its ready() rejects with the reason', async () => {
    const a = new Admission(1, 1);
    const running = a.tryEnter()!;
    const ac = new AbortController();
    const waiter = a.tryEnter(ac.signal)!;
    expect(a.tryEnter()).toBeUndefined();
    ac.abort(new Error('client left'));
    await expect(waiter.ready).rejects.toThrow('client left');
    expect(a.queuedCount).toBe(0);
    const next = a.tryEnter()!;
    running.release();
    expect(await settled(next.ready)).toBe(true);
    waiter.release(); // releasing a cancelled ticket changes nothing
    expect(a.runningCount).toBe(1);

    const pre = new AbortController();
    pre.abort(new Error('gone already'));
    const late = a.tryEnter(pre.signal)!;
    await expect(late.ready).rejects.toThrow('gone already');
    expect(a.queuedCount).toBe(0);
  });

  it('rejects nonsensical limits', () => {
    expect(() => new Admission(0, 1)).toThrow(/maxSequences must be an integer >= 1, got 0/);
    expect(() => new Admission(1, -1)).toThrow(/queue must be an integer >= 0, got -1/);
  });
});
