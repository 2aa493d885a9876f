import { mkdir, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';

/**
 * Writes `text` to `file` so that a crash (even kill -9 or power loss) leaves the old content or
 * the new one, never a torn file: a temp file in the same directory, fsync, rename over the
 * target, fsync of the directory. The temp name (`.tmp-<name>-...`) is neither `*.json` nor
 * `..*`, so the flags directory's watchers never take it for a flag or a ConfigMap swap.
 */
export async function writeFileAtomic(file: string, text: string): Promise<void> {
  const dir = dirname(file);
  await mkdir(dir, { recursive: true });
  const tmp = join(dir, `.tmp-${basename(file)}-${process.pid}-${randomBytes(4).toString('hex')}`);
  const fh = await open(tmp, 'w', 0o644);
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } catch {
    // Some file systems refuse fsync on directories; the rename is still atomic there.
  } finally {
    await d.close();
  }
}
