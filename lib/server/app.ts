// createServer(engine, options): the OpenAI-compatible HTTP API over an Engine, on Fastify.
// Fastify validates the request bodies (schemas.ts) and @fastify/sse frames the streams; this
// file wires the routes, the API-key check, errors in the OpenAI shape, /metrics and a graceful
// shutdown. The result listens on its own (listen()) or mounts into an existing Node app
// (handler(req, res), or the Fastify instance itself as `app`).
import { createHash, timingSafeEqual } from 'crypto';
import type { IncomingMessage, ServerResponse } from 'http';

import fastifySse from '@fastify/sse';
import Fastify, { FastifyError, FastifyInstance, FastifyReply, FastifyRequest, FastifyServerOptions } from 'fastify';

import type { Engine } from '../engine';
import { Admission } from './admission';
import { handleChat, handleCompletion, RequestContext } from './completions';
import { AbortCause, ServerMetrics } from './metrics';
import { OpenAIError } from './openai';
import { ChatCompletionBody, chatCompletionBodySchema, CompletionBody, completionBodySchema } from './schemas';

export interface ServerOptions {
  /** The model id clients must name in `model` and that /v1/models lists (default "dflash"). */
  servedModelName?: string;
  /** When set, /v1/* requests need `Authorization: Bearer <apiKey>` (401 otherwise). */
  apiKey?: string;
  /** Requests generating at once (default 4, Engine.load's default): pass the engine's value. */
  maxSequences?: number;
  /** Requests that may wait for a free slot; more get 429 with Retry-After (default 64). */
  queue?: number;
  /** The maxSeqLen the engine was loaded with (default 2048); capped by the model's positions. */
  maxSeqLen?: number;
  /** Sampling for requests that leave it out (default: OpenAI's, temperature 1, top_p 1). */
  defaults?: { temperature?: number; topP?: number; topK?: number };
  /** Milliseconds shutdown() lets running requests finish before aborting them (default 30000). */
  shutdownTimeoutMs?: number;
  /** Largest request body in bytes (default 8 MiB). */
  bodyLimit?: number;
  /** Fastify's logger option (default off). */
  logger?: FastifyServerOptions['logger'];
  /** The server is not ready until this settles (e.g. engine.precompile()): /health answers 503
   *  {status: 'loading'} and requests 503 with Retry-After meanwhile (vLLM's readiness). A
   *  rejection keeps it unready and is reported by /health. */
  ready?: Promise<unknown>;
}

export interface DflashServer {
  /** The Fastify instance: register more routes or plugins on it before listen(). */
  readonly app: FastifyInstance;
  readonly metrics: ServerMetrics;
  /** Starts listening (default 127.0.0.1:8000); resolves with the address, e.g. http://127.0.0.1:8000. */
  listen(options?: { host?: string; port?: number }): Promise<string>;
  /** A Node request listener, to mount the API into an existing http server or framework. */
  handler(req: IncomingMessage, res: ServerResponse): void;
  /** Stops accepting requests, lets running ones finish for `timeoutMs` (default: the
   *  shutdownTimeoutMs option), then aborts the rest (their streams end with finish_reason
   *  "abort"). Does not dispose the engine: the caller owns it. */
  shutdown(options?: { timeoutMs?: number }): Promise<void>;
}

interface ActiveRequest {
  abort: (cause: AbortCause) => void;
  settled: Promise<unknown>;
}

export function createServer(engine: Engine, options: ServerOptions = {}): DflashServer {
  const modelName = options.servedModelName ?? 'dflash';
  const admission = new Admission(options.maxSequences ?? 4, options.queue ?? 64);
  const maxSeqLen = options.maxSeqLen ?? (engine as unknown as { maxSeqLen?: number }).maxSeqLen ?? 2048;
  const maxContext = Math.min(maxSeqLen, engine.config.target.maxPositionEmbeddings);
  const active = new Set<ActiveRequest>();
  let closing = false;
  let readiness: 'loading' | 'ready' | { error: string } = options.ready ? 'loading' : 'ready';
  options.ready?.then(() => { readiness = 'ready'; }, (e: Error) => { readiness = { error: e?.message ?? String(e) }; });

  const metrics = new ServerMetrics({
    // Once the engine schedules sequences itself it reports its own counts; until then the
    // server's admission gate is where requests run and wait.
    running: () => engineStat('runningSequences') ?? admission.runningCount,
    queued: () => admission.queuedCount + (engineStat('queuedSequences') ?? 0),
    pages: () => ({ free: engineStat('freePages'), total: engineStat('totalPages'), cached: engineStat('cachedPages') }),
    replicas: () => {
      try {
        return engine.stats().mesh?.replicas ?? [];
      } catch {
        return [];
      }
    },
    programs: () => {
      try {
        const st = engine.stats();
        return st.programs ? { ...st.programs, compiles: st.compiles, diskCacheHits: st.diskCacheHits } : undefined;
      } catch {
        return undefined;
      }
    },
  });
  function engineStat(name: string): number | undefined {
    try {
      const v = (engine.stats() as unknown as Record<string, unknown>)[name];
      return typeof v === 'number' ? v : undefined;
    } catch {
      return undefined; // a disposed engine has no stats; the gauge keeps its last value
    }
  }

  const ctx: RequestContext = {
    engine, admission, metrics, modelName, maxContext,
    defaults: { temperature: options.defaults?.temperature ?? 1, topP: options.defaults?.topP ?? 1, topK: options.defaults?.topK ?? 0 },
    track(abort, settled) {
      const entry = { abort, settled };
      active.add(entry);
      return () => active.delete(entry);
    },
  };

  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: options.bodyLimit ?? 8 * 1024 * 1024,
    // Validate as written: no type coercion ("5" is not an integer) and no silent removal.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false } },
    // Requests that reach a draining server get our own 503 (OpenAI shape), not Fastify's.
    return503OnClosing: false,
  });
  app.register(fastifySse, { heartbeatInterval: 15_000 });

  // A completion request is accounted (aborted, or its generations finished) by its handler from
  // the moment it runs; one whose client leaves after the checks below but before the handler
  // runs (while its body is read or validated) is counted as aborted here, and the handler, if
  // it still runs, does nothing.
  const admitted = new WeakSet<FastifyRequest>();
  const handled = new WeakSet<FastifyRequest>();
  const closedEarly = new WeakSet<FastifyRequest>();
  app.addHook('onRequest', async (req, reply) => {
    reply.raw.once('close', () => {
      // 499 (client closed the request, as nginx counts it) when no response was sent.
      const status = reply.raw.headersSent ? reply.raw.statusCode : 499;
      metrics.request(req.routeOptions.url ?? 'unmatched', status);
      if (status === 499 && admitted.has(req) && !handled.has(req)) {
        closedEarly.add(req);
        metrics.abortedRequest('client_disconnect');
      }
    });
    if (!req.url.startsWith('/v1/')) return;
    if (closing) throw new OpenAIError(503, 'The server is shutting down.', 'server_error', null, 'shutting_down');
    if (readiness !== 'ready' && req.url.startsWith('/v1/c'))
      throw new OpenAIError(503, readiness === 'loading' ? 'The server is compiling its programs; retry shortly.' : `The server failed to start: ${readiness.error}`,
        'server_error', null, 'not_ready', { 'retry-after': '5' });
    if (options.apiKey !== undefined && !keyMatches(req.headers.authorization, options.apiKey))
      throw new OpenAIError(401, 'Missing or wrong API key: send `Authorization: Bearer <key>`.', 'invalid_request_error', null, 'invalid_api_key');
    if (req.url.startsWith('/v1/c')) admitted.add(req);
  });

  app.setErrorHandler((err: FastifyError | OpenAIError, req, reply) => {
    const e = toOpenAIError(err);
    if (e.status >= 500) req.log.error({ err }, 'request failed');
    return reply.code(e.status).headers(e.headers).send(e.body());
  });
  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send(new OpenAIError(404, `No route ${req.method} ${req.url}.`, 'invalid_request_error', null, 'not_found').body()));

  // Routes go in a child plugin so that they are declared after @fastify/sse, whose onRoute
  // hook gives SSE routes their `reply.sse`.
  const completion = <B>(handle: (ctx: RequestContext, req: FastifyRequest<{ Body: B }>, reply: FastifyReply) => Promise<unknown>) =>
    (req: FastifyRequest<{ Body: B }>, reply: FastifyReply) => {
      if (closedEarly.has(req)) {
        reply.hijack();  // counted as aborted when its connection closed; nobody to answer
        return undefined;
      }
      handled.add(req);
      return handle(ctx, req, reply);
    };
  app.register(async (api) => {
    api.post<{ Body: ChatCompletionBody }>('/v1/chat/completions', { schema: { body: chatCompletionBodySchema }, sse: 'manual' },
      completion(handleChat));
    api.post<{ Body: CompletionBody }>('/v1/completions', { schema: { body: completionBodySchema }, sse: 'manual' },
      completion(handleCompletion));
    api.get('/v1/models', async () => ({
      object: 'list',
      data: [{
        id: modelName, object: 'model', created: Math.floor(Date.now() / 1000), owned_by: 'dflash',
        max_model_len: maxContext,
        dflash: {
          drafter: engine.config.drafter !== undefined, block_size: engine.config.drafter?.blockSize ?? null,
          platform: engine.platform, max_sequences: admission.maxRunning, queue: admission.maxQueued,
        },
      }],
    }));
    api.get('/health', async (_req, reply) => {
      if (closing) return reply.code(503).send({ status: 'shutting_down' });
      if (readiness === 'loading') return reply.code(503).header('retry-after', '5').send({ status: 'loading' });
      if (readiness !== 'ready') return reply.code(503).send({ status: 'failed', error: readiness.error });
      return { status: 'ok' };
    });
    api.get('/metrics', async (_req, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()));
  });

  let shuttingDown: Promise<void> | undefined;
  let ready: Promise<unknown> | undefined;
  return {
    app,
    metrics,
    async listen(o = {}) {
      return app.listen({ host: o.host ?? '127.0.0.1', port: o.port ?? 8000 });
    },
    handler(req, res) {
      ready ??= Promise.resolve(app.ready());
      ready.then(() => app.routing(req, res), (e) => { res.statusCode = 500; res.end(String(e)); });
    },
    shutdown(o = {}) {
      shuttingDown ??= shutdown(o.timeoutMs ?? options.shutdownTimeoutMs ?? 30_000);
      return shuttingDown;
    },
  };

  async function shutdown(timeoutMs: number): Promise<void> {
    closing = true;
    // Stop listening now; Fastify answers requests on open keep-alive connections with 503 and
    // closes the server once the running ones have ended.
    const closed = app.close();
    const allSettled = () => Promise.all([...active].map((a) => a.settled));
    if (!(await settlesWithin(allSettled(), timeoutMs))) {
      for (const a of active) a.abort('shutdown');
      // Aborted streams send their final chunk and end; a client that stopped reading could
      // still hold one open, so after a short grace its connection is cut.
      if (!(await settlesWithin(allSettled(), 2_000))) app.server.closeAllConnections();
    }
    await closed;
  }
}

async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<false>((resolve) => { timer = setTimeout(resolve, ms, false); });
  try {
    return await Promise.race([p.then(() => true as const), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

// Compares digests so the comparison takes the same time whatever the key's length or content.
function keyMatches(header: string | undefined, key: string): boolean {
  const m = /^Bearer\s+(.+)$/i.exec(header ?? '');
  if (!m) return false;
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(m[1].trim()), digest(key));
}

type ValidationError = NonNullable<FastifyError['validation']>[number];

/** Of Ajv's errors, the one that explains the problem: with `anyOf` (nullable fields, the
 *  string-or-list `stop`) Ajv reports every branch; a range or size error beats "must be
 *  string" from a branch of the wrong type, and both beat "must match a schema in anyOf". */
function mostSpecific(errors: ValidationError[] | undefined): ValidationError | undefined {
  if (!errors?.length) return undefined;
  const generic = ['type', 'anyOf', 'oneOf'];
  return errors.find((e) => !generic.includes(e.keyword)) ?? errors.find((e) => e.keyword !== 'anyOf') ?? errors[0];
}

/** Fastify's own errors (schema validation, malformed JSON, body too large...) in the OpenAI shape. */
function toOpenAIError(err: FastifyError | OpenAIError): OpenAIError {
  if (err instanceof OpenAIError) return err;
  const v = mostSpecific((err as FastifyError).validation);
  if (v) {
    const missing = (v.params as { missingProperty?: string }).missingProperty;
    const path = v.instancePath.replace(/^\//, '').replace(/\/(\d+)(?=\/|$)/g, '[$1]').replace(/\//g, '.');
    if (missing) {
      const param = path ? `${path}.${missing}` : missing;
      return new OpenAIError(400, `Missing required parameter: '${param}'.`, 'invalid_request_error', param, 'missing_required_parameter');
    }
    return new OpenAIError(400, `Invalid value for '${path}': ${v.message}.`, 'invalid_request_error', path || null, 'invalid_value');
  }
  const status = err.statusCode ?? 500;
  if (status >= 400 && status < 500) {
    const json = /JSON/i.test(err.code ?? '') || err instanceof SyntaxError;
    return new OpenAIError(status, json ? `The request body is not valid JSON: ${err.message}` : err.message, 'invalid_request_error', null, err.code ?? null);
  }
  return new OpenAIError(500, `Internal error: ${err.message}`, 'server_error');
}
