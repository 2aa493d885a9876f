/** Something that holds data to write out later (a batch of log lines, of observations). */
export interface Holder {
  flush(): void;
}

const holding = new Set<Holder>();
let hooked = false;

/** `h` holds data now: if the process exits before `release(h)`, `h.flush()` runs on the way out. */
export function hold(h: Holder): void {
  holding.add(h);
  if (hooked) return;
  hooked = true;
  process.once('exit', () => {
    for (const x of holding) x.flush();
  });
}

/** `h` holds nothing any more. */
export function release(h: Holder): void {
  holding.delete(h);
}
