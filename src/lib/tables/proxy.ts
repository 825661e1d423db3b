// proxy:type:name — a table that asks the proxymap service (Postfix: dict_proxy.c). It is
// just another table type, so `query proxy:x:y` and `query x:y` run the same code.
//
// The two dialects differ in more than attributes, and each client follows its Postfix:
// - legacy (<= 3.10): the client keeps its own flags, takes only FIXED/PATTERN/MULTI_WRITER
//   from the open reply, sends instance flags plus its requestor flags, and folds the key
//   itself when its UTF-8 layer is active;
// - v2 (>= 3.11): the client sends its whole open flags as instance_flags, takes the
//   server's flags as its own, sends them back with every request and replaces them with
//   those of every reply (the server's TRY0NULL/TRY1NULL learning lives there). Its UTF-8
//   layer (and so client-side folding) exists only when the server's table lacks one.

import {DIALECT_LABEL, ServiceClient, ServiceClientPool, otherDialect, serviceSocketPath} from '../client/service-client.js'
import {
  DICT_FLAG, DICT_FLAG_FOLD_ANY, DICT_FLAG_IMPL_MASK, DICT_FLAG_INST_MASK, DICT_FLAG_RQST_MASK,
  DICT_SEQ_FUN_FIRST, DICT_SEQ_FUN_NEXT, Dialect, PROXY_STAT, PROXY_STAT_NAME, ProxyReply,
} from '../protocol/index.js'
import {activateUtf8, foldKey, needUtf8Activation, smtputf8Enabled} from './fold.js'
import {stripProxyPrefixes} from '../util/postfix-strings.js'
import {OpenOptions, SequenceFunction, Table, TableError, TableType} from './table.js'


/**
 * A status that Postfix's own client treats as fatal (DENY, BAD) or that cannot be
 * mapped onto a lookup result. Carries the status so the CLI can pick its exit code.
 */
export class ProxyStatusError extends Error {
  constructor(readonly status: number, message: string, readonly hint?: string) {
    super(message)
    this.name = 'ProxyStatusError'
  }
}

const defaultPool = new ServiceClientPool()

type Operation = 'lookup' | 'update' | 'delete' | 'sequence'

export class ProxyTable implements Table {
  readonly type = 'proxy'
  flags: number
  private readonly instanceFlags: number
  private readonly service: string
  /** v2 only: the client's own UTF-8 layer is in front (the server's table has none). */
  private readonly clientUtf8: boolean

  private constructor(readonly name: string, private readonly client: ServiceClient,
    readonly dialect: Dialect, options: OpenOptions, serverFlags: number, private readonly utf8Enabled: boolean) {
    this.service = options.mode === 'read' ? 'proxymap' : 'proxywrite'
    if (dialect === 'v2') {
      this.instanceFlags = options.dictFlags >>> 0
      this.flags = (serverFlags | (options.flagsAfterOpen ?? 0)) >>> 0
      this.clientUtf8 = !(serverFlags & DICT_FLAG.UTF8_ACTIVE) && needUtf8Activation(options.config, options.dictFlags)
      if (this.clientUtf8) activateUtf8(this, options.log)
    } else {
      this.instanceFlags = options.dictFlags & DICT_FLAG_INST_MASK
      this.flags = (options.dictFlags & ~DICT_FLAG_IMPL_MASK) | (serverFlags & DICT_FLAG_IMPL_MASK)
      this.clientUtf8 = false
    }
  }

  static async open(name: string, options: OpenOptions): Promise<ProxyTable> {
    const table = stripProxyPrefixes(name)
    const service = options.mode === 'read' ? 'proxymap' : 'proxywrite'
    const client = (options.proxyClients ?? defaultPool).get(serviceSocketPath(options.config, options.mode))
    const {reply, dialect, tried} = await client.open(table, options.dictFlags)
    switch (reply.status) {
      case PROXY_STAT.OK:
        return new ProxyTable(table, client, dialect, options, reply.flags ?? 0, smtputf8Enabled(options.config))
      case PROXY_STAT.DENY:
        throw new ProxyStatusError(reply.status, `${service} service is not configured for table "${table}"`)
      case PROXY_STAT.BAD:
        throw tried.length > 1
          ? new ProxyStatusError(reply.status,
            `${service} service rejected the open request for table "${table}" as invalid in both dialects, ${tried.map(d => DIALECT_LABEL[d]).join(' and ')}`,
            'check the table name (type:name); see the service\'s log for what it rejected')
          : new ProxyStatusError(reply.status,
            `${service} service rejected the open request for table "${table}" as invalid in the ${DIALECT_LABEL[dialect]} dialect`,
            `if the service is Postfix ${dialect === 'v2' ? '<= 3.10' : '>= 3.11'}, use --dialect ${otherDialect(dialect)}, or --dialect auto to let proxymap find out`)
      default:
        throw new ProxyStatusError(reply.status, `${service} service error opening table "${table}": status ${PROXY_STAT_NAME[reply.status] ?? reply.status}`)
    }
  }

  /** Legacy: Postfix <= 3.10 folds the key on the client side when its UTF-8 layer is
   *  active, and then no longer asks the server to fold (FOLD_FIX on the wire otherwise). */
  private legacyRequest(key: string): {key: string; flags: number} {
    let flags = this.flags
    if (this.utf8Enabled && (flags & DICT_FLAG.UTF8_REQUEST) && (flags & DICT_FLAG_FOLD_ANY)) {
      key = foldKey(key, true)
      flags &= ~DICT_FLAG_FOLD_ANY
    }
    return {key, flags: this.instanceFlags | (flags & DICT_FLAG_RQST_MASK)}
  }

  /** Send one request on this table, with the flags its dialect sends, and keep the reply's. */
  private async ask(operation: Operation, rawKey: string | undefined, rest: {value?: string; func?: number}): Promise<ProxyReply> {
    let key = rawKey
    let requestFlags: number
    if (this.dialect === 'v2') requestFlags = this.flags
    else if (key === undefined) requestFlags = this.instanceFlags | (this.flags & DICT_FLAG_RQST_MASK)
    else ({key, flags: requestFlags} = this.legacyRequest(key))
    const reply = await this.client.request({request: operation, table: this.name, instanceFlags: this.instanceFlags,
      requestFlags, ...(key === undefined ? {} : {key}), ...rest})
    if (this.dialect === 'v2' && reply.flags !== undefined) {
      // 3.11's UTF-8 layer clears the fold flags around the request and sets them again
      // after the reply has replaced the table's flags.
      this.flags = (reply.flags | (this.clientUtf8 ? this.flags & DICT_FLAG_FOLD_ANY : 0)) >>> 0
    }
    return reply
  }

  async lookup(key: string): Promise<string | undefined> {
    const reply = await this.ask('lookup', key, {})
    if (reply.status === PROXY_STAT.OK) return reply.value ?? ''
    if (reply.status === PROXY_STAT.NOKEY) return undefined
    throw this.failure('lookup', reply, key)
  }

  async update(key: string, value: string): Promise<boolean> {
    const reply = await this.ask('update', key, {value})
    if (reply.status === PROXY_STAT.OK) return true
    if (reply.status === PROXY_STAT.NOKEY) return false
    throw this.failure('update', reply, key)
  }

  async delete(key: string): Promise<boolean> {
    const reply = await this.ask('delete', key, {})
    if (reply.status === PROXY_STAT.OK) return true
    if (reply.status === PROXY_STAT.NOKEY) return false
    throw this.failure('delete', reply, key)
  }

  async sequence(fn: SequenceFunction): Promise<readonly [string, string] | undefined> {
    const func = fn === 'first' ? DICT_SEQ_FUN_FIRST : DICT_SEQ_FUN_NEXT
    const reply = await this.ask('sequence', undefined, {func})
    if (reply.status === PROXY_STAT.OK) return [reply.key ?? '', reply.value ?? '']
    if (reply.status === PROXY_STAT.NOKEY) return undefined
    throw this.failure('sequence', reply)
  }

  private failure(operation: string, reply: ProxyReply, key?: string): Error {
    const what = key === undefined ? `table "${this.name}"` : `table "${this.name}" key "${key}"`
    switch (reply.status) {
      case PROXY_STAT.RETRY:
        return new TableError('retry', `${operation} of ${what} failed temporarily: the ${this.service} service could not access the table (see its log)`)
      case PROXY_STAT.CONFIG:
        return new TableError('config', `${operation} of ${what} failed: the ${this.service} service reports a configuration error for the table`)
      case PROXY_STAT.DENY:
        return new ProxyStatusError(reply.status, `${this.service} service is not configured for table "${this.name}"`)
      case PROXY_STAT.BAD:
        return new ProxyStatusError(reply.status, `${operation} of ${what} failed: invalid request`)
      default:
        return new ProxyStatusError(reply.status, `${operation} of ${what}: unexpected status ${reply.status}`)
    }
  }
}

export const proxyType: TableType = {
  type: 'proxy',
  open: (name, options) => ProxyTable.open(name, options),
}
