// gpt-oss's harmony format (issue #24 item 4): the prompt rendered from messages and tools as
// openai-harmony renders them, the output's channels read back as openai-harmony parses them
// (its goldens; analysis -> reasoning_content, final -> content, commentary to=functions.X ->
// tool_calls), whole and streamed, and the
// structured-output / tool_choice grammar binding the final or the call channel. The server runs
// the gpt-oss fixture with the harmony special tokens added (test/helpers/harmony-model.ts); its
// weights are random, so the tests that look at a whole answer constrain it with a grammar.
import * as fs from 'fs';
import * as path from 'path';

import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine } from '../lib/engine';
import { harmonyGrammar, HarmonyParser, harmonyVocab, HarmonyVocab, ReasoningEffort, renameStart, renderHarmony } from '../lib/harmony';
import { schemaType } from '../lib/harmony-types';
import type { ToolDefinition } from '../lib/server/tools';
import { ChatMessage, loadTokenizer, Tokenizer } from '../lib/tokenizer';
import { harmonyModel } from './helpers/harmony-model';
import { MODEL, Running, startServer } from './helpers/server';
import { tmpDir } from './helpers/tiny-model';

// What the server tests call: bounded, so that a random model's arguments end.
const CITY = {
  type: 'function' as const,
  function: {
    name: 'get_weather',
    parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 12 }, unit: { enum: ['c', 'f'] } }, required: ['city'], additionalProperties: false },
  },
};

// Goldens from openai-harmony, OpenAI's own renderer and parser (tools/harmony/goldens.py).
const GOLDENS = JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'goldens', 'harmony.json'), 'utf8')) as {
  cases: Array<{ name: string; effort: ReasoningEffort; tools: ToolDefinition[]; messages: ChatMessage[]; date: string; text: string }>;
  vocab: HarmonyVocab;
  outputs: Array<{ output: string; tokens: Array<[number, string]>; messages: Array<{ channel: string; recipient: string | null; text: string }> }>;
};

describe('the harmony prompt', () => {
  it.each(GOLDENS.cases.map((c) => [c.name, c] as const))('renders %s as openai-harmony does', (_, c) => {
    expect(renderHarmony(c.messages, { tools: c.tools, reasoningEffort: c.effort, date: c.date })).toBe(c.text);
  });

  it('drops reasoning a final answer followed, defaults to medium effort, and has no developer message without instructions or tools', () => {
    const text = renderHarmony([
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: 'Hello!', reasoning_content: 'Greet back.' },
      { role: 'user', content: 'Bye' },
    ], { date: '2026-12-07' });
    expect(text).toContain('Reasoning: medium');
    expect(text).not.toContain('developer');
    expect(text).not.toContain('Greet back.');
    expect(text).not.toContain("Calls to these tools");
    expect(text.endsWith('<|start|>assistant<|channel|>final<|message|>Hello!<|end|><|start|>user<|message|>Bye<|end|><|start|>assistant')).toBe(true);
  });

  it('renders text beside calls as a commentary preamble before them (the parser reads it back as content)', () => {
    const text = renderHarmony([{ role: 'user', content: 'x' }, { role: 'assistant', content: 'Let me look.', tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '{}' } }] }], { date: '2026-12-07' });
    expect(text).toContain('<|start|>assistant<|channel|>commentary<|message|>Let me look.<|end|><|start|>assistant to=functions.f<|channel|>commentary <|constrain|>json<|message|>{}<|call|>');
  });

  it('refuses a tool result that answers no call, naming the message', () => {
    expect(() => renderHarmony([{ role: 'user', content: 'x' }, { role: 'tool', tool_call_id: 'call_9', content: '1' }]))
      .toThrow("messages[1]: the tool result's tool_call_id 'call_9' answers no earlier tool call, and it has no 'name'");
    expect(renderHarmony([{ role: 'tool', name: 'f', content: '1' }], { date: '2026-12-07' })).toContain('<|start|>functions.f to=assistant<|channel|>commentary<|message|>1<|end|>');
  });

  it('wraps a request grammar: its start rule renamed everywhere, regex slashes escaped once, its own x-guidance kept', () => {
    expect(renameStart('?start: "(" start ")" | "start" | /start/ | x # start\nx: "x"'))
      .toBe('?harmony_answer__: "(" harmony_answer__ ")" | "start" | /start/ | x # start\nx: "x"');
    for (const regex of ['a/b', 'a\\/b']) expect(harmonyGrammar({ grammar: { regex } })).toEqual({ lark: 'start: <|channel|> "final" <|message|> harmony_answer__\nharmony_answer__: /a\\/b/' });
    const own = { type: 'object', 'x-guidance': { whitespace_flexible: true } };
    expect((harmonyGrammar({ grammar: { jsonSchema: own } }) as { lark: string }).lark).toContain(JSON.stringify(own));
  });

  it('writes nested objects, unions and tools without parameters', () => {
    expect(schemaType({ type: 'object', properties: { a: { anyOf: [{ type: 'string' }, { type: 'null' }] }, b: { type: 'object', properties: { c: { type: 'boolean' } }, required: ['c'] } }, required: ['a'] }, ''))
      .toBe('{\na: string | null,\nb?: {\n  c: boolean,\n},\n}');
    expect(renderHarmony([{ role: 'user', content: 'x' }], { tools: [{ type: 'function', function: { name: 'now' } }], date: '2026-12-07' }))
      .toContain('namespace functions {\n\ntype now = () => any;\n\n} // namespace functions');
  });
});

describe('the harmony output parser', () => {
  let tok: Tokenizer;
  let vocab: HarmonyVocab;
  beforeAll(async () => {
    tok = await loadTokenizer(harmonyModel(tmpDir('harmony-tokenizer')));
    vocab = harmonyVocab(tok)!;
  });

  /** The output as the engine streams it (EOS not included), one token at a time. */
  function parse(output: string) {
    const p = new HarmonyParser(vocab);
    const seen = { reasoning: '', content: '', calls: [] as string[] };
    for (const id of tok.encode(output, { addSpecialTokens: false })) {
      const piece = p.push(id, tok.decode([id]));
      seen.reasoning += piece.reasoning;
      seen.content += piece.content;
      seen.calls.push(...piece.calls.map((c) => `${c.function.name} ${c.function.arguments}`));
    }
    seen.calls.push(...p.end().calls.map((c) => `${c.function.name} ${c.function.arguments}`));
    expect([p.reasoning, p.content, p.toolCalls.map((c) => `${c.function.name} ${c.function.arguments}`)]).toEqual([seen.reasoning, seen.content, seen.calls]);
    return seen;
  }

  it.each(GOLDENS.outputs.map((o, i) => [i, o] as const))('reads output %i (o200k_harmony ids) as openai-harmony parses it', (_, o) => {
    const p = new HarmonyParser(GOLDENS.vocab);
    for (const [id, text] of o.tokens) p.push(id, text);
    p.end();
    const want = o.messages;
    expect(p.reasoning).toBe(want.filter((m) => m.channel === 'analysis').map((m) => m.text).join(''));
    expect(p.content).toBe(want.filter((m) => m.channel !== 'analysis' && !m.recipient).map((m) => m.text).join(''));
    expect(p.toolCalls.map((c) => [c.function.name, c.function.arguments]))
      .toEqual(want.filter((m) => m.recipient?.startsWith('functions.')).map((m) => [m.recipient!.slice('functions.'.length), m.text]));
  });

  it('finds every harmony token by name, and none in a tokenizer without them', async () => {
    expect(Object.values(vocab).every((id) => id >= 256)).toBe(true);
    expect(harmonyVocab({ tokenToId: () => undefined })).toBeUndefined();
  });

  it('reads analysis as reasoning and final as content', () => {
    expect(parse('<|channel|>analysis<|message|>User says hi.<|end|><|start|>assistant<|channel|>final<|message|>Hello there!'))
      .toEqual({ reasoning: 'User says hi.', content: 'Hello there!', calls: [] });
  });

  it('reads a function call closed by the EOS (<|call|>), and one closed inside the output', () => {
    expect(parse('<|channel|>analysis<|message|>Need data.<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city": "Paris"}'))
      .toEqual({ reasoning: 'Need data.', content: '', calls: ['get_weather {"city": "Paris"}'] });
    expect(parse('<|channel|>commentary to=functions.a <|constrain|>json<|message|>{}<|call|><|start|>assistant to=functions.b<|channel|>commentary json<|message|>{"x":1}'))
      .toEqual({ reasoning: '', content: '', calls: ['a {}', 'b {"x":1}'] });
  });

  it('puts text a structural token releases (held back before it) where it was held', () => {
    const p = new HarmonyParser(vocab);
    const pieces = [[vocab.channel, ''], [tok.encode('final')[0], 'final'], [vocab.message, ''], [tok.encode('H')[0], ''], [vocab.end, 'Hi']] as const;
    for (const [id, text] of pieces) p.push(id, text);
    expect([p.reasoning, p.content]).toEqual(['', 'Hi']);
  });

  it('keeps a call cut short (no EOS) as text, and output that never uses the format as content', () => {
    const p = new HarmonyParser(vocab);
    for (const id of tok.encode('<|channel|>commentary to=functions.f <|constrain|>json<|message|>{"a": ', { addSpecialTokens: false })) p.push(id, tok.decode([id]));
    expect(p.end(false).calls).toEqual([]);
    expect([p.content, p.toolCalls]).toEqual(['{"a": ', []]);
    const plain = new HarmonyParser(vocab);
    for (const id of tok.encode('Just text.', { addSpecialTokens: false })) plain.push(id, tok.decode([id]));
    expect(plain.end().content).toBe('Just text.');
    expect(plain.content).toBe('Just text.');
  });

  it('keeps a commentary preamble as content and an unfinished analysis as reasoning', () => {
    expect(parse('<|channel|>commentary<|message|>Let me check.<|end|>')).toEqual({ reasoning: '', content: 'Let me check.', calls: [] });
    expect(parse('<|channel|>analysis<|message|>cut sho')).toEqual({ reasoning: 'cut sho', content: '', calls: [] });
  });
});

describe('a harmony model behind the server', () => {
  let engine: Engine;
  let srv: Running;
  let client: OpenAI;
  const messages = [{ role: 'system' as const, content: 'Be brief.' }, { role: 'user' as const, content: 'Weather in Paris?' }];
  beforeAll(async () => {
    engine = await Engine.load({ target: harmonyModel(tmpDir('harmony-server')), maxSeqLen: 1024, maxSequences: 2, cacheDir: false });
    srv = await startServer(engine, { maxSeqLen: 1024 });
    client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  });
  afterAll(async () => {
    await srv?.close();
    await engine?.close();
  });

  it('renders the request in harmony: the prompt is the rendered text, reasoning_effort reaches it', async () => {
    const res = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 4, temperature: 0, reasoning_effort: 'low' } as never) as OpenAI.ChatCompletion;
    const today = new Date().toISOString().slice(0, 10);
    const rendered = renderHarmony(messages, { reasoningEffort: 'low', date: today });
    expect(res.usage!.prompt_tokens).toBe(engine.tokenizer.encode(rendered, { addSpecialTokens: false }).length);
    const direct = await engine.generate(messages, { maxTokens: 4, temperature: 0, chatTemplateKwargs: { reasoning_effort: 'low' } }).done();
    expect(direct.stats.promptTokens).toBe(res.usage!.prompt_tokens);
    expect(() => engine.generate(messages, { chatTemplateKwargs: { reasoning_effort: 'max' } })).toThrow(/reasoning_effort must be 'low', 'medium' or 'high', got 'max'/);
  });

  it('tool_choice required: the grammar opens a call, which comes back as tool_calls, whole and streamed', async () => {
    const req = { model: MODEL, messages, tools: [CITY], tool_choice: 'required' as const, max_tokens: 160, temperature: 0 };
    const res = await client.chat.completions.create(req);
    const choice = res.choices[0];
    expect(choice.finish_reason).toBe('tool_calls');
    expect(choice.message.tool_calls).toHaveLength(1);
    const call = choice.message.tool_calls![0] as OpenAI.ChatCompletionMessageFunctionToolCall;
    expect(call.function.name).toBe('get_weather');
    expect(typeof JSON.parse(call.function.arguments).city).toBe('string');
    expect(choice.message.content ?? '').toBe('');
    const stream = await client.chat.completions.create({ ...req, stream: true });
    const streamed: string[] = [];
    let finish: string | null = null;
    for await (const chunk of stream) {
      for (const c of chunk.choices[0]?.delta?.tool_calls ?? []) streamed.push(`${c.function?.name} ${c.function?.arguments}`);
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(streamed).toEqual([`get_weather ${call.function.arguments}`]);
    expect(finish).toBe('tool_calls');
  });

  it('response_format json_schema binds the final channel: content is JSON of the schema', async () => {
    const schema = { type: 'object', properties: { answer: { enum: ['sunny', 'rainy'] } }, required: ['answer'], additionalProperties: false };
    const res = await client.chat.completions.create({
      model: MODEL, messages, max_tokens: 64, temperature: 0,
      response_format: { type: 'json_schema', json_schema: { name: 'a', schema } },
    });
    const msg = res.choices[0].message as unknown as { content: string; reasoning_content: string | null };
    expect(res.choices[0].finish_reason, msg.content).toBe('stop');
    expect(['sunny', 'rainy']).toContain(JSON.parse(msg.content).answer);
    expect(msg.reasoning_content ?? '').toBe('');
  });

  it('ends a turn on <|call|> / <|return|> even when the checkpoint\'s configs do not list them', async () => {
    const dir = harmonyModel(tmpDir('harmony-no-eos'));
    for (const f of ['config.json', 'generation_config.json', 'tokenizer_config.json']) {
      const j = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
      delete j.eos_token_id;
      delete j.eos_token;
      fs.writeFileSync(path.join(dir, f), JSON.stringify(j));
    }
    const bare = await Engine.load({ target: dir, maxSeqLen: 1024, maxSequences: 1, cacheDir: false });
    try {
      const v = harmonyVocab(bare.tokenizer)!;
      const ids = bare.tokenizer.encode(renderHarmony(messages), { addSpecialTokens: false });
      // The grammar makes the model write <|call|> and then more: the turn must end at <|call|>.
      const d = await bare.generate(ids, { maxTokens: 32, temperature: 0, grammar: { lark: 'start: <|channel|> "final" <|message|> "ok" <|call|> "more"' } }).done();
      expect(d.reason).toBe('eos');
      expect(d.ids).not.toContain(v.call);
      expect(d.text).not.toContain('more');
    } finally {
      await bare.close();
    }
  });

  it('an unconstrained answer splits the same way whole and streamed', async () => {
    const req = { model: MODEL, messages, max_tokens: 48, temperature: 0 };
    const res = await client.chat.completions.create(req);
    const whole = res.choices[0].message as unknown as { content: string | null; reasoning_content: string | null };
    const stream = await client.chat.completions.create({ ...req, stream: true });
    let reasoning = '', content = '';
    for await (const chunk of stream) {
      const d = chunk.choices[0]?.delta as { content?: string; reasoning_content?: string } | undefined;
      reasoning += d?.reasoning_content ?? '';
      content += d?.content ?? '';
    }
    expect([reasoning, content]).toEqual([whole.reasoning_content ?? '', whole.content ?? '']);
    expect(reasoning + content).not.toBe('');  // a random model's text, in whichever field it went
  });
});
