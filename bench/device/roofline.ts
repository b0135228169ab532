// One verify execution (K tokens scored after a context, as a speculative step runs it) against
// the device's roofline, K = 1 .. 1024. For each K the least time the device could take is
//   memory floor  = bytes that must be read / memory bandwidth
//                   (every target weight once: layers + the lm_head matrix, and the context's K/V)
//   compute floor = FLOPs / peak matmul FLOP/s
//                   (2 per weight per token, plus attention: 4 · layers · heads · head_dim · K · (context + K))
//   roofline      = the larger of the two.
// While the memory floor dominates, verifying K tokens costs what verifying one does: the "K-flat"
// region speculative decoding lives in. The ridge (where the floors cross) says how far it can reach.
// Bandwidth and peak: nominal figures for the GPU named by the PJRT device (table below), or
// --hbm-tbps / --peak-tflops; on the CPU plugin the bandwidth is a host-memory copy measured here.
//   node dist/bench/device/roofline.js --target DIR [--drafter DIR] [--ks 1,2,4,...] [--context 256]
//        [--reps 11] [--device NAME] [--hbm-tbps T] [--peak-tflops P] [--out FILE]
import { Engine } from '../../lib/engine';
import { timeVerify } from '../../lib/internal/probe';
import { arg, machine, publish, run } from '../common';

/** Nominal memory bandwidth (TB/s) and dense 16-bit / tf32 matmul peaks (TFLOP/s), datasheet figures. */
interface Peak { match: RegExp; name: string; tbps: number; bf16: number; tf32: number }
const GPUS: Peak[] = [
  { match: /H200/i, name: 'H200 (HBM3e)', tbps: 4.8, bf16: 989, tf32: 494 },
  { match: /H100.*NVL/i, name: 'H100 NVL', tbps: 3.9, bf16: 835, tf32: 418 },
  { match: /H100.*PCIe/i, name: 'H100 PCIe (HBM2e)', tbps: 2.0, bf16: 756, tf32: 378 },
  { match: /H100/i, name: 'H100 SXM (HBM3)', tbps: 3.35, bf16: 989, tf32: 494 },
  { match: /A100.*80/i, name: 'A100 80GB', tbps: 2.039, bf16: 312, tf32: 156 },
  { match: /A100/i, name: 'A100 40GB', tbps: 1.555, bf16: 312, tf32: 156 },
];

const BYTES: Record<string, number> = { f32: 4, bf16: 2, f16: 2 };

/** Host copy bandwidth (bytes read + written per second), best of 5 copies of 256 MB. */
function hostCopyBandwidth(): number {
  const n = 256 * 2 ** 20;
  const a = Buffer.alloc(n, 1), b = Buffer.alloc(n);
  let best = Infinity;
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    a.copy(b);
    best = Math.min(best, (performance.now() - t0) / 1e3);
  }
  return (2 * n) / best;
}

async function main(): Promise<void> {
  const target = arg('target', 'models/code-pair/target');
  const drafter = arg('drafter', '');
  const context = Number(arg('context', '256'));
  const reps = Number(arg('reps', '11'));
  const ks = arg('ks', '1,2,4,8,16,32,64,128,256,512,1024').split(',').map(Number);
  if (ks.some((k) => !Number.isInteger(k) || k < 1)) throw new Error(`--ks must be positive integers, got ${arg('ks', '')}`);
  const maxSeqLen = Math.max(Number(arg('max-seq-len', '2048')), context + Math.max(...ks) + 64);
  const engine = await Engine.load({ target, drafter: drafter || undefined, maxSeqLen, maxSequences: 1 });
  const t = engine.config.target;
  if (t.moe) throw new Error(`roofline: ${target} is a mixture-of-experts model; this table counts dense weights only`);
  const st = engine.stats();
  const wb = BYTES[st.dtype], kvb = BYTES[st.kvDtype];
  if (!wb || !kvb) throw new Error(`roofline: unexpected engine dtypes ${st.dtype} / ${st.kvDtype}`);

  // Parameters one token's verify multiplies through (the embedding gather reads K rows only).
  const H = t.hiddenSize, q = t.numHeads * t.headDim, kv = t.numKvHeads * t.headDim;
  const perLayer = H * q * 2 + H * kv * 2 + 3 * H * t.intermediateSize;
  const matmulParams = t.numLayers * perLayer + t.vocabSize * H;
  const weightBytes = matmulParams * wb;

  // The GPU's name: --device (run.sh passes nvidia-smi's), else the PJRT device kind.
  const device = arg('device', '') || (engine.client.devices()[0]?.kind ?? engine.platform);
  const gpu = GPUS.find((g) => g.match.test(device));
  const given = (name: string) => (arg(name, '') ? Number(arg(name, '')) : undefined);
  let bw: number, bwSource: string;
  if (given('hbm-tbps')) [bw, bwSource] = [given('hbm-tbps')! * 1e12, '--hbm-tbps'];
  else if (gpu) [bw, bwSource] = [gpu.tbps * 1e12, `nominal ${gpu.name} HBM bandwidth`];
  else if (engine.platform === 'cpu') [bw, bwSource] = [hostCopyBandwidth(), 'host memory copy measured by this run (read + write)'];
  else throw new Error(`roofline: no bandwidth known for device '${device}': pass --hbm-tbps`);
  const peakT = given('peak-tflops') ?? (gpu ? (wb === 2 ? gpu.bf16 : gpu.tf32) : undefined);
  const peakSource = given('peak-tflops') ? '--peak-tflops' : gpu ? `nominal ${gpu.name} dense ${wb === 2 ? 'bf16' : 'tf32'} peak` : 'unknown (no compute floor)';

  const rows = [];
  for (const k of ks) {
    const seconds = await timeVerify(engine, k, context, reps);
    const kvBytes = t.numLayers * 2 * kv * (context + k) * kvb;
    const flops = 2 * k * matmulParams + 4 * t.numLayers * q * k * (context + k);
    const memFloor = (weightBytes + kvBytes) / bw;
    const computeFloor = peakT ? flops / (peakT * 1e12) : 0;
    rows.push({ k, seconds, bytes: weightBytes + kvBytes, flops, memFloor, computeFloor });
    console.error(`K=${k}: ${(seconds * 1e3).toFixed(3)} ms`);
  }
  // Ridge: the K from which the compute floor exceeds the memory floor (weights dominate both).
  const ridge = peakT ? Math.round((weightBytes / bw) / ((2 * matmulParams) / (peakT * 1e12))) : undefined;

  const ms = (s: number) => (s * 1e3).toFixed(3);
  const lines = [
    `# Verify time against the roofline — ${device} (${new Date().toISOString().slice(0, 10)})`,
    '',
    machine(engine.client),
    `- target ${target}: ${t.numLayers} layers, hidden ${H}, intermediate ${t.intermediateSize}, vocab ${t.vocabSize}; ` +
      `${(matmulParams / 1e6).toFixed(1)}M matmul parameters in ${st.dtype} = ${(weightBytes / 1e9).toFixed(3)} GB read per verify; KV cache ${st.kvDtype}` +
      (drafter ? `; drafter ${drafter} loaded (verify also gathers its features)` : ''),
    `- bandwidth ${(bw / 1e12).toFixed(3)} TB/s (${bwSource}); peak ${peakT ?? '-'} TFLOP/s (${peakSource})`,
    `- context ${context} tokens; median of ${reps} executions after a warm-up execution (compile excluded), host transfer of the result included`,
    '',
    '| K | ms / verify | GB read | memory floor ms | compute floor ms | measured / roofline | achieved GB/s | achieved TFLOP/s |',
    '|---|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.k} | ${ms(r.seconds)} | ${(r.bytes / 1e9).toFixed(3)} | ${ms(r.memFloor)} | ${peakT ? ms(r.computeFloor) : '-'} | ` +
      `${(r.seconds / Math.max(r.memFloor, r.computeFloor)).toFixed(1)}x | ${(r.bytes / r.seconds / 1e9).toFixed(0)} | ${(r.flops / r.seconds / 1e12).toFixed(2)} |`),
    '',
    ridge !== undefined
      ? `Ridge: from K ≈ ${ridge} the compute floor exceeds the memory floor; below it a verify of K tokens should cost about what K = 1 costs.`
      : 'No compute peak known: only the memory floor is shown.',
    'Floors count the least traffic and arithmetic (no activations, no logits written, no padding to page buckets); measured / roofline = 1.0x would be perfect.',
  ];
  publish(lines, `roofline-${engine.platform}.md`);
  await engine.close();
}

run(main);
