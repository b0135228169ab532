// Structured output parameters of a request as one generate() grammar: OpenAI's response_format
// (json_schema, json_object), vLLM's guided_json / guided_regex / guided_grammar / guided_choice
// and its newer structured_outputs object, and the grammar of a required or named tool call.
// More than one constraint in a request is a 400 naming both.
import type { Grammar } from '../grammar';
import { badRequest } from './openai';
import { toolGrammar, ToolPlan } from './tools';

export interface StructuredOutput {
  grammar?: Grammar;
  /** The parameter the grammar came from: an invalid grammar is a 400 naming it. */
  param?: string;
}

const escapeRegex = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** A JSON schema given as an object or its JSON text. */
function schemaOf(v: unknown, param: string): object {
  if (typeof v === 'string') {
    try {
      v = JSON.parse(v);
    } catch (e) {
      throw badRequest(`'${param}' is not valid JSON: ${(e as Error).message}.`, param);
    }
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw badRequest(`'${param}' must be a JSON Schema object.`, param);
  return v as object;
}

function choiceRegex(v: unknown, param: string): Grammar {
  if (!Array.isArray(v) || v.length === 0 || !v.every((c) => typeof c === 'string'))
    throw badRequest(`'${param}' must be a non-empty array of strings.`, param);
  return { regex: (v as string[]).map(escapeRegex).join('|') };
}

/** Every constraint the body asks for, as [param, grammar]. */
function constraints(body: Record<string, unknown>, tools: ToolPlan | undefined): Array<[string, Grammar]> {
  const found: Array<[string, Grammar]> = [];
  const set = (k: string) => body[k] !== undefined && body[k] !== null;
  if (set('response_format')) {
    const rf = body.response_format as { type?: string; json_schema?: { name?: string; schema?: unknown; strict?: boolean } };
    if (rf.type === 'json_object') found.push(['response_format', { json: true }]);
    else if (rf.type === 'json_schema') {
      if (!rf.json_schema || typeof rf.json_schema !== 'object')
        throw badRequest("'response_format.json_schema' is required with type 'json_schema'.", 'response_format.json_schema');
      found.push(['response_format.json_schema.schema', { jsonSchema: rf.json_schema.schema === undefined ? {} : schemaOf(rf.json_schema.schema, 'response_format.json_schema.schema') }]);
    } else if (rf.type !== 'text') {
      throw badRequest(`'response_format.type' must be 'text', 'json_object' or 'json_schema', got '${rf.type}'.`, 'response_format.type');
    }
  }
  if (set('guided_json')) found.push(['guided_json', { jsonSchema: schemaOf(body.guided_json, 'guided_json') }]);
  if (set('guided_regex')) found.push(['guided_regex', { regex: String(body.guided_regex) }]);
  if (set('guided_grammar')) found.push(['guided_grammar', { lark: String(body.guided_grammar) }]);
  if (set('guided_choice')) found.push(['guided_choice', choiceRegex(body.guided_choice, 'guided_choice')]);
  if (set('structured_outputs')) {
    const so = body.structured_outputs as Record<string, unknown>;
    const keys = ['json', 'regex', 'grammar', 'choice', 'json_object'].filter((k) => so[k] !== undefined && so[k] !== null && so[k] !== false);
    if (keys.length !== 1) throw badRequest(`'structured_outputs' must set exactly one of json, regex, grammar, choice, json_object; got ${keys.join(', ') || 'none'}.`, 'structured_outputs');
    const k = keys[0], p = `structured_outputs.${k}`;
    found.push([p, k === 'json' ? { jsonSchema: schemaOf(so.json, p) } : k === 'regex' ? { regex: String(so.regex) }
      : k === 'grammar' ? { lark: String(so.grammar) } : k === 'choice' ? choiceRegex(so.choice, p) : { json: true }]);
  }
  const tool = tools && toolGrammar(tools);
  if (tool) found.push(['tool_choice', tool]);
  return found;
}

export function structuredOutput(body: Record<string, unknown>, tools?: ToolPlan): StructuredOutput {
  const found = constraints(body, tools);
  if (found.length > 1)
    throw badRequest(`Only one output constraint per request: got ${found.map(([p]) => `'${p}'`).join(' and ')}.`, found[1][0]);
  return found.length ? { grammar: found[0][1], param: found[0][0] } : {};
}
