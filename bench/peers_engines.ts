// The three engines bench/peers.ts compares, behind one interface: dflash (Engine, plain greedy),
// llama.cpp through node-llama-cpp (the GGUF tools/gguf/convert.py made from the same checkpoint)
// and a jitted JAX model (bench/peers_jax.py, a worker process on the same PJRT plugin). Every
// engine gets the same prompt ids, decodes greedily up to maxTokens or an EOS id, and is timed
// on the same host clock: from the call to the first generated token (first token), and from
// the first generated token to the last (decode).
import { ChildProcessWithoutNullStreams, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as readline from 'readline';

import { Engine } from '../lib/engine';
import type { Dtype } from './gguf';

export interface RunResult {
  /** Generated ids, EOS excluded. */
  ids: number[];
  firstTokenSeconds: number;
  decodeSeconds: number;
}

export interface Peer {
  readonly name: string;
  /** One line for the table: versions, precision, how it was set up. */
  readonly describe: string;
  generate(prompt: number[], maxTokens: number): Promise<RunResult>;
  dispose(): Promise<void>;
  /** A helper process the engine runs in, if any (its CPU time is the bench's own, not noise). */
  readonly pid?: number;
}


// ---------------------------------------------------------------- dflash

export async function loadDflash(o: { target: string; copy16?: string; dtype: Dtype; maxSeqLen: number }): Promise<Peer & { engine: Engine }> {
  // 16-bit runs load the copy the converter wrote with exactly the GGUF's rounding; the engine
  // keeps a 16-bit checkpoint 16-bit (dtype 'auto'), so every engine reads the same weights.
  if (o.dtype !== 'f32' && !o.copy16) throw new Error(`no ${o.dtype} copy of ${o.target} (tools/gguf/convert.py --safetensors-out)`);
  const target = o.dtype === 'f32' ? o.target : o.copy16!;
  const engine = await Engine.load({ maxSeqLen: o.maxSeqLen, maxSequences: 1, target });
  const st = engine.stats();
  const how = `${o.target.endsWith('.gguf') ? 'the GGUF file, its tensors expanded to f32 at load' : o.dtype === 'f32' ? 'f32 checkpoint' : `${o.dtype} copy of the checkpoint (tools/gguf/convert.py --safetensors-out, GGUF rounding)`}, engine dtype ${st.dtype}, KV ${st.kvDtype}`;
  const e = engine;
  const version = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')).version;
  return {
    name: 'dflash',
    engine: e,
    describe: `dflash ${version}: Engine plain greedy decoding (speculative: false, no drafter), weights: ${how}`,
    async generate(prompt, maxTokens) {
      const times: number[] = [];
      const t0 = performance.now();
      const stream = e.generate(prompt, { maxTokens, speculative: false, temperature: 0 });
      stream.on('token', (t) => { if (t.id >= 0) times.push(performance.now()); });
      const done = await stream.done();
      return timing(done.ids, t0, times);
    },
    async dispose() { e.dispose(); },
  };
}

function timing(ids: number[], t0: number, times: number[]): RunResult {
  const first = times[0] ?? performance.now(), last = times[times.length - 1] ?? first;
  return { ids, firstTokenSeconds: (first - t0) / 1000, decodeSeconds: (last - first) / 1000 };
}

// ---------------------------------------------------------------- llama.cpp

export async function loadLlamaCpp(o: {
  gguf: string; dtype: Dtype; threads: number; contextSize: number; eos: Set<number>;
  /** A text and dflash's ids for it, to report whether the GGUF's tokenizer agrees (the bench itself feeds ids). */
  tokenizerCheck: { text: string; ids: number[] };
}): Promise<Peer> {
  // node-llama-cpp is an ES module; this import works from vite-node and the commonjs build alike.
  const nlc: typeof import('node-llama-cpp') = await import('node-llama-cpp' as string);
  // build 'never' + skipDownload: the prebuilt CPU binaries from npm or an error, never a
  // download or a compile. maxThreads 0 makes the context's `threads` the exact count used.
  const llama = await nlc.getLlama({ gpu: false, build: 'never', skipDownload: true, maxThreads: 0, progressLogs: false, logLevel: nlc.LlamaLogLevel.error });
  const model = await llama.loadModel({ modelPath: o.gguf, gpuLayers: 0 });
  const context = await model.createContext({
    contextSize: o.contextSize, sequences: 1, threads: o.threads, flashAttention: false,
    // dflash keeps its KV cache in f32; llama.cpp would default to f16.
    experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32',
  });
  const sequence = context.getSequence();
  const theirs = model.tokenize(o.tokenizerCheck.text) as number[], mine = o.tokenizerCheck.ids;
  const differsAt = mine.findIndex((id, i) => theirs[i] !== id);
  const tokenizer = differsAt < 0 && theirs.length === mine.length
    ? `its tokenizer (from the GGUF) gives dflash's ${mine.length} ids for the prompt file's text`
    : `its tokenizer (from the GGUF) differs from dflash's on the prompt file's text (${differsAt < 0 ? `lengths ${theirs.length} vs ${mine.length}` : `first at token ${differsAt}`})`;
  // The package's "exports" hide package.json; its entry point is dist/index.js.
  const pkg = JSON.parse(fs.readFileSync(path.join(path.dirname(require.resolve('node-llama-cpp')), '..', 'package.json'), 'utf8'));
  return {
    name: 'llama.cpp',
    describe: `llama.cpp: node-llama-cpp ${pkg.version} prebuilt CPU binaries (llama.cpp release ${llama.llamaCppRelease.release}), ` +
      `GGUF ${path.basename(o.gguf)} ${o.gguf.startsWith(path.join(__dirname, '..', '.cache')) ? `(${o.dtype}: 2-D weights ${o.dtype}, norms f32) from tools/gguf/convert.py` : '(as given: its own tensor types)'}; context threads ${context.currentThreads}; KV cache f32; flash attention off; greedy (temperature 0); ${tokenizer}`,
    async generate(prompt, maxTokens) {
      await sequence.clearHistory();
      const ids: number[] = [], times: number[] = [];
      const t0 = performance.now();
      for await (const tok of sequence.evaluate(prompt as never[], { temperature: 0 })) {
        if (o.eos.has(tok as number)) break;
        times.push(performance.now());
        ids.push(tok as number);
        if (ids.length >= maxTokens) break;
      }
      return timing(ids, t0, times);
    },
    async dispose() {
      await context.dispose();
      await model.dispose();
      await llama.dispose();
    },
  };
}

// ---------------------------------------------------------------- JAX

interface JaxReady { jax: string; jaxlib: string; backend: string; platform_version: string; plugin_mapped: boolean; jaxlib_cpu: boolean }

class JaxWorker {
  private lines: AsyncIterator<string>;
  private stderr = '';
  constructor(readonly proc: ChildProcessWithoutNullStreams) {
    this.lines = readline.createInterface({ input: proc.stdout })[Symbol.asyncIterator]();
    proc.stderr.on('data', (d) => { this.stderr = (this.stderr + d).slice(-4000); });
  }
  async next<T>(): Promise<T> {
    const r = await this.lines.next();
    if (r.done) throw new Error(`JAX worker exited (code ${this.proc.exitCode}): ${this.stderr.trim().split('\n').slice(-3).join(' | ')}`);
    const msg = JSON.parse(r.value);
    if (msg.error) throw new Error(`JAX worker: ${msg.error}`);
    return msg as T;
  }
}

export async function loadJax(o: { python: string; target: string; plugin: string; dtype: Dtype; maxLen: number; eos: number[] }): Promise<Peer> {
  if (!fs.existsSync(o.python)) throw new Error(`not run: ${o.python} is missing (bash scripts/setup.sh makes .venv-train with JAX, or pass --jax-python)`);
  const script = path.join(__dirname, 'peers_jax.py');
  const start = async (backend: string[]) => {
    const proc = spawn(o.python, [script, '--checkpoint', o.target, '--max-len', String(o.maxLen), '--dtype', o.dtype, ...backend]);
    const w = new JaxWorker(proc);
    try {
      return { w, ready: await w.next<JaxReady>() };
    } catch (e) {
      proc.kill();
      throw e;
    }
  };
  let started: { w: JaxWorker; ready: JaxReady }, fallback = '';
  try {
    started = await start(['--plugin', o.plugin]);
  } catch (e) {
    // Older or newer JAX may not load this plugin; the run says so instead of failing.
    fallback = ` — the PJRT plugin did not load in JAX (${(e as Error).message.slice(0, 160)}), so this is jaxlib's own CPU backend`;
    started = await start(['--jaxlib-cpu']);
  }
  const { w, ready } = started;
  const where = ready.jaxlib_cpu ? `jaxlib's built-in CPU backend${fallback}`
    : `the same PJRT plugin as dflash (${path.basename(o.plugin)}, loaded into JAX as a PJRT plugin: platform "${ready.platform_version.replace(/\n/g, ' ')}", ${ready.plugin_mapped ? 'plugin library mapped in the process' : 'NOT seen in the process maps'})`;
  return {
    name: 'JAX jit',
    pid: w.proc.pid,
    describe: `JAX jit: jax ${ready.jax} / jaxlib ${ready.jaxlib} (bench/peers_jax.py: the same forward, KV cache f32, weights ${o.dtype}, one jitted step per token) on ${where}`,
    async generate(prompt, maxTokens) {
      w.proc.stdin.write(JSON.stringify({ prompt, max_tokens: maxTokens, eos: o.eos }) + '\n');
      const r = await w.next<{ ids: number[]; first_token_s: number; decode_s: number }>();
      return { ids: r.ids, firstTokenSeconds: r.first_token_s, decodeSeconds: r.decode_s };
    },
    async dispose() {
      w.proc.stdin.end();
      w.proc.kill();
    },
  };
}
