#!/usr/bin/env node
// The `dflash` command line: `dflash generate` streams a generation with a live acceptance
// readout (tokens the drafter proposed and the target accepted are highlighted), `--json` for
// machine output; `dflash doctor` reports plugin discovery and the devices it finds; `dflash
// serve` runs the OpenAI-compatible HTTP server (lib/server/). Options are parsed per command
// with Node's util.parseArgs, so an unknown or valueless option is an error naming it.
import { parseArgs, ParseArgsConfig } from 'util';

import { describePluginsWithProbe, Engine } from './index';
import { serve, SERVE_HELP, serveOptions } from './server/serve-command';

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
${SERVE_HELP}
  dflash doctor [--plugin PATH]`;

const generateOptions = {
  target: { type: 'string' }, drafter: { type: 'string' }, plugin: { type: 'string' },
  'max-tokens': { type: 'string' }, 'block-size': { type: 'string' }, 'no-speculative': { type: 'boolean' },
  chat: { type: 'boolean' }, stop: { type: 'string', multiple: true }, temperature: { type: 'string' },
  'top-p': { type: 'string' }, 'top-k': { type: 'string' }, seed: { type: 'string' }, json: { type: 'boolean' },
} as const;

const COMMANDS: Record<string, ParseArgsConfig['options']> = {
  generate: generateOptions,
  doctor: { plugin: { type: 'string' } },
  serve: serveOptions,
};

interface Args { _: string[]; [k: string]: string | boolean | string[] | undefined }

function parse(argv: string[]): Args {
  const command = argv[0]?.startsWith('-') ? undefined : argv[0];
  const options = { ...(command ? COMMANDS[command] : undefined), help: { type: 'boolean' as const } };
  const { values, positionals } = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  return { ...values, _: positionals };
}

async function doctor(args: Args): Promise<void> {
  const report = await describePluginsWithProbe({ plugin: args.plugin as string | undefined });
  console.log(JSON.stringify(report, null, 2));
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
      if (p.tensors === p.totalTensors) process.stderr.write(`loaded ${p.model}: ${p.totalTensors} tensors, ${(p.totalBytes / 1e6).toFixed(1)} MB\n`);
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
  const first = process.argv[2];
  const cmd = first?.startsWith('-') ? undefined : first;
  if (cmd && !COMMANDS[cmd]) throw new Error(`unknown command ${cmd}\n${HELP}`);
  const args = parse(process.argv.slice(2));
  if (args.help || !cmd) { console.log(HELP); return; }
  if (cmd === 'doctor') return doctor(args);
  if (cmd === 'serve') return serve(args as Parameters<typeof serve>[0]);
  return generate(args);
}

main().catch((e: Error) => {
  process.stderr.write(`dflash: ${e.message}\n`);
  process.exitCode = 1;
});
