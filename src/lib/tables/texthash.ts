// texthash:/path — a postmap(1)-format text file read into memory at open
// (Postfix dict_thash.c on top of the in-memory dict_ht.c, which inline: shares).

import {setTimeout as sleep} from 'node:timers/promises'
import {DICT_FLAG} from '../protocol/constants.js'
import {activateUtf8, allAscii, isValidUtf8, lowercaseAscii, needUtf8Activation} from './fold.js'
import {isSpaceChar, trimSpace} from '../util/chars.js'
import {cString, FileStamp, fileChanged, filesToBase64, logicalLines, readBinaryFile, stampOf, strerror} from './source-file.js'
import {followsPostfix, OpenOptions, SequenceCursor, SequenceFunction, Table, TableError, TableType} from './table.js'

interface HashSequenceState {
  table: InternalHashTable
  keys: string[]
  next: number
}

/**
 * Postfix's "internal" table (dict_ht): an in-memory hash with lookup, update, delete and
 * sequence. Keys are lowercase()d (ASCII only) when the flags at call time include
 * FOLD_FIX; with the UTF-8 layer active that layer casefolds them instead (see fold.ts).
 *
 * Sequence order: Postfix walks its hash buckets, and its string hash is seeded randomly
 * per process, so its order is unspecified. Ours is insertion order (an updated key keeps
 * its place). Each cursor iterates over a snapshot of the keys taken by `first`; keys
 * deleted since then are skipped.
 */
export class InternalHashTable implements Table {
  flags: number
  private readonly entries = new Map<string, string>()

  constructor(readonly type: string, readonly name: string, dictFlags: number) {
    this.flags = dictFlags | DICT_FLAG.FIXED
  }

  get size(): number {
    return this.entries.size
  }

  private fold(key: string): string {
    return this.flags & DICT_FLAG.FOLD_FIX ? lowercaseAscii(key) : key
  }

  lookup(key: string): string | undefined {
    return this.entries.get(this.fold(key))
  }

  update(key: string, value: string): boolean {
    this.entries.set(this.fold(key), value)
    return true
  }

  delete(key: string): boolean {
    return this.entries.delete(this.fold(key))
  }

  sequence(fn: SequenceFunction, cursor: SequenceCursor): readonly [string, string] | undefined {
    let state = cursor.state as HashSequenceState | undefined
    if (fn === 'first') {
      state = {table: this, keys: [...this.entries.keys()], next: 0}
      cursor.state = state
    }
    if (state?.table === this) {
      while (state.next < state.keys.length) {
        const key = state.keys[state.next++]
        const value = this.entries.get(key)
        if (value !== undefined) return [key, value]
      }
    }
    // Like Postfix, 'next' without a sequence in progress (on this table) ends it.
    if (state?.table === this) cursor.state = undefined
    return undefined
  }
}

/** A texthash table: the internal table plus what `changed()` needs to know. */
export class TexthashTable extends InternalHashTable {
  stamp?: FileStamp

  constructor(path: string, dictFlags: number) {
    super('texthash', path, dictFlags)
  }

  changed(): boolean {
    return this.stamp !== undefined && fileChanged(this.name, this.stamp)
  }
}

const now = (): number => Math.floor(Date.now() / 1000)

/**
 * Open as dict_thash_open() does. Keys are folded at load only when the open flags
 * include FOLD_FIX (through the UTF-8 layer when that is active). Duplicate keys follow
 * the open flags: DUP_IGNORE keeps the first, DUP_REPLACE the last, DUP_WARN keeps the
 * first with a warning, and none of them makes the table unavailable (a thrown TableError,
 * which the registry turns into a surrogate), which is what a proxymap `open` request with
 * flags 0 gets. A file modified within the last second is read again after 300 ms, until
 * it has been quiet for a second, as Postfix does to avoid reading a half-written file.
 *
 * `changed()` compares device, inode, size and mtime with the file that was read. (Postfix
 * itself never reports a texthash table as changed: dict_changed_name() only watches
 * tables that keep a file open.)
 */
export const texthashType: TableType = {
  type: 'texthash',
  async open(path: string, options: OpenOptions): Promise<Table> {
    if (options.mode !== 'read')
      throw new TableError('config', `texthash:${path} map requires O_RDONLY access mode`)
    for (let before = now(); ;) {
      const file = await readBinaryFile(path)
      if ('failed' in file) {
        if (file.failed === 'open') throw new TableError('retry', `open database ${path}: ${strerror(file.error)}`)
        throw new TableError('retry', `read ${path}: ${strerror(file.error)}`)
      }
      const table = await loadTexthash(path, file.content, options)
      const after = now()
      const mtime = Number(file.stat.mtimeNs / 1_000_000_000n)
      if (mtime < before - 1 || mtime > after) {
        table.stamp = stampOf(file.stat)
        return table
      }
      await sleep(300)
      before = after
    }
  },
}

async function loadTexthash(path: string, content: string, options: OpenOptions): Promise<TexthashTable> {
  const dictFlags = options.dictFlags
  const table = new TexthashTable(path, dictFlags)
  // Postfix <= 3.10 loads the file through a table that dict_open() gave the UTF-8 layer, so
  // file keys are casefold()ed and non-UTF-8 lines skipped; 3.11 loads it through the bare
  // internal table (file keys lowercase()d, ASCII only) and adds the layer afterwards.
  const layerAfterLoad = followsPostfix(options, 3, 11)
  const utf8 = needUtf8Activation(options.config, dictFlags)
  if (utf8 && !layerAfterLoad) activateUtf8(table, options.log)
  const warn = (message: string): void => options.log.warning(message)

  for (const {text, lineno} of logicalLines(content, path, warn)) {
    const line = cString(text)
    if ((table.flags & DICT_FLAG.UTF8_ACTIVE) && !allAscii(line) && !isValidUtf8(text)) {
      warn(`${path}, line ${lineno}: non-UTF-8 input "${line}" -- ignoring this line`)
      continue
    }

    // The key ends at the first whitespace outside "quotes"; a backslash protects the
    // next character. The key keeps its quotes and backslashes.
    let end = 0
    let inQuotes = false
    for (; end < line.length; end++) {
      const ch = line[end]
      if (ch === '\\') {
        if (++end >= line.length) break
      } else if (isSpaceChar(ch)) {
        if (!inQuotes) break
      } else if (ch === '"') {
        inQuotes = !inQuotes
      }
    }
    if (inQuotes) {
      warn(`${path}, line ${lineno}: unbalanced '"' in '${line}' -- ignoring this line`)
      continue
    }
    const key = line.slice(0, end)
    let value = end < line.length ? trimSpace(line.slice(end + 1)) : ''
    if (key.length === 0 || value.length === 0) {
      warn(`${path}, line ${lineno}: expected format: key whitespace value -- ignoring this line`)
      continue
    }
    if (key.endsWith(':'))
      warn(`${path}, line ${lineno}: record is in "key: value" format; is this an alias file?`)

    if (dictFlags & DICT_FLAG.SRC_RHS_IS_FILE) {
      const encoded = await filesToBase64(value)
      if ('error' in encoded) {
        warn(`${path}, line ${lineno}: ${encoded.error}: skipping this entry`)
        continue
      }
      value = encoded.value
    }

    if (table.lookup(key) !== undefined) {
      if (dictFlags & DICT_FLAG.DUP_IGNORE) {
        // keep the first
      } else if (dictFlags & DICT_FLAG.DUP_REPLACE) {
        table.update(key, value)
      } else if (dictFlags & DICT_FLAG.DUP_WARN) {
        warn(`${path}, line ${lineno}: duplicate entry: "${key}"`)
      } else {
        throw new TableError('config', `${path}, line ${lineno}: duplicate entry: "${key}"`)
      }
    } else {
      table.update(key, value)
    }
  }
  if (utf8 && layerAfterLoad) activateUtf8(table, options.log)
  return table
}
