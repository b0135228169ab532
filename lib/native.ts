// Loads the native addon (through node-gyp-build, so a prebuild or the local cmake-js build)
// and declares the shape of what it exports. Everything else in lib/ goes through here.
import * as path from 'path';

import { guardProcessExit } from './exit-guard';

export type DType = 'f32' | 'bf16' | 'f16' | 's32' | 's64' | 'u8' | 'pred';

export interface PluginProbe {
  path: string;
  apiMajor: number;
  apiMinor: number;
  /** The PJRT API version this addon was written for. */
  addonApiMajor: number;
  addonApiMinor: number;
  attributes: Record<string, string>;
}

export interface DeviceInfo {
  id: number;
  kind: string;
  debugString: string;
  addressable: boolean;
  memoryStats: Record<string, number>;
}

export interface NativeBuffer {
  readonly dtype: DType;
  readonly dims: number[];
  readonly disposed: boolean;
  toHost(): Promise<ArrayBufferView>;
  dispose(): void;
}

export interface NativeExecutable {
  readonly numOutputs: number;
  readonly disposed: boolean;
  execute(inputs: NativeBuffer[], options?: { keep?: number[] }): Promise<NativeBuffer[]>;
  serialize(): Promise<Uint8Array>;
  dispose(): void;
}

export interface NativeClient {
  readonly platformName: string;
  readonly platformVersion: string;
  readonly pluginPath: string;
  devices(): DeviceInfo[];
  compile(program: string | Uint8Array, options?: { format?: 'mlir' }): Promise<NativeExecutable>;
  deserialize(bytes: Uint8Array): Promise<NativeExecutable>;
  /** `device`: a device id (devices()[i].id); the plugin's first device by default. */
  bufferFromHost(data: ArrayBufferView, dtype: DType, dims: number[], device?: number): Promise<NativeBuffer>;
  dispose(): void;
}

/** A tensor in a safetensors file, as the engine uploads it (read by mmap in native code). */
export interface TensorSource {
  name: string;
  file: string;
  offset: number;
  nbytes: number;
  dtype: string;
  shape: number[];
  /** A GGUF file's data section start (safetensors: read from the file's own header). */
  dataStart?: number;
  /** GGUF Llama q/k: rows in llama.cpp's interleaved-RoPE order over this many heads. */
  ropeHeads?: number;
}

/** One sequence's result of one scheduler iteration (see native/engine/sequence.h). */
export interface NativeSequenceEvent {
  id: number;
  /** Tokens committed this iteration, in order (EOS excluded). */
  tokens: Int32Array;
  /** Of `tokens`, how many were drafted and accepted. */
  drafted: number;
  /** Drafts offered in this step (block - 1; 0 for a plain step). */
  proposed: number;
  /** Tokens verified in this step (1 = plain decoding). */
  block: number;
  /** Device seconds of the iteration this step ran in (shared by its rows). */
  seconds: number;
  finish?: 'eos' | 'maxTokens' | 'abort' | 'error';
  error?: string;
  /** Prompt tokens found in the prefix cache when the sequence was admitted (absent before). */
  cachedTokens?: number;
  /** With request option logprobs >= 0: one per token of `tokens`, `top` alternatives each. */
  logprobs?: NativeLogprobs;
  /** With promptLogprobs >= 0: of the prompt tokens at positions from, from + 1, ... */
  promptLogprobs?: NativeLogprobs & { from: number };
}

export interface NativeLogprobs {
  logprobs: Float32Array;
  top: number;
  /** top per token, most likely first */
  topIds: Int32Array;
  topLogprobs: Float32Array;
}

/** Compile / disk-cache activity of the engine's program cache. */
export interface NativeProgramEvent {
  phase: 'program';
  kind: 'compile-start' | 'compile-done' | 'cache-load' | 'cache-reject' | 'unload';
  program: string;
  seconds: number;
  detail?: string;
}

export interface NativeWeightProgress {
  phase: 'weights';
  model: 'target' | 'drafter';
  tensors: number;
  totalTensors: number;
  bytes: number;
  totalBytes: number;
}

export interface NativeEngineStats {
  iterations: number;
  decodeIterations: number;
  prefillCalls: number;
  preemptions: number;
  /** Prefill calls that caught a drafter's context up after adaptive speculation decoded plainly. */
  contextCatchUps: number;
  tokens: number;
  runningSequences: number;
  queuedSequences: number;
  freePages: number;
  totalPages: number;
  lastBlock: number;
  hostTransfers: number;
  executions: number;
  cacheCopies: number;
  deviceSeconds: number;
  compiles: number;
  diskCacheHits: number;
  diskCacheRejects: number;
  /** KV pages held by the prefix cache (shared by running sequences or kept for later ones). */
  cachedPages: number;
  /** Prefix caching since load: prompt tokens looked up at admission, and of those found cached. */
  prefixCacheQueries: number;
  prefixCacheHits: number;
  /** Structured output: verify rows that ran under a grammar, and the host seconds their grammar
   *  engine took (token masks, draft checks, commits). */
  grammarRows: number;
  grammarSeconds: number;
  /** Engine-wide: positionOffered[i] steps offered draft position i + 1, positionAccepted[i] accepted it. */
  positionOffered: number[];
  positionAccepted: number[];
  platform: string;
  dtype: string;
  kvDtype: string;
  dtypeReason: string;
  weightBytes: number;
  kvCacheBytes: number;
  pageBytes: number;
  maxSeqLen: number;
  maxBlock: number;
  pageSize: number;
  maxSequences: number;
  /** Whether prefix caching and adaptive speculation are on as the engine runs (a hybrid target
   *  turns both off: its recurrent state has no pages to share, and no plain streaks to catch up). */
  prefixCaching: boolean;
  adaptive: boolean;
  /** Hybrid targets (Qwen3.5): the recurrent group beside the KV pages — its layers, one
   *  sequence's state in bytes (conv windows + f32 states, in kvCacheBytes), and its slots (one per
   *  sequence + one for padding rows); null for attention-only targets. */
  recurrentState: { layers: number; bytesPerSequence: number; slots: number } | null;
  /** Sliding-window layers (gpt-oss) keep their K/V in a ring of `ringPages` pages per sequence
   *  slot instead of the shared pages, so a sequence holds about (window + one step) of them however
   *  long it grows: their layers, the widest window, and one ring's bytes (K and V, in
   *  kvCacheBytes; the pages, `pageBytes`, then hold the full-attention layers only). Null: no
   *  sliding layers (or every attention layer slides: they stay in the pages). */
  slidingWindow: { layers: number; window: number; ringPages: number; bytesPerSequence: number } | null;
  /** Compiled programs: `loaded` now (every replica), `servingSet` the programs precompile()
   *  makes for maxSeqLen-token sequences (one replica; it does not grow with the context), and the
   *  process's memory maps (`processMaps`, each loaded executable holds some) against the system's
   *  limit (`mapLimit`, vm.max_map_count; 0 where unknown); `maskBuffers`: the all-ones token
   *  masks kept on the device for verifies that no grammar constrains (one per rows x block
   *  bucket in use, every replica); `programMaps`: the memory maps the loaded programs' loads
   *  added (programMaps / loaded: the maps one program costs); `unloaded`: programs unloaded so
   *  far (maxLoadedPrograms, or near mapLimit), reloaded from the disk cache when next needed. */
  programs: { loaded: number; servingSet: number; processMaps: number; mapLimit: number; maskBuffers: number; programMaps: number; unloaded: number };
  /** The devices in use: `dataParallel` replicas of `tensorParallel` devices each. Counters and
   *  sequence counts above are summed over the replicas; weightBytes, kvCacheBytes and pageBytes
   *  are one replica's model and pool (over all its devices). */
  mesh: MeshStats;
}

export interface MeshStats {
  tensorParallel: number;
  dataParallel: number;
  replicas: Array<{
    /** Each device of the replica: what it holds of the weights (its shards) and of the KV pool. */
    devices: Array<{ id: number; weightBytes: number; kvCacheBytes: number }>;
    runningSequences: number;
    queuedSequences: number;
    freePages: number;
    totalPages: number;
    /** Requests the engine sent to this replica (the least loaded at the time), ever. */
    submitted: number;
  }>;
}

export interface NativeEngine {
  load(target: TensorSource[], drafter: TensorSource[] | undefined,
    onProgress?: (e: NativeWeightProgress | NativeProgramEvent) => void): Promise<{ unusedTensors: string[] }>;
  /** Queues a request; throws for invalid options or prompts, or with code QUEUE_FULL. */
  submit(prompt: Int32Array, options: Record<string, unknown>, grammar?: { kind: string; text: string }): number;
  cancel(id: number): void;
  stats(): NativeEngineStats;
  precompile(options: { context: number },
    onProgress?: (p: { phase: 'precompile'; done: number; total: number }) => void): Promise<{ programs: number }>;
  /** Stops the scheduler; resolves once the device memory is released. */
  dispose(): Promise<void>;
}

export interface OptionSchema {
  name: string;
  kind: 'integer' | 'number' | 'boolean' | 'string' | 'enum';
  default: number | boolean | string;
  min?: number;
  max?: number;
  powerOfTwo?: boolean;
  choices?: string[];
  doc: string;
}

/** Oracle and benchmark hooks (not public API: lib/internal/probe.ts). */
export interface NativeInternal {
  scoreLogits(engine: NativeEngine, batch: Int32Array[], hiddenLayers?: number[]): Promise<{ logits: Float32Array[]; hidden?: Float32Array[] }>;
  draftLogits(engine: NativeEngine, features: Float32Array, rows: number, lastToken: number, blockSize: number): Promise<{ logits: Float32Array; draft: Int32Array }>;
  timeVerify(engine: NativeEngine, rows: number, k: number, context: number, reps: number, mask?: string): Promise<number>;
  timeDraft(engine: NativeEngine, rows: number, block: number, context: number, reps: number): Promise<number>;
  timeCollectives(engine: NativeEngine, rows: number, k: number, reps: number): Promise<number>;
}

export interface NativeAddon {
  probePlugin(path: string): PluginProbe;
  openClient(pluginPath: string, options?: Record<string, string | number | boolean>): Promise<NativeClient>;
  liveObjects(): { clients: number; buffers: number; executables: number; engines: number };
  /** Ends the process now with `code`, running no exit handler (lib/exit-guard.ts). */
  exitNow(code: number): never;
  createEngine(client: NativeClient, config: Record<string, unknown>,
    onEvents: (kind: 'tokens' | 'program', data: NativeSequenceEvent[] | NativeProgramEvent) => void): NativeEngine;
  optionSchemas(): { engine: OptionSchema[]; request: OptionSchema[] };
  dtypePolicy(platform: string, checkpointDtype: 'f32' | 'bf16' | 'f16'): string;
  /** What each device of a tensor-parallel group of `tensorParallel` holds, with the dtype an
   *  engine picks on `platform`; throws a RangeError naming the config field when the models do
   *  not split over that many devices. */
  meshLayout(target: Record<string, unknown>, drafter: Record<string, unknown> | undefined, tensorParallel: number, platform: string,
    checkpointDtype: 'f32' | 'bf16' | 'f16', quantizedWeights?: 'auto' | 'narrow' | 'dequantize'): { dtype: string; weightBytes: number; kvHeads: number; splitVocab: boolean; kvBytesPerToken: number };
  /** The programs precompile() makes for these engine options, a resolved maxSeqLen, the
   *  drafter's block (0: none) and a context (engine/serving_plan.h). */
  servingPlan(options: Record<string, unknown>, maxSeqLen: number, block: number, context: number): { kind: string; rows: number; tokens: number; block: number; text: string }[];
  /** Throws the schema's error for a bad generate() option (the same check submit() runs). */
  validateRequestOptions(options: Record<string, unknown>): void;
  internal: NativeInternal;
}

let cached: NativeAddon | undefined;

export function native(): NativeAddon {
  if (!cached) {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const load = require('node-gyp-build') as (dir: string) => NativeAddon;
    cached = load(packageRoot());
    guardProcessExit(cached);
  }
  return cached;
}

/** The package root (works from lib/ under ts and from dist/lib/ once compiled). */
export function packageRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 4; i++) {
    try {
      require.resolve(path.join(dir, 'package.json'));
      return dir;
    } catch {
      dir = path.dirname(dir);
    }
  }
  return path.join(__dirname, '..');
}
