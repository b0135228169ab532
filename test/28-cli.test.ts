// The command line: `dflash generate` (human and --json output) and `dflash doctor`, run as a
// child process from the compiled package (dist/, built by `npm install` / `npm test`).
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';

import { native } from '../lib/native';
import { spawnAsync } from './helpers/spawn-async';

const ROOT = path.join(__dirname, '..');
const CLI = path.join(ROOT, 'dist', 'lib', 'cli.js');
const MODELS = path.join(__dirname, 'fixtures', 'models');

async function cli(args: string[]) {
  const r = await spawnAsync(process.execPath, [CLI, ...args], { timeout: 240_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('dflash generate', () => {
  it('--json streams token, step and done events', async () => {
    const r = await cli(['generate', '--target', path.join(MODELS, 'qwen3-f32'), '--drafter', path.join(MODELS, 'qwen3-f32-dflash'),
      '--max-tokens', '12', '--json', 'hello']);
    expect(r.code, r.stderr).toBe(0);
    const events = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    const done = events[events.length - 1];
    expect(done.event).toBe('done');
    expect(done.reason).toBe('maxTokens');
    expect(done.stats.tokens).toBe(12);
    expect(events.filter((e) => e.event === 'token' && e.id >= 0).length).toBe(12);
    expect(events.filter((e) => e.event === 'step').length).toBe(done.stats.steps);
  });

  it('prints text and an acceptance summary; bad input exits non-zero with a message', async () => {
    const ok = await cli(['generate', '--target', path.join(MODELS, 'qwen3-f32'), '--max-tokens', '5', 'hi']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stderr).toMatch(/maxTokens: 5 tokens in 5 target steps, tau 1\.00/);
    const bad = await cli(['generate', '--target', '/nonexistent/model', 'hi']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^dflash: cannot read \/nonexistent\/model\/config\.json/);
  });
});

describe('dflash doctor', () => {
  it('reports the selected plugin, its versions and the devices', async () => {
    const r = await cli(['doctor', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.selected).toMatch(/\.so$/);
    expect(report.client.platformName).toBe('cpu');
    expect(report.client.devices.length).toBeGreaterThan(0);
  });

  it('shows the compute dtype policy of the platform, per checkpoint dtype', async () => {
    const r = await cli(['doctor']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('compute dtype (dtype auto');
    expect(r.stdout).toContain('bf16 checkpoint kept in bf16 on cpu');
    expect(r.stdout).toContain('f16 checkpoint computed in f32 on cpu');
  });

  it('lists the devices and which meshes fit a checkpoint (the engine\'s own layout)', async () => {
    const r = await cli(['doctor', '--json', '--devices', '4', '--target', path.join(MODELS, 'qwen3-f32'), '--drafter', path.join(MODELS, 'qwen3-f32-dflash')]);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.client.devices.map((d: { id: number }) => d.id)).toEqual([0, 1, 2, 3]);
    const byTp = Object.fromEntries(report.meshes.meshes.map((m: { tensorParallel: number }) => [m.tensorParallel, m]));
    expect(Object.keys(byTp)).toEqual(['1', '2', '4']);
    expect(byTp[1].dataParallel).toBe(4);
    expect(byTp[2].weightBytesPerDevice).toBeLessThan(byTp[1].weightBytesPerDevice);
    expect(byTp[4].fits).toBe(true);
    const text = await cli(['doctor', '--devices', '8', '--target', path.join(MODELS, 'qwen3-f32')]);
    expect(text.stdout).toContain("tensorParallel 8 x dataParallel 1: no — tensorParallel 8 does not divide the target's 4 attention heads");
    expect(text.stdout).toMatch(/tensorParallel 2 x dataParallel 4: [0-9.]+ GB of weights per device of [0-9.]+ GB: fits/);
    expect(() => native().meshLayout({}, undefined, 2, 'cpu', 'f32')).toThrow();
  });

  it('reports the programs `dflash serve` precompiles for the checkpoint and serve\'s options', async () => {
    const drafter = JSON.parse(fs.readFileSync(path.join(MODELS, 'qwen3-f32-dflash', 'config.json'), 'utf8'));
    const args = ['--target', path.join(MODELS, 'qwen3-f32'), '--drafter', path.join(MODELS, 'qwen3-f32-dflash')];
    const plan = async (extra: string[]) => {
      const r = await cli(['doctor', '--json', ...args, ...extra]);
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout).programs as { maxSequences: number; context: number; programs: { kind: string; rows: number; tokens: number }[] };
    };
    const dflt = await plan([]);
    expect(dflt).toMatchObject({ maxSequences: 4, context: 2048, block: drafter.block_size });
    // serve's defaults: prefill chunks 16..256 (each with its drafter context), rows 1, 2, 4 x
    // (decode, verify of a block, two drafts).
    expect(dflt.programs.filter((p) => p.kind === 'prefill').map((p) => p.tokens)).toEqual([16, 32, 64, 128, 256]);
    expect(dflt.programs.filter((p) => p.kind === 'verify').map((p) => [p.rows, p.tokens])).toEqual([1, 2, 4].map((r) => [r, drafter.block_size]));
    expect(dflt.programs).toHaveLength(22);
    // The context does not add programs; the rows buckets do.
    expect((await plan(['--max-seq-len', '32768'])).programs).toHaveLength(22);
    expect((await plan(['--max-sequences', '16'])).programs).toHaveLength(22 + 2 * 4);
    const text = await cli(['doctor', ...args, '--precompile-context', '40']);
    expect(text.stdout).toMatch(/^ {2}18 programs, for 4 sequences of up to 40 tokens/m);
    expect(text.stdout).toContain('prefill chunks of 16, 32, 64 tokens');
    const bad = await cli(['doctor', ...args, '--max-sequences', '0']);
    expect(bad.stdout).toMatch(/programs for .+: --max-sequences must be/);
  });

  it('the policy query names a bad dtype or missing arguments instead of crashing', async () => {
    expect(() => native().dtypePolicy('cpu', 'int8' as 'f32')).toThrow("dtype must be f32, bf16 or f16, got 'int8'");
    expect(() => (native().dtypePolicy as unknown as () => string)()).toThrow(/dtypePolicy\(platform: string/);
  });
});
