// safetensors checkpoints: reads only the headers (8-byte length + JSON) of a single file or
// of the shards listed in model.safetensors.index.json, and returns where every tensor lives.
// The bytes themselves are mapped and uploaded by the native engine. Also writes small files
// (tests make their own tiny checkpoints with it).
import * as fs from 'fs';
import * as path from 'path';

import type { TensorSource } from './native';

const DTYPE_BYTES: Record<string, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};
const LOADABLE = new Set(['F32', 'BF16', 'F16']);

function fail(file: string, msg: string): never {
  throw new Error(`${file}: ${msg}`);
}

/** Tensors of one .safetensors file (header only). */
export function readSafetensorsHeader(file: string): TensorSource[] {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    throw new Error(`cannot open ${file}: ${(e as Error).message}`);
  }
  try {
    const size = fs.fstatSync(fd).size;
    if (size < 8) fail(file, `truncated: ${size} bytes, not even a header length`);
    const lenBuf = Buffer.alloc(8);
    fs.readSync(fd, lenBuf, 0, 8, 0);
    const headerLen = Number(lenBuf.readBigUInt64LE(0));
    if (headerLen <= 0 || 8 + headerLen > size) fail(file, `malformed header: header length ${headerLen} does not fit in ${size} bytes`);
    const hb = Buffer.alloc(headerLen);
    fs.readSync(fd, hb, 0, headerLen, 8);
    let header: Record<string, unknown>;
    try {
      header = JSON.parse(hb.toString('utf8')) as Record<string, unknown>;
    } catch (e) {
      fail(file, `malformed header: ${(e as Error).message}`);
    }
    const dataStart = 8 + headerLen;
    const out: TensorSource[] = [];
    for (const [name, v] of Object.entries(header)) {
      if (name === '__metadata__') continue;
      const t = v as { dtype?: string; shape?: number[]; data_offsets?: [number, number] };
      if (!t || typeof t.dtype !== 'string' || !Array.isArray(t.shape) || !Array.isArray(t.data_offsets) || t.data_offsets.length !== 2)
        fail(file, `malformed header entry for tensor ${name}`);
      const [a, b] = t.data_offsets;
      const width = DTYPE_BYTES[t.dtype];
      if (width === undefined) fail(file, `tensor ${name} has unknown dtype ${t.dtype}`);
      const count = t.shape.reduce((x, y) => x * y, 1);
      if (!(b >= a) || b - a !== count * width)
        fail(file, `tensor ${name}: ${b - a} bytes for ${t.dtype}[${t.shape.join(',')}], which needs ${count * width}`);
      if (dataStart + b > size) fail(file, `truncated: tensor ${name} ends at byte ${dataStart + b} of ${size}`);
      out.push({ name, file, offset: dataStart + a, nbytes: b - a, dtype: t.dtype, shape: t.shape.slice() });
    }
    return out;
  } finally {
    fs.closeSync(fd);
  }
}

/** Every tensor of a model directory: model.safetensors, or the shards of its index. */
export function readCheckpoint(dir: string): TensorSource[] {
  const index = path.join(dir, 'model.safetensors.index.json');
  let tensors: TensorSource[];
  if (fs.existsSync(index)) {
    let map: Record<string, string>;
    try {
      map = (JSON.parse(fs.readFileSync(index, 'utf8')) as { weight_map: Record<string, string> }).weight_map;
    } catch (e) {
      throw new Error(`${index}: malformed index: ${(e as Error).message}`);
    }
    if (!map || typeof map !== 'object') throw new Error(`${index}: no weight_map`);
    const files = [...new Set(Object.values(map))];
    tensors = files.flatMap((f) => readSafetensorsHeader(path.join(dir, f)));
    const have = new Set(tensors.map((t) => t.name));
    for (const [name, f] of Object.entries(map)) if (!have.has(name)) throw new Error(`${index}: tensor ${name} is not in ${f}`);
  } else {
    const single = path.join(dir, 'model.safetensors');
    if (!fs.existsSync(single)) {
      const any = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.safetensors')) : [];
      if (any.length === 0) throw new Error(`no safetensors weights in ${dir} (expected model.safetensors or model.safetensors.index.json)`);
      tensors = any.sort().flatMap((f) => readSafetensorsHeader(path.join(dir, f)));
    } else tensors = readSafetensorsHeader(single);
  }
  for (const t of tensors)
    if (!LOADABLE.has(t.dtype)) throw new Error(`${t.file}: tensor ${t.name} has dtype ${t.dtype}; dflash loads F32, BF16 and F16 weights`);
  return tensors;
}

/** Finds a tensor and checks its shape, with an error naming the tensor and file. */
export function requireTensor(tensors: TensorSource[], name: string, shape?: number[]): TensorSource {
  const t = tensors.find((x) => x.name === name);
  if (!t) throw new Error(`checkpoint is missing tensor ${name}`);
  if (shape && (shape.length !== t.shape.length || shape.some((d, i) => d !== t.shape[i])))
    throw new Error(`tensor ${name} in ${t.file} has shape [${t.shape}], expected [${shape}]`);
  return t;
}

export interface TensorToWrite {
  name: string;
  dtype: 'F32' | 'BF16' | 'F16' | 'I32';
  shape: number[];
  data: Uint8Array | Float32Array | Uint16Array | Int32Array;
}

/** Writes a safetensors file (8-byte aligned data, tensors in the given order). */
export function writeSafetensors(file: string, tensors: TensorToWrite[], metadata?: Record<string, string>): void {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  const blobs: Buffer[] = [];
  for (const t of tensors) {
    const bytes = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    const want = t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype];
    if (bytes.length !== want) throw new Error(`writeSafetensors: ${t.name} has ${bytes.length} bytes, shape needs ${want}`);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    offset += bytes.length;
    blobs.push(bytes);
  }
  let json = JSON.stringify(header);
  while ((8 + Buffer.byteLength(json)) % 8 !== 0) json += ' ';
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  fs.writeFileSync(file, Buffer.concat([len, Buffer.from(json, 'utf8'), ...blobs]));
}
