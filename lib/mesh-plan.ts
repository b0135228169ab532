// Which meshes fit a checkpoint on the selected plugin's devices (`dflash doctor --target DIR`):
// for every tensorParallel size that divides the device count, what each device would hold of the
// weights (the engine's own layout, native meshLayout) against its memory, or why the model does
// not split that way. Replicas (dataParallel) fill the remaining devices.
import * as fs from 'fs';
import * as os from 'os';

import { drafterConfigFromHF, targetConfigFromHF } from './config';
import type { DeviceInfo } from './native';
import { native } from './native';
import { openDrafter, openModel } from './model-source';
import type { TensorSource } from './safetensors';

export interface MeshFit {
  tensorParallel: number;
  dataParallel: number;
  /** Weight bytes on each device (its shards of split tensors, all of replicated ones). */
  weightBytesPerDevice?: number;
  /** Memory each device has (device statistics; on the CPU plugin the host's available memory,
   *  shared by every virtual device). */
  memoryPerDevice?: number;
  fits?: boolean;
  /** Why the models do not split over tensorParallel devices. */
  refused?: string;
}

export interface MeshPlan {
  dtype: string;
  checkpointBytes: number;
  meshes: MeshFit[];
}

/** The dtype the engine's policy starts from; a block-quantized GGUF (Q4_K, ...) is expanded to
 *  f32 on CPU and bf16 elsewhere (engine/dtype_policy.h), so it counts as that 16/32-bit file. */
function checkpointDtype(tensors: TensorSource[], platform: string): 'f32' | 'bf16' | 'f16' {
  const bytes = new Map<string, number>();
  // A quantized checkpoint's dtype is its unquantized tensors' (native/engine/weights.cc CheckpointDtype).
  for (const t of tensors) if (!['I8', 'U8', 'F8_E4M3'].includes(t.dtype)) bytes.set(t.dtype, (bytes.get(t.dtype) ?? 0) + t.nbytes);
  const top = [...bytes.entries()].sort((a, b) => b[1] - a[1])[0]?.[0];
  if (top && /^Q\d/.test(top)) return platform === 'cpu' || platform === 'host' ? 'f32' : 'bf16';
  return top === 'BF16' ? 'bf16' : top === 'F16' ? 'f16' : 'f32';
}

function hostAvailable(): number {
  try {
    const m = /MemAvailable:\s+(\d+) kB/.exec(fs.readFileSync('/proc/meminfo', 'utf8'));
    if (m) return Number(m[1]) * 1024;
  } catch { /* not Linux */ }
  return os.freemem();
}

export function planMeshes(platform: string, devices: DeviceInfo[], target: string, drafter?: string): MeshPlan {
  const model = openModel(target);
  const tcfg = targetConfigFromHF(model.config, model.configLabel, { slidingWindows: true, moe: true });
  const d = drafter ? openDrafter(drafter) : undefined;
  const dcfg = d ? drafterConfigFromHF(d.config, tcfg, d.configLabel, { slidingWindows: true, moe: true }) : undefined;
  const tensors = model.tensors(tcfg.quant).concat(d ? d.tensors(dcfg?.quant) : []);
  const ckpt = checkpointDtype(tensors, platform);
  const n = devices.length;
  const limits = devices.map((d) => d.memoryStats?.bytes_limit).filter((x): x is number => typeof x === 'number' && x > 0);
  const cpu = platform === 'cpu';
  let dtype = '';
  const meshes: MeshFit[] = [];
  for (let tp = 1; tp <= n; tp++) {
    if (n % tp !== 0) continue;
    const fit: MeshFit = { tensorParallel: tp, dataParallel: n / tp };
    try {
      const layout = native().meshLayout(tcfg as unknown as Record<string, unknown>, dcfg as unknown as Record<string, unknown> | undefined, tp, platform, ckpt);
      dtype = layout.dtype;
      fit.weightBytesPerDevice = layout.weightBytes;
      if (cpu) {
        // Virtual devices share the host: every device's weights come out of the same memory.
        fit.memoryPerDevice = hostAvailable() / n;
      } else if (limits.length === n) {
        fit.memoryPerDevice = Math.min(...limits);
      }
      if (fit.memoryPerDevice !== undefined) fit.fits = layout.weightBytes < fit.memoryPerDevice;
    } catch (e) {
      fit.refused = (e as Error).message;
    }
    meshes.push(fit);
  }
  return { dtype, checkpointBytes: tensors.reduce((s, t) => s + t.nbytes, 0), meshes };
}

const GB = (b: number) => `${(b / 1e9).toFixed(b < 1e8 ? 4 : 2)} GB`;

/** The plan as doctor prints it: one line per mesh. */
export function describeMeshPlan(plan: MeshPlan): string[] {
  const out = [`  checkpoint ${GB(plan.checkpointBytes)}, computed in ${plan.dtype || '?'}; per tensorParallel size (dataParallel fills the devices):`];
  for (const m of plan.meshes) {
    const name = `tensorParallel ${m.tensorParallel} x dataParallel ${m.dataParallel}`;
    if (m.refused) out.push(`    ${name}: no — ${m.refused}`);
    else if (m.fits === undefined) out.push(`    ${name}: ${GB(m.weightBytesPerDevice ?? 0)} of weights per device (device memory unknown)`);
    else out.push(`    ${name}: ${GB(m.weightBytesPerDevice ?? 0)} of weights per device of ${GB(m.memoryPerDevice ?? 0)}: ` +
      (m.fits ? `fits (${GB((m.memoryPerDevice ?? 0) - (m.weightBytesPerDevice ?? 0))} left for the KV pool)` : 'does not fit'));
  }
  return out;
}
