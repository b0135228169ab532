// One generate() call on the JS side: it owns the sequence's detokenizer, stop strings and
// statistics, and turns the scheduler's per-iteration events for its sequence into the stream's
// token / step events. EOS and maxTokens are applied natively (the scheduler stops the sequence
// there); stop strings are found here, after which the native sequence is cancelled and no
// further text is released.
import type { NativeSequenceEvent } from './native';
import type { NativeLogprobs } from './native';
import type { DoneEvent, GenerationStats, GenerationStream, PromptLogprob, StopReason, TokenLogprob } from './stream';
import { IncrementalDetokenizer, Tokenizer } from './tokenizer';

export class Generation {
  private readonly detok: IncrementalDetokenizer;
  private readonly maxStop: number;
  private readonly ids: number[] = [];
  private text = '';        // all released text
  private held = '';        // text withheld because it may begin a stop string
  private stopped = false;  // a stop string was found: ignore later tokens
  private steps = 0;
  private stepTokens = 0;
  private proposed = 0;
  private accepted = 0;
  private deviceSeconds = 0;
  private firstAt = 0;
  private cachedTokens = 0;
  private readonly tokenLogprobs: Array<TokenLogprob & { top: TokenLogprob[] }> = [];
  private promptLogprobs: Array<PromptLogprob | null> | undefined;
  private readonly offered: number[] = [];
  private readonly acceptedAt: number[] = [];

  constructor(
    private readonly stream: GenerationStream,
    tokenizer: Tokenizer,
    private readonly stops: string[],
    /** The prompt's token ids (for prompt log-probabilities). */
    private readonly prompt: ArrayLike<number>,
    private readonly startedAt: number,
    /** Cancels the native sequence (after a stop string). */
    private readonly cancel: () => void,
    /** Largest block this sequence may verify: per-position acceptance has block - 1 entries. */
    maxBlock = 1,
    private readonly wantsLogprobs = false,
    wantsPromptLogprobs = false,
  ) {
    if (wantsPromptLogprobs) this.promptLogprobs = [null];
    for (let i = 0; i + 1 < maxBlock; i++) this.offered[i] = this.acceptedAt[i] = 0;
    this.detok = new IncrementalDetokenizer(tokenizer);
    this.maxStop = stops.reduce((m, s) => Math.max(m, s.length), 0);
  }

  /** Applies one iteration's event; returns the done event when the sequence has ended. */
  onEvent(e: NativeSequenceEvent): DoneEvent | undefined {
    if (e.cachedTokens !== undefined) this.cachedTokens = e.cachedTokens;
    if (e.promptLogprobs) {
      this.promptLogprobs ??= [null];
      const p = e.promptLogprobs;
      for (let i = 0; i < p.logprobs.length; i++)
        this.promptLogprobs[p.from + i] = { id: this.prompt[p.from + i], logprob: p.logprobs[i], top: alternatives(p, i) };
    }
    if (!this.stopped && e.block > 0) this.step(e);
    if (e.finish === undefined) return undefined;
    if (e.finish === 'error') throw new Error(e.error ?? 'generation failed');
    const reason: StopReason = this.stopped ? 'stop' : e.finish;
    if (reason !== 'stop') {
      const tail = this.held + this.detok.flush();
      this.held = '';
      if (tail) {
        this.text += tail;
        this.stream.pushToken({ id: -1, text: tail, drafted: false });
      }
    }
    const done: DoneEvent = { reason, text: this.text, ids: this.ids.slice(), stats: this.stats() };
    if (this.promptLogprobs) done.promptLogprobs = this.promptLogprobs;
    if (this.wantsLogprobs) done.logprobs = this.tokenLogprobs.slice(0, this.ids.length);
    return done;
  }

  private step(e: NativeSequenceEvent): void {
    this.steps += 1;
    this.stepTokens += e.tokens.length;
    this.proposed += e.proposed;
    this.accepted += e.drafted;
    this.deviceSeconds += e.seconds;
    for (let i = 0; i < e.proposed; i++) {
      this.offered[i] = (this.offered[i] ?? 0) + 1;  // vLLM's definition: accepted_at_pos / drafts
      this.acceptedAt[i] = (this.acceptedAt[i] ?? 0) + (i < e.drafted ? 1 : 0);
    }
    this.stream.emit('step', {
      proposed: e.proposed,
      accepted: e.drafted,
      acceptedIds: Array.from(e.tokens),
      positionAcceptance: Array.from({ length: e.proposed }, (_, i) => i < e.drafted),
      block: e.block,
    });
    if (e.tokens.length > 0 && !this.firstAt) this.firstAt = performance.now();
    for (let i = 0; i < e.tokens.length && !this.stopped; i++) {
      const lp = e.logprobs ? { id: e.tokens[i], logprob: e.logprobs.logprobs[i], top: alternatives(e.logprobs, i) } : undefined;
      if (lp) this.tokenLogprobs.push(lp);
      this.commit(e.tokens[i], i < e.drafted, e.finish !== undefined && i === e.tokens.length - 1, lp);
    }
  }

  // One token: detokenize, look for stop strings, release what cannot be part of one.
  private commit(id: number, drafted: boolean, last: boolean, lp?: TokenLogprob & { top: TokenLogprob[] }): void {
    const extra = lp ? { logprob: lp.logprob, topLogprobs: lp.top } : {};
    this.ids.push(id);
    this.held += this.detok.push([id]);
    let release: string;
    if (this.maxStop > 0) {
      const hit = firstStop(this.held, this.stops);
      if (hit >= 0) {
        release = this.held.slice(0, hit);
        this.text += release;
        this.held = '';
        this.stream.pushToken({ id, text: release, drafted, ...extra });
        this.stopped = true;
        this.cancel();
        return;
      }
      const keep = Math.min(this.held.length, this.maxStop - 1);
      release = this.held.slice(0, this.held.length - keep);
      this.held = this.held.slice(this.held.length - keep);
    } else {
      release = this.held;
      this.held = '';
    }
    if (last) {
      // The final token carries everything still held back (a stop-string prefix, the bytes of
      // an incomplete character), so the streamed text always adds up to done.text.
      release += this.held + this.detok.flush();
      this.held = '';
    }
    this.text += release;
    this.stream.pushToken({ id, text: release, drafted, ...extra });
  }

  private stats(): GenerationStats {
    const end = performance.now();
    const wall = (end - this.startedAt) / 1000;
    const gen = this.ids.length;
    const decodeWall = this.firstAt ? (end - this.firstAt) / 1000 : 0;
    return {
      promptTokens: this.prompt.length,
      cachedTokens: this.cachedTokens,
      tokens: gen,
      steps: this.steps,
      meanAcceptanceLength: this.steps > 0 ? this.stepTokens / this.steps : 0,
      acceptanceRate: this.proposed > 0 ? this.accepted / this.proposed : 0,
      perPositionAcceptance: this.offered.map((n, i) => (n > 0 ? (this.acceptedAt[i] ?? 0) / n : 0)),  // 0: never offered
      ttft: this.firstAt ? (this.firstAt - this.startedAt) / 1000 : wall,
      tpot: gen > 1 ? decodeWall / (gen - 1) : 0,
      tokensPerSecond: wall > 0 ? gen / wall : 0,
      deviceSeconds: this.deviceSeconds,
      hostOverheadSeconds: Math.max(0, wall - this.deviceSeconds),
    };
  }
}

/** Token i's alternatives from a native log-probability block. */
function alternatives(lp: NativeLogprobs, i: number): TokenLogprob[] {
  const out: TokenLogprob[] = [];
  for (let t = 0; t < lp.top; t++) out.push({ id: lp.topIds[i * lp.top + t], logprob: lp.topLogprobs[i * lp.top + t] });
  return out;
}

function firstStop(text: string, stops: string[]): number {
  let best = -1;
  for (const s of stops) {
    if (!s) continue;
    const i = text.indexOf(s);
    if (i >= 0 && (best < 0 || i < best)) best = i;
  }
  return best;
}
