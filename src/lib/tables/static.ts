// static:text and static:{ text with spaces } — every key has the same value
// (Postfix dict_static.c).

import {DICT_FLAG} from '../protocol/constants.js'
import {activateUtf8, needUtf8Activation} from './fold.js'
import {extractBraced} from '../util/postfix-strings.js'
import {filesToBase64} from './source-file.js'
import {OpenOptions, Table, TableError, TableType} from './table.js'

/**
 * Answers its value for every key. FIXED; lookup only: Postfix gives static no update,
 * delete or sequence method, in either access mode.
 */
export class StaticTable implements Table {
  readonly type = 'static'
  flags: number

  constructor(readonly name: string, readonly value: string, dictFlags: number) {
    this.flags = dictFlags | DICT_FLAG.FIXED
  }

  lookup(): string {
    return this.value
  }
}

/**
 * Open as dict_static_open() does: a name that starts with `{` must be exactly one
 * `{...}` group, whose content, trimmed, is the value (`static:{}` answers an empty
 * string); any other name is the value as it stands, spaces, braces and all.
 */
export const staticType: TableType = {
  type: 'static',
  async open(name: string, options: OpenOptions): Promise<Table> {
    let value = name
    if (name[0] === '{') {
      const inner = extractBraced(name)
      if (inner.error !== undefined) throw new TableError('config', `bad static:name syntax: ${inner.error}`)
      value = inner.text
    }
    if (options.dictFlags & DICT_FLAG.SRC_RHS_IS_FILE) {
      const encoded = await filesToBase64(value)
      if ('error' in encoded) throw new TableError('config', encoded.error)
      value = encoded.value
    }
    const table = new StaticTable(name, value, options.dictFlags)
    return needUtf8Activation(options.config, options.dictFlags) ? activateUtf8(table, options.log) : table
  },
}
