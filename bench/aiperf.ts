// NVIDIA's aiperf against `dflash serve` (its own process, loopback): streaming chat at several
// concurrencies, every request sharing a system prompt (the prefix cache's case), after a warm-up
// run; the client's own view — TTFT, inter-token latency, throughput, prompt-cache reads — beside
// bench:serving's in-process numbers.
//   npm run bench:aiperf -- [--target DIR --drafter DIR] [--concurrency 1,4,16] [--requests 32]
//        [--isl 64] [--osl 64] [--system-prompt 128] [--tp N --dp M]
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { native } from '../lib/native';
import { findPlugin } from '../lib/plugins';
import { AiperfResult, runAiperf } from './aiperf-run';
import { arg, machine, meshArgs, publish, run } from './common';

async function main(): Promise<void> {
  const target = arg('target', 'models/code-pair/target'), drafter = arg('drafter', 'models/code-pair/drafter');
  const levels = arg('concurrency', '1,4,16').split(',').map(Number);
  const requests = Number(arg('requests', '32'));
  const isl = Number(arg('isl', '64')), osl = Number(arg('osl', '64')), system = Number(arg('system-prompt', '128'));
  const { tensorParallel, dataParallel } = meshArgs();
  const maxSequences = Math.ceil(Math.max(...levels) / dataParallel);
  const cli = path.join(__dirname, '..', 'dist', 'lib', 'cli.js');
  const server = spawn(process.execPath, [cli, 'serve', '--target', target, '--drafter', drafter, '--port', '0', '--max-seq-len', '1024',
    '--max-sequences', String(maxSequences), '--served-model-name', 'bench', '--no-precompile',
    '--tensor-parallel-size', String(tensorParallel), '--data-parallel-size', String(dataParallel)], { stdio: ['ignore', 'ignore', 'pipe'] });
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'dflash-bench-aiperf-'));
  try {
    let err = '';
    const url = await new Promise<string>((resolve, reject) => {
      server.stderr!.on('data', (d) => {
        err += d;
        const m = /listening on (http:\/\/\S+)/.exec(err);
        if (m && /dflash serve: ready/.test(err)) resolve(m[1]);
      });
      server.on('exit', (code) => reject(new Error(`dflash serve exited with ${code}: ${err}`)));
    });
    const tokenizer = './' + path.relative(path.join(__dirname, '..'), path.resolve(target));
    const common = { url, model: 'bench', tokenizer, inputTokens: isl, outputTokens: osl, sharedSystemPrompt: system };
    // Warm-up: the shape buckets the levels need compile here, not in the measured runs.
    for (const c of levels) await runAiperf({ ...common, outDir: path.join(out, `warm-${c}`), concurrency: c, requests: Math.max(8, c) });
    const rows: Array<[number, AiperfResult]> = [];
    for (const c of levels) {
      rows.push([c, await runAiperf({ ...common, outDir: path.join(out, `run-${c}`), concurrency: c, requests: Math.max(requests, c) })]);
      process.stderr.write(`concurrency ${c}: done\n`);
    }
    const client = await native().openClient(findPlugin().path);
    const ms = (x?: number) => (x === undefined ? '-' : x.toFixed(1));
    publish([
      `# aiperf against dflash serve (${new Date().toISOString().slice(0, 10)})`,
      '',
      machine({ platformName: client.platformName, platformVersion: client.platformVersion, pluginPath: client.pluginPath }),
      `- target ${target}; drafter ${drafter}; \`dflash serve\` --max-sequences ${maxSequences} --tensor-parallel-size ${tensorParallel} --data-parallel-size ${dataParallel} (its own process, loopback; the client shares the machine's cores)`,
      `- aiperf 0.13.0 (tools/aiperf/requirements.txt): streaming chat, ${isl} synthetic input tokens after a ${system}-token system prompt every request shares, ${osl} output tokens, ` +
        `${requests} requests per level after a warm-up run at each level`,
      '',
      '| concurrency | requests | errors | TTFT p50 / p99 (ms) | ITL p50 / p99 (ms) | output tok/s | requests/s | prompt-cache reads |',
      '|---|---|---|---|---|---|---|---|',
      ...rows.map(([c, r]) => `| ${c} | ${r.requests} | ${r.errors} | ${ms(r.ttft.p50)} / ${ms(r.ttft.p99)} | ${ms(r.itl.p50)} / ${ms(r.itl.p99)} | ` +
        `${r.outputTokensPerSecond.toFixed(0)} | ${r.requestsPerSecond.toFixed(2)} | ${r.promptCacheReadPercent?.toFixed(1) ?? '-'}% |`),
      '',
      'Prompt-cache reads: the share of prompt tokens the server reported in usage.prompt_tokens_details.cached_tokens (its prefix cache).',
    ], `aiperf-${client.platformName}${tensorParallel > 1 ? `-tp${tensorParallel}` : ''}${dataParallel > 1 ? `-dp${dataParallel}` : ''}.md`);
    client.dispose();
  } finally {
    server.kill('SIGTERM');
    fs.rmSync(out, { recursive: true, force: true });
  }
}

run(main);
