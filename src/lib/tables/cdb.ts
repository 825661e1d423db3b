// cdb:/path — D. J. Bernstein's constant database, file `/path.cdb` (Postfix dict_cdb.c,
// which uses tinycdb). Postfix opens cdb for queries only with O_RDONLY, and creates a
// whole new file (`.cdb.tmp`, then rename) with O_TRUNC, which is what `writeCdb()` below
// does for `postmap`-like callers. Beyond Postfix, a table opened for writing (proxywrite,
// `proxymap update|delete cdb:FILE`) takes updates and deletes by rebuilding the whole file
// the same way (see WritableCdbTable), so that a cdb file is never inconsistent.
//
// File format (little-endian u32 throughout):
//   2048-byte header: 256 × (position, slot count) of the hash tables
//   records:          key length, value length, key bytes, value bytes
//   256 hash tables:  slots of (hash, record position); position 0 = empty slot
// A key's hash is djb's h = 5381; h = (h * 33) ^ byte; its table is h & 255 and its first
// slot (h >>> 8) % slot count, probing linearly with wrap-around.

import {promises as fsp} from 'node:fs'
import * as pathModule from 'node:path'
import {DICT_FLAG} from '../protocol/constants.js'
import {activateUtf8, lowercaseAscii, needUtf8Activation} from './fold.js'
import {FileStamp, fileChanged, pathBytes, readBinaryFile, stampOf, strerror} from './source-file.js'
import {OpenOptions, SequenceCursor, SequenceFunction, Table, TableError, TableLog, TableType} from './table.js'
import {
  bytes, copyOwnership, GroupCommit, lockFileUnderPath, noOverwrite, PendingWrite, reasonOf, settleDuplicate, syncDirectory, text,
  tryNulConventions, warnIfOlderThanSource, withNulDefaults,
} from './file-db.js'

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

/**
 * Every record of cdb bytes `db` in file order, as byte strings: the records run from the
 * header to the first hash table. Throws on a damaged file.
 */
export function* cdbRecords(db: Buffer): Generator<[key: string, value: string]> {
  if (db.length < HEADER_SIZE) throw new RangeError('file is shorter than a cdb header')
  let end = db.length
  for (let i = 0; i < 256; i++) end = Math.min(end, db.readUInt32LE(i * 8))
  for (let pos = HEADER_SIZE; pos < end;) {
    if (pos + 8 > end) throw new RangeError('record header extends past the records')
    const klen = db.readUInt32LE(pos)
    const vlen = db.readUInt32LE(pos + 4)
    const keyStart = pos + 8
    if (keyStart + klen + vlen > end) throw new RangeError('record extends past the records')
    yield [db.toString('latin1', keyStart, keyStart + klen), db.toString('latin1', keyStart + klen, keyStart + klen + vlen)]
    pos = keyStart + klen + vlen
  }
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
 * As Postfix, the .tmp file is opened without O_TRUNC and locked exclusively first, so
 * that a concurrent postmap or proxywrite rewrite of the same table is waited for.
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
  const handle = await lockFileUnderPath(tmpPath, true, () => false, path + CDB_SUFFIX)
  try {
    if (options.mode !== undefined) await handle.chmod(options.mode)
    await handle.truncate(0)
    await handle.write(bytes, 0, bytes.length, 0)
    await handle.sync()
    await fsp.rename(pathBytes(tmpPath), pathBytes(path + CDB_SUFFIX))
  } finally {
    await handle.close() // (releases the lock, after the rename as Postfix)
  }
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
    protected db: Buffer,
    protected stamp: FileStamp,
    dictFlags: number,
  ) {
    this.flags = withNulDefaults(dictFlags) | DICT_FLAG.FIXED
  }

  lookup(key: string): string | undefined | Promise<string | undefined> {
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

  /**
   * Records in file order, as Postfix >= 3.10 sequences a cdb (tinycdb's cdb_seqnext);
   * keys and values end at their first NUL, as the C strings Postfix returns. 3.7's cdb
   * has no sequence; we give one to every client.
   */
  sequence(fn: SequenceFunction, cursor: SequenceCursor): readonly [string, string] | undefined {
    let state = cursor.state as CdbSequenceState | undefined
    if (fn === 'first') cursor.state = state = {table: this, db: this.db, records: cdbRecords(this.db)}
    if (state?.table !== this) return undefined
    let next: IteratorResult<[string, string]>
    try {
      next = state.records.next()
    } catch (err) {
      cursor.state = undefined
      throw new TableError('retry', `error seeking ${this.name}: ${(err as Error).message}`)
    }
    if (next.done) {
      cursor.state = undefined
      return undefined
    }
    const [key, value] = next.value
    return [cString(key), cString(value)]
  }

  changed(): boolean {
    return fileChanged(this.name, this.stamp)
  }

  watchedFile(): {path: string; stamp: FileStamp} {
    return {path: this.name, stamp: this.stamp}
  }
}

interface CdbSequenceState {
  table: CdbTable
  /** The file as it was when the sequence began (a reopened table has a new buffer). */
  db: Buffer
  records: Generator<[string, string]>
}

function cString(s: string): string {
  const nul = s.indexOf('\0')
  return nul < 0 ? s : s.slice(0, nul)
}

/**
 * The entries of a cdb table being rewritten, keyed by their stored bytes (keys keep their
 * trailing NUL, if the file has them); a Map keeps the file's order, new keys at the end.
 */
type CdbEntries = Map<string, string>

/** A rewrite in progress: the locked `.cdb.tmp` and the entries it will receive. */
interface CdbRewrite {
  tmp: fsp.FileHandle
  entries: CdbEntries
}

/**
 * A cdb table opened for writing. cdb files cannot change in place, so a change is a new
 * file, made as Postfix's create mode makes one: `path.cdb.tmp` opened without O_TRUNC and
 * locked exclusively (flock(), the lock postmap takes on it, re-checked after it is granted
 * because the previous holder renames that file away), filled with the current entries of
 * `path.cdb` (read once the lock is ours, so a table rebuilt by postmap meanwhile is the
 * base) changed by the writes, fsync()ed and renamed over `path.cdb`; the lock goes with
 * the descriptor. Readers, Postfix's included, see the old file or the new one, never a
 * partial one, whenever the writer is killed.
 * - SYNC_UPDATE (proxywrite): group commit — the writes queued while a rewrite runs are
 *   applied together by the next one, and each is answered after its rename.
 * - otherwise (`proxymap update|delete` on the file, as postmap): the rewrite starts with
 *   the first write, keeps the .tmp lock, and is renamed into place at close().
 */
export class WritableCdbTable extends CdbTable {
  private readonly commits = new GroupCommit<CdbEntries>((group) => this.commitGroup(group))
  private rewrite: Promise<CdbRewrite> | undefined
  private closed = false
  /** The entries of the file we renamed into place last, while the name still holds it. */
  private written: {stamp: FileStamp; entries: CdbEntries} | undefined

  constructor(private readonly path: string, name: string, db: Buffer, stamp: FileStamp, dictFlags: number, private readonly log: TableLog) {
    super(name, db, stamp, dictFlags)
  }

  override lookup(key: string): string | undefined | Promise<string | undefined> {
    if (!this.rewrite) return super.lookup(key)
    // Writes not yet renamed into place are seen by this table's own lookups.
    return this.rewrite.then(({entries}) => {
      if (this.flags & DICT_FLAG.FOLD_FIX) key = lowercaseAscii(key)
      const found = tryNulConventions(this, key, (k) => entries.get(k))
      return found === undefined ? undefined : text(Buffer.from(found, 'latin1'))
    })
  }

  update(key: string, value: string): boolean | Promise<boolean> {
    if (this.flags & DICT_FLAG.FOLD_FIX) key = lowercaseAscii(key)
    const nul = this.nulForCdbUpdate()
    const keepExisting = noOverwrite(this.flags)
    const put = (entries: CdbEntries): boolean => {
      if (keepExisting && entries.has(key + nul)) return false
      entries.set(key + nul, value + nul)
      return true
    }
    return settleDuplicate(this.write(put), this, this.name, key, this.log)
  }

  delete(key: string): boolean | Promise<boolean> {
    if (this.flags & DICT_FLAG.FOLD_FIX) key = lowercaseAscii(key)
    return this.write((entries) => tryNulConventions(this, key, (k) => entries.delete(k)) === true)
  }

  /** Postfix creates cdb files without NULs (dict_cdbm_open picks TRY0NULL when undecided). */
  private nulForCdbUpdate(): string {
    if ((this.flags & DICT_FLAG.TRY1NULL) && (this.flags & DICT_FLAG.TRY0NULL)) this.flags &= ~DICT_FLAG.TRY1NULL
    return this.flags & DICT_FLAG.TRY1NULL ? '\0' : ''
  }

  private write(change: (entries: CdbEntries) => boolean): Promise<boolean> {
    if (this.closed) return Promise.reject(new TableError('retry', `${this.name}: table is closed`))
    if (this.flags & DICT_FLAG.SYNC_UPDATE) return this.commits.submit(change)
    return this.beginRewrite().then(({entries}) => change(entries))
  }

  private beginRewrite(): Promise<CdbRewrite> {
    if (!this.rewrite) {
      const started = this.startRewrite()
      this.rewrite = started
      // A rewrite that could not start (lock, unreadable file) leaves nothing behind.
      started.catch(() => {
        if (this.rewrite === started) this.rewrite = undefined
      })
    }
    return this.rewrite
  }

  private async startRewrite(): Promise<CdbRewrite> {
    const tmp = await lockFileUnderPath(this.path + CDB_TMP_SUFFIX, true, () => this.closed, this.name)
    try {
      return {tmp, entries: await this.currentEntries()}
    } catch (err) {
      await tmp.close()
      throw err
    }
  }

  /** The entries of the file under the name now; the first of duplicate keys wins, as in lookups. */
  private async currentEntries(): Promise<CdbEntries> {
    // Taken by this rewrite, which changes them: kept again only once it is in place.
    const written = this.written
    this.written = undefined
    if (written && !fileChanged(this.name, written.stamp)) return written.entries
    const entries: CdbEntries = new Map()
    const file = await readBinaryFile(this.name)
    if ('failed' in file) {
      if ((file.error as NodeJS.ErrnoException).code === 'ENOENT') return entries
      throw new TableError('retry', `open database ${this.name}: ${strerror(file.error)}`)
    }
    try {
      for (const [k, v] of cdbRecords(Buffer.from(file.content, 'latin1'))) if (!entries.has(k)) entries.set(k, v)
    } catch (err) {
      throw new TableError('retry', `error reading ${this.name}: ${(err as Error).message}`)
    }
    return entries
  }

  private async commitGroup(group: PendingWrite<CdbEntries>[]): Promise<void> {
    const rewrite = await this.beginRewrite()
    const results = group.map((w) => {
      try {
        return {ok: true as const, value: w.apply(rewrite.entries)}
      } catch (error) {
        return {ok: false as const, error}
      }
    })
    await this.finishRewrite()
    results.forEach((r, i) => (r.ok ? group[i].resolve(r.value) : group[i].reject(r.error)))
  }

  /** Write, sync and rename the .tmp into place; the lock is released in every case. */
  private async finishRewrite(): Promise<void> {
    const pending = this.rewrite
    if (!pending) return
    this.rewrite = undefined
    const {tmp, entries} = await pending
    try {
      const content = encodeCdb(entries)
      const previous = await fsp.stat(pathBytes(this.name), {bigint: true}).catch(() => undefined)
      await tmp.truncate(0)
      await tmp.write(content, 0, content.length, 0)
      if (previous) await copyOwnership(tmp, previous)
      await tmp.sync()
      await fsp.rename(pathBytes(this.path + CDB_TMP_SUFFIX), pathBytes(this.name))
      await syncDirectory(pathModule.dirname(this.name))
      this.db = content
      this.stamp = stampOf(await tmp.stat({bigint: true}))
      this.written = {stamp: this.stamp, entries}
    } catch (err) {
      if (err instanceof TableError) throw err
      throw new TableError('retry', `${this.name}: flush dictionary: ${reasonOf(err)}`)
    } finally {
      await tmp.close() // (releases the lock)
    }
  }

  override changed(): boolean {
    return !this.rewrite && super.changed()
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.finishRewrite()
  }
}

/**
 * Open as dict_cdb_open() does for O_RDONLY; for writing (Postfix refuses: it has no
 * run-time update for cdb), a WritableCdbTable, whose file need not exist yet.
 */
export const cdbType: TableType = {
  type: 'cdb',
  async open(path: string, options: OpenOptions): Promise<Table> {
    const cdbPath = path + CDB_SUFFIX
    const file = await readBinaryFile(cdbPath)
    let table: CdbTable
    if (options.mode === 'write') {
      const missing = 'failed' in file && (file.error as NodeJS.ErrnoException).code === 'ENOENT'
      if ('failed' in file && !missing) throw new TableError('retry', `open database ${cdbPath}: ${strerror(file.error)}`)
      const content = 'failed' in file ? encodeCdb([]) : Buffer.from(file.content, 'latin1')
      const stamp = 'failed' in file ? {dev: 0n, ino: 0n, size: 0n, mtimeNs: 0n} : stampOf(file.stat)
      table = new WritableCdbTable(path, cdbPath, content, stamp, options.dictFlags, options.log)
    } else {
      if ('failed' in file) throw new TableError('retry', `open database ${cdbPath}: ${strerror(file.error)}`)
      await warnIfOlderThanSource(cdbPath, file.stat.mtimeNs, path, options.log)
      table = new CdbTable(cdbPath, Buffer.from(file.content, 'latin1'), stampOf(file.stat), options.dictFlags)
    }
    if (needUtf8Activation(options.config, options.dictFlags)) activateUtf8(table, options.log)
    return table
  },
}
