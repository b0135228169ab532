// Thinking models behind `dflash serve`: the output split into reasoning_content and content as
// vLLM's reasoning parsers return them, whole and streamed (the split never depends on where the
// chunks fall), and chat_template_kwargs (enable_thinking) reaching the template. The server runs
// a Qwen3.5 target (the hybrid fixture) with a Qwen3.5-style template that opens the thinking
// block in the prompt; a random model never closes it, so its whole output is reasoning unless
// thinking is off.
import * as fs from 'fs';
import * as path from 'path';

import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine } from '../lib/engine';
import { ReasoningSplitter, thinkingOpen, thinkingTemplate } from '../lib/server/reasoning';
import { MODEL, Running, startServer } from './helpers/server';
import { tmpDir } from './helpers/tiny-model';

// Qwen3.5's template's shape: the generation prompt opens <think> unless enable_thinking is false,
// which closes an empty block instead; past assistant turns keep only their answer.
const TEMPLATE = '{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}' +
  "{% if add_generation_prompt %}<|im_start|>assistant\n{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% else %}<think>\n{% endif %}{% endif %}";

function split(open: boolean, pieces: string[]): [string, string] {
  const s = new ReasoningSplitter(open);
  let reasoning = '', content = '';
  for (const p of [...pieces.map((x) => s.push(x)), s.end()]) reasoning += p.reasoning, content += p.content;
  expect([s.reasoning, s.content]).toEqual([reasoning, content]);
  return [reasoning, content];
}

// Every way of cutting `text` into two or three pieces gives the same split.
function everyCut(open: boolean, text: string): [string, string] {
  const whole = split(open, [text]);
  for (let i = 0; i <= text.length; i++) {
    expect(split(open, [text.slice(0, i), text.slice(i)]), `cut at ${i}`).toEqual(whole);
    for (let j = i; j <= text.length; j += 3) expect(split(open, [text.slice(0, i), text.slice(i, j), text.slice(j)])).toEqual(whole);
  }
  return whole;
}

describe('the reasoning splitter', () => {
  it('splits at </think> when the prompt opened the block (Qwen3.5)', () => {
    expect(everyCut(true, 'Let me add: 2 + 2 = 4.\n</think>\n\nThe answer is 4.')).toEqual(['Let me add: 2 + 2 = 4.\n', 'The answer is 4.']);
    expect(everyCut(true, 'still thinking <thi')).toEqual(['still thinking <thi', '']);  // cut short: all reasoning
  });

  it('reads a block the model opens itself (Qwen3), and an answer without one as content', () => {
    expect(everyCut(false, '<think>\nhmm</think>\n\nYes.')).toEqual(['\nhmm', 'Yes.']);
    expect(everyCut(false, '  Plain <think> in an answer.')).toEqual(['', 'Plain <think> in an answer.']);
    expect(everyCut(false, '<thin')).toEqual(['', '<thin']);
  });

  it('knows thinking templates and whether a prompt left the block open', () => {
    expect(thinkingTemplate(TEMPLATE)).toBe(true);
    expect(thinkingTemplate('{% for m in messages %}{{ m.content }}{% endfor %}')).toBe(false);
    expect(thinkingOpen('<|im_start|>assistant\n<think>\n')).toBe(true);
    expect(thinkingOpen('<|im_start|>assistant\n<think>\n\n</think>\n\n')).toBe(false);
  });
});

describe('a thinking model behind the server', () => {
  let engine: Engine;
  let srv: Running;
  let client: OpenAI;
  const messages = [{ role: 'user' as const, content: 'What is 2 + 2?' }];
  beforeAll(async () => {
    const dir = tmpDir('qwen3_5-thinking');
    const src = path.join(__dirname, 'fixtures', 'models', 'qwen3_5-f32');
    for (const f of fs.readdirSync(src)) fs.copyFileSync(path.join(src, f), path.join(dir, f));
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ eos_token: null, chat_template: TEMPLATE }));
    engine = await Engine.load({ target: dir, maxSeqLen: 512, maxSequences: 2, dtype: 'f32', cacheDir: false });
    srv = await startServer(engine);
    client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  });
  afterAll(async () => {
    await srv?.close();
    await engine?.close();
  });

  it('returns the thinking as reasoning_content, whole and streamed', async () => {
    const direct = await engine.generate(messages, { maxTokens: 16, temperature: 0 }).done();
    const res = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 16, temperature: 0 });
    const msg = res.choices[0].message as unknown as { content: string; reasoning_content: string | null };
    expect(msg.reasoning_content).toBe(direct.text);  // the block never closed: all of it is reasoning
    expect(msg.content).toBe('');
    const stream = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 16, temperature: 0, stream: true });
    let reasoning = '', content = '';
    for await (const chunk of stream) {
      const d = chunk.choices[0]?.delta as { content?: string; reasoning_content?: string } | undefined;
      reasoning += d?.reasoning_content ?? '';
      content += d?.content ?? '';
    }
    expect([reasoning, content]).toEqual([direct.text, '']);
  });

  it('passes chat_template_kwargs to the template: enable_thinking false answers as content', async () => {
    const off = { enable_thinking: false };
    const direct = await engine.generate(messages, { maxTokens: 16, temperature: 0, chatTemplateKwargs: off }).done();
    const thinking = await engine.generate(messages, { maxTokens: 16, temperature: 0 }).done();
    expect(direct.stats.promptTokens).toBe(thinking.stats.promptTokens + '\n</think>\n\n'.length);  // byte-level tokens
    const res = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 16, temperature: 0, chat_template_kwargs: off } as never);
    const msg = (res as OpenAI.ChatCompletion).choices[0].message as unknown as { content: string; reasoning_content: string | null };
    expect(msg.content).toBe(direct.text.trimStart());
    expect(msg.reasoning_content).toBeNull();
    expect(() => engine.generate(messages, { chatTemplateKwargs: 'off' as never })).toThrow(/chatTemplateKwargs must be an object/);
  });
});
