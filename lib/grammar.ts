// generate()'s `grammar` option: structured output. The grammar engine (llguidance, linked into
// the addon: native/grammar/grammar.h) constrains every token the target commits, drafted or
// not, so output follows the grammar and speculative output equals plain constrained output.
import { describeValue } from './request';

/** What the output must match; exactly one key. */
export type Grammar =
  /** A JSON Schema (object or its JSON text): the output is one JSON value valid against it. */
  | { jsonSchema: object | string }
  /** Any JSON object (OpenAI's `json_object`). */
  | { json: true }
  /** A regular expression (Rust regex syntax) the whole output matches. */
  | { regex: string }
  /** A Lark grammar in llguidance's dialect (`start:` rule; `%json { schema }` embeds a schema). */
  | { lark: string };

/** The native form: llguidance's constraint kind and its text. */
export interface GrammarSpec {
  kind: 'json_schema' | 'json_object' | 'regex' | 'lark';
  text: string;
}

const KEYS = ['jsonSchema', 'json', 'regex', 'lark'] as const;

/** Checks generate()'s `grammar` option; TypeError naming what is wrong. */
export function grammarSpec(g: unknown): GrammarSpec | undefined {
  if (g === undefined) return undefined;
  const where = "generate: option 'grammar'";
  if (g === null || typeof g !== 'object' || Array.isArray(g))
    throw new TypeError(`${where} must be one of { jsonSchema }, { json: true }, { regex }, { lark }, got ${describeValue(g)}`);
  const keys = Object.keys(g);
  if (keys.length !== 1 || !(KEYS as readonly string[]).includes(keys[0]))
    throw new TypeError(`${where} must have exactly one of the keys ${KEYS.join(', ')}, got ${describeValue(g)}`);
  const o = g as Record<string, unknown>;
  if ('jsonSchema' in o) {
    let s = o.jsonSchema;
    if (typeof s === 'string') {
      try {
        s = JSON.parse(s);
      } catch (e) {
        throw new TypeError(`${where}: jsonSchema is not JSON: ${(e as Error).message}`);
      }
    }
    if (s === null || typeof s !== 'object' || Array.isArray(s))
      throw new TypeError(`${where}: jsonSchema must be a JSON Schema object (or its JSON text), got ${describeValue(s)}`);
    return { kind: 'json_schema', text: JSON.stringify(compact(s as Record<string, unknown>)) };
  }
  if ('json' in o) {
    if (o.json !== true) throw new TypeError(`${where}: json must be true, got ${describeValue(o.json)}`);
    return { kind: 'json_schema', text: JSON.stringify(compact({ type: 'object' })) };
  }
  const kind = 'regex' in o ? 'regex' : 'lark';
  const text = o[kind];
  if (typeof text !== 'string' || !text) throw new TypeError(`${where}: ${kind} must be a non-empty string, got ${describeValue(text)}`);
  return { kind, text };
}

/** JSON as OpenAI's structured output writes it: ", " and ": " between items, no free
 *  whitespace (llguidance's default allows any, and a small model can then spend its tokens on
 *  blank lines). A schema's own "x-guidance" options win. */
function compact(schema: Record<string, unknown>): Record<string, unknown> {
  return 'x-guidance' in schema ? schema : { ...schema, 'x-guidance': { whitespace_flexible: false } };
}
