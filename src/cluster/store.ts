/**
 * A node's cluster memory on disk: the exact bytes of the last CONFIG it
 * adopted (re-verified at every start, so a tampered file is refused), the
 * highest version it accepted (so an old CONFIG replayed after a restart
 * is still stale), and for a main the last version it published. Writes
 * are atomic (temp file, then rename) and private (mode 0600).
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** What a node remembers between runs. */
export interface ClusterMemory {
  /** Highest CONFIG version accepted (followers). */
  acceptedVersion: number;
  /** The last good CONFIG datagram, base64. */
  lastGood: string | null;
  /** Last version and digest published (mains). */
  published: { version: number; digest: string } | null;
}

const EMPTY: ClusterMemory = { acceptedVersion: 0, lastGood: null, published: null };

/** Reads and writes one state directory. */
export class ClusterStore {
  readonly #file: string;

  constructor(dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.#file = path.join(dir, 'cluster-state.json');
  }

  /** The stored memory, or an empty one when there is none (or it is unreadable). */
  load(): ClusterMemory {
    try {
      const raw = JSON.parse(readFileSync(this.#file, 'utf8')) as Partial<ClusterMemory>;
      return {
        acceptedVersion: Number.isSafeInteger(raw.acceptedVersion) ? raw.acceptedVersion! : 0,
        lastGood: typeof raw.lastGood === 'string' ? raw.lastGood : null,
        published: raw.published && Number.isSafeInteger(raw.published.version)
          && typeof raw.published.digest === 'string' ? raw.published : null,
      };
    } catch {
      return { ...EMPTY };
    }
  }

  save(memory: ClusterMemory): void {
    const tmp = `${this.#file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(memory), { mode: 0o600 });
    renameSync(tmp, this.#file);
  }
}
