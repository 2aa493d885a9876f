import type { ServerResponse } from 'node:http';
import type { Attempt } from './forward.js';

// The callbacks an Attempt hands to timers, nextTick and its response's 'drain' event: module
// functions that take the attempt as their argument (or `this`), so no request allocates a
// closure for them.

export const kStreaming = Symbol('cutover.streaming');
/** A response an attempt streams into; it listens for 'drain' from its first backpressure on. */
export type TrackedResponse = ServerResponse & { [kStreaming]?: Attempt | undefined };

/**
 * Node runs due timers before it polls sockets. After the event loop stalled (GC, a burst of
 * work), a timer can fire while the answer already sits unread in the upstream socket: look once
 * more after this turn's I/O before calling it a timeout, rather than discard that answer, fall
 * back and blame the upstream. Costs one loop turn on a real timeout. Meanwhile an expired
 * attempt still queued in the pool is never sent (onConnect).
 */
export function onAttemptTimeout(attempt: Attempt): void {
  attempt.expire();
}

export function confirmAttemptTimeout(attempt: Attempt): void {
  attempt.timedOut();
}

export function releaseHeld(attempt: Attempt): void {
  attempt.sendHeld();
}

export function resumeOnDrain(this: TrackedResponse): void {
  this[kStreaming]?.resume();
}
