// safetensors headers (lib/safetensors.ts): a file written by the reference Python writer is read
// at the offsets we report, single and sharded checkpoints, header-only reading of a 5 GB file,
// one clear error per kind of broken input, requireTensor, and the writer's dtype conversions.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { describe, expect, it } from 'vitest';

import {
  f32ToBf16, f32ToF16, readCheckpoint, readSafetensorsHeader, requireTensor, TensorToWrite, writeSafetensors,
} from '../lib/safetensors';

const REF = path.join(__dirname, 'fixtures', 'safetensors');
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'dflash-st-'));

/** A raw file: 8-byte length + header text + `data` bytes. */
function raw(file: string, header: unknown, data = 0): void {
  const h = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  fs.writeFileSync(file, Buffer.concat([len, h, Buffer.alloc(data)]));
}

const bf16ToF32 = (u: number) => new Float32Array(new Uint32Array([u << 16]).buffer)[0];
function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

describe('reading a file made by the reference writer (Python safetensors + torch)', () => {
  const expected = JSON.parse(fs.readFileSync(path.join(REF, 'reference.json'), 'utf8'));
  const file = path.join(REF, 'reference.safetensors');

  it('reports dtype, shape, absolute offset and size of every tensor', () => {
    const tensors = readSafetensorsHeader(file);
    const bytes = fs.readFileSync(file);
    expect(Number(bytes.readBigUInt64LE(0))).toBe(expected.header_len);
    expect(tensors.map((t) => t.name).sort()).toEqual(Object.keys(expected.tensors).sort());
    for (const t of tensors) {
      const e = expected.tensors[t.name];
      expect(t.file).toBe(file);
      expect(t.dtype).toBe(e.dtype);
      expect(t.shape).toEqual(e.shape);
      expect(t.offset).toBe(8 + expected.header_len + e.data_offsets[0]);
      expect(t.nbytes).toBe(e.data_offsets[1] - e.data_offsets[0]);
    }
  });

  it('the bytes at each reported offset are the tensor values', () => {
    const bytes = fs.readFileSync(file);
    for (const t of readSafetensorsHeader(file)) {
      const b = bytes.subarray(t.offset, t.offset + t.nbytes);
      const e = expected.tensors[t.name];
      let got: (number | string)[];
      if (t.dtype === 'F32') got = Array.from({ length: t.nbytes / 4 }, (_, i) => b.readFloatLE(i * 4));
      else if (t.dtype === 'BF16') got = Array.from({ length: t.nbytes / 2 }, (_, i) => bf16ToF32(b.readUInt16LE(i * 2)));
      else if (t.dtype === 'F16') got = Array.from({ length: t.nbytes / 2 }, (_, i) => f16ToF32(b.readUInt16LE(i * 2)));
      else if (t.dtype === 'I64') got = Array.from({ length: t.nbytes / 8 }, (_, i) => b.readBigInt64LE(i * 8).toString());
      else got = Array.from(b, (x) => String(x));
      expect(got, t.name).toEqual(e.values);
    }
  });

  it('our f32 -> bf16 / f16 rounding agrees with torch on the same values', () => {
    const bf = new Float32Array([1.0, -0.5, 3.14159, 1e20, -1e-30]);
    expect(Array.from(f32ToBf16(bf), bf16ToF32)).toEqual(expected.tensors['model.b_bf16'].values);
    const h = new Float32Array([1.5, -2.0, 0.1, 65504.0, 6e-8]);
    expect(Array.from(f32ToF16(h), f16ToF32)).toEqual(expected.tensors['model.c_f16'].values);
  });

  it('a checkpoint with I64 / U8 tensors is rejected for loading, naming tensor and file', () => {
    const dir = tmp();
    fs.copyFileSync(file, path.join(dir, 'model.safetensors'));
    expect(() => readCheckpoint(dir)).toThrow(/model\.safetensors: tensor model\.(d_i64|e_u8) has dtype (I64|U8); dflash loads F32, BF16 and F16/);
  });
});

describe('writeSafetensors + readSafetensorsHeader', () => {
  it('round-trips mixed dtypes with every tensor aligned, and converts f32 data for BF16/F16', () => {
    const dir = tmp();
    const f = path.join(dir, 'm.safetensors');
    const tensors: TensorToWrite[] = [
      { name: 'bytes', dtype: 'U8', shape: [3], data: new Uint8Array([1, 2, 3]) },
      { name: 'half', dtype: 'F16', shape: [3], data: new Float32Array([1, -2, 0.5]) },
      { name: 'w', dtype: 'F32', shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) },
      { name: 'b', dtype: 'BF16', shape: [2], data: new Float32Array([1, -3]) },
      { name: 'i', dtype: 'I32', shape: [1], data: new Int32Array([-7]) },
    ];
    writeSafetensors(f, tensors, { note: 'x' });
    const got = readSafetensorsHeader(f);
    const bytes = fs.readFileSync(f);
    const headerLen = Number(bytes.readBigUInt64LE(0));
    expect((8 + headerLen) % 8).toBe(0);
    expect(JSON.parse(bytes.subarray(8, 8 + headerLen).toString()).__metadata__).toEqual({ note: 'x' });
    const by = Object.fromEntries(got.map((t) => [t.name, t]));
    expect(Object.keys(by).sort()).toEqual(['b', 'bytes', 'half', 'i', 'w']);
    for (const t of got) expect(t.offset % { U8: 1, F16: 2, BF16: 2, F32: 4, I32: 4 }[t.dtype as 'U8']!).toBe(0);
    expect([0, 1, 2, 3].map((k) => bytes.readFloatLE(by.w.offset + 4 * k))).toEqual([1, 2, 3, 4]);
    expect([0, 1].map((k) => bf16ToF32(bytes.readUInt16LE(by.b.offset + 2 * k)))).toEqual([1, -3]);
    expect([0, 1, 2].map((k) => f16ToF32(bytes.readUInt16LE(by.half.offset + 2 * k)))).toEqual([1, -2, 0.5]);
    expect(bytes.readInt32LE(by.i.offset)).toBe(-7);
    expect([...bytes.subarray(by.bytes.offset, by.bytes.offset + 3)]).toEqual([1, 2, 3]);
  });

  it('rejects data of the wrong size and duplicate names', () => {
    const f = path.join(tmp(), 'x.safetensors');
    expect(() => writeSafetensors(f, [{ name: 'a', dtype: 'F32', shape: [3], data: new Float32Array(2) }])).toThrow(/a has 8 bytes, F32\[3\] needs 12/);
    const t: TensorToWrite = { name: 'a', dtype: 'F32', shape: [1], data: new Float32Array(1) };
    expect(() => writeSafetensors(f, [t, t])).toThrow(/tensor a given twice/);
  });

  it('reads only the header: a 5 GB (sparse) file is described without reading its data', () => {
    const f = path.join(tmp(), 'big.safetensors');
    const n = 1_250_000_000;  // f32 elements: 5e9 bytes
    const h = Buffer.from(JSON.stringify({ big: { dtype: 'F32', shape: [n], data_offsets: [0, 4 * n] } }).padEnd(88, ' '));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(h.length));
    fs.writeFileSync(f, Buffer.concat([len, h]));
    fs.truncateSync(f, 8 + h.length + 4 * n);
    const t0 = performance.now();
    const [t] = readSafetensorsHeader(f);
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(t).toMatchObject({ name: 'big', offset: 96, nbytes: 5e9, shape: [n] });
    fs.truncateSync(f, 8 + h.length + 4 * n - 1);
    expect(() => readSafetensorsHeader(f)).toThrow(/truncated: tensor big ends at byte 5000000096 but the file has 5000000095/);
    fs.rmSync(f);
  });
});

describe('malformed files: one clear error each, naming the file', () => {
  const dir = tmp();
  const f = path.join(dir, 'bad.safetensors');
  const entry = (dtype: string, shape: number[], offs: number[]) => ({ dtype, shape, data_offsets: offs });
  const cases: [string, () => void, RegExp][] = [
    ['missing file', () => fs.rmSync(f, { force: true }), /cannot open .*bad\.safetensors/],
    ['shorter than 8 bytes', () => fs.writeFileSync(f, Buffer.from([1, 2, 3])), /bad\.safetensors: truncated: 3 bytes/],
    ['header length beyond the file', () => fs.writeFileSync(f, Buffer.concat([Buffer.from([200, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{}')])), /malformed header: header length 200 does not fit in the file's 10 bytes/],
    ['header length 0', () => fs.writeFileSync(f, Buffer.alloc(16)), /malformed header: header length 0/],
    ['not JSON', () => raw(f, '{"a": '), /malformed header: not JSON/],
    ['JSON but not an object', () => raw(f, '[1, 2]'), /malformed header: not a JSON object/],
    ['entry without data_offsets', () => raw(f, { a: { dtype: 'F32', shape: [1] } }), /tensor a needs dtype, shape and data_offsets/],
    ['bad shape', () => raw(f, { a: entry('F32', [-1], [0, 4]) }, 4), /tensor a has shape \[-1\]/],
    ['reversed offsets', () => raw(f, { a: entry('F32', [1], [4, 0]) }, 4), /tensor a has data_offsets \[4,0\]/],
    ['unknown dtype', () => raw(f, { a: entry('Q4_K', [2], [0, 2]) }, 2), /tensor a has unknown dtype Q4_K/],
    ['byte count != product(shape) * dtype size', () => raw(f, { a: entry('F32', [2], [0, 4]) }, 8), /tensor a: 4 bytes for F32\[2\], which needs 8/],
    ['misaligned offset', () => raw(f, { u: entry('U8', [2], [0, 2]), a: entry('F32', [1], [2, 6]) }, 8), /tensor a starts at data offset 2, not aligned to its 4-byte F32 elements/],
    ['overlapping tensors', () => raw(f, { a: entry('F32', [4], [0, 16]), b: entry('F32', [2], [8, 16]) }, 16), /tensor b \[8, 16\) overlaps tensor a \[0, 16\)/],
    ['data past the end of the file', () => raw(f, { a: entry('F32', [4], [0, 16]) }, 12), /bad\.safetensors: truncated: tensor a ends at byte/],
  ];
  for (const [what, make, err] of cases) {
    it(what, () => {
      make();
      expect(() => readSafetensorsHeader(f)).toThrow(err);
    });
  }

  it('a well-formed variant of the same entries passes (so the cases above fail for their reason)', () => {
    raw(f, { u: entry('U8', [2], [0, 2]), pad: entry('U8', [2], [2, 4]), a: entry('F32', [1], [4, 8]), e: entry('F32', [0], [8, 8]) }, 8);
    expect(readSafetensorsHeader(f).map((t) => [t.name, t.nbytes])).toEqual([['u', 2], ['pad', 2], ['a', 4], ['e', 0]]);
  });
});

describe('checkpoint directories', () => {
  const w = (name: string, v: number): TensorToWrite => ({ name, dtype: 'F32', shape: [2], data: new Float32Array([v, v]) });
  function sharded(): string {
    const dir = tmp();
    writeSafetensors(path.join(dir, 'model-00001-of-00002.safetensors'), [w('model.a', 1), w('model.b', 2)]);
    writeSafetensors(path.join(dir, 'model-00002-of-00002.safetensors'), [w('lm_head.weight', 3)]);
    const index = { metadata: { total_size: 24 }, weight_map: { 'model.a': 'model-00001-of-00002.safetensors', 'model.b': 'model-00001-of-00002.safetensors', 'lm_head.weight': 'model-00002-of-00002.safetensors' } };
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify(index));
    return dir;
  }
  const setIndex = (dir: string, map: Record<string, string>) =>
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: map }));

  it('reads the shards of model.safetensors.index.json, each tensor with its own file', () => {
    const dir = sharded();
    const t = readCheckpoint(dir);
    expect(t.map((x) => [x.name, path.basename(x.file)]).sort()).toEqual([
      ['lm_head.weight', 'model-00002-of-00002.safetensors'],
      ['model.a', 'model-00001-of-00002.safetensors'],
      ['model.b', 'model-00001-of-00002.safetensors'],
    ]);
    const bytes = fs.readFileSync(requireTensor(t, 'lm_head.weight').file);
    expect(bytes.readFloatLE(requireTensor(t, 'lm_head.weight').offset)).toBe(3);
  });

  it('reads model.safetensors, or else every *.safetensors file', () => {
    const dir = tmp();
    writeSafetensors(path.join(dir, 'model.safetensors'), [w('x', 1)]);
    writeSafetensors(path.join(dir, 'ignored.safetensors'), [w('y', 1)]);
    expect(readCheckpoint(dir).map((t) => t.name)).toEqual(['x']);
    fs.rmSync(path.join(dir, 'model.safetensors'));
    writeSafetensors(path.join(dir, 'a.safetensors'), [w('z', 1)]);
    expect(readCheckpoint(dir).map((t) => t.name)).toEqual(['z', 'y']);
    writeSafetensors(path.join(dir, 'b.safetensors'), [w('z', 2)]);
    expect(() => readCheckpoint(dir)).toThrow(/tensor z appears in both .*a\.safetensors and .*b\.safetensors/);
  });

  it('broken indexes and missing weights are clear errors', () => {
    expect(() => readCheckpoint(path.join(tmp(), 'nope'))).toThrow(/model directory .*nope does not exist/);
    expect(() => readCheckpoint(tmp())).toThrow(/no safetensors weights in .* \(expected model\.safetensors or model\.safetensors\.index\.json\)/);
    let dir = sharded();
    fs.rmSync(path.join(dir, 'model-00002-of-00002.safetensors'));
    expect(() => readCheckpoint(dir)).toThrow(/index\.json lists shard model-00002-of-00002\.safetensors, which is missing/);
    dir = sharded();
    setIndex(dir, { 'model.a': 'model-00002-of-00002.safetensors', 'model.b': 'model-00001-of-00002.safetensors' });
    expect(() => readCheckpoint(dir)).toThrow(/tensor model\.a is listed in model-00002-of-00002\.safetensors but stored in model-00001-of-00002\.safetensors/);
    setIndex(dir, { 'model.zz': 'model-00001-of-00002.safetensors' });
    expect(() => readCheckpoint(dir)).toThrow(/tensor model\.zz is not in model-00001-of-00002\.safetensors/);
    setIndex(dir, { 'model.a': '../elsewhere.safetensors' });
    expect(() => readCheckpoint(dir)).toThrow(/points outside the model directory/);
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), '{"weight_map": ');
    expect(() => readCheckpoint(dir)).toThrow(/index\.json: malformed index/);
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), '{"metadata": {}}');
    expect(() => readCheckpoint(dir)).toThrow(/no "weight_map" object/);
  });
});

describe('requireTensor', () => {
  const dir = tmp();
  writeSafetensors(path.join(dir, 'model.safetensors'), [
    { name: 'layers.0.w', dtype: 'F32', shape: [4, 2], data: new Float32Array(8) },
  ]);
  const tensors = readCheckpoint(dir);

  it('returns the tensor when name and shape match', () => {
    expect(requireTensor(tensors, 'layers.0.w', [4, 2])).toMatchObject({ name: 'layers.0.w', shape: [4, 2], dtype: 'F32' });
    expect(requireTensor(tensors, 'layers.0.w')).toBe(tensors[0]);
  });

  it('names the tensor and the file when the shape differs', () => {
    expect(() => requireTensor(tensors, 'layers.0.w', [2, 4])).toThrow(/tensor layers\.0\.w in .*model\.safetensors has shape \[4,2\], expected \[2,4\]/);
    expect(() => requireTensor(tensors, 'layers.0.w', [4, 2, 1])).toThrow(/expected \[4,2,1\]/);
  });

  it('names the missing tensor, where it looked, and a near miss', () => {
    expect(() => requireTensor(tensors, 'layers.1.w')).toThrow(/missing tensor layers\.1\.w; looked in model\.safetensors of /);
    expect(() => requireTensor(tensors, 'model.layers.0.w')).toThrow(/there is layers\.0\.w: a "model\." prefix differs/);
  });
});
