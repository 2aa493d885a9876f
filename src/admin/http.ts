import type { IncomingMessage, ServerResponse } from 'node:http';

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}

export function sendError(res: ServerResponse, err: HttpError, headers?: Record<string, string>): void {
  sendJson(res, err.status, { error: err.code, message: err.message }, headers);
}

/** Reads a JSON request body up to `limit` bytes; anything else is a 4xx HttpError. */
export async function readJson(req: IncomingMessage, limit = 64 * 1024): Promise<unknown> {
  // Only application/json: a web page can POST text/plain or form bodies cross-site without a
  // CORS preflight, which would let any browser on the operator's machine flip flags (CSRF).
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  if (type !== 'application/json') {
    req.resume();
    throw new HttpError(415, 'unsupported_media_type', 'send the body as JSON with "Content-Type: application/json"');
  }
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit) throw new HttpError(413, 'body_too_large', `body is larger than ${limit} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new HttpError(413, 'body_too_large', `body is larger than ${limit} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') throw new HttpError(400, 'invalid_body', 'body must be a JSON object, e.g. {"enabled": true, "percentage": 25}');
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new HttpError(400, 'invalid_json', `body is not valid JSON: ${(err as Error).message}`);
  }
}

/** A percent-decoded path segment; malformed escapes are a 400, never a 500. */
export function decodeSegment(segment: string, code = 'bad_request'): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new HttpError(400, code, 'malformed percent-encoding in the path');
  }
}
