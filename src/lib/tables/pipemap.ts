// pipemap:{type:name, type:name, ...} — the result of one lookup is the key of the next
// (Postfix 3.7 dict_pipe.c).

import {activateUtf8, needUtf8Activation} from './fold.js'
import {CompositeTable, cString, openNestedList} from './unionmap.js'
import {OpenOptions, Table, TableType} from './table.js'

/**
 * Looks the key up in the first table, that result up in the second, and so on; the last
 * result is the answer. The first table that finds nothing ends the lookup with "not
 * found", or with its error (a thrown TableError propagates unchanged). An empty result
 * is a key like any other for the next table, and an empty final result is returned as
 * found. No update, delete or sequence.
 */
export class PipeTable extends CompositeTable {
  readonly type = 'pipemap'

  async lookup(key: string): Promise<string | undefined> {
    let query = key
    for (const table of this.tables) {
      const value = await table.lookup(query)
      if (value === undefined) return undefined
      query = cString(value)
    }
    return query
  }
}

export const pipemapType: TableType = {
  type: 'pipemap',
  async open(name: string, options: OpenOptions): Promise<Table> {
    const tables = await openNestedList('pipemap', name, options)
    const table = new PipeTable(name, tables, options.dictFlags)
    return needUtf8Activation(options.config, options.dictFlags) ? activateUtf8(table, options.log) : table
  },
}
