// One client connection: announce the protocol, decode requests as they arrive, answer
// each in order, in the dialect it was asked in. Malformed input gets Postfix's reply
// (BAD) where Postfix has one, and a clean close where Postfix would lose the thread.

import type net from 'node:net'
import type {Logger} from '../log/logger.js'
import {
  AttrDecoder, AttrFramingError, AttrLimits, AttrList, DEFAULT_ATTR_LIMITS, PROTOCOL_ANNOUNCEMENT,
  PROXY_STAT, UNRECOGNIZED_REPLY, encodeReply, parseRequest,
} from '../protocol/index.js'
import {ClientSession, ProxymapService} from './proxymap-service.js'

export interface ConnectionOptions {
  log: Logger
  limits?: AttrLimits
  /** Postfix's ipc_timeout: the longest a request may take to arrive once begun. */
  ipcTimeoutMs: number
  /** Called when the connection ends, for bookkeeping (max_use, status). */
  onClose?: () => void
  /**
   * Postfix's daemon_timeout: the longest one request may take. Postfix's watchdog kills
   * the whole process; we answer that request RETRY and keep serving the others.
   */
  daemonTimeoutMs?: number
}

export function serveConnection(socket: net.Socket, service: ProxymapService, options: ConnectionOptions): void {
  const {log} = options
  const decoder = new AttrDecoder(options.limits ?? DEFAULT_ATTR_LIMITS)
  const session = new ClientSession()
  const backlog: AttrList[] = []
  let busy = false
  let closed = false
  let stallTimer: NodeJS.Timeout | undefined

  const close = (): void => {
    if (closed) return
    closed = true
    clearTimeout(stallTimer)
    socket.destroy()
  }

  const send = (bytes: Buffer): void => {
    if (!closed) socket.write(bytes)
  }

  const drain = (): void => {
    while (!busy && !closed && backlog.length > 0) {
      const message = backlog.shift()!
      const parsed = parseRequest(message)
      switch (parsed.kind) {
        case 'garbage':
          log.warning(`malformed request from client: ${parsed.reason} -- closing the connection`)
          close()
          return
        case 'unrecognized':
          log.warning(`unrecognized request: "${parsed.name}", ignored`)
          send(UNRECOGNIZED_REPLY)
          continue
        case 'bad':
          log.warning(`malformed ${parsed.request} request from client: ${parsed.reason}`)
          send(encodeReply(parsed.request, parsed.dialect, {status: PROXY_STAT.BAD}))
          continue
        case 'ok': {
          const req = parsed.request
          if (parsed.unexpected !== undefined)
            log.warning(`unexpected attribute ${parsed.unexpected} from client (expecting: (list terminator))`)
          const reply = service.handle(req, session)
          if (reply instanceof Promise) {
            busy = true
            let answered = false
            const answer = (bytes: Buffer): void => {
              if (answered) return
              answered = true
              clearTimeout(watchdog)
              send(bytes)
              busy = false
              drain()
            }
            const watchdog = options.daemonTimeoutMs ? setTimeout(() => {
              log.warning(`${req.request} ${req.table}: no answer within daemon_timeout (${options.daemonTimeoutMs! / 1000}s) -- replying RETRY`)
              answer(encodeReply(req.request, req.dialect, {status: PROXY_STAT.RETRY}))
            }, options.daemonTimeoutMs) : undefined
            watchdog?.unref()
            reply.then(r => answer(encodeReply(req.request, req.dialect, r)), (err: Error) => {
              log.warning(`${req.request} ${req.table}: ${err.message}`)
              answer(encodeReply(req.request, req.dialect, {status: PROXY_STAT.RETRY}))
            })
            return
          }
          send(encodeReply(req.request, req.dialect, reply))
        }
      }
    }
  }

  socket.on('data', chunk => {
    let messages: AttrList[]
    try {
      messages = decoder.push(chunk)
    } catch (err) {
      if (!(err instanceof AttrFramingError)) throw err
      log.warning(`malformed request from client: ${err.message} -- closing the connection`)
      close()
      return
    }
    clearTimeout(stallTimer)
    if (decoder.midMessage) {
      stallTimer = setTimeout(() => {
        log.warning('timeout on client connection while reading a request -- closing the connection')
        close()
      }, options.ipcTimeoutMs)
      stallTimer.unref()
    }
    if (messages.length > 0) {
      for (const m of messages) backlog.push(m)
      drain()
    }
  })
  // A client that vanishes is routine (postmap exits after its last lookup).
  socket.on('error', () => close())
  socket.on('close', () => {
    closed = true
    clearTimeout(stallTimer)
    options.onClose?.()
  })
  socket.write(PROTOCOL_ANNOUNCEMENT)
}
