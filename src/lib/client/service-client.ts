// A client of one proxymap service (read-only `proxymap` or read-write `proxywrite`),
// shared by every proxy: table of a process as Postfix shares one stream per service.
// Like Postfix's client it reconnects when the server closed an idle connection; unlike
// it, it does not retry forever: one fresh connection, then the error goes to the caller.

import path from 'node:path'
import type {MainConfig} from '../config/index.js'
import {Dialect, ProtocolError, ProxyReply, ProxyRequest, binary} from '../protocol/index.js'
import {ConnectionOptions, ServiceConnection, ServiceUnavailableError} from './connection.js'

export type ServiceKind = 'read' | 'write'

export function serviceName(config: MainConfig, kind: ServiceKind): string {
  return config.get(kind === 'read' ? 'proxymap_service_name' : 'proxywrite_service_name')
}

/** Where Postfix's clients find a private service: $queue_directory/private/NAME. */
export function serviceSocketPath(config: MainConfig, kind: ServiceKind): string {
  return binary.toText(path.join(config.get('queue_directory'), 'private', serviceName(config, kind)))
}

export class ServiceClient {
  private connection: Promise<ServiceConnection> | null = null

  constructor(readonly socketPath: string, readonly dialect: Dialect,
    private readonly options: ConnectionOptions) {}

  async request(req: Omit<ProxyRequest, 'dialect'>): Promise<ProxyReply> {
    const full: ProxyRequest = {...req, dialect: this.dialect}
    const first = await this.connect()
    try {
      return await first.request(full)
    } catch (err) {
      // The server may have closed an idle connection (or restarted): try once afresh.
      if (!(err instanceof ProtocolError) || !first.broken) throw err
      this.connection = null
      return (await this.connect()).request(full)
    }
  }

  close(): void {
    const pending = this.connection
    this.connection = null
    pending?.then(c => c.close(), () => undefined)
  }

  private connect(): Promise<ServiceConnection> {
    if (this.connection) {
      const current = this.connection
      return current.then(c => {
        if (!c.broken) return c
        if (this.connection === current) this.connection = null
        return this.connect()
      })
    }
    const attempt = ServiceConnection.connect(this.socketPath, this.options)
    this.connection = attempt
    attempt.catch(() => { if (this.connection === attempt) this.connection = null })
    return attempt
  }
}

/** One client per socket path and dialect for the whole process. */
export class ServiceClientPool {
  private readonly clients = new Map<string, ServiceClient>()

  constructor(private readonly dialect: Dialect = 'legacy', private readonly options: ConnectionOptions = {timeoutMs: 30_000}) {}

  get(socketPath: string): ServiceClient {
    let client = this.clients.get(socketPath)
    if (!client) {
      client = new ServiceClient(socketPath, this.dialect, this.options)
      this.clients.set(socketPath, client)
    }
    return client
  }

  closeAll(): void {
    for (const c of this.clients.values()) c.close()
    this.clients.clear()
  }
}

export {ServiceUnavailableError}
