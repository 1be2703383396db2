/** The two admission gates drawing from one budget of database slots (src/http/admission-gate.ts), on their own. */
import { EventEmitter } from 'node:events';
import type { Request, Response } from 'express';
import { createAdmission, leaveAdmission } from '../../src/http/admission';
import { Gate, SlotBudget } from '../../src/http/admission-gate';

const limits = (concurrency: number) => ({ concurrency, queue: 100, queueWaitMs: 60_000 });

/** Asks `gate` for one more slot; `admitted()` tells whether it has been given yet. */
function oneMore(gate: Gate): { admitted: () => boolean; granted: Promise<() => void> } {
  let admitted = false;
  const granted = gate.acquire().then((release) => ((admitted = true), release));
  return { admitted: () => admitted, granted };
}

function gates(slots = 8, each = 6) {
  const budget = new SlotBudget(slots);
  return { budget, writes: new Gate('writes', limits(each), budget), reads: new Gate('reads', limits(each), budget) };
}

test('a kind uses the slots the other leaves idle, up to its own concurrency', async () => {
  const { reads, budget } = gates();
  const held = await Promise.all(Array.from({ length: 6 }, () => reads.acquire()));
  expect(reads.inFlight).toBe(6);
  expect(budget.used).toBe(6);
  const seventh = oneMore(reads);
  await Promise.resolve();
  expect(seventh.admitted()).toBe(false);
  expect(reads.queued).toBe(1);
  held[0]?.();
  (await seventh.granted)();
  expect(seventh.admitted()).toBe(true);
  for (const r of held) r();
  expect(budget.used).toBe(0);
});

test('each kind keeps the slots the other cannot take, and a slot the other kind frees goes to its queue', async () => {
  const { writes, reads, budget } = gates();
  const w = await Promise.all(Array.from({ length: 6 }, () => writes.acquire()));
  // Writes hold all they may (6 of 8): two reads still get a slot at once.
  const r = await Promise.all(Array.from({ length: 2 }, () => reads.acquire()));
  expect(reads.queued).toBe(0);
  expect(budget.used).toBe(8);
  // The budget is spent: a third read queues, and gets the slot a write gives back.
  const third = oneMore(reads);
  await Promise.resolve();
  expect(third.admitted()).toBe(false);
  expect(reads.queued).toBe(1);
  w[0]?.();
  const rel = await third.granted;
  expect(third.admitted()).toBe(true);
  expect(reads.inFlight).toBe(3);
  expect(writes.inFlight).toBe(5);
  for (const x of [...w.slice(1), ...r, rel]) x();
  expect(budget.used).toBe(0);
});

test('a queued request that timed out leaves the queue: its place and its slot are not lost', async () => {
  const gate = new Gate('writes', { concurrency: 1, queue: 1, queueWaitMs: 20 });
  const held = await gate.acquire();
  await expect(gate.acquire()).rejects.toThrow();
  expect(gate.refused.queue_timeout).toBe(1);
  expect(gate.queued).toBe(0);
  held();
  // The slot is free again, and the queue has its one place: a new request is granted at once.
  expect(gate.inFlight).toBe(0);
  const next = gate.tryGrant();
  expect(next).not.toBeNull();
  next?.();
  const queuedAgain = oneMore(gate);
  await Promise.resolve();
  expect(queuedAgain.admitted()).toBe(true);
  (await queuedAgain.granted)();
});

test('slots freed one at a time go to the two kinds in turn, so that neither starves under the other\'s load', async () => {
  const budget = new SlotBudget(2);
  const writes = new Gate('writes', limits(2), budget);
  const reads = new Gate('reads', limits(2), budget);
  const held: (() => void)[] = await Promise.all([writes.acquire(), writes.acquire()]);
  const order: string[] = [];
  const track = (gate: Gate) => gate.acquire().then((release) => void (order.push(gate.name), held.push(release)));
  const all = [track(writes), track(writes), track(writes), track(reads), track(reads), track(reads)];
  // One slot comes back at a time; each goes to the kind whose turn it is.
  for (let i = 0; i < 4; i++) {
    held.shift()?.();
    await new Promise((r) => setImmediate(r));
  }
  expect(order).toEqual(['writes', 'reads', 'writes', 'reads']);
  while (held.length) held.shift()?.();
  await Promise.all(all);
  while (held.length) held.shift()?.();
  expect(budget.used).toBe(0);
});

/** An admission of one write slot, and PATCH requests through its middleware (fake request and response). */
function oneWriteSlot() {
  const admission = createAdmission({
    writes: { concurrency: 1, queue: 10, queueWaitMs: 60_000 },
    reads: { concurrency: 1, queue: 10, queueWaitMs: 60_000 },
    databaseSlots: 2,
    retryAfterSeconds: 1,
  });
  const request = (closed = false) => {
    const res = Object.assign(new EventEmitter(), { locals: {}, closed }) as unknown as Response & EventEmitter & { closed: boolean };
    const req = { method: 'PATCH', res } as unknown as Request;
    let passed = false;
    admission.middleware(req, res, () => (passed = true));
    return { req, res, passed: () => passed };
  };
  return { admission, request };
}

test('a request admitted from the queue keeps no listener of its wait, and none once it leaves admission (a waiter holds neither)', async () => {
  const { admission, request } = oneWriteSlot();
  const first = request();
  expect(first.passed()).toBe(true);
  const second = request();
  expect(second.passed()).toBe(false);
  expect(admission.gates.writes.queued).toBe(1);
  // Queued: the request's 'close' would take it out of the queue.
  expect(second.res.listenerCount('close')).toBe(1);
  leaveAdmission(first.req);
  expect(first.res.listenerCount('close')).toBe(0);
  await new Promise((r) => setImmediate(r));
  expect(second.passed()).toBe(true);
  // Admitted: only the slot's release listens, in case the request ends before it leaves.
  expect(second.res.listenerCount('close')).toBe(1);
  leaveAdmission(second.req);
  expect(second.res.listenerCount('close')).toBe(0);
  expect(admission.gates.writes.inFlight).toBe(0);
  // Leaving twice, or a close after leaving, gives nothing back twice.
  leaveAdmission(second.req);
  second.res.emit('close');
  expect(admission.gates.writes.inFlight).toBe(0);
  expect(admission.status()).toMatchObject({ database_slots: { in_use: 0 } });
});

test('a queued request whose client goes away just as it is admitted gives its slot back at once (and one gone before admission takes none)', async () => {
  const { admission, request } = oneWriteSlot();
  const first = request();
  const second = request();
  expect(admission.gates.writes.queued).toBe(1);
  // The first leaves: the slot is granted to the second, whose admission runs a turn later. The second's
  // client closes in between (several sockets closing in one tick do this).
  leaveAdmission(first.req);
  second.res.closed = true;
  second.res.emit('close');
  await new Promise((r) => setImmediate(r));
  expect(second.passed()).toBe(false);
  expect(admission.gates.writes.inFlight).toBe(0);
  // A request whose client is already gone when it reaches admission holds no slot either.
  expect(request(true).passed()).toBe(false);
  expect(admission.gates.writes.inFlight).toBe(0);
  // The slot is there for the next request.
  expect(request().passed()).toBe(true);
});

test('a gate queues exactly its queue bound: one more is refused queue_full, and counted', async () => {
  const budget = new SlotBudget(8);
  const writes = new Gate('writes', { concurrency: 1, queue: 2, queueWaitMs: 60_000 }, budget);
  const held = await writes.acquire();
  const queued = [oneMore(writes), oneMore(writes)];
  expect(writes.queued).toBe(2);
  // Refused at once, not queued (a queued one would still be waiting after this turn of the event loop).
  const third = writes.acquire().then((release) => (release(), 'admitted'), (err: { reason?: string }) => err.reason);
  expect(await Promise.race([third, new Promise((r) => setImmediate(() => r('queued')))])).toBe('queue_full');
  expect(writes.queued).toBe(2);
  expect(writes.refused.queue_full).toBe(1);
  held();
  for (const q of queued) (await q.granted)();
  expect(budget.used).toBe(0);
});
