// One completion request from body to response, shared by /v1/chat/completions and
// /v1/completions: prompt -> token ids, parameter checks against the model (context length,
// vocabulary, speculative options), admission (running slot, bounded queue, 429), then one
// engine generation sent whole or as SSE chunks. The generation is aborted when the client goes
// away (the response's 'close' before it finished) or when a shutdown's deadline passes.
import type { FastifyReply, FastifyRequest } from 'fastify';

import type { Engine, GenerateOptions } from '../engine';
import { AbortError, DoneEvent, GenerationStream } from '../stream';
import type { ChatMessage } from '../tokenizer';
import type { Admission } from './admission';
import type { AbortCause, ServerMetrics } from './metrics';
import {
  badRequest, chatShaper, completionShaper, dflashExtension, finishReason, OpenAIError, ResponseShaper,
  unsupportedParameter, usage,
} from './openai';
import type { ChatCompletionBody, CompletionBody } from './schemas';

/** What a request needs from the server around it. */
export interface RequestContext {
  engine: Engine;
  admission: Admission;
  metrics: ServerMetrics;
  modelName: string;
  /** Longest prompt + completion, in tokens. */
  maxContext: number;
  /** Sampling used when a request leaves it out (the model's generation_config.json, else OpenAI's). */
  defaults: { temperature: number; topP: number; topK: number };
  /** Registers a running request so shutdown can abort it; returns the unregister function. */
  track(abort: (cause: AbortCause) => void, settled: Promise<unknown>): () => void;
}

export const queueFull = (why: string) =>
  new OpenAIError(429, `The server is busy: ${why}. Retry later.`, 'rate_limit_error', null, 'queue_full', { 'retry-after': '1' });

function checkModel(ctx: RequestContext, body: { model: string }): void {
  if (body.model !== ctx.modelName)
    throw badRequest(`The model '${body.model}' does not exist; this server serves '${ctx.modelName}'.`, 'model', 'model_not_found');
}

export async function handleChat(ctx: RequestContext, req: FastifyRequest<{ Body: ChatCompletionBody }>, reply: FastifyReply) {
  const body = req.body;
  checkModel(ctx, body);
  const messages = body.messages.map((m, i): ChatMessage => ({ role: m.role, content: messageText(m.content, i) }));
  let ids: number[];
  try {
    ids = ctx.engine.tokenizer.encodeChat(messages);
  } catch (e) {
    throw badRequest(`The chat template rejected the messages: ${(e as Error).message}`, 'messages');
  }
  const maxTokens = body.max_completion_tokens ?? body.max_tokens ?? undefined;
  return handle(ctx, req, reply, body, ids, maxTokens, chatShaper(body.model, body.stream_options?.include_usage === true));
}

export async function handleCompletion(ctx: RequestContext, req: FastifyRequest<{ Body: CompletionBody }>, reply: FastifyReply) {
  const body = req.body;
  checkModel(ctx, body);
  let prompt = body.prompt;
  if (Array.isArray(prompt) && typeof prompt[0] !== 'number') {
    if (prompt.length !== 1) throw badRequest(`Only one prompt per request is supported, got ${prompt.length}.`, 'prompt');
    prompt = (prompt as string[] | number[][])[0];
  }
  const ids = typeof prompt === 'string' ? ctx.engine.tokenizer.encode(prompt) : (prompt as number[]);
  const vocab = ctx.engine.config.target.vocabSize;
  const outside = ids.find((id) => id >= vocab);
  if (outside !== undefined) throw badRequest(`Token id ${outside} in 'prompt' is outside the vocabulary (0..${vocab - 1}).`, 'prompt');
  return handle(ctx, req, reply, body, ids, body.max_tokens ?? undefined, completionShaper(body.model, body.stream_options?.include_usage === true));
}

function messageText(content: ChatCompletionBody['messages'][number]['content'], index: number): string {
  if (content === undefined || content === null) return '';
  if (typeof content === 'string') return content;
  return content.map((part, j) => {
    if (part.type !== 'text' || typeof part.text !== 'string')
      throw badRequest(`Only text content parts are supported, got type '${part.type}'.`, `messages[${index}].content[${j}]`);
    return part.text;
  }).join('');
}

/** The engine options of a request, or a 400 naming the offending parameter. */
function generateOptions(ctx: RequestContext, body: ChatCompletionBody | CompletionBody, promptTokens: number, requested: number | undefined) {
  const unsupported = unsupportedParameter(body);
  if (unsupported) throw unsupported;
  if (promptTokens === 0) throw badRequest('The prompt is empty: at least one token is needed.', 'prompt');
  const room = ctx.maxContext - promptTokens;
  const maxTokens = requested ?? room;
  if (maxTokens < 1 || promptTokens + maxTokens > ctx.maxContext)
    throw badRequest(
      `This model's context is ${ctx.maxContext} tokens, but the request needs ${promptTokens + Math.max(1, maxTokens)} ` +
      `(${promptTokens} of prompt + ${Math.max(1, maxTokens)} to generate). Shorten the prompt or lower max_tokens.`,
      'messages' in body ? 'messages' : 'prompt', 'context_length_exceeded');
  const drafter = ctx.engine.config.drafter;
  const ext = body.dflash ?? {};
  if (ext.speculative === true && !drafter)
    throw badRequest('dflash.speculative is true but the server was started without a drafter (--drafter).', 'dflash.speculative');
  const speculative = ext.speculative !== false && drafter !== undefined;
  if (ext.block_size !== undefined && (!speculative || ext.block_size > drafter!.blockSize))
    throw badRequest(`dflash.block_size must be in 2..${drafter?.blockSize ?? '(no drafter)'} with speculative decoding, got ${ext.block_size}.`, 'dflash.block_size');
  const options: GenerateOptions = {
    maxTokens,
    temperature: body.temperature ?? ctx.defaults.temperature,
    topP: body.top_p ?? ctx.defaults.topP,
    topK: body.top_k === undefined || body.top_k === null ? ctx.defaults.topK : Math.max(0, body.top_k),
    seed: body.seed ?? undefined,
    stop: body.stop ?? undefined,
    speculative: speculative ? (ext.block_size ? { blockSize: ext.block_size } : undefined) : false,
  };
  return { options, speculative };
}

async function handle(ctx: RequestContext, req: FastifyRequest, reply: FastifyReply, body: ChatCompletionBody | CompletionBody,
  ids: number[], requestedTokens: number | undefined, shaper: ResponseShaper) {
  const arrived = performance.now() - reply.elapsedTime; // when the request's first byte came in
  const { options, speculative } = generateOptions(ctx, body, ids.length, requestedTokens);

  // The client leaving (the response closing before it was finished) or a shutdown's deadline
  // aborts this request wherever it is: waiting in the queue or generating.
  const controller = new AbortController();
  let abortCause: AbortCause | undefined;
  const abort = (cause: AbortCause) => {
    if (abortCause) return;
    abortCause = cause;
    controller.abort(new AbortError(`request aborted: ${cause}`));
  };
  reply.raw.on('close', () => { if (!reply.raw.writableFinished) abort('client_disconnect'); });

  const ticket = ctx.admission.tryEnter(controller.signal);
  if (!ticket) throw queueFull(`${ctx.admission.maxRunning} sequences are running and ${ctx.admission.maxQueued} requests are queued`);
  let settle!: () => void;
  const untrack = ctx.track(abort, new Promise<void>((r) => (settle = r)));
  try {
    try {
      await ticket.ready;
    } catch {
      return answerAborted(ctx, reply, abortCause ?? 'client_disconnect', true);
    }
    const queueMs = performance.now() - arrived;
    let stream: GenerationStream;
    try {
      stream = ctx.engine.generate(ids, { ...options, signal: controller.signal });
    } catch (e) {
      throw engineError(e);
    }
    const timing = new TokenTiming(arrived);
    stream.on('token', (t) => { if (t.id >= 0) timing.token(); });
    const outcome = body.stream === true
      ? await sendStream(reply, stream, shaper, () => abortCause, () => abort('client_disconnect'))
      : await sendWhole(stream, () => abortCause);
    const { done, streamed } = outcome;
    if (!done) {
      if (streamed) return undefined; // an engine failure, already reported in the stream
      return answerAborted(ctx, reply, abortCause ?? 'client_disconnect', true);
    }
    const fr = finishReason(done.reason);
    ctx.metrics.generation({ stats: done.stats, speculative, finishReason: fr, ttft: timing.ttft(), tpot: timing.tpot() });
    if (abortCause) ctx.metrics.abortedRequest(abortCause);
    const ext = dflashExtension(done.stats, speculative, { queueMs, ttftMs: (timing.ttft() ?? 0) * 1000, tpotMs: (timing.tpot() ?? 0) * 1000 });
    const u = usage(ids.length, done.ids.length, done.stats.cachedTokens);
    if (streamed) return await finishStream(reply, shaper, fr, ext, u, body.stream_options?.include_usage === true);
    if (abortCause === 'client_disconnect') return answerAborted(ctx, reply, abortCause, false);
    return shaper.full(done.text, fr, u, ext);
  } catch (e) {
    // After the stream started, nothing can be sent as an HTTP error any more.
    if (!reply.sent) throw e;
    req.log.error({ err: e }, 'streaming response failed');
    reply.raw.destroy();
    return undefined;
  } finally {
    ticket.release();
    untrack();
    settle();
  }
}

/** Arrival-to-first-token and per-token times, as the client sees them (queue wait included). */
class TokenTiming {
  private first?: number;
  private last?: number;
  private count = 0;
  constructor(private readonly arrived: number) {}
  token(): void {
    const now = performance.now();
    this.first ??= now;
    this.last = now;
    this.count += 1;
  }
  ttft(): number | undefined {
    return this.first === undefined ? undefined : (this.first - this.arrived) / 1000;
  }
  tpot(): number | undefined {
    return this.count > 1 ? (this.last! - this.first!) / 1000 / (this.count - 1) : undefined;
  }
}

async function sendWhole(stream: GenerationStream, cause: () => AbortCause | undefined): Promise<{ done?: DoneEvent; streamed: false }> {
  try {
    return { done: await stream.done(), streamed: false };
  } catch (e) {
    if (cause() && e instanceof AbortError) return { done: undefined, streamed: false };
    throw engineError(e);
  }
}

/** Writes SSE chunks; the first write commits the response as a stream (status 200). */
class ChunkWriter {
  started = false;
  constructor(private readonly reply: FastifyReply, private readonly shaper: ResponseShaper) {}

  async write(chunk: object | string): Promise<void> {
    if (!this.started) {
      this.started = true;
      this.reply.hijack(); // from here on the SSE plugin owns the response; Fastify must not send it
      for (const c of this.shaper.opening()) await this.reply.sse.send({ data: c });
    }
    await this.reply.sse.send(typeof chunk === 'string' ? chunk : { data: chunk });
  }
}

/** Streams token texts as SSE chunks. Headers are committed with the first text, so an engine
 *  error before it (QUEUE_FULL, a rejected prompt) still becomes a proper HTTP status. */
async function sendStream(reply: FastifyReply, stream: GenerationStream, shaper: ResponseShaper,
  cause: () => AbortCause | undefined, clientGone: () => void) {
  const out = new ChunkWriter(reply, shaper);
  let failure: unknown;
  try {
    for await (const t of stream) if (t.text) await out.write(shaper.chunk(t.text));
  } catch (e) {
    // Leaving the loop aborts the generation: either the connection closed under a write, or
    // the engine failed (then done() rejects too).
    failure = e;
    if (!reply.sse.isConnected) clientGone();
  }
  const done = await stream.done().catch(() => undefined);
  if (!done) {
    if (cause() || !failure) return { done, streamed: out.started };
    const err = engineError(failure);
    if (!out.started) throw err;
    // Already streaming: report the failure in the stream, as OpenAI does.
    await out.write(err.body()).then(() => out.write('[DONE]')).catch(() => undefined);
    return { done: undefined, streamed: true };
  }
  // Nothing was generated as text (e.g. EOS at once): the stream still opens and closes.
  if (!out.started && cause() !== 'client_disconnect') await out.write(shaper.chunk('')).catch(() => undefined);
  return { done, streamed: out.started };
}

async function finishStream(reply: FastifyReply, shaper: ResponseShaper, fr: ReturnType<typeof finishReason>,
  ext: ReturnType<typeof dflashExtension>, u: ReturnType<typeof usage>, includeUsage: boolean) {
  if (!reply.sse.isConnected) return;
  try {
    await reply.sse.send({ data: shaper.closing(fr, ext) });
    if (includeUsage) await reply.sse.send({ data: shaper.usageChunk(u) });
    await reply.sse.send('[DONE]');
  } catch {
    // the client left during the last chunks: nothing more to do
  }
  reply.sse.close();
}

/** A request that ends without a response to send: its client left (nobody to answer; the
 *  connection is closed), or a shutdown's deadline passed while it was still queued (503). */
function answerAborted(ctx: RequestContext, reply: FastifyReply, cause: AbortCause, count: boolean) {
  if (count) ctx.metrics.abortedRequest(cause);
  if (cause === 'shutdown') throw new OpenAIError(503, 'The server shut down before this request started.', 'server_error', null, 'shutting_down');
  reply.hijack();
  if (!reply.raw.destroyed) reply.raw.destroy();
  return undefined;
}

/** Engine failures as OpenAI errors: a full engine queue is 429, a rejected input 400. */
export function engineError(e: unknown): OpenAIError {
  if (e instanceof OpenAIError) return e;
  const err = e as Error & { code?: string };
  if (err?.code === 'QUEUE_FULL') return queueFull('the engine queue is full');
  const message = err?.message ?? String(e);
  if (e instanceof RangeError || /exceeds maxSeqLen|outside the vocabulary|prompt is empty|must be/.test(message))
    return badRequest(message);
  if (/KV cache exhausted/.test(message))
    return new OpenAIError(503, `The server is out of KV-cache memory: ${message}`, 'server_error', null, 'kv_cache_exhausted', { 'retry-after': '1' });
  return new OpenAIError(500, `Generation failed: ${message}`, 'server_error');
}
