// Where one execution's time goes, per fusion/thunk, on XLA:CPU ("profile, then cut"): the
// engine's own compiled programs — plain decode (verify K=1), verify K=16, the drafter at block 16
// — captured from the CPU plugin's XLA dump (bench/profile-capture.ts, one process per engine),
// then each run under jaxlib's profiler by tools/profile/profile_module.py, which buckets the
// thunks (QKV/O/MLP/LM head/attention/...) from the optimized module. Tables: per bucket and the
// top 15 thunks, ms and % of the untraced execution; the engine's own timeVerify beside it.
//
// Needs a Python >= 3.12 venv with the jaxlib whose XLA the plugin is built from (not in CI):
//   python3.12 -m venv .venv-profile && .venv-profile/bin/pip install -r tools/profile/requirements.txt
// (or DFLASH_PROFILE_PYTHON=/path/to/python). `perf` (linux-perf), if it works, calibrates the
// traced per-thunk times (see tools/profile/profile_module.py); without it they are scaled uniformly.
//   npm run bench:profile -- [--only pair|0.6b] [--context 256] [--context-06b 64]
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { packageRoot } from '../lib/native';
import { Client } from '../lib/runtime';
import { makeRandomShape } from '../test/helpers/random-shape';
import { arg, machine, run } from './common';

interface Captured {
  dtype: string; dtypeReason: string; context: number; reps: number;
  programs: { id: string; kind: 'score' | 'draft'; size: number; engineMs: number; module: string }[];
  target: { hidden: number; intermediate: number; vocab: number; layers: number; qDim: number; kvDim: number };
  drafter: { intermediate: number; qDim: number; kvDim: number; featDim: number; blockSize: number; layers: number } | null;
}

interface Profile {
  untracedMs: number; untracedBeforeMs: number; untracedAfterMs: number; tracedWallMs: number; tracedRuns: number;
  outsideThunksMs: number; thunkMs: number; thunkCount: number; buckets: Record<string, number>;
  calibration: { method: string; perf: Record<string, number> | null; note: string | null; scaleYnn: number; scaleOther: number };
  thunks: { name: string; bucket: string; ms: number; what: string }[];
}

const python = process.env.DFLASH_PROFILE_PYTHON ?? path.join(packageRoot(), '.venv-profile', 'bin', 'python');

function capture(dump: string, args: string[]): Captured {
  fs.mkdirSync(dump, { recursive: true });
  const env = { ...process.env, XLA_FLAGS: `${process.env.XLA_FLAGS ?? ''} --xla_dump_to=${dump} --xla_dump_hlo_as_text`.trim() };
  const r = spawnSync(process.execPath, [path.join(packageRoot(), 'dist', 'bench', 'profile-capture.js'), '--dump', dump, ...args],
    { encoding: 'utf8', env, maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`profile-capture failed (${r.status ?? r.signal}):\n${r.stderr.slice(-4000)}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

function profile(c: Captured, p: Captured['programs'][number]): Profile {
  const d = p.kind === 'draft' ? c.drafter! : null;
  const cfg = {
    hidden: c.target.hidden, vocab: c.target.vocab, intermediate: d ? d.intermediate : c.target.intermediate,
    q_dim: d ? d.qDim : c.target.qDim, kv_dim: d ? d.kvDim : c.target.kvDim, feat_dim: d ? d.featDim : 0,
  };
  const r = spawnSync(python, [path.join(packageRoot(), 'tools', 'profile', 'profile_module.py'), '--hlo', p.module, '--kind', p.kind,
    '--context', String(c.context), '--config', JSON.stringify(cfg)], { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.error) throw new Error(`cannot run ${python} (${r.error.message}); create the venv as bench/profile.ts says`);
  if (r.status !== 0) throw new Error(`profile_module.py failed on ${p.module} (${r.status ?? r.signal}):\n${r.stderr.slice(-4000)}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

const ms = (x: number) => x.toFixed(x < 1 ? 3 : 2);
const pct = (x: number, of: number) => `${((100 * x) / of).toFixed(1)}%`;

function section(title: string, c: Captured, p: Captured['programs'][number], r: Profile): string[] {
  const total = r.untracedMs;
  const cal = r.calibration;
  const perf = cal.perf ? `perf split of the thunk time: YNNPACK ${pct(cal.perf.ynn, 1)}, other thunks ${pct(cal.perf['other thunks'], 1)}, ` +
    `executor ${pct(cal.perf.executor, 1)} (${cal.perf.samples} samples)` : `no perf split (${cal.note}): traced times scaled uniformly`;
  const buckets = Object.entries(r.buckets).sort((a, b) => b[1] - a[1]);
  const counts = new Map<string, number>();
  for (const t of r.thunks) counts.set(t.bucket, (counts.get(t.bucket) ?? 0) + 1);
  return [
    `### ${title}`,
    '',
    `- engine (lib/internal/probe.ts, median of ${c.reps}): **${ms(p.engineMs)} ms**; this module in jaxlib untraced: **${ms(total)} ms** ` +
      `(median before ${ms(r.untracedBeforeMs)} / after ${ms(r.untracedAfterMs)} the trace); traced: ${ms(r.tracedWallMs)} ms (${r.tracedRuns} runs)`,
    `- ${r.thunkCount} thunks; ${perf}; traced -> untraced (${cal.method}): YNNPACK x${cal.scaleYnn.toFixed(2)}, other x${cal.scaleOther.toFixed(2)}`,
    '',
    '| bucket | ms | % of execution | thunks |',
    '|---|---|---|---|',
    ...buckets.map(([b, v]) => `| ${b} | ${ms(v)} | ${pct(v, total)} | ${counts.get(b)} |`),
    `| outside thunks (dispatch, executor gaps, result transfer) | ${ms(r.outsideThunksMs)} | ${pct(r.outsideThunksMs, total)} | |`,
    `| **execution (untraced)** | **${ms(total)}** | 100% | ${r.thunkCount} |`,
    '',
    '| top thunks | bucket | what | ms | % |',
    '|---|---|---|---|---|',
    ...r.thunks.slice(0, 15).map((t) => `| ${t.name} | ${t.bucket} | ${t.what.replace(/\|/g, '/')} | ${ms(t.ms)} | ${pct(t.ms, total)} |`),
    '',
  ];
}

interface Case { label: string; args: string[]; programs: string[] }

async function profileModel(name: string, describe: string, cases: Case[], file: string): Promise<void> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'dflash-profile-'));
  const c0 = await Client.open();
  const load = os.loadavg().map((x) => x.toFixed(2)).join(' ');
  const lines = [`# Per-thunk profile: ${name} (${new Date().toISOString().slice(0, 10)})`, '', machine(c0),
    `- ${describe}`, `- load average at start (1/5/15 min): ${load} on ${os.cpus().length} cores — a shared machine: compare shares inside one table`,
    '- method: bench/profile.ts (engine module via XLA dump) + tools/profile/profile_module.py (jaxlib 0.11.2 profiler per-thunk events, perf-calibrated)', ''];
  c0.dispose();
  try {
    for (const [i, k] of cases.entries()) {
      const c = capture(path.join(work, `dump-${i}`), [...k.args, '--programs', k.programs.join(',')]);
      for (const p of c.programs) {
        const what = p.kind === 'score' ? `verify K=${p.size}` : `draft block ${p.size}`;
        process.stderr.write(`profiling ${name} ${k.label} ${what} (${path.basename(p.module)})\n`);
        const r = profile(c, p);
        lines.push(...section(`${what}, context ${c.context}, ${c.dtype}, ${k.label}`, c, p, r));
      }
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
  const out = path.join('bench', 'results', file);
  console.log(lines.join('\n'));
  fs.writeFileSync(out, lines.join('\n') + '\n');
  console.error(`(written to ${out})`);
}

async function main(): Promise<void> {
  if (!fs.existsSync(python)) throw new Error(`${python} not found: create it (bench/profile.ts header) or set DFLASH_PROFILE_PYTHON`);
  const only = arg('only', 'all');
  if (only === 'all' || only === 'pair') {
    const target = arg('target', 'models/code-pair/target'), drafter = arg('drafter', 'models/code-pair/drafter');
    const common = ['--target', target, '--drafter', drafter, '--context', arg('context', '256')];
    await profileModel('code-pair (trained, f32)', `target ${target}; drafter ${drafter}`, [
      { label: 'batchInvariant true (rows padded)', args: [...common, '--batch-invariant', 'true'], programs: ['v1', 'v16', 'd16'] },
      { label: 'batchInvariant false', args: [...common, '--batch-invariant', 'false'], programs: ['v1'] },
    ], 'profile-cpu.md');
  }
  if (only === 'all' || only === '0.6b') {
    const dir = arg('dir-06b', path.join(os.tmpdir(), 'dflash-shape-qwen3-0.6b'));
    const target = path.join(dir, 'target');
    if (!fs.existsSync(path.join(target, 'model.safetensors'))) makeRandomShape('qwen3-0.6b', target);
    const common = ['--target', target, '--context', arg('context-06b', '64'), '--reps', '5'];
    await profileModel('Qwen3-0.6B shape (random weights, bf16)',
      `RANDOM bf16 weights at the Qwen3-0.6B shape (tools/shapes/make_random.py, kept in ${dir}); no drafter, so verify has no hidden-state outputs`, [
        // No batchInvariant false run: 16-bit dots keep 3 rows either way (one bf16 row is ~8x slower).
        { label: 'batchInvariant true (rows padded)', args: [...common, '--batch-invariant', 'true'], programs: ['v1', 'v16'] },
      ], 'profile-random-0.6b-cpu.md');
  }
}

run(main);
