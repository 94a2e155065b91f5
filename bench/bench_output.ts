// Shared output format of every benchmark: one JSON line per figure, each beside its physical floor
// measured in the same run. Progress goes to stderr so stdout stays machine-readable.

export interface Figure {
  bench: string;
  metric: string;
  value: number;
  unit: string;
  floor: number;
  /** value / floor; for latencies lower is better, for throughputs higher is better. */
  ratio: number;
}

export function emit(bench: string, metric: string, value: number, unit: string, floor: number): Figure {
  const round = (v: number) => (Math.abs(v) >= 100 ? Math.round(v * 10) / 10 : Math.round(v * 1000) / 1000);
  const fig: Figure = { bench, metric, value: round(value), unit, floor: round(floor), ratio: Math.round((value / floor) * 1000) / 1000 };
  process.stdout.write(`${JSON.stringify(fig)}\n`);
  return fig;
}

export function progress(message: string): void {
  process.stderr.write(`# ${message}\n`);
}
