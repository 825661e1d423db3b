// proxy:type:name — a table that asks the proxymap service (Postfix: dict_proxy.c). It is
// just another table type, so `query proxy:x:y` and `query x:y` run the same code.

import {ServiceClient, ServiceClientPool, serviceSocketPath} from '../client/service-client.js'
import {
  DICT_FLAG, DICT_FLAG_FOLD_ANY, DICT_FLAG_IMPL_MASK, DICT_FLAG_INST_MASK, DICT_FLAG_RQST_MASK,
  DICT_SEQ_FUN_FIRST, DICT_SEQ_FUN_NEXT, PROXY_STAT, PROXY_STAT_NAME, ProxyReply,
} from '../protocol/index.js'
import {foldKey, smtputf8Enabled} from './fold.js'
import {stripProxyPrefixes} from '../util/postfix-strings.js'
import {OpenOptions, SequenceFunction, Table, TableError, TableType} from './table.js'


/**
 * A status that Postfix's own client treats as fatal (DENY, BAD) or that cannot be
 * mapped onto a lookup result. Carries the status so the CLI can pick its exit code.
 */
export class ProxyStatusError extends Error {
  constructor(readonly status: number, message: string) {
    super(message)
    this.name = 'ProxyStatusError'
  }
}

const defaultPool = new ServiceClientPool()

export class ProxyTable implements Table {
  readonly type = 'proxy'
  flags: number
  private readonly instanceFlags: number
  private readonly service: string

  private constructor(readonly name: string, private readonly client: ServiceClient,
    options: OpenOptions, serverFlags: number, private readonly utf8Enabled: boolean) {
    this.instanceFlags = options.dictFlags & DICT_FLAG_INST_MASK
    this.flags = (options.dictFlags & ~DICT_FLAG_IMPL_MASK) | (serverFlags & DICT_FLAG_IMPL_MASK)
    this.service = options.mode === 'read' ? 'proxymap' : 'proxywrite'
  }

  static async open(name: string, options: OpenOptions): Promise<ProxyTable> {
    const table = stripProxyPrefixes(name)
    const kind = options.mode
    const service = kind === 'read' ? 'proxymap' : 'proxywrite'
    const client = (options.proxyClients ?? defaultPool).get(serviceSocketPath(options.config, kind))
    const reply = await client.request({request: 'open', table, instanceFlags: options.dictFlags & DICT_FLAG_INST_MASK, requestFlags: 0})
    switch (reply.status) {
      case PROXY_STAT.OK:
        return new ProxyTable(table, client, options, reply.flags ?? 0, smtputf8Enabled(options.config))
      case PROXY_STAT.DENY:
        throw new ProxyStatusError(reply.status, `${service} service is not configured for table "${table}"`)
      case PROXY_STAT.BAD:
        throw new ProxyStatusError(reply.status, `${service} service rejected the open request for table "${table}" as invalid`)
      default:
        throw new ProxyStatusError(reply.status, `${service} service error opening table "${table}": status ${PROXY_STAT_NAME[reply.status] ?? reply.status}`)
    }
  }

  /** Postfix folds the key on the client side when its UTF-8 layer is active, and then
   *  no longer asks the server to fold; without it the server folds (FOLD_FIX on the wire). */
  private prepare(key: string): {key: string; flags: number} {
    let flags = this.flags
    if (this.utf8Enabled && (flags & DICT_FLAG.UTF8_REQUEST) && (flags & DICT_FLAG_FOLD_ANY)) {
      key = foldKey(key, true)
      flags &= ~DICT_FLAG_FOLD_ANY
    }
    return {key, flags: this.instanceFlags | (flags & DICT_FLAG_RQST_MASK)}
  }

  async lookup(rawKey: string): Promise<string | undefined> {
    const {key, flags} = this.prepare(rawKey)
    const reply = await this.client.request({request: 'lookup', table: this.name, instanceFlags: this.instanceFlags, requestFlags: flags, key})
    if (reply.status === PROXY_STAT.OK) return reply.value ?? ''
    if (reply.status === PROXY_STAT.NOKEY) return undefined
    throw this.failure('lookup', reply, key)
  }

  async update(rawKey: string, value: string): Promise<boolean> {
    const {key, flags} = this.prepare(rawKey)
    const reply = await this.client.request({request: 'update', table: this.name, instanceFlags: this.instanceFlags, requestFlags: flags, key, value})
    if (reply.status === PROXY_STAT.OK) return true
    if (reply.status === PROXY_STAT.NOKEY) return false
    throw this.failure('update', reply, key)
  }

  async delete(rawKey: string): Promise<boolean> {
    const {key, flags} = this.prepare(rawKey)
    const reply = await this.client.request({request: 'delete', table: this.name, instanceFlags: this.instanceFlags, requestFlags: flags, key})
    if (reply.status === PROXY_STAT.OK) return true
    if (reply.status === PROXY_STAT.NOKEY) return false
    throw this.failure('delete', reply, key)
  }

  async sequence(fn: SequenceFunction): Promise<readonly [string, string] | undefined> {
    const func = fn === 'first' ? DICT_SEQ_FUN_FIRST : DICT_SEQ_FUN_NEXT
    const flags = this.instanceFlags | (this.flags & DICT_FLAG_RQST_MASK)
    const reply = await this.client.request({request: 'sequence', table: this.name, instanceFlags: this.instanceFlags, requestFlags: flags, func})
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
