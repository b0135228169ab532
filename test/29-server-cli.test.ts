// `dflash serve` as a process (the compiled CLI, dist/): it listens, honours --api-key and
// --served-model-name, and on SIGTERM / SIGINT stops accepting connections, lets running
// streams finish within --shutdown-timeout (or aborts them with a final chunk whose
// finish_reason is "abort"), releases the device and exits 0; a signal while it is still
// precompiling exits within seconds (130 / 143) instead of waiting for the compiles.
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { afterEach, describe, expect, it } from 'vitest';

import { DRAFTER, ROOT, TARGET } from './helpers/server';

const CLI = path.join(ROOT, 'dist', 'lib', 'cli.js');
const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
});

interface Served { child: ChildProcess; url: string; stderr: () => string; exited: Promise<number | null> }

async function serve(args: string[]): Promise<Served> {
  // Precompiling every bucket of 512-token sequences takes minutes on 2 cores: the tests that are
  // not about it start lazily (--no-precompile), as before.
  const precompile = args.some((a) => a.startsWith('--precompile')) ? [] : ['--no-precompile'];
  const child = spawn(process.execPath, [CLI, 'serve', '--target', TARGET, '--drafter', DRAFTER, '--port', '0', '--max-seq-len', '512', ...precompile, ...args],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(child);
  let err = '';
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr!.on('data', (d) => {
      err += d;
      const m = /listening on (http:\/\/\S+)/.exec(err);
      if (m && /dflash serve: ready/.test(err)) resolve(m[1]);
    });
    exited.then((code) => reject(new Error(`dflash serve exited with ${code}: ${err}`)));
  });
  return { child, url, stderr: () => err, exited };
}

/** Starts a streamed completion and returns the text received so far plus a reader for the rest. */
async function startStream(url: string, maxTokens: number, headers: Record<string, string> = {}) {
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model: 'code-pair', prompt: 'def main():\n', max_tokens: maxTokens, stream: true, temperature: 0 }),
  });
  expect(res.status).toBe(200);
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let text = decoder.decode((await reader.read()).value);
  return {
    firstChunk: text,
    async rest(): Promise<string> {
      for (let r = await reader.read(); !r.done; r = await reader.read()) text += decoder.decode(r.value);
      return text;
    },
  };
}

function lastChunks(sse: string) {
  const events = sse.split('\n\n').filter(Boolean).map((e) => e.replace(/^data: /, ''));
  expect(events[events.length - 1]).toBe('[DONE]');
  return events.slice(0, -1).map((e) => JSON.parse(e));
}

describe('dflash serve', () => {
  it('SIGTERM: refuses new connections, finishes the running stream, releases the device, exits 0', async () => {
    const s = await serve(['--served-model-name', 'code-pair', '--api-key', 'sesame', '--shutdown-timeout', '60']);
    const auth = { authorization: 'Bearer sesame' };
    const models = await (await fetch(`${s.url}/v1/models`, { headers: auth })).json();
    expect(models.data[0].id).toBe('code-pair');
    expect((await fetch(`${s.url}/v1/models`)).status).toBe(401);

    const stream = await startStream(s.url, 100, auth);
    s.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 200));
    await expect(fetch(`${s.url}/health`)).rejects.toThrow();
    const chunks = lastChunks(await stream.rest());
    const closing = chunks[chunks.length - 1];
    expect(closing.choices[0].finish_reason).toBe('length');
    expect(chunks.length).toBeGreaterThan(10); // the stream went on after the signal
    expect(await s.exited).toBe(0);
    expect(s.stderr()).toMatch(/SIGTERM: no new requests/);
    expect(s.stderr()).toMatch(/stopped, device released/);
  });

  it('SIGINT past the deadline: the running stream ends with finish_reason "abort", then [DONE]', async () => {
    const s = await serve(['--served-model-name', 'code-pair', '--shutdown-timeout', '0.2']);
    const stream = await startStream(s.url, 480);
    s.child.kill('SIGINT');
    const chunks = lastChunks(await stream.rest());
    const closing = chunks[chunks.length - 1];
    expect(closing.choices[0].finish_reason).toBe('abort');
    expect(closing.dflash.steps).toBeGreaterThan(0);
    expect(await s.exited).toBe(0);
    expect(s.stderr()).toMatch(/stopped, device released/);
  });

  it('--tensor-parallel-size 2 --data-parallel-size 2: four devices, requests on both replicas, per-replica metrics', async () => {
    const s = await serve(['--served-model-name', 'code-pair', '--tensor-parallel-size', '2', '--data-parallel-size', '2', '--max-sequences', '2']);
    expect(s.stderr()).toMatch(/tensor parallel 2 x data parallel 2 on devices 0,1 \| 2,3/);
    const ask = () => fetch(`${s.url}/v1/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'code-pair', prompt: 'def main():\n', max_tokens: 16, temperature: 0 }),
    }).then((r) => r.json());
    const answers = await Promise.all([ask(), ask(), ask(), ask()]);
    for (const a of answers) expect(a.choices[0].text).toBe(answers[0].choices[0].text);  // greedy: the same on either replica
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    for (const r of ['0', '1']) {
      expect(metrics).toMatch(new RegExp(`dflash_replica_requests_total\\{replica="${r}"\\} [1-9]`));
      expect(metrics).toContain(`dflash_replica_devices{replica="${r}"} 2`);
    }
    s.child.kill('SIGTERM');
    expect(await s.exited).toBe(0);
  });

  it('precompiles before it is ready: /health 503 until then, no compile on the first requests', async () => {
    const child = spawn(process.execPath, [CLI, 'serve', '--target', TARGET, '--drafter', DRAFTER, '--port', '0', '--max-seq-len', '512',
      '--max-sequences', '2', '--precompile-context', '48', '--served-model-name', 'code-pair'], { stdio: ['ignore', 'ignore', 'pipe'] });
    children.push(child);
    let err = '';
    child.stderr!.on('data', (d) => (err += d));
    const url = await new Promise<string>((resolve) => {
      const poll = setInterval(() => {
        const m = /listening on (http:\/\/\S+)/.exec(err);
        if (m) {
          clearInterval(poll);
          resolve(m[1]);
        }
      }, 20);
    });
    // Listening, not ready: health says so, completions are refused with Retry-After.
    const early = await fetch(`${url}/health`);
    if (!/dflash serve: ready/.test(err)) {
      expect(early.status).toBe(503);
      expect(await early.json()).toEqual({ status: 'loading' });
    }
    while (!/dflash serve: ready/.test(err)) await new Promise((r) => setTimeout(r, 100));
    expect(err).toMatch(/ready: \d+ programs precompiled in [\d.]+ s/);
    expect((await fetch(`${url}/health`)).status).toBe(200);
    const body = { model: 'code-pair', prompt: 'def main():\n', max_tokens: 12, temperature: 0 };
    const r = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect(r.status).toBe(200);
    child.kill('SIGTERM');
    await new Promise((resolve) => child.on('exit', resolve));
  });

  it('SIGINT / SIGTERM while precompiling: a line saying so, exit 130 / 143 within seconds', async () => {
    // Empty program caches: every program compiles (minutes for 512-token sequences on 2 cores).
    const cacheDirs: string[] = [];
    try {
      const interrupt = async (signal: NodeJS.Signals) => {
        const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dflash-precompile-signal-'));
        cacheDirs.push(cacheDir);
        const child = spawn(process.execPath, [CLI, 'serve', '--target', TARGET, '--drafter', DRAFTER, '--port', '0', '--max-seq-len', '512',
          '--max-sequences', '8', '--served-model-name', 'code-pair'], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, DFLASH_CACHE_DIR: cacheDir } });
        children.push(child);
        let err = '';
        child.stderr!.on('data', (d) => (err += d));
        const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
        while (!/listening on/.test(err)) {
          if (child.exitCode !== null) throw new Error(`dflash serve exited early: ${err}`);
          await new Promise((r) => setTimeout(r, 20));
        }
        await new Promise((r) => setTimeout(r, 300));  // into the compiles (they started before listen)
        expect(err).not.toMatch(/dflash serve: ready/);
        const t0 = Date.now();
        child.kill(signal);
        const code = await exited;
        return { code, seconds: (Date.now() - t0) / 1000, err };
      };
      const [int, term] = await Promise.all([interrupt('SIGINT'), interrupt('SIGTERM')]);
      expect(int.err).toMatch(/dflash serve: SIGINT: interrupted while precompiling \(\d+\/(\d+|\?) programs\); exiting/);
      expect(int.code).toBe(130);
      expect(int.seconds).toBeLessThan(5);
      expect(term.err).toMatch(/dflash serve: SIGTERM: interrupted while precompiling \(\d+\/(\d+|\?) programs\); exiting/);
      expect(term.code).toBe(143);
      expect(term.seconds).toBeLessThan(5);
    } finally {
      for (const dir of cacheDirs) fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('dflash precompile fills a cache; serve on it at --max-sequences 16 and 32 compiles nothing, is ready and answers', async () => {
    // One cache for both sizes: the 32-sequence set holds every program shape of the 16 one but
    // for the KV pool's page count, so each size is precompiled into it once, then served.
    const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dflash-precompile-cmd-'));
    const run = (args: string[]) => new Promise<{ code: number | null; err: string }>((resolve) => {
      const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
      children.push(child);
      let err = '';
      child.stderr!.on('data', (d) => (err += d));
      child.on('exit', (code) => resolve({ code, err }));
    });
    try {
      for (const sequences of ['16', '32']) {
        // Prefill chunks up to 32 tokens: the rows buckets (1 .. 32) are what grows with --max-sequences.
        const common = ['--target', TARGET, '--drafter', DRAFTER, '--max-seq-len', '256', '--precompile-context', '32', '--max-sequences', sequences];
        const pre = await run(['precompile', ...common, '--cache-dir', cacheDir]);
        expect(pre.code, pre.err).toBe(0);
        const m = /dflash precompile: (\d+) programs for 32-token sequences \((\d+) compiled now/.exec(pre.err);
        expect(m, pre.err).not.toBeNull();
        const programs = Number(m![1]);
        expect(programs).toBeLessThanOrEqual(40);
        const env = { ...process.env, DFLASH_CACHE_DIR: cacheDir };
        const child = spawn(process.execPath, [CLI, 'serve', ...common, '--port', '0', '--served-model-name', 'code-pair'], { stdio: ['ignore', 'ignore', 'pipe'], env });
        children.push(child);
        let err = '';
        child.stderr!.on('data', (d) => (err += d));
        const exited = new Promise((resolve) => child.on('exit', resolve));
        while (!/dflash serve: ready/.test(err)) {
          if (child.exitCode !== null) throw new Error(`dflash serve exited: ${err}`);
          await new Promise((r) => setTimeout(r, 50));
        }
        expect(err).toContain(`ready: ${programs} programs precompiled`);
        expect(err).not.toMatch(/strict mode/);  // no Ajv warnings about the request schemas
        const url = /listening on (http:\/\/\S+)/.exec(err)![1];
        const body = { model: 'code-pair', prompt: 'def main():\n', max_tokens: 8, temperature: 0 };
        const asks = await Promise.all(Array.from({ length: 3 }, () =>
          fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }).then((r) => r.json())));
        for (const a of asks) expect(a.choices[0].text.length).toBeGreaterThan(0);
        const metrics = await (await fetch(`${url}/metrics`)).text();
        expect(metrics).toMatch(/^dflash_program_compiles 0$/m);  // everything came from the cache
        // Everything precompiled is loaded; the whole serving set (chunks up to --max-seq-len) stays in the tens.
        expect(Number(/^dflash_programs_loaded (\d+)$/m.exec(metrics)![1])).toBeGreaterThanOrEqual(programs);
        expect(Number(/^dflash_programs_serving_set (\d+)$/m.exec(metrics)![1])).toBeLessThanOrEqual(40);
        const maps = Number(/^dflash_process_memory_maps (\d+)$/m.exec(metrics)![1]);
        const limit = Number(/^dflash_process_memory_maps_limit (\d+)$/m.exec(metrics)![1]);
        if (limit > 0) expect(maps).toBeLessThan(limit / 2);
        child.kill('SIGTERM');
        await exited;
      }
    } finally {
      fs.rmSync(cacheDir, { recursive: true, force: true });
    }
  });

  it('rejects bad options with a message naming them', async () => {
    const child = spawn(process.execPath, [CLI, 'serve', '--target', TARGET, '--queue=-3'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr!.on('data', (d) => (err += d));
    const code = await new Promise((r) => child.on('exit', r));
    expect(code).toBe(1);
    expect(err).toMatch(/--queue must be an integer in 0\.\.\d+, got '-3'/);
    const tp = spawn(process.execPath, [CLI, 'serve', '--target', TARGET, '--tensor-parallel-size', '3'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let tpErr = '';
    tp.stderr!.on('data', (d) => (tpErr += d));
    expect(await new Promise((r) => tp.on('exit', r))).toBe(1);
    expect(tpErr).toContain("tensorParallel 3 does not divide the target's 4 attention heads (num_attention_heads)");
  });
});
