// Engine.load for the command line: progress bars (cli-progress) for the weights' bytes and for
// the programs compiled or loaded from the disk cache, so a first start that spends tens of
// seconds uploading and compiling is visible; a summary line when ready.
import { MultiBar, Presets, SingleBar } from 'cli-progress';

import { Engine, EngineLoadOptions, LoadProgress } from './engine';

export async function loadWithProgress(opts: EngineLoadOptions, show: boolean): Promise<Engine> {
  const t0 = performance.now();
  const interactive = show && process.stderr.isTTY;
  const bars = interactive
    ? new MultiBar({ stream: process.stderr, clearOnComplete: false, hideCursor: true, format: ' {label} |{bar}| {detail}' }, Presets.shades_classic)
    : undefined;
  const weightBars = new Map<string, SingleBar>();
  let programBar: SingleBar | undefined;
  let programs = 0, compiled = 0, fromDisk = 0, compileSeconds = 0;
  const onProgress = (p: LoadProgress) => {
    if (p.phase === 'weights') {
      if (bars) {
        let bar = weightBars.get(p.model);
        if (!bar) weightBars.set(p.model, (bar = bars.create(p.totalBytes, 0, { label: `${p.model.padEnd(8)} weights`, detail: '' })));
        bar.update(p.bytes, { detail: `${mb(p.bytes)} / ${mb(p.totalBytes)} MB, ${p.tensors}/${p.totalTensors} tensors` });
      } else if (show && p.tensors === p.totalTensors) {
        process.stderr.write(`loaded ${p.model}: ${p.totalTensors} tensors, ${mb(p.totalBytes)} MB\n`);
      }
      return;
    }
    if (p.kind === 'compile-start') {
      programs += 1;
      if (bars) {
        if (!programBar) programBar = bars.create(1, 0, { label: 'programs        ', detail: '' });
        programBar.setTotal(programs);
        programBar.update(compiled + fromDisk, { detail: `compiling ${p.program}` });
      }
      return;
    }
    if (p.kind === 'compile-done') { compiled += 1; compileSeconds += p.seconds; }
    if (p.kind === 'cache-load') { programs += 1; fromDisk += 1; }
    if (p.kind === 'cache-reject' && show) process.stderr.write(`program cache: ${p.detail}\n`);
    if (bars && programBar) {
      programBar.setTotal(programs);
      programBar.update(compiled + fromDisk, { detail: `${compiled} compiled (${compileSeconds.toFixed(1)} s), ${fromDisk} from the disk cache` });
    } else if (bars && p.kind === 'cache-load') {
      programBar = bars.create(programs, fromDisk, { label: 'programs        ', detail: `${fromDisk} from the disk cache` });
    }
  };
  let engine: Engine;
  try {
    engine = await Engine.load({ ...opts, onProgress });
  } finally {
    bars?.stop();
  }
  if (show) {
    const st = engine.stats();
    process.stderr.write(`platform ${engine.platform}, ${st.dtypeReason}; ${programs} programs (${compiled} compiled, ${fromDisk} from the disk cache); ` +
      `ready in ${((performance.now() - t0) / 1000).toFixed(2)} s\n`);
  }
  return engine;
}

function mb(bytes: number): string {
  return (bytes / 1e6).toFixed(1);
}

/** engine.precompile() for the command line: a progress bar on a terminal, else one line at the
 *  end; returns the program count and the seconds it took. `onProgress` sees every step, bar or
 *  not (programs done of total). */
export async function precompileWithProgress(engine: Engine, context: number, show: boolean,
  onProgress?: (p: { done: number; total: number }) => void): Promise<{ programs: number; seconds: number }> {
  const t0 = performance.now();
  const bar = show && process.stderr.isTTY
    ? new SingleBar({ stream: process.stderr, hideCursor: true, format: ' precompile |{bar}| {value}/{total} programs' }, Presets.shades_classic)
    : undefined;
  let started = false;
  try {
    const r = await engine.precompile({
      context,
      onProgress: ({ done, total }) => {
        onProgress?.({ done, total });
        if (!bar) return;
        if (!started) bar.start(total, 0);
        started = true;
        bar.update(done);
      },
    });
    return { programs: r.programs, seconds: (performance.now() - t0) / 1000 };
  } finally {
    if (started) bar?.stop();
  }
}
