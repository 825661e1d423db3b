// What a running server has done, for `proxymap stats` and the Prometheus endpoint.
// Counters live in typed arrays created when a service or table is first seen, so the
// lookup path only indexes and adds: no allocation, no map lookup per request.

import {PROXY_STAT_NAME} from '../protocol/index.js'
import type {PoolStats} from '../tables/table.js'

export const REQUEST_TYPES = ['open', 'lookup', 'update', 'delete', 'sequence'] as const
export type RequestType = (typeof REQUEST_TYPES)[number]
export const STATUS_NAMES = ['OK', 'NOKEY', 'RETRY', 'BAD', 'DENY', 'CONFIG'] as const
export type StatusName = (typeof STATUS_NAMES)[number]

const REQUEST_INDEX: Record<string, number> = {open: 0, lookup: 1, update: 2, delete: 3, sequence: 4}
const STATUS_COUNT = STATUS_NAMES.length

/**
 * Upper bounds (seconds) of the latency histogram, Prometheus-style: a request that took
 * longer than the last one is counted in the final, unbounded bucket.
 */
export const LATENCY_BUCKETS_SECONDS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const

/** Requests by type and status, and how long they took (milliseconds in, seconds out). */
export class RequestCounters {
  /** [type * STATUS_COUNT + status] */
  readonly counts = new Float64Array(REQUEST_TYPES.length * STATUS_COUNT)
  /** Not cumulative: latency[i] counts the requests in (bound[i-1], bound[i]]. */
  readonly latency = new Float64Array(LATENCY_BUCKETS_SECONDS.length + 1)
  latencySumSeconds = 0

  record(request: string, status: number, elapsedMs: number): void {
    const type = REQUEST_INDEX[request]
    if (type === undefined || status < 0 || status >= STATUS_COUNT) return
    this.counts[type * STATUS_COUNT + status]++
    const seconds = elapsedMs / 1000
    this.latencySumSeconds += seconds
    let bucket = 0
    while (bucket < LATENCY_BUCKETS_SECONDS.length && seconds > LATENCY_BUCKETS_SECONDS[bucket]) bucket++
    this.latency[bucket]++
  }

  count(request: RequestType, status: StatusName): number {
    return this.counts[REQUEST_INDEX[request] * STATUS_COUNT + STATUS_NAMES.indexOf(status)]
  }

  snapshot(): CountersSnapshot {
    const requests = {} as Record<RequestType, Record<StatusName, number>>
    let total = 0
    for (const type of REQUEST_TYPES) {
      const byStatus = {} as Record<StatusName, number>
      for (const status of STATUS_NAMES) {
        byStatus[status] = this.count(type, status)
        total += byStatus[status]
      }
      requests[type] = byStatus
    }
    return {
      requests,
      total,
      hits: this.count('lookup', 'OK'),
      misses: this.count('lookup', 'NOKEY'),
      latency: {
        bucketsSeconds: [...LATENCY_BUCKETS_SECONDS],
        counts: [...this.latency],
        sumSeconds: this.latencySumSeconds,
        count: this.latency.reduce((a, b) => a + b, 0),
      },
    }
  }
}

/** The service-wide counters of one service (proxymap or proxywrite) of a process. */
export class ServiceCounters {
  readonly all = new RequestCounters()
  /** Per table name, for approved tables only: the names a client may send are unbounded. */
  private readonly byTable = new Map<string, RequestCounters>()
  /** Requests answered BAD before they reached a table (a missing or malformed attribute). */
  badRequests = 0
  /** Requests with an unknown name, answered "unrecognized". */
  unrecognizedRequests = 0
  /** Input that is no request at all: the connection was closed. */
  malformedInput = 0
  connectionsAccepted = 0

  /** The counters of table `name`, created on first use (when the table is opened). */
  table(name: string): RequestCounters {
    let counters = this.byTable.get(name)
    if (!counters) this.byTable.set(name, counters = new RequestCounters())
    return counters
  }

  /** Forget the tables `keep` no longer approves (a reload): their names stay bounded. */
  forgetTables(keep: (name: string) => boolean): void {
    for (const name of this.byTable.keys()) if (!keep(name)) this.byTable.delete(name)
  }

  tables(): [string, RequestCounters][] {
    return [...this.byTable]
  }
}

export type {PoolStats}

export interface LatencySnapshot {
  bucketsSeconds: number[]
  /** One more than bucketsSeconds: the last counts what took longer than the largest bound. */
  counts: number[]
  sumSeconds: number
  count: number
}

export interface CountersSnapshot {
  requests: Record<RequestType, Record<StatusName, number>>
  total: number
  hits: number
  misses: number
  latency: LatencySnapshot
}

export interface TableSnapshot extends CountersSnapshot {
  table: string
  openInstances: number
  /** Summed over the open instances that have a backend pool; null for the others. */
  pool: PoolStats | null
}

export interface ConnectionSnapshot {
  requests: number
  openSeconds: number
}

export interface ServiceSnapshot extends CountersSnapshot {
  service: 'proxymap' | 'proxywrite'
  socket: string
  badRequests: number
  unrecognizedRequests: number
  malformedInput: number
  openInstances: number
  connections: {accepted: number; open: number; busiest: ConnectionSnapshot[]}
  tables: TableSnapshot[]
}

export interface StatsSnapshot {
  pid: number
  startedAt: string
  uptimeSeconds: number
  services: ServiceSnapshot[]
}

/** At most this many connections are listed per service (the busiest), whatever the number open. */
export const LISTED_CONNECTIONS = 20

/** Postfix's status names, for a status number (tests, rendering). */
export function statusName(status: number): string {
  return PROXY_STAT_NAME[status] ?? String(status)
}

/** The upper bound of the bucket the q-quantile falls in (seconds), or undefined without requests. */
export function latencyQuantileBound(latency: LatencySnapshot, q: number): number | undefined {
  if (latency.count === 0) return undefined
  const rank = Math.ceil(latency.count * q)
  let seen = 0
  for (let i = 0; i < latency.counts.length; i++) {
    seen += latency.counts[i]
    if (seen >= rank) return i < latency.bucketsSeconds.length ? latency.bucketsSeconds[i] : Infinity
  }
  return Infinity
}
