// Serving over HTTP: `dflash serve` in its own process, driven on loopback by a closed-loop
// load generator (the official `openai` client, C concurrent streaming clients, each sending its
// next request when the previous one ends). For each concurrency, plain and speculative
// decoding run back to back on the same server (the request extension dflash.speculative), and
// the table reports requests/s, output tokens/s, and TTFT / TPOT percentiles as the clients see
// them. The whole measurement runs twice; the first pass (compiles, disk-cache loads) is dropped.
//   npm run bench:serving:http -- [--target DIR --drafter DIR | --random [--preset tiny]]
//        [--concurrency 1,4,16] [--requests 32] [--max-tokens 64] [--block-size B]
//        [--prompts FILE.jsonl] [--url http://127.0.0.1:PORT] [--out bench/results/NAME.md]
// Needs the compiled CLI (npx tsc -p tsconfig.json). --url drives a server already running on
// this machine instead (loopback addresses only).
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import OpenAI from 'openai';

import { arg, models, publish, run } from './common';

const MAX_CONCURRENCY = 64; // the load generator's bound: a loopback benchmark, not a flood

interface Sample { ttft: number; tpot?: number; tokens: number; tau?: number; steps?: number }
interface Row { concurrency: number; mode: 'plain' | 'speculative'; requests: number; seconds: number; samples: Sample[] }

async function main(): Promise<void> {
  const levels = arg('concurrency', '1,4,16').split(',').map(Number);
  for (const c of levels) if (!Number.isInteger(c) || c < 1 || c > MAX_CONCURRENCY) throw new Error(`--concurrency values must be integers in 1..${MAX_CONCURRENCY}, got ${c}`);
  const perLevel = Number(arg('requests', '32'));
  const maxTokens = Number(arg('max-tokens', '64'));
  const blockSize = process.argv.includes('--block-size') ? Number(arg('block-size', '0')) : undefined;
  const promptFile = arg('prompts', 'bench/prompts/heldout-code.jsonl');
  const prompts = fs.readFileSync(promptFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l).prompt as string);

  const m = models();
  const server = process.argv.includes('--url') ? { url: checkLoopback(arg('url', '')), child: undefined } : await startServer(m.target, m.drafter, Math.max(...levels));
  try {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: process.env.DFLASH_API_KEY ?? 'unused', maxRetries: 0, timeout: 600_000 });
    const info = (await client.models.list()).data[0] as unknown as { id: string; dflash: { platform?: string; block_size: number | null; max_sequences?: number } };
    if (!info.dflash?.block_size) throw new Error('the server has no drafter: start it with --drafter to compare speculative decoding');
    let rows: Row[] = [];
    for (let pass = 0; pass < 2; pass++) {
      rows = [];
      for (const concurrency of levels) {
        for (const mode of ['plain', 'speculative'] as const) {
          const requests = Math.max(perLevel, concurrency);
          rows.push(await drive(client, info.id, prompts, { concurrency, mode, requests, maxTokens, blockSize }));
          process.stderr.write(`pass ${pass + 1}: concurrency ${concurrency} ${mode} done\n`);
        }
      }
    }
    report(rows, { describe: m.describe, random: m.random, platform: info.dflash.platform ?? 'unknown', block: blockSize ?? info.dflash.block_size, maxSequences: info.dflash.max_sequences, promptFile, maxTokens, external: !server.child });
  } finally {
    server.child?.kill('SIGTERM');
  }
}

function checkLoopback(url: string): string {
  const host = new URL(url).hostname;
  if (!['127.0.0.1', 'localhost', '[::1]', '::1'].includes(host)) throw new Error(`--url must be a loopback address (127.0.0.1, localhost, ::1), got ${host}`);
  return url.replace(/\/$/, '');
}

/** `dflash serve` on a free loopback port, as many sequences at once as the highest concurrency. */
async function startServer(target: string, drafter: string, maxSequences: number): Promise<{ url: string; child: ChildProcess }> {
  const cli = path.join(__dirname, '..', 'dist', 'lib', 'cli.js');
  if (!fs.existsSync(cli)) throw new Error(`${cli} is missing: build it with npx tsc -p tsconfig.json`);
  const child = spawn(process.execPath, [cli, 'serve', '--target', target, '--drafter', drafter, '--port', '0',
    '--max-sequences', String(maxSequences), '--queue', String(MAX_CONCURRENCY), '--max-seq-len', '1024'], { stdio: ['ignore', 'ignore', 'pipe'] });
  process.on('exit', () => child.kill('SIGKILL'));
  let err = '';
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr!.on('data', (d) => {
      err += d;
      const m = /listening on (http:\/\/\S+)/.exec(err);
      if (m) resolve(m[1]);
    });
    child.on('exit', (code) => reject(new Error(`dflash serve exited with ${code}:\n${err}`)));
  });
  return { url, child };
}

/** `requests` streamed completions by `concurrency` closed-loop clients. */
async function drive(client: OpenAI, model: string, prompts: string[],
  o: { concurrency: number; mode: 'plain' | 'speculative'; requests: number; maxTokens: number; blockSize?: number }): Promise<Row> {
  let next = 0;
  const samples: Sample[] = [];
  const dflash = o.mode === 'plain' ? { speculative: false } : { speculative: true, ...(o.blockSize ? { block_size: o.blockSize } : {}) };
  const worker = async () => {
    for (let i = next++; i < o.requests; i = next++) {
      const t0 = performance.now();
      let first: number | undefined, last = t0, tokens = 0, tau: number | undefined, steps: number | undefined;
      const stream = await client.completions.create({
        model, prompt: prompts[i % prompts.length], max_tokens: o.maxTokens, temperature: 0, stream: true,
        stream_options: { include_usage: true }, dflash,
      } as never) as unknown as AsyncIterable<OpenAI.Completion & { dflash?: { mean_acceptance_length: number; steps: number } }>;
      for await (const c of stream) {
        if (c.choices[0]?.text) { first ??= performance.now(); last = performance.now(); }
        if (c.dflash) { tau = c.dflash.mean_acceptance_length; steps = c.dflash.steps; }
        if (c.usage) tokens = c.usage.completion_tokens;
      }
      const ttft = ((first ?? last) - t0) / 1000;
      samples.push({ ttft, tpot: tokens > 1 && first !== undefined ? (last - first) / 1000 / (tokens - 1) : undefined, tokens, tau, steps });
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: o.concurrency }, worker));
  return { concurrency: o.concurrency, mode: o.mode, requests: o.requests, seconds: (performance.now() - t0) / 1000, samples };
}

function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}

function report(rows: Row[], o: { describe: string; random?: string; platform: string; block: number | null; maxSequences?: number; promptFile: string; maxTokens: number; external: boolean }) {
  const cpus = os.cpus();
  const ms = (x: number) => (x * 1000).toFixed(1);
  const lines = [
    `# Serving over HTTP: plain vs speculative (${new Date().toISOString().slice(0, 10)})`,
    '',
    `- machine: ${cpus[0]?.model ?? 'unknown'} x${cpus.length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${os.platform()} ${os.release()}; node ${process.version}; ` +
      `server PJRT platform ${o.platform}${o.platform === 'cpu' ? ' — absolute times are XLA CPU-plugin measurements' : ''}`,
    `- ${o.describe}; speculative block ${o.block}; server ${o.external ? 'given by --url' : `\`dflash serve\` in its own process, --max-sequences ${o.maxSequences}`}`,
    `- load: closed loop on 127.0.0.1, C concurrent streaming clients (openai npm client, /v1/completions, greedy), prompts from ${o.promptFile}, up to ${o.maxTokens} tokens each; ` +
      'plain and speculative run back to back per concurrency on the same server; the whole run is done twice and the first (compiling) pass dropped',
    '- TTFT: request sent → first text chunk received; TPOT: (last − first text chunk) / (tokens − 1); req/s and tok/s over the wall time of the level; speedup = speculative ÷ plain output tok/s',
    '',
    '| concurrency | mode | requests | req/s | output tok/s | TTFT p50 / p90 / p99 ms | TPOT p50 / p90 / p99 ms | τ (tokens / target step) | speedup |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    const tokens = r.samples.reduce((a, s) => a + s.tokens, 0);
    const ttft = r.samples.map((s) => s.ttft);
    const tpot = r.samples.flatMap((s) => (s.tpot === undefined ? [] : [s.tpot]));
    // τ pooled over the level: all step tokens / all steps (each response reports its τ and steps).
    const stepped = r.samples.filter((s) => s.tau !== undefined && s.steps);
    const steps = stepped.reduce((a, s) => a + s.steps!, 0);
    const tau = steps > 0 ? stepped.reduce((a, s) => a + s.tau! * s.steps!, 0) / steps : undefined;
    const plain = rows.find((x) => x.concurrency === r.concurrency && x.mode === 'plain')!;
    const plainTps = plain.samples.reduce((a, s) => a + s.tokens, 0) / plain.seconds;
    const tps = tokens / r.seconds;
    lines.push(`| ${r.concurrency} | ${r.mode} | ${r.requests} | ${(r.requests / r.seconds).toFixed(2)} | ${tps.toFixed(1)} | ` +
      `${[50, 90, 99].map((p) => ms(percentile(ttft, p))).join(' / ')} | ${[50, 90, 99].map((p) => ms(percentile(tpot, p))).join(' / ')} | ` +
      `${tau !== undefined ? tau.toFixed(2) : '–'} | ${r.mode === 'plain' ? '' : `${(tps / plainTps).toFixed(2)}x`} |`);
  }
  publish(lines, `serving-http${o.random ? `-random-${o.random}` : ''}-${o.platform}.md`);
}

run(main);
