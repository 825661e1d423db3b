// Reading table source text the way postmap(1) and the file-based pattern tables do
// (Postfix readlline.c, dict_file.c), plus the bits of file bookkeeping they share.
// Files are read as bytes: the text is a latin1 "binary" string, one char per byte.
// The text helpers themselves live in ../util/source-text.ts (the approval lists read
// /file/name elements with them too).

import {promises as fsp, statSync, BigIntStats} from 'node:fs'
import {pathBytes, strerror} from '../util/source-text.js'

export {cString, logicalLines, pathBytes, strerror, type LogicalLine} from '../util/source-text.js'

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

/** The same file (identity), with the same size and mtime. */
export const sameStamp = (a: FileStamp, b: FileStamp): boolean =>
  a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs

/** True when `path` no longer is the file described by `stamp` (or cannot be examined). */
export function fileChanged(path: string, stamp: FileStamp): boolean {
  let st: BigIntStats
  try {
    st = statSync(pathBytes(path), {bigint: true})
  } catch {
    return true
  }
  return !sameStamp(stampOf(st), stamp)
}

/**
 * The files our proxywrite has last put in place of a table by a rename (path → inode).
 * Postfix's proxywrite updates hash and btree files in place, which its proxymap sees as a
 * new mtime, not as a file gone; ours renames a copy over the table, and the read service
 * tells the two apart with this.
 */
const ownReplacements = new Map<string, bigint>()

export function noteOwnReplacement(path: string, ino: bigint): void {
  ownReplacements.set(path, ino)
}

export function isOwnReplacement(path: string, ino: bigint): boolean {
  return ownReplacements.get(path) === ino
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
