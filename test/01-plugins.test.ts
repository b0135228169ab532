// Plugin discovery: the order of candidates, explicit choices winning (and never silently
// replaced), the report with each found plugin probed by the addon, and version checks.
import * as fs from 'fs';
import * as path from 'path';
import { afterEach, describe, expect, it } from 'vitest';

import { describePluginsWithProbe } from '../lib/index';
import { native } from '../lib/native';
import { describePlugins, findPlugin, pluginCandidates } from '../lib/plugins';

const saved = process.env.DFLASH_PJRT_PLUGIN;
afterEach(() => {
  if (saved === undefined) delete process.env.DFLASH_PJRT_PLUGIN;
  else process.env.DFLASH_PJRT_PLUGIN = saved;
});

describe('discovery', () => {
  it('lists candidates in the documented order', () => {
    process.env.DFLASH_PJRT_PLUGIN = '/from/env.so';
    const sources = pluginCandidates({ plugin: '/from/option.so' }).map((c) => c.source);
    const first = (re: RegExp) => sources.findIndex((s) => re.test(s));
    expect(first(/option/)).toBe(0);
    expect(first(/DFLASH_PJRT_PLUGIN/)).toBe(1);
    expect(first(/libtpu/)).toBeLessThan(first(/cuda13/));
    expect(first(/cuda13/)).toBeLessThan(first(/cuda12/));
    expect(first(/cuda12/)).toBeLessThan(first(/CPU/));
  });

  it('finds the CPU plugin of the project venv when nothing is configured', () => {
    delete process.env.DFLASH_PJRT_PLUGIN;
    const p = findPlugin();
    expect(fs.existsSync(p.path)).toBe(true);
    expect(p.selected).toBe(true);
  });

  it('an explicit path that does not exist is an error, not a fallback', () => {
    expect(() => findPlugin({ plugin: '/no/such/plugin.so' })).toThrow(/not found: \/no\/such\/plugin\.so/);
    process.env.DFLASH_PJRT_PLUGIN = '/no/such/env-plugin.so';
    expect(() => findPlugin()).toThrow(/env-plugin\.so.*DFLASH_PJRT_PLUGIN/);
  });
});

describe('report', () => {
  it('probes every found plugin: PJRT API versions and StableHLO version', async () => {
    delete process.env.DFLASH_PJRT_PLUGIN;
    const report = await describePluginsWithProbe();
    const sel = report.candidates.find((c) => c.selected)!;
    expect(sel).toBeDefined();
    const probe = sel.probe as { apiMajor: number; apiMinor: number; addonApiMinor: number; attributes: Record<string, string> };
    expect(probe.apiMajor).toBe(0);
    expect(probe.apiMinor).toBeGreaterThanOrEqual(100);
    expect(probe.addonApiMinor).toBe(114);
    expect(probe.attributes.stablehlo_current_version).toMatch(/^\d+\.\d+\.\d+$/);
    expect((report.client as { platformName: string }).platformName).toBe('cpu');
  });

  it('records a load error for a candidate that is not a plugin', () => {
    const bogus = path.join(__dirname, 'fixtures', 'models', 'qwen3-f32', 'config.json');
    const report = describePlugins({ plugin: bogus, probe: (p) => native().probePlugin(p) });
    const c = report.candidates[0];
    expect(c.exists).toBe(true);
    expect(c.probeError).toMatch(/config\.json/);
  });
});
