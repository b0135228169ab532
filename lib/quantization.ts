// Quantized checkpoints whose Linear weights stay narrow on the device (native/models/quant.h):
// reads `quantization_config` into one scheme, and maps the checkpoint's tensors to the names and
// byte views the engine uploads. Nothing is dequantized here or at load.
//
//   quant_method          format / fields                        scheme (payload, scale block)
//   compressed-tensors    int-quantized, 8 bits                  int8         channel | group g
//                         pack-quantized, 4 bits                 int4         channel | group g
//                         pack-quantized, 8 bits                 int8-offset  channel | group g
//                         float-quantized, 8 bits (e4m3)         fp8          channel | block
//   fp8                   fmt e4m3, weight_block_size [br, bc]   fp8          block br x bc
//   awq                   version gemm, 4 bits, zero_point       int4 + zero  group g
//   mxfp4 (gpt-oss)       experts only                           mxfp4        group 32 (E8M0 scales)
//
// Stored tensor names (checked against compressed-tensors 0.x and transformers' FP8 loader):
//   int-quantized / float-quantized   X.weight (I8 | F8_E4M3), X.weight_scale
//   pack-quantized                    X.weight_packed (I32 (out, in*bits/32), values + 2^(bits-1),
//                                     value j of an int32 at bits [bits*j, bits*(j+1))), X.weight_scale,
//                                     X.weight_shape
//   fp8                               X.weight (F8_E4M3), X.weight_scale_inv
//   compressed-tensors, symmetric false: X.weight_zero_point (int-quantized: I8 (out, groups);
//                                     pack-quantized: I32 words packed along the rows)
//   awq (gemm)                        X.qweight I32 (in, out/8), X.qzeros I32 (in/g, out/8), nibble i
//                                     of a word = output [0,2,4,6,1,3,5,7][i]; X.scales (in/g, out)
//   mxfp4                             mlp.experts.X_blocks U8 (E, out, in/32, 16): two e2m1 values a
//                                     byte, low nibble first; X_scales U8 (E, out, in/32) E8M0
// The layouts the engine cannot read as they are (AWQ's words, packed zero points, transposed
// scales) are re-laid at load, still narrow, by native/engine/quant_repack.h, named by pseudo-dtypes.
// A little-endian int32 of 4-bit values is, byte by byte, two values per byte low nibble first:
// the engine reads `weight_packed` as U8 (out, in/2) without touching a byte.
import type { TensorSource } from './native';

type Json = Record<string, unknown>;

/** What lib/ hands the engine (native/addon/js_config.cc ParseQuant). */
export interface QuantScheme {
  payload: 'int8' | 'int8-offset' | 'int4' | 'fp8' | 'mxfp4';
  /** Output rows / input columns one scale covers; blockCols 0 = the whole row (per channel). */
  blockRows: number;
  blockCols: number;
  /** Asymmetric: W = (q - zero) * scale, one zero point per scale. */
  zeroPoint: boolean;
  /** Linear modules kept in 16 bits (filled from the checkpoint's tensors). */
  ignore: string[];
  /** "compressed-tensors pack-quantized int4 group 128", for stats() and errors. */
  description: string;
  /** How the checkpoint names and lays out a weight's tensors. */
  layout: 'compressed-tensors' | 'fp8' | 'awq' | 'mxfp4';
}

type Fail = (key: string, msg: string) => never;

function isObj(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The scheme of a `quantization_config`, or throws naming the key and its value. */
export function quantSchemeFromHF(qc: unknown, fail: Fail, key = 'quantization_config'): QuantScheme {
  if (!isObj(qc)) fail(key, 'must be an object');
  const method = qc.quant_method;
  if (method === 'fp8') return fp8Scheme(qc, fail, key);
  if (method === 'compressed-tensors') return compressedTensorsScheme(qc, fail, key);
  if (method === 'awq') return awqScheme(qc, fail, key);
  if (method === 'mxfp4')
    return { payload: 'mxfp4', blockRows: 1, blockCols: 32, zeroPoint: false, ignore: [], description: 'mxfp4 experts (e2m1, E8M0 scales per 32)', layout: 'mxfp4' };
  if (method === 'gptq')
    fail(`${key}.quant_method`, '"gptq" is not supported yet (dflash keeps compressed-tensors int8 / int4, AWQ and FP8 checkpoints narrow)');
  return fail(`${key}.quant_method`, `${JSON.stringify(method)} is not supported (compressed-tensors or fp8)`);
}

function fp8Scheme(qc: Json, fail: Fail, key: string): QuantScheme {
  if (qc.fmt !== undefined && qc.fmt !== 'e4m3') fail(`${key}.fmt`, `${JSON.stringify(qc.fmt)} is not supported (e4m3 only)`);
  const block = qc.weight_block_size;
  if (!Array.isArray(block) || block.length !== 2 || !block.every((b) => Number.isInteger(b) && (b as number) > 0))
    fail(`${key}.weight_block_size`, `${JSON.stringify(block)} must be two positive integers (per-tensor FP8 is not supported)`);
  const [br, bc] = block as number[];
  return { payload: 'fp8', blockRows: br, blockCols: bc, zeroPoint: false, ignore: [], description: `fp8 e4m3 block ${br}x${bc}`, layout: 'fp8' };
}

function awqScheme(qc: Json, fail: Fail, key: string): QuantScheme {
  const version = qc.version ?? 'gemm';
  if (typeof version !== 'string' || version.toLowerCase() !== 'gemm')
    fail(`${key}.version`, `${JSON.stringify(qc.version)} is not supported (gemm)`);
  const bits = qc.bits ?? qc.w_bit;
  if (bits !== 4) fail(`${key}.bits`, `${JSON.stringify(bits)} is not supported (4)`);
  const group = qc.group_size ?? qc.q_group_size;
  if (!Number.isInteger(group) || (group as number) <= 0) fail(`${key}.group_size`, `${JSON.stringify(group)} must be a positive integer`);
  if (qc.zero_point === false) fail(`${key}.zero_point`, 'false is not supported (AWQ gemm checkpoints carry zero points)');
  return { payload: 'int4', blockRows: 1, blockCols: group as number, zeroPoint: true, ignore: [], description: `awq gemm int4 group ${group}`, layout: 'awq' };
}

function compressedTensorsScheme(qc: Json, fail: Fail, key: string): QuantScheme {
  const format = qc.format;
  const sparsity = qc.sparsity_config;
  if (isObj(sparsity) && Object.keys(sparsity).length > 0 && sparsity.format !== 'dense')
    fail(`${key}.sparsity_config`, 'is not supported (sparse compressed-tensors checkpoints)');
  const groups = qc.config_groups;
  if (!isObj(groups) || Object.keys(groups).length === 0) fail(`${key}.config_groups`, 'must hold one quantization group');
  const names = Object.keys(groups);
  if (names.length !== 1) fail(`${key}.config_groups`, `has ${names.length} groups (${names.join(', ')}); dflash runs one scheme per checkpoint`);
  const gk = `${key}.config_groups.${names[0]}`;
  const g = groups[names[0]];
  if (!isObj(g)) return fail(gk, 'must be an object');
  if (g.input_activations !== undefined && g.input_activations !== null)
    fail(`${gk}.input_activations`, 'is set: activation quantization (W8A8, FP8 dynamic) is not supported; dflash runs weight-only schemes (W8A16, W4A16, FP8 weights)');
  if (g.output_activations !== undefined && g.output_activations !== null) fail(`${gk}.output_activations`, 'is not supported');
  const w = g.weights;
  if (!isObj(w)) return fail(`${gk}.weights`, 'must be an object');
  const wk = `${gk}.weights`;
  const bits = w.num_bits, type = w.type ?? 'int', strategy = w.strategy;
  const zeroPoint = w.symmetric === false;
  if (w.dynamic === true) fail(`${wk}.dynamic`, 'true is not supported');
  if (w.actorder !== undefined && w.actorder !== null && w.actorder !== false)
    fail(`${wk}.actorder`, `${JSON.stringify(w.actorder)} is not supported (act-order g_idx)`);
  let blockRows = 1, blockCols = 0;
  if (strategy === 'group') {
    if (!Number.isInteger(w.group_size) || (w.group_size as number) <= 0) fail(`${wk}.group_size`, `${JSON.stringify(w.group_size)} must be a positive integer`);
    blockCols = w.group_size as number;
  } else if (strategy === 'block') {
    const b = w.block_structure;
    if (!Array.isArray(b) || b.length !== 2 || !b.every((x) => Number.isInteger(x) && (x as number) > 0))
      fail(`${wk}.block_structure`, `${JSON.stringify(b)} must be two positive integers`);
    [blockRows, blockCols] = b as number[];
  } else if (strategy !== 'channel') {
    fail(`${wk}.strategy`, `${JSON.stringify(strategy)} is not supported (channel, group or block)`);
  }
  const grain = blockCols === 0 ? 'channel' : blockRows === 1 ? `group ${blockCols}` : `block ${blockRows}x${blockCols}`;
  const desc = (p: string) => `compressed-tensors ${format} ${p} ${grain}${zeroPoint ? ' with zero points' : ''}`;
  if (type === 'float') {
    if (zeroPoint) fail(`${wk}.symmetric`, 'false is not supported for float weights');
    if (bits !== 8 || format !== 'float-quantized')
      fail(`${key}.format`, `${JSON.stringify(format)} with float ${JSON.stringify(bits)}-bit weights is not supported (float-quantized 8-bit)`);
    return { payload: 'fp8', blockRows, blockCols, zeroPoint: false, ignore: [], description: desc('fp8'), layout: 'compressed-tensors' };
  }
  if (type !== 'int') fail(`${wk}.type`, `${JSON.stringify(type)} is not supported (int or float)`);
  if (format === 'int-quantized' || format === 'naive-quantized') {
    if (bits !== 8) fail(`${wk}.num_bits`, `${JSON.stringify(bits)} is not supported with format ${format} (8)`);
    return { payload: 'int8', blockRows, blockCols, zeroPoint, ignore: [], description: desc('int8'), layout: 'compressed-tensors' };
  }
  if (format === 'pack-quantized') {
    if (bits !== 4 && bits !== 8) fail(`${wk}.num_bits`, `${JSON.stringify(bits)} is not supported (4 or 8)`);
    return { payload: bits === 4 ? 'int4' : 'int8-offset', blockRows, blockCols, zeroPoint, ignore: [], description: desc(`int${bits}`), layout: 'compressed-tensors' };
  }
  return fail(`${key}.format`, `${JSON.stringify(format)} is not supported (int-quantized, pack-quantized, float-quantized)`);
}

const PAYLOAD_DTYPE: Record<QuantScheme['payload'], string> = { int8: 'I8', 'int8-offset': 'I32', int4: 'I32', fp8: 'F8_E4M3', mxfp4: 'U8' };
const FLOATS = new Set(['F32', 'BF16', 'F16']);
const UNSUPPORTED = /\.(weight_g_idx|g_idx|input_scale|input_zero_point|output_scale|k_scale|v_scale)$/;

/**
 * The checkpoint's tensors as the engine uploads them: payloads under `X.weight` (packed int32
 * words viewed as the bytes they are), scales under `X.weight_scale`, zero points under
 * `X.weight_zero`; what the engine cannot read as it is gets a pseudo-dtype that the loader
 * re-lays (native/engine/quant_repack.h); `X.weight_shape` is dropped. Fills `scheme.ignore` with
 * the Linear modules the checkpoint keeps in 16 bits. Throws naming the tensor when one does not
 * fit the scheme (a missing scale, a payload of another dtype, act-order indices).
 */
export function storedQuantTensors(raw: readonly TensorSource[], scheme: QuantScheme, label: string): TensorSource[] {
  if (scheme.layout === 'mxfp4') return mxfp4Tensors(raw, label);
  const out: TensorSource[] = [];
  const byName = new Map(raw.map((t) => [t.name, t]));
  scheme.ignore = [];
  const bad = raw.find((t) => UNSUPPORTED.test(t.name));
  if (bad) throw new Error(`${label}: tensor ${bad.name} is not supported (${scheme.description} is read weight-only, without act-order)`);
  for (const t of raw) {
    const n = t.name;
    const m = /^(.*_proj)\.(weight|weight_packed|weight_scale|weight_scale_inv|weight_zero_point|weight_shape|qweight|qzeros|scales)$/.exec(n);
    if (!m) {
      if (!FLOATS.has(t.dtype)) throw new Error(`${t.file}: tensor ${n} has dtype ${t.dtype}; only quantized Linear weights may be narrow`);
      out.push(t);
      continue;
    }
    const [, base, part] = m;
    if (part === 'weight' && FLOATS.has(t.dtype)) {
      scheme.ignore.push(base);  // a Linear the checkpoint left in 16 bits (quantization_config's ignore list)
      out.push(t);
      continue;
    }
    if (part === 'weight_shape') continue;
    const mapped = scheme.layout === 'awq' ? awqTensor(t, base, part, byName, scheme, label) : ctTensor(t, base, part, byName, scheme, label);
    if (mapped) out.push(mapped);
  }
  return out;
}

// gpt-oss's MXFP4 experts: X_blocks (E, out, in/32, 16) U8 -> X as U8 (E, out, in/2), the same
// bytes; X_scales (E, out, in/32) U8 -> X_scale, E8M0 exponents kept as bytes. Every other
// tensor is 16/32-bit; a layer whose experts are not MXFP4 is refused.
function mxfp4Tensors(raw: readonly TensorSource[], label: string): TensorSource[] {
  const out: TensorSource[] = [];
  const byName = new Map(raw.map((t) => [t.name, t]));
  for (const t of raw) {
    const m = /^(.*mlp\.experts\.(?:gate_up|down)_proj)(_blocks|_scales)?$/.exec(t.name);
    if (!m) {
      if (!FLOATS.has(t.dtype)) throw new Error(`${t.file}: tensor ${t.name} has dtype ${t.dtype}; an MXFP4 checkpoint keeps all but the experts in 16/32 bits`);
      out.push(t);
      continue;
    }
    const [, base, part] = m;
    if (part === undefined) throw new Error(`${label}: quantization_config says mxfp4 but ${t.name} is ${t.dtype}, not ${base}_blocks + ${base}_scales`);
    if (t.dtype !== 'U8') throw new Error(`${t.file}: ${t.name} is ${t.dtype}, not U8 (MXFP4 ${part === '_blocks' ? 'e2m1 pairs' : 'E8M0 scales'})`);
    if (part === '_scales') {
      need(byName, `${base}_blocks`, label, `MXFP4 scales ${t.name}`);
      out.push({ ...t, name: `${base}_scale` });
      continue;
    }
    const scales = need(byName, `${base}_scales`, label, `MXFP4 blocks ${t.name}`);
    const s = t.shape;
    if (s.length !== 4 || s[3] !== 16 || scales.shape.length !== 3 || scales.shape.some((d, i) => d !== s[i]))
      throw new Error(`${t.file}: ${t.name} [${s.join(', ')}] and ${scales.name} [${scales.shape.join(', ')}] are not MXFP4 blocks (E, out, in/32, 16) and scales (E, out, in/32)`);
    out.push({ ...t, name: base, shape: [s[0], s[1], s[2] * 16] });
  }
  return out;
}

type ByName = Map<string, TensorSource>;

function need(byName: ByName, name: string, label: string, why: string): TensorSource {
  const t = byName.get(name);
  if (!t) throw new Error(`${label}: ${why} has no ${name}`);
  return t;
}

// compressed-tensors and FP8: X.weight | X.weight_packed, X.weight_scale | X.weight_scale_inv, X.weight_zero_point.
function ctTensor(t: TensorSource, base: string, part: string, byName: ByName, scheme: QuantScheme, label: string): TensorSource | null {
  const packed = scheme.payload === 'int4' || scheme.payload === 'int8-offset';
  const scaleName = scheme.layout === 'fp8' ? 'weight_scale_inv' : 'weight_scale';
  const payloadName = packed ? 'weight_packed' : 'weight';
  if (part === scaleName) {
    if (!FLOATS.has(t.dtype)) throw new Error(`${t.file}: scale ${t.name} has dtype ${t.dtype}; scales are F32, BF16 or F16`);
    return { ...t, name: `${base}.weight_scale` };
  }
  if (part === 'weight_zero_point') {
    if (!scheme.zeroPoint) throw new Error(`${label}: tensor ${t.name} is a zero point, but the config's weights are symmetric`);
    const scale = need(byName, `${base}.weight_scale`, label, `zero point ${t.name}`);
    const dtype = scheme.payload === 'int8' ? 'I8_Z' : scheme.payload === 'int4' ? 'CT_Z4' : 'CT_Z8';
    return { ...t, name: `${base}.weight_zero`, dtype, shape: scale.shape.slice() };
  }
  if (part !== payloadName || t.dtype !== PAYLOAD_DTYPE[scheme.payload])
    throw new Error(`${t.file}: tensor ${t.name} is ${t.dtype}, which is not how ${scheme.description} stores a weight ` +
      `(${base}.${payloadName} as ${PAYLOAD_DTYPE[scheme.payload]}, ${base}.${scaleName})`);
  need(byName, `${base}.${scaleName}`, label, `quantized weight ${t.name}`);
  if (scheme.zeroPoint) need(byName, `${base}.weight_zero_point`, label, `asymmetric weight ${t.name}`);
  if (t.shape.length !== 2) throw new Error(`${t.file}: quantized weight ${t.name} has shape [${t.shape.join(', ')}], not a matrix`);
  // int32 words of 8 (4-bit) or 4 (8-bit) values -> their bytes: (out, words * 4) u8, which for
  // 4-bit values is two per byte, for 8-bit one per byte.
  return packed ? { ...t, name: `${base}.weight`, dtype: 'U8', shape: [t.shape[0], t.shape[1] * 4] } : { ...t, name: `${base}.weight` };
}

// AWQ gemm: X.qweight (in, out/8), X.qzeros (in/g, out/8), X.scales (in/g, out), all transposed.
function awqTensor(t: TensorSource, base: string, part: string, byName: ByName, scheme: QuantScheme, label: string): TensorSource | null {
  const g = scheme.blockCols;
  if (part === 'qweight') {
    if (t.dtype !== 'I32' || t.shape.length !== 2) throw new Error(`${t.file}: AWQ tensor ${t.name} is ${t.dtype}[${t.shape.join(', ')}], not I32 (in, out/8)`);
    need(byName, `${base}.qzeros`, label, `AWQ weight ${t.name}`);
    need(byName, `${base}.scales`, label, `AWQ weight ${t.name}`);
    const [inDim, words] = t.shape;
    return { ...t, name: `${base}.weight`, dtype: 'AWQ_I4', shape: [words * 8, inDim / 2] };
  }
  if (part === 'qzeros') {
    if (t.dtype !== 'I32') throw new Error(`${t.file}: AWQ zero points ${t.name} are ${t.dtype}, not I32`);
    return { ...t, name: `${base}.weight_zero`, dtype: 'AWQ_Z4', shape: [t.shape[1] * 8, t.shape[0]] };
  }
  if (part === 'scales') {
    if (!FLOATS.has(t.dtype)) throw new Error(`${t.file}: AWQ scales ${t.name} have dtype ${t.dtype}; scales are F16, BF16 or F32`);
    if (t.shape.length !== 2) throw new Error(`${t.file}: AWQ scales ${t.name} are [${t.shape.join(', ')}], not (in/${g}, out)`);
    return { ...t, name: `${base}.weight_scale`, dtype: `T_${t.dtype}`, shape: [t.shape[1], t.shape[0]] };
  }
  throw new Error(`${t.file}: tensor ${t.name} is not part of an AWQ gemm checkpoint (qweight, qzeros, scales)`);
}
