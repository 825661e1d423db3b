import {DICT_FLAG} from '../protocol/constants.js'
import {OpenOptions, Table, TableError, TableLog} from './table.js'

/** Postfix keeps a surrogate until the process ends; we try the real table again after this. */
const SURROGATE_RETRY_MS = 1000

/**
 * What Postfix's dict_surrogate() does for a table that failed to open: the open itself
 * succeeds (flags gain PATTERN), and every later request fails as RETRY, logging the
 * original reason each time so that the cause stays visible.
 */
export class SurrogateTable implements Table {
  flags: number
  private readonly openedAt = Date.now()

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

  /** Worth opening again once in a while: the file may have appeared or been fixed. */
  changed(): boolean {
    return Date.now() - this.openedAt >= SURROGATE_RETRY_MS
  }

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
