// The OpenAI wire format: the error shape ({ error: { message, type, param, code } }) with its
// HTTP status, and the response / stream-chunk objects of chat completions and completions,
// each carrying dflash's stats extension (`dflash`, documented in docs/SERVE.md).
import { randomUUID } from 'crypto';

import type { GenerationStats, StopReason } from '../stream';
import type { ToolCall } from './tools';

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
    ['best_of', set('best_of') && body.best_of !== (body.n ?? 1), 'best_of other than n is not supported (each choice is one generation)'],
    ['suffix', set('suffix') && body.suffix !== '', 'suffix (insertion) is not supported'],
  ];
  for (const [param, bad, why] of checks) if (bad) return badRequest(`Unsupported parameter '${param}': ${why} by this server.`, param, 'unsupported_parameter');
  return undefined;
}

export type FinishReason = 'stop' | 'length' | 'abort' | 'tool_calls';

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

/** One finished choice of a non-streaming response. */
export interface FullChoice {
  index: number;
  text: string;
  finish: FinishReason;
  /** The endpoint's logprobs object (chat: the content list; completions: the legacy object), or null. */
  logprobs: unknown;
  /** Chat with tools: the calls parsed from the output (text is then the content around them). */
  toolCalls?: ToolCall[];
  /** A thinking model's reasoning (text is then the answer after it); undefined: not split. */
  reasoning?: string;
}

/** Builds the objects of one endpoint for one request (same id and timestamp throughout); with
 *  n > 1 every chunk names its choice's index. */
export interface ResponseShaper {
  /** The whole response of a non-streaming request. */
  full(choices: FullChoice[], u: Usage, dflash: DflashExtension): object;
  /** Chunks sent before the first text (chat: the assistant role of every choice). */
  opening(n: number): object[];
  chunk(index: number, text: string, logprobs?: unknown): object;
  /** Chat with a thinking model: a piece of the reasoning (delta.reasoning_content). */
  reasoning?(index: number, text: string, logprobs?: unknown): object;
  /** Chat: one complete tool call of a choice (delta.tool_calls), the call-th of the choice. */
  toolCall?(index: number, call: number, toolCall: ToolCall): object;
  /** The chunk that ends a choice, with its finish reason and the dflash extension. */
  closing(index: number, finish: FinishReason, dflash: DflashExtension): object;
  /** The extra chunk of `stream_options.include_usage` (no choices). */
  usageChunk(u: Usage): object;
}

export function chatShaper(model: string, includeUsage: boolean): ResponseShaper {
  const id = `chatcmpl-${randomUUID()}`;
  const created = Math.floor(Date.now() / 1000);
  const head = { id, object: 'chat.completion.chunk', created, model };
  // With include_usage every chunk carries `usage: null` except the last, as OpenAI does.
  const u = includeUsage ? { usage: null } : {};
  const lp = (content: unknown) => (content === undefined || content === null ? null : { content, refusal: null });
  const choice = (index: number, delta: object, finish: FinishReason | null, logprobs: unknown = null) =>
    ({ index, delta, logprobs: lp(logprobs), finish_reason: finish });
  return {
    full: (choices, usage, dflash) => ({
      id, object: 'chat.completion', created, model,
      choices: choices.map((c) => ({
        index: c.index,
        message: {
          ...(c.toolCalls?.length ? { role: 'assistant', content: c.text.trim() || null, tool_calls: c.toolCalls } : { role: 'assistant', content: c.text }),
          ...(c.reasoning !== undefined ? { reasoning_content: c.reasoning || null } : {}),
        },
        logprobs: lp(c.logprobs), finish_reason: c.finish,
      })),
      usage, dflash,
    }),
    opening: (n) => Array.from({ length: n }, (_, i) => ({ ...head, choices: [choice(i, { role: 'assistant', content: '' }, null)], ...u })),
    chunk: (index, text, logprobs) => ({ ...head, choices: [choice(index, { content: text }, null, logprobs)], ...u }),
    reasoning: (index, text, logprobs) => ({ ...head, choices: [choice(index, { reasoning_content: text }, null, logprobs)], ...u }),
    toolCall: (index, call, tc) => ({ ...head, choices: [choice(index, { tool_calls: [{ index: call, ...tc }] }, null)], ...u }),
    closing: (index, finish, dflash) => ({ ...head, choices: [choice(index, {}, finish)], ...u, dflash }),
    usageChunk: (usage) => ({ ...head, choices: [], usage }),
  };
}

export function completionShaper(model: string, includeUsage: boolean): ResponseShaper {
  const id = `cmpl-${randomUUID()}`;
  const created = Math.floor(Date.now() / 1000);
  const head = { id, object: 'text_completion', created, model };
  const u = includeUsage ? { usage: null } : {};
  const choice = (index: number, text: string, finish: FinishReason | null, logprobs: unknown = null) =>
    ({ index, text, logprobs: logprobs ?? null, finish_reason: finish });
  return {
    full: (choices, usage, dflash) => ({ ...head, choices: choices.map((c) => choice(c.index, c.text, c.finish, c.logprobs)), usage, dflash }),
    opening: () => [],
    chunk: (index, text, logprobs) => ({ ...head, choices: [choice(index, text, null, logprobs)], ...u }),
    closing: (index, finish, dflash) => ({ ...head, choices: [choice(index, '', finish)], ...u, dflash }),
    usageChunk: (usage) => ({ ...head, choices: [], usage }),
  };
}
