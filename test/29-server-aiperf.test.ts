// A real third-party client: NVIDIA's aiperf (pinned, ./.venv-aiperf) runs a short streaming chat
// profile against `dflash serve` — every request shares a system prompt, so the prefix cache has
// something to reuse — with no error, its prompt-cache metrics populated from
// usage.prompt_tokens_details.cached_tokens, and the server's /metrics scraped.
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, describe, expect, it } from 'vitest';

import { runAiperf } from '../bench/aiperf-run';
import { DRAFTER, ROOT, TARGET } from './helpers/server';

const CLI = path.join(ROOT, 'dist', 'lib', 'cli.js');
const out = fs.mkdtempSync(path.join(os.tmpdir(), 'dflash-aiperf-'));
let server: ChildProcess | undefined;
afterAll(() => {
  server?.kill('SIGKILL');
  fs.rmSync(out, { recursive: true, force: true });
});

describe('aiperf against dflash serve', () => {
  it('a streaming chat profile: no errors, prompt-cache reads reported, /metrics scraped', async () => {
    server = spawn(process.execPath, [CLI, 'serve', '--target', TARGET, '--drafter', DRAFTER, '--port', '0', '--max-seq-len', '1024',
      '--served-model-name', 'code-pair', '--no-precompile'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    const url = await new Promise<string>((resolve, reject) => {
      server!.stderr!.on('data', (d) => {
        err += d;
        const m = /listening on (http:\/\/\S+)/.exec(err);
        if (m && /dflash serve: ready/.test(err)) resolve(m[1]);
      });
      server!.on('exit', (code) => reject(new Error(`dflash serve exited with ${code}: ${err}`)));
    });
    const r = await runAiperf({
      url, model: 'code-pair', tokenizer: './models/code-pair/target', outDir: out,
      concurrency: 4, requests: 16, inputTokens: 48, outputTokens: 16, sharedSystemPrompt: 96,
    });
    expect(r.errors, JSON.stringify(r.errorSummary)).toBe(0);
    expect(r.requests).toBe(16);
    expect(r.ttft.avg).toBeGreaterThan(0);
    expect(r.itl.avg).toBeGreaterThan(0);
    expect(r.outputTokensPerSecond).toBeGreaterThan(0);
    // The shared system prompt's pages came from the prefix cache for all but the first requests.
    expect(r.promptCacheReadTokens).toBeGreaterThan(0);
    expect(r.promptCacheReadPercent).toBeGreaterThan(0);
    expect(r.scrapedMetrics).toEqual(expect.arrayContaining(['dflash_prefix_cache_hits', 'dflash_running_sequences']));
    server.kill('SIGTERM');
  });
});
