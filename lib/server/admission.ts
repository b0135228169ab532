// Admission control of the HTTP server: at most `maxRunning` requests generate at once (the
// engine's page pool is sized for that many sequences), up to `maxQueued` more wait in arrival
// order, and anything beyond is refused at once (HTTP 429) rather than queued without bound.
// Once the engine schedules sequences itself, this gate only keeps the server's promises
// (--max-sequences / --queue) visible in /metrics; the engine's own QUEUE_FULL still maps to 429.

export interface Ticket {
  /** Resolves when the request may start generating; rejects if cancelled while waiting. */
  readonly ready: Promise<void>;
  /** Gives the slot (or the place in the queue) back. Idempotent. */
  release(): void;
}

type SlotState = 'waiting' | 'running' | 'released';

export class Admission {
  private running = 0;
  private readonly waiting: Slot[] = [];

  constructor(readonly maxRunning: number, readonly maxQueued: number) {
    if (!Number.isInteger(maxRunning) || maxRunning < 1) throw new RangeError(`maxSequences must be an integer >= 1, got ${maxRunning}`);
    if (!Number.isInteger(maxQueued) || maxQueued < 0) throw new RangeError(`queue must be an integer >= 0, got ${maxQueued}`);
  }

  get runningCount(): number {
    return this.running;
  }

  get queuedCount(): number {
    return this.waiting.length;
  }

  /** A ticket for `slots` sequences (a request's n choices), or undefined when the running ones
   *  leave no room and maxQueued requests are already waiting. A request of more slots than
   *  maxRunning runs alone. Aborting `signal` while the ticket waits takes it out of the queue
   *  and rejects `ready`. */
  tryEnter(signal?: AbortSignal, slots = 1): Ticket | undefined {
    const canRun = this.fits(slots) && this.waiting.length === 0;
    if (!canRun && this.waiting.length >= this.maxQueued) return undefined;
    const slot = new Slot((s) => this.release(s), slots);
    if (canRun) this.grant(slot);
    else {
      this.waiting.push(slot);
      if (signal?.aborted) slot.cancel(signal.reason);
      else signal?.addEventListener('abort', () => slot.cancel(signal.reason), { once: true });
    }
    return slot;
  }

  private fits(slots: number): boolean {
    return this.running === 0 || this.running + slots <= this.maxRunning;
  }

  private grant(slot: Slot): void {
    this.running += slot.slots;
    slot.start();
  }

  private release(slot: Slot): void {
    if (slot.state === 'running') {
      this.running -= slot.slots;
      // Freed slots go to the oldest waiters, in order, while they fit.
      while (this.waiting.length > 0 && this.fits(this.waiting[0].slots)) this.grant(this.waiting.shift()!);
    } else if (slot.state === 'waiting') {
      const i = this.waiting.indexOf(slot);
      if (i >= 0) this.waiting.splice(i, 1);
    }
  }
}

class Slot implements Ticket {
  state: SlotState = 'waiting';
  readonly ready: Promise<void>;
  private resolve!: () => void;
  private reject!: (e: unknown) => void;

  constructor(private readonly onRelease: (s: Slot) => void, readonly slots = 1) {
    this.ready = new Promise<void>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    this.ready.catch(() => undefined); // a cancelled ticket's rejection is for whoever awaits it
  }

  start(): void {
    this.state = 'running';
    this.resolve();
  }

  cancel(reason: unknown): void {
    if (this.state !== 'waiting') return;
    this.release();
    this.reject(reason ?? new Error('cancelled while queued'));
  }

  release(): void {
    if (this.state === 'released') return;
    this.onRelease(this);
    this.state = 'released';
  }
}
