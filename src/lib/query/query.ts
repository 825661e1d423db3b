// `proxymap query`: look keys up in any table the registry can open. proxy:type:name goes
// through the service; every other name is opened here. Same code either way.

import type {MainConfig} from '../config/index.js'
import {DialectChoice, ServiceClientPool, configRelease, dialectOfRelease, releaseNumbers} from '../client/service-client.js'
import {DICT_FLAG, Dialect, binary} from '../protocol/index.js'
import {TableRegistry, defaultRegistry} from '../tables/registry.js'
import {TableLog} from '../tables/table.js'

export interface QueryOptions {
  config: MainConfig
  table: string
  /** Keys as the user typed them (UTF-8 text). */
  keys: string[]
  /** postmap -f: do not fold the key to lower case. */
  fold: boolean
  dialect: DialectChoice
  registry?: TableRegistry
  log: TableLog
}

export interface QueryResult {
  key: string
  found: boolean
  value?: string
}

/** The dict flags postmap -q opens tables with (DICT_FLAG_LOCK|DUP_WARN|FOLD_FIX|UTF8_REQUEST). */
export function postmapQueryFlags(fold: boolean): number {
  return DICT_FLAG.LOCK | DICT_FLAG.DUP_WARN | DICT_FLAG.UTF8_REQUEST | (fold ? DICT_FLAG.FOLD_FIX : 0)
}

/** Look each key up in order; stops at the first error (thrown), as postmap -q - does. */
export async function* queryKeys(options: QueryOptions, keys: AsyncIterable<string> | Iterable<string>): AsyncGenerator<QueryResult> {
  const registry = options.registry ?? defaultRegistry
  const release = configRelease(options.config)
  const proxyClients = new ServiceClientPool(options.dialect, {timeoutMs: 60_000, expectedDialect: dialectOfRelease(release)})
  try {
    // Table names are Postfix byte strings, like keys: UTF-8 from the command line.
    const table = await registry.openStrict(binary.fromText(options.table), {
      postfixRelease: releaseNumbers(release),
      mode: 'read', dictFlags: postmapQueryFlags(options.fold), config: options.config, log: options.log, proxyClients,
    })
    try {
      for await (const key of keys) {
        const value = await table.lookup(binary.fromText(key))
        yield value === undefined ? {key, found: false} : {key, found: true, value: binary.toText(value)}
      }
    } finally {
      await table.close?.()
    }
  } finally {
    proxyClients.closeAll()
  }
}
