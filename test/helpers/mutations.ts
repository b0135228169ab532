// Mutations of a real checkpoint for the fuzz test (test/26-hardening-fuzz): fast-check
// generators of (a) byte edits of a safetensors file's length prefix and header, (b) edits of
// its parsed header (types swapped, numbers out of range, keys dropped / duplicated / renamed,
// offsets shifted, shuffled, swapped), (c) edits of config.json; and the functions applying them.
// Each mutation is plain JSON, so a failing case prints as what was done to the file.
import fc from 'fast-check';

import type { Header } from './checkpoint-edit';

type Entry = { dtype: unknown; shape: unknown; data_offsets: unknown; [k: string]: unknown };

// ---- (a) bytes ----------------------------------------------------------------------------

export type ByteOp =
  | { op: 'set'; at: number; value: number }
  | { op: 'insert'; at: number; bytes: number[] }
  | { op: 'delete'; at: number; count: number }
  | { op: 'truncate'; at: number }
  | { op: 'length'; delta: number }
  | { op: 'length-any'; value: string }
  | { op: 'append'; bytes: number[] }
  | { op: 'space'; at: number; char: number };

const bytes = (max: number) => fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: max });
export const byteMutation = fc.array(fc.oneof(
  // Any byte, or (more often) one that keeps the text ASCII JSON: digits, signs, structure.
  { arbitrary: fc.record({ op: fc.constant('set' as const), at: fc.nat(), value: fc.oneof(
    fc.integer({ min: 0, max: 255 }),
    { arbitrary: fc.constantFrom(...Buffer.from('0123456789-+.eE{}[],:" tfnul')), weight: 3 }) }), weight: 4 },
  fc.record({ op: fc.constant('insert' as const), at: fc.nat(), bytes: bytes(8) }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('length' as const), delta: fc.integer({ min: -16, max: 16 }) }),
  fc.record({ op: fc.constant('length-any' as const), value: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map(String) }),
  fc.record({ op: fc.constant('append' as const), bytes: bytes(64) }),
  // Whitespace after a ',' or ':' with the length prefix raised to match: still the same file.
  fc.record({ op: fc.constant('space' as const), at: fc.nat(), char: fc.constantFrom(0x20, 0x09, 0x0a, 0x0d) }),
), { minLength: 1, maxLength: 4 });

/** The file's bytes after `ops`; positions fall in the length prefix + header (`head` bytes). */
export function applyBytes(file: Buffer, head: number, ops: ByteOp[]): Buffer {
  let b: Buffer = Buffer.from(file);
  for (const o of ops) {
    if (o.op === 'set') b[o.at % head] = o.value;
    else if (o.op === 'insert') b = Buffer.concat([b.subarray(0, o.at % head), Buffer.from(o.bytes), b.subarray(o.at % head)]);
    else if (o.op === 'delete') b = Buffer.concat([b.subarray(0, o.at % head), b.subarray((o.at % head) + o.count)]);
    else if (o.op === 'truncate') b = b.subarray(0, o.at % b.length);
    else if (o.op === 'append') b = Buffer.concat([b, Buffer.from(o.bytes)]);
    else if (o.op === 'space') b = addSpace(b, o.at, o.char);
    else if (b.length >= 8) {
      const v = o.op === 'length' ? BigInt.asUintN(64, b.readBigUInt64LE(0) + BigInt(o.delta)) : BigInt(o.value);
      b.writeBigUInt64LE(v, 0);
    }
  }
  return b;
}

function addSpace(b: Buffer, at: number, char: number): Buffer {
  if (b.length < 8) return b;
  const len = b.readBigUInt64LE(0);
  const end = Math.min(b.length, 8 + Number(len > BigInt(b.length) ? BigInt(b.length) : len));
  const spots: number[] = [];
  for (let i = 8; i < end; i++) if (b[i] === 0x2c || b[i] === 0x3a) spots.push(i + 1);
  if (spots.length === 0) return b;
  const p = spots[at % spots.length];
  const out = Buffer.concat([b.subarray(0, p), Buffer.from([char]), b.subarray(p)]);
  out.writeBigUInt64LE(BigInt.asUintN(64, len + 1n), 0);
  return out;
}

// ---- (b) the parsed header ----------------------------------------------------------------

export type JsonOp =
  | { op: 'dtype'; name: string; value: unknown }
  | { op: 'shape'; name: string; how: string }
  | { op: 'offsets'; name: string; how: string; other: string; by: number }
  | { op: 'drop'; name: string; key: string }
  | { op: 'duplicate'; name: string; same: boolean; other: string }
  | { op: 'rename'; name: string; to: string }
  | { op: 'empty-tensor'; to: string }
  | { op: 'metadata'; value: unknown }
  | { op: 'extra-field'; name: string; value: unknown }
  | { op: 'entry'; name: string; value: unknown };

export interface JsonMutation { ops: JsonOp[]; indent: number; shuffle: boolean; pad: number }

export function jsonMutation(names: string[]): fc.Arbitrary<JsonMutation> {
  const name = fc.constantFrom(...names);
  const op = fc.oneof(
    fc.record({ op: fc.constant('dtype' as const), name, value: fc.constantFrom<unknown>('F32', 'F16', 'BF16', 'I32', 'U8', 'F64', 'I64', 'BOOL', 'F8_E4M3', 'f32', 'float32', '', 'Q4_K', 5, null) }),
    fc.record({ op: fc.constant('shape' as const), name, how: fc.constantFrom('reverse', 'empty', 'negative', 'fraction', 'string', 'extra1', 'drop', 'double', 'zero', 'huge') }),
    { arbitrary: fc.record({
      op: fc.constant('offsets' as const), name, other: name, by: fc.integer({ min: -300, max: 300 }),
      how: fc.constantFrom('negative', 'fraction', 'reversed', 'one', 'three', 'strings', 'null', 'huge', 'swap', 'copy', 'shift', 'grow', 'unsafe'),
    }), weight: 3 },
    fc.record({ op: fc.constant('drop' as const), name, key: fc.constantFrom('dtype', 'shape', 'data_offsets', '*') }),
    fc.record({ op: fc.constant('duplicate' as const), name, same: fc.boolean(), other: name }),
    fc.record({ op: fc.constant('rename' as const), name, to: fc.string({ maxLength: 8 }) }),
    fc.record({ op: fc.constant('empty-tensor' as const), to: fc.string({ minLength: 1, maxLength: 8 }) }),
    fc.record({ op: fc.constant('metadata' as const), value: fc.oneof(fc.constant<unknown>({ format: 'pt' }), fc.constant(null), fc.jsonValue({ maxDepth: 2 })) }),
    fc.record({ op: fc.constant('extra-field' as const), name, value: fc.jsonValue({ maxDepth: 1 }) }),
    fc.record({ op: fc.constant('entry' as const), name, value: fc.jsonValue({ maxDepth: 1 }) }),
  );
  return fc.record({ ops: fc.array(op, { minLength: 1, maxLength: 3 }), indent: fc.constantFrom(0, 0, 1, 2), shuffle: fc.boolean(), pad: fc.integer({ min: 0, max: 7 }) });
}

function shapeEdit(shape: unknown, how: string): unknown {
  const s = Array.isArray(shape) ? shape.slice() : [];
  switch (how) {
    case 'reverse': return s.reverse();
    case 'empty': return [];
    case 'negative': return s.map((d: number) => -d);
    case 'fraction': return s.map((d: number) => d + 0.5);
    case 'string': return s.map(String);
    case 'extra1': return [...s, 1];
    case 'drop': return s.slice(1);
    case 'double': return s.map((d: number, i: number) => (i === 0 ? d * 2 : d));
    case 'zero': return s.map(() => 0);
    default: return s.map(() => 2 ** 40);  // 'huge'
  }
}

function offsetsEdit(h: Record<string, Entry>, o: Extract<JsonOp, { op: 'offsets' }>): void {
  const t = h[o.name];
  const [a, b] = t.data_offsets as [number, number];
  const other = h[o.other]?.data_offsets;
  switch (o.how) {
    case 'negative': t.data_offsets = [-(b - a), 0]; break;  // the issue's [-n, 0]: the header's last n bytes
    case 'fraction': t.data_offsets = [a + 0.5, b + 0.5]; break;
    case 'reversed': t.data_offsets = [b, a]; break;
    case 'one': t.data_offsets = [a]; break;
    case 'three': t.data_offsets = [a, b, b]; break;
    case 'strings': t.data_offsets = [String(a), String(b)]; break;
    case 'null': t.data_offsets = null; break;
    case 'huge': t.data_offsets = [2 ** 53, 2 ** 53 + (b - a)]; break;
    case 'unsafe': t.data_offsets = [a, 2 ** 60]; break;
    case 'swap': if (other) [t.data_offsets, h[o.other].data_offsets] = [other, t.data_offsets]; break;
    case 'copy': if (other) t.data_offsets = [...(other as number[])]; break;
    case 'shift': t.data_offsets = [a + o.by, b + o.by]; break;
    default: t.data_offsets = [a, b + o.by]; break;  // 'grow'
  }
}

/** The header text after `m` (the data section is unchanged). */
export function applyJson(header: Header, m: JsonMutation, dataBytes: number): string {
  const h = JSON.parse(JSON.stringify(header)) as Record<string, Entry>;
  let duplicate = '';
  for (const o of m.ops) {
    const t = 'name' in o ? h[o.name] : undefined;
    if ('name' in o && (!t || typeof t !== 'object')) continue;  // renamed or replaced by an earlier op
    if (o.op === 'dtype') t!.dtype = o.value;
    else if (o.op === 'shape') t!.shape = shapeEdit(t!.shape, o.how);
    else if (o.op === 'offsets') offsetsEdit(h, o);
    else if (o.op === 'drop') { if (o.key === '*') delete h[o.name]; else delete t![o.key]; }
    else if (o.op === 'duplicate') {
      const copy = o.same ? t : { ...t, data_offsets: h[o.other]?.data_offsets ?? t!.data_offsets };
      duplicate = `${JSON.stringify(o.name)}:${JSON.stringify(copy)},`;
    } else if (o.op === 'rename') { h[o.to] = t!; if (o.to !== o.name) delete h[o.name]; }
    else if (o.op === 'empty-tensor') h[o.to] = { dtype: 'F32', shape: [0], data_offsets: [dataBytes, dataBytes] };
    else if (o.op === 'metadata') (h as Record<string, unknown>).__metadata__ = o.value;
    else if (o.op === 'extra-field') t![`x_${Object.keys(t!).length}`] = o.value;
    else (h as Record<string, unknown>)[o.name] = o.value;  // 'entry': the whole entry replaced
  }
  let keys = Object.keys(h);
  if (m.shuffle) keys = keys.reverse();
  let text = JSON.stringify(Object.fromEntries(keys.map((k) => [k, h[k]])), null, m.indent || undefined);
  if (duplicate) text = '{' + duplicate + text.slice(1);
  return text + ' '.repeat(m.pad);
}

// ---- (c) config.json ----------------------------------------------------------------------

export type ConfigOp =
  | { op: 'drop'; key: string }
  | { op: 'swap'; key: string; to: 'string' | 'number' | 'bool' | 'null' | 'array' | 'object' }
  | { op: 'number'; key: string; how: string }
  | { op: 'add'; key: string; value: unknown };

export function configMutation(keys: string[]): fc.Arbitrary<ConfigOp[]> {
  const key = fc.constantFrom(...keys);
  return fc.array(fc.oneof(
    fc.record({ op: fc.constant('drop' as const), key }),
    { arbitrary: fc.record({ op: fc.constant('swap' as const), key, to: fc.constantFrom('string' as const, 'number' as const, 'bool' as const, 'null' as const, 'array' as const, 'object' as const) }), weight: 3 },
    { arbitrary: fc.record({ op: fc.constant('number' as const), key, how: fc.constantFrom('+1', '-1', '*2', '0', 'neg', 'half', '1e9', '1e300') }), weight: 2 },
    fc.record({ op: fc.constant('add' as const), key: fc.string({ minLength: 1, maxLength: 10 }).map((k) => `x_${k}`), value: fc.jsonValue({ maxDepth: 1 }) }),
  ), { minLength: 1, maxLength: 3 });
}

export function applyConfig(config: Record<string, unknown>, ops: ConfigOp[]): Record<string, unknown> {
  const c = { ...config };
  for (const o of ops) {
    const v = c[o.key];
    if (o.op === 'drop') delete c[o.key];
    else if (o.op === 'add') c[o.key] = o.value;
    else if (o.op === 'swap') {
      c[o.key] = { string: String(v), number: typeof v === 'number' ? v : 7, bool: typeof v === 'boolean' ? v : true, null: null, array: [v], object: { value: v } }[o.to];
      if (o.to === 'string' && typeof v === 'string') c[o.key] = 7;  // a string stays a type change
    } else if (typeof v === 'number') {
      c[o.key] = { '+1': v + 1, '-1': v - 1, '*2': v * 2, '0': 0, neg: -v, half: v + 0.5, '1e9': 1e9, '1e300': 1e300 }[o.how];
    }
  }
  return c;
}
