import { request, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import type { Logger } from '../observability/logger.js';
import type { CompiledFlag } from '../flags/model.js';
import type { CompiledRoute, RoutingState } from '../routing/compile.js';
import { choose, type Chooser } from '../routing/choose.js';
import type { Decision, Target } from '../routing/decide.js';
import { requestPath, requestQuery } from '../routing/normalize-path.js';
import { requestIdOf } from './request-id.js';
import type { Upstream } from '../upstream/pools.js';
import { adoptTargetAuthority, appendForwarded } from './forwarded.js';
import type { LiveFailure } from '../upstream/health.js';
import { copyRequestHeaders } from './headers.js';

/**
 * `answerMs`: idle time the upstream has to answer an upgrade (101 or not). `relayIdleMs`: idle
 * time between body bytes of a non-101 answer relayed to the client, as `bodyTimeout`'s default
 * bounds an HTTP body. Mutable so tests can shorten them.
 */
export const upgradeLimits = { answerMs: 10_000, relayIdleMs: 30_000 };

export interface UpgradeDeps {
  flags: { get(name: string): CompiledFlag | undefined };
  logger: Logger;
}

/**
 * WebSocket (and other Upgrade) passthrough. Routed by the same rules as HTTP (same user, same
 * side), then relayed byte for byte on a dedicated connection (long-lived sockets do not belong
 * in the request pools). A refused candidate connection falls back to legacy; a non-101 answer is
 * relayed as is; either side closing or failing closes both, so nothing leaks.
 */
export class UpgradeProxy {
  /** Open tunnels, so shutdown can close them (the HTTP server no longer tracks them). */
  readonly sockets = new Set<Duplex>();

  constructor(
    private state: () => RoutingState,
    private readonly deps: UpgradeDeps,
  ) {}

  readonly handle = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on('error', noop);
    const url = req.url ?? '/';
    if (url.charCodeAt(0) !== 47) adoptTargetAuthority(req, url);
    const path = requestPath(url);
    const state = this.state();
    choose(state, this.deps.flags, req, path, new Tunnel(this, state, req, socket, head, path, requestQuery(url)));
  };

  closeAll(): void {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  get logger(): Logger {
    return this.deps.logger;
  }
}

class Tunnel implements Chooser {
  private route: CompiledRoute | undefined;
  private trial = false;

  constructor(
    private readonly proxy: UpgradeProxy,
    private readonly state: RoutingState,
    private readonly req: IncomingMessage,
    private readonly socket: Duplex,
    private readonly head: Buffer,
    private readonly path: string,
    private readonly query: string,
  ) {}

  chosen(route: CompiledRoute | undefined, _d: Decision, target: Target, _u: string | undefined, _unhealthy: boolean, trial: boolean): void {
    this.route = route;
    this.trial = trial;
    const up = route ? (target === 'candidate' ? route.candidate : route.legacy) : this.state.defaultUpstream;
    if (up === undefined) return this.refuse(404, 'Not Found');
    this.connect(up, target);
  }

  /** The candidate's verdict on an upgrade feeds its health like any request (and ends a trial). */
  private outcome(target: Target, failure: LiveFailure | undefined): void {
    const health = this.route?.candidateHealth;
    if (target !== 'candidate' || health === undefined) return;
    const trial = this.trial;
    this.trial = false;
    if (failure === undefined) health.success(trial ? 'trial' : 'admitted');
    else health.failure(failure, (this.route as CompiledRoute).name, trial ? 'trial' : 'admitted');
  }

  private releaseTrial(): void {
    if (this.trial) this.route?.candidateHealth?.released();
    this.trial = false;
  }

  private connect(up: Upstream, target: Target): void {
    const req = this.req;
    if (this.socket.destroyed) return this.releaseTrial();
    const headers = copyRequestHeaders(req.rawHeaders, [], this.state.qa?.header);
    headers.push(
      'connection', 'upgrade',
      'upgrade', String(req.headers.upgrade ?? 'websocket'),
      'host', up.preserveHost ? (req.headers.host ?? up.host) : up.host,
      'x-request-id', requestIdOf(req.headers['x-request-id']),
    );
    appendForwarded(req, this.state.trusted, headers);
    const send = up.secure ? httpsRequest : request;
    const preq = send({
      host: up.hostname,
      port: up.port,
      method: req.method,
      path: up.basePath + this.path + this.query,
      headers,
      agent: false,
      timeout: upgradeLimits.answerMs,
    });
    // Set by the first of: 101, another answer, a failure. Each scores the attempt, so the rest
    // must not: a timeout or reset during a relayed answer is neither a 502 nor a second verdict.
    let settled = false;
    let upgraded = false;
    const giveUp = (err: Error & { code?: string }, failure: LiveFailure) => {
      if (settled) return;
      settled = true;
      preq.destroy();
      this.outcome(target, failure);
      // Nothing was sent over a refused connection: the same upgrade may go to legacy instead.
      if (target === 'candidate' && err.code === 'ECONNREFUSED' && this.route) {
        this.proxy.logger.warn({ route: this.route.name, reason: 'connect' }, 'websocket fallback to legacy');
        return this.connect(this.route.legacy, 'legacy');
      }
      this.refuse(502, 'Bad Gateway');
    };
    preq.on('error', (err: Error & { code?: string }) => giveUp(err, err.code === 'ECONNREFUSED' ? 'connect' : 'reset'));
    preq.on('timeout', () => giveUp(new Error('upstream did not answer the upgrade'), 'timeout'));
    this.socket.once('close', () => {
      if (!upgraded) preq.destroy();
      this.releaseTrial();
    });
    preq.on('response', (res) => {
      settled = true;
      preq.setTimeout(0); // answered: the answer timeout is over (the relay has its own limit)
      this.outcome(target, (res.statusCode ?? 502) >= 500 ? '5xx' : undefined);
      this.relayRefusal(res);
    });
    preq.on('upgrade', (res, upstream, upstreamHead) => {
      settled = upgraded = true;
      upstream.setTimeout(0); // a quiet tunnel is not a slow answer
      this.outcome(target, undefined);
      this.splice(res, upstream, upstreamHead);
    });
    preq.end();
  }

  /** 101 from upstream: answer the client the same way, then pipe bytes both ways. */
  private splice(res: IncomingMessage, upstream: Socket, upstreamHead: Buffer): void {
    const client = this.socket;
    if (client.destroyed) return void upstream.destroy();
    let head = `HTTP/1.1 101 ${res.statusMessage ?? 'Switching Protocols'}\r\n`;
    for (let i = 0; i < res.rawHeaders.length; i += 2) head += `${res.rawHeaders[i]}: ${res.rawHeaders[i + 1]}\r\n`;
    client.write(head + '\r\n');
    if (upstreamHead.length) client.write(upstreamHead);
    if (this.head.length) upstream.write(this.head);
    const sockets = this.proxy.sockets;
    sockets.add(client);
    sockets.add(upstream);
    const closeBoth = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    upstream.on('error', closeBoth);
    client.on('error', closeBoth);
    upstream.on('close', closeBoth);
    client.on('close', closeBoth);
    upstream.pipe(client);
    client.pipe(upstream);
  }

  /**
   * The upstream answered without upgrading (401, 404, or a 200 stream that ignored Upgrade): the
   * client gets that answer. It was scored at its headers (as an HTTP trial is), so nothing after
   * counts against the upstream. A body without Content-Length is sent chunked, so a cut (the
   * upstream failing, or idle for `relayIdleMs`) shows as one instead of as a clean end.
   */
  private relayRefusal(res: IncomingMessage): void {
    const client = this.socket;
    if (client.destroyed) return void res.destroy();
    const status = res.statusCode ?? 502;
    const bodyless = this.req.method === 'HEAD' || status === 204 || status === 304 || status < 200;
    const chunked = !bodyless && res.headers['content-length'] === undefined;
    let head = `HTTP/1.1 ${status} ${res.statusMessage ?? ''}\r\n`;
    for (let i = 0; i < res.rawHeaders.length; i += 2) {
      const name = (res.rawHeaders[i] as string).toLowerCase();
      if (name === 'connection' || name === 'transfer-encoding' || name === 'keep-alive') continue;
      head += `${res.rawHeaders[i]}: ${res.rawHeaders[i + 1]}\r\n`;
    }
    client.write(head + (chunked ? 'transfer-encoding: chunked\r\n' : '') + 'connection: close\r\n\r\n');
    const sockets = this.proxy.sockets;
    sockets.add(client); // a long answer is cut at the end of a drain, like a tunnel
    client.once('close', () => sockets.delete(client));
    res.on('data', (chunk: Buffer) => {
      if (!(chunked ? writeChunk(client, chunk) : client.write(chunk))) res.pause();
    });
    client.on('drain', () => res.resume());
    res.on('end', () => client.end(chunked ? LAST_CHUNK : undefined));
    // Closed before its end (upstream reset, idle limit, drain): cut the client, never end it.
    res.on('close', () => {
      if (!res.complete) client.destroy();
    });
    res.on('error', noop);
    res.setTimeout(upgradeLimits.relayIdleMs, () => {
      this.proxy.logger.warn({ route: this.route?.name, idleMs: upgradeLimits.relayIdleMs, status }, 'websocket: relayed non-101 answer idle, cut');
      res.destroy();
    });
  }

  private refuse(status: number, text: string): void {
    if (!this.socket.destroyed) this.socket.end(`HTTP/1.1 ${status} ${text}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`);
  }
}

const CRLF = Buffer.from('\r\n');
const LAST_CHUNK = '0\r\n\r\n';

function writeChunk(client: Duplex, chunk: Buffer): boolean {
  client.write(`${chunk.length.toString(16)}\r\n`);
  client.write(chunk);
  return client.write(CRLF);
}

function noop(): void {}
