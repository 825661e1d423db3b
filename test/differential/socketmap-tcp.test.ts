// Differential test of the socketmap and tcp tables against real Postfix 3.7: scripted peers
// written here (a socketmap_table(5) netstring server on loopback TCP and on a UNIX socket, a
// tcp_table(5) line server on loopback TCP) answer each key with one kind of reply: found,
// not found, every error status, malformed and oversized replies, a peer that hangs up.
// For every (table, key) our lookup is compared with `postmap -q KEY TABLE`: stdout,
// found / not found / error, and the warnings on stderr. The peers record every request, and
// the requests our client sent must be byte for byte those postmap sent (key encoding,
// netstring framing, retries). Then `postmap -q - proxy:TABLE` answered by Postfix's own
// proxymap and by our server must print the same.
//
// A missing postmap FAILS the test.
//
// Run: node --import tsx --test test/differential/socketmap-tcp.test.ts

import {after, before, test} from 'node:test'
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'

import type {MainConfig} from '../../src/lib/config/index.js'
import {postmapQueryFlags} from '../../src/lib/query/query.js'
import {OpenOptions, Table} from '../../src/lib/tables/table.js'
import {socketmapType} from '../../src/lib/tables/socketmap.js'
import {tcpType} from '../../src/lib/tables/tcp.js'
import {TableRegistry} from '../../src/lib/tables/registry.js'
import {createPostfixInstance, PostfixInstance, requirePostfix} from '../helpers/postfix.js'
import {theirsThenOurs} from '../helpers/compare.js'
import {freeLoopbackPort} from '../helpers/ports.js'
import {fromBinary, makeConfig, toBinary} from './pattern-helpers.js'
import {pool, postmapWarnedOutcome, printable, warnedLookup, type WarnedOutcome} from './table-helpers.js'

const registry = new TableRegistry()
registry.register(socketmapType)
registry.register(tcpType)

// ----------------------------------------------------------------------- the peers

/** A scripted reply: bytes to send, or hang up without answering. */
type Reply = Buffer | 'close'
const bin = (s: string): Buffer => Buffer.from(s, 'latin1')
const netstring = (s: string | Buffer): Buffer => {
  const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : s
  return Buffer.concat([bin(`${b.length}:`), b, bin(',')])
}

const MAX_REPLY = 100_000

/** socketmap replies by key (UTF-8 text as received); anything else is OK NAME/KEY. */
function socketmapReply(name: string, rawKey: Buffer): Reply {
  switch (rawKey.toString('utf8')) {
    case 'missing': return netstring('NOTFOUND ')
    case 'notfound-bare': return netstring('NOTFOUND')
    case 'ok-bare': return netstring('OK')
    case 'ok-empty': return netstring('OK ')
    case 'ok-spaces': return netstring('OK  two  spaces ')
    case 'temp': return netstring('TEMP backend busy')
    case 'timeout': return netstring('TIMEOUT backend slow')
    case 'perm': return netstring('PERM \t  no such map here')
    case 'perm-bare': return netstring('PERM')
    case 'perm-8bit': return netstring(Buffer.concat([bin('PERM bad \x01ctl '), Buffer.from('é', 'utf8'), bin(' \xff')]))
    case 'unknown': return netstring('MAYBE who knows')
    case 'lowercase-ok': return netstring('ok value')
    case 'empty-reply': return netstring('')
    case 'special': return netstring(Buffer.concat([bin('OK tab\there, comma; colon: 100% '), Buffer.from('é ü 日本', 'utf8'), bin(' \x01\x7f end')]))
    case 'nul-value': return netstring(bin('OK before\0after'))
    case 'bad-terminator': return bin('5:OK ab;')
    case 'bad-length': return bin('x5:OK ab,')
    case 'no-length': return bin(':,')
    case 'huge-length': return bin('99999999999999999999999:')
    case 'over-limit': return netstring('OK ' + 'y'.repeat(MAX_REPLY - 2))
    case 'at-limit': return netstring('OK ' + 'z'.repeat(MAX_REPLY - 3))
    case 'close': return 'close'
    default: return netstring(Buffer.concat([bin('OK '), Buffer.from(`${name}/`, 'utf8'), rawKey]))
  }
}

const hexq = (raw: Buffer): string => [...raw].map((c) =>
  c !== 0x25 && c > 0x20 && c < 0x7f ? String.fromCharCode(c) : `%${c.toString(16).toUpperCase().padStart(2, '0')}`).join('')

/** tcp_table replies by key (decoded request key, UTF-8 text); anything else is 200 got:KEY. */
function tcpReply(key: Buffer): Reply {
  const line = (s: string): Buffer => bin(s + '\n')
  switch (key.toString('utf8')) {
    case 'missing': return line('500 not found')
    case 'missing-tab': return line('500\tno such key')
    case 'temp': return line('400 try again later')
    case 'temp-450': return line('450 busy')
    case 'bad-status': return line('300 what is this')
    case 'status-9': return line('999 nine')
    case 'garbage': return line('garbage reply')
    case 'short': return line('200')
    case 'nodigits': return line('2x0 value')
    case 'bad-hex': return line('200 a%zzb')
    case 'bad-hex-end': return line('200 a%4')
    case 'tab-sep': return line('200\ttab separated')
    case 'crlf': return bin('200 windows\r\n')
    case 'lower-hex': return line('200 caf%c3%a9%20ok%2525')
    case 'spaces': return line('200 raw spaces are kept')
    case 'nul-value': return line('200 before%00after')
    case 'ctl-value': return line('200 bell%07 del%7F')
    case 'at-limit': return line('200 ' + 'a'.repeat(4095 - 4))
    case 'over-limit': return line('200 ' + 'b'.repeat(4096 - 4))
    case 'way-over': return line('200 ' + 'c'.repeat(10_000))
    case 'close': return 'close'
    default: return line(`200 got:${hexq(key)}`)
  }
}

/** Every request each peer received, in order of arrival; reset between runs. */
const received: Buffer[] = []

function socketmapPeer(socket: net.Socket): void {
  let buf = Buffer.alloc(0)
  socket.on('error', () => {})
  socket.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d])
    for (;;) {
      const colon = buf.indexOf(0x3a)
      if (colon < 0) return
      const len = Number(buf.subarray(0, colon).toString('latin1'))
      if (buf.length < colon + len + 2) return
      const request = buf.subarray(0, colon + len + 2)
      buf = buf.subarray(colon + len + 2)
      received.push(request)
      const body = request.subarray(colon + 1, colon + 1 + len)
      const sp = body.indexOf(0x20)
      const reply = socketmapReply(body.subarray(0, sp).toString('utf8'), body.subarray(sp + 1))
      if (reply === 'close') {
        socket.destroy()
        return
      }
      socket.write(reply)
    }
  })
}

function tcpPeer(socket: net.Socket): void {
  let buf = Buffer.alloc(0)
  socket.on('error', () => {})
  socket.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d])
    for (let nl = buf.indexOf(0x0a); nl >= 0; nl = buf.indexOf(0x0a)) {
      const request = buf.subarray(0, nl + 1)
      buf = buf.subarray(nl + 1)
      received.push(request)
      const m = /^get (\S*)\n$/.exec(request.toString('latin1'))
      const key = m ? Buffer.from(m[1].replace(/%([0-9A-Fa-f]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))), 'latin1') : bin('')
      const reply = m ? tcpReply(key) : bin('500 bad request\n')
      if (reply === 'close') {
        socket.destroy()
        return
      }
      socket.write(reply)
    }
  })
}

const servers: net.Server[] = []
function listen(handler: (s: net.Socket) => void, where: {port: number; host: string} | {path: string}): Promise<void> {
  const server = net.createServer(handler)
  servers.push(server)
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(where, () => resolve())
  })
}

// ----------------------------------------------------------------------- the cases

const SOCKETMAP_KEYS = ['alice', 'Alice@Example.COM', 'missing', 'notfound-bare', 'ok-bare', 'ok-empty', 'ok-spaces', 'temp',
  'timeout', 'perm', 'perm-bare', 'perm-8bit', 'unknown', 'lowercase-ok', 'empty-reply', 'special', 'nul-value',
  'bad-terminator', 'bad-length', 'no-length', 'huge-length', 'over-limit', 'at-limit', 'close', 'key with spaces',
  '100%', 'école', 'ÉCOLE', '日本語', 'tab\there', 'comma,colon:']
const TCP_KEYS = ['alice', 'Alice@Example.COM', 'missing', 'missing-tab', 'temp', 'temp-450', 'bad-status', 'status-9',
  'garbage', 'short', 'nodigits', 'bad-hex', 'bad-hex-end', 'tab-sep', 'crlf', 'lower-hex', 'spaces', 'nul-value',
  'ctl-value', 'at-limit', 'over-limit', 'way-over', 'close', 'key with spaces', '100%', '50%25', 'école', 'ÉCOLE',
  '日本語', 'tab\there', 'ctl\x01\x7fkey', 'plus+sign', 'a=b&c']

let dir: string
let config: MainConfig
let tcpPort: number
let smPort: number
let deadPort: number
let smSocket: string
const tables: {label: string; name: string; keys: string[]}[] = []

before(async () => {
  requirePostfix()
  dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'proxymap-smtcp-')))
  fs.chmodSync(dir, 0o755)
  config = makeConfig(dir, {compatibility_level: '3.6'})
  ;[tcpPort, smPort, deadPort] = [await freeLoopbackPort(), await freeLoopbackPort(), await freeLoopbackPort()]
  smSocket = path.join(dir, 'socketmap.sock')
  await listen(tcpPeer, {host: '127.0.0.1', port: tcpPort})
  await listen(socketmapPeer, {host: '127.0.0.1', port: smPort})
  await listen(socketmapPeer, {path: smSocket})
  // user postfix (Postfix's proxymap) must reach the UNIX socket too
  fs.chmodSync(smSocket, 0o666)
  tables.push(
    {label: 'socketmap inet users', name: `socketmap:inet:127.0.0.1:${smPort}:users`, keys: SOCKETMAP_KEYS},
    {label: 'socketmap inet aliases', name: `socketmap:inet:127.0.0.1:${smPort}:aliases`, keys: ['alice', 'missing', 'perm', 'special']},
    {label: 'socketmap unix', name: `socketmap:unix:${smSocket}:virtual`, keys: SOCKETMAP_KEYS},
    {label: 'tcp', name: `tcp:127.0.0.1:${tcpPort}`, keys: TCP_KEYS},
    // nobody listens: connection errors
    {label: 'socketmap inet dead', name: `socketmap:inet:127.0.0.1:${deadPort}:users`, keys: ['alice']},
    {label: 'socketmap unix dead', name: `socketmap:unix:${dir}/no-such.sock:users`, keys: ['alice']},
    {label: 'tcp dead', name: `tcp:127.0.0.1:${deadPort}`, keys: ['alice']},
  )
})

after(async () => {
  for (const s of servers) s.close()
  if (dir) fs.rmSync(dir, {recursive: true, force: true})
})

// ----------------------------------------------------------------------- comparison

type Outcome = WarnedOutcome

function openOptions(warnings: string[]): OpenOptions {
  return {
    mode: 'read', dictFlags: postmapQueryFlags(true), config,
    // as msg(3) prints them, with UTF-8 enabled
    log: {warning: (m) => warnings.push(`warning: ${fromBinary(printable(m, true))}`), error: (m) => warnings.push(`error: ${fromBinary(printable(m, true))}`), info: () => {}},
    openNested: (spec, o) => registry.open(spec, o),
  }
}

async function ours(name: string, key: string): Promise<Outcome> {
  const warnings: string[] = []
  const table: Table = await registry.open(toBinary(name), openOptions(warnings))
  // postmap's own complaint about an empty value, not the table's
  return warnedLookup(table, key, warnings, (value) => {
    if (value === '') warnings.push(`warning: table ${name}: key ${key}: empty string result is not allowed`,
      `warning: table ${name} should return NO RESULT in case of NOT FOUND`)
  })
}

const real = (name: string, key: string): Promise<Outcome> => postmapWarnedOutcome(dir, key, name)

/** postmap's direct answers, kept for choosing the keys that go through proxy: */
let directOutcomes: {outcomes: Map<string, Outcome>; requests: string[]} | undefined

/**
 * Postfix's "unexpected EOF (%m)" for a tcp peer that hangs up shows a stale errno (after a
 * non-blocking connect: "Operation now in progress"), not a reason; only the rest is compared.
 */
const normalize = (o: Outcome): Outcome =>
  ({...o, warnings: o.warnings.map((w) => w.replace(/(: unexpected EOF) \(.*\)$/, '$1 (...)'))})

/** Runs every (table, key) through `lookup` at once; returns outcomes and the sorted requests the peers saw. */
async function runAll(lookup: (name: string, key: string) => Promise<Outcome>): Promise<{outcomes: Map<string, Outcome>; requests: string[]}> {
  received.length = 0
  const outcomes = new Map<string, Outcome>()
  const cases = tables.flatMap((t) => t.keys.map((key) => ({t, key})))
  await pool(cases.map(({t, key}) => async () => {
    outcomes.set(`${t.label} ${JSON.stringify(key)}`, await lookup(t.name, key))
  }), 12)
  return {outcomes, requests: received.map((r) => JSON.stringify(r.toString('latin1'))).sort()}
}

test('socketmap and tcp tables answer as postmap -q does: value, status, warnings and request bytes', async () => {
  const theirs = directOutcomes = await runAll(real)
  const mine = await runAll(ours)
  const failures: string[] = []
  const tally = {found: 0, notfound: 0, error: 0}
  for (const [c, r] of theirs.outcomes) {
    tally[r.result]++
    const o = mine.outcomes.get(c)!
    if (JSON.stringify(normalize(o)) !== JSON.stringify(normalize(r))) failures.push(`${c}\n  ours: ${JSON.stringify(o)}\n  real: ${JSON.stringify(r)}`)
  }
  console.log(`# socketmap/tcp: ${theirs.outcomes.size} (table, key) cases compared with postmap -q: ${tally.found} found, ${tally.notfound} not found, ${tally.error} errors`)
  assert.deepEqual(failures, [], `${failures.length} differences:\n${failures.join('\n')}`)
  assert.ok(tally.found >= 40 && tally.notfound >= 5 && tally.error >= 30, `too few cases of some kind: ${JSON.stringify(tally)}`)
  // The same requests, byte for byte and as often (retries included).
  assert.deepEqual(mine.requests, theirs.requests)
  console.log(`# socketmap/tcp: ${theirs.requests.length} requests identical to postmap's`)
  // What postmap sends, spelled out, so that a peer that accepted anything would not hide a change.
  for (const expected of ['get key%20with%20spaces\n', 'get 100%25\n', 'get %C3%A9cole\n', 'get tab%09here\n',
    'get ctl%01%7Fkey\n', `${'users key with spaces'.length}:users key with spaces,`, `${'users 100%'.length}:users 100%,`])
    assert.ok(theirs.requests.includes(JSON.stringify(expected)), `postmap sent ${JSON.stringify(expected)}`)
})

// ----------------------------------------------------------------------- through proxy:

let pf: PostfixInstance | undefined
after(async () => {
  await pf?.destroy()
})

test('proxy:socketmap and proxy:tcp answer through our proxymap exactly as through Postfix\'s', async () => {
  pf = await createPostfixInstance({prefix: 'pm-smtcp-'})
  await pf.approve({read: tables.map((t) => t.name), write: []})
  // postmap -q - stops at the first failed lookup, so each failing key gets a run of its own.
  const direct = directOutcomes ?? await runAll(real)
  const runs: {label: string; name: string; input: string}[] = []
  for (const t of tables) {
    const good = t.keys.filter((k) => direct.outcomes.get(`${t.label} ${JSON.stringify(k)}`)!.result !== 'error' && !k.includes('\t'))
    if (good.length > 0) runs.push({label: `${t.label} (${good.length} keys)`, name: t.name, input: good.join('\n') + '\n'})
    for (const k of t.keys.filter((k) => !good.includes(k) && !k.includes('\t')))
      runs.push({label: `${t.label} ${JSON.stringify(k)}`, name: t.name, input: k + '\n'})
  }
  type Output = {stdout: string; stderr: string; code: number}
  const runThem = async (): Promise<{out: Map<string, Output>; requests: string[]}> => {
    received.length = 0
    const out = new Map<string, Output>()
    await pool(runs.map((r) => async () => {
      const x = await pf!.postmap(['-q', '-', `proxy:${r.name}`], {input: r.input, timeoutMs: 60_000})
      out.set(r.label, {stdout: x.stdout, stderr: x.stderr, code: x.code})
    }), 8)
    return {out, requests: received.map((r) => JSON.stringify(r.toString('latin1'))).sort()}
  }
  const both = await theirsThenOurs(pf, runThem)
  const [theirs, mine] = [both.theirs.out, both.ours.out]
  let failed = 0
  const failures: string[] = []
  for (const r of runs) {
    const t = theirs.get(r.label)!
    if (t.stderr.includes('postmap: fatal: ')) failed++
    if (JSON.stringify(mine.get(r.label)) !== JSON.stringify(t))
      failures.push(`${r.label}\n  ours: ${JSON.stringify(mine.get(r.label))}\n  real: ${JSON.stringify(t)}`)
  }
  console.log(`# socketmap/tcp through proxy:: ${runs.length} postmap -q - runs (${failed} failing in both), same output as Postfix's proxymap`)
  assert.deepEqual(failures, [], `${failures.length} differences:\n${failures.join('\n')}`)
  assert.ok(failed >= 30, `too few failing runs: ${failed}`)
  for (const r of runs.filter((r) => r.label.endsWith(' keys)')))
    assert.ok(theirs.get(r.label)!.stdout.length > 0, `${r.label}: Postfix found values (the case is not vacuous)`)
  assert.deepEqual(both.ours.requests, both.theirs.requests, 'the peers received the same requests from both proxymaps')
  console.log(`# socketmap/tcp through proxy:: ${both.theirs.requests.length} requests identical to Postfix's proxymap's`)
})
