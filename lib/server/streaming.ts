// Server-sent events of one request: the choices' token texts as chunks (each naming its choice
// with n > 1), interleaved as they come, then each choice's finish chunk, the usage chunk and
// [DONE]. Headers are committed with the first text, so an engine error before it (QUEUE_FULL, a
// rejected prompt) still becomes a proper HTTP status.
import type { ServerResponse } from 'http';

import type { FastifyReply } from 'fastify';

import type { DoneEvent, GenerationStream, TokenEvent } from '../stream';
import type { DflashExtension, FinishReason, ResponseShaper, Usage } from './openai';
import type { HarmonyParser } from '../harmony';
import type { ReasoningSplitter, Split } from './reasoning';
import type { ToolCall, ToolCallParser } from './tools';

/** A write to a response whose client has gone. */
export class ConnectionClosed extends Error {
  constructor(cause?: unknown) {
    super('the client closed the connection', { cause });
    this.name = 'ConnectionClosed';
  }
}

/** Whether the response's connection is gone or going: closed, or its socket destroyed with the
 *  'close' event still to come (Node emits it a loop turn later). */
export function connectionGone(raw: ServerResponse): boolean {
  return raw.destroyed || raw.socket?.destroyed === true;
}

/** Calls `gone` (once) when the connection closes before the response has finished, including
 *  when that happened before this call: a listener added after the 'close' event never runs. */
export function onClientGone(raw: ServerResponse, gone: () => void): void {
  let called = false;
  const check = () => {
    if (called || raw.writableFinished) return;
    called = true;
    gone();
  };
  raw.once('close', check);
  if (connectionGone(raw)) check();
}

/** Writes SSE chunks in order (sends from several choices never interleave within a chunk); the
 *  first write commits the response as a stream (status 200). A write rejects with
 *  ConnectionClosed once the connection is gone: @fastify/sse's send() alone can wait forever
 *  there (a write to a socket destroyed before its 'close' event returns false, and it then
 *  waits for a 'drain' or 'error' that never come; so does a write under backpressure when the
 *  client leaves), which would leave the request unfinished: never counted in the metrics, its
 *  admission slot never released. */
export class ChunkWriter {
  started = false;
  private chain: Promise<void> = Promise.resolve();
  /** Rejects once the response has closed (normally after the last write). */
  private readonly closed: Promise<never>;
  constructor(readonly reply: FastifyReply, private readonly shaper: ResponseShaper, private readonly n: number) {
    this.closed = new Promise<never>((_, reject) => {
      const raw = reply.raw;
      if (connectionGone(raw)) reject(new ConnectionClosed());
      else raw.once('close', () => reject(new ConnectionClosed()));
    });
    this.closed.catch(() => undefined);
  }

  write(chunk: object | string): Promise<void> {
    this.chain = this.chain.then(async () => {
      if (!this.started) {
        this.started = true;
        this.reply.hijack(); // from here on the SSE plugin owns the response; Fastify must not send it
        for (const c of this.shaper.opening(this.n)) await this.send({ data: c });
      }
      await this.send(typeof chunk === 'string' ? chunk : { data: chunk });
    });
    return this.chain;
  }

  private async send(message: string | { data: unknown }): Promise<void> {
    if (connectionGone(this.reply.raw) || !this.reply.sse.isConnected) throw new ConnectionClosed();
    try {
      await Promise.race([this.reply.sse.send(message), this.closed]);
    } catch (e) {
      throw e instanceof ConnectionClosed ? e : new ConnectionClosed(e);
    }
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
 *  through the parser: content chunks, and a delta.tool_calls chunk per completed call. With
 *  `reasoning` (a thinking model, one splitter per choice) the text is split first: reasoning
 *  chunks (delta.reasoning_content), then the content as above. With `harmony` (gpt-oss, one
 *  parser per choice) the tokens themselves say which channel a text is in. */
export async function sendStream(reply: FastifyReply, streams: GenerationStream[], shaper: ResponseShaper,
  logprobs: (index: number, tokens: TokenEvent[]) => unknown, clientGone: () => void, prefix = '',
  tools?: ToolCallParser[], reasoning?: ReasoningSplitter[], harmony?: HarmonyParser[]): Promise<StreamOutcome> {
  const out = new ChunkWriter(reply, shaper, streams.length);
  let failure: unknown;
  await Promise.all(streams.map(async (stream, index) => {
    let pending: TokenEvent[] = [];
    let first = true;
    const parser = tools?.[index];
    const channels = harmony?.[index];
    const callIndex = (call: ToolCall) => (channels ? channels.toolCalls : parser!.toolCalls).indexOf(call);
    // Content (with the logprobs of the tokens behind it) and then the calls it completed.
    const send = async (parsed: { content: string; calls: ToolCall[] }) => {
      if (parsed.content) {
        const lp = logprobs(index, pending);
        pending = [];
        await out.write(shaper.chunk(index, first ? prefix + parsed.content : parsed.content, lp));
        first = false;
      }
      for (const call of parsed.calls) await out.write(shaper.toolCall!(index, callIndex(call), call));
    };
    const splitter = reasoning?.[index];
    const answer = async (text: string) => {
      if (text) await send(parser ? parser.push(text) : { content: text, calls: [] });
    };
    const split = async (s: Split) => {
      if (s.reasoning) {
        const lp = logprobs(index, pending);
        pending = [];
        await out.write(shaper.reasoning!(index, s.reasoning, lp));
      }
      await answer(s.content);
    };
    try {
      for await (const t of stream) {
        if (t.id >= 0 && t.logprob !== undefined) pending.push(t);
        if (channels) {
          const piece = channels.push(t.id, t.text);
          await split({ reasoning: piece.reasoning, content: '' });
          await send(piece);
        } else if (t.text) await (splitter ? split(splitter.push(t.text)) : answer(t.text));
      }
      // A call whose message the EOS closed; one cut short stays text.
      if (channels) await send(channels.end((await stream.done().catch(() => undefined))?.reason === 'eos'));
      if (splitter) await split(splitter.end());  // what it held back as a possible tag
      if (parser) await send(parser.end());  // what it held back as a possible call's start
    } catch (e) {
      // Leaving the loop aborts this generation: either the connection closed under a write, or
      // the engine failed (then done() rejects too).
      if (e instanceof ConnectionClosed || connectionGone(reply.raw) || !reply.sse.isConnected) clientGone();
      else failure ??= e;
    }
    if (pending.length > 0) await out.write(shaper.chunk(index, '', logprobs(index, pending))).catch(() => undefined);
  }));
  const done = await Promise.all(streams.map((s) => s.done().catch(() => undefined)));
  return { done, streamed: out.started, failure, out };
}

/** Every choice's finish chunk, the usage chunk (stream_options.include_usage), [DONE]; then the
 *  response ends. Returns once it has, or once the client has gone. */
export async function finishStream(out: ChunkWriter, shaper: ResponseShaper, finishes: FinishReason[], ext: DflashExtension,
  u: Usage, includeUsage: boolean): Promise<void> {
  try {
    for (const [index, fr] of finishes.entries()) await out.write(shaper.closing(index, fr, ext));
    if (includeUsage) await out.write(shaper.usageChunk(u));
    await out.write('[DONE]');
  } catch {
    // the client left during the last chunks: nothing more to do
  }
  out.reply.sse.close();
}
