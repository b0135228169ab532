// One core count of bench/peers.ts, in a process the parent pinned to that many cores with
// taskset (the XLA CPU client sizes its thread pool when it starts, so every core count needs its
// own process). Loads the three engines, runs each once to compile / warm up, then runs rounds
// in a rotating order (A B C, B C A, C A B, ...) so load from the shared machine falls on all
// engines alike, and writes every run's timings and ids as JSON for the parent's table.
//   (started by bench/peers.ts)  vite-node bench/peers_worker.ts -- --job JOB.json --result OUT.json
import * as fs from 'fs';
import * as os from 'os';

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
  /** 1-minute load average when the measured rounds began and ended (this run's processes included). */
  load: [number, number];
  engines: EngineResult[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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
  await tryLoad('JAX jit', () => loadJax({ python: job.jaxPython, target: job.target, plugin: dflash.engine.client.pluginPath, dtype: job.dtype, maxLen: maxSeqLen, eos }));

  let loadStart = 0;
  try {
    for (const p of peers) await p.generate(job.prompt, job.maxTokens);  // compile + warm-up, discarded
    loadStart = os.loadavg()[0];
    for (let r = 0; r < job.rounds; r++) {
      for (let i = 0; i < peers.length; i++) {
        const p = peers[(r + i) % peers.length];
        await sleep(job.pauseMs);
        const res = await p.generate(job.prompt, job.maxTokens);
        results.find((x) => x.name === p.name)!.runs.push(res);
      }
    }
  } finally {
    for (const p of peers) await p.dispose().catch(() => undefined);
  }
  const out: WorkerResult = { cores: job.cores, machine: machineLine, load: [loadStart, os.loadavg()[0]], engines: results };
  fs.writeFileSync(arg('result', ''), JSON.stringify(out));
}

run(main);
