// The build layout: one list of native sources (native/sources.cmake) that both CMake and
// binding.gyp use, covering every source file, the addon loaded through node-gyp-build, and the
// TypeScript option types generated from the one native option schema.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';

const ROOT = path.join(__dirname, '..');

describe('native sources', () => {
  it('binding.gyp derives its list from native/sources.cmake, which names every .cc file', () => {
    const listed = execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'gyp-sources.js'), 'all'], { encoding: 'utf8' })
      .trim().split('\n').sort();
    const onDisk: string[] = [];
    for (const dir of ['pjrt', 'hlo', 'models', 'engine', 'grammar', 'addon']) {
      for (const f of fs.readdirSync(path.join(ROOT, 'native', dir))) if (f.endsWith('.cc')) onDisk.push(`native/${dir}/${f}`);
    }
    expect(listed).toEqual(onDisk.sort());
    const gyp = fs.readFileSync(path.join(ROOT, 'binding.gyp'), 'utf8');
    expect(gyp).toContain('node scripts/gyp-sources.js all');
    expect(gyp).not.toMatch(/native\/\w+\/\w+\.cc/);  // no second, hand-kept list
    expect(fs.readFileSync(path.join(ROOT, 'CMakeLists.txt'), 'utf8')).toContain('native/sources.cmake');
  });

  it('the addon loads through node-gyp-build with the pinned N-API version', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    expect(pkg.binary.napi_versions).toEqual([8]);
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const addon = require('node-gyp-build')(ROOT);
    expect(typeof addon.openClient).toBe('function');
    expect(typeof addon.createEngine).toBe('function');
  });
});

describe('option schema', () => {
  it('lib/options.generated.ts is what the native schema says (one place for options and defaults)', () => {
    const r = require('child_process').spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'gen-options.js'), '--check'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
  });

  it('every engine option is documented with its default and range', () => {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const { engine, request } = require('node-gyp-build')(ROOT).optionSchemas();
    for (const s of [...engine, ...request]) {
      expect(s.doc.length, s.name).toBeGreaterThan(10);
      expect(s.default, s.name).not.toBeUndefined();
      if (s.kind === 'integer' || s.kind === 'number') expect(s.max, s.name).toBeGreaterThan(s.min);
    }
  });
});
