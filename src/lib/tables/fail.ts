// fail:name — a table whose every request fails with a temporary error
// (Postfix dict_fail.c: DICT_ERR_RETRY, flags PATTERN).

import {DICT_FLAG} from '../protocol/constants.js'
import {activateUtf8, needUtf8Activation} from './fold.js'
import {OpenOptions, Table, TableError, TableType} from './table.js'

export class FailTable implements Table {
  readonly type = 'fail'
  flags: number
  update?: (key: string, value: string) => never
  delete?: (key: string) => never

  constructor(readonly name: string, dictFlags: number, writable: boolean) {
    this.flags = dictFlags | DICT_FLAG.PATTERN
    // Postfix installs update/delete only when the table is opened O_RDWR.
    if (writable) {
      this.update = () => this.fail('update')
      this.delete = () => this.fail('delete')
    }
  }

  lookup(): never {
    return this.fail('lookup')
  }

  sequence(): never {
    return this.fail('sequence')
  }

  private fail(operation: string): never {
    throw new TableError('retry', `fail:${this.name}: ${operation} failed (a fail: table always fails)`)
  }
}

/**
 * Open as dict_fail_open() does: always succeeds; lookup and sequence (and, opened for
 * writing, update and delete) fail with RETRY. The UTF-8 layer still applies, so a
 * non-UTF-8 key is "not found" rather than an error, exactly as in Postfix.
 */
export const failType: TableType = {
  type: 'fail',
  open(name: string, options: OpenOptions): Table {
    const table = new FailTable(name, options.dictFlags, options.mode === 'write')
    return needUtf8Activation(options.config, options.dictFlags) ? activateUtf8(table, options.log) : table
  },
}
