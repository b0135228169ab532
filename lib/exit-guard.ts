// process.exit() while a PJRT client lives must not crash the process.
//
// Node's process.exit() ends in C exit(), which runs the plugin's static destructors (XLA, LLVM)
// while the plugin's own threads still run: a program compiling on the engine's scheduler thread
// then reads freed state and the process dies of SIGSEGV instead of exiting with its code
// (measured: `dflash serve` interrupted while precompiling, 7 of 12 runs). A compile cannot be
// interrupted, and exit handlers registered by the plugin at first use run before any the addon
// could register, so the guard sits where JS hands over to C: process.reallyExit, which
// process.exit() calls after every 'exit' listener ran (signal-exit hooks the same function).
// With a client alive it ends the process with the same code and no exit handlers; with every
// engine and client disposed, exit is Node's own.
import { isMainThread } from 'worker_threads';

import type { NativeAddon } from './native';

type Exiting = NodeJS.Process & { reallyExit?: (code?: number) => never };

let guarded = false;

export function guardProcessExit(addon: Pick<NativeAddon, 'liveObjects' | 'exitNow'>): void {
  // In a worker, process.exit() ends only that thread; the addon's clients outlive it.
  const proc = process as Exiting;
  if (guarded || !isMainThread || typeof proc.reallyExit !== 'function') return;
  guarded = true;
  const reallyExit = proc.reallyExit;
  proc.reallyExit = function guardedReallyExit(code?: number): never {
    if (addon.liveObjects().clients > 0) addon.exitNow(code ?? 0);
    return reallyExit.call(process, code);
  };
}
