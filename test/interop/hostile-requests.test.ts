// The fuzzer's requests ("The server never dies"), sent byte for byte to real Postfix's
// proxymap and to ours: legacy requests to real 3.7, v2 requests to real 3.11. Ours sends
// the same bytes (or, where Postfix's proxymap panics and the client sees the connection
// end, closes without a reply), stays alive, answers a valid lookup afterwards, and prints
// no crash. A table name with a newline is logged as Postfix logs it.

import assert from 'node:assert/strict'
import {after, test} from 'node:test'
import {PostfixInstance, createPostfixInstance, postfixVersionUnavailable, requirePostfix, sleep} from '../helpers/postfix.js'
import {rawExchange} from '../helpers/raw-exchange.js'

const ANNOUNCEMENT_BYTES = 28
const TABLE = 'inline:{a=1,b=2}'
const b = (s: string): Buffer => Buffer.from(s, 'latin1')

interface Exchange {reply: string; closed: boolean}

async function exchange(socketPath: string, payload: Buffer, waitMs = 400): Promise<Exchange> {
  const {reply, closed} = await rawExchange(socketPath, payload, ANNOUNCEMENT_BYTES, waitMs)
  return {reply: reply.toString('latin1'), closed}
}

const legacyOpen = (flags: string) => b(`request\0open\0table\0${TABLE}\0flags\0${flags}\0\0`)
const legacyLookup = (flags: string) => b(`request\0lookup\0table\0${TABLE}\0flags\0${flags}\0key\0a\0\0`)
const v2Lookup = (inst: string, flags: string) => b(`request\0lookup\0table\0${TABLE}\0instance_flags\0${inst}\0flags\0${flags}\0key\0a\0\0`)
const v2Open = (inst: string) => b(`request\0open\0table\0${TABLE}\0instance_flags\0${inst}\0\0`)
const FORGED = 'texthash:/x\nwarning: forged\x01\x7f\xff\xc3\xa9\t.'

const LEGACY_CASES: [string, Buffer][] = [
  ['open flags 2147483648', legacyOpen('2147483648')],
  ['lookup flags 2147483648', legacyLookup('2147483648')],
  ['open flags 4294967296', legacyOpen('4294967296')],
  ['open flags -4294967295', legacyOpen('-4294967295')],
  ['open flags 4294967295 (Postfix panics)', legacyOpen('4294967295')],
  ['lookup flags -1 (Postfix panics)', legacyLookup('-1')],
  ['open flags 99999999999999999999 (Postfix panics)', legacyOpen('99999999999999999999')],
  ['table name with a newline', b(`request\0lookup\0table\0${FORGED}\0flags\x000\0key\0a\0\0`)],
]
const LEGACY_VALID = legacyLookup('524353')
const LEGACY_HIT = 'status\x000\0value\x001\0\0'

const V2_CASES: [string, Buffer][] = [
  ['the 60-byte reproducer: flags 4294967295', v2Lookup('0', '4294967295')],
  ['flags -1', v2Lookup('0', '-1')],
  ['flags 2147483648', v2Lookup('0', '2147483648')],
  ['flags 4294967296', v2Lookup('0', '4294967296')],
  ['flags 18446744073709551616', v2Lookup('0', '18446744073709551616')],
  ['open instance_flags 2147483648', v2Open('2147483648')],
  ['instance_flags 4294967295 (Postfix panics)', v2Lookup('4294967295', '0')],
  ['table name with a newline', b(`request\0lookup\0table\0${FORGED}\0instance_flags\x000\0flags\x000\0key\0a\0\0`)],
]
const V2_VALID = v2Lookup('0', '524353')
const V2_HIT = 'status\x000\0flags\x00524353\0value\x001\0\0'

const instances: PostfixInstance[] = []
after(async () => {
  for (const pf of instances) await pf.destroy()
})

async function compare(pf: PostfixInstance, cases: [string, Buffer][], valid: Buffer, hit: string, ourArgs: string[]): Promise<void> {
  await pf.approve({read: [TABLE], write: []})
  const sock = pf.socketPath('proxymap')
  await pf.startPostfix()
  const theirs: Exchange[] = []
  for (const [name, bytes] of cases) {
    const got = await exchange(sock, bytes)
    theirs.push(got)
    // A panicked proxymap: master restarts it after service_throttle_time.
    if (got.reply === '') await sleep(2500)
    // The same sequence as ours gets below, so that shared table instances match.
    assert.equal((await exchange(sock, valid, 150)).reply, hit, `Postfix serves after: ${name}`)
  }
  await sleep(500)
  const theirLog = pf.maillog()
  await pf.stopPostfix()

  await pf.startOurs(ourArgs)
  const ours: Exchange[] = []
  try {
    for (const [name, bytes] of cases) {
      ours.push(await exchange(sock, bytes))
      assert.equal((await exchange(sock, valid, 150)).reply, hit, `still serving after: ${name}`)
    }
    assert.ok(pf.ourPid(), 'our server is still running')
  } finally {
    await pf.stopOurs()
  }
  for (let i = 0; i < cases.length; i++) {
    const name = cases[i][0]
    assert.equal(JSON.stringify(ours[i].reply), JSON.stringify(theirs[i].reply), `${name}: the same reply as Postfix`)
    if (theirs[i].reply === '') assert.ok(ours[i].closed, `${name}: closed, as Postfix's client sees a panic`)
  }
  const stderr = pf.ourStderr()
  assert.doesNotMatch(stderr, /Unhandled|uncaught|RangeError|TypeError|\n\s+at .*:\d+/i, 'no crash in our stderr')

  // The forged table name: Postfix's lines and ours say the same after the tag.
  const denial = (log: string): string[] => log.split('\n').filter(l => l.includes('texthash:/x')).map(l => l.replace(/^.*?proxymap\[\d+\]: /, ''))
  const want = denial(theirLog)
  assert.equal(want.length, 2, theirLog)
  assert.equal(want[0], 'warning: request for unapproved table: "texthash:/x?warning: forged???\u00e9?."')
  assert.deepEqual(denial(stderr), want)
  assert.ok(!/^warning: forged/m.test(stderr.split('\n').map(l => l.replace(/^.*?: /, '')).join('\n')), 'no forged line')
}

test('legacy requests with out-of-range flags: ours answers as real 3.7 and keeps serving', async () => {
  requirePostfix()
  const pf = await createPostfixInstance({prefix: 'pm-hostile-37-', main: {service_throttle_time: '1s'}})
  instances.push(pf)
  await compare(pf, LEGACY_CASES, LEGACY_VALID, LEGACY_HIT, ['--postfix-version', '3.7'])
})

test('v2 requests with out-of-range flags: ours answers as real 3.11 and keeps serving', async (t) => {
  const missing = await postfixVersionUnavailable('3.11')
  if (missing) return t.skip(missing)
  const pf = await createPostfixInstance({version: '3.11', prefix: 'pm-hostile-311-', main: {service_throttle_time: '1s'}})
  instances.push(pf)
  await compare(pf, V2_CASES, V2_VALID, V2_HIT, ['--postfix-version', '3.11'])
})
