// Raw bytes to a proxymap socket and whatever comes back within a while: for the tests that
// send what no real client sends (malformed, hostile or fuzzed requests).

import net from 'node:net'

export interface RawExchange {
  /** The server's first message (the protocol announcement), as many bytes as `announcementBytes`. */
  announcement: Buffer
  /** Everything after the announcement. */
  reply: Buffer
  /** Whether the server closed the connection. */
  closed: boolean
}

/** Connect, send `payload`, wait `waitMs`, disconnect. */
export function rawExchange(socketPath: string, payload: Buffer, announcementBytes: number, waitMs = 400): Promise<RawExchange> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let closed = false
    let connected = false
    const s = net.createConnection({path: socketPath})
    s.on('data', c => chunks.push(c))
    s.on('error', err => { closed = true; if (!connected) reject(err) })
    s.on('close', () => { closed = true })
    s.once('connect', () => {
      connected = true
      s.write(payload)
      setTimeout(() => {
        const all = Buffer.concat(chunks)
        s.destroy()
        resolve({announcement: all.subarray(0, announcementBytes), reply: all.subarray(announcementBytes), closed})
      }, waitMs)
    })
  })
}
