// One core count of bench/peers.ts, in a process the parent pinned to that many cores with
// taskset (the XLA CPU client sizes its thread pool when it starts, so every core count needs its
// own process). Loads the three engines, runs each once to compile / warm up, then runs rounds
// in a rotating order (A B C, B C A, C A B, ...) so load from the shared machine falls on all
// engines alike, and writes every run's timings and ids as JSON for the parent's table.
//   (started by bench/peers.ts)  vite-node bench/peers_worker.ts -- --job JOB.json --result OUT.json
import * as fs from 'fs';

import { arg, machine, run } from './common';
import type { Dtype } from './gguf';
import { loadDflash, loadJax, loadLlamaCpp, Peer, RunResult } from './peers_engines';

export interface Job {
  target: string;
  gguf: string;
  /** The checkpoint copy with 16-bit weights (only for dtype bf16 / f16). */
  copy16?: string;
  dtype: Dtype;
  cores: number;
  prompt: number[];
  /** The whole prompt file's text and dflash's ids for it (llama.cpp's tokenizer is checked against them). */
  tokenizerCheck: { text: string; ids: number[] };
  maxTokens: number;
  rounds: number;
  jaxPython: string;
  /** Pause between two runs so one engine's spinning worker threads have gone idle before the next starts. */
  pauseMs: number;
  /** The target is a GGUF file both dflash and llama.cpp load as it is (JAX sits out). */
  ggufTarget?: boolean;
}

export interface EngineResult {
  name: string;
  describe: string;
  runs: RunResult[];
  /** Why the engine did not run, if it did not. */
  error?: string;
}

export interface WorkerResult {
  cores: number;
  machine: string;
  /** Share of the machine's CPU time that other processes used during the rounds (0..1). */
  othersCpu: number;
  engines: EngineResult[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Busy and total CPU ticks of the whole machine (/proc/stat), and the ticks of some processes. */
function machineTicks(): { busy: number; total: number } {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1, 9).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - f[3] - f[4], total };  // idle and iowait are not busy
}
function processTicks(pids: number[]): number {
  let sum = 0;
  for (const pid of pids) {
    try {
      // utime and stime, fields 14 and 15; the command name (field 2) may hold spaces, so split after ')'.
      const rest = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
      sum += Number(rest[11]) + Number(rest[12]);
    } catch { /* a process that is gone adds nothing */ }
  }
  return sum;
}

async function main(): Promise<void> {
  const job: Job = JSON.parse(fs.readFileSync(arg('job', ''), 'utf8'));
  const maxSeqLen = job.prompt.length + job.maxTokens + 16;
  const dflash = await loadDflash({ target: job.target, copy16: job.copy16, dtype: job.dtype, maxSeqLen });
  const machineLine = machine(dflash.engine.client);  // before dispose() closes the client
  const eos = [...new Set([...dflash.engine.tokenizer.eosTokenIds, ...(dflash.engine.config.target.eosTokenIds ?? [])])];
  const results: EngineResult[] = [{ name: dflash.name, describe: dflash.describe, runs: [] }];
  const peers: Peer[] = [dflash];
  // A peer that cannot start is reported in the table instead of ending the run.
  const tryLoad = async (name: string, load: () => Promise<Peer>) => {
    try {
      const p = await load();
      peers.push(p);
      results.push({ name: p.name, describe: p.describe, runs: [] });
    } catch (e) {
      results.push({ name, describe: '', runs: [], error: (e as Error).message });
    }
  };
  await tryLoad('llama.cpp', () => loadLlamaCpp({ gguf: job.gguf, dtype: job.dtype, threads: job.cores, contextSize: maxSeqLen, eos: new Set(eos), tokenizerCheck: job.tokenizerCheck }));
  if (job.ggufTarget) results.push({ name: 'JAX jit', describe: '', runs: [], error: 'the target is a GGUF file (the JAX forward reads Hugging Face checkpoints)' });
  else await tryLoad('JAX jit', () => loadJax({ python: job.jaxPython, target: job.target, plugin: dflash.engine.client.pluginPath, dtype: job.dtype, maxLen: maxSeqLen, eos }));

  const ownPids = [process.pid, ...peers.flatMap((p) => (p.pid ? [p.pid] : []))];
  let before = { m: machineTicks(), own: 0 }, othersCpu = NaN;
  try {
    for (const p of peers) await p.generate(job.prompt, job.maxTokens);  // compile + warm-up, discarded
    before = { m: machineTicks(), own: processTicks(ownPids) };
    for (let r = 0; r < job.rounds; r++) {
      for (let i = 0; i < peers.length; i++) {
        const p = peers[(r + i) % peers.length];
        await sleep(job.pauseMs);
        const res = await p.generate(job.prompt, job.maxTokens);
        results.find((x) => x.name === p.name)!.runs.push(res);
      }
    }
    const after = { m: machineTicks(), own: processTicks(ownPids) };
    othersCpu = Math.max(0, (after.m.busy - before.m.busy) - (after.own - before.own)) / (after.m.total - before.m.total);
  } finally {
    for (const p of peers) await p.dispose().catch(() => undefined);
  }
  const out: WorkerResult = { cores: job.cores, machine: machineLine, othersCpu, engines: results };
  fs.writeFileSync(arg('result', ''), JSON.stringify(out));
}

run(main);
