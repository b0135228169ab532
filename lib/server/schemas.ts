// JSON schemas of the OpenAI request bodies this server accepts, validated by Fastify (Ajv)
// before a handler runs, plus the TypeScript shapes they describe. Ranges follow the OpenAI API
// (temperature 0..2, top_p in (0, 1], at most 4 stop strings); `n` up to 16 choices (each its own
// engine sequence, sharing the prompt's pages through the prefix cache). Fields this server does not know are ignored (as vLLM
// does), so clients that send `user`, `store`, `metadata` ... keep working; fields it knows but
// cannot honour are rejected in openai.ts (unsupportedParameter), not silently dropped.

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const nullable = (schema: Record<string, unknown>) => ({ anyOf: [schema, { type: 'null' }] });

/** Sampling and length fields shared by both endpoints. */
const samplingProperties = {
  model: { type: 'string', minLength: 1 },
  max_tokens: nullable({ type: 'integer', minimum: 1 }),
  temperature: nullable({ type: 'number', minimum: 0, maximum: 2 }),
  top_p: nullable({ type: 'number', exclusiveMinimum: 0, maximum: 1 }),
  // vLLM's extension; -1 and 0 both mean "no top-k".
  top_k: nullable({ type: 'integer', minimum: -1 }),
  seed: nullable({ type: 'integer', minimum: 0, maximum: MAX_SAFE }),
  stop: nullable({ anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' }, maxItems: 4 }] }),
  n: nullable({ type: 'integer', minimum: 1, maximum: 16 }),
  stream: nullable({ type: 'boolean' }),
  stream_options: nullable({ type: 'object', properties: { include_usage: nullable({ type: 'boolean' }) } }),
  presence_penalty: nullable({ type: 'number', minimum: -2, maximum: 2 }),
  frequency_penalty: nullable({ type: 'number', minimum: -2, maximum: 2 }),
  // Structured output, vLLM's extensions (lib/server/structured.ts).
  guided_json: nullable({ anyOf: [{ type: 'object' }, { type: 'string' }] }),
  guided_regex: nullable({ type: 'string', minLength: 1 }),
  guided_grammar: nullable({ type: 'string', minLength: 1 }),
  guided_choice: nullable({ type: 'array', minItems: 1, items: { type: 'string' } }),
  structured_outputs: nullable({ type: 'object' }),
  // dflash's own request extension: per-request speculative decoding control.
  dflash: {
    type: 'object',
    additionalProperties: false,
    properties: {
      speculative: { type: 'boolean' },
      block_size: { type: 'integer', minimum: 2 },
    },
  },
} as const;

const textPart = {
  type: 'object',
  required: ['type'],
  properties: { type: { type: 'string' }, text: { type: 'string' } },
} as const;

const toolDefinition = {
  type: 'object',
  required: ['type', 'function'],
  properties: {
    type: { const: 'function' },
    function: {
      type: 'object',
      required: ['name'],
      properties: { name: { type: 'string', pattern: '^[a-zA-Z0-9_-]{1,64}$' }, description: { type: 'string' }, parameters: { type: 'object' }, strict: nullable({ type: 'boolean' }) },
    },
  },
} as const;

const toolCall = {
  type: 'object',
  required: ['function'],
  properties: {
    id: { type: 'string' },
    type: { const: 'function' },
    function: { type: 'object', required: ['name', 'arguments'], properties: { name: { type: 'string' }, arguments: { type: 'string' } } },
  },
} as const;

export const chatCompletionBodySchema = {
  type: 'object',
  required: ['model', 'messages'],
  properties: {
    ...samplingProperties,
    max_completion_tokens: nullable({ type: 'integer', minimum: 1 }),
    messages: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        required: ['role'],
        properties: {
          role: { type: 'string', enum: ['system', 'developer', 'user', 'assistant', 'tool'] },
          content: nullable({ anyOf: [{ type: 'string' }, { type: 'array', items: textPart }] }),
          name: { type: 'string' },
          tool_calls: nullable({ type: 'array', items: toolCall }),
          tool_call_id: { type: 'string' },
          // An earlier answer's reasoning, sent back (harmony keeps it before pending calls).
          reasoning_content: nullable({ type: 'string' }),
        },
      },
    },
    logprobs: nullable({ type: 'boolean' }),
    top_logprobs: nullable({ type: 'integer', minimum: 0, maximum: 20 }),
    response_format: nullable({
      type: 'object',
      required: ['type'],
      properties: {
        type: { type: 'string' },
        json_schema: { type: 'object', properties: { name: { type: 'string' }, schema: { anyOf: [{ type: 'object' }, { type: 'string' }, { type: 'boolean' }] }, strict: nullable({ type: 'boolean' }) } },
      },
    }),
    tools: nullable({ type: 'array', items: toolDefinition }),
    tool_choice: nullable({
      anyOf: [
        { type: 'string', enum: ['none', 'auto', 'required'] },
        { type: 'object', required: ['type', 'function'], properties: { type: { const: 'function' }, function: { type: 'object', required: ['name'], properties: { name: { type: 'string' } } } } },
      ],
    }),
    parallel_tool_calls: nullable({ type: 'boolean' }),
    // vLLM's extension: more variables for the chat template (Qwen3 / Qwen3.5: { enable_thinking: false }).
    chat_template_kwargs: nullable({ type: 'object' }),
    // OpenAI's reasoning effort: gpt-oss's harmony system message ("Reasoning: high").
    reasoning_effort: nullable({ type: 'string', enum: ['low', 'medium', 'high'] }),
  },
} as const;

export const completionBodySchema = {
  type: 'object',
  required: ['model', 'prompt'],
  properties: {
    ...samplingProperties,
    // A string, token ids, or a one-element list of either (what clients send for a single prompt).
    prompt: {
      anyOf: [
        { type: 'string' },
        { type: 'array', minItems: 1, items: { type: 'integer', minimum: 0 } },
        { type: 'array', minItems: 1, items: { type: 'string' } },
        { type: 'array', minItems: 1, items: { type: 'array', minItems: 1, items: { type: 'integer', minimum: 0 } } },
      ],
    },
    // 0 with echo: the prompt's log-probabilities only (lm-evaluation-harness' loglikelihood).
    max_tokens: nullable({ type: 'integer', minimum: 0 }),
    echo: nullable({ type: 'boolean' }),
    best_of: nullable({ type: 'integer', minimum: 1, maximum: 16 }),
    logprobs: nullable({ type: 'integer', minimum: 0, maximum: 5 }),
    suffix: nullable({ type: 'string' }),
  },
} as const;

export type ContentPart = { type: string; text?: string };

export interface ChatMessageBody {
  role: 'system' | 'developer' | 'user' | 'assistant' | 'tool';
  content?: string | ContentPart[] | null;
  name?: string;
  tool_calls?: Array<{ id?: string; type?: 'function'; function: { name: string; arguments: string } }> | null;
  tool_call_id?: string;
  reasoning_content?: string | null;
}

interface SamplingBody {
  model: string;
  max_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  seed?: number | null;
  stop?: string | string[] | null;
  n?: number | null;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean | null } | null;
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
  dflash?: { speculative?: boolean; block_size?: number };
  [other: string]: unknown;
}

export interface ChatCompletionBody extends SamplingBody {
  messages: ChatMessageBody[];
  max_completion_tokens?: number | null;
  logprobs?: boolean | null;
  top_logprobs?: number | null;
  response_format?: { type: string; json_schema?: { name?: string; schema?: unknown; strict?: boolean | null } } | null;
  tools?: Array<{ type: 'function'; function: { name: string; description?: string; parameters?: Record<string, unknown> } }> | null;
  tool_choice?: 'none' | 'auto' | 'required' | { type: 'function'; function: { name: string } } | null;
  parallel_tool_calls?: boolean | null;
  chat_template_kwargs?: Record<string, unknown> | null;
  reasoning_effort?: 'low' | 'medium' | 'high' | null;
}

export interface CompletionBody extends SamplingBody {
  prompt: string | number[] | string[] | number[][];
  echo?: boolean | null;
  best_of?: number | null;
  logprobs?: number | null;
  suffix?: string | null;
}
