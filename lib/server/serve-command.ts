// `dflash serve`: loads a target (+ drafter), serves the OpenAI-compatible API on host:port and
// shuts down gracefully on SIGINT / SIGTERM: stop accepting, let running streams finish within
// --shutdown-timeout, abort the rest with a final chunk, then release the device. A second
// signal exits at once, and so does a signal while the programs are still precompiling.
import * as fs from 'fs';
import * as path from 'path';

import { Engine, EngineLoadOptions } from '../engine';

export const SERVE_HELP = `  dflash serve --target DIR|FILE.gguf [--drafter DIR|FILE.gguf] [options]
      --host H                  address to listen on (default 127.0.0.1)
      --port N                  port (default 8000; 0 picks a free one)
      --max-sequences N         requests generating at once, per replica (default 4)
      --queue N                 requests waiting for a slot before 429 (default 64)
      --max-seq-len N           longest prompt + completion in tokens (default 2048)
      --tensor-parallel-size N  devices each replica's model is split over (default 1)
      --data-parallel-size M    replicas, each on its own N devices; requests go to the least loaded (default 1)
      --quantized-weights Q     a quantized checkpoint's weights: narrow (kept in their stored width on the device),
                                dequantize (expanded once at load) or auto (default: dequantize on CPU, narrow elsewhere)
      --api-key KEY             require "Authorization: Bearer KEY" on /v1 (default $DFLASH_API_KEY)
      --served-model-name NAME  the model id clients send (default: the --target path)
      --shutdown-timeout S      seconds running requests get on SIGINT/SIGTERM (default 30)
      --precompile-context N    before it is ready, compile every program sequences of up to N tokens
                                need (default: --max-seq-len); /health answers 503 until then
      --no-precompile           ready at once; programs compile on first use (in the background)
      --log-level L             fatal, error, warn, info, debug (default warn)
      --plugin PATH             PJRT plugin to use (default: discovered)`;

export const PRECOMPILE_HELP = `  dflash precompile --target DIR [--drafter DIR] [--cache-dir DIR] [serve's engine options]
      compile every program \`dflash serve\` with the same options runs into the disk cache (--cache-dir, default
      $DFLASH_CACHE_DIR or ~/.cache/dflash/programs), e.g. in a container build; a server started on it compiles
      nothing. Takes --max-sequences, --max-seq-len, --queue, --tensor-parallel-size, --data-parallel-size,
      --quantized-weights, --precompile-context, --plugin as serve does`;

export const serveOptions = {
  target: { type: 'string' },
  drafter: { type: 'string' },
  plugin: { type: 'string' },
  host: { type: 'string' },
  port: { type: 'string' },
  'max-sequences': { type: 'string' },
  queue: { type: 'string' },
  'max-seq-len': { type: 'string' },
  'tensor-parallel-size': { type: 'string' },
  'data-parallel-size': { type: 'string' },
  'quantized-weights': { type: 'string' },
  'api-key': { type: 'string' },
  'served-model-name': { type: 'string' },
  'shutdown-timeout': { type: 'string' },
  'log-level': { type: 'string' },
  'precompile-context': { type: 'string' },
  'no-precompile': { type: 'boolean' },
} as const;

type Flags = 'no-precompile';

type Values = { [K in Exclude<keyof typeof serveOptions, Flags>]?: string } & { [K in Flags]?: boolean };

/** An integer option in [min, max], or a message naming the option and the accepted range. */
function intOption(v: Values, name: keyof Values, dflt: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const raw = v[name];
  if (raw === undefined) return dflt;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`--${name} must be an integer in ${min}..${max}, got '${raw}'`);
  return n;
}

/** --quantized-weights: checked here so a typo is named before the model loads. */
export function quantizedWeightsOption(raw: string): 'auto' | 'narrow' | 'dequantize' {
  if (raw !== 'auto' && raw !== 'narrow' && raw !== 'dequantize') throw new Error(`--quantized-weights must be auto, narrow or dequantize, got '${raw}'`);
  return raw;
}

/** Sampling defaults from the target's generation_config.json (greedy when do_sample is false). */
export function generationDefaults(dir: string): { temperature?: number; topP?: number; topK?: number } {
  const file = path.join(dir, 'generation_config.json');
  if (!fs.existsSync(file) || fs.statSync(dir).isFile()) return {};  // a GGUF target carries no sampling defaults
  let cfg: Record<string, unknown>;
  try {
    cfg = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file} is not valid JSON: ${(e as Error).message}`);
  }
  const num = (k: string) => (typeof cfg[k] === 'number' ? (cfg[k] as number) : undefined);
  if (cfg.do_sample === false) return { temperature: 0 };
  return { temperature: num('temperature'), topP: num('top_p'), topK: num('top_k') };
}

/** The engine serve loads for these options: `dflash precompile` loads the same one, so the
 *  programs it leaves in the disk cache are exactly those a server started with the same
 *  options runs. */
export function serveEngineOptions(v: Values): EngineLoadOptions & { maxSeqLen: number; maxSequences: number; maxQueue: number; dataParallel: number; precompileContext: number } {
  if (!v.target) throw new Error('needs --target DIR');
  const maxSeqLen = intOption(v, 'max-seq-len', 2048, 1);
  return {
    target: v.target, drafter: v.drafter, plugin: v.plugin, maxSeqLen,
    maxSequences: intOption(v, 'max-sequences', 4, 1),
    maxQueue: intOption(v, 'queue', 64, 0),
    tensorParallel: intOption(v, 'tensor-parallel-size', 1, 1, 1024),
    dataParallel: intOption(v, 'data-parallel-size', 1, 1, 1024),
    ...(v['quantized-weights'] === undefined ? {} : { quantizedWeights: quantizedWeightsOption(v['quantized-weights'] as string) }),
    precompileContext: intOption(v, 'precompile-context', maxSeqLen, 1, maxSeqLen),
  };
}

export async function serve(v: Values): Promise<void> {
  if (!v.target) throw new Error('serve needs --target DIR');
  const port = intOption(v, 'port', 8000, 0, 65535);
  const { precompileContext, ...loadOptions } = serveEngineOptions(v);
  const { maxSequences, maxQueue: queue, maxSeqLen, dataParallel } = loadOptions;
  const shutdownTimeout = Number(v['shutdown-timeout'] ?? 30);
  if (!(shutdownTimeout >= 0)) throw new Error(`--shutdown-timeout must be a number of seconds >= 0, got '${v['shutdown-timeout']}'`);
  const levels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'];
  const level = v['log-level'] ?? 'warn';
  if (!levels.includes(level)) throw new Error(`--log-level must be one of ${levels.join(', ')}, got '${level}'`);
  const defaults = generationDefaults(v.target);

  // Loaded here, not at the top, so that `dflash generate` / `doctor` do not load Fastify.
  const { createServer } = await import('./app');
  // --max-sequences is per replica (each has its own batch and KV pool), as vLLM's max_num_seqs.
  const engine = await Engine.load(loadOptions);
  // Ready means fast: every program the server runs is compiled (or loaded from the disk cache)
  // before /health says ok; meanwhile requests get 503.
  const { precompileWithProgress } = await import('../cli-progress');
  const compiled = { done: 0, total: 0 };
  const precompiled = v['no-precompile'] ? undefined
    : precompileWithProgress(engine, precompileContext, true, (p) => Object.assign(compiled, p));
  let precompiling = precompiled !== undefined;
  precompiled?.then(() => { precompiling = false; }, () => { precompiling = false; });
  const server = createServer(engine, {
    ready: precompiled,
    servedModelName: v['served-model-name'] ?? v.target,
    apiKey: v['api-key'] ?? process.env.DFLASH_API_KEY,
    maxSequences: maxSequences * dataParallel, queue, maxSeqLen, defaults,
    shutdownTimeoutMs: shutdownTimeout * 1000,
    logger: { level },
  });

  let stopping = false;
  const exitCode = (signal: NodeJS.Signals) => (signal === 'SIGTERM' ? 143 : 130);
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      process.stderr.write(`dflash serve: ${signal} again, exiting now\n`);
      process.exit(exitCode(signal));
    }
    stopping = true;
    if (precompiling) {
      // A program compiles on the engine's scheduler thread and cannot be interrupted; the engine's
      // dispose (and a graceful shutdown after it) would wait for every remaining program, minutes
      // on a CPU. Nothing runs yet (requests get 503 until ready): stop listening and exit now;
      // the process's exit releases the device.
      process.stderr.write(`${process.stderr.isTTY ? '\n' : ''}dflash serve: ${signal}: interrupted while precompiling ` +
        `(${compiled.done}/${compiled.total || '?'} programs); exiting\n`);
      void settlesWithin(server.shutdown({ timeoutMs: 0 }), 1_000).finally(() => process.exit(exitCode(signal)));
      return;
    }
    process.stderr.write(`dflash serve: ${signal}: no new requests; running ones get ${shutdownTimeout} s\n`);
    server.shutdown().then(
      () => {
        engine.dispose();
        process.stderr.write('dflash serve: stopped, device released\n');
        process.off('SIGINT', stop).off('SIGTERM', stop);
      },
      (e: Error) => {
        process.stderr.write(`dflash serve: shutdown failed: ${e.message}\n`);
        engine.dispose();
        process.exitCode = 1;
      });
  };
  // Before listen(): the precompile already runs, and a signal must not wait for it.
  process.on('SIGINT', stop).on('SIGTERM', stop);

  let url: string;
  try {
    url = await server.listen({ host: v.host ?? '127.0.0.1', port });
  } catch (e) {
    process.off('SIGINT', stop).off('SIGTERM', stop);
    if (precompiling) {
      // As above: disposing the engine would wait for the whole precompile.
      process.stderr.write(`dflash: ${(e as Error).message}\n`);
      process.exit(1);
    }
    engine.dispose();
    throw e;
  }
  if (stopping) return;  // a signal came while binding
  const mode = engine.config.drafter ? `speculative, block ${engine.config.drafter.blockSize}` : 'plain decoding (no --drafter)';
  const mesh = engine.stats().mesh;
  const devices = mesh.replicas.map((r) => r.devices.map((d) => d.id).join(',')).join(' | ');
  process.stderr.write(`dflash serve: listening on ${url} (model '${v['served-model-name'] ?? v.target}', ${mode}, ` +
    `${maxSequences} sequences + ${queue} queued, platform ${engine.platform}, ` +
    `tensor parallel ${mesh.tensorParallel} x data parallel ${mesh.dataParallel} on devices ${devices})` +
    (precompiled ? `; precompiling for ${precompileContext}-token sequences, /health is 503 until ready` : '') + '\n');
  if (!precompiled) process.stderr.write('dflash serve: ready (--no-precompile: programs compile on first use)\n');
  else
    precompiled.then(
      (p) => { if (!stopping) process.stderr.write(`dflash serve: ready: ${p.programs} programs precompiled in ${p.seconds.toFixed(1)} s\n`); },
      (e: Error) => process.stderr.write(`dflash serve: precompiling failed: ${e.message}; /health reports it\n`));
}

/** Whether `p` settles within `ms` (it keeps running either way). */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<false>((resolve) => { timer = setTimeout(resolve, ms, false); });
  try {
    return await Promise.race([p.then(() => true as const, () => true as const), deadline]);
  } finally {
    clearTimeout(timer);
  }
}
