// The plugin and demo commands of the `dflash` command line (cli.ts dispatches here):
//   dflash doctor [--plugin PATH] [--verbose | --json] [--target DIR [--drafter DIR]] [--devices N]
//                                                       what discovery found and what loads, the
//                                                       devices, the meshes a checkpoint fits
//   dflash install-plugin cpu|cuda|tpu [--force] [--no-cuda-libs] [--index-url URL] [--dir DIR]
//   dflash demo ["prompt"] [generate options]           the shipped code pair (dflash-demo-pair)
import * as fs from 'fs';
import * as path from 'path';

import { describePluginsWithProbe } from './index';
import { native, packageRoot } from './native';
import { describeMeshPlan, MeshPlan, planMeshes } from './mesh-plan';
import type { DeviceInfo } from './native';
import { installPlugin, InstallKind, RECIPES } from './plugin-install';
import { findPlugin, summarizeSources } from './plugins';
import { describeProgramPlan, planServingPrograms, ProgramPlan } from './serving-plan';

type Args = { _: string[]; [k: string]: string | boolean | string[] };

export async function doctor(args: Args): Promise<void> {
  let virtual: number | undefined;
  if (args.devices !== undefined) {
    virtual = Number(args.devices);
    if (!Number.isInteger(virtual) || virtual < 1 || virtual > 256) throw new Error(`--devices must be an integer in [1, 256], got '${String(args.devices)}'`);
  }
  // --devices N: the CPU plugin made into N virtual devices (other plugins ignore the option).
  const report = await describePluginsWithProbe({ plugin: args.plugin as string | undefined, clientOptions: virtual ? { cpu_device_count: virtual } : undefined });
  const client = report.client as { error?: string; platformName?: string; platformVersion?: string; devices?: DeviceInfo[] } | undefined;
  let plan: MeshPlan | { error: string } | undefined;
  if (args.target && client?.devices && client.platformName) {
    try {
      plan = planMeshes(client.platformName, client.devices, args.target as string, args.drafter as string | undefined);
    } catch (e) {
      plan = { error: (e as Error).message };
    }
  }
  let programs: ProgramPlan | { error: string } | undefined;
  if (args.target) {
    try {
      programs = planServingPrograms(args as Parameters<typeof planServingPrograms>[0]);
    } catch (e) {
      programs = { error: (e as Error).message };
    }
  }
  if (args.json) {
    console.log(JSON.stringify({ ...report, meshes: plan, programs }, null, 2));
    return;
  }
  const out: string[] = [];
  if (args.verbose) {
    out.push('PJRT plugin discovery, every place looked at in order (* = selected):');
    for (const n of report.notes) out.push(`  ${n}`);
    for (const c of report.candidates) {
      const state = !c.exists ? 'absent' : c.probeError ? `does not load: ${c.probeError}` : `PJRT ${probeVersion(c.probe)}`;
      out.push(`${c.selected ? '*' : ' '} ${c.source}: ${c.path} -- ${state}`);
    }
    out.push(`site-packages searched: ${report.sitePackages.join(', ') || '(none)'}`);
  } else {
    out.push('PJRT plugin discovery (one line per source; --verbose: every path, --json: everything):');
    out.push(...summarizeSources(report));
  }
  if (report.error) out.push('', report.error.split('\n')[0]);
  const sel = report.candidates.find((c) => c.selected);
  if (sel) {
    out.push('', `selected: ${sel.path}`);
    if (sel.probeError) out.push(`  does not load: ${sel.probeError}`);
    else {
      const attrs = (sel.probe?.attributes ?? {}) as Record<string, string>;
      out.push(`  PJRT C API ${probeVersion(sel.probe)} (dflash is written for 0.${sel.probe?.addonApiMinor}), ` +
        Object.entries(attrs).map(([k, v]) => `${k} ${v}`).join(', '));
    }
    if (client?.error) out.push(`  client: ${client.error}`);
    else if (client) {
      out.push(`  client: ${client.platformName} ${client.platformVersion}, ${client.devices?.length} device(s):`);
      for (const d of client.devices ?? []) {
        const limit = d.memoryStats?.bytes_limit, used = d.memoryStats?.bytes_in_use;
        const mem = limit ? `${(limit / 2 ** 30).toFixed(2)} GiB${used !== undefined ? `, ${(used / 2 ** 30).toFixed(2)} GiB in use` : ''}` :
          client.platformName === 'cpu' ? 'host memory' : 'memory unknown';
        out.push(`    device ${d.id}: ${d.kind} (${mem})`);
      }
    }
    if (client?.platformName) {
      // What Engine.load({ dtype: 'auto' }) computes in on this platform (engine/dtype_policy.cc).
      out.push('  compute dtype (dtype auto; Engine.load({ dtype, kvDtype }) overrides):');
      for (const dt of ['f32', 'bf16', 'f16'] as const) out.push(`    ${native().dtypePolicy(client.platformName, dt)}`);
    }
  }
  if (plan && 'error' in plan) out.push('', `meshes for ${args.target}: ${plan.error}`);
  else if (plan) out.push('', `meshes for ${args.target}${args.drafter ? ` + ${args.drafter}` : ''} on these ${client?.devices?.length} device(s):`, ...describeMeshPlan(plan));
  else if (!args.target) out.push('', 'meshes: `dflash doctor --target DIR [--drafter DIR]` shows which tensorParallel x dataParallel fit a checkpoint' +
    (client?.platformName === 'cpu' ? ' (--devices N: as N virtual CPU devices)' : '') + ', and the programs `dflash serve` precompiles for it');
  if (programs && 'error' in programs) out.push('', `programs for ${args.target}: ${programs.error}`);
  else if (programs) out.push('', `programs \`dflash serve\` precompiles for ${args.target}${args.drafter ? ` + ${args.drafter}` : ''}:`, ...describeProgramPlan(programs));
  console.log(out.join('\n'));
}

function probeVersion(probe: Record<string, unknown> | undefined): string {
  return probe ? `${probe.apiMajor}.${probe.apiMinor}` : '?';
}

export async function installPluginCommand(args: Args): Promise<void> {
  const kind = args._[1] as InstallKind;
  if (!kind || !(kind in RECIPES)) {
    throw new Error(`install-plugin needs a kind: ${Object.entries(RECIPES).map(([k, r]) => `${k} (${r.wheel.name} ${r.wheel.version}: ${r.note})`).join('; ')}`);
  }
  const result = await installPlugin(kind, {
    dir: args.dir as string | undefined,
    indexUrl: args['index-url'] as string | undefined,
    force: args.force === true,
    withLibraries: args['no-cuda-libs'] !== true,
  });
  // Loading it proves the file is whole and speaks a PJRT version dflash accepts.
  const probe = native().probePlugin(result.plugin);
  console.log(`${result.installed ? 'installed' : 'already installed'}: ${result.plugin} (PJRT C API ${probe.apiMajor}.${probe.apiMinor})`);
  if (!args.dir) {
    let selected = '';
    try {
      selected = findPlugin({ plugin: args.plugin as string | undefined }).path;
    } catch { /* reported below */ }
    if (selected === result.plugin) console.log('discovery selects it: `npx dflash doctor` shows the details');
    else console.log(`note: discovery selects ${selected || 'nothing'} before it (see \`npx dflash doctor\`); pass { plugin: '${result.plugin}' } to use this one`);
  }
}

/** Where the demo pair is: the dflash-demo-pair package, else models/code-pair of a checkout. */
export function demoPairDir(): string {
  const candidates: string[] = [];
  try {
    candidates.push(path.join(path.dirname(require.resolve('dflash-demo-pair/package.json', { paths: [process.cwd(), packageRoot()] })), 'models', 'code-pair'));
  } catch { /* not installed */ }
  candidates.push(path.join(packageRoot(), 'models', 'code-pair'));
  const found = candidates.find((d) => fs.existsSync(path.join(d, 'target', 'config.json')) && fs.existsSync(path.join(d, 'drafter', 'config.json')));
  if (!found) {
    throw new Error('the demo needs the trained code pair, a separate 32 MB package: `npm install dflash-demo-pair` ' +
      `(looked in ${candidates.join(', ')})`);
  }
  return found;
}

/** `dflash demo [prompt]`: generate's arguments for the demo pair (defaults: the README prompt,
 *  64 tokens), the user's options kept. */
export function demoArgs(args: Args): Args {
  const dir = demoPairDir();
  const prompt = args._.slice(1);
  return {
    'max-tokens': '64',
    ...args,
    _: ['generate', ...(prompt.length ? prompt : ['def __eq__(self, other):'])],
    target: path.join(dir, 'target'),
    drafter: path.join(dir, 'drafter'),
  };
}
