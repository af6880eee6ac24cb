/**
 * @module One output stream of a tool run by runTool (run-tool.ts), kept
 * within a byte cap: its head for a tool whose answer is parsed (past the
 * cap the answer is incomplete, and the run fails), or its tail for a
 * long-running tool whose output is progress (the vLLM MoE tuner runs for
 * an hour; its last lines say why it failed). Complete lines can be handed
 * to the caller as they arrive.
 */
import { StringDecoder } from "node:string_decoder";

export type Keep = "head" | "tail";

export class ToolOutput {
  readonly #chunks: Buffer[] = [];
  /** Bytes held in #chunks. */
  #held = 0;
  #seen = 0;
  readonly #maxBytes: number;
  readonly #keep: Keep;
  readonly #onLine: ((line: string) => void) | undefined;
  readonly #decoder = new StringDecoder("utf8");
  #partial = "";

  constructor(maxBytes: number, keep: Keep, onLine?: (line: string) => void) {
    this.#maxBytes = maxBytes;
    this.#keep = keep;
    this.#onLine = onLine;
  }

  /** Takes a chunk; false once a "head" stream passed its cap (what it holds is not the whole answer). */
  add(chunk: Buffer): boolean {
    this.#seen += chunk.length;
    if (this.#onLine) this.#lines(this.#decoder.write(chunk));
    if (this.#keep === "tail") {
      this.#chunks.push(chunk);
      this.#held += chunk.length;
      while (this.#held - this.#chunks[0].length >= this.#maxBytes)
        this.#held -= this.#chunks.shift()?.length ?? 0;
      return true;
    }
    const room = this.#maxBytes - this.#held;
    if (room > 0) {
      const kept = chunk.length <= room ? chunk : chunk.subarray(0, room);
      this.#chunks.push(kept);
      this.#held += kept.length;
    }
    return this.#seen <= this.#maxBytes;
  }

  /** The stream ended: a last line without a newline is a line too. */
  end(): void {
    if (!this.#onLine) return;
    this.#lines(this.#decoder.end());
    if (this.#partial) this.#onLine(this.#partial);
    this.#partial = "";
  }

  text(): string {
    const all = Buffer.concat(this.#chunks);
    return (all.length > this.#maxBytes ? all.subarray(all.length - this.#maxBytes) : all).toString("utf8");
  }

  #lines(text: string): void {
    const parts = (this.#partial + text).split("\n");
    this.#partial = parts.pop() ?? "";
    for (const line of parts) this.#onLine?.(line);
  }
}
