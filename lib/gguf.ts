// GGUF files (llama.cpp's format, versions 2 and 3): reads the header — metadata key/values and
// tensor descriptions — and checks it against the file, without reading tensor data. Layout:
// "GGUF", u32 version, u64 tensor count, u64 key/value count, the key/values (u64-length UTF-8
// keys, a u32 value type, the value), the tensor infos (name, u32 n_dims, u64 dims innermost
// first, u32 ggml type, u64 offset into the data section), padding to general.alignment (32 by
// default), then the data section. Every error names the file and, where there is one, the key
// or tensor. What the tensors mean is lib/gguf-model.ts's business.
import * as fs from 'fs';

/** ggml tensor types by id: [name, values per block, bytes per block]. */
const GGML_TYPES: Record<number, [string, number, number]> = {
  0: ['F32', 1, 4], 1: ['F16', 1, 2], 2: ['Q4_0', 32, 18], 3: ['Q4_1', 32, 20], 6: ['Q5_0', 32, 22], 7: ['Q5_1', 32, 24],
  8: ['Q8_0', 32, 34], 9: ['Q8_1', 32, 36], 10: ['Q2_K', 256, 84], 11: ['Q3_K', 256, 110], 12: ['Q4_K', 256, 144],
  13: ['Q5_K', 256, 176], 14: ['Q6_K', 256, 210], 15: ['Q8_K', 256, 292], 16: ['IQ2_XXS', 256, 66], 17: ['IQ2_XS', 256, 74],
  18: ['IQ3_XXS', 256, 98], 19: ['IQ1_S', 256, 50], 20: ['IQ4_NL', 32, 18], 21: ['IQ3_S', 256, 110], 22: ['IQ2_S', 256, 82],
  23: ['IQ4_XS', 256, 136], 24: ['I8', 1, 1], 25: ['I16', 1, 2], 26: ['I32', 1, 4], 27: ['I64', 1, 8], 28: ['F64', 1, 8],
  29: ['IQ1_M', 256, 56], 30: ['BF16', 1, 2], 34: ['TQ1_0', 256, 54], 35: ['TQ2_0', 256, 66], 39: ['MXFP4', 32, 17],
};

/** The tensor types the engine loads from GGUF (the rest are refused, naming the tensor). */
export const GGUF_LOADABLE_TYPES: ReadonlySet<string> = new Set(['F32', 'F16', 'BF16', 'Q8_0', 'Q4_0', 'Q4_1', 'Q4_K', 'Q5_K', 'Q6_K']);

export type GgufValue = number | bigint | boolean | string | GgufValue[];

export interface GgufTensorInfo {
  name: string;
  /** Dimensions as GGUF lists them: innermost (ne[0], a row's length) first. */
  dims: number[];
  /** The ggml type's name (F32, Q4_K, ...), or `type <id>` for an id this reader does not know. */
  type: string;
  /** Absolute byte offset in the file, and the byte count. */
  offset: number;
  nbytes: number;
}

export interface GgufHeader {
  file: string;
  version: number;
  metadata: Map<string, GgufValue>;
  tensors: GgufTensorInfo[];
  dataStart: number;
}

const MAX_STRING = 1 << 26;       // 64 MiB: no key, value or name is longer in any real file
const MAX_ITEMS = 1 << 26;        // array elements, keys, tensors
const CHUNK = 1 << 20;

/** Sequential little-endian reads through a file, a chunk at a time. */
class Reader {
  private buf = Buffer.alloc(0);
  private bufStart = 0;
  pos = 0;
  constructor(private readonly fd: number, readonly size: number, private readonly file: string) {}

  private need(n: number, what: string): Buffer {
    if (this.pos + n > this.size) throw new Error(`${this.file}: truncated GGUF header: ${what} runs past the end of the file (${this.size} bytes)`);
    if (this.pos < this.bufStart || this.pos + n > this.bufStart + this.buf.length) {
      this.buf = Buffer.alloc(Math.max(n, CHUNK));
      const got = fs.readSync(this.fd, this.buf, 0, this.buf.length, this.pos);
      this.buf = this.buf.subarray(0, got);
      this.bufStart = this.pos;
    }
    const at = this.pos - this.bufStart;
    this.pos += n;
    return this.buf.subarray(at, at + n);
  }
  magic(): string { return this.need(4, 'the magic').toString('latin1'); }
  u8(what: string) { return this.need(1, what).readUInt8(0); }
  u32(what: string) { return this.need(4, what).readUInt32LE(0); }
  u64(what: string): number {
    const v = this.need(8, what).readBigUInt64LE(0);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`${this.file}: ${what} ${v} is too large`);
    return Number(v);
  }
  string(what: string): string {
    const n = this.u64(`${what}'s length`);
    if (n > MAX_STRING) throw new Error(`${this.file}: ${what} is ${n} bytes long; not a GGUF file, or a corrupt one`);
    return UTF8.decode(this.need(n, what));
  }
  value(type: number, what: string, depth = 0): GgufValue {
    switch (type) {
      case 0: return this.need(1, what).readUInt8(0);
      case 1: return this.need(1, what).readInt8(0);
      case 2: return this.need(2, what).readUInt16LE(0);
      case 3: return this.need(2, what).readInt16LE(0);
      case 4: return this.need(4, what).readUInt32LE(0);
      case 5: return this.need(4, what).readInt32LE(0);
      case 6: return shortestF32(this.need(4, what).readFloatLE(0));
      case 7: return this.u8(what) !== 0;
      case 8: return this.string(what);
      case 10: return this.need(8, what).readBigUInt64LE(0);
      case 11: return this.need(8, what).readBigInt64LE(0);
      case 12: return this.need(8, what).readDoubleLE(0);
      case 9: {
        if (depth > 0) throw new Error(`${this.file}: ${what} is an array of arrays, which dflash does not read`);
        const inner = this.u32(`${what}'s element type`);
        const n = this.u64(`${what}'s length`);
        if (n > MAX_ITEMS) throw new Error(`${this.file}: ${what} has ${n} elements; not a GGUF file, or a corrupt one`);
        const out: GgufValue[] = new Array(n);
        for (let i = 0; i < n; i++) out[i] = this.value(inner, what, depth + 1);
        return out;
      }
      default: throw new Error(`${this.file}: ${what} has unknown value type ${type}`);
    }
  }
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** The shortest decimal that rounds to the same f32: a GGUF stores rms_norm_eps 1e-6 as the f32
 *  9.99999997e-7, and the config should read 1e-6 as the Hugging Face one does (the engine rounds
 *  it to the same f32 either way, and equal configs make equal programs). */
function shortestF32(v: number): number {
  if (!Number.isFinite(v)) return v;
  for (let p = 1; p <= 9; p++) {
    const x = Number(v.toPrecision(p));
    if (Math.fround(x) === v) return x;
  }
  return v;
}

/** True when the file starts with the GGUF magic. */
export function isGgufFile(file: string): boolean {
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const b = Buffer.alloc(4);
      return fs.readSync(fd, b, 0, 4, 0) === 4 && b.toString('latin1') === 'GGUF';
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return false;
  }
}

/** The header of a GGUF file, checked: every tensor's bytes inside the data section, none overlapping. */
export function readGgufHeader(file: string): GgufHeader {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const r = new Reader(fd, size, file);
    if (size < 4 || r.magic() !== 'GGUF') throw new Error(`${file} is not a GGUF file (no "GGUF" magic at its start)`);
    const version = r.u32('the version');
    if (version !== 2 && version !== 3) throw new Error(`${file}: GGUF version ${version} is not supported (versions 2 and 3 are)`);
    const nTensors = r.u64('the tensor count');
    const nKv = r.u64('the key/value count');
    if (nTensors > MAX_ITEMS || nKv > MAX_ITEMS) throw new Error(`${file}: ${nTensors} tensors and ${nKv} keys: a corrupt GGUF header`);
    const metadata = new Map<string, GgufValue>();
    for (let i = 0; i < nKv; i++) {
      const key = r.string(`key ${i}`);
      if (metadata.has(key)) throw new Error(`${file}: metadata key ${key} is given twice`);
      metadata.set(key, r.value(r.u32(`the type of ${key}`), `metadata ${key}`));
    }
    const alignment = metadata.get('general.alignment') ?? 32;
    if (typeof alignment !== 'number' || alignment <= 0 || (alignment & (alignment - 1)) !== 0)
      throw new Error(`${file}: general.alignment ${String(alignment)} is not a power of two`);
    const infos: { name: string; dims: number[]; type: string; rel: number; nbytes: number }[] = [];
    const names = new Set<string>();
    for (let i = 0; i < nTensors; i++) {
      const name = r.string(`tensor ${i}'s name`);
      if (names.has(name)) throw new Error(`${file}: tensor ${name} is described twice`);
      names.add(name);
      const nDims = r.u32(`tensor ${name}'s dimension count`);
      if (nDims < 1 || nDims > 4) throw new Error(`${file}: tensor ${name} has ${nDims} dimensions (GGUF tensors have 1 to 4)`);
      const dims = Array.from({ length: nDims }, (_, k) => r.u64(`tensor ${name}'s dimension ${k}`));
      const id = r.u32(`tensor ${name}'s type`);
      const rel = r.u64(`tensor ${name}'s offset`);
      const t = GGML_TYPES[id];
      const count = dims.reduce((a, b) => a * b, 1);
      if (!Number.isSafeInteger(count)) throw new Error(`${file}: tensor ${name} has too many elements`);
      if (t && dims[0] % t[1] !== 0)
        throw new Error(`${file}: tensor ${name} [${dims.join(', ')}] has rows of ${dims[0]} values, not whole ${t[0]} blocks of ${t[1]}`);
      if (rel % alignment !== 0) throw new Error(`${file}: tensor ${name}'s offset ${rel} is not aligned to ${alignment} bytes`);
      infos.push({ name, dims, type: t ? t[0] : `type ${id}`, rel, nbytes: t ? (count / t[1]) * t[2] : -1 });
    }
    const dataStart = Math.ceil(r.pos / alignment) * alignment;
    const tensors = infos.map((t) => ({ name: t.name, dims: t.dims, type: t.type, offset: dataStart + t.rel, nbytes: t.nbytes }));
    const known = tensors.filter((t) => t.nbytes >= 0).sort((a, b) => a.offset - b.offset);
    for (let i = 0; i < known.length; i++) {
      const t = known[i];
      if (t.offset + t.nbytes > size)
        throw new Error(`${file}: tensor ${t.name} (bytes [${t.offset}, ${t.offset + t.nbytes})) lies past the end of the file (${size} bytes; truncated?)`);
      const next = known[i + 1];
      if (next && t.offset + t.nbytes > next.offset) throw new Error(`${file}: tensors ${t.name} and ${next.name} overlap`);
    }
    return { file, version, metadata, tensors, dataStart };
  } finally {
    fs.closeSync(fd);
  }
}
