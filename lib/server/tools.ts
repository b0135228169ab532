// Tool calling for /v1/chat/completions: the request's `tools` rendered into the prompt, the
// grammar that enforces `tool_choice: "required"` or a named function, and the parser that turns
// the model's output back into `message.tool_calls` (whole, or streamed as delta.tool_calls).
//
// Two output formats, chosen from the model's chat template:
//   hermes  <tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>   (Qwen2.5/Qwen3, Hermes)
//   llama3  {"name": ..., "parameters": {...}}                             (Llama 3.1/3.2 JSON tool calls, one per answer)
// A template that knows tools renders them (and earlier calls / results) itself; for one that does
// not, the tools are described in a system message and calls / results are written in the hermes
// format, so any model can be asked.
import { randomUUID } from 'crypto';

import type { Grammar } from '../grammar';
import type { ChatMessage } from '../tokenizer';
import { badRequest } from './openai';

export type ToolFormat = 'hermes' | 'llama3';

export interface ToolDefinition {
  type: 'function';
  function: { name: string; description?: string; parameters?: Record<string, unknown>; strict?: boolean };
}

/** An OpenAI-style tool call id. */
export const newCallId = () => `call_${randomUUID().replace(/-/g, '').slice(0, 24)}`;

export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

/** What a request asked of tools, checked. */
export interface ToolPlan {
  tools: ToolDefinition[];
  choice: 'auto' | 'required' | { name: string };
  parallel: boolean;
  format: ToolFormat;
  /** Whether the chat template renders tools itself. */
  templated: boolean;
}

/** The request's tools and tool_choice, or undefined when none apply (no tools, or choice none). */
export function toolPlan(body: Record<string, unknown>, chatTemplate: string | undefined): ToolPlan | undefined {
  const tools = body.tools as ToolDefinition[] | undefined | null;
  const choice = body.tool_choice as unknown;
  if (tools === undefined || tools === null || tools.length === 0) {
    if (choice !== undefined && choice !== null && choice !== 'none' && choice !== 'auto')
      throw badRequest("'tool_choice' needs 'tools'.", 'tool_choice');
    return undefined;
  }
  const names = new Set<string>();
  tools.forEach((t, i) => {
    if (names.has(t.function.name)) throw badRequest(`Tool '${t.function.name}' is defined twice.`, `tools[${i}].function.name`);
    names.add(t.function.name);
  });
  if (choice === 'none') return undefined;
  let c: ToolPlan['choice'] = 'auto';
  if (choice === 'required') c = 'required';
  else if (choice !== undefined && choice !== null && choice !== 'auto') {
    const name = (choice as { function?: { name?: string } }).function?.name;
    if (typeof name !== 'string' || !names.has(name))
      throw badRequest(`'tool_choice' names the function '${name}', which is not among 'tools' (${[...names].join(', ')}).`, 'tool_choice');
    c = { name };
  }
  const src = chatTemplate ?? '';
  const format: ToolFormat = !src.includes('<tool_call>') && /python_tag|ipython/.test(src) ? 'llama3' : 'hermes';
  return { tools, choice: c, parallel: body.parallel_tool_calls !== false, format, templated: /\btools\b/.test(src) };
}

/** The messages as the template should see them: calls and results in its terms (arguments as
 *  objects, as Hugging Face templates expect) or, for a template without tools, in text. */
export function toolMessages(plan: ToolPlan | undefined, messages: ChatMessage[]): ChatMessage[] {
  if (!plan || plan.templated) {
    return messages.map((m) => (Array.isArray(m.tool_calls)
      ? { ...m, tool_calls: (m.tool_calls as ToolCall[]).map((c) => ({ ...c, function: { ...c.function, arguments: parseArguments(c.function.arguments) } })) }
      : m));
  }
  const out: ChatMessage[] = [{ role: 'system', content: describeTools(plan) }];
  for (const m of messages) {
    if (m.role === 'tool') {
      out.push({ role: 'user', content: `<tool_response>\n${m.content}\n</tool_response>` });
    } else if (Array.isArray(m.tool_calls) && m.tool_calls.length > 0) {
      const calls = (m.tool_calls as ToolCall[]).map((c) => formatCall(plan.format, c.function.name, parseArguments(c.function.arguments)));
      out.push({ role: m.role, content: [m.content, ...calls].filter(Boolean).join('\n') });
    } else {
      out.push(m);
    }
  }
  return out;
}

function parseArguments(args: unknown): unknown {
  if (typeof args !== 'string') return args;
  try {
    return JSON.parse(args);
  } catch {
    return args;
  }
}

function formatCall(format: ToolFormat, name: string, args: unknown): string {
  return format === 'llama3' ? JSON.stringify({ name, parameters: args }) : `<tool_call>\n${JSON.stringify({ name, arguments: args })}\n</tool_call>`;
}

function describeTools(plan: ToolPlan): string {
  const lines = plan.tools.map((t) => JSON.stringify(t));
  const how = plan.format === 'llama3'
    ? 'To call a function, answer with only a JSON object {"name": <function name>, "parameters": <arguments object>}.'
    : 'To call a function, write <tool_call>\n{"name": <function name>, "arguments": <arguments object>}\n</tool_call>';
  return `You can call these functions:\n<tools>\n${lines.join('\n')}\n</tools>\n${how}`;
}

/** The grammar that makes the model call a tool (required) or the named one; undefined for auto. */
export function toolGrammar(plan: ToolPlan): Grammar | undefined {
  if (plan.choice === 'auto') return undefined;
  const wanted = plan.choice === 'required' ? plan.tools : plan.tools.filter((t) => t.function.name === (plan.choice as { name: string }).name);
  const argsKey = plan.format === 'llama3' ? 'parameters' : 'arguments';
  const schema = {
    anyOf: wanted.map((t) => ({
      type: 'object',
      properties: { name: { const: t.function.name }, [argsKey]: t.function.parameters ?? { type: 'object' } },
      required: ['name', argsKey],
      additionalProperties: false,
    })),
    'x-guidance': { whitespace_flexible: false },
  };
  const call = plan.format === 'llama3' ? `%json ${JSON.stringify(schema)}` : `"<tool_call>\\n" %json ${JSON.stringify(schema)} "\\n</tool_call>"`;
  // Llama 3.1's format has one call per answer.
  const parallel = plan.parallel && plan.choice === 'required' && plan.format === 'hermes';
  return { lark: parallel ? `start: call ("\\n" call)*\ncall: ${call}` : `start: ${call}` };
}

/** Splits a choice's text into content and tool calls as it streams in: content is released as
 *  soon as it cannot be the start of a call; a call when it is complete. */
export class ToolCallParser {
  private buffer = '';
  private readonly calls: ToolCall[] = [];
  private contentSeen = false;
  constructor(private readonly format: ToolFormat) {}

  /** New text in; out: content to send now and calls completed by it. */
  push(text: string): { content: string; calls: ToolCall[] } {
    this.buffer += text;
    return this.format === 'llama3' ? this.llama3(false) : this.hermes(false);
  }

  /** The end of the output: whatever is held back. */
  end(): { content: string; calls: ToolCall[] } {
    return this.format === 'llama3' ? this.llama3(true) : this.hermes(true);
  }

  get toolCalls(): ToolCall[] {
    return this.calls;
  }

  private hermes(final: boolean): { content: string; calls: ToolCall[] } {
    const OPEN = '<tool_call>', CLOSE = '</tool_call>';
    let content = '';
    const calls: ToolCall[] = [];
    for (;;) {
      const open = this.buffer.indexOf(OPEN);
      if (open < 0) {
        // Hold back a tail that may still become "<tool_call>".
        let keep = 0;
        if (!final) for (let k = Math.min(OPEN.length - 1, this.buffer.length); k > 0; k--) if (OPEN.startsWith(this.buffer.slice(-k))) { keep = k; break; }
        content += this.buffer.slice(0, this.buffer.length - keep);
        this.buffer = this.buffer.slice(this.buffer.length - keep);
        break;
      }
      const close = this.buffer.indexOf(CLOSE, open);
      if (close < 0) {
        content += this.buffer.slice(0, open);
        this.buffer = this.buffer.slice(open);
        if (final) {
          content += this.buffer;  // an unfinished call stays text
          this.buffer = '';
        }
        break;
      }
      content += this.buffer.slice(0, open);
      const body = this.buffer.slice(open + OPEN.length, close);
      this.buffer = this.buffer.slice(close + CLOSE.length);
      const call = this.parse(body, 'arguments');
      if (call) calls.push(call);
      else content += OPEN + body + CLOSE;
    }
    return this.emit(content, calls);
  }

  private llama3(final: boolean): { content: string; calls: ToolCall[] } {
    // A call is the whole answer (optionally after <|python_tag|>), one JSON object: known only
    // at the end; text that cannot start one streams at once.
    const trimmed = this.buffer.replace(/^\s*(<\|python_tag\|>)?\s*/, '');
    if (!this.contentSeen && (trimmed === '' || trimmed.startsWith('{'))) {
      if (!final) return { content: '', calls: [] };
      const call = this.parse(trimmed, 'parameters');
      if (call) {
        this.buffer = '';
        return this.emit('', [call]);
      }
    }
    const content = this.buffer;
    this.buffer = '';
    return this.emit(content, []);
  }

  private emit(content: string, calls: ToolCall[]): { content: string; calls: ToolCall[] } {
    if (content) this.contentSeen = true;
    this.calls.push(...calls);
    return { content, calls };
  }

  private parse(json: string, argsKey: 'arguments' | 'parameters'): ToolCall | undefined {
    let v: unknown;
    try {
      v = JSON.parse(json.trim());
    } catch {
      return undefined;
    }
    const o = v as Record<string, unknown>;
    const args = o?.[argsKey] ?? o?.arguments ?? o?.parameters;
    if (!o || typeof o !== 'object' || typeof o.name !== 'string' || args === undefined) return undefined;
    return { id: newCallId(), type: 'function', function: { name: o.name, arguments: JSON.stringify(args) } };
  }
}
