// The arguments of generate() and Engine.load(), checked once, here and in the native option
// schema (native/engine/options.cc: every number, with its range). This file checks what the
// schema cannot see: the prompt's shape, option names (a misspelt option is an error, not a
// default), stop strings, the signal, and the `speculative` object. Every error names the option
// or prompt element, the value received and what is accepted; nothing is coerced. Wrong types and
// unknown names are TypeErrors; values outside an option's range (the schema's errors) and bad
// token ids are RangeErrors.
import { Grammar, GrammarSpec, grammarSpec } from './grammar';
import { harmonyVocab, reasoningEffort, renderHarmony } from './harmony';
import { native } from './native';
import { ENGINE_OPTION_NAMES } from './options.generated';
import type { ChatMessage, Tokenizer } from './tokenizer';

export interface GenerateOptions {
  /** Tokens to generate at most (default 256). */
  maxTokens?: number;
  /** Sampling temperature; 0 (default) = greedy. */
  temperature?: number;
  topP?: number;
  topK?: number;
  /** Seed of the sampling draws; default: a random one. */
  seed?: number;
  /** Stop strings: generation ends before the first occurrence, which is never streamed. */
  stop?: string | string[];
  signal?: AbortSignal;
  /** Speculative decoding: on by default when a drafter is loaded; `false` forces plain decoding;
   *  `{ blockSize }` caps the block (the scheduler may still verify fewer tokens per step when
   *  adaptive speculation finds that faster). */
  speculative?: { blockSize?: number } | false;
  /** Log-probability of every generated token under the target's own distribution (log_softmax
   *  of its logits, before temperature / top-k / top-p), with this many most likely alternatives
   *  (0-20) at each position: token events and done.logprobs carry them. With speculation they
   *  come from the verify pass that accepted the token, equal to plain decoding's. */
  logprobs?: number;
  /** The same (0-20 alternatives) for every prompt token after the first: done.promptLogprobs
   *  (OpenAI's echo). The prompt is then computed whole (no prefix-cache reuse). */
  promptLogprobs?: number;
  /** Structured output: every token follows the grammar (a JSON Schema, any JSON object, a
   *  regular expression or a Lark grammar), drafted tokens included, so speculative output equals
   *  plain constrained output. The stream ends (reason 'eos') when the grammar is complete. An
   *  invalid grammar throws a RangeError (code INVALID_GRAMMAR) naming what is wrong. */
  grammar?: Grammar;
  /** Chat messages: more variables for the chat template, e.g. { enable_thinking: false } for
   *  Qwen3 / Qwen3.5 (thinking is on by default in their templates). */
  chatTemplateKwargs?: Record<string, unknown>;
}

const GENERATE_OPTIONS = ['maxTokens', 'temperature', 'topP', 'topK', 'seed', 'stop', 'signal', 'speculative', 'logprobs', 'promptLogprobs', 'grammar',
  'chatTemplateKwargs'] as const;
/** Engine.load's own options besides the native engine options. */
const LOAD_OPTIONS = ['target', 'drafter', 'plugin', 'cacheDir', 'onProgress', 'devices'] as const;

/** A value as an error message shows it: NaN as NaN (JSON.stringify would say null), strings quoted. */
export function describeValue(v: unknown): string {
  if (typeof v === 'string') return `'${v.length > 60 ? v.slice(0, 57) + '...' : v}'`;
  if (typeof v === 'number' || typeof v === 'boolean' || v === undefined || v === null) return String(v);
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'function') return 'a function';
  if (typeof v === 'symbol') return v.toString();
  try {
    const s = JSON.stringify(v);
    return s.length > 80 ? s.slice(0, 77) + '...' : s;
  } catch {
    return Object.prototype.toString.call(v);
  }
}

function unknownKeys(where: string, o: object, known: readonly string[]): void {
  for (const k of Object.keys(o))
    if (!known.includes(k)) throw new TypeError(`${where}: unknown option '${k}' (known: ${known.join(', ')})`);
}

/** Engine.load's options: the object, its keys, and the options lib/ handles itself. */
export function checkLoadOptions(opts: unknown): void {
  if (!opts || typeof opts !== 'object' || Array.isArray(opts))
    throw new TypeError('Engine.load(options): options must be an object with at least `target`');
  const o = opts as Record<string, unknown>;
  unknownKeys('Engine.load', o, [...new Set<string>([...LOAD_OPTIONS, ...ENGINE_OPTION_NAMES])]);
  if (typeof o.target !== 'string' || !o.target)
    throw new TypeError(`Engine.load: option 'target' must be a model directory or a .gguf file, got ${describeValue(o.target)}`);
  for (const key of ['drafter', 'plugin'] as const)
    if (o[key] !== undefined && (typeof o[key] !== 'string' || !o[key]))
      throw new TypeError(`Engine.load: option '${key}' must be a ${key === 'plugin' ? 'plugin file path' : 'model directory'}, got ${describeValue(o[key])}`);
  if (o.cacheDir !== undefined && o.cacheDir !== false && typeof o.cacheDir !== 'string')
    throw new TypeError(`Engine.load: option 'cacheDir' must be a directory path or false, got ${describeValue(o.cacheDir)}`);
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function')
    throw new TypeError(`Engine.load: option 'onProgress' must be a function, got ${describeValue(o.onProgress)}`);
  if (o.devices !== undefined) {
    if (!Array.isArray(o.devices) || o.devices.length === 0 || !o.devices.every((d) => Number.isSafeInteger(d) && d >= 0))
      throw new TypeError(`Engine.load: option 'devices' must be a non-empty array of device ids (integers >= 0), got ${describeValue(o.devices)}`);
    const seen = new Set<number>();
    for (const d of o.devices as number[]) {
      if (seen.has(d)) throw new RangeError(`Engine.load: option 'devices' lists device ${d} twice`);
      seen.add(d);
    }
  }
}

/** generate()'s options as the native request options (checked by the schema), plus stop strings. */
export function requestOptions(o: unknown, hasDrafter: boolean): { request: Record<string, unknown>; stops: string[]; grammar?: GrammarSpec } {
  if (o === null || typeof o !== 'object' || Array.isArray(o)) throw new TypeError(`generate: options must be an object, got ${describeValue(o)}`);
  const opts = o as GenerateOptions;
  unknownKeys('generate', opts, GENERATE_OPTIONS);
  const spec = opts.speculative as unknown;
  if (spec !== undefined && spec !== false) {
    if (spec === null || typeof spec !== 'object' || Array.isArray(spec))
      throw new TypeError(`generate: option 'speculative' must be false or { blockSize }, got ${describeValue(spec)}`);
    unknownKeys("generate: option 'speculative'", spec, ['blockSize']);
    if (!hasDrafter) throw new Error('speculative decoding needs a drafter: pass `drafter` to Engine.load()');
  }
  const signal = opts.signal as unknown;
  if (signal !== undefined && !isAbortSignal(signal))
    throw new TypeError(`generate: option 'signal' must be an AbortSignal, got ${describeValue(signal)}`);
  const request: Record<string, unknown> = {
    maxTokens: opts.maxTokens, temperature: opts.temperature, topP: opts.topP, topK: opts.topK,
    seed: opts.seed ?? Math.floor(Math.random() * 2 ** 31),
    blockSize: spec === false ? 1 : spec ? (spec as { blockSize?: unknown }).blockSize : undefined,
    logprobs: opts.logprobs, promptLogprobs: opts.promptLogprobs,
  };
  native().validateRequestOptions(request);  // the schema's message: option, value, range
  return { request, stops: stopList(opts.stop), grammar: grammarSpec(opts.grammar) };
}

function isAbortSignal(v: unknown): v is AbortSignal {
  const s = v as AbortSignal | null;
  return typeof s === 'object' && s !== null && typeof s.aborted === 'boolean' && typeof s.addEventListener === 'function';
}

function stopList(stop: unknown): string[] {
  if (stop === undefined) return [];
  const list = Array.isArray(stop) ? stop : [stop];
  list.forEach((s, i) => {
    if (typeof s !== 'string')
      throw new TypeError(`generate: option 'stop' must be a string or an array of strings, got ${describeValue(Array.isArray(stop) ? s : stop)}` +
        (Array.isArray(stop) ? ` at index ${i}` : ''));
  });
  return list as string[];
}

const PROMPT_KINDS = 'a string, an array of token ids or an array of { role, content } chat messages';

/**
 * The prompt as token ids: a string is encoded, chat messages go through the chat template, token
 * ids are checked one by one (non-negative integers that fit int32; the scheduler checks the
 * vocabulary). Throws a TypeError / RangeError naming the element and its value.
 */
export function promptTokens(prompt: unknown, tokenizer: Tokenizer, templateKwargs?: Record<string, unknown>): Int32Array {
  if (typeof prompt === 'string') return toInt32(tokenizer.encode(prompt));
  if (ArrayBuffer.isView(prompt) && !(prompt instanceof DataView)) return toInt32(Array.from(prompt as unknown as ArrayLike<number>));
  if (!Array.isArray(prompt)) throw new TypeError(`generate: the prompt must be ${PROMPT_KINDS}, got ${describeValue(prompt)}`);
  if (prompt.length > 0 && typeof prompt[0] === 'object' && prompt[0] !== null) {
    prompt.forEach(checkMessage);
    // gpt-oss: the harmony format (lib/harmony.ts), as the server renders it.
    if (harmonyVocab(tokenizer)) {
      const effort = reasoningEffort(templateKwargs?.reasoning_effort, 'generate: chatTemplateKwargs.reasoning_effort');
      return toInt32(tokenizer.encode(renderHarmony(prompt as ChatMessage[], { reasoningEffort: effort }), { addSpecialTokens: false }));
    }
    return toInt32(tokenizer.encode(tokenizer.applyChatTemplate(prompt as ChatMessage[], templateKwargs ? { extra: templateKwargs } : undefined)));
  }
  return toInt32(prompt);
}

function checkMessage(m: unknown, i: number): void {
  const msg = m as Partial<ChatMessage> | null;
  const ok = typeof msg === 'object' && msg !== null && !Array.isArray(msg) && typeof msg.role === 'string' && msg.role !== '' &&
    (typeof msg.content === 'string' || ((msg.content === null || msg.content === undefined) && Array.isArray(msg.tool_calls)));
  if (!ok)
    throw new TypeError(`generate: chat message ${i} must be an object with a string 'role' and a string 'content', got ${describeValue(m)}`);
}

function toInt32(ids: readonly unknown[]): Int32Array {
  const out = new Int32Array(ids.length);
  for (let i = 0; i < ids.length; i++) {
    const t = ids[i];
    if (typeof t !== 'number' || !Number.isInteger(t) || t < 0 || t > 0x7fffffff)
      throw new RangeError(`prompt token at index ${i} must be a non-negative integer token id, got ${describeValue(t)} (a prompt is ${PROMPT_KINDS})`);
    out[i] = t;
  }
  return out;
}
