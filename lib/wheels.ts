// Python wheels fetched and unpacked by Node itself, so `dflash install-plugin` needs no Python:
// the index is read through the standard "simple" repository API in its JSON form (PEP 691, what
// pip reads), the wheel for this machine is chosen by its file name tags (PEP 427), downloaded
// with its sha256 checked, and unpacked (a wheel is a zip) with yauzl.
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { pipeline } from 'stream/promises';
import { Transform } from 'stream';
import * as yauzl from 'yauzl';

export const DEFAULT_INDEX_URL = 'https://pypi.org/simple';

export interface WheelFile {
  filename: string;
  url: string;
  sha256: string;
  size?: number;
}

/** Normalised project name (PEP 503): lower case, runs of -_. as one dash. */
export function normalizeName(name: string): string {
  return name.toLowerCase().replace(/[-_.]+/g, '-');
}

/** The manylinux/musllinux architecture tag of this machine's Node (x86_64, aarch64). */
export function wheelArch(arch: string = process.arch): string {
  const tags: Record<string, string> = { x64: 'x86_64', arm64: 'aarch64', ppc64: 'ppc64le', s390x: 's390x' };
  const tag = tags[arch];
  if (!tag) throw new Error(`no Python wheel platform tag for the CPU architecture ${arch}`);
  return tag;
}

/** Lists the files of one version of a project from a PEP 691 JSON simple index. */
export async function listWheels(name: string, version: string, indexUrl = DEFAULT_INDEX_URL): Promise<WheelFile[]> {
  const url = `${indexUrl.replace(/\/+$/, '')}/${normalizeName(name)}/`;
  let res: Response;
  try {
    res = await fetch(url, { headers: { Accept: 'application/vnd.pypi.simple.v1+json' } });
  } catch (e) {
    const cause = (e as { cause?: Error }).cause;
    throw new Error(`cannot reach the Python package index at ${url}: ${cause?.message ?? (e as Error).message}`);
  }
  if (!res.ok) throw new Error(`the Python package index answered ${res.status} for ${url}`);
  const body = (await res.json()) as { files?: { filename: string; url: string; hashes?: Record<string, string>; size?: number; yanked?: unknown }[] };
  const prefix = `${name.replace(/-/g, '_').toLowerCase()}-${version}-`;
  return (body.files ?? [])
    .filter((f) => f.filename.toLowerCase().startsWith(prefix) && f.filename.endsWith('.whl') && f.hashes?.sha256)
    .map((f) => ({ filename: f.filename, url: new URL(f.url, url).toString(), sha256: f.hashes!.sha256, size: f.size }));
}

/** The wheel to use on Linux/`arch`: a manylinux one for the architecture, `py3-none` preferred
 *  over CPython-specific builds (dflash never imports the Python part), newest CPython first. */
export function chooseWheel(files: WheelFile[], arch = wheelArch()): WheelFile | undefined {
  const ok = files.filter((f) => {
    const tags = f.filename.slice(0, -'.whl'.length).split('-');
    const platforms = tags[tags.length - 1].split('.');
    return platforms.some((p) => (p.startsWith('manylinux') || p === 'linux_' + arch) && p.endsWith('_' + arch));
  });
  const rank = (f: WheelFile) => {
    const py = f.filename.split('-').slice(-3)[0];
    if (py.startsWith('py3')) return 1000;
    const m = /^cp3(\d+)(t?)$/.exec(py);
    return m ? Number(m[1]) - (m[2] ? 0.5 : 0) : 0;
  };
  return ok.sort((a, b) => rank(b) - rank(a))[0];
}

/** Downloads `wheel` to `dest`, checking its sha256; calls `onProgress` with bytes so far. */
export async function downloadWheel(wheel: WheelFile, dest: string, onProgress?: (bytes: number, total?: number) => void): Promise<void> {
  const res = await fetch(wheel.url);
  if (!res.ok || !res.body) throw new Error(`download of ${wheel.filename} failed: HTTP ${res.status} from ${wheel.url}`);
  const total = Number(res.headers.get('content-length')) || wheel.size;
  const hash = createHash('sha256');
  let bytes = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      bytes += chunk.length;
      onProgress?.(bytes, total);
      done(null, chunk);
    },
  });
  await pipeline(res.body as unknown as NodeJS.ReadableStream, tap, fs.createWriteStream(dest));
  const got = hash.digest('hex');
  if (got !== wheel.sha256) {
    fs.rmSync(dest, { force: true });
    throw new Error(`download of ${wheel.filename} is corrupt: sha256 ${got}, the index says ${wheel.sha256}`);
  }
}

function openZip(file: string): Promise<yauzl.ZipFile> {
  return new Promise((resolve, reject) =>
    yauzl.open(file, { lazyEntries: true, autoClose: true }, (err, zip) => (err ? reject(err) : resolve(zip!))));
}

/** Unpacks every file of the wheel (zip) `file` under `dir`, keeping Unix permission bits.
 *  yauzl refuses absolute paths and `..` in entry names, so nothing lands outside `dir`. */
export async function unpackWheel(file: string, dir: string): Promise<number> {
  const zip = await openZip(file);
  let count = 0;
  await new Promise<void>((resolve, reject) => {
    zip.on('error', reject);
    zip.on('end', resolve);
    zip.on('entry', (entry: yauzl.Entry) => {
      const out = path.join(dir, entry.fileName);
      if (entry.fileName.endsWith('/')) {
        fs.mkdirSync(out, { recursive: true });
        zip.readEntry();
        return;
      }
      zip.openReadStream(entry, (err, stream) => {
        if (err || !stream) return reject(err ?? new Error(`cannot read ${entry.fileName} in ${file}`));
        fs.mkdirSync(path.dirname(out), { recursive: true });
        const mode = (entry.externalFileAttributes >>> 16) & 0o777;
        pipeline(stream, fs.createWriteStream(out, { mode: mode || 0o644 }))
          .then(() => {
            count += 1;
            zip.readEntry();
          }, reject);
      });
    });
    zip.readEntry();
  });
  return count;
}
