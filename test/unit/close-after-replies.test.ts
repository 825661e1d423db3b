// A connection the server ends because of what the client sent (a message that is no
// request, a first open on which Postfix's dict_open() panics, a string over the decoder's
// limits) still delivers every reply to the requests before it, as Postfix's client sees
// them: Postfix flushes each reply before it reads the next request. Found by the fuzzer
// (test/interop/fuzz.test.ts): under load, replies still queued in the socket were dropped.
//
// Run: node --import tsx --test test/unit/close-after-replies.test.ts

import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import {after, before, test} from 'node:test'

import {AccessPolicy} from '../../src/lib/access/index.js'
import {loadMainConfig} from '../../src/lib/config/index.js'
import {Logger, MemorySink} from '../../src/lib/log/logger.js'
import {AttrDecoder, DEFAULT_ATTR_LIMITS} from '../../src/lib/protocol/index.js'
import {serveConnection} from '../../src/lib/server/connection.js'
import {ProxymapService} from '../../src/lib/server/proxymap-service.js'
import {TableRegistry} from '../../src/lib/tables/registry.js'

const INLINE = 'inline:{a=1,b=2}'
const b = (s: string): Buffer => Buffer.from(s, 'latin1')
const LOOKUP = b(`request\0lookup\0table\0${INLINE}\0flags\x00524353\0key\0a\0\0`)
const HIT = 'status\x000\0value\x001\0\0'
/** Enough replies (20 bytes each) to fill the socket buffers and the server's output queue. */
const PIPELINED = 20_000

let dir: string
let socketPath: string
let listener: net.Server
let sink: MemorySink

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pm-close-'))
  fs.writeFileSync(path.join(dir, 'main.cf'), `compatibility_level = 3.6\nproxy_read_maps = proxy:${INLINE}\n`)
  const config = loadMainConfig({configDir: dir})
  sink = new MemorySink()
  const log = new Logger('postfix/proxymap[1]', [sink])
  socketPath = path.join(dir, 'proxymap.sock')
  // A fresh service per connection: every open is a first open.
  listener = net.createServer({allowHalfOpen: true}, socket => {
    const service = new ProxymapService({kind: 'read', policy: AccessPolicy.fromConfig(config), registry: new TableRegistry(), config, log})
    serveConnection(socket, service, {log, ipcTimeoutMs: 5000})
  })
  await new Promise<void>(resolve => listener.listen(socketPath, resolve))
})

after(async () => {
  await new Promise<void>(resolve => listener?.close(() => resolve()))
  fs.rmSync(dir, {recursive: true, force: true})
})

/**
 * Pipelines PIPELINED lookups and then `last`, reads nothing until the server has stopped
 * reading (its output is full), then everything up to the end of the connection.
 */
function pipelineThen(last: Buffer): Promise<{replies: string[]; closed: boolean}> {
  return new Promise((resolve, reject) => {
    const decoder = new AttrDecoder({...DEFAULT_ATTR_LIMITS, maxMessageBytes: 1 << 30})
    const replies: string[] = []
    const s = net.createConnection({path: socketPath})
    s.pause()
    const timer = setTimeout(() => {
      s.destroy()
      resolve({replies, closed: false})
    }, 10_000)
    s.on('data', c => {
      for (const m of decoder.push(c)) replies.push(m.map(([n, v]) => `${n}\0${v}\0`).join('') + '\0')
    })
    s.on('error', err => (err as NodeJS.ErrnoException).code === 'ECONNRESET' || reject(err))
    s.on('close', () => {
      clearTimeout(timer)
      resolve({replies: replies.slice(1), closed: true})
    })
    s.once('connect', () => {
      s.write(Buffer.concat([...Array.from({length: PIPELINED}, () => LOOKUP), last]))
      setTimeout(() => s.resume(), 300)
    })
  })
}

async function assertAllAnswered(last: Buffer, logged: RegExp): Promise<void> {
  const before = sink.lines.length
  const {replies, closed} = await pipelineThen(last)
  assert.ok(closed, 'the server ends the connection')
  assert.equal(replies.length, PIPELINED, 'every request before the last is answered')
  assert.ok(replies.every(r => r === HIT), 'with its reply')
  assert.ok(sink.lines.slice(before).some(l => logged.test(l)), sink.lines.slice(before).join('\n'))
}

test('a message that is no request: the replies before it arrive, then the end', async () => {
  await assertAllAnswered(b('table\0x\0\0'), /malformed request from client: unexpected attribute table \(expecting: request\) -- closing/)
})

test('a first open with LOCK and OPEN_LOCK (Postfix panics): the replies before it arrive, then the end', async () => {
  await assertAllAnswered(b(`request\0lookup\0table\0${INLINE}\0flags\x0065600\0key\0a\0\0`), /both "open" lock and "access" lock -- closing the connection/)
})

test('a message over the decoder\'s limits, read with the requests before it: those are answered, then the end', async () => {
  // Small enough to arrive in the same read as the last lookups.
  const tooMany = b(`request\0lookup\0${'a\0b\0'.repeat(DEFAULT_ATTR_LIMITS.maxAttributes)}\0`)
  await assertAllAnswered(tooMany, /malformed request from client: more than 64 attributes in one message -- closing/)
})
