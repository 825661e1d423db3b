// Shared by the regexp and cidr differential tests: open a table as `postmap -q` does,
// emulate postmap's output around one lookup, and compare with a real postmap run.

import {after, before} from 'node:test'
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import type {MainConfig} from '../../src/lib/config/index.js'
import {postmapQueryFlags} from '../../src/lib/query/query.js'
import {OpenOptions, Table, TableError, TableType} from '../../src/lib/tables/table.js'
import {DICT_FLAG} from '../../src/lib/protocol/constants.js'
import {POSTMAP, backdate, requirePostfix, runCommand} from '../helpers/postfix.js'

export interface DiffCase {
  spec: string
  /** UTF-8 text, as typed on a command line. */
  key: string
}

export interface Outcome {
  stdout: string
  stderr: string[]
  status: number
}

export const toBinary = (text: string): string => Buffer.from(text, 'utf8').toString('latin1')
export const fromBinary = (bin: string): string => Buffer.from(bin, 'latin1').toString('utf8')

export function makeConfig(dir: string, params: Record<string, string>): MainConfig {
  fs.writeFileSync(path.join(dir, 'main.cf'), Object.entries(params).map(([k, v]) => `${k} = ${v}\n`).join(''))
  const t = Date.now() / 1000 - 10
  fs.utimesSync(path.join(dir, 'main.cf'), t, t)
  return {configDir: dir, get: (name) => params[name] ?? '', raw: (name) => params[name], isSet: (name) => name in params}
}

/** Writes UTF-8 text, backdated 10 s (Postfix waits on freshly modified files). */
export function writeTable(file: string, text: string): string {
  fs.writeFileSync(file, text)
  const t = Date.now() / 1000 - 10
  fs.utimesSync(file, t, t)
  return file
}

export async function writeTableAsync(file: string, text: string): Promise<string> {
  await fs.promises.writeFile(file, text)
  await backdate(file)
  return file
}

/** Postfix printable() with UTF-8 enabled: what msg(3) does to a log line (a byte string). */
function printable(s: string): string {
  let out = ''
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c >= 0x20 && c < 0x7f) {
      out += s[i]
    } else if (c >= 194 && c <= 254 && i + 1 < s.length && s.charCodeAt(i + 1) >= 128 && s.charCodeAt(i + 1) < 192) {
      out += s[i]
      while (i + 1 < s.length && s.charCodeAt(i + 1) >= 128 && s.charCodeAt(i + 1) < 192) out += s[++i]
    } else {
      out += '?'
    }
  }
  return fromBinary(out)
}

export function openWith(type: TableType, name: string, flags: number, config: MainConfig, lines: string[]): Promise<Table> {
  const options: OpenOptions = {
    mode: 'read', dictFlags: flags, config,
    log: {warning: (m) => lines.push(`warning: ${printable(m)}`), error: (m) => lines.push(`error: ${printable(m)}`), info: (m) => lines.push(printable(m))},
    openNested: () => { throw new Error('unused') },
  }
  return Promise.resolve().then(() => type.open(toBinary(name), options))
}

/** Our side of `postmap -q KEY SPEC`: fatal open errors, lookup, printing, status. */
export async function ourQuery(type: TableType, spec: string, key: string, config: MainConfig): Promise<Outcome> {
  const lines: string[] = []
  const name = spec.slice(spec.indexOf(':') + 1)
  let table: Table
  try {
    table = await openWith(type, name, postmapQueryFlags(true), config, lines)
  } catch (err) {
    if (!(err instanceof TableError)) throw err
    lines.push(`fatal: ${printable(err.message)}`)
    return {stdout: '', stderr: lines, status: 1}
  }
  let value: string | undefined
  try {
    value = await table.lookup(toBinary(key))
  } catch (err) {
    if (!(err instanceof TableError)) throw err
    lines.push(`fatal: table ${spec}: query error`)
    return {stdout: '', stderr: lines, status: 1}
  }
  return {stdout: value === undefined ? '' : `${fromBinary(value)}\n`, stderr: lines, status: value === undefined ? 1 : 0}
}

export async function realQuery(spec: string, key: string, configDir: string): Promise<Outcome> {
  const r = await runCommand(POSTMAP, ['-c', configDir, '-q', key, spec])
  const stderr = r.stderr.split('\n').filter((l) => l.length > 0).map((l) => l.replace(/^postmap: /, ''))
  return {stdout: r.stdout, stderr, status: r.code}
}

/** Compare every case; at most `parallel` postmap processes at a time. */
export async function differential(type: TableType, cases: DiffCase[], config: MainConfig, configDir: string, parallel = 16):
  Promise<{count: number; failures: string[]}> {
  const failures: string[] = []
  let count = 0
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < cases.length) {
      const c = cases[next++]
      const [ours, real] = await Promise.all([ourQuery(type, c.spec, c.key, config), realQuery(c.spec, c.key, configDir)])
      count++
      if (JSON.stringify(ours) !== JSON.stringify(real))
        failures.push(`-q ${JSON.stringify(c.key)} ${c.spec}\n  ours: ${JSON.stringify(ours)}\n  real: ${JSON.stringify(real)}`)
    }
  }
  await Promise.all(Array.from({length: parallel}, worker))
  return {count, failures}
}

/** before(): require Postfix and make a scratch directory (handed to `set`); after(): remove it. */
export function useScratchRoot(prefix: string, set: (dir: string) => void): void {
  let root: string | undefined
  before(() => {
    requirePostfix() // missing Postfix FAILS the test
    root = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
    set(root)
  })
  after(() => {
    if (root) fs.rmSync(root, {recursive: true, force: true})
  })
}

/**
 * The regexp/pcre flag checks: NO_REGSUB skips a substituting rule with Postfix's warning,
 * FOLD_MUL lowercases the key before matching, and changed() notices a rewritten file.
 * Returns the table file (rewritten to `/x/ y`).
 */
export async function checkPatternFlags(type: TableType, typeName: string, root: string, config: MainConfig): Promise<string> {
  const file = writeTable(path.join(root, 'flags'), '/^(a)$/ sub=$1\n/^B$/i upper\n')
  const lines: string[] = []
  const t = await openWith(type, file, DICT_FLAG.NO_REGSUB, config, lines)
  assert.equal(t.flags, DICT_FLAG.NO_REGSUB | DICT_FLAG.PATTERN)
  assert.deepEqual(lines, [`warning: ${typeName} map ${file}, line 1: regular expression substitution is not allowed: skipping this rule`])
  assert.equal(await t.lookup('a'), undefined)
  const u = await openWith(type, file, DICT_FLAG.FOLD_MUL, config, [])
  assert.equal(await u.lookup('B'), undefined) // key lowercased before matching
  assert.equal(await u.lookup('A'), 'sub=a')
  assert.equal(u.changed?.(), false)
  writeTable(file, '/x/ y\n')
  assert.equal(u.changed?.(), true)
  return file
}
