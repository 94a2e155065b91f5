// The simulator's clock and agenda: a binary min-heap of callbacks ordered by (time, insertion order).
// Time is integer microseconds of simulated time; it must never read the host clock.

export type SimTimeUs = number;

interface Entry {
  readonly time: SimTimeUs;
  readonly seq: number;
  readonly fn: () => void;
}

export class EventQueue {
  private heap: Entry[] = [];
  private seq = 0;
  now: SimTimeUs = 0;

  get size(): number {
    return this.heap.length;
  }

  /** Runs `fn` at now + delay (delay >= 0); ties run in scheduling order. */
  schedule(delayUs: number, fn: () => void): void {
    const time = this.now + Math.max(0, Math.round(delayUs));
    this.push({ time, seq: this.seq++, fn });
  }

  at(time: SimTimeUs, fn: () => void): void {
    this.push({ time: Math.max(this.now, Math.round(time)), seq: this.seq++, fn });
  }

  /** Pops and runs the next event; false when there is none. */
  runNext(): boolean {
    const e = this.pop();
    if (!e) return false;
    this.now = e.time;
    e.fn();
    return true;
  }

  peekTime(): SimTimeUs | null {
    return this.heap.length > 0 ? this.heap[0]!.time : null;
  }

  private less(x: Entry, y: Entry): boolean {
    return x.time < y.time || (x.time === y.time && x.seq < y.seq);
  }

  private push(e: Entry): void {
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }

  private pop(): Entry | undefined {
    const h = this.heap;
    if (h.length === 0) return undefined;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.less(h[l]!, h[m]!)) m = l;
        if (r < h.length && this.less(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}
