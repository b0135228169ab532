// OpenAI's logprobs shapes from the engine's (lib/stream.ts TokenLogprob): chat's
// `{ content: [{ token, logprob, bytes, top_logprobs: [{ token, logprob, bytes }] }] }` and the
// legacy completions' `{ tokens, token_logprobs, top_logprobs: [{ token: logprob }], text_offset }`
// (with echo: the prompt's tokens first, the first of them null). A token's text is its own
// decoding (special tokens kept), and `bytes` its UTF-8 bytes, as vLLM reports them.
import type { PromptLogprob, TokenLogprob } from '../stream';
import type { Tokenizer } from '../tokenizer';

export type Logprobbed = TokenLogprob & { top: TokenLogprob[] };

export interface ChatLogprob {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: Array<{ token: string; logprob: number; bytes: number[] }>;
}

export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: Array<number | null>;
  top_logprobs: Array<Record<string, number> | null>;
  text_offset: number[];
}

/** Token texts, decoded once per id. */
export class TokenTexts {
  private readonly cache = new Map<number, string>();
  constructor(private readonly tokenizer: Tokenizer) {}
  text(id: number): string {
    let t = this.cache.get(id);
    if (t === undefined) {
      t = this.tokenizer.decode([id], { skipSpecialTokens: false });
      this.cache.set(id, t);
    }
    return t;
  }
}

const bytes = (s: string) => Array.from(Buffer.from(s, 'utf8'));

export function chatLogprobs(texts: TokenTexts, tokens: Logprobbed[]): ChatLogprob[] {
  return tokens.map((t) => {
    const token = texts.text(t.id);
    return {
      token, logprob: t.logprob, bytes: bytes(token),
      top_logprobs: t.top.map((a) => {
        const s = texts.text(a.id);
        return { token: s, logprob: a.logprob, bytes: bytes(s) };
      }),
    };
  });
}

/** Legacy completions logprobs of `tokens`, their text offsets counted from `offset`. With `prompt`
 *  (echo), the prompt's tokens come first (its first token has no log-probability: null). */
export function completionLogprobs(texts: TokenTexts, tokens: Logprobbed[], top: number, prompt?: Array<PromptLogprob | null>,
  promptIds?: number[]): CompletionLogprobs {
  const out: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  let offset = 0;
  const push = (id: number, lp: number | null, alternatives: TokenLogprob[] | null) => {
    const token = texts.text(id);
    out.tokens.push(token);
    out.token_logprobs.push(lp);
    out.top_logprobs.push(alternatives === null ? null : Object.fromEntries(alternatives.slice(0, top).map((a) => [texts.text(a.id), a.logprob])));
    out.text_offset.push(offset);
    offset += token.length;
  };
  if (prompt && promptIds)
    promptIds.forEach((id, i) => {
      const p = prompt[i];
      push(id, p ? p.logprob : null, p ? p.top : null);
    });
  for (const t of tokens) push(t.id, t.logprob, t.top);
  return out;
}
