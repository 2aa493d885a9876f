import { brotliDecompress, gunzip, inflate, inflateRaw, type ZlibOptions } from 'node:zlib';
import { promisify } from 'node:util';
import type { CapturedResponse } from './compare.js';

const gunzipAsync = promisify(gunzip);
const inflateAsync = promisify(inflate);
const inflateRawAsync = promisify(inflateRaw);
const brotliAsync = promisify(brotliDecompress) as (buf: Buffer, opts: ZlibOptions) => Promise<Buffer>;

type Decoder = (body: Buffer, opts: ZlibOptions) => Promise<Buffer>;

const DECODERS: ReadonlyMap<string, Decoder> = new Map<string, Decoder>([
  ['gzip', gunzipAsync],
  ['x-gzip', gunzipAsync],
  // RFC 9110 deflate is zlib-wrapped, but some servers send raw deflate: accept both.
  ['deflate', (b, o) => inflateAsync(b, o).catch((err: { code?: string }) => (err.code === 'Z_DATA_ERROR' ? inflateRawAsync(b, o) : Promise.reject(err)))],
  ['br', brotliAsync],
]);

/**
 * Undoes a captured response's Content-Encoding so two answers compare by content, not by how
 * each side compressed it (two gzip levels, or br against identity, are the same answer). Runs in
 * the shadow job, off the request path, on zlib's thread pool. The decoded size is capped at
 * `maxBody` like the captured size, so a small compressed body cannot expand without bound: past
 * it the response counts as truncated. An encoding that is unknown or does not decode is left as
 * it came, raw bytes, with `encoded` saying why (comparison then shows it in the body finding).
 * Never touches what the client received: this works on shadow's private copy.
 */
export async function decodeBody(r: CapturedResponse, maxBody: number): Promise<CapturedResponse> {
  const header = r.headers['content-encoding'];
  if (header === undefined || r.truncated) return r;
  const codings = header
    .split(',')
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== '' && c !== 'identity');
  const headers = { ...r.headers };
  delete headers['content-encoding'];
  // The length of the encoded bytes says nothing once they are decoded.
  if (codings.length > 0) delete headers['content-length'];
  // HEAD, 204 and 304 carry the header but no body.
  if (codings.length === 0 || r.body.length === 0) return { ...r, headers };
  const unknown = codings.find((c) => !DECODERS.has(c));
  if (unknown !== undefined) return { ...r, encoded: `${header} (not decoded: unknown encoding ${unknown})` };
  const opts: ZlibOptions = { maxOutputLength: Math.max(1, maxBody) };
  let body = r.body;
  try {
    // Codings are listed in the order they were applied: undo the last first.
    for (let i = codings.length - 1; i >= 0; i--) body = await (DECODERS.get(codings[i] as string) as Decoder)(body, opts);
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') return { ...r, headers, body: Buffer.alloc(0), truncated: true };
    return { ...r, encoded: `${header} (not decoded: ${(err as Error).message})` };
  }
  if (body.length > maxBody) return { ...r, headers, body: Buffer.alloc(0), truncated: true };
  return { ...r, headers, body };
}
