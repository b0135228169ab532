// Server-sent events of one request: the choices' token texts as chunks (each naming its choice
// with n > 1), interleaved as they come, then each choice's finish chunk, the usage chunk and
// [DONE]. Headers are committed with the first text, so an engine error before it (QUEUE_FULL, a
// rejected prompt) still becomes a proper HTTP status.
import type { FastifyReply } from 'fastify';

import type { DoneEvent, GenerationStream, TokenEvent } from '../stream';
import type { DflashExtension, FinishReason, ResponseShaper, Usage } from './openai';
import type { ToolCall, ToolCallParser } from './tools';

/** Writes SSE chunks in order (sends from several choices never interleave within a chunk); the
 *  first write commits the response as a stream (status 200). */
export class ChunkWriter {
  started = false;
  private chain: Promise<void> = Promise.resolve();
  constructor(private readonly reply: FastifyReply, private readonly shaper: ResponseShaper, private readonly n: number) {}

  write(chunk: object | string): Promise<void> {
    this.chain = this.chain.then(async () => {
      if (!this.started) {
        this.started = true;
        this.reply.hijack(); // from here on the SSE plugin owns the response; Fastify must not send it
        for (const c of this.shaper.opening(this.n)) await this.reply.sse.send({ data: c });
      }
      await this.reply.sse.send(typeof chunk === 'string' ? chunk : { data: chunk });
    });
    return this.chain;
  }
}

export interface StreamOutcome {
  /** Per choice: its done event, or undefined when it failed or was aborted. */
  done: Array<DoneEvent | undefined>;
  streamed: boolean;
  failure?: unknown;
  out: ChunkWriter;
}

/** Streams every choice's token texts as chunks. `logprobs(index, tokens)` turns the tokens behind
 *  a chunk into its logprobs object (null when the request asked for none); a token whose text is
 *  held back (a stop-string prefix, a partial UTF-8 character) has its entry sent with the next
 *  chunk of its choice. With `tools` (chat with tools, one parser per choice) the text goes
 *  through the parser: content chunks, and a delta.tool_calls chunk per completed call. */
export async function sendStream(reply: FastifyReply, streams: GenerationStream[], shaper: ResponseShaper,
  logprobs: (index: number, tokens: TokenEvent[]) => unknown, clientGone: () => void, prefix = '',
  tools?: ToolCallParser[]): Promise<StreamOutcome> {
  const out = new ChunkWriter(reply, shaper, streams.length);
  let failure: unknown;
  await Promise.all(streams.map(async (stream, index) => {
    let pending: TokenEvent[] = [];
    let first = true;
    const parser = tools?.[index];
    // Content (with the logprobs of the tokens behind it) and then the calls it completed.
    const send = async (parsed: { content: string; calls: ToolCall[] }) => {
      if (parsed.content) {
        const lp = logprobs(index, pending);
        pending = [];
        await out.write(shaper.chunk(index, first ? prefix + parsed.content : parsed.content, lp));
        first = false;
      }
      for (const call of parsed.calls) await out.write(shaper.toolCall!(index, parser!.toolCalls.indexOf(call), call));
    };
    try {
      for await (const t of stream) {
        if (t.id >= 0 && t.logprob !== undefined) pending.push(t);
        if (t.text) await send(parser ? parser.push(t.text) : { content: t.text, calls: [] });
      }
      if (parser) await send(parser.end());  // what it held back as a possible call's start
    } catch (e) {
      // Leaving the loop aborts this generation: either the connection closed under a write, or
      // the engine failed (then done() rejects too).
      failure ??= e;
      if (!reply.sse.isConnected) clientGone();
    }
    if (pending.length > 0) await out.write(shaper.chunk(index, '', logprobs(index, pending))).catch(() => undefined);
  }));
  const done = await Promise.all(streams.map((s) => s.done().catch(() => undefined)));
  return { done, streamed: out.started, failure, out };
}

/** Every choice's finish chunk, the usage chunk (stream_options.include_usage), [DONE]. */
export async function finishStream(reply: FastifyReply, shaper: ResponseShaper, finishes: FinishReason[], ext: DflashExtension,
  u: Usage, includeUsage: boolean): Promise<void> {
  if (!reply.sse.isConnected) return;
  try {
    for (const [index, fr] of finishes.entries()) await reply.sse.send({ data: shaper.closing(index, fr, ext) });
    if (includeUsage) await reply.sse.send({ data: shaper.usageChunk(u) });
    await reply.sse.send('[DONE]');
  } catch {
    // the client left during the last chunks: nothing more to do
  }
  reply.sse.close();
}
