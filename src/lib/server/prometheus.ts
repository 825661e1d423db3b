// The Prometheus endpoint of `proxymap serve --prometheus-listen HOST:PORT`: GET /metrics on
// a loopback address, in the Prometheus text format as prom-client writes it. Imported only
// when asked for, so that a server without it does not load prom-client or node:http.
//
// The figures are the server's own counters (stats.ts), read when Prometheus scrapes: the
// lookup path does not feed prom-client's metric objects. prom-client's Registry takes any
// object with a get() that answers as its metrics do, which is what these are.

import http from 'node:http'
import net from 'node:net'
import {Registry} from 'prom-client'
import type {Logger} from '../log/logger.js'
import {type CountersSnapshot, REQUEST_TYPES, STATUS_NAMES, type StatsSnapshot} from './stats.js'

type Labels = Record<string, string>
interface MetricValue {labels: Labels; value: number; metricName?: string}
type MetricType = 'counter' | 'gauge' | 'histogram'

/** host:port with a loopback host (127.0.0.0/8, ::1 or localhost); throws otherwise. */
export function parseLoopbackListen(value: string): {host: string; port: number} {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(value.trim())
  const host = m?.[1] ?? m?.[2]
  const port = Number(m?.[3])
  if (!host || !(port >= 0 && port < 65536))
    throw new Error(`bad Prometheus listen address "${value}": expected HOST:PORT, for example 127.0.0.1:9154 (port 0: any free port)`)
  const loopback = host === 'localhost' || host === '::1' || (net.isIPv4(host) && host.startsWith('127.'))
  if (!loopback) throw new Error(`Prometheus listen address "${value}" is not a loopback address: use 127.0.0.1, ::1 or localhost`)
  return {host, port}
}

class SnapshotMetric {
  constructor(readonly name: string, readonly help: string, readonly type: MetricType,
    private readonly values: (snapshot: StatsSnapshot) => MetricValue[], private readonly current: () => StatsSnapshot) {}

  get(): {name: string; help: string; type: MetricType; values: MetricValue[]; aggregator: 'sum'} {
    return {name: this.name, help: this.help, type: this.type, values: this.values(this.current()), aggregator: 'sum'}
  }
}

function requestValues(counters: CountersSnapshot, labels: Labels): MetricValue[] {
  return REQUEST_TYPES.flatMap(request => STATUS_NAMES.map(status => ({labels: {...labels, request, status}, value: counters.requests[request][status]})))
}

function histogramValues(name: string, counters: CountersSnapshot, labels: Labels): MetricValue[] {
  const {latency} = counters
  let cumulative = 0
  const buckets = latency.bucketsSeconds.map((le, i) => {
    cumulative += latency.counts[i]
    return {metricName: `${name}_bucket`, labels: {...labels, le: String(le)}, value: cumulative}
  })
  return [
    ...buckets,
    {metricName: `${name}_bucket`, labels: {...labels, le: '+Inf'}, value: latency.count},
    {metricName: `${name}_sum`, labels, value: latency.sumSeconds},
    {metricName: `${name}_count`, labels, value: latency.count},
  ]
}

/** Every metric, read from `current()` at each scrape. */
export function metricsRegistry(current: () => StatsSnapshot): Registry {
  const registry = new Registry()
  const add = (name: string, help: string, type: MetricType, values: (s: StatsSnapshot) => MetricValue[]): void =>
    registry.registerMetric(new SnapshotMetric(name, help, type, values, current) as never)
  const perService = (f: (service: StatsSnapshot['services'][number], labels: Labels) => MetricValue[]) =>
    (s: StatsSnapshot) => s.services.flatMap(service => f(service, {service: service.service}))
  const perTable = (f: (table: StatsSnapshot['services'][number]['tables'][number], labels: Labels) => MetricValue[]) =>
    (s: StatsSnapshot) => s.services.flatMap(service => service.tables.flatMap(table => f(table, {service: service.service, table: table.table})))

  add('proxymap_requests_total', 'Requests answered, by request type and reply status.', 'counter',
    perService((service, labels) => requestValues(service, labels)))
  add('proxymap_request_duration_seconds', 'Time from a request\'s arrival to its reply.', 'histogram',
    perService((service, labels) => histogramValues('proxymap_request_duration_seconds', service, labels)))
  add('proxymap_rejected_requests_total', 'Requests that reached no table: BAD (malformed attributes), unrecognized, or no request at all (the connection was closed).', 'counter',
    perService((service, labels) => [
      {labels: {...labels, reason: 'bad'}, value: service.badRequests},
      {labels: {...labels, reason: 'unrecognized'}, value: service.unrecognizedRequests},
      {labels: {...labels, reason: 'malformed'}, value: service.malformedInput},
    ]))
  add('proxymap_open_instances', 'Table instances open.', 'gauge', perService((service, labels) => [{labels, value: service.openInstances}]))
  add('proxymap_connections_accepted_total', 'Client connections accepted.', 'counter',
    perService((service, labels) => [{labels, value: service.connections.accepted}]))
  add('proxymap_connections_open', 'Client connections open.', 'gauge', perService((service, labels) => [{labels, value: service.connections.open}]))
  add('proxymap_table_requests_total', 'Requests answered by a table, by request type and reply status (lookup OK: hits, lookup NOKEY: misses).', 'counter',
    perTable((table, labels) => requestValues(table, labels)))
  add('proxymap_table_request_duration_seconds', 'Time a table took to answer.', 'histogram',
    perTable((table, labels) => histogramValues('proxymap_table_request_duration_seconds', table, labels)))
  add('proxymap_table_open_instances', 'Open instances of a table.', 'gauge', perTable((table, labels) => [{labels, value: table.openInstances}]))
  for (const [field, help] of [['connections', 'Backend connections open'], ['busy', 'Backend connections serving a request'], ['queued', 'Requests waiting for a backend connection']] as const) {
    add(`proxymap_table_pool_${field}`, `${help} (tables with a backend pool).`, 'gauge',
      perTable((table, labels) => (table.pool ? [{labels, value: table.pool[field]}] : [])))
  }
  return registry
}

export interface PrometheusExporter {
  /** host:port it listens on (the port chosen by the system when 0 was asked for). */
  address: string
  close(): Promise<void>
}

/** Serve GET /metrics on `listen` (a loopback HOST:PORT) until close(). */
export async function startPrometheusExporter(listen: string, current: () => StatsSnapshot, log: Logger): Promise<PrometheusExporter> {
  const {host, port} = parseLoopbackListen(listen)
  const registry = metricsRegistry(current)
  const server = http.createServer((req, res) => {
    if (req.method !== 'GET' || (req.url !== '/metrics' && !req.url?.startsWith('/metrics?'))) {
      res.writeHead(404, {'content-type': 'text/plain'}).end('not found: GET /metrics\n')
      return
    }
    registry.metrics().then(text => {
      res.writeHead(200, {'content-type': registry.contentType}).end(text)
    }, (err: Error) => {
      log.warning(`prometheus: ${err.message}`)
      res.writeHead(500, {'content-type': 'text/plain'}).end('error\n')
    })
  })
  server.headersTimeout = 10_000
  server.requestTimeout = 10_000
  server.maxConnections = 16
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({host, port}, () => { server.off('error', reject); resolve() })
  })
  server.on('error', err => log.warning(`prometheus: ${err.message}`))
  const bound = server.address() as net.AddressInfo
  return {
    address: `${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}`,
    close: () => new Promise<void>(resolve => {
      server.close(() => resolve())
      server.closeAllConnections()
    }),
  }
}
