import {DICT_FLAG} from '../protocol/constants.js'
import {OpenOptions, Table, TableError, TableLog} from './table.js'

/**
 * What Postfix's dict_surrogate() does for a table that failed to open: the open itself
 * succeeds (flags gain PATTERN), and every later request fails as RETRY, logging the
 * original reason each time so that the cause stays visible.
 */
export class SurrogateTable implements Table {
  flags: number

  constructor(readonly type: string, readonly name: string, readonly reason: string,
    options: Pick<OpenOptions, 'mode' | 'dictFlags'>, private readonly log: TableLog) {
    this.flags = options.dictFlags | DICT_FLAG.PATTERN
    if (options.mode === 'write') {
      this.update = () => this.fail()
      this.delete = () => this.fail()
    }
  }

  update?: (key: string, value: string) => never
  delete?: (key: string) => never

  lookup(): never {
    return this.fail()
  }

  sequence(): never {
    return this.fail()
  }

  private fail(): never {
    const message = `${this.type}:${this.name} is unavailable. ${this.reason}`
    this.log.warning(message)
    throw new TableError('retry', message)
  }
}
