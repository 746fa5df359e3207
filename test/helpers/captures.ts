/**
 * Loads the raw Mongrel2 wire captures in `test/fixtures/captures/` (a copy
 * of the team's `shared/captures/`, kept in the repository so that a fresh
 * clone tests the same bytes). Each capture file has `#` header lines (one says
 * `# length: N bytes`), one escaped line, and a hex dump that may be cut
 * short (`# hex (first N bytes):`); in that case the bytes are rebuilt from
 * the escaped line and checked against the hex prefix and the length.
 */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../..',
);

/** Directory holding the `*.txt` capture files. */
export const CAPTURE_DIR = path.resolve(repoRoot, 'test/fixtures/captures');

const SIMPLE_ESCAPES: Record<string, number> = {
  r: 0x0d,
  n: 0x0a,
  t: 0x09,
  '0': 0x00,
  '\\': 0x5c,
};

/** Decodes the capture's escaped line (`\r \n \t \0 \\ \xNN`). */
export function unescapeCapture(line: string): Buffer {
  const out: number[] = [];
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (ch !== '\\') {
      const code = line.charCodeAt(i);
      if (code > 0x7f) throw new Error(`non-ASCII char in escaped line at ${i}`);
      out.push(code);
      continue;
    }
    const next = line[i + 1];
    if (next === 'x') {
      const hex = line.slice(i + 2, i + 4);
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) throw new Error(`bad \\x at ${i}`);
      out.push(parseInt(hex, 16));
      i += 3;
    } else if (next !== undefined && next in SIMPLE_ESCAPES) {
      out.push(SIMPLE_ESCAPES[next]!);
      i += 1;
    } else {
      throw new Error(`unknown escape at ${i}: ${line.slice(i, i + 2)}`);
    }
  }
  return Buffer.from(out);
}

interface CaptureParts {
  length: number;
  escaped: string;
  hex: Buffer;
  hexIsComplete: boolean;
}

function splitCapture(name: string, text: string): CaptureParts {
  const lines = text.split('\n');
  const lengthLine = lines.find((l) => l.startsWith('# length:'));
  const length = Number(/^# length: (\d+) bytes$/.exec(lengthLine ?? '')?.[1]);
  const escIdx = lines.findIndex((l) => l.startsWith('# escaped'));
  const hexIdx = lines.findIndex((l) => l.startsWith('# hex'));
  if (!Number.isInteger(length) || escIdx < 0 || hexIdx !== escIdx + 2) {
    throw new Error(`capture ${name}: unexpected layout`);
  }
  const hexText = lines.slice(hexIdx + 1).join('').trim();
  if (!/^([0-9a-f]{2})*$/.test(hexText)) {
    throw new Error(`capture ${name}: bad hex dump`);
  }
  return {
    length,
    escaped: lines[escIdx + 1]!,
    hex: Buffer.from(hexText, 'hex'),
    hexIsComplete: !lines[hexIdx]!.includes('first'),
  };
}

/**
 * The exact bytes of capture `name` (file `<name>.txt`). The hex dump is
 * used when complete; a cut dump is replaced by the decoded escaped line.
 * Throws if the two disagree or the length differs from `# length:`.
 */
export function loadCapture(name: string): Buffer {
  const file = path.join(CAPTURE_DIR, `${name}.txt`);
  const parts = splitCapture(name, readFileSync(file, 'latin1'));
  const decoded = unescapeCapture(parts.escaped);

  const bytes = parts.hexIsComplete ? parts.hex : decoded;
  const prefix = decoded.subarray(0, parts.hex.length);
  if (!prefix.equals(parts.hex)) {
    throw new Error(`capture ${name}: escaped line and hex dump differ`);
  }
  if (bytes.length !== parts.length || decoded.length !== parts.length) {
    throw new Error(
      `capture ${name}: ${bytes.length} bytes, header says ${parts.length}`,
    );
  }
  return bytes;
}

/** Names (without `.txt`) of all captures, sorted; `README` excluded. */
export function listCaptures(): string[] {
  return readdirSync(CAPTURE_DIR)
    .filter((f) => f.endsWith('.txt'))
    .map((f) => f.slice(0, -'.txt'.length))
    .sort();
}
