// unionmap:{type:name, type:name, ...} — ask every table, join the results with commas
// (Postfix 3.7 dict_union.c). The list parsing and nested opens are shared with pipemap:.

import {DICT_FLAG} from '../protocol/constants.js'
import {activateUtf8, needUtf8Activation} from './fold.js'
import {balancedLength, splitOutsideBraces} from '../util/postfix-strings.js'
import {OpenOptions, Table, TableError, TableType} from './table.js'

/**
 * The nested tables of `TYPE:{type:name, ...}` as dict_union_open()/dict_pipe_open()
 * find them: read-only access only; the name must be exactly one `{...}` group (braces
 * nest) that is not empty and holds at least one element, elements being separated by
 * commas or whitespace outside braces and kept as written (an element's own braces stay:
 * `inline:{a=b}` is one element). Elements are opened in order, each through
 * `options.openNested` with the same access mode and flags; an element without a colon
 * stops the open there with the syntax error. One spec listed twice is opened once (Postfix
 * shares it through its dict_register() table).
 *
 * Errors thrown by `openNested` propagate unchanged: through the registry, a nested table
 * that fails to open is a surrogate (RETRY on lookup), as in a Postfix daemon; where
 * surrogates are not allowed (postmap) the caller's openNested throws the nested reason.
 */
export async function openNestedList(type: string, name: string, options: OpenOptions): Promise<Table[]> {
  if (options.mode !== 'read')
    throw new TableError('config', `${type}:${name} map requires O_RDONLY access mode`)
  const syntax = (): TableError =>
    new TableError('config', `bad syntax: "${type}:${name}"; need "${type}:{type:name...}"`)
  const len = balancedLength(name)
  if (len === 0 || len !== name.length || len === 2) throw syntax()
  const specs = splitOutsideBraces(name.slice(1, len - 1))
  if (specs.length === 0) throw syntax()

  const tables: Table[] = []
  const opened = new Map<string, Table>()
  for (const spec of specs) {
    const colon = spec.indexOf(':')
    if (colon < 0) {
      await closeAll(tables)
      throw syntax()
    }
    // dict_open() then dict_open3(): an empty type or name is fatal in Postfix.
    if (colon === 0 || colon === spec.length - 1) {
      await closeAll(tables)
      throw new TableError('config', `open dictionary: expecting "type:name" form instead of "${spec}"`)
    }
    let table = opened.get(spec)
    if (!table) {
      try {
        table = await options.openNested(spec, options)
      } catch (err) {
        await closeAll(tables)
        throw err
      }
      opened.set(spec, table)
    }
    tables.push(table)
  }
  return tables
}

async function closeAll(tables: readonly Table[]): Promise<void> {
  for (const t of new Set(tables)) {
    try {
      await t.close?.()
    } catch {
      // closing is best effort
    }
  }
}

/** Shared parts of the tables that are made of other tables. */
export abstract class CompositeTable implements Table {
  abstract readonly type: string
  flags: number

  /**
   * The first table decides whether the whole is FIXED or PATTERN (and so, with the UTF-8
   * layer, whether FOLD_FIX or FOLD_MUL folds the key).
   */
  constructor(readonly name: string, protected readonly tables: readonly Table[], dictFlags: number) {
    this.flags = dictFlags | (tables[0].flags & (DICT_FLAG.FIXED | DICT_FLAG.PATTERN))
  }

  abstract lookup(key: string): Promise<string | undefined>

  /** True when any nested table reports a change. */
  changed(): boolean {
    return this.tables.some((t) => t.changed?.() ?? false)
  }

  async close(): Promise<void> {
    await closeAll(this.tables)
  }
}

/**
 * Looks the key up in every table, in order, and joins the results that were found with
 * commas. As in Postfix an empty result adds nothing to an empty join (no comma before
 * it) but does get a comma after a non-empty one; an all-empty join is "not found". A
 * nested error (thrown TableError, RETRY or CONFIG) fails the whole lookup at once.
 * No update, delete or sequence.
 */
export class UnionTable extends CompositeTable {
  readonly type = 'unionmap'

  async lookup(key: string): Promise<string | undefined> {
    let joined = ''
    for (const table of this.tables) {
      const value = await table.lookup(key)
      if (value === undefined) continue
      if (joined.length > 0) joined += ','
      joined += cString(value)
    }
    return joined.length > 0 ? joined : undefined
  }
}

/** A C string's view of a byte string: everything before the first NUL. */
export function cString(s: string): string {
  const nul = s.indexOf('\0')
  return nul < 0 ? s : s.slice(0, nul)
}

export const unionmapType: TableType = {
  type: 'unionmap',
  async open(name: string, options: OpenOptions): Promise<Table> {
    const tables = await openNestedList('unionmap', name, options)
    const table = new UnionTable(name, tables, options.dictFlags)
    return needUtf8Activation(options.config, options.dictFlags) ? activateUtf8(table, options.log) : table
  },
}
