// One client connection: announce the protocol, decode requests as they arrive, answer
// each in order, in the dialect it was asked in. Malformed input gets Postfix's reply
// (BAD) where Postfix has one, and a clean close where Postfix would lose the thread.
//
// Flow control, as Postfix's one-request-at-a-time loop has by nature: the connection is
// not read while a request waits for its table with others queued behind it, nor while the
// client leaves more than OUTPUT_HIGH_WATER bytes of replies unread; the kernel's socket
// buffers then make the client wait. A client that half-closes after its requests gets
// every answer, then the end of the stream (the server socket must allow half-open).

import type net from 'node:net'
import type {Logger} from '../log/logger.js'
import {
  AttrDecoder, AttrFramingError, AttrLimits, AttrList, DEFAULT_ATTR_LIMITS, PROTOCOL_ANNOUNCEMENT,
  MAIL_ATTR, PROXY_STAT, ProxyReply, UNRECOGNIZED_REPLY, encodeReply, parseRequest,
} from '../protocol/index.js'
import {printable} from '../log/printable.js'
import type {BudgetHolder, InputBudget} from './input-budget.js'
import type {ProxymapService} from './proxymap-service.js'

/** Unread reply bytes at which reading stops until the client catches up. */
export const OUTPUT_HIGH_WATER = 64 * 1024

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
  /** The limit on unfinished request bytes shared by all connections. */
  budget?: InputBudget
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

/** The request name, for a log line about a message that could not be handled. */
function requestName(message: AttrList): string {
  return message[0]?.[0] === MAIL_ATTR.REQ ? message[0][1] : '(unknown)'
}

/** A connection being served, as the server's shutdown sees it. */
export interface ServedConnection {
  /**
   * The server is stopping: the request in progress is still answered, every later one gets
   * RETRY, and the connection ends (FIN after the replies) once nothing is pending.
   */
  stop(): void
  /** After stop(): answer RETRY to the request in progress now, and end the connection. */
  abandon(): void
  /** Resolves once nothing is left to answer: every reply sent, our side ended. */
  readonly settled: Promise<void>
  /** Resolves once the socket is closed. */
  readonly closed: Promise<void>
}

export function serveConnection(socket: net.Socket, service: ProxymapService, options: ConnectionOptions): ServedConnection {
  const {log} = options
  const decoder = new AttrDecoder(options.limits ?? DEFAULT_ATTR_LIMITS)
  const session = service.openSession()
  const backlog: AttrList[] = []
  let busy = false
  let closed = false
  let inputEnded = false
  let stopping = false
  /** While a request waits for its table: answer it RETRY now (shutdown). */
  let retryInProgress: (() => void) | undefined
  let stallTimer: NodeJS.Timeout | undefined
  const {budget} = options
  const holder: BudgetHolder = {
    evict: reason => {
      log.warning(`${reason} -- closing the connection`)
      close()
    },
  }

  let settle: () => void = () => undefined
  const settled = new Promise<void>(resolve => { settle = resolve })

  /** Ends the connection's life once: false when it had already ended. */
  const finish = (): boolean => {
    if (closed) return false
    closed = true
    settle()
    clearTimeout(stallTimer)
    budget?.release(holder)
    session.close()
    return true
  }

  const close = (): void => {
    if (finish()) socket.destroy()
  }

  // Postfix flushes each reply before it reads the next request, so a client whose later
  // request ends the connection has had every earlier reply: end only once ours are out
  // (or after ipc_timeout, for a client that reads nothing).
  let lingerTimer: NodeJS.Timeout | undefined
  const closeAfterReplies = (): void => {
    if (!finish()) return
    socket.pause()
    socket.end(() => socket.destroy())
    lingerTimer = setTimeout(() => socket.destroy(), options.ipcTimeoutMs)
    lingerTimer.unref()
  }

  const send = (bytes: Buffer): void => {
    if (!closed) socket.write(bytes)
  }

  const updateFlow = (): void => {
    if (closed) return
    if (inputEnded) {
      // Every complete request is answered; the FIN follows the replies.
      if (!busy && backlog.length === 0) closeAfterReplies()
      return
    }
    const hold = (busy && backlog.length > 0) || socket.writableLength > OUTPUT_HIGH_WATER
    if (hold) socket.pause()
    else if (socket.isPaused()) socket.resume()
  }

  // A defect met while handling a request (decode, dispatch, table, encode) ends this
  // connection only, with one log line; the client reconnects as after any I/O error.
  const fail = (what: string, err: unknown): void => {
    if (closed) return
    log.warning(`${what}: ${errorText(err)} -- closing the connection`)
    closeAfterReplies()
  }

  const drain = (): void => {
    while (!busy && !closed && backlog.length > 0) {
      const message = backlog.shift()!
      try {
        if (!answerOne(message)) break
      } catch (err) {
        fail(`error handling ${printable(requestName(message))} request`, err)
        return
      }
    }
    updateFlow()
  }

  /** Answer one message; false when the rest must wait (busy) or the connection ended. */
  const answerOne = (message: AttrList): boolean => {
    const parsed = parseRequest(message)
    switch (parsed.kind) {
      case 'garbage':
        service.stats.malformedInput++
        log.warning(`malformed request from client: ${printable(parsed.reason)} -- closing the connection`)
        closeAfterReplies()
        return false
      case 'unrecognized':
        service.stats.unrecognizedRequests++
        log.warning(`unrecognized request: "${printable(parsed.name)}", ignored`)
        send(UNRECOGNIZED_REPLY)
        return true
      case 'bad':
        service.stats.badRequests++
        log.warning(`malformed ${parsed.request} request from client: ${printable(parsed.reason)}`)
        send(encodeReply(parsed.request, parsed.dialect, {status: PROXY_STAT.BAD}))
        return true
      case 'ok': {
        const req = parsed.request
        if (parsed.unexpected !== undefined)
          log.warning(`unexpected attribute ${printable(parsed.unexpected)} from client (expecting: (list terminator))`)
        if (stopping) {
          send(encodeReply(req.request, req.dialect, {status: PROXY_STAT.RETRY}))
          return true
        }
        const reply = service.handle(req, session)
        if (reply instanceof Promise) {
          busy = true
          let answered = false
          // Runs later, outside drain's guard: its own failures end the connection here.
          const answer = (reply: () => ProxyReply): void => {
            if (answered) return
            answered = true
            retryInProgress = undefined
            clearTimeout(watchdog)
            try {
              send(encodeReply(req.request, req.dialect, reply()))
            } catch (err) {
              fail(`${req.request} ${printable(req.table)}: error sending the reply`, err)
              return
            }
            busy = false
            drain()
          }
          const watchdog = options.daemonTimeoutMs ? setTimeout(() => {
            log.warning(`${req.request} ${printable(req.table)}: no answer within daemon_timeout (${options.daemonTimeoutMs! / 1000}s) -- replying RETRY`)
            answer(() => ({status: PROXY_STAT.RETRY}))
          }, options.daemonTimeoutMs) : undefined
          watchdog?.unref()
          retryInProgress = () => {
            log.warning(`${req.request} ${printable(req.table)}: no answer before shutdown -- replying RETRY`)
            answer(() => ({status: PROXY_STAT.RETRY}))
          }
          reply.then(r => answer(() => r), (err: unknown) => {
            log.warning(`${req.request} ${printable(req.table)}: ${errorText(err)}`)
            answer(() => ({status: PROXY_STAT.RETRY}))
          })
          return false
        }
        send(encodeReply(req.request, req.dialect, reply))
        return true
      }
    }
  }

  socket.on('data', chunk => {
    if (inputEnded) return
    let messages: AttrList[]
    try {
      messages = decoder.push(chunk)
    } catch (err) {
      if (err instanceof AttrFramingError) {
        service.stats.malformedInput++
        log.warning(`malformed request from client: ${err.message} -- closing the connection`)
        // The requests completed before it are answered first; nothing more is read.
        inputEnded = true
        socket.pause()
        clearTimeout(stallTimer)
        budget?.release(holder)
        for (const m of err.completed) backlog.push(m)
        drain()
      } else fail('error reading a request', err)
      return
    }
    clearTimeout(stallTimer)
    budget?.hold(holder, decoder.bufferedBytes)
    if (closed) return
    if (decoder.midMessage) {
      stallTimer = setTimeout(() => {
        log.warning('timeout on client connection while reading a request -- closing the connection')
        close()
      }, options.ipcTimeoutMs)
      stallTimer.unref()
    }
    if (messages.length > 0) {
      for (const m of messages) backlog.push(m)
      // The replies to requests that arrived together leave in one write (end() flushes
      // them first when one of those requests ends the connection).
      const together = messages.length > 1
      if (together) socket.cork()
      drain()
      if (together) socket.uncork()
    }
  })
  socket.on('drain', updateFlow)
  // The client will send no more: answer what is complete, then end our side too. An
  // unfinished request at that point is dropped, as Postfix's attr_scan() fails on EOF.
  socket.on('end', () => {
    inputEnded = true
    clearTimeout(stallTimer)
    updateFlow()
  })
  // A client that vanishes is routine (postmap exits after its last lookup).
  socket.on('error', () => close())
  let socketClosed: () => void = () => undefined
  const closedPromise = new Promise<void>(resolve => { socketClosed = resolve })
  socket.on('close', () => {
    closed = true
    settle()
    clearTimeout(stallTimer)
    clearTimeout(lingerTimer)
    budget?.release(holder)
    session.close()
    options.onClose?.()
    socketClosed()
  })
  socket.write(PROTOCOL_ANNOUNCEMENT)

  // Shutting down reads like a client that half-closes: what is pending is answered, then FIN.
  const stop = (): void => {
    if (stopping) return
    stopping = true
    inputEnded = true
    clearTimeout(stallTimer)
    drain()
  }
  return {
    stop,
    abandon: () => {
      stop()
      retryInProgress?.()
    },
    settled,
    closed: closedPromise,
  }
}
