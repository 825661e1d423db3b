// A socketmap(5) server for tests of backend concurrency: it counts connections and
// requests, and holds its answers until the test lets them go, so that a test can see what
// is in flight at once without timings.

import * as fs from 'node:fs'
import * as net from 'node:net'

/**
 * Calls `onRequest` with each netstring request a socketmap(5) client sends on `sock`, and
 * writes what it is given back as a netstring reply.
 */
export function onSocketmapRequests(sock: net.Socket, onRequest: (request: string, reply: (text: string) => void) => void): void {
  let buf = Buffer.alloc(0)
  const reply = (text: string): void => { sock.write(`${Buffer.byteLength(text, 'latin1')}:${text},`, 'latin1') }
  sock.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d])
    for (;;) {
      const colon = buf.indexOf(0x3a)
      if (colon < 0) return
      const len = Number(buf.subarray(0, colon).toString())
      if (buf.length < colon + len + 2) return
      const request = buf.subarray(colon + 1, colon + 1 + len).toString('latin1')
      buf = buf.subarray(colon + len + 2)
      onRequest(request, reply)
    }
  })
}

/** A socketmap server that answers "name key" with "OK name=key" ("TEMP ..." for key temp), only when told to. */
export class HeldSocketmap {
  readonly server: net.Server
  readonly requests: string[] = []
  open = 0
  mostAtOnce = 0
  accepted = 0
  private readonly held: (() => void)[] = []
  holding = true

  constructor(readonly socketPath: string) {
    this.server = net.createServer((sock) => {
      this.accepted++
      this.mostAtOnce = Math.max(this.mostAtOnce, ++this.open)
      sock.once('close', () => this.open--)
      sock.on('error', () => {})
      onSocketmapRequests(sock, (request, reply) => {
        this.requests.push(request)
        const [name, key] = request.split(' ')
        const answer = (): void => reply(key === 'temp' ? 'TEMP try later' : `OK ${name}=${key}`)
        if (this.holding) this.held.push(answer)
        else answer()
      })
    })
  }

  /** Listen; `mode` for servers that run as another user (proxymap runs as mail_owner). */
  listen(mode = 0o600): Promise<void> {
    return new Promise((resolve) => this.server.listen(this.socketPath, () => {
      fs.chmodSync(this.socketPath, mode)
      resolve()
    }))
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()))
  }

  /** Answer the requests held so far, oldest first; `count` of them, or all. */
  answer(count = Infinity): void {
    for (const a of this.held.splice(0, count)) a()
  }

  get heldCount(): number {
    return this.held.length
  }

  /** Answer everything from now on. */
  letGo(): void {
    this.holding = false
    this.answer()
  }

  reset(): void {
    this.requests.length = 0
    this.mostAtOnce = this.open
    this.accepted = 0
    this.holding = true
  }
}
