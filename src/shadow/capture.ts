import type { CapturedResponse } from './compare.js';

/**
 * Keeps a copy of a response as it streams to the client (status, the headers shadow compares,
 * the body up to `max` bytes) so it can be compared afterwards. Chunks are copied because the
 * transport may reuse the memory behind them.
 */
export class ResponseCapture {
  status = 0;
  readonly headers: Record<string, string> = {};
  private readonly chunks: Buffer[] = [];
  private size = 0;
  truncated = false;

  constructor(
    private readonly max: number,
    private readonly names: readonly string[],
  ) {}

  /** `flat` is [name, value, ...] as sent to the client. */
  onHeaders(status: number, flat: readonly string[]): void {
    this.status = status;
    for (let i = 0; i < flat.length; i += 2) {
      const name = (flat[i] as string).toLowerCase();
      // content-encoding: shadow decodes the body before comparing (see decode.ts).
      if (name !== 'content-type' && name !== 'content-encoding' && !this.names.includes(name)) continue;
      // Repeated lines combine as undici combines them for the mirrored side (RFC 9110 5.3).
      const prev = this.headers[name];
      this.headers[name] = prev === undefined ? (flat[i + 1] as string) : `${prev}, ${flat[i + 1] as string}`;
    }
  }

  onData(chunk: Buffer): void {
    if (this.truncated) return;
    this.size += chunk.length;
    if (this.size > this.max) {
      this.truncated = true;
      this.chunks.length = 0;
      return;
    }
    this.chunks.push(Buffer.from(chunk));
  }

  response(): CapturedResponse {
    return { status: this.status, headers: this.headers, body: Buffer.concat(this.chunks), truncated: this.truncated };
  }
}
