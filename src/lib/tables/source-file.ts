// Reading table source text the way postmap(1) and the file-based pattern tables do
// (Postfix readlline.c, dict_file.c), plus the bits of file bookkeeping they share.
// Files are read as bytes: the text is a latin1 "binary" string, one char per byte.

import {promises as fsp, statSync, BigIntStats} from 'node:fs'
import {isSpaceChar} from '../util/chars.js'

/** One logical line: its text, and the number of the physical line it started on. */
export interface LogicalLine {
  text: string
  lineno: number
}

/**
 * Split source text into logical lines with Postfix's readllines() rules:
 * - a line that starts with whitespace continues the logical line before it; the
 *   newline is dropped and the continuation's own leading whitespace is kept;
 * - lines that are empty, all whitespace, or whose first non-blank is `#` are dropped,
 *   and do not end the logical line: text after them may still continue it;
 * - `#` elsewhere is text, and so is a trailing `\r`;
 * - a logical line that would start with whitespace (only possible at the start of the
 *   text) is reported through `warn` and skipped.
 * `path` only names the file in that warning.
 */
export function* logicalLines(content: string, path: string, warn: (message: string) => void): Generator<LogicalLine> {
  let pos = 0
  let physical = 0
  const end = content.length
  for (;;) {
    let buf = ''
    let first = 0
    for (;;) {
      const start = buf.length
      const nl = content.indexOf('\n', pos)
      const atEof = nl < 0
      const piece = atEof ? content.slice(pos) : content.slice(pos, nl)
      pos = atEof ? end : nl + 1
      buf += piece
      if (!atEof || piece.length > 0) physical++
      let i = start
      while (i < buf.length && isSpaceChar(buf[i])) i++
      if (i === buf.length || buf[i] === '#') buf = buf.slice(0, start)
      else if (start === 0) first = physical
      if (atEof) break
      if (buf.length > 0) {
        // Peek at the next line's first byte: only whitespace or '#' can extend this line.
        const next = pos < end ? content[pos] : undefined
        if (next !== '#' && !isSpaceChar(next)) break
      }
    }
    if (buf.length === 0) return
    if (isSpaceChar(buf[0])) {
      warn(`${path}: logical line must not start with whitespace: "${cString(buf).slice(0, 30)}${buf.length > 30 ? '...' : ''}"`)
      continue
    }
    yield {text: buf, lineno: first}
  }
}

/** A byte string as C code sees it: everything before the first NUL. */
export function cString(s: string): string {
  const nul = s.indexOf('\0')
  return nul < 0 ? s : s.slice(0, nul)
}


// glibc strerror() texts, which Postfix prints for %m; libuv's own texts differ in case
// and, for some codes, in wording.
const STRERROR: Record<string, string> = {
  EPERM: 'Operation not permitted',
  ENOENT: 'No such file or directory',
  EIO: 'Input/output error',
  ENXIO: 'No such device or address',
  EBADF: 'Bad file descriptor',
  EAGAIN: 'Resource temporarily unavailable',
  ENOMEM: 'Cannot allocate memory',
  EACCES: 'Permission denied',
  EBUSY: 'Device or resource busy',
  EEXIST: 'File exists',
  ENODEV: 'No such device',
  ENOTDIR: 'Not a directory',
  EISDIR: 'Is a directory',
  EINVAL: 'Invalid argument',
  ENFILE: 'Too many open files in system',
  EMFILE: 'Too many open files',
  ETXTBSY: 'Text file busy',
  EFBIG: 'File too large',
  ENOSPC: 'No space left on device',
  EROFS: 'Read-only file system',
  ENAMETOOLONG: 'File name too long',
  ELOOP: 'Too many levels of symbolic links',
  EOVERFLOW: 'Value too large for defined data type',
  ESTALE: 'Stale file handle',
}

/** The text Postfix's %m would print for a Node system error. */
export function strerror(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  if (code && STRERROR[code]) return STRERROR[code]
  const message = err instanceof Error ? err.message : String(err)
  // libuv: "ENOENT: no such file or directory, open '/x'"
  const m = /^[A-Z0-9_]+: ([^,]+)/.exec(message)
  const text = m ? m[1] : message
  return text.charAt(0).toUpperCase() + text.slice(1)
}

/** A file name given as a byte string, as the bytes the kernel should see. */
export function pathBytes(path: string): Buffer {
  return Buffer.from(path, 'latin1')
}

/** What identifies one version of a file, for `Table.changed()`. */
export interface FileStamp {
  dev: bigint
  ino: bigint
  size: bigint
  mtimeNs: bigint
}

export function stampOf(st: BigIntStats): FileStamp {
  return {dev: st.dev, ino: st.ino, size: st.size, mtimeNs: st.mtimeNs}
}

/** True when `path` no longer is the file described by `stamp` (or cannot be examined). */
export function fileChanged(path: string, stamp: FileStamp): boolean {
  let st: BigIntStats
  try {
    st = statSync(pathBytes(path), {bigint: true})
  } catch {
    return true
  }
  return st.dev !== stamp.dev || st.ino !== stamp.ino || st.size !== stamp.size || st.mtimeNs !== stamp.mtimeNs
}

/** A file's bytes and status, read through one descriptor, or the step that failed. */
export async function readBinaryFile(path: string):
  Promise<{content: string; stat: BigIntStats} | {failed: 'open' | 'read'; error: unknown}> {
  let handle: fsp.FileHandle
  try {
    handle = await fsp.open(pathBytes(path), 'r')
  } catch (error) {
    return {failed: 'open', error}
  }
  try {
    const stat = await handle.stat({bigint: true})
    const content = (await handle.readFile()).toString('latin1')
    return {content, stat}
  } catch (error) {
    return {failed: 'read', error}
  } finally {
    await handle.close()
  }
}

/**
 * Postfix dict_file_to_b64() for DICT_FLAG_SRC_RHS_IS_FILE (postmap -F): the value names
 * one or more files (comma/space separated); the result is the BASE64 encoding of their
 * contents joined by newlines. Returns {error} with Postfix's message on failure.
 */
export async function filesToBase64(pathnames: string): Promise<{value: string} | {error: string}> {
  const names = pathnames.split(/[, \t\r\n]+/).filter((n) => n.length > 0)
  if (names.length === 0) return {error: `empty pathname list: >>${pathnames}<<'`}
  const parts: Buffer[] = []
  for (let i = 0; i < names.length; i++) {
    const name = names[i]
    let handle: fsp.FileHandle
    try {
      handle = await fsp.open(pathBytes(name), 'r')
    } catch (err) {
      return {error: `open ${name}: ${strerror(err)}`}
    }
    try {
      parts.push(await handle.readFile())
    } catch (err) {
      return {error: `read ${name}: ${strerror(err)}`}
    } finally {
      await handle.close()
    }
    if (i + 1 < names.length) parts.push(Buffer.from('\n'))
  }
  return {value: Buffer.concat(parts).toString('base64')}
}
