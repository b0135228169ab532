// The OpenAI wire format: the error shape ({ error: { message, type, param, code } }) with its
// HTTP status, and the response / stream-chunk objects of chat completions and completions,
// each carrying dflash's stats extension (`dflash`, documented in docs/SERVE.md).
import { randomUUID } from 'crypto';

import type { GenerationStats, StopReason } from '../stream';

export class OpenAIError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'OpenAIError';
  }

  body() {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export const badRequest = (message: string, param: string | null = null, code: string | null = null) =>
  new OpenAIError(400, message, 'invalid_request_error', param, code);

/** Rejects a parameter the server knows but cannot honour, instead of silently ignoring it. */
export function unsupportedParameter(body: Record<string, unknown>): OpenAIError | undefined {
  const set = (k: string) => body[k] !== undefined && body[k] !== null;
  const checks: Array<[string, boolean, string]> = [
    ['presence_penalty', set('presence_penalty') && body.presence_penalty !== 0, 'penalties are not supported'],
    ['frequency_penalty', set('frequency_penalty') && body.frequency_penalty !== 0, 'penalties are not supported'],
    ['logit_bias', set('logit_bias') && Object.keys(body.logit_bias as object).length > 0, 'logit_bias is not supported'],
    ['logprobs', set('logprobs') && body.logprobs !== false && body.logprobs !== 0, 'logprobs are not supported'],
    ['top_logprobs', set('top_logprobs') && body.top_logprobs !== 0, 'logprobs are not supported'],
    ['tools', set('tools') && (body.tools as unknown[]).length > 0, 'tool calling is not supported'],
    ['response_format', set('response_format') && (body.response_format as { type?: string }).type !== 'text', 'structured output is not supported'],
    ['best_of', set('best_of') && body.best_of !== 1, 'best_of > 1 is not supported: one request generates one choice'],
    ['echo', body.echo === true, 'echo is not supported'],
    ['suffix', set('suffix') && body.suffix !== '', 'suffix (insertion) is not supported'],
  ];
  for (const [param, bad, why] of checks) if (bad) return badRequest(`Unsupported parameter '${param}': ${why} by this server.`, param, 'unsupported_parameter');
  return undefined;
}

export type FinishReason = 'stop' | 'length' | 'abort';

/** eos and stop strings both end with `stop`; `abort` (a shutdown's deadline) follows vLLM. */
export function finishReason(r: StopReason): FinishReason {
  return r === 'maxTokens' ? 'length' : r === 'abort' ? 'abort' : 'stop';
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** OpenAI's shape: prompt tokens served from the prefix cache (KV pages computed before). */
  prompt_tokens_details: { cached_tokens: number };
}

export const usage = (prompt: number, completion: number, cached = 0): Usage =>
  ({ prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion, prompt_tokens_details: { cached_tokens: cached } });

/** The `dflash` extension field: how speculative decoding went for this one generation. */
export interface DflashExtension {
  speculative: boolean;
  /** Generated tokens per target forward pass (τ); 1 for plain decoding. */
  mean_acceptance_length: number;
  /** Accepted / proposed drafted tokens (0 for plain decoding). */
  acceptance_rate: number;
  /** Fraction of steps in which draft position i + 1 was accepted. */
  per_position_acceptance: number[];
  /** Target forward passes after prefill. */
  steps: number;
  /** Milliseconds spent waiting for a free sequence slot. */
  queue_ms: number;
  /** Milliseconds from the request's arrival to its first token (queue wait included). */
  ttft_ms: number;
  /** Milliseconds per output token after the first. */
  tpot_ms: number;
}

const round = (x: number, digits = 3) => Number(x.toFixed(digits));

export function dflashExtension(stats: GenerationStats, speculative: boolean, timing: { queueMs: number; ttftMs: number; tpotMs: number }): DflashExtension {
  return {
    speculative,
    mean_acceptance_length: round(stats.steps > 0 ? stats.meanAcceptanceLength : 1, 4),
    acceptance_rate: round(stats.acceptanceRate, 4),
    per_position_acceptance: stats.perPositionAcceptance.map((p) => round(p, 4)),
    steps: stats.steps,
    queue_ms: round(timing.queueMs),
    ttft_ms: round(timing.ttftMs),
    tpot_ms: round(timing.tpotMs),
  };
}

/** Builds the objects of one endpoint for one request (same id and timestamp throughout). */
export interface ResponseShaper {
  /** The whole response of a non-streaming request. */
  full(text: string, finish: FinishReason, u: Usage, dflash: DflashExtension): object;
  /** Chunks sent before the first text (chat: the assistant role). */
  opening(): object[];
  chunk(text: string): object;
  /** The chunk that ends the choice, with its finish reason and the dflash extension. */
  closing(finish: FinishReason, dflash: DflashExtension): object;
  /** The extra chunk of `stream_options.include_usage` (no choices). */
  usageChunk(u: Usage): object;
}

export function chatShaper(model: string, includeUsage: boolean): ResponseShaper {
  const id = `chatcmpl-${randomUUID()}`;
  const created = Math.floor(Date.now() / 1000);
  const head = { id, object: 'chat.completion.chunk', created, model };
  // With include_usage every chunk carries `usage: null` except the last, as OpenAI does.
  const u = includeUsage ? { usage: null } : {};
  const choice = (delta: object, finish: FinishReason | null) => ({ index: 0, delta, logprobs: null, finish_reason: finish });
  return {
    full: (text, finish, usage, dflash) => ({
      id, object: 'chat.completion', created, model,
      choices: [{ index: 0, message: { role: 'assistant', content: text }, logprobs: null, finish_reason: finish }],
      usage, dflash,
    }),
    opening: () => [{ ...head, choices: [choice({ role: 'assistant', content: '' }, null)], ...u }],
    chunk: (text) => ({ ...head, choices: [choice({ content: text }, null)], ...u }),
    closing: (finish, dflash) => ({ ...head, choices: [choice({}, finish)], ...u, dflash }),
    usageChunk: (usage) => ({ ...head, choices: [], usage }),
  };
}

export function completionShaper(model: string, includeUsage: boolean): ResponseShaper {
  const id = `cmpl-${randomUUID()}`;
  const created = Math.floor(Date.now() / 1000);
  const head = { id, object: 'text_completion', created, model };
  const u = includeUsage ? { usage: null } : {};
  const choice = (text: string, finish: FinishReason | null) => ({ index: 0, text, logprobs: null, finish_reason: finish });
  return {
    full: (text, finish, usage, dflash) => ({ ...head, choices: [choice(text, finish)], usage, dflash }),
    opening: () => [],
    chunk: (text) => ({ ...head, choices: [choice(text, null)], ...u }),
    closing: (finish, dflash) => ({ ...head, choices: [choice('', finish)], ...u, dflash }),
    usageChunk: (usage) => ({ ...head, choices: [], usage }),
  };
}
