// dflash: DFlash block-diffusion speculative decoding through PJRT, from Node.js.
// Public API: Engine (load a target + drafter, generate streams), the low-level runtime
// (Client / DeviceBuffer / Executable) and plugin discovery.
import { native } from './native';
import { describePlugins, findPlugin } from './plugins';

export { Engine } from './engine';
export { createServer } from './server/app';
export type { DflashServer, ServerOptions } from './server/app';
export type { EngineLoadOptions, GenerateOptions, LoadProgress } from './engine';
export type { Grammar } from './grammar';
export { AbortError, GenerationStream } from './stream';
export type { DoneEvent, GenerationStats, StepEvent, StopReason, TokenEvent } from './stream';
export { Client, DeviceBuffer, Executable, liveObjects } from './runtime';
export type { DType, DeviceInfo } from './runtime';
export { describePlugins, findPlugin, pluginInstallDir } from './plugins';
export type { DiscoveryOptions, PluginCandidate, PluginKind, PluginReport } from './plugins';
export { installPlugin, RECIPES as PLUGIN_RECIPES } from './plugin-install';
export type { InstallKind, InstallOptions, InstallResult, PluginRecipe, WheelPin } from './plugin-install';

/** describePlugins() with each found candidate loaded by the addon: PJRT API version (ours and
 *  the plugin's), plugin attributes such as stablehlo_current_version, or the load error. */
export async function describePluginsWithProbe(opts: { plugin?: string; clientOptions?: Record<string, string | number | boolean> } = {}) {
  const report = describePlugins({ plugin: opts.plugin, probe: (p: string) => native().probePlugin(p) });
  let selected: string | undefined;
  try {
    selected = findPlugin(opts).path;
  } catch {
    selected = undefined;
  }
  let client: Record<string, unknown> | undefined;
  if (selected) {
    try {
      const c = await native().openClient(selected, opts.clientOptions);
      client = { platformName: c.platformName, platformVersion: c.platformVersion, devices: c.devices() };
      c.dispose();
    } catch (e) {
      client = { error: (e as Error).message };
    }
  }
  return { ...report, selected, client };
}
