// Malformed requests, sent byte for byte to Postfix's own proxymap and to ours: where
// Postfix replies, ours replies the same bytes; where Postfix says nothing, ours says
// nothing either (and may close). After every case the server still serves.

import assert from 'node:assert/strict'
import {after, before, test} from 'node:test'
import {PostfixInstance, createPostfixInstance, requirePostfix} from '../helpers/postfix.js'
import {rawExchange} from '../helpers/raw-exchange.js'

const ANNOUNCEMENT = Buffer.from('protocol\0proxymap_protocol\0\0', 'latin1')

interface Exchange {
  /** Bytes received after the announcement. */
  reply: Buffer
  /** Whether the server closed the connection. */
  closed: boolean
  announcement: Buffer
}

function exchange(socketPath: string, payload: Buffer, waitMs = 400): Promise<Exchange> {
  return rawExchange(socketPath, payload, ANNOUNCEMENT.length, waitMs)
}

const b = (s: string) => Buffer.from(s, 'latin1')
let pf: PostfixInstance
let table: string

const cases: {name: string; bytes: () => Buffer}[] = [
  {name: 'garbage without any NUL', bytes: () => b('GET / HTTP/1.0\r\n\r\n')},
  {name: 'garbage with NULs', bytes: () => b('\x01\x02\0\xff\xfe\0\0')},
  {name: 'truncated message', bytes: () => b(`request\0lookup\0table\0${table.slice(0, 8)}`)},
  {name: 'missing terminator', bytes: () => b(`request\0lookup\0table\0${table}\0flags\x00524353\0key\0alice\0`)},
  {name: 'oversized attribute (2 MiB)', bytes: () => Buffer.concat([b('request\0lookup\0table\0'), Buffer.alloc(2 << 20, 0x61)])},
  {name: 'wrong attribute order', bytes: () => b(`request\0lookup\0flags\x00524353\0table\0${table}\0key\0alice\0\0`)},
  {name: 'missing key', bytes: () => b(`request\0lookup\0table\0${table}\0flags\x00524353\0\0`)},
  {name: 'non-numeric flags', bytes: () => b(`request\0lookup\0table\0${table}\0flags\0many\0key\0alice\0\0`)},
  {name: 'flags with trailing junk', bytes: () => b(`request\0lookup\0table\0${table}\0flags\x0012z\0key\0alice\0\0`)},
  {name: 'non-numeric open flags', bytes: () => b(`request\0open\0table\0${table}\0flags\0x\0\0`)},
  {name: 'unknown request', bytes: () => b('request\0frobnicate\0table\0x:y\0\0')},
  {name: 'first attribute is not request', bytes: () => b(`table\0${table}\0request\0lookup\0\0`)},
  {name: 'empty message', bytes: () => b('\0')},
  {name: 'table name without a colon', bytes: () => b('request\0lookup\0table\0nocolon\0flags\x000\0key\0k\0\0')},
  {name: 'sequence with a bad function', bytes: () => b(`request\0sequence\0table\0${table}\0flags\x000\0function\x007\0\0`)},
  {name: 'update on the read-only service', bytes: () => b(`request\0update\0table\0${table}\0flags\x000\0key\0k\0value\0v\0\0`)},
  {name: 'delete on the read-only service', bytes: () => b(`request\0delete\0table\0${table}\0flags\x000\0key\0k\0\0`)},
  {name: 'extra trailing attribute', bytes: () => b(`request\0lookup\0table\0${table}\0flags\x00524353\0key\0alice\0junk\0x\0\0`)},
  {name: 'proxy: prefixes left in the name', bytes: () => b(`request\0lookup\0table\0proxy:proxy:${table}\0flags\x00524353\0key\0alice\0\0`)},
  {name: 'valid lookup after garbage in the same write', bytes: () => b(`request\0lookup\0table\0${table}\0flags\x00524353\0key\0alice\0\0`)},
]

before(async () => {
  requirePostfix()
  pf = await createPostfixInstance({prefix: 'pm-badinput-'})
  table = await pf.createTable('texthash', 'th', 'alice\talice@example.com\n', {build: false})
  await pf.approve({read: [table], write: []})
})

after(async () => {
  await pf?.destroy()
})

async function runCases(): Promise<Exchange[]> {
  const out: Exchange[] = []
  for (const c of cases) out.push(await exchange(pf.socketPath('proxymap'), c.bytes()))
  return out
}

const VALID = () => b(`request\0lookup\0table\0${table}\0flags\x00524353\0key\0alice\0\0`)
const HIT = b('status\x000\0value\0alice@example.com\0\0')

test('malformed requests get Postfix\'s reply or a clean close, and the server keeps serving', async () => {
  await pf.startPostfix()
  const theirs = await runCases()
  await pf.stopPostfix()

  await pf.startOurs()
  const ours: Exchange[] = []
  try {
    for (const c of cases) {
      ours.push(await exchange(pf.socketPath('proxymap'), c.bytes()))
      // ... and a valid request on a new connection is still answered
      const after = await exchange(pf.socketPath('proxymap'), VALID(), 150)
      assert.deepEqual(after.reply, HIT, `server still serves after: ${c.name}`)
    }
    assert.ok(pf.ourPid(), 'our server is still running')
  } finally {
    await pf.stopOurs()
  }

  let replied = 0
  for (let i = 0; i < cases.length; i++) {
    const name = cases[i].name
    assert.deepEqual(ours[i].announcement, ANNOUNCEMENT, name)
    if (theirs[i].reply.length > 0) {
      replied++
      assert.equal(ours[i].reply.toString('latin1'), theirs[i].reply.toString('latin1'), `${name}: same reply as Postfix`)
    } else {
      assert.equal(ours[i].reply.length, 0, `${name}: Postfix said nothing; ours said ${JSON.stringify(ours[i].reply.toString('latin1'))}`)
    }
  }
  assert.ok(replied >= 10, `Postfix replied to ${replied} cases`)
  assert.doesNotMatch(pf.ourStderr(), /TypeError|RangeError|at .*\.js:\d+/, 'no crash traces')
})

test('a v2 (Postfix >= 3.11) request is answered in v2, a legacy one in legacy, on one connection', async () => {
  await pf.startOurs()
  try {
    const v2 = b(`request\0lookup\0table\0${table}\0instance_flags\x000\0flags\x00524353\0key\0alice\0\0`)
    const both = await exchange(pf.socketPath('proxymap'), Buffer.concat([v2, VALID(), v2]))
    assert.equal(both.reply.toString('latin1'), [
      'status\x000\0flags\x00524353\0value\0alice@example.com\0\0',
      HIT.toString('latin1'),
      'status\x000\0flags\x00524353\0value\0alice@example.com\0\0',
    ].join(''))
    const v2open = await exchange(pf.socketPath('proxymap'), b(`request\0open\0table\0texthash:/nowhere\0instance_flags\x000\0\0`))
    assert.equal(v2open.reply.toString('latin1'), 'status\x004\0flags\x000\0\0')
  } finally {
    await pf.stopOurs()
  }
})
