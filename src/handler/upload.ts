/**
 * Large request bodies that Mongrel2 spooled to a temp file
 * (`upload.temp_store`). Mongrel2 sends the request twice: once with
 * `x-mongrel2-upload-start` before the body is read, once with both `-start`
 * and `-done` when the file is complete. A client can send both headers on
 * any request, so a file is opened only after every check below passes;
 * Mongrel2 never deletes a finished file, so m2fleet does.
 */
import { constants, promises as fs, type ReadStream } from 'node:fs';
import path from 'node:path';

/** Where Mongrel2's temp files live, as seen from this host. */
export interface UploadOptions {
  /** Mongrel2's chroot on this host; upload paths are relative to it. */
  chroot: string;
  /** The temp_store directory as Mongrel2 names it (e.g. `/tmp`). */
  dir: string;
}

/** A refused upload: answer 400, and the named file was never opened. */
export class UploadRefused extends Error {
  constructor(readonly reason: string) {
    super(reason);
  }
}

/** An opened, already unlinked upload file. */
export interface UploadBody {
  stream: ReadStream;
  size: number;
}

/** Maps a Mongrel2 path (absolute inside its chroot) onto this host. */
export function hostPath(options: UploadOptions, named: string): string {
  return path.join(path.resolve(options.chroot), path.posix.normalize('/' + named));
}

async function uploadDir(options: UploadOptions): Promise<string> {
  try {
    return await fs.realpath(hostPath(options, options.dir));
  } catch {
    throw new UploadRefused(`upload directory ${options.dir} not found`);
  }
}

async function checkedPath(
  options: UploadOptions, start: unknown, done: unknown,
): Promise<string> {
  if (typeof start !== 'string' || typeof done !== 'string') {
    throw new UploadRefused('upload headers are not single strings');
  }
  if (start !== done) throw new UploadRefused('upload start and done differ');
  const dir = await uploadDir(options);
  let real: string;
  try {
    real = await fs.realpath(hostPath(options, done));
  } catch {
    throw new UploadRefused('upload file not found');
  }
  if (path.dirname(real) !== dir) {
    throw new UploadRefused('upload file outside the upload directory');
  }
  return real;
}

/**
 * Validates a done message and opens its file: start equals done, the real
 * path is a regular file directly inside the upload directory, and the
 * message carried no body of its own. The request must also have the shape
 * only Mongrel2 can give it: Mongrel2 spools a body only when it declares a
 * content-length (then the file must be exactly that size and not empty)
 * or is chunked without one; in both cases Mongrel2 overwrites any upload
 * headers the client sent. A client forging the headers on an ordinary
 * request cannot meet that. The file is unlinked as soon as it is open, so
 * it is gone however the request ends. Throws {@link UploadRefused}.
 */
export async function openUpload(
  options: UploadOptions,
  start: unknown,
  done: unknown,
  declaredLength: unknown,
  transferEncoding: unknown,
  inlineBody: number,
): Promise<UploadBody> {
  if (inlineBody !== 0) throw new UploadRefused('upload message with a body');
  const chunked = declaredLength === undefined
    && typeof transferEncoding === 'string' && /chunked/i.test(transferEncoding);
  const sized = typeof declaredLength === 'string' && /^[1-9][0-9]*$/.test(declaredLength);
  if (!chunked && !sized) {
    throw new UploadRefused('upload headers on a request Mongrel2 did not spool');
  }
  const real = await checkedPath(options, start, done);
  const st = await fs.lstat(real);
  if (!st.isFile()) throw new UploadRefused('upload path is not a regular file');
  if (sized && String(st.size) !== declaredLength) {
    throw new UploadRefused('upload size differs from content-length');
  }
  const handle = await fs.open(real, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const opened = await handle.stat();
    if (opened.ino !== st.ino || opened.dev !== st.dev) {
      throw new UploadRefused('upload file changed while opening');
    }
    await fs.unlink(real);
  } catch (err) {
    await handle.close();
    throw err;
  }
  // The stream owns the handle now and closes it when it ends or dies.
  return { stream: handle.createReadStream(), size: st.size };
}

/**
 * Deletes a temp file Mongrel2 left behind for a request m2fleet refused,
 * but only when it passes the same path checks (never a client's path).
 */
export async function discardUpload(
  options: UploadOptions, start: unknown, done: unknown,
): Promise<void> {
  try {
    const real = await checkedPath(options, start, done);
    await fs.unlink(real);
  } catch {
    // Nothing safe to delete.
  }
}
