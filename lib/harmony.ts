// gpt-oss's harmony chat format (openai/harmony), for /v1/chat/completions: the prompt rendered
// from the request's messages and tools, and the output parsed back into OpenAI's fields.
//
//   <|start|>{role}<|channel|>{channel}<|message|>{text}<|end|>      one message
//   <|start|>assistant<|channel|>analysis<|message|>...<|end|>       reasoning -> reasoning_content
//   <|start|>assistant<|channel|>final<|message|>...<|return|>       the answer -> content
//   <|start|>assistant<|channel|>commentary to=functions.NAME <|constrain|>json<|message|>{..}<|call|>
//                                                                    a function call -> tool_calls
//                                                                    (rendered in a prompt with the
//                                                                    recipient before <|channel|>)
//   <|start|>functions.NAME to=assistant<|channel|>commentary<|message|>{result}<|end|>
//
// The generation prompt ends with `<|start|>assistant`; generation stops on <|return|> or <|call|>
// (the checkpoint's EOS ids). vLLM renders gpt-oss with the harmony library rather than the
// checkpoint's Jinja template; this module is the same format written for dflash. The structure
// is read from token ids (the special tokens decode to nothing), the text between them from the
// detokenized stream.
import type { Grammar } from './grammar';
import type { ChatMessage, Tokenizer } from './tokenizer';
import { schemaType } from './harmony-types';
import { newCallId, type ToolCall, type ToolDefinition, type ToolPlan } from './server/tools';

const NAMES = ['start', 'end', 'message', 'channel', 'constrain', 'return', 'call'] as const;
export type HarmonyVocab = Record<(typeof NAMES)[number], number>;

/** The harmony token ids of a tokenizer, or undefined when it has not all of them. */
export function harmonyVocab(tok: Pick<Tokenizer, 'tokenToId'>): HarmonyVocab | undefined {
  const v: Partial<HarmonyVocab> = {};
  for (const n of NAMES) {
    const id = tok.tokenToId(`<|${n}|>`);
    if (id === undefined) return undefined;
    v[n] = id;
  }
  return v as HarmonyVocab;
}

export type ReasoningEffort = 'low' | 'medium' | 'high';

/** `value` as a reasoning effort (undefined stays undefined); a RangeError naming `where` else —
 *  the one check generate() and the server share. */
export function reasoningEffort(value: unknown, where: string): ReasoningEffort | undefined {
  if (value === undefined || value === 'low' || value === 'medium' || value === 'high') return value;
  throw new RangeError(`${where} must be 'low', 'medium' or 'high', got ${typeof value === 'string' ? `'${value}'` : JSON.stringify(value)}`);
}

export interface HarmonyPromptOptions {
  tools?: ToolDefinition[];
  reasoningEffort?: ReasoningEffort;
  /** `Current date:` in the system message (YYYY-MM-DD); today by default. */
  date?: string;
}

const msg = (header: string, text: string, end = '<|end|>') => `<|start|>${header}<|message|>${text}${end}`;

/** The prompt for `messages`, ending with the assistant's turn opened. */
export function renderHarmony(messages: ChatMessage[], o: HarmonyPromptOptions = {}): string {
  const tools = o.tools ?? [];
  const system = [
    'You are ChatGPT, a large language model trained by OpenAI.',
    'Knowledge cutoff: 2024-06',
    `Current date: ${o.date ?? new Date().toISOString().slice(0, 10)}`,
    '',
    `Reasoning: ${o.reasoningEffort ?? 'medium'}`,
    '',
    '# Valid channels: analysis, commentary, final. Channel must be included for every message.',
    ...(tools.length ? ["Calls to these tools must go to the commentary channel: 'functions'."] : []),
  ].join('\n');
  let out = msg('system', system);
  // The request's system and developer messages become the developer message's instructions.
  const instructions = messages.filter((m) => m.role === 'system' || m.role === 'developer').map((m) => String(m.content ?? ''));
  if (instructions.length || tools.length) {
    const parts: string[] = [];
    if (instructions.length) parts.push(`# Instructions\n\n${instructions.join('\n\n')}`);
    if (tools.length) parts.push(`# Tools\n\n## functions\n\nnamespace functions {\n\n${tools.map(toolType).join('\n\n')}\n\n} // namespace functions`);
    out += msg('developer', parts.join('\n\n'));
  }
  const names = new Map<string, string>();  // tool_call_id -> function name, for the results
  // Earlier turns' reasoning is dropped once a final answer followed it (harmony's rule); the
  // reasoning before calls still being answered is kept.
  const lastFinal = messages.map((m) => m.role === 'assistant' && !hasCalls(m)).lastIndexOf(true);
  messages.forEach((m, i) => {
    if (m.role === 'user') out += msg('user', String(m.content ?? ''));
    else if (m.role === 'tool') {
      const name = (m.name as string | undefined) ?? names.get(String(m.tool_call_id ?? ''));
      if (name === undefined)
        throw new RangeError(`messages[${i}]: the tool result's tool_call_id '${m.tool_call_id}' answers no earlier tool call, and it has no 'name'`);
      out += msg(`functions.${name} to=assistant<|channel|>commentary`, String(m.content ?? ''));
    } else if (m.role === 'assistant') {
      const reasoning = (m.reasoning_content ?? m.reasoning) as string | undefined;
      if (reasoning && i > lastFinal) out += msg('assistant<|channel|>analysis', reasoning);
      if (hasCalls(m)) {
        // Text beside the calls is what the model said before them: a commentary preamble.
        if (m.content) out += msg('assistant<|channel|>commentary', String(m.content));
        for (const c of m.tool_calls as ToolCall[]) {
          names.set(c.id, c.function.name);
          const args = typeof c.function.arguments === 'string' ? c.function.arguments : JSON.stringify(c.function.arguments);
          out += msg(`assistant to=functions.${c.function.name}<|channel|>commentary <|constrain|>json`, args, '<|call|>');
        }
      } else if (m.content) out += msg('assistant<|channel|>final', String(m.content));
    }
  });
  return out + '<|start|>assistant';
}

const hasCalls = (m: ChatMessage) => Array.isArray(m.tool_calls) && m.tool_calls.length > 0;

function toolType(t: ToolDefinition): string {
  const f = t.function;
  const head = f.description ? `// ${f.description.split('\n').join('\n// ')}\n` : '';
  const params = f.parameters as { properties?: Record<string, unknown> } | undefined;
  const args = params && params.properties && Object.keys(params.properties).length ? `(_: ${schemaType(params, '')})` : '()';
  return `${head}type ${f.name} = ${args} => any;`;
}

/** The grammar of a constrained request: the answer (or the call) opens the output. Harmony
 *  puts reasoning first, but a grammar binds a request's whole output, so a constrained request
 *  skips the analysis channel: the output opens the final channel (a response format) or a call
 *  (tool_choice required / named), whose text the request's grammar then binds. */
export function harmonyGrammar(v: { plan?: ToolPlan; grammar?: Grammar }): Grammar | undefined {
  const plan = v.plan;
  if (plan && plan.choice !== 'auto') {
    const wanted = plan.choice === 'required' ? plan.tools : plan.tools.filter((t) => t.function.name === (plan.choice as { name: string }).name);
    const calls = wanted.map((t, i) => `call${i}: ${JSON.stringify(`commentary to=functions.${t.function.name} `)} <|constrain|> "json" <|message|> ` +
      `%json ${JSON.stringify(withCompact(t.function.parameters ?? { type: 'object' }))}`);
    return { lark: `start: <|channel|> (${wanted.map((_, i) => `call${i}`).join(' | ')})\n${calls.join('\n')}` };
  }
  const g = v.grammar;
  if (!g) return undefined;
  const open = 'start: <|channel|> "final" <|message|> ';
  // JSON in the final channel is written compact, as lib/grammar.ts writes it (a schema's own
  // x-guidance wins).
  const compact = (schema: object) => JSON.stringify(withCompact(schema));
  if ('json' in g) return { lark: `${open}%json ${compact({ type: 'object' })}` };
  if ('jsonSchema' in g) return { lark: `${open}%json ${compact(typeof g.jsonSchema === 'string' ? JSON.parse(g.jsonSchema) as object : g.jsonSchema)}` };
  // A slash ends a lark regex literal: escape the unescaped ones (an escape pair is kept as is).
  if ('regex' in g) return { lark: `${open}${ANSWER}\n${ANSWER}: /${g.regex.replace(/\\.|\//g, (m) => (m === '/' ? '\\/' : m))}/` };
  if ('lark' in g) return { lark: `${open}${ANSWER}\n${renameStart(g.lark)}` };
  return undefined;
}

/** The request grammar's entry rule, renamed so the harmony wrapper can be `start`. */
const ANSWER = 'harmony_answer__';

const withCompact = (schema: object): object => ('x-guidance' in schema ? schema : { ...schema, 'x-guidance': { whitespace_flexible: false } });

/** A lark grammar with every reference to its rule `start` (definition, `?start`, recursion)
 *  renamed to ANSWER; strings, regexes and comments are left alone. */
export function renameStart(lark: string): string {
  let out = '';
  for (let i = 0; i < lark.length;) {
    const c = lark[i];
    if (c === '#' || (c === '/' && lark[i + 1] === '/')) {  // a comment, to the end of the line
      const j = lark.indexOf('\n', i);
      out += lark.slice(i, j < 0 ? lark.length : j);
      i = j < 0 ? lark.length : j;
    } else if (c === '"' || c === '/') {  // a string or regex literal, with backslash escapes
      let j = i + 1;
      while (j < lark.length && lark[j] !== c && lark[j] !== '\n') j += lark[j] === '\\' ? 2 : 1;
      out += lark.slice(i, j + 1);
      i = j + 1;
    } else if (/[A-Za-z_]/.test(c)) {
      let j = i;
      while (j < lark.length && /\w/.test(lark[j])) j++;
      const word = lark.slice(i, j);
      out += word === 'start' ? ANSWER : word;
      i = j;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

export interface HarmonyPiece {
  reasoning: string;
  content: string;
  calls: ToolCall[];
}

/** Splits one choice's output, token by token, into reasoning, content and tool calls. Text of
 *  the analysis channel streams as reasoning, of the final channel (and commentary without a
 *  recipient) as content; a call is released when its message ends. */
export class HarmonyParser {
  private state: 'header' | 'body' = 'header';
  private header = '';
  private body = '';
  /** Whether the output has had any harmony token yet (one that has none is plain content). */
  private structured = false;
  reasoning = '';
  content = '';
  readonly toolCalls: ToolCall[] = [];

  constructor(private readonly v: HarmonyVocab) {}

  /** One token of output: its id and its text (special tokens: ''). */
  push(id: number, text: string): HarmonyPiece {
    const out: HarmonyPiece = { reasoning: '', content: '', calls: [] };
    const v = this.v;
    const structural = id === v.start || id === v.message || id === v.end || id === v.call || id === v.return || id === v.channel || id === v.constrain;
    // Text a structural token releases was held back from the tokens before it (a stop string's
    // prefix, an unfinished character): it belongs where they were.
    if (structural && text) this.text(text, out);
    if (structural) this.structured = true;
    if (id === v.start) {
      this.close(out);
      this.state = 'header';
      this.header = '';
    } else if (id === v.message) {
      this.state = 'body';
      this.body = '';
    } else if (id === v.end || id === v.call || id === v.return) {
      this.close(out);
    } else if (id === v.channel || id === v.constrain) {
      if (this.state === 'header') this.header += id === v.channel ? '<|channel|>' : ' <|constrain|>';
    } else {
      this.text(text, out);
    }
    return out;
  }

  private text(text: string, out: HarmonyPiece): void {
    if (this.state === 'header') this.header += text;
    else this.route(text, out);
  }

  /** The end of the output (EOS is not part of it): an open message is closed. `complete`: the
   *  output ended on its EOS; a call cut short (max_tokens, a stop string, an abort) is no call,
   *  its text is kept as content. */
  end(complete = true): HarmonyPiece {
    const out: HarmonyPiece = { reasoning: '', content: '', calls: [] };
    if (!this.structured && this.header) {  // the model never used the format: all of it is the answer
      this.content += this.header;
      out.content += this.header;
      this.header = '';
    }
    this.close(out, complete);
    return out;
  }

  /** The channel and recipient of the message being read. */
  private target(): { channel: string; recipient?: string } {
    const channel = /<\|channel\|>\s*(\w+)/.exec(this.header)?.[1] ?? 'final';
    const recipient = /\bto=([^\s<]+)/.exec(this.header)?.[1];
    return { channel, recipient: recipient === 'assistant' ? undefined : recipient };
  }

  private route(text: string, out: HarmonyPiece): void {
    const r = this.target();
    if (r.recipient) this.body += text;  // a call's arguments: released whole
    else if (r.channel === 'analysis') { this.reasoning += text; out.reasoning += text; }
    else { this.content += text; out.content += text; }
  }

  private close(out: HarmonyPiece, complete = true): void {
    if (this.state === 'body') {
      const r = this.target();
      if (r.recipient?.startsWith('functions.') && complete) {
        const call: ToolCall = { id: newCallId(), type: 'function', function: { name: r.recipient.slice('functions.'.length), arguments: this.body.trim() } };
        this.toolCalls.push(call);
        out.calls.push(call);
      } else if (r.recipient) {  // a built-in tool (browser, python) dflash does not run: kept as text
        this.content += this.body;
        out.content += this.body;
      }
    }
    this.state = 'header';
    this.header = '';
    this.body = '';
  }
}
