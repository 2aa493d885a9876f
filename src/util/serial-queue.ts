/**
 * Runs async jobs one at a time, in the order they were queued. A failed job rejects its own
 * promise only; the queue goes on. Used where read-modify-write sequences must not interleave
 * (flag changes, rollout steps).
 */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(job: () => Promise<T>): Promise<T> {
    const result = this.tail.then(job, job);
    this.tail = result.catch(() => undefined);
    return result;
  }

  /** Resolves when every job queued so far has settled. */
  idle(): Promise<void> {
    return this.tail.then(() => undefined);
  }
}
