#!/usr/bin/env node
// The `dflash` command line: `dflash generate` streams a generation with a live acceptance
// readout (tokens the drafter proposed and the target accepted are highlighted), `--json` for
// machine output; `dflash doctor` reports plugin discovery and the devices it finds;
// `dflash install-plugin` and `dflash demo` live in cli-plugins.ts.
import { demoArgs, doctor, installPluginCommand } from './cli-plugins';
import { Engine } from './index';

const HELP = `usage:
  dflash generate --target DIR [--drafter DIR] [options] "prompt"
      --max-tokens N     tokens to generate (default 128)
      --block-size B     speculative block size (default: the drafter's)
      --no-speculative   plain greedy decoding even with a drafter
      --chat             wrap the prompt in the tokenizer's chat template
      --stop S           stop string (repeatable)
      --temperature T    sample at temperature T (default 0: greedy)
      --top-p P, --top-k K, --seed N   sampling controls
      --plugin PATH      PJRT plugin to use (default: discovered)
      --json             one JSON object per line (token, step, done)
  dflash demo ["prompt"] [generate options]
      the trained code pair (package dflash-demo-pair, or models/code-pair in a checkout)
  dflash doctor [--plugin PATH] [--verbose | --json]
      plugin discovery (one line per source; --verbose: every path), versions, devices
  dflash install-plugin cpu|cuda|tpu [--force] [--no-cuda-libs] [--index-url URL] [--dir DIR]
      fetch a pinned PJRT plugin (no Python needed) into ~/.cache/dflash/plugins
      ($DFLASH_CACHE_DIR/plugins or $XDG_CACHE_HOME/dflash/plugins when set)`;

interface Args { _: string[]; [k: string]: string | boolean | string[] }

function parse(argv: string[]): Args {
  const out: Args = { _: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) { out._.push(a); continue; }
    const key = a.slice(2);
    if (['json', 'no-speculative', 'chat', 'help', 'verbose', 'force', 'no-cuda-libs'].includes(key)) { out[key] = true; continue; }
    const v = argv[++i];
    if (v === undefined) throw new Error(`option --${key} needs a value`);
    if (key === 'stop') out.stop = [...((out.stop as string[]) || []), v];
    else out[key] = v;
  }
  return out;
}

async function generate(args: Args): Promise<void> {
  const prompt = args._.slice(1).join(' ');
  if (!args.target) throw new Error('generate needs --target DIR');
  if (!prompt) throw new Error('generate needs a prompt');
  const json = args.json === true;
  const tty = process.stdout.isTTY && !json;
  const t0 = performance.now();
  const engine = await Engine.load({
    target: args.target as string,
    drafter: args.drafter as string | undefined,
    plugin: args.plugin as string | undefined,
    onProgress: json ? undefined : (p) => {
      if (p.phase === 'weights' && p.tensors === p.totalTensors) process.stderr.write(`loaded ${p.model}: ${p.totalTensors} tensors, ${(p.totalBytes / 1e6).toFixed(1)} MB\n`);
    },
  });
  if (!json) process.stderr.write(`platform ${engine.platform}, ready in ${((performance.now() - t0) / 1000).toFixed(2)} s\n`);
  const blockSize = args['block-size'] ? Number(args['block-size']) : undefined;
  const ac = new AbortController();
  process.once('SIGINT', () => ac.abort());
  const num = (k: string) => (args[k] !== undefined ? Number(args[k]) : undefined);
  const stream = engine.generate(args.chat ? [{ role: 'user', content: prompt }] : prompt, {
    maxTokens: num('max-tokens') ?? 128,
    temperature: num('temperature'), topP: num('top-p'), topK: num('top-k'), seed: num('seed'),
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
  engine.dispose();
}

async function main(): Promise<void> {
  const args = parse(process.argv.slice(2));
  const cmd = args._[0];
  if (args.help || !cmd) { console.log(HELP); return; }
  if (cmd === 'doctor') return doctor(args);
  if (cmd === 'generate') return generate(args);
  if (cmd === 'demo') return generate(demoArgs(args));
  if (cmd === 'install-plugin') return installPluginCommand(args);
  throw new Error(`unknown command ${cmd}\n${HELP}`);
}

main().catch((e: Error) => {
  process.stderr.write(`dflash: ${e.message}\n`);
  process.exitCode = 1;
});
