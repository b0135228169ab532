// Loads the native addon (through node-gyp-build, so a prebuild or the local cmake-js build)
// and declares the shape of what it exports. Everything else in lib/ goes through here.
import * as path from 'path';

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
  bufferFromHost(data: ArrayBufferView, dtype: DType, dims: number[]): Promise<NativeBuffer>;
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
}

export interface NativeStepResult {
  /** Tokens committed by this call, in order. */
  tokens: Int32Array;
  /** Of `tokens`, how many were drafted by the drafter and accepted (the rest came from the target). */
  acceptedDrafts: number;
  /** Drafted tokens proposed in this step (block size - 1, or 0 without a drafter). */
  proposed: number;
  /** Seconds spent in device work (executions + the transfer) by this call. */
  deviceSeconds: number;
}

export interface NativeEngine {
  loadWeights(which: 'target' | 'drafter', tensors: TensorSource[],
    onProgress?: (p: { tensors: number; totalTensors: number; bytes: number; totalBytes: number }) => void): Promise<void>;
  startSequence(prompt: Int32Array, options: {
    maxNewTokens: number; speculative: boolean; blockSize: number;
    temperature?: number; topP?: number; topK?: number; seed?: number;
  }): number;
  prefill(seq: number): Promise<NativeStepResult>;
  step(seq: number): Promise<NativeStepResult>;
  finishSequence(seq: number): void;
  /** Runs the target score program with logits for test/oracle use (no state kept). */
  scoreLogits(batch: Int32Array[], options?: { hiddenLayers?: number[] }): Promise<{ logits: Float32Array[]; hidden?: Float32Array[] }>;
  /** Runs the drafter alone on given features (oracle tests). */
  draftLogits(features: Float32Array, rows: number, lastToken: number, blockSize: number): Promise<{ logits: Float32Array; draft: Int32Array }>;
  /** Median seconds of one verify execution scoring k tokens after `context` tokens. */
  timeVerify(k: number, context: number, reps: number): Promise<number>;
  /** Median seconds of one drafter execution with block `block` over `context` rows. */
  timeDraft(block: number, context: number, reps: number): Promise<number>;
  stats(): { hostTransfers: number; executions: number; compiles: number; diskCacheHits: number; cacheCopies: number; freePages: number; totalPages: number };
  dispose(): void;
}

export interface NativeAddon {
  probePlugin(path: string): PluginProbe;
  openClient(pluginPath: string, options?: Record<string, string | number | boolean>): Promise<NativeClient>;
  liveObjects(): { clients: number; buffers: number; executables: number; engines: number };
  createEngine(client: NativeClient, config: Record<string, unknown>): Promise<NativeEngine>;
}

let cached: NativeAddon | undefined;

export function native(): NativeAddon {
  if (!cached) {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const load = require('node-gyp-build') as (dir: string) => NativeAddon;
    cached = load(packageRoot());
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
