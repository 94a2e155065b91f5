// A small deterministic PRNG (xorshift32) for tests that need reproducible "random" sizes and bytes.

export interface TestRng {
  next(): number;
  below(n: number): number;
  bytes(n: number): Buffer;
}

export function xorshift32(seed: number): TestRng {
  let s = seed >>> 0 || 1;
  const next = (): number => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
  return {
    next,
    below: (n) => next() % n,
    bytes: (n) => {
      const b = Buffer.allocUnsafe(n);
      for (let i = 0; i < n; i++) b[i] = next() & 0xff;
      return b;
    },
  };
}
