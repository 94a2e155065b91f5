// Guards the shape rule of src/core: no I/O, clock, timers, randomness or promises in consensus code
// (STYLE.md, "A pure core"). Comments are ignored; only code is checked.
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = join(import.meta.dirname, '..', 'src', 'core');
const forbidden: [RegExp, string][] = [
  [/from\s+['"]node:/, 'node:* import'],
  [/\bawait\b/, 'await'],
  [/\bPromise\b/, 'Promise'],
  [/\basync\b/, 'async'],
  [/Math\.random/, 'Math.random'],
  [/\bDate\b/, 'Date'],
  [/\bperformance\b/, 'performance'],
  [/\bset(Timeout|Interval|Immediate)\b/, 'timer'],
  [/\bprocess\./, 'process'],
  [/from\s+['"]\.\.\/(sim|storage\/wal_store|native)/, 'import of a driver or storage implementation'],
];

t.test('src/core is pure', async (t) => {
  const files = readdirSync(dir).filter((f) => f.endsWith('.ts'));
  t.ok(files.length >= 8, `${files.length} files`);
  for (const f of files) {
    const code = readFileSync(join(dir, f), 'utf8')
      .replace(/\/\*[\s\S]*?\*\//g, '')
      .split('\n')
      .map((line) => line.replace(/\/\/.*$/, ''))
      .join('\n');
    for (const [re, what] of forbidden) t.notOk(re.test(code), `${f}: no ${what}`);
  }
});
