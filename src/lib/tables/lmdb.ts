// lmdb:/path — an OpenLDAP LMDB file `/path.lmdb` (Postfix dict_lmdb.c over slmdb.c),
// through the npm `lmdb` package (lmdb-js).
//
// Postfix links LMDB 0.9.x, whose on-disk format ("data format v1") differs from the
// LMDB 1.0 format that lmdb-js's prebuilt binaries use; those crash on Postfix files. The
// project's .npmrc therefore makes `npm ci` compile lmdb-js from source with its bundled
// LMDB 0.9.29 (build_from_source=true, use_data_v1=true). `loadLmdb()` below refuses to
// open a table with any other build rather than crash the process.
//
// What Postfix does and what we do:
// - file: a single file (MDB_NOSUBDIR), the unnamed database, map size lmdb_map_size (or
//   the file's size when larger); keys and values carry a trailing NUL when Postfix
//   wrote them (TRY1NULL), and lookups try with, then without, one.
// - locking: Postfix opens with MDB_NOLOCK and serialises readers and writers with fcntl()
//   locks on the .lmdb file itself. lmdb-js cannot open with MDB_NOLOCK, so LMDB's own
//   lock file `/path.lmdb-lock` appears next to the table, and Node offers no fcntl()
//   locks: our reads and writes are not serialised against a concurrent postmap/postfix
//   writer (LMDB's copy-on-write keeps each of our transactions consistent with respect to
//   our own writers; a concurrent Postfix writer that reuses pages we are reading can make
//   one of our reads see stale or wrong data, never a damaged file). Our own writes are
//   single LMDB transactions, committed before update()/delete() return, as Postfix does.

import {createRequire} from 'node:module'
import {promises as fsp, statSync} from 'node:fs'
import * as pathModule from 'node:path'
import {DICT_FLAG} from '../protocol/constants.js'
import {activateUtf8, lowercaseAscii, needUtf8Activation} from './fold.js'
import {cString, FileStamp, fileChanged, pathBytes, stampOf, strerror} from './source-file.js'
import {warnIfOlderThanSource} from './cdb.js'
import {OpenOptions, SequenceCursor, SequenceFunction, Table, TableError, TableType} from './table.js'

type LmdbModule = typeof import('lmdb')
type LmdbDatabase = import('lmdb').RootDatabase<Buffer, Buffer>

export const LMDB_SUFFIX = '.lmdb'
/** Postfix's default lmdb_map_size. */
const DEFAULT_MAP_SIZE = 16 * 1024 * 1024
/** slmdb's allowance over the file size when the file is larger than the map size. */
const SLMDB_FUDGE = 10240

let lmdbModule: Promise<LmdbModule> | undefined

/**
 * Load lmdb-js on first use, and check that its native part speaks LMDB 0.9 (data format
 * v1): LMDB 0.9.x reports patch levels below 90, lmdb-js's own LMDB 1.0 branch 0.9.9x.
 */
async function loadLmdb(): Promise<LmdbModule> {
  lmdbModule ??= import('lmdb').then((mod) => {
    const version = (mod as unknown as {version?: {major: number; minor: number; patch: number}}).version
    if (!version || version.major !== 0 || version.minor !== 9 || version.patch >= 90) {
      const where = (() => {
        try {
          return pathModule.dirname(createRequire(import.meta.url).resolve('lmdb'))
        } catch {
          return 'node_modules/lmdb'
        }
      })()
      throw new TableError('config',
        `lmdb support needs the lmdb package built for LMDB data format v1 (found LMDB ` +
        `${version ? `${version.major}.${version.minor}.${version.patch}` : 'unknown'} in ${where}); ` +
        'rebuild it with: LMDB_DATA_V1=true npm rebuild lmdb --build-from-source')
    }
    return mod
  })
  return lmdbModule
}

/** The unnamed database of one LMDB environment, shared by all tables open on one file. */
interface SharedEnv {
  db: LmdbDatabase
  users: number
}
const openEnvs = new Map<string, SharedEnv>()
const envKey = (mdbPath: string, readOnly: boolean): string => `${readOnly ? 'r' : 'w'}:${mdbPath}`

interface LmdbSequenceState {
  table: LmdbTable
  /** The raw key returned last; `next` continues after it. */
  last: Buffer
}

const bytes = (s: string): Buffer => Buffer.from(s, 'latin1')
const text = (b: Buffer): string => cString(b.toString('latin1'))

export class LmdbTable implements Table {
  readonly type = 'lmdb'
  flags: number
  private stamp: FileStamp | undefined
  private closed = false

  constructor(
    readonly name: string,
    private readonly mdbPath: string,
    private readonly db: LmdbDatabase,
    private readonly readOnly: boolean,
    dictFlags: number,
    stamp: FileStamp | undefined,
  ) {
    this.flags = dictFlags | DICT_FLAG.FIXED | DICT_FLAG.MULTI_WRITER
    if ((dictFlags & (DICT_FLAG.TRY0NULL | DICT_FLAG.TRY1NULL)) === 0) this.flags |= DICT_FLAG.TRY0NULL | DICT_FLAG.TRY1NULL
    this.stamp = stamp
  }

  private fold(key: string): string {
    return this.flags & DICT_FLAG.FOLD_FIX ? lowercaseAscii(key) : key
  }

  private fail(what: string, err: unknown): never {
    if (err instanceof TableError) throw err
    // Postfix: msg_fatal("error reading lmdb:NAME: %s"); the proxymap client retries.
    throw new TableError('retry', `${what} ${this.type}:${this.name}: ${(err as Error).message}`)
  }

  /** LMDB refuses empty keys; such a key is simply not there. */
  private get(key: string): Buffer | undefined {
    if (key.length === 0) return undefined
    return this.db.getBinary(bytes(key))
  }

  lookup(key: string): string | undefined {
    key = this.fold(key)
    try {
      let found: Buffer | undefined
      if (this.flags & DICT_FLAG.TRY1NULL) {
        found = this.get(key + '\0')
        if (found) this.flags &= ~DICT_FLAG.TRY0NULL
      }
      if (!found && (this.flags & DICT_FLAG.TRY0NULL)) {
        found = this.get(key)
        if (found) this.flags &= ~DICT_FLAG.TRY1NULL
      }
      return found ? text(found) : undefined
    } catch (err) {
      this.fail('error reading', err)
    }
  }

  /**
   * dict_lmdb_update(): with both NUL conventions still open, a new file gets Postfix's
   * platform default (Linux: with NUL); an existing key is replaced only with DUP_REPLACE,
   * otherwise DUP_IGNORE ignores it, DUP_WARN warns, and none of them is an error.
   */
  update(key: string, value: string): boolean {
    key = this.fold(key)
    if ((this.flags & DICT_FLAG.TRY1NULL) && (this.flags & DICT_FLAG.TRY0NULL)) this.flags &= ~DICT_FLAG.TRY0NULL
    const nul = this.flags & DICT_FLAG.TRY1NULL ? '\0' : ''
    const k = bytes(key + nul)
    const v = bytes(value + nul)
    const replace = (this.flags & DICT_FLAG.DUP_REPLACE) !== 0
    let stored: boolean
    try {
      stored = this.db.transactionSync(() => {
        if (!replace && this.db.getBinary(k) !== undefined) return false
        void this.db.put(k, v)
        return true
      })
    } catch (err) {
      this.fail('error updating', err)
    }
    this.refreshStamp()
    if (stored) return true
    if (this.flags & DICT_FLAG.DUP_IGNORE) return false
    const message = `${this.type}:${this.name}: duplicate entry: "${key}"`
    if (this.flags & DICT_FLAG.DUP_WARN) {
      this.log?.warning(message)
      return false
    }
    throw new TableError('config', message)
  }

  /** Where update() reports duplicates (set by the opener). */
  log?: OpenOptions['log']

  delete(key: string): boolean {
    key = this.fold(key)
    const remove = (k: string): boolean =>
      k.length > 0 && this.db.transactionSync(() => this.db.getBinary(bytes(k)) !== undefined && (void this.db.remove(bytes(k)), true))
    let removed = false
    try {
      if (this.flags & DICT_FLAG.TRY1NULL) {
        removed = remove(key + '\0')
        if (removed) this.flags &= ~DICT_FLAG.TRY0NULL
      }
      if (!removed && (this.flags & DICT_FLAG.TRY0NULL)) {
        removed = remove(key)
        if (removed) this.flags &= ~DICT_FLAG.TRY1NULL
      }
    } catch (err) {
      this.fail('error deleting from', err)
    }
    if (removed) this.refreshStamp()
    return removed
  }

  /**
   * MDB_FIRST / MDB_NEXT in key (byte) order. Postfix keeps one LMDB cursor per table;
   * each of our callers has its own position instead: the last key it was given, from
   * which `next` continues in a fresh read, so that updates in between are seen as
   * Postfix's own cursor would see them (after a write, slmdb re-seeks the saved key).
   * Keys and values are returned as C strings (up to the first NUL), as Postfix does.
   */
  sequence(fn: SequenceFunction, cursor: SequenceCursor): readonly [string, string] | undefined {
    let state = cursor.state as LmdbSequenceState | undefined
    if (fn === 'next' && state?.table !== this) return undefined
    let entry: {key: Buffer; value: Buffer} | undefined
    try {
      const range = fn === 'first' || !state
        ? this.db.getRange({limit: 1})
        : this.db.getRange({start: state.last, limit: 2})
      for (const e of range) {
        if (fn === 'next' && state && Buffer.compare(e.key, state.last) <= 0) continue
        entry = {key: Buffer.from(e.key), value: Buffer.from(e.value)}
        break
      }
    } catch (err) {
      this.fail('error seeking', err)
    }
    if (!entry) {
      if (state?.table === this) cursor.state = undefined
      return undefined
    }
    state = {table: this, last: entry.key}
    cursor.state = state
    return [text(entry.key), text(entry.value)]
  }

  private refreshStamp(): void {
    // Our own writes do not make the table "changed" for the process that made them.
    if (this.stamp) this.stamp = statStamp(this.mdbPath) ?? this.stamp
  }

  changed(): boolean {
    return this.stamp !== undefined && fileChanged(this.mdbPath, this.stamp)
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    const key = envKey(this.mdbPath, this.readOnly)
    const shared = openEnvs.get(key)
    if (shared && shared.db === this.db && --shared.users === 0) {
      openEnvs.delete(key)
      await this.db.close()
    }
  }
}

function statStamp(path: string): FileStamp | undefined {
  try {
    return stampOf(statSync(pathBytes(path), {bigint: true}))
  } catch {
    return undefined
  }
}

/** The map size Postfix would use: lmdb_map_size, or a little over the file's size. */
function mapSizeFor(configured: string, fileSize: number): number {
  let size = Number.parseInt(configured, 10)
  if (!Number.isFinite(size) || size <= 0) size = DEFAULT_MAP_SIZE
  if (size < SLMDB_FUDGE) size = SLMDB_FUDGE
  return fileSize > size - SLMDB_FUDGE ? fileSize + SLMDB_FUDGE : size
}

/**
 * Open as dict_lmdb_open() does: read mode needs an existing file; write mode
 * (proxywrite, update, delete) creates it. A failed open is a retry error with Postfix's
 * "open database X.lmdb: reason" text (the registry substitutes a surrogate table).
 * Tables on one file and in one mode share one lmdb-js environment (LMDB advises against
 * opening one file twice in a process; a read-only and a read-write open still do).
 */
export const lmdbType: TableType = {
  type: 'lmdb',
  async open(path: string, options: OpenOptions): Promise<Table> {
    const lmdb = await loadLmdb()
    const mdbPath = path + LMDB_SUFFIX
    let fileSize = 0
    let stamp: FileStamp | undefined
    try {
      const st = await fsp.stat(pathBytes(mdbPath), {bigint: true})
      fileSize = Number(st.size)
      stamp = stampOf(st)
      if (options.dictFlags & DICT_FLAG.LOCK) await warnIfOlderThanSource(mdbPath, st.mtimeNs, path, options.log)
    } catch (err) {
      // lmdb-js would create missing directories; Postfix fails instead.
      const missing = (err as NodeJS.ErrnoException).code === 'ENOENT'
      if (!missing || options.mode === 'read') throw new TableError('retry', `open database ${mdbPath}: ${strerror(err)}`)
      try {
        await fsp.access(pathBytes(pathModule.dirname(mdbPath)))
      } catch (dirErr) {
        throw new TableError('retry', `open database ${mdbPath}: ${strerror(dirErr)}`)
      }
    }

    const readOnly = options.mode === 'read'
    const key = envKey(mdbPath, readOnly)
    let shared = openEnvs.get(key)
    if (!shared) {
      let db: LmdbDatabase
      try {
        db = lmdb.open<Buffer, Buffer>({
          path: mdbPath,
          noSubdir: true,
          readOnly,
          keyEncoding: 'binary',
          encoding: 'binary',
          cache: false,
          compression: false,
          mapSize: mapSizeFor(options.config.get('lmdb_map_size'), fileSize),
        })
      } catch (err) {
        throw new TableError('retry', `open database ${mdbPath}: ${strerror(err)}`)
      }
      // (another open may have raced us across the awaits above)
      shared = openEnvs.get(key) ?? {db, users: 0}
      openEnvs.set(key, shared)
      if (shared.db !== db) await db.close()
    }
    shared.users++
    if (!stamp) stamp = statStamp(mdbPath)
    const table = new LmdbTable(path, mdbPath, shared.db, readOnly, options.dictFlags, stamp)
    table.log = options.log
    if (needUtf8Activation(options.config, options.dictFlags)) activateUtf8(table, options.log)
    return table
  },
}
