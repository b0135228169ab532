// Structured output and tool calling through the official `openai` client on the code pair:
// chat.completions.parse with a zod schema, json_object, vLLM's guided_* / structured_outputs,
// speculative = plain for constrained requests, a 400 naming the parameter for invalid schemas;
// tools with tool_choice required / named enforced by the grammar (message.tool_calls,
// finish_reason tool_calls, arguments valid against the function's parameters), streamed as
// delta.tool_calls; tool results rendered back through a tool-aware template; the output parser
// for both formats, text split at any point.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import OpenAI from 'openai';
import { zodResponseFormat } from 'openai/helpers/zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';

import type { Engine } from '../lib/engine';
import { ToolCallParser, toolMessages, toolPlan } from '../lib/server/tools';
import { loadTokenizer } from '../lib/tokenizer';
import { loadPair, MODEL, Running, startServer, TARGET } from './helpers/server';

let engine: Engine;
let srv: Running;
let client: OpenAI;

beforeAll(async () => {
  engine = await loadPair();
  srv = await startServer(engine, { maxSequences: 4 });
  client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});
afterAll(async () => {
  await srv?.close();
  engine?.dispose();
});

const Person = z.object({ name: z.string().max(12), age: z.number().int().min(0).max(120), languages: z.array(z.enum(['python', 'c'])).max(2) });
const MESSAGES = [{ role: 'user' as const, content: 'def add(a, b):' }];
const WEATHER = {
  type: 'function' as const,
  function: {
    name: 'get_weather',
    description: 'Weather forecast for a city',
    parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 12 }, days: { type: 'integer', minimum: 1, maximum: 7 } }, required: ['city', 'days'], additionalProperties: false },
  },
};
const TIME = { type: 'function' as const, function: { name: 'get_time', parameters: { type: 'object', properties: { zone: { enum: ['UTC', 'CET'] } }, required: ['zone'] } } };

describe('response_format', () => {
  it('chat.completions.parse with a zod schema returns a valid parsed object; speculative = plain', async () => {
    const ask = (speculative: boolean) => client.chat.completions.parse({
      model: MODEL, messages: MESSAGES, max_tokens: 120, temperature: 0,
      response_format: zodResponseFormat(Person, 'person'),
      // @ts-expect-error dflash's request extension
      dflash: { speculative },
    });
    const res = await ask(true);
    const msg = res.choices[0].message;
    expect(res.choices[0].finish_reason).toBe('stop');
    expect(Person.parse(msg.parsed)).toEqual(msg.parsed);
    expect((await ask(false)).choices[0].message.content).toBe(msg.content);
  });

  it('json_object, and vLLM\'s guided_json / guided_regex / guided_choice / structured_outputs', async () => {
    const chat = await client.chat.completions.create({ model: MODEL, messages: MESSAGES, max_tokens: 100, temperature: 0, response_format: { type: 'json_object' } });
    expect(typeof JSON.parse(chat.choices[0].message.content!)).toBe('object');
    const complete = (extra: Record<string, unknown>) => client.completions.create({ model: MODEL, prompt: 'def add(a, b):\n    return a', max_tokens: 40, temperature: 0, ...extra } as never);
    const regex = await complete({ guided_regex: 'def [a-z]+\\(\\):' });
    expect(regex.choices[0].text).toMatch(/^def [a-z]+\(\):$/);
    const choice = await complete({ guided_choice: ['yes (really)', 'no'] });
    expect(['yes (really)', 'no']).toContain(choice.choices[0].text);
    const json = await complete({ guided_json: { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'], additionalProperties: false } });
    expect(typeof JSON.parse(json.choices[0].text).ok).toBe('boolean');
    const so = await complete({ structured_outputs: { regex: '[0-9]{3}' } });
    expect(so.choices[0].text).toMatch(/^[0-9]{3}$/);
  });

  it('an invalid schema is a 400 naming the parameter; two constraints are a 400', async () => {
    const bad = client.chat.completions.create({
      model: MODEL, messages: MESSAGES, max_tokens: 10,
      response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'objekt' } } },
    });
    await expect(bad).rejects.toMatchObject({ status: 400, param: 'response_format.json_schema.schema', code: 'invalid_grammar', message: expect.stringContaining('objekt') });
    const both = client.chat.completions.create({ model: MODEL, messages: MESSAGES, max_tokens: 10, response_format: { type: 'json_object' }, guided_regex: 'a' } as never);
    await expect(both).rejects.toMatchObject({ status: 400, message: expect.stringContaining('Only one output constraint') });
    const stream = client.chat.completions.create({ model: MODEL, messages: MESSAGES, max_tokens: 10, stream: true, guided_regex: '(' } as never);
    await expect(stream).rejects.toMatchObject({ status: 400, param: 'guided_regex', message: expect.stringContaining('unclosed group') });
    // A grammar nothing can satisfy ends the request with an error, not a hang.
    const nothing = client.chat.completions.create({ model: MODEL, messages: MESSAGES, max_tokens: 10, guided_regex: '[^\\s\\S]' } as never);
    await expect(nothing).rejects.toMatchObject({ status: 400, param: 'guided_regex', message: expect.stringContaining('admits no token') });
  });
});

describe('tools', () => {
  it('tool_choice required: the grammar makes the model call a tool, with arguments valid against its parameters', async () => {
    const res = await client.chat.completions.create({
      model: MODEL, messages: [{ role: 'user', content: 'Weather in Paris for 3 days?' }], max_tokens: 120, temperature: 0,
      tools: [WEATHER, TIME], tool_choice: 'required', parallel_tool_calls: false,
    });
    const c = res.choices[0];
    expect(c.finish_reason).toBe('tool_calls');
    expect(c.message.tool_calls).toHaveLength(1);
    const call = c.message.tool_calls![0] as OpenAI.Chat.ChatCompletionMessageFunctionToolCall;
    expect(call.id).toMatch(/^call_/);
    expect(['get_weather', 'get_time']).toContain(call.function.name);
    const args = JSON.parse(call.function.arguments);
    if (call.function.name === 'get_weather') {
      expect(Object.keys(args).sort()).toEqual(['city', 'days']);
      expect(Number.isInteger(args.days) && args.days >= 1 && args.days <= 7).toBe(true);
    } else {
      expect(['UTC', 'CET']).toContain(args.zone);
    }
  });

  it('a named tool_choice calls that function; streamed, delta.tool_calls assemble to valid JSON arguments', async () => {
    const body = {
      model: MODEL, messages: [{ role: 'user' as const, content: 'What time is it?' }], max_tokens: 80, temperature: 0,
      tools: [WEATHER, TIME], tool_choice: { type: 'function' as const, function: { name: 'get_time' } },
    };
    const whole = await client.chat.completions.create(body);
    const call = whole.choices[0].message.tool_calls![0] as OpenAI.Chat.ChatCompletionMessageFunctionToolCall;
    expect(call.function.name).toBe('get_time');
    const runner = client.chat.completions.stream(body);
    let deltas = 0;
    runner.on('chunk', (chunk) => { if (chunk.choices[0]?.delta?.tool_calls) deltas++; });
    const final = await runner.finalChatCompletion();
    const streamed = final.choices[0].message.tool_calls![0] as OpenAI.Chat.ChatCompletionMessageFunctionToolCall;
    expect(deltas).toBeGreaterThan(0);
    expect(final.choices[0].finish_reason).toBe('tool_calls');
    expect(streamed.function.name).toBe('get_time');
    expect(JSON.parse(streamed.function.arguments)).toEqual(JSON.parse(call.function.arguments));
  });

  it('tool results go back into the prompt; tool_choice none leaves tools out; errors name the parameter', async () => {
    const call = { id: 'call_1', type: 'function' as const, function: { name: 'get_time', arguments: '{"zone":"UTC"}' } };
    const res = await client.chat.completions.create({
      model: MODEL, max_tokens: 5, temperature: 0, tools: [TIME],
      messages: [{ role: 'user', content: 'time?' }, { role: 'assistant', content: null, tool_calls: [call] }, { role: 'tool', tool_call_id: 'call_1', content: '12:00' }],
    });
    expect(res.usage!.prompt_tokens).toBeGreaterThan(engine.tokenizer.encode('time?12:00').length + 10);  // the tools, the call and the result
    await expect(client.chat.completions.create({ model: MODEL, messages: MESSAGES, max_tokens: 5, tools: [WEATHER], tool_choice: { type: 'function', function: { name: 'nope' } } }))
      .rejects.toMatchObject({ status: 400, param: 'tool_choice' });
    await expect(client.chat.completions.create({ model: MODEL, messages: MESSAGES, max_tokens: 5, tool_choice: 'required' }))
      .rejects.toMatchObject({ status: 400, param: 'tool_choice' });
    const none = await client.chat.completions.create({ model: MODEL, messages: MESSAGES, max_tokens: 5, temperature: 0, tools: [WEATHER], tool_choice: 'none' });
    expect(none.usage!.prompt_tokens).toBe(engine.tokenizer.encodeChat(MESSAGES).length);
  });
});

describe('tool templates and parsing', () => {
  it('a tool-aware template renders the tools, earlier calls (arguments as objects) and results itself', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dflash-tools-'));
    fs.copyFileSync(path.join(TARGET, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
    const template = [
      '{% if tools %}TOOLS:{% for t in tools %}{{ t.function.name }};{% endfor %}\n{% endif %}',
      '{% for m in messages %}{{ m.role }}: {{ m.content }}',
      '{% if m.tool_calls %}{% for c in m.tool_calls %}<tool_call>{{ c.function.name }} {{ c.function.arguments.zone }}</tool_call>{% endfor %}{% endif %}\n{% endfor %}',
    ].join('');
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ eos_token: '<|endoftext|>', chat_template: template }));
    try {
      const tok = await loadTokenizer(dir);
      const plan = toolPlan({ tools: [TIME], tool_choice: 'auto' }, tok.chatTemplate)!;
      expect(plan).toMatchObject({ format: 'hermes', templated: true, choice: 'auto' });
      const messages = toolMessages(plan, [
        { role: 'user', content: 'time?' },
        { role: 'assistant', content: '', tool_calls: [{ id: 'c', type: 'function', function: { name: 'get_time', arguments: '{"zone":"CET"}' } }] },
        { role: 'tool', content: '12:00' },
      ]);
      const text = tok.applyChatTemplate(messages, { tools: plan.tools });
      expect(text).toContain('TOOLS:get_time;');
      expect(text).toContain('<tool_call>get_time CET</tool_call>');
      expect(text).toContain('tool: 12:00');
      // A Llama 3.1-style template: JSON calls.
      expect(toolPlan({ tools: [TIME] }, '{{ "<|python_tag|>" }}{% for t in tools %}{% endfor %}')!.format).toBe('llama3');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the parser finds calls between content, whatever the chunking; an unfinished or invalid call stays content', () => {
    const text = 'Let me check.\n<tool_call>\n{"name": "get_time", "arguments": {"zone": "UTC"}}\n</tool_call>\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo", "days": 2}}\n</tool_call>';
    for (const size of [1, 3, 7, 1000]) {
      const p = new ToolCallParser('hermes');
      let content = '';
      for (let i = 0; i < text.length; i += size) content += p.push(text.slice(i, i + size)).content;
      content += p.end().content;
      expect(content.trim()).toBe('Let me check.');
      expect(p.toolCalls.map((c) => [c.function.name, JSON.parse(c.function.arguments)])).toEqual([['get_time', { zone: 'UTC' }], ['get_weather', { city: 'Oslo', days: 2 }]]);
    }
    const broken = new ToolCallParser('hermes');
    expect(broken.push('a <tool_call>{"name": 1}</tool_call> b <tool').content + broken.end().content).toBe('a <tool_call>{"name": 1}</tool_call> b <tool');
    expect(broken.toolCalls).toEqual([]);
    const llama = new ToolCallParser('llama3');
    expect(llama.push('<|python_tag|>{"name": "get_time", ').content).toBe('');
    llama.push('"parameters": {"zone": "CET"}}');
    llama.end();
    expect(llama.toolCalls.map((c) => c.function)).toEqual([{ name: 'get_time', arguments: '{"zone":"CET"}' }]);
    const prose = new ToolCallParser('llama3');
    expect(prose.push('The time is').content).toBe('The time is');
  });
});
