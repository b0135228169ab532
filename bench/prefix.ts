// Prefix caching, side by side in one run (engines with prefixCaching on and off, same weights):
// (1) a multi-turn chat whose history grows to ~--history tokens over --turns turns: the time to
// the first token of every turn (the cache re-reads only the new turn); (2) --requests concurrent
// requests behind one --system-token system prompt: aggregate throughput and TTFT (the cache
// prefills the shared prompt once). Prompts are token ids (any tokenizer), drawn from a fixed seed.
//   npm run bench:prefix -- [--target DIR --drafter DIR | --random --preset small] [--turns 5]
//        [--history 2000] [--system 1000] [--requests 16] [--max-tokens 32] [--repeats 7]
import { Engine } from '../lib/engine';
import { arg, machine, models, publish, resultFile, run } from './common';

async function main(): Promise<void> {
  const m = models();
  const turns = Number(arg('turns', '5'));
  const requests = Number(arg('requests', '16'));
  const maxTokens = Number(arg('max-tokens', '32'));
  const engines: Record<'on' | 'off', Engine> = {
    on: await Engine.load({ target: m.target, drafter: m.drafter, maxSequences: requests }),
    off: await Engine.load({ target: m.target, drafter: m.drafter, maxSequences: requests, prefixCaching: false }),
  };
  const st = engines.on.stats();
  const room = st.maxSeqLen - maxTokens - 8;
  const history = Math.min(Number(arg('history', '2000')), room);
  const system = Math.min(Number(arg('system', '1000')), room - 64);
  const vocab = engines.on.config.target.vocabSize;
  let state = 7;  // xorshift32: the same prompts every run
  const random = () => {
    state ^= state << 13; state >>>= 0; state ^= state >>> 17; state ^= state << 5; state >>>= 0;
    return state / 2 ** 32;
  };
  const tokens = (n: number) => Array.from({ length: n }, () => 1 + Math.floor(random() * (vocab - 2)));
  const userTurn = Math.max(8, Math.floor(history / turns) - maxTokens);
  const userTurns = Array.from({ length: turns }, () => tokens(userTurn));
  const systemPrompt = tokens(system);
  const questions = Array.from({ length: requests }, () => tokens(48));

  const runChat = async (e: Engine, turnsOf: number[][]) => {
    const out: Array<{ prompt: number; cached: number; ttft: number }> = [];
    let h: number[] = [];
    for (const u of turnsOf) {
      const prompt = [...h, ...u];
      const d = await e.generate(prompt, { maxTokens }).done();
      out.push({ prompt: prompt.length, cached: d.stats.cachedTokens, ttft: d.stats.ttft });
      h = [...prompt, ...d.ids];
    }
    return out;
  };
  // Warm both engines on a throwaway chat and burst of the same shapes (other tokens), so compiles
  // stay out of the numbers.
  for (const e of Object.values(engines)) {
    await runChat(e, userTurns.map((u) => tokens(u.length)));
    await Promise.all(questions.map(() => e.generate(tokens(system + 48), { maxTokens }).done()));
  }
  // Each turn's TTFT is the median of --repeats chats (fresh turns each time, the engines taking
  // turns), since one prefill on two shared cores is too noisy to compare on its own.
  const repeats = Number(arg('repeats', '7'));
  const runs: Record<string, Array<Array<{ prompt: number; cached: number; ttft: number }>>> = { on: [], off: [] };
  for (let r = 0; r < repeats; r++) {
    const turnsOf = r === 0 ? userTurns : userTurns.map((u) => tokens(u.length));
    for (const [mode, e] of Object.entries(engines)) runs[mode].push(await runChat(e, turnsOf));
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const chat: Record<string, Array<{ prompt: number; cached: number; ttft: number }>> = {};
  for (const mode of ['on', 'off']) {
    chat[mode] = runs[mode][0].map((t, i) => ({ ...t, ttft: median(runs[mode].map((run) => run[i].ttft)) }));
  }
  const burst: Record<string, { seconds: number; tokens: number; ttft: number[]; cached: number }> = {};
  for (const [mode, e] of Object.entries(engines)) {
    const t0 = performance.now();
    const done = await Promise.all(questions.map((q) => e.generate([...systemPrompt, ...q], { maxTokens }).done()));
    burst[mode] = {
      seconds: (performance.now() - t0) / 1000, tokens: done.reduce((a, d) => a + d.ids.length, 0),
      ttft: done.map((d) => d.stats.ttft).sort((a, b) => a - b), cached: done.reduce((a, d) => a + d.stats.cachedTokens, 0),
    };
  }
  const ms = (s: number) => (s * 1000).toFixed(1);
  const lines = [
    `# Prefix caching: multi-turn TTFT and a shared system prompt (${new Date().toISOString().slice(0, 10)})`,
    '',
    machine(engines.on.client),
    `- ${m.describe}`,
    `- one engine with prefixCaching on, one with it off (the same weights), in one run; greedy; ${maxTokens} new tokens per request; token-id prompts (seed 7); both warmed up first; chat TTFTs: the median of ${repeats} chats per engine, the engines alternating`,
    '',
    `## A ${turns}-turn chat: every turn sends the whole history (${userTurn} new tokens + the previous answer)`,
    '',
    '| turn | prompt tokens | cached (on) | TTFT on (ms) | TTFT off (ms) | off / on |',
    '|---|---|---|---|---|---|',
    ...chat.on.map((t, i) => `| ${i + 1} | ${t.prompt} | ${t.cached} | ${ms(t.ttft)} | ${ms(chat.off[i].ttft)} | ${(chat.off[i].ttft / t.ttft).toFixed(2)}x |`),
    '',
    `## ${requests} concurrent requests behind one ${system}-token system prompt (+ 48 tokens of their own)`,
    '',
    '| prefix cache | output tok/s | TTFT p50 / max (ms) | prompt tokens cached | seconds |',
    '|---|---|---|---|---|',
    ...(['on', 'off'] as const).map((k) => {
      const b = burst[k];
      return `| ${k} | ${(b.tokens / b.seconds).toFixed(0)} | ${ms(b.ttft[Math.floor(b.ttft.length / 2)])} / ${ms(b.ttft[b.ttft.length - 1])} | ${b.cached} | ${b.seconds.toFixed(2)} |`;
    }),
    '',
    `Throughput on / off: ${((burst.on.tokens / burst.on.seconds) / (burst.off.tokens / burst.off.seconds)).toFixed(2)}x; turn ${turns} TTFT off / on: ` +
      `${(chat.off[turns - 1].ttft / chat.on[turns - 1].ttft).toFixed(2)}x.`,
  ];
  publish(lines, resultFile('prefix', m, engines.on.client));
  await Promise.all(Object.values(engines).map((e) => e.close()));
}

run(main);
