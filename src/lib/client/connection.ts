// One connection to a proxymap/proxywrite service socket, as Postfix's clnt_stream does it:
// read the server's announcement, then strictly one request, one reply.

import net from 'node:net'
import path from 'node:path'
import {AttrDecoder, AttrList, MAIL_ATTR, MAIL_ATTR_PROTO_PROXYMAP, encodeRequest, parseReply,
  ProtocolError, ProxyReply, ProxyRequest} from '../protocol/index.js'

export class ServiceUnavailableError extends Error {
  constructor(readonly socketPath: string, override readonly cause: NodeJS.ErrnoException | Error) {
    super(describeConnectError(socketPath, cause))
    this.name = 'ServiceUnavailableError'
  }
}

function describeConnectError(socketPath: string, err: NodeJS.ErrnoException | Error): string {
  const code = (err as NodeJS.ErrnoException).code
  if (code === 'ENOENT')
    return `no service socket at ${socketPath}: the ${path.basename(socketPath)} service is not running for this configuration (start it with "proxymap serve -c DIR" or "postfix start"), or -c points at another configuration`
  if (code === 'ECONNREFUSED')
    return `connection refused by ${socketPath}: a stale socket is left behind and no server is listening (start the service)`
  if (code === 'EACCES')
    return `permission denied connecting to ${socketPath}: run as a user that may reach $queue_directory/private (usually root)`
  return `cannot talk to ${socketPath}: ${err.message}`
}

export interface ConnectionOptions {
  /** Limit for connecting and for each reply, in milliseconds (Postfix: ipc_timeout). */
  timeoutMs: number
}

export class ServiceConnection {
  private readonly decoder = new AttrDecoder()
  private readonly received: AttrList[] = []
  private waiter: {resolve: (m: AttrList) => void; reject: (e: Error) => void} | null = null
  private failure: Error | null = null
  private chain: Promise<unknown> = Promise.resolve()

  private constructor(readonly socketPath: string, private readonly socket: net.Socket,
    private readonly options: ConnectionOptions) {
    socket.on('data', chunk => {
      try {
        for (const message of this.decoder.push(chunk)) this.deliver(message)
      } catch (err) {
        this.fail(err as Error)
      }
    })
    socket.on('error', err => this.fail(err))
    socket.on('close', () => this.fail(new ProtocolError(`connection closed by ${socketPath}`)))
  }

  static async connect(socketPath: string, options: ConnectionOptions): Promise<ServiceConnection> {
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.createConnection({path: socketPath})
      const timer = setTimeout(() => { s.destroy(); reject(new ServiceUnavailableError(socketPath, new Error('timed out connecting'))) }, options.timeoutMs)
      s.once('connect', () => { clearTimeout(timer); resolve(s) })
      s.once('error', err => { clearTimeout(timer); reject(new ServiceUnavailableError(socketPath, err)) })
    })
    socket.setNoDelay?.(true)
    const connection = new ServiceConnection(socketPath, socket, options)
    const hello = await connection.nextMessage()
    if (hello.length !== 1 || hello[0][0] !== MAIL_ATTR.PROTO || hello[0][1] !== MAIL_ATTR_PROTO_PROXYMAP) {
      connection.close()
      throw new ProtocolError(`${socketPath} is not a proxymap service: it announced ${hello.map(([n, v]) => `${n}=${v}`).join(' ') || 'nothing'}`)
    }
    return connection
  }

  get broken(): boolean {
    return this.failure !== null
  }

  /** Send one request and wait for its reply; requests on one connection are serialised. */
  request(req: ProxyRequest): Promise<ProxyReply> {
    const run = async (): Promise<ProxyReply> => {
      if (this.failure) throw this.failure
      this.socket.write(encodeRequest(req))
      const reply = await this.nextMessage()
      return parseReply(req.request, req.dialect, reply)
    }
    const result = this.chain.then(run, run)
    this.chain = result.catch(() => undefined)
    return result
  }

  close(): void {
    this.failure ??= new ProtocolError('connection closed')
    this.socket.destroy()
  }

  private nextMessage(): Promise<AttrList> {
    const ready = this.received.shift()
    if (ready) return Promise.resolve(ready)
    if (this.failure) return Promise.reject(this.failure)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.fail(new ProtocolError(`timeout after ${this.options.timeoutMs} ms waiting for a reply from ${this.socketPath}`))
      }, this.options.timeoutMs)
      this.waiter = {
        resolve: m => { clearTimeout(timer); resolve(m) },
        reject: e => { clearTimeout(timer); reject(e) },
      }
    })
  }

  private deliver(message: AttrList): void {
    const waiter = this.waiter
    if (waiter) {
      this.waiter = null
      waiter.resolve(message)
    } else this.received.push(message)
  }

  private fail(err: Error): void {
    if (this.failure) return
    this.failure = err
    this.socket.destroy()
    const waiter = this.waiter
    this.waiter = null
    waiter?.reject(err)
  }
}
