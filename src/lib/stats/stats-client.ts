// The client side of the stats socket (server/stats-socket.ts): connect, read one JSON
// document to the end of the stream.

import net from 'node:net'
import type {MainConfig} from '../config/index.js'
import {CliError} from '../cli/errors.js'
import {EXIT} from '../cli/exit-codes.js'
import {statsSocketCandidates} from '../server/stats-socket.js'
import type {StatsSnapshot} from '../server/stats.js'

/** A snapshot is a few kilobytes per table: more than this is not a stats socket speaking. */
const MAX_DOCUMENT_BYTES = 64 * 1024 * 1024
const READ_TIMEOUT_MS = 10_000

class SocketError extends Error {
  constructor(message: string, readonly code: string | undefined) {
    super(message)
  }
}

function readDocument(socketPath: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    const socket = net.createConnection({path: socketPath})
    socket.setTimeout(READ_TIMEOUT_MS, () => socket.destroy(new SocketError(`no statistics from ${socketPath} within ${READ_TIMEOUT_MS / 1000}s`, 'ETIMEDOUT')))
    socket.on('data', chunk => {
      size += chunk.length
      if (size > MAX_DOCUMENT_BYTES) socket.destroy(new SocketError(`${socketPath} sent more than ${MAX_DOCUMENT_BYTES} bytes: not a proxymap stats socket`, 'EPROTO'))
      else chunks.push(chunk)
    })
    socket.on('end', () => {
      socket.destroy()
      resolve(Buffer.concat(chunks).toString('utf8'))
    })
    socket.on('error', (err: NodeJS.ErrnoException) => reject(new SocketError(`${socketPath}: ${err.message}`, err.code)))
  })
}

/** The running standalone server's statistics (the first stats socket of the configuration that answers). */
export async function fetchStats(config: MainConfig, configDir: string | undefined): Promise<StatsSnapshot> {
  const candidates = statsSocketCandidates(config)
  let first: SocketError | undefined
  for (const socketPath of candidates) {
    let text: string
    try {
      text = await readDocument(socketPath)
    } catch (err) {
      const error = err as SocketError
      if (error.code === 'EACCES') throw new CliError(`cannot read ${socketPath}: permission denied`, EXIT.UNAVAILABLE,
        'the stats socket is in Postfix\'s private/ directory: run as root or as mail_owner')
      if (error.code !== 'ENOENT' && error.code !== 'ECONNREFUSED') throw new CliError(error.message, EXIT.UNAVAILABLE)
      first ??= error
      continue
    }
    try {
      return JSON.parse(text) as StatsSnapshot
    } catch {
      throw new CliError(`${socketPath} did not send a statistics document`, EXIT.UNAVAILABLE)
    }
  }
  throw new CliError(`no running proxymap serve: ${first?.message ?? candidates.join(', ')}`, EXIT.UNAVAILABLE,
    `start it with: proxymap serve${configDir ? ` -c ${configDir}` : ''} (only a standalone serve has statistics, not proxymap under master(8))`)
}
