// Engine: the public entry point. Engine.load() finds the PJRT plugin, maps the Hugging Face
// configs, uploads the weights (progress events) and loads the tokenizer; generate() returns a
// GenerationStream that runs one sequence through the native engine, speculatively when a
// DFlash drafter is loaded.
import * as fs from 'fs';
import * as path from 'path';

import { drafterConfigFromHF, targetConfigFromHF } from './config';
import { native, NativeClient, NativeEngine, NativeStepResult, TensorSource } from './native';
import { findPlugin } from './plugins';
import { readCheckpoint } from './safetensors';
import { AbortError, DoneEvent, GenerationStream, StopReason, TokenEvent } from './stream';
import { ChatMessage, IncrementalDetokenizer, loadTokenizer, Tokenizer } from './tokenizer';

export interface LoadProgress {
  model: 'target' | 'drafter';
  tensors: number;
  totalTensors: number;
  bytes: number;
  totalBytes: number;
}

export interface EngineLoadOptions {
  /** Directory of the target model (config.json, *.safetensors, tokenizer.json). */
  target: string;
  /** Directory of a DFlash drafter (z-lab layout). Without it, generation is plain greedy/sampled decoding. */
  drafter?: string;
  /** Path of a PJRT plugin; otherwise discovered (see describePlugins()). */
  plugin?: string;
  /** Longest prompt + generation of one sequence (default 2048). */
  maxSeqLen?: number;
  /** Tokens per KV-cache page, a power of two (default 16). */
  pageSize?: number;
  /** Sequences that may generate at once (default 4): sizes the page pool. */
  maxSequences?: number;
  /** Directory for compiled programs, so a second start does not recompile. Default:
   *  $DFLASH_CACHE_DIR, else $XDG_CACHE_HOME/dflash/programs (~/.cache/dflash/programs);
   *  `false` turns the disk cache off. */
  cacheDir?: string | false;
  onProgress?: (p: LoadProgress) => void;
}

export interface GenerateOptions {
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  seed?: number;
  stop?: string | string[];
  signal?: AbortSignal;
  /** Speculative decoding: on by default when a drafter is loaded; `false` forces plain decoding. */
  speculative?: { blockSize?: number } | false;
}

export class Engine {
  private disposed = false;
  private constructor(
    readonly client: NativeClient,
    private readonly engine: NativeEngine,
    readonly tokenizer: Tokenizer,
    readonly config: { target: ReturnType<typeof targetConfigFromHF>; drafter?: ReturnType<typeof drafterConfigFromHF> },
  ) {}

  static async load(opts: EngineLoadOptions): Promise<Engine> {
    const targetCfg = targetConfigFromHF(readJson(path.join(opts.target, 'config.json')));
    const drafterCfg = opts.drafter ? drafterConfigFromHF(readJson(path.join(opts.drafter, 'config.json')), targetCfg) : undefined;
    const tokenizer = await loadTokenizer(opts.target);
    const targetTensors = readCheckpoint(opts.target);
    const drafterTensors = opts.drafter ? stripModelPrefix(readCheckpoint(opts.drafter)) : undefined;

    const plugin = findPlugin({ plugin: opts.plugin });
    const client = await native().openClient(plugin.path);
    try {
      const engine = await native().createEngine(client, {
        target: { ...targetCfg, weightDtype: weightDtype(targetTensors) },
        drafter: drafterCfg && drafterTensors ? { ...drafterCfg, weightDtype: weightDtype(drafterTensors) } : undefined,
        pageSize: opts.pageSize ?? 16,
        maxSeqLen: opts.maxSeqLen ?? 2048,
        maxSequences: opts.maxSequences ?? 4,
        cacheDir: opts.cacheDir === false ? '' : opts.cacheDir ?? defaultCacheDir(),
      });
      const progress = (model: 'target' | 'drafter') => (p: Omit<LoadProgress, 'model'>) => opts.onProgress?.({ model, ...p });
      await engine.loadWeights('target', targetTensors, progress('target'));
      if (drafterTensors) await engine.loadWeights('drafter', drafterTensors, progress('drafter'));
      return new Engine(client, engine, tokenizer, { target: targetCfg, drafter: drafterCfg });
    } catch (e) {
      client.dispose();
      throw e;
    }
  }

  get platform(): string {
    return this.client.platformName;
  }

  /** Device-side counters: host transfers, executions, compiles, pages. */
  stats(): ReturnType<NativeEngine['stats']> {
    return this.engine.stats();
  }

  /** @internal the native engine, for tests and benchmarks. */
  get nativeEngine(): NativeEngine {
    return this.engine;
  }

  generate(prompt: string | ChatMessage[] | number[], options: GenerateOptions = {}): GenerationStream {
    if (this.disposed) throw new Error('Engine is disposed');
    const maxTokens = options.maxTokens ?? 256;
    if (!Number.isInteger(maxTokens) || maxTokens < 1) throw new RangeError(`maxTokens must be a positive integer, got ${options.maxTokens}`);
    const temperature = options.temperature ?? 0;
    if (!(temperature >= 0) || !Number.isFinite(temperature)) throw new RangeError(`temperature must be >= 0, got ${options.temperature}`);
    const topP = options.topP ?? 1;
    if (!(topP > 0 && topP <= 1)) throw new RangeError(`topP must be in (0, 1], got ${options.topP}`);
    const topK = options.topK ?? 0;
    if (!Number.isInteger(topK) || topK < 0) throw new RangeError(`topK must be an integer >= 0, got ${options.topK}`);
    const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31);
    if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be an integer, got ${options.seed}`);
    const stops = options.stop === undefined ? [] : Array.isArray(options.stop) ? options.stop : [options.stop];
    const drafter = this.config.drafter;
    const speculative = options.speculative !== false && drafter !== undefined;
    if (options.speculative && !drafter) throw new Error('speculative decoding needs a drafter: pass `drafter` to Engine.load()');
    const blockSize = speculative ? (options.speculative && options.speculative.blockSize) || drafter!.blockSize : 1;

    const ids = Array.isArray(prompt) && (prompt.length === 0 || typeof prompt[0] === 'number')
      ? (prompt as number[])
      : this.tokenizer.encode(typeof prompt === 'string' ? prompt : this.tokenizer.applyChatTemplate(prompt as ChatMessage[]));

    return new GenerationStream((stream, signal) =>
      this.run(stream, signal, Int32Array.from(ids), { maxTokens, stops, speculative, blockSize, temperature, topP, topK, seed }), options.signal);
  }

  private async run(stream: GenerationStream, signal: AbortSignal, prompt: Int32Array,
    o: { maxTokens: number; stops: string[]; speculative: boolean; blockSize: number; temperature: number; topP: number; topK: number; seed: number }): Promise<DoneEvent> {
    const t0 = performance.now();
    const eos = new Set(this.tokenizer.eosTokenIds.concat(this.config.target.eosTokenIds ?? []));
    const detok = new IncrementalDetokenizer(this.tokenizer);
    if (signal.aborted) throw new AbortError();
    const seq = this.engine.startSequence(prompt, {
      maxNewTokens: o.maxTokens, speculative: o.speculative, blockSize: o.blockSize,
      temperature: o.temperature, topP: o.topP, topK: o.topK, seed: o.seed,
    });
    const ids: number[] = [];
    let text = '';      // all released text
    let held = '';      // text withheld because it may begin a stop string
    let reason: StopReason | undefined;
    let steps = 0, stepTokens = 0, proposed = 0, accepted = 0, deviceSeconds = 0, firstAt = 0;
    const perPos = new Array<number>(Math.max(0, o.blockSize - 1)).fill(0);
    const maxStop = o.stops.reduce((m, s) => Math.max(m, s.length), 0);

    // Commits tokens one by one, applying EOS / stop / maxTokens; returns true when finished.
    const commit = (tokens: Int32Array, draftedCount: number): boolean => {
      for (let i = 0; i < tokens.length; i++) {
        const id = tokens[i];
        if (eos.has(id)) { reason = 'eos'; return true; }
        ids.push(id);
        held += detok.push([id]);
        let release = '';
        if (maxStop > 0) {
          const hit = firstStop(held, o.stops);
          if (hit >= 0) {
            release = held.slice(0, hit);
            text += release;
            held = '';
            stream.pushToken({ id, text: release, drafted: i < draftedCount });
            reason = 'stop';
            return true;
          }
          const keep = Math.min(held.length, maxStop - 1);
          release = held.slice(0, held.length - keep);
          held = held.slice(held.length - keep);
        } else {
          release = held;
          held = '';
        }
        const last = ids.length >= o.maxTokens;
        if (last) {
          // The final token carries everything still held back (stop-string prefix, bytes of
          // an incomplete character), so the streamed text always adds up to done.text.
          release += held + detok.flush();
          held = '';
        }
        text += release;
        stream.pushToken({ id, text: release, drafted: i < draftedCount });
        if (last) { reason = 'maxTokens'; return true; }
      }
      return false;
    };

    try {
      const first: NativeStepResult = await this.engine.prefill(seq);
      deviceSeconds += first.deviceSeconds;
      firstAt = performance.now();
      let finished = commit(first.tokens, 0);
      while (!finished) {
        if (signal.aborted) { reason = 'abort'; break; }
        const r = await this.engine.step(seq);
        steps += 1;
        stepTokens += r.tokens.length;
        deviceSeconds += r.deviceSeconds;
        proposed += r.proposed;
        accepted += r.acceptedDrafts;
        for (let i = 0; i < r.acceptedDrafts && i < perPos.length; i++) perPos[i] += 1;
        stream.emit('step', {
          proposed: r.proposed,
          accepted: r.acceptedDrafts,
          acceptedIds: Array.from(r.tokens),
          positionAcceptance: perPos.map((_, i) => i < r.acceptedDrafts),
        });
        finished = commit(r.tokens, r.acceptedDrafts);
      }
      if (reason === undefined) reason = 'abort';
      if (reason !== 'stop') {
        const tail = held + detok.flush();
        held = '';
        if (tail) { text += tail; stream.pushToken({ id: -1, text: tail, drafted: false }); }
      }
    } finally {
      this.engine.finishSequence(seq);
    }
    const end = performance.now();
    const wall = (end - t0) / 1000;
    const gen = ids.length;
    const decodeWall = firstAt ? (end - firstAt) / 1000 : 0;
    return {
      reason: reason!,
      text,
      ids,
      stats: {
        promptTokens: prompt.length,
        tokens: gen,
        steps,
        meanAcceptanceLength: steps > 0 ? stepTokens / steps : 0,
        acceptanceRate: proposed > 0 ? accepted / proposed : 0,
        perPositionAcceptance: perPos.map((c) => (steps > 0 ? c / steps : 0)),
        ttft: firstAt ? (firstAt - t0) / 1000 : wall,
        tpot: gen > 1 ? decodeWall / (gen - 1) : 0,
        tokensPerSecond: wall > 0 ? gen / wall : 0,
        deviceSeconds,
        hostOverheadSeconds: Math.max(0, wall - deviceSeconds),
      },
    };
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.engine.dispose();
    this.client.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

function defaultCacheDir(): string {
  if (process.env.DFLASH_CACHE_DIR) return process.env.DFLASH_CACHE_DIR;
  const base = process.env.XDG_CACHE_HOME || path.join(require('os').homedir(), '.cache');
  return path.join(base, 'dflash', 'programs');
}

// The dtype most of a checkpoint's tensors use; the few others are converted while loading.
function weightDtype(tensors: TensorSource[]): 'f32' | 'bf16' | 'f16' {
  const bytes: Record<string, number> = {};
  for (const t of tensors) bytes[t.dtype] = (bytes[t.dtype] ?? 0) + t.nbytes;
  const top = Object.entries(bytes).sort((a, b) => b[1] - a[1])[0]?.[0] ?? 'F32';
  return top === 'BF16' ? 'bf16' : top === 'F16' ? 'f16' : 'f32';
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

function readJson(file: string): Record<string, unknown> {
  let raw: string;
  try {
    raw = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`cannot read ${file}: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(raw) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`${file} is not valid JSON: ${(e as Error).message}`);
  }
}

// z-lab drafters may store tensors with or without a `model.` prefix; the engine wants none.
function stripModelPrefix(tensors: TensorSource[]): TensorSource[] {
  return tensors.map((t) => (t.name.startsWith('model.') ? { ...t, name: t.name.slice('model.'.length) } : t));
}
