// The low-level runtime API: a PJRT client, device buffers and compiled executables, as thin
// TypeScript wrappers over the addon. Every method that touches the device returns a promise
// (the work runs off the JS thread); objects are released by dispose() / `using`, with
// finalizers in the addon as a backstop.
import { DType, native, NativeBuffer, NativeClient, NativeExecutable } from './native';
import { findPlugin } from './plugins';

export type { DType, DeviceInfo } from './native';

type HostArray = Float32Array | Int32Array | BigInt64Array | Uint8Array | Uint16Array | Int8Array;

const ELEMENT_BYTES: Record<DType, number> = { f32: 4, bf16: 2, f16: 2, s32: 4, s64: 8, u8: 1, pred: 1 };

export class DeviceBuffer {
  /** @internal */
  constructor(readonly handle: NativeBuffer) {}
  get dtype(): DType { return this.handle.dtype; }
  get dims(): number[] { return this.handle.dims; }
  get disposed(): boolean { return this.handle.disposed; }
  /** Copies the buffer to the host: Float32Array for f32, Int32Array for s32, BigInt64Array for
   *  s64, Uint16Array holding the raw bits for bf16/f16, Uint8Array for u8 and pred. */
  async toHost(): Promise<HostArray> { return (await this.handle.toHost()) as HostArray; }
  dispose(): void { this.handle.dispose(); }
  [Symbol.dispose](): void { if (!this.handle.disposed) this.handle.dispose(); }
}

export class Executable {
  /** @internal */
  constructor(readonly handle: NativeExecutable) {}
  get numOutputs(): number { return this.handle.numOutputs; }
  /** Runs the program on device 0. Inputs whose parameters carry `tf.aliasing_output` are donated
   *  (their DeviceBuffer becomes unusable) unless listed in `keep`. Outputs stay on the device. */
  async execute(inputs: DeviceBuffer[], options: { keep?: number[] } = {}): Promise<DeviceBuffer[]> {
    const outs = await this.handle.execute(inputs.map((b) => b.handle), { keep: options.keep });
    return outs.map((o) => new DeviceBuffer(o));
  }
  async serialize(): Promise<Uint8Array> { return this.handle.serialize(); }
  dispose(): void { this.handle.dispose(); }
  [Symbol.dispose](): void { if (!this.handle.disposed) this.handle.dispose(); }
}

export class Client {
  private constructor(readonly handle: NativeClient) {}

  /** Opens a PJRT client on the discovered (or given) plugin. */
  static async open(opts: { plugin?: string; options?: Record<string, string | number | boolean> } = {}): Promise<Client> {
    const plugin = findPlugin({ plugin: opts.plugin });
    return new Client(await native().openClient(plugin.path, opts.options));
  }

  get platformName(): string { return this.handle.platformName; }
  get platformVersion(): string { return this.handle.platformVersion; }
  get pluginPath(): string { return this.handle.pluginPath; }
  devices() { return this.handle.devices(); }

  /** Compiles StableHLO (MLIR text, or bytecode as bytes). */
  async compile(program: string | Uint8Array): Promise<Executable> {
    return new Executable(await this.handle.compile(program));
  }
  async deserialize(bytes: Uint8Array): Promise<Executable> {
    return new Executable(await this.handle.deserialize(bytes));
  }

  /** Copies host data to the device. `data`'s byte length must equal product(dims) x element size. */
  async upload(data: ArrayBufferView, dtype: DType, dims: number[]): Promise<DeviceBuffer> {
    if (!(dtype in ELEMENT_BYTES)) throw new TypeError(`unsupported dtype ${dtype}`);
    const want = dims.reduce((a, d) => a * d, 1) * ELEMENT_BYTES[dtype];
    if (data.byteLength !== want) {
      throw new RangeError(`upload: ${data.byteLength} bytes given for ${dtype}[${dims.join(',')}] which needs ${want}`);
    }
    return new DeviceBuffer(await this.handle.bufferFromHost(data, dtype, dims));
  }

  dispose(): void { this.handle.dispose(); }
  [Symbol.dispose](): void { try { this.handle.dispose(); } catch { /* already disposed */ } }
}

/** Live native objects (clients, buffers, executables, engines): for leak tests. */
export function liveObjects() {
  return native().liveObjects();
}
