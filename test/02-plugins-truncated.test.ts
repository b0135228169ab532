// A damaged plugin file must be an error naming the file, never a signal: cuts of the real CPU
// plugin (an interrupted install), a file that is not ELF, a 32-bit header and a header for
// another machine, through every entry point (Client.open, describePlugins with the probe,
// findPlugin + Engine.load, `dflash doctor --plugin`). Each case runs in a child process of the
// compiled package, so a SIGBUS would show as a signal instead of killing the test runner.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, describe, expect, it } from 'vitest';

import { findPlugin } from '../lib/plugins';

const ROOT = path.join(__dirname, '..');
const DIST = path.join(ROOT, 'dist', 'lib');
const TARGET = path.join(ROOT, 'models', 'code-pair', 'target');
const REAL = findPlugin({ env: { DFLASH_PJRT_PLUGIN: process.env.DFLASH_PJRT_PLUGIN } }).path;
const SCRATCH = fs.mkdtempSync(path.join(os.tmpdir(), 'dflash-cut-'));
afterAll(() => fs.rmSync(SCRATCH, { recursive: true, force: true }));

// The first `bytes` bytes of the real plugin, under the plugin's own file name (so discovery and
// messages look exactly as after an interrupted pip install).
function cut(name: string, bytes: number): string {
  const dir = path.join(SCRATCH, name);
  fs.mkdirSync(dir);
  const out = path.join(dir, path.basename(REAL));
  const fd = fs.openSync(REAL, 'r');
  const buf = Buffer.alloc(bytes);
  fs.readSync(fd, buf, 0, bytes, 0);
  fs.closeSync(fd);
  fs.writeFileSync(out, buf);
  return out;
}

// A copy of the real plugin's first 64 KiB with one ELF header byte changed.
function patchedHeader(name: string, offset: number, value: number): string {
  const file = cut(name, 65536);
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, Buffer.from([value]), 0, 1, offset);
  fs.closeSync(fd);
  return file;
}

const CASES: { name: string; file: () => string; message: RegExp }[] = [
  { name: 'the first 1 MiB', file: () => cut('1mib', 1 << 20), message: /is truncated: segment \d+ ends at byte \d+ but the file has 1048576 bytes \(an interrupted install/ },
  { name: 'the ELF header only', file: () => cut('header', 64), message: /is truncated: its program header table ends at byte \d+ but the file has 64 bytes/ },
  { name: 'half of it', file: () => cut('half', Math.floor(fs.statSync(REAL).size / 2)), message: /is truncated: segment \d+ ends at byte/ },
  { name: 'a text file', file: () => { const f = path.join(SCRATCH, 'notes.so'); fs.writeFileSync(f, 'not a library\n'); return f; }, message: /is not a shared library: it does not start with the ELF magic bytes \(14-byte file\)/ },
  { name: 'a 32-bit header', file: () => patchedHeader('elf32', 4, 1), message: /is a 32-bit ELF file; this dflash build loads 64-bit libraries only/ },
  // e_machine is little-endian at byte 18: 183 = aarch64, 62 = x86-64 (whichever this host is not).
  { name: 'a header for another machine', file: () => patchedHeader('arch', 18, os.arch() === 'x64' ? 183 : 62), message: /is built for (aarch64 \(arm64\)|x86-64) but this host is/ },
];

// Runs every entry point on one file in a fresh Node process and reports what each threw.
const PROBE = `
const [dist, target, plugin] = process.argv.slice(1);
const d = require(dist + '/index.js');
const out = {};
const msg = (e) => (e && e.message) || String(e);
(async () => {
  try { await d.Client.open({ plugin }); out.client = 'opened'; } catch (e) { out.client = msg(e); }
  const report = await d.describePluginsWithProbe({ plugin });
  out.describe = report.candidates[0].probeError || 'probed';
  out.describeClient = report.client && report.client.error;
  try { d.findPlugin({ plugin }); out.find = 'found'; } catch (e) { out.find = msg(e); }
  try { await d.Engine.load({ target, plugin }); out.engine = 'loaded'; } catch (e) { out.engine = msg(e); }
  console.log(JSON.stringify(out));
})();
`;

describe.each(CASES)('a damaged plugin: $name', ({ file, message }) => {
  const plugin = file();

  it('Client.open, describePlugins, Engine.load: an Error naming the file; the process survives', () => {
    const r = spawnSync(process.execPath, ['-e', PROBE, DIST, TARGET, plugin], { encoding: 'utf8', timeout: 120_000 });
    expect(r.signal, r.stderr).toBeNull();
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
    for (const key of ['client', 'describe', 'describeClient', 'engine']) {
      expect(out[key], key).toContain(plugin);
      expect(out[key], key).toMatch(message);
    }
    expect(out.find).toBe('found');  // discovery only checks that the file exists
  });

  it('dflash doctor --plugin reports it and exits 0', () => {
    const r = spawnSync(process.execPath, [path.join(DIST, 'cli.js'), 'doctor', '--json', '--plugin', plugin], { encoding: 'utf8', timeout: 120_000 });
    expect(r.signal, r.stderr).toBeNull();
    expect(r.status, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.candidates[0].probeError).toMatch(message);
    expect(report.client.error).toContain(plugin);
  });
});

it('the intact plugin still loads (the check does not reject real libraries)', () => {
  const r = spawnSync(process.execPath, ['-e', PROBE, DIST, TARGET, REAL], { encoding: 'utf8', timeout: 120_000 });
  expect(r.status, r.stderr).toBe(0);
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
  expect(out).toMatchObject({ client: 'opened', describe: 'probed', find: 'found', engine: 'loaded' });
});
