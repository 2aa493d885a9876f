import type { Logger } from '../observability/logger.js';
import { changedRouting, NEW_FLAG, ROUTING_FIELDS, type FlagView } from './model.js';
import { fleetViewOf, type ExternalChange, type ExternalFlags, type OwnChange, type OwnChanges, type RoutingField } from './fleet.js';
import type { FleetHost } from './fleet-store.js';
import { actorLabel, type Actor, type FlagChange, type FlagPersistence } from './persistence.js';

/** The source's state as a change of ours read it just before its calls, and how many lines the flag had then. */
export interface Reading {
  state: FlagView | undefined;
  mark: number;
}

/**
 * Fleet mode's audit lines for routing changes, as one chain per flag: each line starts where the
 * flag's previous line left it (`head`), so operators can read the log as the flag's history.
 * Lines are written as changes are answered or polled, which is not always the order they took
 * effect in the source: a rollback does not wait for a change under way. So
 * - a line changes only its own fields (the ones its change set, or its poll moved), the others
 *   are carried over from the previous line;
 * - what a change's read found in the source that the log does not have yet (a change under way
 *   that reached it first, or one made in Unleash not polled yet) gets its own line first, owned by
 *   the change under way if it is all of it;
 * - a line that would change nothing is not written (a rollback of a flag already off, the poll's
 *   report of a change already audited, say after a `504 not_seen_here`).
 * All of it runs in the store's queue, in order with the local files' lines.
 */
export class FleetAudit {
  /** Per flag, the routing state its last line left it in (undefined: no toggle). */
  private readonly head = new Map<string, FlagView | undefined>();
  /** Per flag, lines written so far: a reading taken before the last of them is out of date. */
  private readonly counts = new Map<string, number>();

  constructor(
    private readonly external: ExternalFlags,
    private readonly host: FleetHost,
    private readonly own: OwnChanges,
    private readonly logger: Logger,
    private readonly persistence?: FlagPersistence,
  ) {}

  /** Once the source has started: each flag's history starts from the state it starts with. */
  start(): void {
    for (const name of this.external.names()) this.head.set(name, this.external.view(name));
  }

  /** Call from the `observe` of a change's read (synchronous: counts lines written so far). */
  reading(name: string, state: FlagView | undefined): Reading {
    return { state, mark: this.counts.get(name) ?? 0 };
  }

  /**
   * The line of a change of ours that is live in the source: `live` its routing fields as they
   * are there (all of them when it created the toggle), `read` where it started from. Fields of
   * it audited already on a gap line are not repeated; ones undone since go back to `read`.
   * Returns '' or what the caller must hear about a line not written.
   */
  ownLine(name: string, mine: OwnChange, read: Reading | undefined, fallback: FlagView | undefined, live: Partial<FlagView>, actor: Actor): Promise<string> {
    return this.host.queue.run(async () => {
      let told = '';
      let head = this.headOf(name, fallback);
      if (read !== undefined && read.mark === (this.counts.get(name) ?? 0) && changedRouting(head, read.state).length > 0) {
        told = await this.gap(name, head, read.state, mine);
        head = read.state;
      }
      // A field live as a gap line had it is that line's; one that line had but is not live was undone.
      const values: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(live)) if (!(k in mine.audited) || JSON.stringify(mine.audited[k as RoutingField]) !== JSON.stringify(v)) values[k] = v;
      for (const k of Object.keys(mine.audited)) if (!(k in live)) values[k] = read?.state?.[k as RoutingField];
      const after = head === undefined ? ({ name, ...NEW_FLAG, ...this.external.view(name), ...values } as FlagView) : this.carried(head, this.external.view(name) ?? head, values);
      if (changedRouting(head, after).length === 0) return told;
      return told + (await this.line(name, head, after, actor));
    });
  }

  /** Changes the source polled: audited in order, without what changes under way from here set (their own lines have it). */
  polled(changes: ExternalChange[]): void {
    const ours = changes.filter((c) => this.host.uses(c.name));
    const others = changes.filter((c) => !this.host.uses(c.name));
    const owned = ours.map((c) => this.own.ownedFields(c));
    void this.host.queue.run(async () => {
      // Not cutover's, so no line: its first one, if a route comes to use it, starts from here.
      for (const c of others) this.head.set(c.name, c.after);
      for (const [i, c] of ours.entries()) {
        const head = this.headOf(c.name, c.before);
        const mine = new Set<string>(owned[i]);
        const values = Object.fromEntries(changedRouting(c.before, c.after).filter((k) => !mine.has(k)).map((k) => [k, c.after?.[k]]));
        const after = c.after === undefined || head === undefined ? (mine.size > 0 ? head : c.after) : this.carried(head, c.after, values);
        if (after === undefined ? head === undefined : head !== undefined && changedRouting(head, after).length === 0) continue;
        const change: FlagChange = { name: c.name, before: head, after, actor: { source: this.external.kind }, time: new Date().toISOString() };
        this.advance(c.name, after);
        await this.persistence?.audit(change).catch((err: Error) => this.logger.error({ err: err.message }, 'cannot write the audit log'));
        this.logger.info({ flag: c.name, source: change.actor.source, before: head, after }, after ? 'flag changed' : 'flag removed');
        this.host.emitChange(change);
      }
    });
  }

  /**
   * What a change's read found that the log lacks: a change under way from here that reached the
   * source first (its line, now: it took effect before this one), else one made elsewhere.
   */
  private gap(name: string, head: FlagView | undefined, found: FlagView | undefined, reader: OwnChange): Promise<string> {
    const owner = this.own.ownerOf({ name, before: head, after: found }, reader);
    if (owner !== undefined) for (const k of changedRouting(head, found)) owner.audited[k] = found?.[k];
    const kind = this.external.kind;
    const actor: Actor = owner
      ? { ...owner.actor, reason: `${owner.actor.reason ?? `applied in ${kind}`}; live in ${kind} before the change by ${actorLabel(reader.actor)} that arrived during it` }
      : { source: kind, reason: `found in ${kind} by the change of ${actorLabel(reader.actor)} before this replica polled it` };
    return this.line(name, head, found, actor);
  }

  /** `seen` (for what the source says of the toggle) with the routing fields of `head`, but for `values`. */
  private carried(head: FlagView, seen: FlagView, values: Record<string, unknown>): FlagView {
    const out: Record<string, unknown> = { ...seen };
    for (const k of ROUTING_FIELDS) out[k] = k in values ? values[k] : head[k];
    return out as unknown as FlagView;
  }

  private headOf(name: string, fallback: FlagView | undefined): FlagView | undefined {
    return this.head.has(name) ? this.head.get(name) : fallback;
  }

  private advance(name: string, after: FlagView | undefined): void {
    this.head.set(name, after);
    this.counts.set(name, (this.counts.get(name) ?? 0) + 1);
  }

  /** A line of ours, with the local settings as they are now; tells the store's listeners. On a failed write the proxy log keeps it. */
  private async line(name: string, before: FlagView | undefined, after: FlagView | undefined, actor: Actor): Promise<string> {
    const settings = this.host.states.get(name);
    const kind = this.external.kind;
    const change: FlagChange = { name, before: fleetViewOf(kind, before, name, settings), after: fleetViewOf(kind, after, name, settings) ?? { name, ...NEW_FLAG }, actor, time: new Date().toISOString() };
    this.advance(name, after);
    try {
      await this.persistence?.audit(change);
      return '';
    } catch (err) {
      this.logger.error({ flag: name, actor, before: change.before, after: change.after, err: (err as Error).message }, 'flag change applied fleet-wide but NOT in the audit log');
      return ` It is NOT in this replica's audit log (${(err as Error).message}); the proxy log has it.`;
    } finally {
      this.host.emitChange(change);
    }
  }
}
