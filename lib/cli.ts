#!/usr/bin/env node
// The `dflash` command line. Options are parsed per command with Node's util.parseArgs, so an
// unknown or valueless option is an error naming it.
//   generate   stream a generation; drafted-and-accepted tokens highlighted, --json for machines
//   demo       generate with the shipped trained pair (cli-plugins.ts)
//   serve      the OpenAI-compatible HTTP server (lib/server/)
//   precompile the programs serve runs, into the disk cache (precompile-command.ts)
//   doctor     plugin discovery, versions, devices (cli-plugins.ts)
//   install-plugin cpu|cuda|tpu   a pinned PJRT plugin (cli-plugins.ts)
import { parseArgs, ParseArgsConfig } from 'util';

import { demoArgs, doctor, installPluginCommand } from './cli-plugins';
import { loadWithProgress } from './cli-progress';
import { precompileCommand } from './precompile-command';
import { PRECOMPILE_HELP, quantizedWeightsOption, serve, SERVE_HELP, serveOptions } from './server/serve-command';

const HELP = `usage:
  dflash generate --target DIR|FILE.gguf [--drafter DIR|FILE.gguf] [options] "prompt"
      --max-tokens N     tokens to generate (default 128)
      --block-size B     largest speculative block (default: the drafter's)
      --no-speculative   plain decoding even with a drafter
      --chat             wrap the prompt in the tokenizer's chat template
      --stop S           stop string (repeatable)
      --temperature T    sample at temperature T (default 0: greedy)
      --top-p P, --top-k K, --seed N   sampling controls
      --dtype D          auto | f32 | bf16 | f16 (default auto: the checkpoint's)
      --quantized-weights Q   narrow | dequantize | auto, for a quantized checkpoint (default auto: dequantize on CPU)
      --max-seq-len N    longest prompt + generation (default: the model's)
      --tensor-parallel-size N   split the model over N devices (default 1)
      --plugin PATH      PJRT plugin to use (default: discovered)
      --json             one JSON object per line (token, step, done)
  dflash demo ["prompt"] [generate options]
      the trained code pair (package dflash-demo-pair, or models/code-pair in a checkout)
${SERVE_HELP}
${PRECOMPILE_HELP}
  dflash doctor [--plugin PATH] [--verbose | --json] [--target DIR [--drafter DIR]] [--devices N]
      plugin discovery (one line per source; --verbose: every path), versions, devices (kind, memory), compute dtype
      per checkpoint dtype; with --target, the tensorParallel x dataParallel meshes that fit the checkpoint
      (--devices N: the CPU plugin as N virtual devices) and the programs \`dflash serve\` precompiles for it
      (with serve's --max-sequences, --max-seq-len, --precompile-context)
  dflash install-plugin cpu|cuda|tpu [--force] [--no-cuda-libs] [--index-url URL] [--dir DIR]
      fetch a pinned PJRT plugin (no Python needed) into ~/.cache/dflash/plugins
      ($DFLASH_CACHE_DIR/plugins or $XDG_CACHE_HOME/dflash/plugins when set)`;

const generateOptions = {
  target: { type: 'string' }, drafter: { type: 'string' }, plugin: { type: 'string' },
  'max-tokens': { type: 'string' }, 'block-size': { type: 'string' }, 'no-speculative': { type: 'boolean' },
  chat: { type: 'boolean' }, stop: { type: 'string', multiple: true }, temperature: { type: 'string' },
  'top-p': { type: 'string' }, 'top-k': { type: 'string' }, seed: { type: 'string' }, json: { type: 'boolean' },
  dtype: { type: 'string' }, 'max-seq-len': { type: 'string' }, 'tensor-parallel-size': { type: 'string' },
  'quantized-weights': { type: 'string' },
} as const;

const COMMANDS: Record<string, ParseArgsConfig['options']> = {
  generate: generateOptions,
  demo: generateOptions,
  serve: serveOptions,
  precompile: {
    target: serveOptions.target, drafter: serveOptions.drafter, plugin: serveOptions.plugin, queue: serveOptions.queue,
    'max-sequences': serveOptions['max-sequences'], 'max-seq-len': serveOptions['max-seq-len'],
    'tensor-parallel-size': serveOptions['tensor-parallel-size'], 'data-parallel-size': serveOptions['data-parallel-size'],
    'precompile-context': serveOptions['precompile-context'], 'quantized-weights': serveOptions['quantized-weights'],
    'cache-dir': { type: 'string' },
  },
  doctor: {
    plugin: { type: 'string' }, verbose: { type: 'boolean' }, json: { type: 'boolean' }, target: { type: 'string' }, drafter: { type: 'string' },
    devices: { type: 'string' }, 'max-sequences': serveOptions['max-sequences'], 'max-seq-len': serveOptions['max-seq-len'],
    'precompile-context': serveOptions['precompile-context'],
  },
  'install-plugin': {
    force: { type: 'boolean' }, 'no-cuda-libs': { type: 'boolean' }, 'index-url': { type: 'string' }, dir: { type: 'string' },
    plugin: { type: 'string' },
  },
};

type Args = { _: string[]; [k: string]: string | boolean | string[] };

function parse(argv: string[]): Args {
  const command = argv[0]?.startsWith('-') ? undefined : argv[0];
  const options = { ...(command ? COMMANDS[command] : undefined), help: { type: 'boolean' as const } };
  const { values, positionals } = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  return { ...(values as Record<string, string | boolean | string[]>), _: positionals };
}

/** A number option, or a message naming it. */
function num(args: Args, key: string): number | undefined {
  const v = args[key];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== 'string' || v.trim() === '' || !Number.isFinite(n)) throw new Error(`--${key} must be a number, got '${String(v)}'`);
  return n;
}

async function generate(args: Args): Promise<void> {
  const prompt = args._.slice(1).join(' ');
  if (!args.target) throw new Error('generate needs --target DIR (or a .gguf file)');
  if (!prompt) throw new Error('generate needs a prompt');
  const json = args.json === true;
  const tty = process.stdout.isTTY && !json;
  const engine = await loadWithProgress({
    target: args.target as string,
    drafter: args.drafter as string | undefined,
    plugin: args.plugin as string | undefined,
    dtype: args.dtype as 'auto' | 'f32' | 'bf16' | 'f16' | undefined,
    ...(args['quantized-weights'] === undefined ? {} : { quantizedWeights: quantizedWeightsOption(args['quantized-weights'] as string) }),
    maxSeqLen: num(args, 'max-seq-len'),
    maxSequences: 1,
    tensorParallel: num(args, 'tensor-parallel-size'),
  }, !json);
  const blockSize = num(args, 'block-size');
  const ac = new AbortController();
  process.once('SIGINT', () => ac.abort());
  const stream = engine.generate(args.chat ? [{ role: 'user', content: prompt }] : prompt, {
    maxTokens: num(args, 'max-tokens') ?? 128,
    temperature: num(args, 'temperature'), topP: num(args, 'top-p'), topK: num(args, 'top-k'), seed: num(args, 'seed'),
    stop: args.stop as string[] | undefined,
    signal: ac.signal,
    speculative: args['no-speculative'] ? false : blockSize ? { blockSize } : undefined,
  });
  stream.on('token', (t) => {
    if (json) process.stdout.write(JSON.stringify({ event: 'token', ...t }) + '\n');
    else if (tty && t.drafted) process.stdout.write(`\x1b[32m${t.text}\x1b[0m`);
    else process.stdout.write(t.text);
  });
  stream.on('step', (s) => {
    if (json) process.stdout.write(JSON.stringify({ event: 'step', ...s }) + '\n');
  });
  const done = await stream.done();
  const st = done.stats;
  if (json) {
    process.stdout.write(JSON.stringify({ event: 'done', reason: done.reason, stats: st }) + '\n');
  } else {
    process.stdout.write('\n');
    process.stderr.write(
      `-- ${done.reason}: ${st.tokens} tokens in ${st.steps} target steps, tau ${st.meanAcceptanceLength.toFixed(2)}, ` +
      `acceptance ${(st.acceptanceRate * 100).toFixed(1)}%, ${st.tokensPerSecond.toFixed(1)} tok/s, ` +
      `TTFT ${(st.ttft * 1000).toFixed(0)} ms, TPOT ${(st.tpot * 1000).toFixed(1)} ms` +
      (tty ? ' (green = drafted and accepted)' : '') + '\n');
  }
  await engine.close();
}

async function main(): Promise<void> {
  const first = process.argv[2];
  const cmd = first?.startsWith('-') ? undefined : first;
  if (cmd && !COMMANDS[cmd]) throw new Error(`unknown command ${cmd}\n${HELP}`);
  const args = parse(process.argv.slice(2));
  if (args.help || !cmd) { console.log(HELP); return; }
  if (cmd === 'doctor') return doctor(args);
  if (cmd === 'install-plugin') return installPluginCommand(args);
  if (cmd === 'serve') return serve(args as Parameters<typeof serve>[0]);
  if (cmd === 'precompile') return precompileCommand(args as Parameters<typeof precompileCommand>[0]);
  if (cmd === 'demo') return generate(demoArgs(args));
  return generate(args);
}

main().catch((e: Error) => {
  process.stderr.write(`dflash: ${e.message}\n`);
  process.exitCode = 1;
});
