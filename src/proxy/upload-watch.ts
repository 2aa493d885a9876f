import type { IncomingMessage } from 'node:http';

/**
 * The client's body a timed attempt streams to its upstream. While undici is still writing it, a
 * fired route timer is the client's time, not the upstream's (Attempt.expire looks again later,
 * and onRequestSent restarts the timer). But a client that stops sending and stays connected would
 * hold the attempt and one upstream connection for as long as the listener lets it (no
 * requestTimeout: forever), and undici's own headersTimeout does not fire while it is still
 * writing to a socket that takes more. So each time the timer fires mid-upload, this says whether
 * the client has sent nothing for the upstream's headersTimeout. An upload undici paused (the
 * upstream is not reading) is the upstream's to time out, so it never counts as stalled.
 */
export class UploadWatch {
  private read = -1;
  private idleSince = 0;

  constructor(private readonly body: IncomingMessage) {}

  stalledFor(limitMs: number): boolean {
    const read = this.body.socket?.bytesRead ?? -1;
    const now = performance.now();
    if (read !== this.read || this.body.isPaused()) {
      this.read = read;
      this.idleSince = now;
      return false;
    }
    return limitMs > 0 && now - this.idleSince >= limitMs;
  }
}
