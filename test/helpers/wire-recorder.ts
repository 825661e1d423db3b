// A relay between proxymap clients and a proxymap server that records every byte each way,
// per connection, so that two conversations (say, real Postfix 3.11 postmap and our CLI,
// or Postfix's proxymap and ours answering the same client) can be compared exactly.

import fs from 'node:fs'
import net from 'node:net'

export interface RecordedConnection {
  /** Which listening socket it came in on (e.g. proxymap or proxywrite). */
  service: string
  /** Bytes in the order they were seen; consecutive chunks of one side are merged. */
  chunks: {from: 'client' | 'server'; bytes: Buffer}[]
}

export interface WireRecorder {
  readonly connections: RecordedConnection[]
  /** Each connection as text: one line per direction change, NULs shown as \0. */
  transcript(): string[]
  clear(): void
  close(): Promise<void>
}

export const showBytes = (b: Buffer): string => b.toString('latin1').replace(/\0/g, '\\0').replace(/\n/g, '\\n')

/**
 * Listen on each `listen` socket path (mode 0666, as master makes them) and forward every
 * connection to the `forward` path of the same service.
 */
export async function startWireRecorder(routes: {service: string; listen: string; forward: string}[]): Promise<WireRecorder> {
  const connections: RecordedConnection[] = []
  const servers: net.Server[] = []
  const sockets = new Set<net.Socket>()
  const record = (conn: RecordedConnection, from: 'client' | 'server', bytes: Buffer): void => {
    const last = conn.chunks[conn.chunks.length - 1]
    if (last && last.from === from) last.bytes = Buffer.concat([last.bytes, bytes])
    else conn.chunks.push({from, bytes})
  }
  for (const route of routes) {
    try {
      fs.unlinkSync(route.listen)
    } catch {
      // not there
    }
    const server = net.createServer(client => {
      const conn: RecordedConnection = {service: route.service, chunks: []}
      connections.push(conn)
      const upstream = net.connect(route.forward)
      sockets.add(client).add(upstream)
      client.on('data', d => { record(conn, 'client', d); upstream.write(d) })
      upstream.on('data', d => { record(conn, 'server', d); client.write(d) })
      client.on('end', () => upstream.end())
      upstream.on('end', () => client.end())
      client.on('error', () => upstream.destroy())
      upstream.on('error', () => client.destroy())
      client.on('close', () => { sockets.delete(client); upstream.destroy() })
      upstream.on('close', () => { sockets.delete(upstream); client.destroy() })
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(route.listen, () => resolve())
    })
    fs.chmodSync(route.listen, 0o666)
    servers.push(server)
  }
  return {
    connections,
    transcript: () => connections.map(c => `${c.service}: ${c.chunks.map(ch => `${ch.from === 'client' ? 'C>' : 'S>'} ${showBytes(ch.bytes)}`).join(' | ')}`),
    clear: () => { connections.length = 0 },
    close: async () => {
      for (const s of sockets) s.destroy()
      await Promise.all(servers.map(s => new Promise<void>(r => s.close(() => r()))))
      for (const route of routes) {
        try {
          fs.unlinkSync(route.listen)
        } catch {
          // already gone
        }
      }
    },
  }
}
