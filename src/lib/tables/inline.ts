// inline:{ key=value, { key = value with spaces } } — a table written in main.cf
// (Postfix dict_inline.c on the in-memory dict_ht.c).

import {DICT_FLAG} from '../protocol/constants.js'
import {activateUtf8, allAscii, isValidUtf8, needUtf8Activation} from './fold.js'
import {filesToBase64} from './source-file.js'
import {balancedLength, extractBraced, splitNameValue, splitOutsideBraces} from '../util/postfix-strings.js'
import {InternalHashTable} from './texthash.js'
import {followsPostfix,OpenOptions, Table, TableError, TableType} from './table.js'

/**
 * Open as dict_inline_open() does: the name must be one `{...}` group holding at least
 * one `key=value` (separated by commas or whitespace; a pair with spaces is written
 * `{ key = value }`). Later duplicates replace earlier ones. Keys are folded at open only
 * when the open flags include FOLD_FIX. Errors make the table unavailable, with Postfix's
 * messages.
 */
export const inlineType: TableType = {
  type: 'inline',
  async open(name: string, options: OpenOptions): Promise<Table> {
    const dictFlags = options.dictFlags
    const need = `need "inline:{name=${dictFlags & DICT_FLAG.SRC_RHS_IS_FILE ? 'filename' : 'value'}...}"`
    if (options.mode !== 'read')
      throw new TableError('config', `inline:${name} map requires O_RDONLY access mode`)
    const utf8 = needUtf8Activation(options.config, dictFlags)
    if (utf8 && !allAscii(name) && !isValidUtf8(name))
      throw new TableError('config', `bad UTF-8 syntax: "inline:${name}"; need "inline:{name=value...}"`)
    const len = balancedLength(name)
    if (len === 0 || len !== name.length || len === 2)
      throw new TableError('config', `bad syntax: "inline:${name}"; need "inline:{name=value...}"`)

    const table = new InternalHashTable('inline', name, dictFlags)
    // As texthash: <= 3.10 fills a table that already has the UTF-8 layer (keys casefold()ed),
    // 3.11 the bare internal table (keys lowercase()d, ASCII only), layered afterwards.
    const layerAfterLoad = followsPostfix(options, 3, 11)
    if (utf8 && !layerAfterLoad) activateUtf8(table, options.log)
    let count = 0
    for (let token of splitOutsideBraces(name.slice(1, len - 1))) {
      if (token[0] === '{') {
        const inner = extractBraced(token)
        if (inner.error !== undefined) throw new TableError('config', `${inner.error}: "inline:${name}"; ${need}`)
        token = inner.text
      }
      const pair = splitNameValue(token)
      if ('error' in pair) throw new TableError('config', `${pair.error}: "inline:${name}"; ${need}`)
      let value = pair.value
      if (dictFlags & DICT_FLAG.SRC_RHS_IS_FILE) {
        const encoded = await filesToBase64(value)
        if ('error' in encoded) throw new TableError('config', `${encoded.error}: "inline:${name}"; ${need}`)
        value = encoded.value
      }
      table.update(pair.key, value)
      count++
    }
    if (count === 0) throw new TableError('config', `empty table: "inline:${name}"; ${need}`)
    if (utf8 && layerAfterLoad) activateUtf8(table, options.log)
    return table
  },
}
