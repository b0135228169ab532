// One completion request from body to response, shared by /v1/chat/completions and
// /v1/completions: prompt -> token ids, parameter checks against the model (context length,
// vocabulary, speculative options), admission (running slot, bounded queue, 429), then one
// engine generation sent whole or as SSE chunks. The generation is aborted when the client goes
// away (the response's 'close' before it finished) or when a shutdown's deadline passes.
import type { FastifyReply, FastifyRequest } from 'fastify';

import type { Engine, GenerateOptions } from '../engine';
import { AbortError, DoneEvent, GenerationStream, TokenEvent } from '../stream';
import type { ChatMessage } from '../tokenizer';
import type { Admission } from './admission';
import type { AbortCause, ServerMetrics } from './metrics';
import { chatLogprobs, completionLogprobs, TokenTexts } from './logprobs';
import {
  badRequest, chatShaper, completionShaper, dflashExtension, finishReason, OpenAIError, ResponseShaper,
  unsupportedParameter, usage,
} from './openai';
import { ChunkWriter, finishStream, onClientGone, sendStream } from './streaming';
import type { ChatCompletionBody, CompletionBody } from './schemas';
import { HarmonyParser, HarmonyVocab, ReasoningEffort, harmonyGrammar, reasoningEffort, harmonyVocab, renderHarmony } from '../harmony';
import { ReasoningSplitter, thinkingOpen, thinkingTemplate } from './reasoning';
import { StructuredOutput, structuredOutput } from './structured';
import { ToolCallParser, ToolPlan, toolMessages, toolPlan } from './tools';

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
  const tools = toolPlan(body, ctx.engine.tokenizer.chatTemplate);
  const given = body.messages.map((m, i): ChatMessage => ({
    role: m.role, content: messageText(m.content, i),
    ...(m.tool_calls ? { tool_calls: m.tool_calls } : {}), ...(m.tool_call_id !== undefined ? { tool_call_id: m.tool_call_id } : {}),
    ...(m.name !== undefined ? { name: m.name } : {}), ...(typeof m.reasoning_content === 'string' ? { reasoning_content: m.reasoning_content } : {}),
  }));
  const tok = ctx.engine.tokenizer;
  const harmony = harmonyVocab(tok);
  if (harmony) return handleHarmonyChat(ctx, req, reply, body, harmony, given, tools);
  const messages = toolMessages(tools, given);
  const structured = structuredOutput(body, tools);
  // chat_template_kwargs (vLLM's extension, e.g. { enable_thinking: false }) reach the template.
  const extra = { ...(body.reasoning_effort ? { reasoning_effort: body.reasoning_effort } : {}), ...(body.chat_template_kwargs ?? {}) };
  const templateOptions = { ...(tools?.templated ? { tools: tools.tools } : {}), ...(Object.keys(extra).length ? { extra } : {}) };
  let ids: number[];
  let thinking: boolean | undefined;  // a thinking template: whether the prompt left the block open
  try {
    const text = tok.applyChatTemplate(messages, templateOptions);
    ids = tok.encode(text, { addSpecialTokens: false });
    if (thinkingTemplate(tok.chatTemplate)) thinking = thinkingOpen(text);
  } catch (e) {
    throw badRequest(`The chat template rejected the messages: ${(e as Error).message}`, 'messages');
  }
  const { maxTokens, lp } = chatLimits(body);
  return handle(ctx, req, reply, body, ids, maxTokens, chatShaper(body.model, body.stream_options?.include_usage === true), lp, structured, tools, thinking);
}

/** A chat request's max tokens and log-probabilities (top_logprobs needs logprobs). */
function chatLimits(body: ChatCompletionBody): { maxTokens: number | undefined; lp: LogprobRequest } {
  if (body.top_logprobs !== undefined && body.top_logprobs !== null && body.top_logprobs > 0 && body.logprobs !== true)
    throw badRequest("'top_logprobs' needs 'logprobs': true.", 'top_logprobs');
  return {
    maxTokens: body.max_completion_tokens ?? body.max_tokens ?? undefined,
    lp: { tokens: body.logprobs === true ? body.top_logprobs ?? 0 : -1, prompt: -1, echo: false, none: false },
  };
}

/** A chat with a harmony model (gpt-oss): rendered by lib/harmony.ts, whose parser turns
 *  the output into reasoning_content, content and tool_calls. */
function handleHarmonyChat(ctx: RequestContext, req: FastifyRequest, reply: FastifyReply, body: ChatCompletionBody, vocab: HarmonyVocab,
  messages: ChatMessage[], tools: ToolPlan | undefined) {
  const kwargs = body.chat_template_kwargs ?? {};
  let effort: ReasoningEffort | undefined;
  try {
    effort = reasoningEffort(body.reasoning_effort ?? kwargs.reasoning_effort, "'chat_template_kwargs.reasoning_effort'");
  } catch (e) {
    throw badRequest(`${(e as Error).message}.`, 'chat_template_kwargs.reasoning_effort');
  }
  const found = structuredOutput(body, tools);
  const structured: StructuredOutput = found.grammar
    ? { grammar: harmonyGrammar(found.param === 'tool_choice' ? { plan: tools } : { grammar: found.grammar }), param: found.param }
    : {};
  let text: string;
  try {
    text = renderHarmony(messages, { tools: tools?.tools, reasoningEffort: effort });
  } catch (e) {
    throw badRequest((e as Error).message, 'messages');
  }
  const ids = ctx.engine.tokenizer.encode(text, { addSpecialTokens: false });
  const { maxTokens, lp } = chatLimits(body);
  return handle(ctx, req, reply, body, ids, maxTokens, chatShaper(body.model, body.stream_options?.include_usage === true), lp, structured, tools, undefined, vocab);
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
  // Legacy logprobs: an integer 0..5 of alternatives; with echo the prompt's tokens get theirs too.
  const top = body.logprobs ?? -1;
  const lp: LogprobRequest = { tokens: top, prompt: body.echo === true ? top : -1, echo: body.echo === true, none: body.max_tokens === 0 };
  if (body.max_tokens === 0 && (!lp.echo || body.stream === true))
    throw badRequest("'max_tokens' must be >= 1 (0 only with 'echo': true, not streamed).", 'max_tokens');
  return handle(ctx, req, reply, body, ids, body.max_tokens === 0 ? 1 : body.max_tokens ?? undefined, completionShaper(body.model, body.stream_options?.include_usage === true), lp,
    structuredOutput(body));
}

/** What a request asked of log-probabilities: alternatives per generated token (-1: none), per
 *  prompt token (-1: none), and whether the prompt is echoed (completions). */
interface LogprobRequest {
  tokens: number;
  prompt: number;
  echo: boolean;
  /** max_tokens 0 with echo: the prompt alone is the answer (one token is generated and dropped). */
  none: boolean;
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
  return { options, speculative, n: body.n ?? 1 };
}

async function handle(ctx: RequestContext, req: FastifyRequest, reply: FastifyReply, body: ChatCompletionBody | CompletionBody,
  ids: number[], requestedTokens: number | undefined, shaper: ResponseShaper, lp: LogprobRequest, structured: StructuredOutput, tools?: ToolPlan,
  thinking?: boolean, harmony?: HarmonyVocab) {
  const arrived = performance.now() - reply.elapsedTime; // when the request's first byte came in
  const { options, speculative, n } = generateOptions(ctx, body, ids.length, requestedTokens);
  options.grammar = structured.grammar;
  const engineError = (e: unknown) => requestError(e, structured.param);
  // (A harmony model's calls are read by its own parser, below.)
  const parsers = tools && !harmony ? Array.from({ length: n }, () => new ToolCallParser(tools.format)) : undefined;
  // A thinking model's output: reasoning_content, then the content (which tool calls are parsed from).
  const splitters = thinking === undefined ? undefined : Array.from({ length: n }, () => new ReasoningSplitter(thinking));
  // A harmony model's output: channels (analysis, final, calls) read from the tokens themselves.
  const harmonies = harmony ? Array.from({ length: n }, () => new HarmonyParser(harmony)) : undefined;

  // The client leaving (the response closing before it was finished) or a shutdown's deadline
  // aborts this request wherever it is: waiting in the queue or generating.
  const controller = new AbortController();
  let abortCause: AbortCause | undefined;
  const abort = (cause: AbortCause) => {
    if (abortCause) return;
    abortCause = cause;
    controller.abort(new AbortError(`request aborted: ${cause}`));
  };
  // Also when the connection closed before this handler ran (the body was read, then the client
  // left): the 'close' event is then past, and a listener alone would never abort the request.
  onClientGone(reply.raw, () => abort('client_disconnect'));
  if (abortCause) return answerAborted(ctx, reply, abortCause, true);

  // n choices take n sequence slots.
  const ticket = ctx.admission.tryEnter(controller.signal, n);
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
    // Choice i samples with seed + i; they share the prompt's pages through the prefix cache (the
    // first computes them, the others wait for them). Only the first computes prompt
    // log-probabilities (echo): they are the same for every choice.
    const streams: GenerationStream[] = [];
    try {
      for (let i = 0; i < n; i++) {
        const seed = options.seed !== undefined ? options.seed + i : undefined;
        streams.push(ctx.engine.generate(ids, {
          ...options, seed, signal: controller.signal,
          logprobs: lp.tokens >= 0 ? lp.tokens : undefined,
          promptLogprobs: lp.prompt >= 0 && i === 0 ? lp.prompt : undefined,
        }));
      }
    } catch (e) {
      controller.abort();
      throw engineError(e);
    }
    const timings = streams.map((stream, i) => {
      const timing = new TokenTiming(arrived);
      stream.on('token', (t) => { if (t.id >= 0) timing.token(); });
      // Not streamed: the parser reads the tokens as they come (a stream reads them in sendStream).
      if (harmonies && body.stream !== true) stream.on('token', (t) => void harmonies[i].push(t.id, t.text));
      return timing;
    });
    const texts = new TokenTexts(ctx.engine.tokenizer);
    const chat = 'messages' in body;
    const echoText = lp.echo ? ctx.engine.tokenizer.decode(ids, { skipSpecialTokens: false }) : '';
    let done: Array<DoneEvent | undefined>;
    let streamed = false;
    let failure: unknown;
    let out: ChunkWriter | undefined;
    if (body.stream === true) {
      const chunkLogprobs = (_index: number, tokens: TokenEvent[]) => {
        if (lp.tokens < 0) return null;
        const entries = tokens.map((t) => ({ id: t.id, logprob: t.logprob!, top: t.topLogprobs ?? [] }));
        return chat ? chatLogprobs(texts, entries) : completionLogprobs(texts, entries, lp.tokens);
      };
      // An echoed prompt is the first text of each choice (its log-probabilities are sent by the
      // non-streaming response only: they are known when the prefill ends, after that chunk).
      const outcome = await sendStream(reply, streams, shaper, chunkLogprobs, () => abort('client_disconnect'), echoText, parsers, splitters, harmonies);
      ({ done, streamed, failure, out } = outcome);
      if (done.some((d) => d === undefined)) {
        if (!abortCause && failure) {
          const err = engineError(failure);
          if (!outcome.out.started) throw err;
          // Already streaming: report the failure in the stream, as OpenAI does.
          await outcome.out.write(err.body()).then(() => outcome.out.write('[DONE]')).catch(() => undefined);
          return undefined;
        }
        // Aborted before a choice's generation could start (or end with a done event).
        if (!streamed) return answerAborted(ctx, reply, abortCause ?? 'client_disconnect', true);
        ctx.metrics.abortedRequest(abortCause ?? 'client_disconnect');
        return undefined;
      }
      // Nothing was generated as text (e.g. EOS at once): the stream still opens and closes.
      if (!outcome.out.started && abortCause !== 'client_disconnect') {
        await outcome.out.write(shaper.chunk(0, '')).catch(() => undefined);
        streamed = true;
      }
    } else {
      try {
        done = await Promise.all(streams.map((s) => s.done()));
      } catch (e) {
        controller.abort();
        if (abortCause && e instanceof AbortError) return answerAborted(ctx, reply, abortCause, true);
        throw engineError(e);
      }
    }
    const finished = done as DoneEvent[];
    // Tool calls (chat with tools): parsed from each choice's text unless the stream did already;
    // the content is then the text around them.
    if (splitters && !streamed) finished.forEach((d, i) => (splitters[i].push(d.text), splitters[i].end()));
    if (harmonies && !streamed) harmonies.forEach((h, i) => h.end(finished[i].reason === 'eos'));
    const answers = finished.map((d, i) => (harmonies ? harmonies[i].content : splitters ? splitters[i].content : d.text));
    const contents = answers.map((text, i) => (parsers && !streamed ? parsers[i].push(text).content + parsers[i].end().content : text));
    const calls = finished.map((_, i) => (harmonies ? harmonies[i].toolCalls : parsers?.[i].toolCalls ?? []));
    const finishes = finished.map((d, i) => (calls[i].length > 0 && d.reason !== 'maxTokens' && d.reason !== 'abort' ? 'tool_calls' : finishReason(d.reason)));
    finished.forEach((d, i) => ctx.metrics.generation({ stats: d.stats, speculative, finishReason: finishes[i], ttft: timings[i].ttft(), tpot: timings[i].tpot() }));
    // A request counts as aborted when the abort cut a generation short; one whose generations
    // all ended on their own first (the client left during the last chunks) counts as finished.
    if (abortCause && finished.some((d) => d.reason === 'abort')) ctx.metrics.abortedRequest(abortCause);
    const first = finished[0];
    const ext = dflashExtension(first.stats, speculative, { queueMs, ttftMs: (timings[0].ttft() ?? 0) * 1000, tpotMs: (timings[0].tpot() ?? 0) * 1000 });
    const u = usage(ids.length, finished.reduce((a, d) => a + d.ids.length, 0), first.stats.cachedTokens);
    if (streamed) return await finishStream(out!, shaper, finishes, ext, u, body.stream_options?.include_usage === true);
    if (abortCause === 'client_disconnect') return answerAborted(ctx, reply, abortCause, false);
    const promptLogprobs = first.promptLogprobs;
    return shaper.full(finished.map((d, index) => ({
      index,
      text: echoText + (lp.none ? '' : calls[index].length ? contents[index] : answers[index]),
      ...(splitters ? { reasoning: splitters[index].reasoning } : harmonies ? { reasoning: harmonies[index].reasoning } : {}),
      finish: finishes[index],
      toolCalls: calls[index].length ? calls[index] : undefined,
      logprobs: lp.tokens < 0 ? null : chat ? chatLogprobs(texts, d.logprobs ?? [])
        : completionLogprobs(texts, lp.none ? [] : d.logprobs ?? [], lp.tokens, lp.echo ? promptLogprobs : undefined, lp.echo ? ids : undefined),
    })), lp.none ? usage(ids.length, 0, first.stats.cachedTokens) : u, ext);
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

/** A request that ends without a response to send: its client left (nobody to answer; the
 *  connection is closed), or a shutdown's deadline passed while it was still queued (503). */
function answerAborted(ctx: RequestContext, reply: FastifyReply, cause: AbortCause, count: boolean) {
  if (count) ctx.metrics.abortedRequest(cause);
  if (cause === 'shutdown') throw new OpenAIError(503, 'The server shut down before this request started.', 'server_error', null, 'shutting_down');
  reply.hijack();
  if (!reply.raw.destroyed) reply.raw.destroy();
  return undefined;
}

/** engineError, with an invalid grammar a 400 naming the parameter it came from. */
function requestError(e: unknown, grammarParam?: string): OpenAIError {
  const err = e as Error & { code?: string };
  // Refused when compiled, or found to admit nothing the model can write while generating.
  if (err?.code === 'INVALID_GRAMMAR' || (grammarParam && /^grammar: /.test(err?.message ?? '')))
    return badRequest(`Invalid ${grammarParam ?? 'grammar'}: ${err.message}`, grammarParam ?? null, 'invalid_grammar');
  if (err?.code === 'GRAMMAR_UNSUPPORTED') return badRequest(`Structured output is not available: ${err.message}`, grammarParam ?? null, 'unsupported_parameter');
  return engineError(e);
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
