// Continuous batching, in process: C streams generate at once on one engine (each a closed loop:
// a stream ends, the next request starts), plain and speculative side by side, for each
// concurrency. Reports aggregate output tokens/s, per-stream TPOT and TTFT percentiles, τ, and
// the scheduler's iterations per token — the numbers that show whether one batched iteration
// really serves all streams. The whole measurement runs twice; the first pass (compiles) is dropped.
//   npm run bench:serving -- [--target DIR --drafter DIR | --random [--preset tiny|small]]
//        [--concurrency 1,4,16,64] [--requests 64] [--max-tokens 64] [--prompts FILE.jsonl]
//        [--adaptive true|false] [--http]   (--http: the same over HTTP, bench/serving-http.ts)
//        [--tp N] [--dp M]   the engine over M replicas of N devices (maxSequences split over the replicas)
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import { Engine } from '../lib/engine';
import { lineSpec, publishChart } from './chart';
import { arg, flag, machine, meshArgs, meshLine, models, publish, resultFile, run } from './common';

interface Sample { tokens: number; tpot: number; ttft: number; tau: number; steps: number }
interface Row { concurrency: number; mode: 'plain' | 'speculative'; seconds: number; tokens: number; iterations: number; samples: Sample[] }

async function main(): Promise<void> {
  if (flag('http')) {
    // The HTTP variant lives in its own script (a server process + a loopback load generator).
    const args = process.argv.slice(2).filter((a) => a !== '--http');
    const r = spawnSync(process.execPath, [require.resolve('vite-node/vite-node.mjs'), path.join(__dirname, 'serving-http.ts'), '--', ...args], { stdio: 'inherit' });
    process.exitCode = r.status ?? 1;
    return;
  }
  const levels = arg('concurrency', '1,4,16,64').split(',').map(Number);
  const perLevel = Number(arg('requests', '64'));
  const maxTokens = Number(arg('max-tokens', '64'));
  const adaptive = arg('adaptive', 'true') !== 'false';
  const promptFile = arg('prompts', 'bench/prompts/heldout-code.jsonl');
  const prompts = fs.readFileSync(promptFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l).prompt as string);
  const m = models();
  const { tensorParallel, dataParallel } = meshArgs();
  // maxSequences is per replica: together they hold the largest concurrency.
  const engine = await Engine.load({ target: m.target, drafter: m.drafter, maxSequences: Math.ceil(Math.max(...levels) / dataParallel), maxSeqLen: 1024,
    adaptive, tensorParallel, dataParallel });
  let rows: Row[] = [];
  for (let pass = 0; pass < 2; pass++) {
    rows = [];
    for (const concurrency of levels)
      for (const mode of ['plain', 'speculative'] as const) {
        rows.push(await drive(engine, prompts, concurrency, mode, Math.max(perLevel, concurrency), maxTokens));
        process.stderr.write(`pass ${pass + 1}: ${concurrency} streams, ${mode}: done\n`);
      }
  }
  await report(engine, rows, { describe: m.describe, promptFile, maxTokens, adaptive, file: resultFile('serving', m, engine.client) });
  await engine.close();
}

async function drive(engine: Engine, prompts: string[], concurrency: number, mode: Row['mode'], requests: number, maxTokens: number): Promise<Row> {
  const samples: Sample[] = [];
  let next = 0;
  const it0 = engine.stats().decodeIterations;
  const t0 = performance.now();
  const worker = async () => {
    while (next < requests) {
      const p = prompts[next++ % prompts.length];
      const d = await engine.generate(p, { maxTokens, speculative: mode === 'plain' ? false : undefined }).done();
      samples.push({ tokens: d.ids.length, tpot: d.stats.tpot, ttft: d.stats.ttft, tau: d.stats.meanAcceptanceLength, steps: d.stats.steps });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = (performance.now() - t0) / 1000;
  return { concurrency, mode, seconds, tokens: samples.reduce((a, s) => a + s.tokens, 0), iterations: engine.stats().decodeIterations - it0, samples };
}

function pct(xs: number[], p: number): number {
  const s = xs.slice().sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(p * (s.length - 1) + 0.5))] : 0;
}

async function report(engine: Engine, rows: Row[], o: { describe: string; promptFile: string; maxTokens: number; adaptive: boolean; file: string }): Promise<void> {
  const st = engine.stats();
  const base = new Map(rows.filter((r) => r.concurrency === rows[0].concurrency).map((r) => [r.mode, r.tokens / r.seconds]));
  const lines = [
    `# Continuous batching: throughput and latency vs concurrency (${new Date().toISOString().slice(0, 10)})`,
    '',
    machine(engine.client),
    meshLine(st, engine.client.platformName),
    `- ${o.describe}`,
    `- ${o.promptFile}, ${o.maxTokens} new tokens, greedy; closed loop: each stream starts its next request when one ends; ` +
      `engine maxSequences ${st.maxSequences} per replica, ${st.dtype}, adaptive speculation ${o.adaptive ? 'on' : 'off'}; second of two passes`,
    '',
    '| streams | mode | output tok/s | vs 1 stream | TPOT p50 / p99 (ms) | TTFT p50 / p99 (ms) | τ | tokens per iteration |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    const tps = r.tokens / r.seconds;
    const ms = (x: number) => (x * 1000).toFixed(1);
    const tpots = r.samples.map((s) => s.tpot), ttfts = r.samples.map((s) => s.ttft);
    const tau = r.samples.reduce((a, s) => a + s.tokens, 0) / Math.max(1, r.samples.reduce((a, s) => a + s.steps, 0));
    lines.push(`| ${r.concurrency} | ${r.mode} | ${tps.toFixed(0)} | ${(tps / base.get(r.mode)!).toFixed(2)}x | ${ms(pct(tpots, 0.5))} / ${ms(pct(tpots, 0.99))} | ` +
      `${ms(pct(ttfts, 0.5))} / ${ms(pct(ttfts, 0.99))} | ${r.mode === 'plain' ? '1.00' : tau.toFixed(2)} | ${(r.tokens / Math.max(1, r.iterations)).toFixed(2)} |`);
  }
  lines.push('', '"tokens per iteration": output tokens over the scheduler\'s decode iterations in the run — how many streams (and accepted drafts) each batched device call served.');
  publish(lines, o.file);
  const series = (mode: Row['mode']) => rows.filter((r) => r.mode === mode).map((r) => [r.concurrency, r.tokens / r.seconds] as [number, number]);
  await publishChart(lineSpec({
    title: 'Continuous batching: output tokens/s vs concurrent streams',
    subtitle: `${st.dtype}, ${o.maxTokens} new tokens per request, closed loop, one engine`,
    xTitle: 'concurrent streams', yTitle: 'output tokens / s (all streams)', xLog: true, yLog: true,
    series: [
      { name: 'plain', points: series('plain') },
      { name: `speculative (adaptive ${o.adaptive ? 'on' : 'off'})`, points: series('speculative') },
      { name: 'ideal: 1-stream plain × streams', dashed: true, points: series('plain').map(([c]) => [c, series('plain')[0][1] * c / series('plain')[0][0]] as [number, number]) },
    ],
  }), o.file);
}

run(main);
