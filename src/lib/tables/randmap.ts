// randmap:{value, value, ...} — every key gets one of the values, chosen at random
// (Postfix 3.7 dict_random.c).

import {DICT_FLAG} from '../protocol/constants.js'
import {activateUtf8, needUtf8Activation} from './fold.js'
import {balancedLength, splitOutsideBraces} from '../util/postfix-strings.js'
import {filesToBase64} from './source-file.js'
import {OpenOptions, Table, TableError, TableType} from './table.js'

/** PATTERN; lookup only. Each lookup picks one of the values uniformly at random. */
export class RandomTable implements Table {
  readonly type = 'randmap'
  flags: number

  constructor(readonly name: string, readonly values: readonly string[], dictFlags: number) {
    this.flags = dictFlags | DICT_FLAG.PATTERN
  }

  lookup(): string {
    return this.values[Math.floor(Math.random() * this.values.length)]
  }
}

/**
 * Open as dict_random_open() does: read-only access only; the name must be exactly one
 * non-empty `{...}` group holding at least one value, values being separated by commas or
 * whitespace outside braces and kept exactly as written (`{a b}` is the value `{a b}`,
 * braces included, as in Postfix 3.7). With SRC_RHS_IS_FILE (postmap -F) each value names
 * a file whose content (BASE64) is the value; the first file error is the open error.
 */
export const randmapType: TableType = {
  type: 'randmap',
  async open(name: string, options: OpenOptions): Promise<Table> {
    if (options.mode !== 'read')
      throw new TableError('config', `randmap:${name} map requires O_RDONLY access mode`)
    const syntax = (): TableError =>
      new TableError('config', `bad syntax: "randmap:${name}"; need "randmap:{value...}"`)
    const len = balancedLength(name)
    if (len === 0 || len !== name.length || len === 2) throw syntax()
    const values: string[] = []
    for (const token of splitOutsideBraces(name.slice(1, len - 1))) {
      if (options.dictFlags & DICT_FLAG.SRC_RHS_IS_FILE) {
        const encoded = await filesToBase64(token)
        if ('error' in encoded) throw new TableError('config', encoded.error)
        values.push(encoded.value)
      } else {
        values.push(token)
      }
    }
    if (values.length === 0) throw syntax()
    const table = new RandomTable(name, values, options.dictFlags)
    return needUtf8Activation(options.config, options.dictFlags) ? activateUtf8(table, options.log) : table
  },
}
