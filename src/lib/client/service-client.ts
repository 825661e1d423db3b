// A client of one proxymap service (read-only `proxymap` or read-write `proxywrite`),
// shared by every proxy: table of a process as Postfix shares one stream per service.
// Like Postfix's client it reconnects when the server closed an idle connection; unlike
// it, it does not retry forever: one fresh connection, then the error goes to the caller.
//
// Postfix <= 3.10 and >= 3.11 speak different dialects and each answers the other's
// requests BAD. Unless told which one, the client finds out at the first open: it asks in
// the dialect it expects (what it learnt of this socket before, else the configuration's
// Postfix version), and on BAD asks once more in the other one on a fresh connection.

import path from 'node:path'
import type {MainConfig} from '../config/index.js'
import {PostfixVersion, choosePostfixVersion} from '../config/postfix-version.js'
import {DICT_FLAG_INST_MASK, Dialect, PROXY_STAT, ProtocolError, ProxyReply, ProxyRequest, binary} from '../protocol/index.js'
import {ConnectionOptions, ServiceConnection, ServiceUnavailableError} from './connection.js'

export type ServiceKind = 'read' | 'write'

/** A dialect, or 'auto': learn it from the server at the first open. */
export type DialectChoice = Dialect | 'auto'

export const DIALECT_LABEL: Record<Dialect, string> = {legacy: 'legacy (Postfix <= 3.10)', v2: 'v2 (Postfix >= 3.11)'}

export function otherDialect(dialect: Dialect): Dialect {
  return dialect === 'v2' ? 'legacy' : 'v2'
}

export function serviceName(config: MainConfig, kind: ServiceKind): string {
  return config.get(kind === 'read' ? 'proxymap_service_name' : 'proxywrite_service_name')
}

/** Where Postfix's clients find a private service: $queue_directory/private/NAME. */
export function serviceSocketPath(config: MainConfig, kind: ServiceKind): string {
  return binary.toText(path.join(config.get('queue_directory'), 'private', serviceName(config, kind)))
}

/**
 * The dialect to ask a service in first when it was not chosen: that of the Postfix
 * version the configuration belongs to.
 */
export function expectedDialect(config: MainConfig): Dialect {
  return dialectOfRelease(configRelease(config))
}

/** The Postfix release the configuration belongs to (see config/postfix-version.ts). */
export function configRelease(config: MainConfig): PostfixVersion {
  return choosePostfixVersion({env: process.env, config}).version
}

/** A release as OpenOptions.postfixRelease takes it. */
export function releaseNumbers(version: PostfixVersion): readonly [number, number] {
  const [major, minor] = version.split('.').map(Number)
  return [major!, minor!]
}

/** The wire dialect a Postfix release speaks. */
export function dialectOfRelease(version: PostfixVersion): Dialect {
  return version === '3.11' ? 'v2' : 'legacy'
}

/** The dialect each socket answered in, for the life of the process. */
const learnedDialects = new Map<string, Dialect>()

export interface OpenResult {
  reply: ProxyReply
  dialect: Dialect
  /** Every dialect that was asked, in order (the last one answered `reply`). */
  tried: Dialect[]
}

export class ServiceClient {
  private connection: Promise<ServiceConnection> | null = null
  private negotiated: Dialect | undefined

  constructor(readonly socketPath: string, readonly choice: DialectChoice,
    private readonly options: ConnectionOptions, private readonly expected: Dialect = 'legacy') {
    if (choice !== 'auto') this.negotiated = choice
  }

  /** The dialect requests are sent in: chosen, or learnt by the first open. */
  get dialect(): Dialect {
    return this.negotiated ?? learnedDialects.get(this.socketPath) ?? this.expected
  }

  /**
   * Send `open` for `table` with the client's dict flags: legacy servers get only the
   * instance-selecting flags (as Postfix <= 3.10's dict_proxy_open), v2 servers the whole
   * word (as 3.11's). With 'auto', a BAD answer is asked again in the other dialect.
   */
  async open(table: string, dictFlags: number): Promise<OpenResult> {
    const first = this.dialect
    const candidates = this.choice === 'auto' ? [first, otherDialect(first)] : [first]
    const tried: Dialect[] = []
    for (const dialect of candidates) {
      tried.push(dialect)
      const instanceFlags = (dialect === 'v2' ? dictFlags : dictFlags & DICT_FLAG_INST_MASK) >>> 0
      const reply = await this.send({request: 'open', table, instanceFlags, requestFlags: 0}, dialect)
      const last = tried.length === candidates.length
      if (reply.status !== PROXY_STAT.BAD || last) {
        if (reply.status !== PROXY_STAT.BAD) {
          this.negotiated = dialect
          learnedDialects.set(this.socketPath, dialect)
        }
        return {reply, dialect, tried}
      }
      // A server that rejected the request may not have read all of it: start afresh.
      this.dropConnection()
    }
    throw new Error('unreachable')
  }

  async request(req: Omit<ProxyRequest, 'dialect'>): Promise<ProxyReply> {
    return this.send(req, this.dialect)
  }

  close(): void {
    this.dropConnection()
  }

  private async send(req: Omit<ProxyRequest, 'dialect'>, dialect: Dialect): Promise<ProxyReply> {
    const full: ProxyRequest = {...req, dialect}
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

  private dropConnection(): void {
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

export interface ServiceClientPoolOptions extends ConnectionOptions {
  /** With 'auto': the dialect asked first where nothing was learnt yet. */
  expectedDialect?: Dialect
}

/** One client per socket path for the whole command. */
export class ServiceClientPool {
  private readonly clients = new Map<string, ServiceClient>()

  constructor(private readonly choice: DialectChoice = 'auto',
    private readonly options: ServiceClientPoolOptions = {timeoutMs: 30_000}) {}

  get(socketPath: string): ServiceClient {
    let client = this.clients.get(socketPath)
    if (!client) {
      client = new ServiceClient(socketPath, this.choice, this.options, this.options.expectedDialect)
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
