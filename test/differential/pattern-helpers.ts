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

// ---------------------------------------------------------------------------- generated tables

/** A small deterministic PRNG (mulberry32), so that a failure can be reproduced. */
export function randomSource(seed: number): {int: (n: number) => number; pick: <T>(items: readonly T[]) => T} {
  let state = seed >>> 0
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const int = (n: number): number => Math.floor(next() * n)
  return {int, pick: (items) => items[int(items.length)]}
}

type Random = ReturnType<typeof randomSource>

/** How to write random patterns of one dialect: atoms, wrappers around a sub-pattern, quantifiers. */
export interface PatternGrammar {
  atoms: readonly string[]
  /** Anchors, option settings and verbs: never quantified (an error in both dialects). */
  assertions: readonly string[]
  /** Each with one `%` where the sub-pattern goes; `capture` ones open a numbered group. */
  groups: readonly {text: string; capture: boolean}[]
  quantifiers: readonly string[]
  /** Atoms that refer to group N (written `N`), used once a group exists. */
  references: readonly string[]
  alternation: string
  /**
   * false: nothing that holds a back-reference is quantified. glibc's regexec() recurses
   * without end on some such patterns (`(a|)(\\1+){1,}` on "-") and kills the process, Postfix's
   * postmap as well as ours.
   */
  quantifyReferences: boolean
  flags: readonly string[]
  keyAlphabet: string
}

export const pcreGrammar: PatternGrammar = {
  atoms: ['a', 'b', 'c', 'A', 'B', '.', '@', '-', '\\d', '\\w', '\\s', '\\W', '[a-c]', '[^b]', '[[:upper:]]', '\\Q.a\\E', '\\x61',
    '\\p{Lu}', '\\X', '\\R', '\\h', '\\N'],
  assertions: ['^', '$', '\\b', '\\B', '\\A', '\\z', '\\Z', '(?i)', '(?-i)', '(?s)', '(?x)', '\\K', '(*FAIL)', '(*COMMIT)', '(*SKIP)',
    '(*PRUNE)', '(?<=a)', '(?<!\\d)', '(?<=a|bc|def)', '(?<!^|[.@])'],
  groups: [
    {text: '(%)', capture: true}, {text: '(?<n%N>%)', capture: true}, {text: '(?:%)', capture: false}, {text: '(?>%)', capture: false},
    {text: '(?=%)', capture: false}, {text: '(?!%)', capture: false}, {text: '(?<=%)', capture: false},
    {text: '(?|(a)|(%))', capture: true}, {text: '(?i:%)', capture: false}, {text: '(?-i:%)', capture: false},
  ],
  quantifiers: ['', '', '', '*', '+', '?', '{1,2}', '{2}', '*?', '+?', '??', '*+', '++', '{0,3}+'],
  references: ['\\N', '\\g{N}', '(?N)', '(?(N)a|b)', '(?(N)%)', '\\g{-1}'],
  alternation: '|',
  quantifyReferences: true,
  flags: ['', '', '', 'i', 'm', 's', 'x', 'A', 'E', 'U', 'iU', 'sm'],
  keyAlphabet: 'aaabbbcccAB@.-1 _\n',
}

export const posixGrammar: PatternGrammar = {
  atoms: ['a', 'b', 'c', 'A', 'B', '.', '@', '-', '[a-c]', '[^b]', '[[:upper:]]', '[[:alnum:]_]', '\\w', '\\W', '\\s', '[].]', '[a-]'],
  assertions: ['^', '$', '\\<', '\\>', '\\b', '\\B', '\\`', "\\'"],
  groups: [{text: '(%)', capture: true}, {text: '(%|)', capture: true}],
  quantifiers: ['', '', '', '*', '+', '?', '{1,2}', '{2}', '{0,3}', '{1,}'],
  references: ['\\N'],
  alternation: '|',
  quantifyReferences: false,
  flags: ['', '', '', 'i', 'm', 'x', 'im'],
  keyAlphabet: 'aaabbbcccAB@.-1 _\n',
}

/** A random pattern of `grammar` and its number of capture groups. */
function randomPattern(random: Random, grammar: PatternGrammar, depth: number, groups: {count: number}): string {
  const branches = random.int(4) === 0 ? 2 : 1
  const out: string[] = []
  for (let b = 0; b < branches; b++) {
    let text = ''
    const pieces = 1 + random.int(4)
    for (let p = 0; p < pieces; p++) {
      let atom: string
      const roll = random.int(10)
      if (roll < 2 && depth < 3) {
        const group = random.pick(grammar.groups)
        const inner = randomPattern(random, grammar, depth + 1, groups)
        if (group.capture) groups.count++
        atom = group.text.replace('%N', String(groups.count)).replace('%', inner)
      } else if (roll === 3) {
        text += random.pick(grammar.assertions)
        continue
      } else if (roll === 2 && groups.count > 0) {
        const n = String(1 + random.int(groups.count))
        atom = random.pick(grammar.references).replaceAll('N', n).replace('%', random.pick(grammar.atoms))
      } else {
        atom = random.pick(grammar.atoms)
      }
      text += atom
      if (grammar.quantifyReferences || !/\\[1-9]/.test(atom)) text += random.pick(grammar.quantifiers)
    }
    out.push(text)
  }
  return out.join(grammar.alternation)
}

export interface GeneratedTable {
  text: string
  rules: number
  keys: string[]
}

/** `count` tables of `rules` random rules (with $n of their groups) and `keys` random keys each. */
export function generatedTables(grammar: PatternGrammar, seed: number, count: number, rules: number, keys: number): GeneratedTable[] {
  const random = randomSource(seed)
  const tables: GeneratedTable[] = []
  for (let t = 0; t < count; t++) {
    const lines: string[] = []
    for (let r = 0; r < rules; r++) {
      const groups = {count: 0}
      // The delimiter cannot occur inside; '/' never does in these grammars.
      const pattern = randomPattern(random, grammar, 0, groups)
      const subs = Array.from({length: Math.min(groups.count, 3)}, (_, i) => `[$${i + 1}]`).join('')
      lines.push(`/${pattern}/${random.pick(grammar.flags)} t${t}r${r}${subs}`)
    }
    const tableKeys: string[] = []
    for (let k = 0; k < keys; k++) {
      let key = ''
      const length = random.int(12)
      for (let i = 0; i < length; i++) key += random.pick([...grammar.keyAlphabet])
      // postmap -q - reads one key a line: no newline inside (it stays in the patterns' alphabet).
      tableKeys.push(key.replaceAll('\n', ''))
    }
    tables.push({text: lines.join('\n') + '\n', rules, keys: tableKeys})
  }
  return tables
}

const REAL_TABLE_TIMEOUT_MS = 5000

/**
 * Each table through `postmap -q -` (every key over one open table) and through ours with
 * postmap's flags: the same "key<TAB>value" lines and the same warnings, in order. A table
 * that real postmap does not get through (killed by a signal, or still busy after 5 s) is
 * skipped: ours would do the same, in the same C library.
 */
export async function bulkDifferential(type: TableType, typeName: string, dir: string, tables: GeneratedTable[], config: MainConfig,
  configDir: string, parallel = 8):
  Promise<{patterns: number; compiled: number; lookups: number; hits: number; skipped: number; failures: string[]}> {
  const failures: string[] = []
  let skipped = 0
  let patterns = 0
  let compiled = 0
  let lookups = 0
  let hits = 0
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < tables.length) {
      const index = next++
      const table = tables[index]
      const file = writeTable(path.join(dir, `t${index}`), table.text)
      const real = await runCommand(POSTMAP, ['-c', configDir, '-q', '-', `${typeName}:${file}`],
        {input: table.keys.map((k) => `${k}\n`).join(''), timeoutMs: REAL_TABLE_TIMEOUT_MS})
      if (real.timedOut || real.signal !== null) {
        // Postfix itself hangs or crashes on it (glibc regexec() on some back-references).
        skipped++
        continue
      }
      const realErr = real.stderr.split('\n').filter((l) => l.length > 0).map((l) => l.replace(/^postmap: /, ''))
      const lines: string[] = []
      const ours = await openWith(type, file, postmapQueryFlags(true), config, lines)
      const compileWarnings = lines.length
      let out = ''
      for (const key of table.keys) {
        const value = await ours.lookup(toBinary(key))
        if (value !== undefined) out += `${key}\t${fromBinary(value)}\n`
      }
      patterns += table.rules
      compiled += table.rules - compileWarnings
      lookups += table.keys.length
      hits += out.split('\n').length - 1
      if (out !== real.stdout || JSON.stringify(lines) !== JSON.stringify(realErr))
        failures.push(`${file}:\n${table.text}  ours: ${JSON.stringify(out)} ${JSON.stringify(lines)}\n  real: ${JSON.stringify(real.stdout)} ${JSON.stringify(realErr)}`)
    }
  }
  await Promise.all(Array.from({length: parallel}, worker))
  return {patterns, compiled, lookups, hits, skipped, failures}
}
