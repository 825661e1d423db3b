// cdb:/path — D. J. Bernstein's constant database, file `/path.cdb` (Postfix dict_cdb.c,
// which uses tinycdb). Read-only at run time: Postfix opens cdb for queries only with
// O_RDONLY, and creates a whole new file (`.cdb.tmp`, then rename) with O_TRUNC, which is
// what `writeCdb()` below does for `postmap`-like callers.
//
// File format (little-endian u32 throughout):
//   2048-byte header: 256 × (position, slot count) of the hash tables
//   records:          key length, value length, key bytes, value bytes
//   256 hash tables:  slots of (hash, record position); position 0 = empty slot
// A key's hash is djb's h = 5381; h = (h * 33) ^ byte; its table is h & 255 and its first
// slot (h >>> 8) % slot count, probing linearly with wrap-around.

import {promises as fsp} from 'node:fs'
import {DICT_FLAG} from '../protocol/constants.js'
import {activateUtf8, lowercaseAscii, needUtf8Activation} from './fold.js'
import {FileStamp, fileChanged, pathBytes, readBinaryFile, stampOf, strerror} from './source-file.js'
import {OpenOptions, Table, TableError, TableLog, TableType} from './table.js'
import {bytes, text, tryNulConventions, warnIfOlderThanSource, withNulDefaults} from './file-db.js'

// Shared with hash, btree and lmdb; still exported from here, where it was first defined.
export {warnIfOlderThanSource} from './file-db.js'

export const CDB_SUFFIX = '.cdb'
export const CDB_TMP_SUFFIX = '.cdb.tmp'

const HEADER_SIZE = 2048

/** djb's cdb hash of a byte string. */
export function cdbHash(key: Buffer): number {
  let h = 5381
  for (let i = 0; i < key.length; i++) h = (((h << 5) + h) ^ key[i]) >>> 0
  return h
}

/** Find `key` in cdb bytes `db`: the value bytes, or undefined. Throws on a damaged file. */
export function cdbFind(db: Buffer, key: Buffer): Buffer | undefined {
  if (db.length < HEADER_SIZE) throw new RangeError('file is shorter than a cdb header')
  const h = cdbHash(key)
  const tablePos = db.readUInt32LE((h & 255) * 8)
  const slots = db.readUInt32LE((h & 255) * 8 + 4)
  if (slots === 0) return undefined
  let slot = (h >>> 8) % slots
  for (let probes = 0; probes < slots; probes++) {
    const slotPos = tablePos + slot * 8
    const slotHash = db.readUInt32LE(slotPos)
    const recordPos = db.readUInt32LE(slotPos + 4)
    if (recordPos === 0) return undefined
    if (slotHash === h) {
      const klen = db.readUInt32LE(recordPos)
      const vlen = db.readUInt32LE(recordPos + 4)
      const keyStart = recordPos + 8
      if (klen === key.length) {
        if (keyStart + klen + vlen > db.length) throw new RangeError('record extends past the end of the file')
        if (db.compare(key, 0, klen, keyStart, keyStart + klen) === 0)
          return db.subarray(keyStart + klen, keyStart + klen + vlen)
      }
    }
    if (++slot === slots) slot = 0
  }
  return undefined
}

/** Encode entries (byte strings) as a complete cdb file. Entries are stored as given. */
export function encodeCdb(entries: Iterable<readonly [string, string]>): Buffer {
  const records: Buffer[] = []
  const buckets: {hash: number; pos: number}[][] = Array.from({length: 256}, () => [])
  let pos = HEADER_SIZE
  for (const [key, value] of entries) {
    const k = Buffer.from(key, 'latin1')
    const v = Buffer.from(value, 'latin1')
    const record = Buffer.allocUnsafe(8 + k.length + v.length)
    record.writeUInt32LE(k.length, 0)
    record.writeUInt32LE(v.length, 4)
    k.copy(record, 8)
    v.copy(record, 8 + k.length)
    const hash = cdbHash(k)
    buckets[hash & 255].push({hash, pos})
    records.push(record)
    pos += record.length
    if (pos > 0xffffffff) throw new RangeError('cdb file would exceed 4 GiB')
  }
  const header = Buffer.alloc(HEADER_SIZE)
  const tables: Buffer[] = []
  for (let i = 0; i < 256; i++) {
    const bucket = buckets[i]
    const slots = bucket.length * 2
    header.writeUInt32LE(pos, i * 8)
    header.writeUInt32LE(slots, i * 8 + 4)
    if (slots === 0) continue
    const table = Buffer.alloc(slots * 8)
    for (const {hash, pos: recordPos} of bucket) {
      let slot = (hash >>> 8) % slots
      while (table.readUInt32LE(slot * 8 + 4) !== 0) if (++slot === slots) slot = 0
      table.writeUInt32LE(hash, slot * 8)
      table.writeUInt32LE(recordPos, slot * 8 + 4)
    }
    tables.push(table)
    pos += table.length
    if (pos > 0xffffffff) throw new RangeError('cdb file would exceed 4 GiB')
  }
  return Buffer.concat([header, ...records, ...tables])
}

export interface WriteCdbOptions {
  /**
   * Dict flags as for Postfix's create-mode cdb: FOLD_FIX lowercases keys (ASCII);
   * TRY1NULL without TRY0NULL appends a NUL to keys and values (default: no NUL, as
   * Postfix); DUP_REPLACE keeps the last of duplicate keys, DUP_IGNORE the first, DUP_WARN
   * the first with a warning, and none of these makes a duplicate an error (thrown).
   */
  dictFlags?: number
  log?: TableLog
  /** Mode of a newly created file (Postfix: 0644). */
  mode?: number
}

/**
 * Create `path.cdb` from `entries` as Postfix's create-mode cdb does: write
 * `path.cdb.tmp`, then rename it over `path.cdb`, so that readers see either the old or
 * the new file, never a partial one. Keys and values are byte strings (no NUL inside).
 * Postfix also takes an exclusive lock on the .tmp file against a concurrent postmap; Node
 * has no flock(), so two concurrent writers of one table are not kept apart here.
 */
export async function writeCdb(path: string, entries: Iterable<readonly [string, string]>, options: WriteCdbOptions = {}): Promise<void> {
  const flags = options.dictFlags ?? 0
  const appendNull = (flags & DICT_FLAG.TRY1NULL) !== 0 && (flags & DICT_FLAG.TRY0NULL) === 0
  const unique = new Map<string, string>()
  for (const [rawKey, value] of entries) {
    const key = flags & DICT_FLAG.FOLD_FIX ? lowercaseAscii(rawKey) : rawKey
    if (unique.has(key)) {
      if (flags & DICT_FLAG.DUP_REPLACE) unique.set(key, value)
      else if (flags & DICT_FLAG.DUP_IGNORE) continue
      else if (flags & DICT_FLAG.DUP_WARN) options.log?.warning(`${path}: duplicate entry: "${key}"`)
      else throw new TableError('config', `${path}: duplicate entry: "${key}"`)
      continue
    }
    unique.set(key, value)
  }
  const nul = appendNull ? '\0' : ''
  const bytes = encodeCdb([...unique].map(([k, v]) => [k + nul, v + nul] as const))
  const tmpPath = path + CDB_TMP_SUFFIX
  const handle = await fsp.open(pathBytes(tmpPath), 'w', options.mode ?? 0o644)
  try {
    await handle.writeFile(bytes)
    await handle.sync()
  } finally {
    await handle.close()
  }
  await fsp.rename(pathBytes(tmpPath), pathBytes(path + CDB_SUFFIX))
}

/**
 * A cdb file opened for queries. The whole file is read at open: a cdb file is never
 * changed in place (a new one is renamed over it), so, like Postfix, which keeps the old
 * file open, we keep answering from the version we opened until the table is reopened;
 * `changed()` tells when that is due.
 *
 * Keys are looked up with a trailing NUL, then without (TRY1NULL, TRY0NULL: Postfix tries
 * both when the open flags choose neither); the first convention that finds a key is kept
 * for the rest of the table's life, as Postfix does.
 */
export class CdbTable implements Table {
  readonly type = 'cdb'
  flags: number

  constructor(
    /** Postfix names a query-mode cdb table by its file: `path.cdb`. */
    readonly name: string,
    private readonly db: Buffer,
    private readonly stamp: FileStamp,
    dictFlags: number,
  ) {
    this.flags = withNulDefaults(dictFlags) | DICT_FLAG.FIXED
  }

  lookup(key: string): string | undefined {
    if (this.flags & DICT_FLAG.FOLD_FIX) key = lowercaseAscii(key)
    let found: Buffer | undefined
    try {
      found = tryNulConventions(this, key, (k) => cdbFind(this.db, bytes(k)))
    } catch (err) {
      // Postfix: msg_fatal("error reading %s: %m"); a proxymap client gets a retry.
      throw new TableError('retry', `error reading ${this.name}: ${(err as Error).message}`)
    }
    if (!found) return undefined
    // Postfix returns the value as a C string: it ends at its first NUL (the trailing one
    // of a TRY1NULL file, or any embedded one).
    return text(found)
  }

  changed(): boolean {
    return fileChanged(this.name, this.stamp)
  }
}

/**
 * Open as dict_cdb_open() does for O_RDONLY. Postfix has no run-time update, delete or
 * sequence for cdb, and refuses any other open mode (a proxywrite `open` of a cdb table
 * fails); we report that as a configuration error.
 */
export const cdbType: TableType = {
  type: 'cdb',
  async open(path: string, options: OpenOptions): Promise<Table> {
    if (options.mode !== 'read')
      throw new TableError('config', `cdb:${path}: inappropriate open flags for cdb database - specify O_RDONLY or O_WRONLY|O_CREAT|O_TRUNC`)
    const cdbPath = path + CDB_SUFFIX
    const file = await readBinaryFile(cdbPath)
    if ('failed' in file) throw new TableError('retry', `open database ${cdbPath}: ${strerror(file.error)}`)
    await warnIfOlderThanSource(cdbPath, file.stat.mtimeNs, path, options.log)
    const table = new CdbTable(cdbPath, Buffer.from(file.content, 'latin1'), stampOf(file.stat), options.dictFlags)
    if (needUtf8Activation(options.config, options.dictFlags)) activateUtf8(table, options.log)
    return table
  },
}
