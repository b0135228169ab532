// Thinking models' output split into reasoning and answer, as vLLM's qwen3 / deepseek_r1 reasoning
// parsers return them (`reasoning_content` beside `content`). Qwen3's template lets the model open
// its thinking (`<think>` ... `</think>` then the answer); Qwen3.5's opens it in the prompt (the
// generation prompt ends with `<think>\n`), so the output is the reasoning up to `</think>`; with
// `enable_thinking: false` both templates close an empty block in the prompt and the output is all
// answer. A splitter sees the output in pieces (streaming) and holds back only what could still be
// the start of a tag.
const OPEN = '<think>', CLOSE = '</think>';

/** Whether a chat template writes thinking blocks (then the server splits the output). */
export function thinkingTemplate(template: string | undefined): boolean {
  return template !== undefined && template.includes(CLOSE);
}

/** Whether a rendered prompt leaves a thinking block open: the output starts inside it. */
export function thinkingOpen(prompt: string): boolean {
  return prompt.lastIndexOf(OPEN) > prompt.lastIndexOf(CLOSE);
}

export interface Split {
  reasoning: string;
  content: string;
}

export class ReasoningSplitter {
  private state: 'start' | 'reasoning' | 'content';
  private held = '';
  private contentStarted = false;
  reasoning = '';
  content = '';

  /** open: the prompt left a thinking block open (thinkingOpen). */
  constructor(open: boolean) {
    this.state = open ? 'reasoning' : 'start';
  }

  /** The next piece of output: what of it is now known to be reasoning and answer. */
  push(text: string): Split {
    const out: Split = { reasoning: '', content: '' };
    let buf = this.held + text;
    this.held = '';
    for (;;) {
      if (this.state === 'start') {
        const s = buf.trimStart();
        if (s.startsWith(OPEN)) {
          this.state = 'reasoning';
          buf = s.slice(OPEN.length);
          continue;
        }
        if (OPEN.startsWith(s)) {  // whitespace, or a prefix of <think>: not decided yet
          this.held = buf;
          break;
        }
        this.state = 'content';
        continue;
      }
      if (this.state === 'reasoning') {
        const end = buf.indexOf(CLOSE);
        if (end >= 0) {
          out.reasoning += buf.slice(0, end);
          buf = buf.slice(end + CLOSE.length);
          this.state = 'content';
          continue;
        }
        const keep = partialTag(buf, CLOSE);
        out.reasoning += buf.slice(0, buf.length - keep);
        this.held = buf.slice(buf.length - keep);
        break;
      }
      // The answer, without the blank lines the template puts after </think>.
      if (!this.contentStarted) {
        buf = buf.replace(/^\s+/, '');
        if (!buf) break;
        this.contentStarted = true;
      }
      out.content += buf;
      break;
    }
    this.reasoning += out.reasoning;
    this.content += out.content;
    return out;
  }

  /** The end of the output: what was held back goes where it stands. */
  end(): Split {
    const rest = this.held;
    this.held = '';
    const out: Split = this.state === 'reasoning' ? { reasoning: rest, content: '' } : { reasoning: '', content: this.contentStarted ? rest : rest.trimStart() };
    this.reasoning += out.reasoning;
    this.content += out.content;
    return out;
  }
}

// The length of the longest suffix of s that is a proper prefix of tag.
function partialTag(s: string, tag: string): number {
  for (let n = Math.min(s.length, tag.length - 1); n > 0; n--) if (tag.startsWith(s.slice(s.length - n))) return n;
  return 0;
}
