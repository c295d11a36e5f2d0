import { randomBytes } from "node:crypto";

const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"; // Crockford base32, as ULID

let lastTime = -1;
let lastRandom = new Uint8Array(10);

function encode(bytes: Uint8Array, chars: number): string {
  let bits = 0n;
  for (const b of bytes) bits = (bits << 8n) | BigInt(b);
  let out = "";
  for (let i = 0; i < chars; i++) {
    out = alphabet[Number(bits & 31n)] + out;
    bits >>= 5n;
  }
  return out;
}

/**
 * Monotonic ULID: ids made later always sort after ids made earlier in this process, even
 * within one millisecond, so `ORDER BY id` is creation order and a plain cursor for paging.
 */
export function ulid(now: number = Date.now()): string {
  if (now <= lastTime) {
    // same (or earlier, if the clock stepped back) millisecond: increment the random part
    for (let i = lastRandom.length - 1; i >= 0; i--) {
      lastRandom[i] = (lastRandom[i]! + 1) & 0xff;
      if (lastRandom[i] !== 0) break;
    }
  } else {
    lastTime = now;
    lastRandom = new Uint8Array(randomBytes(10));
  }
  const time = new Uint8Array(6);
  let t = lastTime;
  for (let i = 5; i >= 0; i--) {
    time[i] = t % 256;
    t = Math.floor(t / 256);
  }
  return encode(time, 10) + encode(lastRandom, 16);
}

export const newId = (prefix: "job" | "agt" | "tok" | "dep" | "rel" | "run" | "img" | "jtk" | "ntf") => `${prefix}_${ulid()}`;
