// Text and file-name helpers shared by the file-based tables and the approval lists:
// Postfix's readllines() (src/util/readlline.c), C strings, strerror() texts. Text is a
// latin1 "binary" string, one char per byte.

import {isSpaceChar} from './chars.js'

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
 *   text) is reported through `warn` and skipped;
 * - with `nullByteWarnings` (Postfix 3.11's readllines()), a NUL byte anywhere in the
 *   physical lines read for a logical line, comment lines included, is reported through
 *   `warn` ("PATH, line N[-M]: text after null byte may be ignored"); with 'per-read', N
 *   and M count from the start of each logical line, as readllines() does for a caller
 *   that keeps no line counter (3.11's reading of /file/name list elements).
 * `path` only names the file in these warnings.
 */
export function* logicalLines(content: string, path: string, warn: (message: string) => void,
  options: {nullByteWarnings?: 'per-file' | 'per-read'} = {}): Generator<LogicalLine> {
  let pos = 0
  let physical = 0
  // Where a caller without a line counter starts counting again: after each line it got.
  let base = 0
  const end = content.length
  for (;;) {
    let buf = ''
    let first = 0
    let gotNull = false
    for (;;) {
      const start = buf.length
      const nl = content.indexOf('\n', pos)
      const atEof = nl < 0
      const piece = atEof ? content.slice(pos) : content.slice(pos, nl)
      pos = atEof ? end : nl + 1
      buf += piece
      if (piece.includes('\0')) gotNull = true
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
    if (gotNull && options.nullByteWarnings) {
      // With nothing but comment lines read, Postfix's first line is the last one read.
      const offset = options.nullByteWarnings === 'per-read' ? base : 0
      const from = (first || physical) - offset
      const to = physical - offset
      warn(`${path}, line ${from === to ? from : `${from}-${to}`}: text after null byte may be ignored`)
    }
    if (buf.length === 0) return
    if (isSpaceChar(buf[0])) {
      warn(`${path}: logical line must not start with whitespace: "${cString(buf).slice(0, 30)}${buf.length > 30 ? '...' : ''}"`)
      continue
    }
    yield {text: buf, lineno: first}
    base = physical
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
