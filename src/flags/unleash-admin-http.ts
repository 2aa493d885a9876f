import { Agent, request } from 'undici';
import { FlagSourceError } from './model.js';

/** A strategy as Unleash's Admin API returns it. */
export interface AdminStrategy {
  id: string;
  name: string;
  title?: string | null;
  disabled?: boolean | null;
  constraints: unknown[];
  parameters: Record<string, string>;
  segments?: number[];
  variants?: unknown[];
  sortOrder?: number;
}

export interface AdminFeature {
  name: string;
  project: string;
  type?: string;
  stale?: boolean;
  environments: Array<{ name: string; enabled: boolean; strategies: AdminStrategy[] }>;
}

/** No answer (connect error, timeout, reset): the request may or may not have been applied. */
export class NoAnswerError extends FlagSourceError {}

/** The calls UnleashAdmin makes to Unleash's Admin API: JSON over one keep-alive agent, errors as FlagSourceError. */
export class AdminHttp {
  private readonly agent = new Agent({ keepAliveTimeout: 2000, connect: { timeout: 5000 } });
  private readonly base: string;

  constructor(
    apiUrl: string,
    private readonly token: string,
    private readonly timeoutMs = 10_000,
  ) {
    this.base = apiUrl.replace(/\/+$/, '') + '/admin';
  }

  async feature(project: string, name: string): Promise<AdminFeature | undefined> {
    return (await this.call('GET', `/projects/${enc(project)}/features/${enc(name)}`, undefined, true)) as AdminFeature | undefined;
  }

  close(): Promise<void> {
    return this.agent.close();
  }

  async call(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, body: unknown, allow404 = false): Promise<unknown> {
    const url = this.base + path;
    let status: number;
    let text: string;
    try {
      const res = await request(url, {
        method,
        dispatcher: this.agent,
        headers: { authorization: this.token, 'content-type': 'application/json', accept: 'application/json' },
        body: body === undefined ? null : JSON.stringify(body),
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
      });
      status = res.statusCode;
      text = await res.body.text();
    } catch (err) {
      throw new NoAnswerError(`Unleash Admin API ${method} ${url}: ${(err as Error).message}`);
    }
    if (allow404 && status === 404) return undefined;
    if (status >= 300) {
      let message = text.slice(0, 300);
      try {
        message = (JSON.parse(text) as { message?: string }).message ?? message;
      } catch {
        /* not JSON */
      }
      throw new FlagSourceError(`Unleash Admin API ${method} ${path} answered ${status}: ${message}`);
    }
    try {
      return text ? (JSON.parse(text) as unknown) : undefined;
    } catch {
      return undefined; // a 2xx without JSON (on/off answer nothing useful)
    }
  }
}

export function enc(s: string): string {
  return encodeURIComponent(s);
}
