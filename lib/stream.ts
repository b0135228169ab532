// GenerationStream: the object generate() returns. An EventEmitter typed with typed-emitter
// (events token / step / done / error) that is also async-iterable over its tokens. It drives one
// engine sequence: prefill, then steps until EOS, a stop string, maxTokens or abort, and always
// frees the sequence's pages at the end, whatever ends it.
import { EventEmitter } from 'events';
import type TypedEmitter from 'typed-emitter';

export interface TokenEvent {
  /** The token id; -1 marks a text-only event that releases held-back text when generation
   *  ends on EOS or abort (so the token texts always add up to done.text). */
  id: number;
  /** Text released by this token (may be empty while a stop string or UTF-8 character is pending). */
  text: string;
  /** True when the token was proposed by the drafter and accepted by the target. */
  drafted: boolean;
  /** With generate({ logprobs }): the token's log-probability under the target's own
   *  distribution (log_softmax of its logits), and the `logprobs` most likely tokens there. */
  logprob?: number;
  topLogprobs?: TokenLogprob[];
}

/** A token id and its log-probability. */
export interface TokenLogprob {
  id: number;
  logprob: number;
}

/** A prompt token's log-probability given the tokens before it, and the most likely tokens there. */
export interface PromptLogprob extends TokenLogprob {
  top: TokenLogprob[];
}

export interface StepEvent {
  /** Drafted tokens offered to the target in this step (block size - 1; 0 without a drafter). */
  proposed: number;
  /** Of those, how many the target accepted. */
  accepted: number;
  /** All tokens this step committed: the accepted drafts then the target's own (bonus) token. */
  acceptedIds: number[];
  /** positionAcceptance[i] is true when draft position i + 1 was accepted. */
  positionAcceptance: boolean[];
  /** Tokens this step verified (the block the scheduler chose; 1 = a plain decoding step). */
  block: number;
}

export type StopReason = 'eos' | 'stop' | 'maxTokens' | 'abort';

export interface GenerationStats {
  promptTokens: number;
  /** Prompt tokens whose KV pages were found in the prefix cache (not computed again). */
  cachedTokens: number;
  tokens: number;
  /** Verify steps (target forwards after prefill, speculative or plain) this sequence took part in. */
  steps: number;
  /** Mean acceptance length τ: generated tokens per verify step (the bonus token included). */
  meanAcceptanceLength: number;
  /** Accepted drafts / proposed drafts (0 without a drafter). */
  acceptanceRate: number;
  /** perPositionAcceptance[i]: of the steps that offered draft position i + 1, the fraction that
   *  accepted it (vLLM's per-position acceptance rate); block size - 1 entries, 0 where never
   *  offered. */
  perPositionAcceptance: number[];
  /** Seconds from generate() to the first token. */
  ttft: number;
  /** Seconds per output token after the first. */
  tpot: number;
  tokensPerSecond: number;
  /** Device seconds of the iterations this sequence took part in (shared with the other
   *  sequences of each batch). */
  deviceSeconds: number;
  /** Wall seconds of the decode loop minus device seconds: what the host added. */
  hostOverheadSeconds: number;
}

export interface DoneEvent {
  reason: StopReason;
  text: string;
  ids: number[];
  stats: GenerationStats;
  /** With generate({ promptLogprobs }): one entry per prompt token, null for the first (nothing
   *  predicts it). */
  promptLogprobs?: Array<PromptLogprob | null>;
  /** With generate({ logprobs }): per token of `ids`, its log-probability and alternatives. */
  logprobs?: Array<TokenLogprob & { top: TokenLogprob[] }>;
}

export type GenerationEvents = {
  token: (e: TokenEvent) => void;
  step: (e: StepEvent) => void;
  done: (e: DoneEvent) => void;
  error: (e: Error) => void;
};

export class AbortError extends Error {
  readonly code = 'ABORT_ERR';
  constructor(message = 'generation aborted') {
    super(message);
    this.name = 'AbortError';
  }
}

export class GenerationStream
  extends (EventEmitter as new () => TypedEmitter<GenerationEvents>)
  implements AsyncIterable<TokenEvent>
{
  private readonly queue: TokenEvent[] = [];
  private waiters: Array<() => void> = [];
  private finished = false;
  private failure: Error | undefined;
  private result: DoneEvent | undefined;
  private readonly controller = new AbortController();
  /** Resolves with the done event (or rejects with the error) — `await stream.done()`. */
  private readonly settled: Promise<DoneEvent>;

  constructor(run: (stream: GenerationStream, signal: AbortSignal) => Promise<DoneEvent>, signal?: AbortSignal) {
    super();
    if (signal) {
      if (signal.aborted) this.controller.abort();
      else signal.addEventListener('abort', () => this.controller.abort(), { once: true });
    }
    this.settled = new Promise<DoneEvent>((resolve, reject) => {
      // Start on the next tick so callers can attach listeners first.
      setImmediate(() => {
        run(this, this.controller.signal).then(
          (done) => {
            this.result = done;
            this.finish();
            this.emit('done', done);
            resolve(done);
          },
          (err: Error) => {
            this.failure = err;
            this.finish();
            // Emit 'error' only when someone listens: an unhandled 'error' event would throw.
            if (this.listenerCount('error') > 0) this.emit('error', err);
            reject(err);
          },
        );
      });
    });
    this.settled.catch(() => undefined); // the rejection is delivered via done()/iteration/'error'
  }

  /** Waits for the end of generation: resolves with the done event. */
  done(): Promise<DoneEvent> {
    return this.settled;
  }

  /** Stops generation; the stream ends with reason 'abort' and the sequence's pages are freed. */
  abort(): void {
    this.controller.abort();
  }

  /** @internal called by the generation loop. */
  pushToken(e: TokenEvent): void {
    this.queue.push(e);
    this.emit('token', e);
    this.wake();
  }

  private finish(): void {
    this.finished = true;
    this.wake();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<TokenEvent> {
    try {
      for (;;) {
        if (this.queue.length > 0) {
          yield this.queue.shift() as TokenEvent;
          continue;
        }
        if (this.finished) break;
        await new Promise<void>((r) => this.waiters.push(r));
      }
      if (this.failure) throw this.failure;
    } finally {
      // Leaving the loop early (break/return/throw) cancels the generation.
      if (!this.finished) this.abort();
    }
  }

  /** The done event, once generation has ended. */
  get final(): DoneEvent | undefined {
    return this.result;
  }
}
