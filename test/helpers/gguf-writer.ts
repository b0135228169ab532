// A minimal GGUF writer for header tests (test/46): metadata of every value type and tensor
// infos with chosen offsets, so malformed files can be made byte by byte. Real model files in
// the tests come from gguf-py (tools/gguf/convert.py), never from here.

export type KvValue =
  | { type: 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'f64'; value: number }
  | { type: 'u64' | 'i64'; value: bigint }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'array'; of: 'u32' | 'i32' | 'string' | 'f32'; value: (number | string)[] };

const TYPE_IDS = { u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9, u64: 10, i64: 11, f64: 12 } as const;

export interface TensorInfo { name: string; dims: number[]; type: number; offset: number }

function str(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  const n = Buffer.alloc(8);
  n.writeBigUInt64LE(BigInt(b.length));
  return Buffer.concat([n, b]);
}

function scalar(type: keyof typeof TYPE_IDS, v: number | bigint | boolean | string): Buffer {
  const b = Buffer.alloc(8);
  switch (type) {
    case 'u8': b.writeUInt8(v as number); return b.subarray(0, 1);
    case 'i8': b.writeInt8(v as number); return b.subarray(0, 1);
    case 'u16': b.writeUInt16LE(v as number); return b.subarray(0, 2);
    case 'i16': b.writeInt16LE(v as number); return b.subarray(0, 2);
    case 'u32': b.writeUInt32LE(v as number); return b.subarray(0, 4);
    case 'i32': b.writeInt32LE(v as number); return b.subarray(0, 4);
    case 'f32': b.writeFloatLE(v as number); return b.subarray(0, 4);
    case 'bool': return Buffer.from([v ? 1 : 0]);
    case 'u64': b.writeBigUInt64LE(v as bigint); return b;
    case 'i64': b.writeBigInt64LE(v as bigint); return b;
    case 'f64': b.writeDoubleLE(v as number); return b;
    case 'string': return str(v as string);
    default: throw new Error(`scalar ${type}`);
  }
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
}

/** The bytes of a GGUF file: header, key/values, tensor infos, padding to `alignment`, then `data`. */
export function ggufBytes(o: { version?: number; kv: Record<string, KvValue>; tensors?: TensorInfo[]; data?: Buffer; alignment?: number }): Buffer {
  const parts: Buffer[] = [Buffer.from('GGUF', 'latin1'), u32(o.version ?? 3), u64(o.tensors?.length ?? 0), u64(Object.keys(o.kv).length)];
  for (const [key, v] of Object.entries(o.kv)) {
    parts.push(str(key), u32(TYPE_IDS[v.type]));
    if (v.type === 'array') {
      parts.push(u32(TYPE_IDS[v.of]), u64(v.value.length), ...v.value.map((x) => scalar(v.of, x)));
    } else parts.push(scalar(v.type, v.value));
  }
  for (const t of o.tensors ?? []) parts.push(str(t.name), u32(t.dims.length), ...t.dims.map(u64), u32(t.type), u64(t.offset));
  const head = Buffer.concat(parts);
  const align = o.alignment ?? 32;
  const pad = Buffer.alloc((align - (head.length % align)) % align);
  return Buffer.concat([head, pad, o.data ?? Buffer.alloc(0)]);
}
