// dflash side by side with its peers on the same weights: plain greedy decode tokens/s of dflash,
// llama.cpp (node-llama-cpp, on a GGUF converted from the same checkpoint) and JAX jit (the same
// forward on the same PJRT plugin), for one prompt given to all three as the same token ids, at
// each core count, in one run with the engines interleaved; plus whether their tokens agree.
// A --target that is a .gguf file is run as it is by both dflash (its blocks expanded to f32 at
// load) and llama.cpp (its own quantized kernels), and JAX sits out (it reads HF checkpoints).
//   npm run bench:peers -- [--target DIR | FILE.gguf] [--prompt-tokens 32] [--max-tokens 128] [--threads 1,2]
//        [--dtype f32|bf16|f16] [--rounds 9] [--prompts FILE.jsonl] [--jax-python PY] [--out FILE.md]
// Writes bench/results/peers-cpu.md (or peers-<dtype>-cpu.md) and a chart beside it.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { packageRoot } from '../lib/native';
import { openModel } from '../lib/model-source';
import { barSpec, publishChart } from './chart';
import { arg, publish, run } from './common';
import { convertCached, Dtype } from './gguf';
import type { RunResult } from './peers_engines';
import type { EngineResult, Job, WorkerResult } from './peers_worker';

const ROOT = packageRoot();
const DTYPES: Dtype[] = ['f32', 'bf16', 'f16'];

function positiveInt(name: string, dflt: string): number {
  const v = Number(arg(name, dflt));
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`--${name} must be a positive integer, got ${arg(name, dflt)}`);
  return v;
}

/** The first N ids of the prompt file's prompts, joined, in dflash's tokenizer. */
async function promptIds(target: string, file: string, n: number): Promise<{ ids: number[]; text: string; all: { text: string; ids: number[] } }> {
  const tok = await openModel(target).tokenizer();
  const prompts = fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l).prompt as string);
  const text = prompts.join('\n');
  const ids = tok.encode(text);
  if (ids.length < n) throw new RangeError(`--prompt-tokens ${n}: ${file} has only ${ids.length} tokens`);
  return { ids: ids.slice(0, n), text: tok.decode(ids.slice(0, n)), all: { text, ids } };
}

function runWorker(job: Job): WorkerResult {
  if (job.cores > os.cpus().length) throw new RangeError(`--threads ${job.cores}: this machine has ${os.cpus().length} cores`);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dflash-peers-'));
  try {
    const jobFile = path.join(tmp, 'job.json'), resultFile = path.join(tmp, 'result.json');
    fs.writeFileSync(jobFile, JSON.stringify(job));
    const viteNode = path.join(ROOT, 'node_modules', '.bin', 'vite-node');
    console.error(`(cores ${job.cores}: taskset -c 0-${job.cores - 1} vite-node bench/peers_worker.ts)`);
    execFileSync('taskset', ['-c', `0-${job.cores - 1}`, viteNode, path.join(ROOT, 'bench', 'peers_worker.ts'), '--', '--job', jobFile, '--result', resultFile],
      { stdio: ['ignore', 'inherit', 'inherit'], cwd: ROOT });
    return JSON.parse(fs.readFileSync(resultFile, 'utf8'));
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

const median = (v: number[]) => { const s = [...v].sort((a, b) => a - b); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
const decodeTps = (r: RunResult) => (r.ids.length > 1 && r.decodeSeconds > 0 ? (r.ids.length - 1) / r.decodeSeconds : NaN);

/** "yes (128/128)", or where the ids first differ from dflash's. */
function agreement(mine: number[], theirs: number[]): string {
  const n = Math.min(mine.length, theirs.length);
  let i = 0;
  while (i < n && mine[i] === theirs[i]) i++;
  if (i === n && mine.length === theirs.length) return `yes (${n}/${n})`;
  if (i === n) return `first ${n} identical; lengths ${mine.length} vs ${theirs.length}`;
  return `NO: first ${i} identical, then ${mine[i]} vs ${theirs[i]}`;
}

/** Did every run of one engine produce the same ids (greedy decoding is deterministic)? */
const stable = (e: EngineResult) => e.runs.every((r) => JSON.stringify(r.ids) === JSON.stringify(e.runs[0].ids));

async function main(): Promise<void> {
  const target = arg('target', 'models/code-pair/target');
  const dtype = arg('dtype', 'f32') as Dtype;
  if (!DTYPES.includes(dtype)) throw new RangeError(`--dtype ${dtype}: accepted ${DTYPES.join(', ')}`);
  const P = positiveInt('prompt-tokens', '32'), N = positiveInt('max-tokens', '128'), rounds = positiveInt('rounds', '9');
  const threads = arg('threads', '1,2').split(',').map((t) => Number(t));
  if (threads.some((t) => !Number.isInteger(t) || t < 1)) throw new RangeError(`--threads ${arg('threads', '')}: a comma-separated list of positive integers`);
  const promptFile = arg('prompts', 'bench/prompts/heldout-code.jsonl');
  const ggufTarget = target.endsWith('.gguf');
  if (ggufTarget && dtype !== 'f32') throw new RangeError('--dtype: a GGUF --target runs in its own types in llama.cpp and expanded to f32 in dflash');
  const { gguf, copy16 } = ggufTarget ? { gguf: target, copy16: undefined } : convertCached(target, dtype);
  const prompt = await promptIds(target, promptFile, P);
  const jaxPython = arg('jax-python', path.join(ROOT, '.venv-train', 'bin', 'python'));
  const results = threads.map((cores) => runWorker({ target, gguf, copy16, dtype, cores, prompt: prompt.ids, tokenizerCheck: prompt.all, maxTokens: N, rounds, jaxPython, pauseMs: 100, ggufTarget }));
  const name = resultName(dtype, ggufTarget ? target : undefined);
  report(results, { target, dtype, P, N, rounds, promptFile, promptText: prompt.text }, name);
  await chart(results, dtype, name);
}

const resultName = (dtype: Dtype, gguf?: string) =>
  gguf ? `peers-${path.basename(gguf, '.gguf').toLowerCase().replace(/[^a-z0-9]+/g, '-')}-cpu.md` : `peers${dtype === 'f32' ? '' : `-${dtype}`}-cpu.md`;

function report(results: WorkerResult[], o: { target: string; dtype: Dtype; P: number; N: number; rounds: number; promptFile: string; promptText: string }, name: string): void {
  const first = results[0];
  const lines = [
    `# dflash vs llama.cpp vs JAX: plain greedy decoding on the same weights (${new Date().toISOString().slice(0, 10)})`,
    '',
    first.machine,
    o.target.endsWith('.gguf')
      ? `- GGUF ${o.target} given to both engines as it is: llama.cpp runs its quantized tensors with its own kernels, dflash expands them to f32 at load;`
      : `- checkpoint ${o.target}, weights ${o.dtype} in every engine;`,
    `  prompt: the first ${o.P} tokens (dflash's tokenizer) of ${o.promptFile}, ${JSON.stringify(o.promptText.slice(0, 60))}…, given to every engine as the same token ids; up to ${o.N} greedy tokens, stopping at EOS`,
    `- decode tok/s = (generated tokens − 1) / (host time from the first generated token to the last): median of ${o.rounds} runs after one warm-up run per engine (compiles, caches); first token = host time from the call to the first generated token (prefill), median`,
    `- one process per core count, pinned to cores 0..T−1 with taskset (XLA sizes its thread pool to the cores it may use; llama.cpp is also given threads = T); the engines run interleaved in rotating order in ${o.rounds} rounds with 100 ms pauses; ratio = median over rounds of dflash tok/s ÷ the peer's tok/s in the same round`,
    ...[...new Set(results.flatMap((r) => r.engines.filter((e) => e.describe).map((e) => `- ${e.describe.replace(/context threads \d+/, 'context threads = T')}`)))],
    '',
    '| cores (threads) | engine | decode tok/s (median) | min – max | ms / token | first token ms | tokens | dflash ÷ engine (paired) | same tokens as dflash | same tokens every run |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  const verdicts: string[] = [];
  for (const r of results) {
    const dflash = r.engines.find((e) => e.name === 'dflash')!;
    for (const e of r.engines) {
      if (e.error) { lines.push(`| ${r.cores} | ${e.name} | not run: ${e.error.replace(/\|/g, '/').replace(/\n/g, ' ').slice(0, 200)} | | | | | | | |`); continue; }
      const tps = e.runs.map(decodeTps);
      const ratios = e.runs.map((run, i) => decodeTps(dflash.runs[i]) / decodeTps(run));
      const m = median(tps);
      lines.push(`| ${r.cores} | ${e.name} | ${m.toFixed(0)} | ${Math.min(...tps).toFixed(0)} – ${Math.max(...tps).toFixed(0)} | ${(1000 / m).toFixed(3)} | ` +
        `${(median(e.runs.map((x) => x.firstTokenSeconds)) * 1000).toFixed(2)} | ${e.runs[0].ids.length} | ${e === dflash ? '—' : median(ratios).toFixed(2) + 'x'} | ` +
        `${e === dflash ? '—' : agreement(dflash.runs[0].ids, e.runs[0].ids)} | ${stable(e) ? 'yes' : 'NO'} |`);
      if (e.name === 'llama.cpp') {
        // A "met" that only comes from llama.cpp losing speed with more threads says so.
        const fewer = results.filter((x) => x.cores < r.cores).flatMap((x) => x.engines.filter((y) => y.name === e.name && !y.error).map((y) => median(y.runs.map(decodeTps))));
        const slower = fewer.some((t) => t > m) ? `, but llama.cpp runs slower with ${r.cores} threads than with fewer here` : '';
        verdicts.push(`${r.cores} core${r.cores > 1 ? 's' : ''}: ${median(ratios) >= 1 ? 'met' : 'not met'} (${median(ratios).toFixed(2)}x${slower})`);
      }
    }
  }
  lines.push('');
  lines.push(`Noise: other processes on this shared machine used ${results.map((r) => `${(r.othersCpu * 100).toFixed(0)}% (${r.cores} core${r.cores > 1 ? 's' : ''} run)`).join(', ')} ` +
    `of its ${os.cpus().length} cores' CPU time during the measured rounds (/proc/stat less this bench's own processes).`);
  if (o.target.endsWith('.gguf'))
    lines.push(`Not the same precision: llama.cpp reads the file's quantized blocks every token, dflash the f32 weights it expanded them to (until quantized weights stay narrow on the device): ${verdicts.join('; ') || 'llama.cpp did not run'}.`);
  else lines.push(`Goal of issue #14 — dflash plain decode ≥ llama.cpp on the same weights, precision and thread count: ${verdicts.join('; ') || 'llama.cpp did not run'}.`);
  // Each engine at its best core count: the comparison a user choosing threads would make
  // (medians from different processes, so not a paired ratio).
  const best = (name: string) => results.flatMap((r) => r.engines.filter((e) => e.name === name && !e.error)
    .map((e) => ({ cores: r.cores, tps: median(e.runs.map(decodeTps)) }))).sort((a, b) => b.tps - a.tps)[0];
  const mine = best('dflash');
  const others = ['llama.cpp', 'JAX jit'].map((n) => ({ n, b: best(n) })).filter((x) => x.b);
  if (mine && others.length) {
    lines.push(`Each engine at its best core count (not paired): dflash ${mine.tps.toFixed(0)} tok/s (${mine.cores}); ` +
      others.map(({ n, b }) => `${n} ${b!.tps.toFixed(0)} tok/s (${b!.cores}) → dflash ÷ ${n} ${(mine.tps / b!.tps).toFixed(2)}x`).join('; ') + '.');
  }
  publish(lines, name);
}

async function chart(results: WorkerResult[], dtype: Dtype, table: string): Promise<void> {
  const bars = results.flatMap((r) => r.engines.filter((e) => !e.error).map((e) => ({
    category: `${r.cores} core${r.cores > 1 ? 's' : ''}`, group: e.name, value: Math.round(median(e.runs.map(decodeTps))),
  })));
  await publishChart(barSpec({
    title: `Plain greedy decode, same weights (${dtype}), same cores`,
    subtitle: `${os.cpus()[0]?.model ?? 'CPU'}; median of interleaved runs (bench/peers.ts)`,
    xTitle: 'cores (threads)', yTitle: 'decode tokens / s', bars,
  }), table);
}

run(main);
