// Differential test of cidr: tables against real Postfix 3.7 (`postmap -c DIR -q KEY
// cidr:FILE`): values, warnings and exit status.
//
// Run: node --import tsx --test test/differential/cidr.test.ts

import {test} from 'node:test'
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as path from 'node:path'

import {cidrType, formatAddress, parseIPv6} from '../../src/lib/tables/cidr.js'
import {differential, makeConfig, openWith, useScratchRoot, writeTable, type DiffCase} from './pattern-helpers.js'

let root: string
useScratchRoot('pmx-cidr-', (dir) => { root = dir })

const KEYS = [
  '192.168.1.1', '192.168.1.255', '192.168.2.1', '10.0.0.1', '10.255.255.255', '11.0.0.0', '127.0.0.1',
  '0.0.0.0', '255.255.255.255', '1.2.3.4', '01.2.3.4', '1.2.3', '1.2.3.4.5', '256.1.1.1', '1.2.3.4 ',
  '::1', '::', '2001:db8::1', '2001:DB8::1', '2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8:1::1',
  '2001:db9::1', 'fe80::1', 'fe80::1%eth0', '::ffff:192.168.1.1', '::ffff:c0a8:101', '::192.168.1.1',
  '2001:db8::192.168.1.1', '1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8:9', '1::2::3', '[::1]', 'garbage', '',
  'fd00::abcd', '2001:db8:0:0:1::1', '12345::1', ':1', '1.2.3.4/32', 'é', '::ffff:1.2.3.4',
]

const TABLES: Record<string, string> = {
  basic: `192.168.1.0/24 lan
10.0.0.0/8 ten
127.0.0.1 loopback
0.0.0.0/0 v4-any
`,
  v6: `2001:db8::/32 doc
::1 v6-loopback
fe80::/10 link-local
::ffff:192.168.1.0/120 mapped
::/0 v6-any
`,
  order: `10.0.0.0/8 first
10.0.0.1 never
!192.168.0.0/16 not-192-168
192.168.1.1/32 host
`,
  ifendif: `if 192.168.0.0/16
192.168.1.0/24 in-1
if !192.168.1.0/24
192.168.2.0/24 in-2
endif
endif
IF 2001:db8::/32
2001:db8::1 doc-1
ENDIF
::/0 other-v6
0.0.0.0/0 other-v4
`,
  brackets: `[192.168.1.0]/24 bracket-mask
[10.0.0.0/8] bracket-inside
[::1] bracket-v6
[2001:db8::]/32 bracket-v6-mask
`,
  errors: `192.168.1.1/24 host-bits
2001:db8::1/32 v6-host-bits
10.0.0.0/33 bad-len
10.0.0.0/x bad-mask
10.0.0.0/ empty-mask
10.0.0 bad-addr
1.2.3.400/32 bad-net
[1.2.3.4 missing-bracket
[1.2.3.4]x garbage
1.2.3.4
endif
if
if 10.0.0.0/8 extra
endif garbage
192.168.0.0/16 ok-after-errors
01.2.3.4 leading-zero
::/129 v6-bad-len
1.2.3.4/0 zero-host-bits
fe80::1%eth0 zone
::ffff:1.2.3.4/96 mapped-host-bits
::1.2.3.4/64 compat-host-bits
1:0:0:1:0:0:0:1/64 runs
`,
  unclosed: `if 10.0.0.0/8
10.1.0.0/16 ten-one
if 2001:db8::/32
0.0.0.0/0 never
`,
  edge: `0.0.0.0/0 all-v4
`,
  mask0: `! 0.0.0.0/0 never-v4
!!1.2.3.4 double-neg
::/0 all-v6
`,
}

function buildCases(dir: string): DiffCase[] {
  const cases: DiffCase[] = []
  for (const [name, text] of Object.entries(TABLES)) {
    const file = writeTable(path.join(dir, name), text)
    for (const key of KEYS) cases.push({spec: `cidr:${file}`, key})
  }
  for (const key of ['10.1.2.3', '1.1.1.1']) cases.push({spec: 'cidr:{ {10.0.0.0/8 inline-ten}, {::/0 v6} }', key})
  cases.push({spec: `cidr:${dir}/missing`, key: '1.2.3.4'})
  return cases
}

test('cidr lookups match postmap -q', async () => {
  const dir = fs.mkdtempSync(path.join(root, 'tables-'))
  const config = makeConfig(root, {compatibility_level: '3.6'})
  const result = await differential(cidrType, buildCases(dir), config, root)
  console.log(`cidr: ${result.count} cases compared with postmap -q`)
  assert.equal(result.failures.length, 0, `${result.failures.length} mismatches:\n${result.failures.slice(0, 40).join('\n')}`)
  assert.ok(result.count >= 300)
})

test('cidr address helpers and changed()', async () => {
  const v6 = (s: string): string => formatAddress(6, parseIPv6(s) as Uint8Array)
  assert.equal(v6('2001:0db8:0:0:0:0:0:1'), '2001:db8::1')
  assert.equal(v6('::ffff:1.2.3.4'), '::ffff:1.2.3.4')
  assert.equal(v6('::1'), '::1')
  assert.equal(v6('1:0:0:1:0:0:0:1'), '1:0:0:1::1')
  assert.equal(parseIPv6('1::2::3'), undefined)
  const config = makeConfig(root, {compatibility_level: '3.6'})
  const file = writeTable(path.join(root, 'changing'), '10.0.0.0/8 a\n')
  const t = await openWith(cidrType, file, 0, config, [])
  assert.equal(await t.lookup('10.9.9.9'), 'a')
  assert.equal(t.changed?.(), false)
  writeTable(file, '10.0.0.0/8 bb\n')
  assert.equal(t.changed?.(), true)
})
