// Engine: the public entry point. Engine.load() finds the PJRT plugin, maps the Hugging Face
// configs, loads the tokenizer and starts the native engine (its scheduler thread uploads the
// weights, sizes the KV pool and compiles the warm-up programs, with progress events).
// generate() queues a sequence with the native scheduler and returns a GenerationStream fed once
// per scheduler iteration; nothing here waits on device work.
import { EventEmitter } from 'events';
import * as os from 'os';
import * as path from 'path';
import type TypedEmitter from 'typed-emitter';

import { drafterConfigFromHF, EngineCapabilities, targetConfigFromHF } from './config';
import { checkDrafterTensors, checkTargetTensors } from './config-checkpoint';
import { Generation } from './generation';
import { harmonyVocab } from './harmony';
import {
  native, NativeClient, NativeEngine, NativeEngineStats, NativeProgramEvent, NativeSequenceEvent, NativeWeightProgress,
} from './native';
import type { EngineOptions } from './options.generated';
import { findPlugin } from './plugins';
import { openDrafter, openModel } from './model-source';
import { checkLoadOptions, GenerateOptions, promptTokens, requestOptions } from './request';
import { AbortError, DoneEvent, GenerationStream } from './stream';
import { ChatMessage, Tokenizer } from './tokenizer';

export type { GenerateOptions };

/** Loading progress: weight bytes per model, then compile / disk-cache events per program. */
export type LoadProgress = NativeWeightProgress | NativeProgramEvent;

export interface EngineLoadOptions extends Omit<EngineOptions, 'cacheDir'> {
  /** The target model: a Hugging Face directory (config.json, *.safetensors, tokenizer.json) or a
   *  GGUF file (llama, qwen2, qwen3; quantized tensors are expanded at load). */
  target: string;
  /** Directory of a DFlash drafter (z-lab layout). Without it, generation is plain decoding. */
  drafter?: string;
  /** Path of a PJRT plugin; otherwise discovered (see describePlugins()). */
  plugin?: string;
  /** Device ids to run on (see `dflash doctor`): `tensorParallel` per replica, replica after
   *  replica. Default: the first tensorParallel x dataParallel devices. On the CPU plugin that
   *  many virtual devices are made (its `cpu_device_count` option). */
  devices?: number[];
  /** Directory for compiled programs, so a second start does not recompile. Default:
   *  $DFLASH_CACHE_DIR, else $XDG_CACHE_HOME/dflash/programs (~/.cache/dflash/programs);
   *  `false` turns the disk cache off. */
  cacheDir?: string | false;
  onProgress?: (p: LoadProgress) => void;
}

/** The native engine's counters, and the checkpoint's tensors left out at load (a vision-language
 *  checkpoint's vision tower and MTP head: Qwen3.5), counted by module. */
export type EngineStats = NativeEngineStats & { skippedTensors: Record<string, number> };

/** What the native graphs implement (lib/config.ts refuses configs that need more). */
const CAPABILITIES: EngineCapabilities = { slidingWindows: true, moe: true };

export type EngineEvents = {
  /** Compile and disk-cache activity after load (first use of a new shape bucket). */
  program: (e: NativeProgramEvent) => void;
};

export class Engine extends (EventEmitter as new () => TypedEmitter<EngineEvents>) {
  private disposed = false;
  private closing: Promise<void> | undefined;
  private readonly live = new Map<number, { gen: Generation; resolve: (d: DoneEvent) => void; reject: (e: Error) => void; done?: DoneEvent }>();

  private constructor(
    readonly client: NativeClient,
    private readonly engine: NativeEngine,
    readonly tokenizer: Tokenizer,
    readonly config: { target: ReturnType<typeof targetConfigFromHF>; drafter?: ReturnType<typeof drafterConfigFromHF> },
    private readonly skipped: Record<string, number> = {},
  ) {
    super();
  }

  static async load(opts: EngineLoadOptions): Promise<Engine> {
    checkLoadOptions(opts);
    const { target, drafter, plugin, onProgress, cacheDir, devices, ...engineOptions } = opts;
    const model = openModel(target);  // a model directory or a GGUF file
    const targetFile = model.configLabel;
    const targetCfg = targetConfigFromHF(model.config, targetFile, CAPABILITIES);
    const drafterSource = drafter ? openDrafter(drafter) : undefined;  // a model directory or a "dflash" GGUF file
    const drafterFile = drafterSource?.configLabel;
    const drafterCfg = drafterSource ? drafterConfigFromHF(drafterSource.config, targetCfg, drafterFile, CAPABILITIES) : undefined;
    const tokenizer = await model.tokenizer();
    // Headers only: a config that does not describe its checkpoint fails here, before anything
    // is allocated or compiled.
    const targetTensors = model.tensors(targetCfg.quant);
    checkTargetTensors(targetCfg, targetTensors, targetFile);
    const drafterTensors = drafterSource?.tensors(drafterCfg?.quant);
    if (drafterCfg && drafterTensors) checkDrafterTensors(drafterCfg, drafterTensors, drafterFile);

    const found = findPlugin({ plugin });
    const client = await openClientFor(found.path, meshDevices(engineOptions));
    let engine: Engine | undefined;
    let nativeEngine: NativeEngine | undefined;
    try {
      const options = { ...engineOptions, cacheDir: cacheDir === false ? '' : cacheDir ?? defaultCacheDir() };
      // A harmony model (gpt-oss) ends its turn on <|return|> or <|call|>, whatever its configs list.
      const harmony = harmonyVocab(tokenizer);
      const eos = [...new Set(tokenizer.eosTokenIds.concat(targetCfg.eosTokenIds ?? [], harmony ? [harmony.return, harmony.call] : []))];
      // tokenizer.json's text: the grammar engine reads every token's bytes from it.
      const tokenizerJson = model.tokenizerJson();
      nativeEngine = native().createEngine(client, { target: targetCfg, drafter: drafterCfg, eosTokenIds: eos, options, devices, tokenizerJson },
        (kind, data) => engine?.onNative(kind, data));
      engine = new Engine(client, nativeEngine, tokenizer, { target: targetCfg, drafter: drafterCfg }, { ...(model.skipped ?? {}) });
      const { unusedTensors } = await nativeEngine.load(targetTensors, drafterTensors, onProgress && ((p) => onProgress(p)));
      if (unusedTensors.length > 0)
        process.emitWarning(`the checkpoint holds ${unusedTensors.length} tensor(s) the model does not use: ${unusedTensors.slice(0, 8).join(', ')}` +
          (unusedTensors.length > 8 ? ', ...' : '') + ' (a config/checkpoint mismatch, e.g. biases in a model configured without them?)',
        { code: 'DFLASH_UNUSED_TENSORS' });
      return engine;
    } catch (e) {
      if (nativeEngine) await nativeEngine.dispose().catch(() => undefined);
      client.dispose();
      throw e;
    }
  }

  get platform(): string {
    return this.client.platformName;
  }

  /** Scheduler, device and memory counters: running / queued sequences, free KV pages, host
   *  transfers, executions, compiles, the dtypes in use and why. */
  stats(): EngineStats {
    return { ...this.engine.stats(), skippedTensors: { ...this.skipped } };
  }

  /** Compiles — or, with the disk cache, loads — every program a server runs for sequences of up
   *  to `context` tokens (default maxSeqLen) with up to maxSequences streams at once: prefill
   *  chunks, plain decode, the verify of a full block and the drafts around it (greedy, sampled
   *  and grammar-constrained rows share them); so the first requests neither wait for compiles nor run on the small fallback
   *  buckets. The set does not grow with `context` past the largest prefill chunk: every program
   *  reads as many KV pages as its rows reach. `dflash serve` runs it before it reports ready.
   *  Resolves with the program count. */
  precompile(options: { context?: number; onProgress?: (p: { done: number; total: number }) => void } = {}): Promise<{ programs: number }> {
    if (this.disposed) throw new Error('Engine is disposed');
    const { onProgress } = options;
    const context = options.context ?? this.engine.stats().maxSeqLen;
    return this.engine.precompile({ context }, onProgress && ((p) => onProgress({ done: p.done, total: p.total })));
  }

  /** @internal the native engine, for tests and benchmarks (lib/internal/probe.ts). */
  get nativeEngine(): NativeEngine {
    return this.engine;
  }

  generate(prompt: string | ChatMessage[] | number[] | Int32Array, options: GenerateOptions = {}): GenerationStream {
    if (this.disposed) throw new Error('Engine is disposed');
    // Argument errors throw here; what the scheduler finds (vocabulary, length, a full queue)
    // rejects the stream.
    const { request, stops, grammar } = requestOptions(options, this.config.drafter !== undefined);
    const kwargs = options.chatTemplateKwargs;
    if (kwargs !== undefined && (typeof kwargs !== 'object' || kwargs === null || Array.isArray(kwargs)))
      throw new TypeError(`generate: chatTemplateKwargs must be an object of template variables, got ${JSON.stringify(kwargs)}`);
    const tokens = promptTokens(prompt, this.tokenizer, kwargs);
    const startedAt = performance.now();
    return new GenerationStream((stream, signal) => new Promise<DoneEvent>((resolve, reject) => {
      if (signal.aborted) return reject(new AbortError());
      const id = this.engine.submit(tokens, request, grammar);  // throws: prompt errors, QUEUE_FULL, INVALID_GRAMMAR
      const block = request.blockSize === 1 || !this.config.drafter ? 1 : (request.blockSize as number | undefined) || this.config.drafter.blockSize;
      const gen = new Generation(stream, this.tokenizer, stops, tokens, startedAt, () => this.engine.cancel(id), block,
        options.logprobs !== undefined && options.logprobs >= 0, options.promptLogprobs !== undefined && options.promptLogprobs >= 0);
      this.live.set(id, { gen, resolve, reject });
      signal.addEventListener('abort', () => this.engine.cancel(id), { once: true });
    }), options.signal);
  }

  // Native events arrive once per scheduler iteration.
  private onNative(kind: 'tokens' | 'program', data: NativeSequenceEvent[] | NativeProgramEvent): void {
    if (kind === 'program') {
      this.emit('program', data as NativeProgramEvent);
      return;
    }
    for (const e of data as NativeSequenceEvent[]) {
      const entry = this.live.get(e.id);
      if (!entry) continue;
      try {
        const done = entry.gen.onEvent(e);
        if (done) {
          this.live.delete(e.id);
          entry.resolve(done);
        }
      } catch (err) {
        this.live.delete(e.id);
        entry.reject(err as Error);
      }
    }
  }

  /** Ends every stream (reason 'abort') and releases the device; returns at once. close() waits. */
  dispose(): void {
    void this.close();
  }

  /** dispose(), resolved once the device memory is released. */
  close(): Promise<void> {
    if (!this.closing) {
      this.disposed = true;
      for (const [, entry] of this.live) entry.reject(new AbortError('the engine was disposed'));
      this.live.clear();
      this.closing = this.engine.dispose().finally(() => this.client.dispose());
    }
    return this.closing;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** How many devices a mesh needs: tensorParallel x dataParallel (the native engine checks that
 *  the plugin has them, and the ids of `devices`). */
function meshDevices(o: { tensorParallel?: number; dataParallel?: number }): number {
  const tp = typeof o.tensorParallel === 'number' ? o.tensorParallel : 1;
  const dp = typeof o.dataParallel === 'number' ? o.dataParallel : 1;
  return tp * dp;
}

/** The plugin's client; the CPU plugin is reopened with as many virtual devices as the mesh
 *  needs (XLA's CPU client splits the host into `cpu_device_count` devices). */
async function openClientFor(pluginPath: string, needed: number): Promise<NativeClient> {
  const client = await native().openClient(pluginPath);
  if (needed <= 1 || needed > 256 || client.platformName !== 'cpu' || client.devices().length >= needed) return client;
  client.dispose();
  return native().openClient(pluginPath, { cpu_device_count: needed });
}

function defaultCacheDir(): string {
  if (process.env.DFLASH_CACHE_DIR) return process.env.DFLASH_CACHE_DIR;
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'dflash', 'programs');
}


