import murmurhash from 'murmurhash';

/**
 * The user's bucket for a flag, 1..100, exactly as Unleash computes `normalizedValue` for
 * flexibleRollout: murmur3_x86_32("<groupId>:<userId>", seed 0) % 100 + 1, where Unleash's server
 * always sets groupId to the flag name. npm `murmurhash` hashes the UTF-8 bytes of the string,
 * like Unleash's Go, Java and Rust SDKs (Unleash's Node SDK hashes only the low byte of each
 * UTF-16 unit, so it disagrees for non-ASCII ids).
 */
export function bucketOf(groupId: string, userId: string): number {
  const key = groupId + ':' + userId;
  // murmurhash encodes a string argument with a new TextEncoder per call (~1 µs, the costliest
  // step of routing a request); encoding into one reused buffer gives it the same UTF-8 bytes.
  // 256 UTF-16 units are at most 768 UTF-8 bytes, so a short key always fits.
  if (key.length <= 256) return (murmurhash.v3(scratch.subarray(0, scratch.write(key, 0, 'utf8')), 0) % 100) + 1;
  return (murmurhash.v3(key, 0) % 100) + 1;
}

const scratch = Buffer.allocUnsafe(768);

/** flexibleRollout's rule: on when the rollout is above 0 and the bucket is within it. */
export function inRollout(bucket: number, percentage: number): boolean {
  return percentage > 0 && bucket <= percentage;
}
