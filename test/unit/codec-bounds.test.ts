// Out-of-range numbers and hostile bytes, as a fuzzer sent them to `proxymap serve`: the
// codec refuses what Postfix's attr_print0 could not write, reads integers as attr_scan0's
// sscanf("%u") does, and one request never ends the process. Expected replies are what
// real Postfix sends for the same request (test/interop/hostile-requests.test.ts compares
// with real 3.7 and 3.11 on the wire).
//
// Run: node --import tsx --test test/unit/codec-bounds.test.ts

import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import {after, before, test} from 'node:test'

import {AccessPolicy} from '../../src/lib/access/index.js'
import {loadMainConfig} from '../../src/lib/config/index.js'
import {Logger, MemorySink} from '../../src/lib/log/logger.js'
import {printable} from '../../src/lib/log/printable.js'
import {
  AttrValueError, encodeAttrs, encodeReply, encodeRequest, parsePostfixUnsigned, parseRequest,
} from '../../src/lib/protocol/index.js'
import {serveConnection} from '../../src/lib/server/connection.js'
import {ProxymapService} from '../../src/lib/server/proxymap-service.js'
import {TableRegistry} from '../../src/lib/tables/registry.js'

const b = (s: string): Buffer => Buffer.from(s, 'latin1')
const text = (buf: Buffer): string => buf.toString('latin1')
const INLINE = 'inline:{a=1,b=2}'

test('reply flags at and above 2^31 are written as Postfix\'s %u, whole, at the exact length', () => {
  // What 3.11's proxymap answers to flags 4294967295 (or -1) on a v2 lookup.
  const full = 'status\x000\0flags\x004294967295\0value\x001\0\0'
  assert.equal(text(encodeReply('lookup', 'v2', {status: 0, flags: 0xffffffff, value: '1'})), full)
  assert.equal(text(encodeReply('lookup', 'v2', {status: 0, flags: -1, value: '1'})), full, 'the same 32 bits, signed')
  assert.equal(text(encodeReply('lookup', 'v2', {status: 0, flags: 0x80000000, value: '1'})), 'status\x000\0flags\x002147483648\0value\x001\0\0')
  assert.equal(text(encodeReply('lookup', 'v2', {status: 0, flags: 1 << 31, value: '1'})), 'status\x000\0flags\x002147483648\0value\x001\0\0')
  assert.equal(text(encodeReply('open', 'legacy', {status: 0, flags: 0x80000000})), 'status\x000\0flags\x002147483648\0\0')
  assert.equal(text(encodeReply('open', 'legacy', {status: 0, flags: 0xffffffff})), 'status\x000\0flags\x004294967295\0\0')
  assert.equal(text(encodeReply('open', 'legacy', {status: 0, flags: -1})), 'status\x000\0flags\x004294967295\0\0')
  assert.equal(text(encodeReply('sequence', 'v2', {status: 1, flags: -2147483648})), 'status\x001\0flags\x002147483648\0key\0\0value\0\0\0')
})

test('the encoder refuses what attr_print0 cannot write, instead of writing something else', () => {
  for (const bad of [2 ** 32, -1, 1.5, Number.NaN, Infinity, 2 ** 53])
    assert.throws(() => encodeAttrs([['flags', bad]]), AttrValueError, String(bad))
  assert.throws(() => encodeAttrs([['value', 'a\0b']]), AttrValueError, 'NUL inside a value')
  assert.throws(() => encodeAttrs([['value', 'caf\u00e9\u20ac']]), AttrValueError, 'not a byte string')
  assert.throws(() => encodeAttrs([['', 'x']]), AttrValueError, 'empty name')
  for (const bad of [2 ** 32, -(2 ** 31) - 1, 0.5])
    assert.throws(() => encodeReply('open', 'legacy', {status: 0, flags: bad}), AttrValueError, String(bad))
  assert.throws(() => encodeReply('open', 'legacy', {status: 9 as 0, flags: 0}), AttrValueError, 'unknown status')
  assert.equal(text(encodeAttrs([['flags', 0xffffffff], ['value', '\xff\x01']])), 'flags\x004294967295\0value\0\xff\x01\0\0')
  assert.equal(text(encodeRequest({request: 'lookup', dialect: 'v2', table: INLINE, instanceFlags: 0, requestFlags: -1, key: 'a'})),
    `request\0lookup\0table\0${INLINE}\0instance_flags\x000\0flags\x004294967295\0key\0a\0\0`)
})

test('integers are read as glibc sscanf("%u") reads them: 64-bit strtoul, then the low 32 bits', () => {
  const cases: [string, number | undefined][] = [
    ['0', 0], ['4294967295', 4294967295], ['-1', 4294967295], ['4294967296', 0], ['2147483648', 2147483648],
    ['-4294967295', 1], ['+5', 5], [' 7', 7], ['-0', 0],
    ['18446744073709551615', 4294967295], ['18446744073709551616', 4294967295], ['99999999999999999999', 4294967295],
    ['-18446744073709551615', 1], ['-18446744073709551616', 4294967295],
    ['', undefined], ['-', undefined], ['12 ', undefined], ['0x10', undefined], ['1e3', undefined], ['many', undefined],
  ]
  for (const [input, want] of cases) assert.equal(parsePostfixUnsigned(input), want, JSON.stringify(input))
  const parsed = parseRequest([['request', 'lookup'], ['table', INLINE], ['instance_flags', '0'], ['flags', '4294967295'], ['key', 'a']])
  assert.equal(parsed.kind, 'ok')
  assert.equal(parsed.kind === 'ok' && parsed.request.requestFlags, 4294967295)
})

test('printable() as Postfix: non-printable bytes become ?, UTF-8 characters stay', () => {
  assert.equal(printable('texthash:/x\nwarning: forged'), 'texthash:/x?warning: forged')
  assert.equal(printable('a\tb\rc\x00d\x7fe\x1bf'), 'a?b?c?d?e?f')
  assert.equal(printable('\xff\xc3\xa9 \x80caf\xc3\xa9'), '?\u00e9 ?caf\u00e9')
  assert.equal(printable('plain text'), 'plain text')
})

// The whole server path, in process: the 60-byte reproducer and its relatives, then a
// valid lookup on the same connection and a new one.
let dir: string
let sink: MemorySink
let service: ProxymapService
let listener: net.Server
let socketPath: string

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pm-bounds-'))
  fs.writeFileSync(path.join(dir, 'main.cf'), `compatibility_level = 3.6\nproxy_read_maps = proxy:${INLINE}\n`)
  const config = loadMainConfig({configDir: dir})
  sink = new MemorySink()
  const log = new Logger('postfix/proxymap[1]', [sink])
  service = new ProxymapService({kind: 'read', policy: AccessPolicy.fromConfig(config), registry: new TableRegistry(), config, log})
  socketPath = path.join(dir, 'proxymap.sock')
  listener = net.createServer(socket => serveConnection(socket, service, {log, ipcTimeoutMs: 5000}))
  await new Promise<void>(resolve => listener.listen(socketPath, resolve))
})

after(async () => {
  await new Promise<void>(resolve => listener?.close(() => resolve()))
  fs.rmSync(dir, {recursive: true, force: true})
})

/** Send `payload` on a new connection; the bytes after the announcement once `want` arrived (or 500 ms passed). */
function exchange(payload: Buffer, want: number): Promise<{reply: string; closed: boolean}> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let closed = false
    const s = net.createConnection({path: socketPath})
    const finish = (): void => {
      clearTimeout(timer)
      s.destroy()
      resolve({reply: text(Buffer.concat(chunks)).slice(28), closed})
    }
    const timer = setTimeout(finish, 500)
    s.on('data', c => { chunks.push(c); if (Buffer.concat(chunks).length >= 28 + want) finish() })
    s.on('error', reject)
    s.on('close', () => { closed = true })
    s.once('connect', () => s.write(payload))
  })
}

const VALID_V2 = `request\0lookup\0table\0${INLINE}\0instance_flags\x000\0flags\x000\0key\0b\0\0`
const VALID_V2_REPLY = 'status\x000\0flags\x000\0value\x002\0\0'

test('the fuzzer\'s requests get complete replies, and the connection keeps serving', async () => {
  const cases: [string, string][] = [
    [`request\0lookup\0table\0${INLINE}\0instance_flags\x000\0flags\x004294967295\0key\0a\0\0`, 'status\x000\0flags\x004294967295\0value\x001\0\0'],
    [`request\0lookup\0table\0${INLINE}\0instance_flags\x000\0flags\0-1\0key\0a\0\0`, 'status\x000\0flags\x004294967295\0value\x001\0\0'],
    [`request\0lookup\0table\0${INLINE}\0instance_flags\x000\0flags\x002147483648\0key\0a\0\0`, 'status\x000\0flags\x002147483648\0value\x001\0\0'],
    [`request\0lookup\0table\0${INLINE}\0instance_flags\x000\0flags\x004294967296\0key\0a\0\0`, 'status\x000\0flags\x000\0value\x001\0\0'],
  ]
  for (const [request, reply] of cases) {
    const got = await exchange(b(request + VALID_V2), reply.length + VALID_V2_REPLY.length)
    assert.equal(got.reply, reply + VALID_V2_REPLY, JSON.stringify(request))
  }
  const again = await exchange(b(VALID_V2), VALID_V2_REPLY.length)
  assert.equal(again.reply, VALID_V2_REPLY)
})

test('a table name with a newline is logged with the newline as ?, as Postfix logs it', async () => {
  const before = sink.lines.length
  const got = await exchange(b('request\0lookup\0table\0texthash:/x\nwarning: forged\xff\0flags\x000\0key\0a\0\0'), 17)
  assert.equal(got.reply, 'status\x004\0value\0\0\0')
  const lines = sink.lines.slice(before)
  assert.deepEqual(lines, [
    'postfix/proxymap[1]: warning: request for unapproved table: "texthash:/x?warning: forged?"',
    'postfix/proxymap[1]: warning: to approve this table for read-only access, list proxy:texthash:/x?warning: forged? in main.cf:proxy_read_maps',
  ])
})

test('a defect while answering ends that connection only, logged once', async () => {
  const original = service.handle.bind(service)
  service.handle = () => { throw new TypeError('boom') }
  const before = sink.lines.length
  try {
    const got = await exchange(b(VALID_V2), 1)
    assert.equal(got.reply, '')
    assert.ok(got.closed, 'the connection is closed')
  } finally {
    service.handle = original
  }
  assert.deepEqual(sink.lines.slice(before), ['postfix/proxymap[1]: warning: error handling lookup request: boom -- closing the connection'])
  service.handle = () => Promise.resolve({status: 0, flags: 2 ** 40})
  try {
    const got = await exchange(b(VALID_V2), 1)
    assert.equal(got.reply, '')
  } finally {
    service.handle = original
  }
  assert.match(sink.lines.at(-1)!, /warning: lookup inline:\{a=1,b=2\}: error sending the reply: dict flags out of range: 1099511627776 -- closing the connection$/)
  assert.equal((await exchange(b(VALID_V2), VALID_V2_REPLY.length)).reply, VALID_V2_REPLY)
})
