// safetensors checkpoints: reads only the headers (8-byte little-endian length + JSON) of a single
// file or of the shards listed in model.safetensors.index.json, validates them, and returns where
// every tensor lives (absolute byte offset, size, dtype, shape). The bytes themselves are mapped
// and uploaded by the native engine. Also writes small files: tests make tiny checkpoints with it.
//
// Header checks (each an Error naming the file and, where there is one, the tensor): header length
// larger than the file or than 100 MB, a header that is not UTF-8, JSON that is not an object, a
// tensor named twice, __metadata__ that is not a string map, entries without dtype / shape /
// data_offsets, offsets or dimensions that are not non-negative integers, unknown dtypes, byte
// counts that differ from product(shape) * dtype size, offsets not aligned to the element size,
// data past the end of the file (truncated), and a data section that is not exactly the tensors
// back to back: overlaps, gaps and trailing bytes are refused, as the reference reader does.
import * as fs from 'fs';
import * as path from 'path';

import type { TensorSource } from './native';

export type { TensorSource };

/** Bytes per element of every safetensors dtype we can measure. */
export const DTYPE_BYTES: Readonly<Record<string, number>> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, F8_E4M3: 1, F8_E5M2: 1, F8_E8M0: 1,
  I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1, C64: 8,
};
/** Dtypes the engine uploads (converted to f32 in-graph where needed). */
export const LOADABLE_DTYPES: ReadonlySet<string> = new Set(['F32', 'BF16', 'F16']);
/** What else a checkpoint with a quantization_config may hold (payloads, packed words, shapes). */
const QUANTIZED_DTYPES: ReadonlySet<string> = new Set(['I8', 'I32', 'I64', 'F8_E4M3', 'U8']);

const MAX_HEADER = 100_000_000;  // the reference implementation's limit

function fail(file: string, msg: string): never {
  throw new Error(`${file}: ${msg}`);
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

// fatal: a header that is not UTF-8 is an error, not text with U+FFFD in its tensor names.
// ignoreBOM: a byte-order mark stays in the text, where JSON.parse refuses it (as the reference does).
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Bytes [a, b) of the data section, holding tensor `name`. */
interface Span { name: string; a: number; b: number }

/**
 * The data section must hold exactly the tensors, back to back: sorted by offset, each starts where
 * the previous ended, from 0 to the end of the file. This is the reference reader's rule (so every
 * file it loads passes), and what makes the header trustworthy: an overlap reads one tensor's bytes
 * as another's, and a gap or trailing bytes mean the header does not describe this file (an edited
 * header, a header of another file, bytes appended).
 */
function checkCoverage(file: string, spans: Span[], dataBytes: number): void {
  spans.sort((x, y) => x.a - y.a || x.b - y.b);
  let end = 0;
  let prev: Span | undefined;
  for (const c of spans) {
    if (c.a < end)
      fail(file, `malformed header: tensor ${c.name} [${c.a}, ${c.b}) overlaps tensor ${prev!.name} [${prev!.a}, ${prev!.b})`);
    if (c.a > end)
      fail(file, `malformed header: bytes [${end}, ${c.a}) of the data section belong to no tensor ` +
        `(${prev ? `between tensor ${prev.name} and` : 'before'} tensor ${c.name})`);
    end = c.b;
    prev = c;
  }
  if (end !== dataBytes)
    fail(file, `malformed header: the data section has ${dataBytes} bytes but the tensors describe ${end}: ` +
      `${dataBytes - end} trailing bytes after ${prev ? `tensor ${prev.name}` : 'the header'} ` +
      '(a header that does not describe this file, or bytes appended to it)');
}

/**
 * The first top-level key that appears twice in `text` (valid JSON of an object), if any: JSON.parse
 * silently keeps the last of two equal keys, and a header naming a tensor twice is ambiguous.
 */
function repeatedKey(text: string): string | undefined {
  const seen = new Set<string>();
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') depth--;
    else if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      if (depth === 1) {
        let k = j + 1;
        while (text[k] === ' ' || text[k] === '\t' || text[k] === '\n' || text[k] === '\r') k++;
        if (text[k] === ':') {
          const key = JSON.parse(text.slice(i, j + 1)) as string;  // escapes decoded: "\u0061" is "a"
          if (seen.has(key)) return key;
          seen.add(key);
        }
      }
      i = j;
    }
  }
  return undefined;
}

/** Tensors of one .safetensors file, read from its header only (no tensor data is read). */
export function readSafetensorsHeader(file: string): TensorSource[] {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    throw new Error(`cannot open ${file}: ${(e as Error).message}`);
  }
  try {
    const size = fs.fstatSync(fd).size;
    if (size < 8) fail(file, `truncated: ${size} bytes, not even the 8-byte header length`);
    const lenBuf = Buffer.alloc(8);
    fs.readSync(fd, lenBuf, 0, 8, 0);
    const big = lenBuf.readBigUInt64LE(0);
    if (big === 0n || big > BigInt(size - 8))
      fail(file, `malformed header: header length ${big} does not fit in the file's ${size} bytes`);
    const headerLen = Number(big);
    if (headerLen > MAX_HEADER) fail(file, `malformed header: header length ${headerLen} exceeds ${MAX_HEADER} bytes`);
    const hb = Buffer.alloc(headerLen);
    if (fs.readSync(fd, hb, 0, headerLen, 8) !== headerLen) fail(file, 'truncated: short read of the header');
    let text: string;
    try {
      text = UTF8.decode(hb);
    } catch {
      fail(file, 'malformed header: not UTF-8 text');
    }
    let header: unknown;
    try {
      header = JSON.parse(text);
    } catch (e) {
      fail(file, `malformed header: not JSON (${(e as Error).message})`);
    }
    if (!header || typeof header !== 'object' || Array.isArray(header)) fail(file, 'malformed header: not a JSON object');
    const twice = repeatedKey(text);
    if (twice !== undefined) fail(file, `malformed header: ${JSON.stringify(twice)} appears twice`);
    const meta = (header as Record<string, unknown>).__metadata__;
    if (meta !== undefined && meta !== null &&
        (typeof meta !== 'object' || Array.isArray(meta) || !Object.values(meta).every((v) => typeof v === 'string')))
      fail(file, `malformed header: __metadata__ must map names to strings, got ${JSON.stringify(meta)}`);
    const dataStart = 8 + headerLen;
    const out: TensorSource[] = [];
    const spans: Span[] = [];
    for (const [name, v] of Object.entries(header as Record<string, unknown>)) {
      if (name === '__metadata__') continue;
      const t = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      if (!t || typeof t !== 'object' || typeof t.dtype !== 'string' || !Array.isArray(t.shape) || !Array.isArray(t.data_offsets))
        fail(file, `malformed header: tensor ${name} needs dtype, shape and data_offsets`);
      const shape = t.shape as unknown[];
      const offs = t.data_offsets as unknown[];
      if (!shape.every(isCount)) fail(file, `malformed header: tensor ${name} has shape ${JSON.stringify(shape)}`);
      if (offs.length !== 2 || !isCount(offs[0]) || !isCount(offs[1]) || offs[1] < offs[0])
        fail(file, `malformed header: tensor ${name} has data_offsets ${JSON.stringify(offs)}; they must be two integers 0 <= begin <= end`);
      const [a, b] = offs as [number, number];
      const width = DTYPE_BYTES[t.dtype];
      if (width === undefined) fail(file, `tensor ${name} has unknown dtype ${t.dtype}`);
      const count = (shape as number[]).reduce((x, y) => x * y, 1);
      if (b - a !== count * width)
        fail(file, `malformed header: tensor ${name}: ${b - a} bytes for ${t.dtype}[${shape.join(',')}], which needs ${count * width}`);
      if (a % width !== 0) fail(file, `malformed header: tensor ${name} starts at data offset ${a}, not aligned to its ${width}-byte ${t.dtype} elements`);
      if (dataStart + b > size) fail(file, `truncated: tensor ${name} ends at byte ${dataStart + b} but the file has ${size}`);
      spans.push({ name, a, b });
      out.push({ name, file, offset: dataStart + a, nbytes: b - a, dtype: t.dtype, shape: (shape as number[]).slice() });
    }
    checkCoverage(file, spans, size - dataStart);
    return out;
  } finally {
    fs.closeSync(fd);
  }
}

function readIndex(index: string): Record<string, string> {
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(index, 'utf8'));
  } catch (e) {
    throw new Error(`${index}: malformed index: ${(e as Error).message}`);
  }
  const map = (json as { weight_map?: unknown } | null)?.weight_map;
  if (!map || typeof map !== 'object' || Array.isArray(map)) throw new Error(`${index}: malformed index: no "weight_map" object`);
  for (const [name, f] of Object.entries(map as Record<string, unknown>)) {
    if (typeof f !== 'string' || f === '') throw new Error(`${index}: malformed index: weight_map entry for ${name} is not a file name`);
    const norm = path.normalize(f);
    if (path.isAbsolute(f) || norm.startsWith('..')) throw new Error(`${index}: weight_map entry for ${name} points outside the model directory: ${f}`);
  }
  return map as Record<string, string>;
}

/**
 * Every tensor of a model directory: the shards of model.safetensors.index.json, else
 * model.safetensors, else every *.safetensors file. Throws unless every tensor's dtype is one the
 * engine loads (F32, BF16, F16; with `quantized` also the payload dtypes of lib/quantization.ts),
 * with an Error naming the tensor and its file.
 */
export function readCheckpoint(dir: string, opts: { quantized?: boolean } = {}): TensorSource[] {
  if (!fs.existsSync(dir)) throw new Error(`model directory ${dir} does not exist`);
  const index = path.join(dir, 'model.safetensors.index.json');
  let tensors: TensorSource[];
  if (fs.existsSync(index)) {
    const map = readIndex(index);
    const files = [...new Set(Object.values(map))];
    for (const f of files)
      if (!fs.existsSync(path.join(dir, f))) throw new Error(`${index} lists shard ${f}, which is missing from ${dir}`);
    tensors = files.flatMap((f) => readSafetensorsHeader(path.join(dir, f)));
    const where = new Map(tensors.map((t) => [t.name, path.basename(t.file)]));
    for (const [name, f] of Object.entries(map)) {
      const found = where.get(name);
      if (found === undefined) throw new Error(`${index}: tensor ${name} is not in ${f}`);
      if (found !== path.basename(f)) throw new Error(`${index}: tensor ${name} is listed in ${f} but stored in ${found}`);
    }
  } else {
    const single = path.join(dir, 'model.safetensors');
    const files = fs.existsSync(single) ? ['model.safetensors'] : fs.readdirSync(dir).filter((f) => f.endsWith('.safetensors')).sort();
    if (files.length === 0) throw new Error(`no safetensors weights in ${dir} (expected model.safetensors or model.safetensors.index.json)`);
    tensors = files.flatMap((f) => readSafetensorsHeader(path.join(dir, f)));
  }
  const seen = new Map<string, string>();
  for (const t of tensors) {
    const prev = seen.get(t.name);
    if (prev !== undefined) throw new Error(`tensor ${t.name} appears in both ${prev} and ${t.file}`);
    seen.set(t.name, t.file);
    // A quantized checkpoint's payloads and shapes: lib/quantization.ts checks each against its scheme.
    if (!LOADABLE_DTYPES.has(t.dtype) && !(opts.quantized && QUANTIZED_DTYPES.has(t.dtype)))
      throw new Error(`${t.file}: tensor ${t.name} has dtype ${t.dtype}; dflash loads F32, BF16 and F16 weights` +
        (opts.quantized ? ' and the I8 / I32 (packed) / F8_E4M3 payloads of a quantized checkpoint' : ''));
  }
  return tensors;
}

/** Finds a tensor and checks its shape, with errors naming the tensor and the file(s). */
export function requireTensor(tensors: readonly TensorSource[], name: string, shape?: readonly number[]): TensorSource {
  const t = tensors.find((x) => x.name === name);
  if (!t) {
    const files = [...new Set(tensors.map((x) => path.basename(x.file)))];
    const dir = tensors.length ? path.dirname(tensors[0].file) : '(empty checkpoint)';
    const bare = name.replace(/^model\./, '');
    const near = tensors.find((x) => x.name.replace(/^model\./, '') === bare);
    const hint = near ? ` (there is ${near.name}: a "model." prefix differs)` : '';
    throw new Error(`checkpoint is missing tensor ${name}${hint}; looked in ${files.join(', ') || 'no files'} of ${dir}`);
  }
  if (shape && (shape.length !== t.shape.length || shape.some((d, i) => d !== t.shape[i])))
    throw new Error(`tensor ${name} in ${t.file} has shape [${t.shape}], expected [${shape}]`);
  return t;
}

export interface TensorToWrite {
  name: string;
  dtype: 'F32' | 'BF16' | 'F16' | 'I32' | 'I64' | 'I8' | 'U8' | 'F64' | 'I16' | 'U16' | 'BOOL';
  shape: number[];
  /** Raw little-endian bytes (any TypedArray / Buffer). A Float32Array given for a BF16 or F16
   *  tensor is converted (round to nearest even). */
  data: ArrayBufferView;
}

/** f32 -> bf16 bits, round to nearest even (NaN stays NaN). */
export function f32ToBf16(f: Float32Array): Uint16Array {
  const u32 = new Uint32Array(f.buffer, f.byteOffset, f.length);
  const out = new Uint16Array(f.length);
  for (let i = 0; i < f.length; i++) {
    const b = u32[i];
    out[i] = (b & 0x7fffffff) > 0x7f800000 ? (b >>> 16) | 0x40 : ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
  }
  return out;
}

/** f32 -> IEEE half bits, round to nearest even (overflow to ±inf, subnormals kept). */
export function f32ToF16(f: Float32Array): Uint16Array {
  const u32 = new Uint32Array(f.buffer, f.byteOffset, f.length);
  const out = new Uint16Array(f.length);
  for (let i = 0; i < f.length; i++) {
    const x = u32[i];
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    let mant = x & 0x7fffff;
    if (exp === 0xff) { out[i] = sign | 0x7c00 | (mant ? 0x200 : 0); continue; }
    let e = exp - 127 + 15;
    if (e >= 0x1f) { out[i] = sign | 0x7c00; continue; }
    if (e <= 0) {
      if (e < -10) { out[i] = sign; continue; }
      mant |= 0x800000;
      const shift = 14 - e;
      const half = 1 << (shift - 1);
      let m = mant >>> shift;
      const rest = mant & ((1 << shift) - 1);
      if (rest > half || (rest === half && (m & 1))) m++;
      out[i] = sign | m;
      continue;
    }
    let m = mant >>> 13;
    const rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest === 0x1000 && (m & 1))) m++;
    if (m === 0x400) { m = 0; e++; }
    out[i] = e >= 0x1f ? sign | 0x7c00 : sign | (e << 10) | m;
  }
  return out;
}

function bytesOf(t: TensorToWrite): Buffer {
  let d = t.data;
  if (d instanceof Float32Array && t.dtype === 'BF16') d = f32ToBf16(d);
  else if (d instanceof Float32Array && t.dtype === 'F16') d = f32ToF16(d);
  return Buffer.from(d.buffer, d.byteOffset, d.byteLength);
}

/** Writes a safetensors file. Tensor data is laid out by element size, largest first (as the
 *  reference writer does), so every tensor is aligned; the header is padded to 8 bytes. */
export function writeSafetensors(file: string, tensors: TensorToWrite[], metadata?: Record<string, string>): void {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  const names = new Set<string>();
  const ordered = tensors.map((t, i) => ({ t, i })).sort((x, y) => DTYPE_BYTES[y.t.dtype] - DTYPE_BYTES[x.t.dtype] || x.i - y.i);
  let offset = 0;
  const blobs: Buffer[] = [];
  for (const { t } of ordered) {
    if (names.has(t.name)) throw new Error(`writeSafetensors: tensor ${t.name} given twice`);
    names.add(t.name);
    const width = DTYPE_BYTES[t.dtype];
    if (width === undefined) throw new Error(`writeSafetensors: ${t.name} has unknown dtype ${t.dtype}`);
    const bytes = bytesOf(t);
    const want = t.shape.reduce((a, b) => a * b, 1) * width;
    if (bytes.length !== want) throw new Error(`writeSafetensors: ${t.name} has ${bytes.length} bytes, ${t.dtype}[${t.shape}] needs ${want}`);
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
