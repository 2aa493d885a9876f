import murmurhash from 'murmurhash';

/**
 * The user's bucket for a flag, 1..100, exactly as Unleash computes `normalizedValue` for
 * flexibleRollout: murmur3_x86_32("<groupId>:<userId>", seed 0) % 100 + 1, where Unleash's server
 * always sets groupId to the flag name. npm `murmurhash` hashes the UTF-8 bytes of the string,
 * like Unleash's Go, Java and Rust SDKs (Unleash's Node SDK hashes only the low byte of each
 * UTF-16 unit, so it disagrees for non-ASCII ids).
 */
export function bucketOf(groupId: string, userId: string): number {
  return (murmurhash.v3(groupId + ':' + userId, 0) % 100) + 1;
}

/** flexibleRollout's rule: on when the rollout is above 0 and the bucket is within it. */
export function inRollout(bucket: number, percentage: number): boolean {
  return percentage > 0 && bucket <= percentage;
}
