// Codec tests from real bytes: every message of the transcripts recorded between real
// Postfix 3.7.11 clients and servers decodes, is understood, and encodes back byte for byte.
// The v2 (Postfix >= 3.11) vectors are built from proxymap.c/dict_proxy.c at v3.11.0.

import assert from 'node:assert/strict'
import fs from 'node:fs'
import path from 'node:path'
import {test} from 'node:test'
import {fileURLToPath} from 'node:url'
import {
  AttrDecoder, AttrFramingError, PROTOCOL_ANNOUNCEMENT, encodeAttrs, encodeReply, encodeRequest,
  parsePostfixUnsigned, parseReply, parseRequest, ProtocolError,
} from '../../src/lib/protocol/index.js'
import type {ProxyRequestName} from '../../src/lib/protocol/index.js'

const here = path.dirname(fileURLToPath(import.meta.url))

interface Recorded {
  section: string
  direction: 'S>C' | 'C>S'
  bytes: Buffer
}

function loadTranscript(): Recorded[] {
  const text = fs.readFileSync(path.join(here, '../fixtures/transcripts/postfix-3.7-real-clients.txt'), 'utf8')
  const out: Recorded[] = []
  let section = ''
  let direction: Recorded['direction'] | null = null
  for (const line of text.split('\n')) {
    if (line.startsWith('### ')) section = line.slice(4)
    const head = /^(?:proxymap|proxywrite) (S>C|C>S) (\d+) bytes$/.exec(line)
    if (head) direction = head[1] as Recorded['direction']
    const hex = /^ {2}hex: (.*)$/.exec(line)
    if (hex && direction) {
      out.push({section, direction, bytes: Buffer.from(hex[1].replace(/ /g, ''), 'hex')})
      direction = null
    }
  }
  return out
}

const recorded = loadTranscript()

test('the transcript holds enough real messages to mean something', () => {
  assert.ok(recorded.length >= 60, `only ${recorded.length} messages`)
  assert.ok(recorded.some(r => r.section.includes('postmap -d')))
})

test('every real message decodes as exactly one attribute list and re-encodes to the same bytes', () => {
  for (const r of recorded) {
    const messages = new AttrDecoder().push(r.bytes)
    assert.equal(messages.length, 1, `${r.section}: ${r.bytes.toString('latin1')}`)
    assert.deepEqual(encodeAttrs(messages[0]), r.bytes, r.section)
  }
})

test('the announcement is the 28 bytes real proxymap sends', () => {
  const announcements = recorded.filter(r => r.direction === 'S>C' && r.bytes.toString('latin1').startsWith('protocol'))
  assert.ok(announcements.length > 10)
  for (const a of announcements) assert.deepEqual(PROTOCOL_ANNOUNCEMENT, a.bytes)
})

test('real requests parse as legacy requests and encode back identically; their replies too', () => {
  let requests = 0
  let pending: {name: ProxyRequestName} | null = null
  for (const r of recorded) {
    const [attrs] = new AttrDecoder().push(r.bytes)
    if (r.direction === 'C>S') {
      const parsed = parseRequest(attrs)
      assert.equal(parsed.kind, 'ok', r.section)
      if (parsed.kind !== 'ok') continue
      assert.equal(parsed.request.dialect, 'legacy')
      assert.deepEqual(encodeRequest(parsed.request), r.bytes, r.section)
      pending = {name: parsed.request.request}
      requests++
    } else if (pending) {
      const reply = parseReply(pending.name, 'legacy', attrs)
      assert.deepEqual(encodeReply(pending.name, 'legacy', reply), r.bytes, `${r.section}: ${pending.name} reply`)
      pending = null
    }
  }
  assert.ok(requests >= 25, `${requests} requests`)
})

test('a real lookup request is understood field by field', () => {
  const bytes = Buffer.from('request\0lookup\0table\0lmdb:/srv/pfx/etc/ldb\0flags\x00524353\0key\0alice\0\0', 'latin1')
  assert.ok(recorded.some(r => r.bytes.equals(bytes)))
  const parsed = parseRequest(new AttrDecoder().push(bytes)[0])
  assert.deepEqual(parsed, {kind: 'ok', request: {
    request: 'lookup', dialect: 'legacy', table: 'lmdb:/srv/pfx/etc/ldb', instanceFlags: 0, requestFlags: 524353, key: 'alice',
  }})
})

// Postfix >= 3.11: instance_flags after table in every request; flags after status in every reply.
const V2_VECTORS: {request: string; reply: string; name: ProxyRequestName}[] = [
  {name: 'open', request: 'request\0open\0table\0lmdb:/x\0instance_flags\x008\0\0', reply: 'status\x000\0flags\x00262168\0\0'},
  {name: 'lookup', request: 'request\0lookup\0table\0lmdb:/x\0instance_flags\x008\0flags\x00524361\0key\0alice\0\0', reply: 'status\x000\0flags\x00524377\0value\0a@example.com\0\0'},
  {name: 'update', request: 'request\0update\0table\0lmdb:/x\0instance_flags\x000\0flags\x00524353\0key\0k\0value\0v\0\0', reply: 'status\x000\0flags\x00524801\0\0'},
  {name: 'delete', request: 'request\0delete\0table\0lmdb:/x\0instance_flags\x000\0flags\x00524353\0key\0k\0\0', reply: 'status\x001\0flags\x00524609\0\0'},
  {name: 'sequence', request: 'request\0sequence\0table\0lmdb:/x\0instance_flags\x000\0flags\x00524353\0function\x000\0\0', reply: 'status\x000\0flags\x00524353\0key\0k\0value\0v\0\0'},
]

test('v2 requests and replies round-trip and are recognised as v2', () => {
  for (const v of V2_VECTORS) {
    const req = Buffer.from(v.request, 'latin1')
    const parsed = parseRequest(new AttrDecoder().push(req)[0])
    assert.equal(parsed.kind, 'ok', v.name)
    if (parsed.kind !== 'ok') continue
    assert.equal(parsed.request.dialect, 'v2', v.name)
    assert.deepEqual(encodeRequest(parsed.request), req, v.name)
    const rep = Buffer.from(v.reply, 'latin1')
    const reply = parseReply(v.name, 'v2', new AttrDecoder().push(rep)[0])
    assert.deepEqual(encodeReply(v.name, 'v2', reply), rep, v.name)
  }
})

test('streaming: messages split at every byte, and several in one read, decode the same', () => {
  const all = Buffer.concat(recorded.map(r => r.bytes))
  const whole = new AttrDecoder().push(all)
  assert.equal(whole.length, recorded.length)
  for (const step of [1, 2, 3, 7, 64]) {
    const d = new AttrDecoder()
    const got = []
    for (let i = 0; i < all.length; i += step) got.push(...d.push(all.subarray(i, i + step)))
    assert.deepEqual(got, whole, `step ${step}`)
    assert.equal(d.midMessage, false)
  }
})

test('limits: an oversized attribute or message, or too many attributes, is refused', () => {
  const limits = {maxStringBytes: 16, maxMessageBytes: 64, maxAttributes: 4}
  assert.throws(() => new AttrDecoder(limits).push(Buffer.alloc(17, 0x61)), AttrFramingError)
  const d = new AttrDecoder(limits)
  for (let i = 0; i < 16; i++) d.push(Buffer.from('a'))
  assert.throws(() => d.push(Buffer.from('a')), AttrFramingError)
  assert.throws(() => new AttrDecoder(limits).push(Buffer.from('a\0b\0'.repeat(20))), AttrFramingError)
  assert.throws(() => new AttrDecoder(limits).push(Buffer.from('a\0b\0'.repeat(5) + '\0')), AttrFramingError)
  assert.doesNotThrow(() => new AttrDecoder(limits).push(Buffer.from('a\0b\0'.repeat(4) + '\0')))
})

test('requests are scanned as proxymap(8) scans them (ATTR_FLAG_STRICT)', () => {
  const p = (s: string) => parseRequest(new AttrDecoder().push(Buffer.from(s, 'latin1'))[0])
  assert.equal(p('table\0x:y\0\0').kind, 'garbage')
  assert.equal(p('\0').kind, 'garbage')
  assert.deepEqual(p('request\0frobnicate\0\0'), {kind: 'unrecognized', name: 'frobnicate'})
  // missing attribute, wrong order, non-numeric flags: BAD
  assert.equal(p('request\0lookup\0table\0x:y\0flags\x000\0\0').kind, 'bad')
  assert.equal(p('request\0lookup\0flags\x000\0table\0x:y\0key\0k\0\0').kind, 'bad')
  assert.equal(p('request\0lookup\0table\0x:y\0flags\0abc\0key\0k\0\0').kind, 'bad')
  assert.equal(p('request\0lookup\0table\0x:y\0flags\x0012x\0key\0k\0\0').kind, 'bad')
  assert.equal(p('request\0sequence\0table\0x:y\0flags\x000\0function\x002\0\0').kind, 'bad')
  // an extra attribute after the last expected one is reported, the request stands
  const extra = p('request\0lookup\0table\0x:y\0flags\x000\0key\0k\0junk\0j\0\0')
  assert.equal(extra.kind, 'ok')
  assert.equal(extra.kind === 'ok' && extra.unexpected, 'junk')
  // a v2 request is recognised by instance_flags in second place
  const v2 = p('request\0open\0table\0x:y\0instance_flags\x000\0\0')
  assert.equal(v2.kind === 'ok' && v2.request.dialect, 'v2')
})

test('integers are read as sscanf("%u%c") reads them', () => {
  assert.equal(parsePostfixUnsigned('524353'), 524353)
  assert.equal(parsePostfixUnsigned(' 7'), 7)
  assert.equal(parsePostfixUnsigned('+7'), 7)
  assert.equal(parsePostfixUnsigned('-1'), 4294967295)
  assert.equal(parsePostfixUnsigned('7 '), undefined)
  assert.equal(parsePostfixUnsigned(''), undefined)
  assert.equal(parsePostfixUnsigned('0x10'), undefined)
})

test('replies are parsed strictly, as Postfix clients do', () => {
  const r = (s: string) => new AttrDecoder().push(Buffer.from(s, 'latin1'))[0]
  assert.deepEqual(parseReply('lookup', 'legacy', r('status\x001\0value\0\0\0')), {status: 1, value: ''})
  assert.throws(() => parseReply('lookup', 'legacy', r('value\0x\0status\x000\0\0')), ProtocolError)
  assert.throws(() => parseReply('lookup', 'legacy', r('status\x000\0value\0x\0extra\0y\0\0')), ProtocolError)
  assert.throws(() => parseReply('open', 'legacy', r('status\x000\0flags\0x\0\0')), ProtocolError)
  assert.throws(() => parseReply('update', 'legacy', r('status\x009\0\0')), ProtocolError)
  // a BAD with status alone is how any server answers an unknown request
  assert.deepEqual(parseReply('lookup', 'v2', r('status\x003\0\0')), {status: 3})
})

test('binary values survive: every byte but NUL passes unchanged', () => {
  const value = Buffer.from(Array.from({length: 255}, (_, i) => i + 1)).toString('latin1')
  const bytes = encodeAttrs([['value', value]])
  assert.equal(bytes.length, 'value'.length + 255 + 3)
  assert.equal(new AttrDecoder().push(bytes)[0][0][1], value)
})
