// Shared plumbing of the benchmark scripts: command-line options, printing a result table and
// saving the same table under bench/results/, and the top-level error handling.
import * as fs from 'fs';
import * as path from 'path';

/** `--name value` from the command line, else `dflt`. */
export function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : dflt;
}

/** Prints the table and writes it to `--out`, or to bench/results/<file>. */
export function publish(lines: string[], file: string): void {
  const table = lines.join('\n');
  console.log(table);
  const out = arg('out', path.join('bench', 'results', file));
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, table + '\n');
}

export function run(main: () => Promise<void>): void {
  main().catch((e) => {
    console.error(e);
    process.exitCode = 1;
  });
}
