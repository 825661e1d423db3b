// Shared by the differential tests of the indexed file tables (hash/btree, cdb/lmdb) and
// the in-memory and composite tables: byte strings, the two main.cf configurations, the
// test corpus, a bounded job pool, and log emulation.

import {after, before} from 'node:test'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import type {MainConfig} from '../../src/lib/config/index.js'
import {OpenOptions, Table, TableError, TableType} from '../../src/lib/tables/table.js'
import {backdate, POSTMAP, requirePostfix, runCommand} from '../helpers/postfix.js'

/** Byte string (latin1 "binary") of UTF-8 text, and back. */
export const b = (utf8Text: string): string => Buffer.from(utf8Text, 'utf8').toString('latin1')
export const t = (bytes: string): string => Buffer.from(bytes, 'latin1').toString('utf8')

export interface Cfg {name: string; dir: string; config: MainConfig}

export function makeConfig(dir: string, params: Record<string, string>): MainConfig {
  return {configDir: dir, get: (n) => params[n] ?? '', raw: (n) => params[n], isSet: (n) => n in params}
}

/**
 * The two configurations, smtputf8 on (UTF-8 layer) and off (ASCII folding): one directory
 * each under `root`, with its main.cf written by `write`.
 */
export function makeConfigDirs(root: string, write: (file: string, text: string) => unknown = fs.writeFileSync):
  (Cfg & {params: Record<string, string>})[] {
  const out: (Cfg & {params: Record<string, string>})[] = []
  for (const [name, params] of [
    ['smtputf8', {compatibility_level: '3.6'}],
    ['no-smtputf8', {compatibility_level: '3.6', smtputf8_enable: 'no'}],
  ] as const) {
    const dir = path.join(root, name)
    fs.mkdirSync(dir)
    write(path.join(dir, 'main.cf'), Object.entries(params).map(([k, v]) => `${k} = ${v}\n`).join(''))
    out.push({name, dir, config: makeConfig(dir, params), params})
  }
  return out
}

/** A wrapper that runs at most `max` of the functions given to it at a time. */
export function concurrencyLimit(max: number): <T>(fn: () => Promise<T>) => Promise<T> {
  let running = 0
  const waiting: (() => void)[] = []
  return async <T>(fn: () => Promise<T>): Promise<T> => {
    if (running >= max) await new Promise<void>((r) => waiting.push(r))
    running++
    try {
      return await fn()
    } finally {
      running--
      waiting.shift()?.()
    }
  }
}

/**
 * before(): require Postfix, run `also`, make a scratch root (handed to `set`) with the two
 * configurations, added to `configs`; after(): remove the root.
 */
export function useConfigRoot(prefix: string, configs: Cfg[], set: (root: string) => void, also?: () => void): void {
  let root: string | undefined
  before(() => {
    requirePostfix() // real Postfix is required: missing means FAIL, not skip
    also?.()
    root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), prefix)))
    set(root)
    for (const {name, dir, config} of makeConfigDirs(root)) configs.push({name, dir, config})
  })
  after(() => {
    if (root) fs.rmSync(root, {recursive: true, force: true})
  })
}

/** Opens `TYPE:NAME` with one of `types`, in configuration `cfg`. */
export async function openFileTable(types: Record<string, TableType>, spec: string, cfg: Cfg, dictFlags: number,
  log: OpenOptions['log'], mode: 'read' | 'write' = 'read'): Promise<Table> {
  const colon = spec.indexOf(':')
  return types[spec.slice(0, colon)].open(spec.slice(colon + 1), {
    mode, dictFlags, config: cfg.config, log, openNested: () => { throw new Error('unused') },
  })
}

/** Real `postmap -c DIR ARGS...` in configuration `cfg`. */
export const postmapIn = (cfg: Cfg, args: string[]) => runCommand(POSTMAP, ['-c', cfg.dir, ...args])

/** Run `jobs` with at most `width` at a time. */
export async function pool<T>(jobs: (() => Promise<T>)[], width = 8): Promise<T[]> {
  const results: T[] = new Array(jobs.length)
  let next = 0
  await Promise.all(Array.from({length: width}, async () => {
    while (next < jobs.length) {
      const i = next++
      results[i] = await jobs[i]()
    }
  }))
  return results
}

// ---------------------------------------------------------------------------- the corpus

export const ENTRIES: [string, string][] = [
  ['alice@example.com', 'OK'],
  ['Bob@Example.COM', 'REJECT go away'],
  ['CAROL', 'value with   several spaces'],
  ['dave.smith@mixed.Case.org', 'smtp:[relay.example.net]:587'],
  ['ÜBER@bücher.de', 'DISCARD ünïcödé value'],
  ['Straße@example.de', 'REDIRECT strasse@example.de'],
  ['ΑΘΗΝΑ', 'Greek capitals'],
  ['日本@例え.jp', '日本語の値'],
  ['example.net', 'relay:[10.0.0.1]'],
  ['.example.net', 'subdomains'],
  ['user+tag@example.com', 'tagged'],
  ['192.168.1.1', 'REJECT ip'],
  ['2001:db8::1', 'ipv6'],
  ['root', 'postmaster@example.com'],
  ['MAILER-DAEMON', 'postmaster'],
  ['key_with_underscore', 'x'],
  ['a', 'single letter'],
  ['ZZZ', 'last in order'],
]
for (let i = 0; i < 30; i++) ENTRIES.push([`Key${i}@Domain${i % 7}.Example`, `value ${i} with spaces and ${'#'.repeat(i % 5)}`])

export function queryKeys(): string[] {
  const keys = new Set<string>()
  for (const [k] of ENTRIES) {
    keys.add(k)
    keys.add(k.toLowerCase())
    keys.add(k.toUpperCase())
  }
  for (const k of ['missing', 'nobody@example.com', 'über@bücher.de', 'strasse@example.de', 'αθηνα', 'Key99@x', 'a b']) keys.add(k)
  return [...keys]
}

// ------------------------------------------------------------------------------ logging

/** A log that keeps warnings and errors in `into` and drops info. */
export function warningLog(into: string[]): OpenOptions['log'] {
  return {
    warning: (m) => into.push(`warning: ${m}`),
    error: (m) => into.push(`error: ${m}`),
    info: () => {},
  }
}

/** A log that keeps every line in `lines`. */
export function collectingLog(lines: string[]): OpenOptions['log'] {
  return {
    warning: (m) => lines.push(`warning: ${m}`),
    error: (m) => lines.push(`error: ${m}`),
    info: (m) => lines.push(m),
  }
}

/** Postfix printable(): what msg(3) does to a log line before writing it. */
export function printable(s: string, utf8: boolean): string {
  let out = ''
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c >= 0x20 && c < 0x7f) {
      out += s[i]
    } else if (utf8 && c >= 194 && c <= 254 && i + 1 < s.length &&
      s.charCodeAt(i + 1) >= 128 && s.charCodeAt(i + 1) < 192) {
      out += s[i]
      while (i + 1 < s.length && s.charCodeAt(i + 1) >= 128 && s.charCodeAt(i + 1) < 192) out += s[++i]
    } else {
      out += '?'
    }
  }
  return out
}

// ------------------------------------------------------------------------------ lookups

/**
 * Our side of `postmap -q KEY` on an open table: value and status, a table error counts
 * as not found (status 1, nothing printed). The table is closed afterwards.
 */
export async function lookupOutcome(table: Table, key: string): Promise<{stdout: string; status: number}> {
  try {
    const value = await table.lookup(b(key))
    return {stdout: value === undefined ? '' : `${t(value)}\n`, status: value === undefined ? 1 : 0}
  } catch (err) {
    if (!(err instanceof TableError)) throw err
    return {stdout: '', status: 1}
  } finally {
    await table.close?.()
  }
}

/** An answer with the warning and error lines that came with it (msg(3) style, no program name). */
export interface WarnedOutcome {stdout: string; result: 'found' | 'notfound' | 'error'; warnings: string[]}

/** Our lookup as postmap -q would print it; `warnings` is where the table's log writes. */
export async function warnedLookup(table: Table, key: string, warnings: string[], onValue?: (value: string) => void): Promise<WarnedOutcome> {
  try {
    const value = await table.lookup(b(key))
    if (value !== undefined) onValue?.(value)
    return {stdout: value === undefined ? '' : `${t(value)}\n`, result: value === undefined ? 'notfound' : 'found', warnings}
  } catch (err) {
    if (!(err instanceof TableError)) throw err
    return {stdout: '', result: 'error', warnings}
  } finally {
    await table.close?.()
  }
}

/** Real `postmap -c DIR -q KEY SPEC`: its answer and its warning and error lines. */
export async function postmapWarnedOutcome(configDir: string, key: string, spec: string): Promise<WarnedOutcome> {
  const r = await runCommand(POSTMAP, ['-c', configDir, '-q', key, spec], {timeoutMs: 60_000})
  const lines = r.stderr.split('\n').filter((l) => l.length > 0)
  const warnings = lines.filter((l) => /^postmap: (warning|error): /.test(l)).map((l) => l.replace(/^postmap: /, ''))
  const fatal = lines.some((l) => l.startsWith('postmap: fatal: '))
  if (r.code !== 0 && r.code !== 1) throw new Error(`postmap exited ${r.code}: ${r.stderr}`)
  return {stdout: r.stdout, result: r.code === 0 ? 'found' : fatal ? 'error' : 'notfound', warnings}
}

// ------------------------------------------------------------------ indexed file tables

/** Writes a postmap source file `dir/name` of `entries` (backdated); returns its path. */
export async function writeSource(dir: string, name: string, entries = ENTRIES): Promise<string> {
  const file = path.join(dir, name)
  fs.writeFileSync(file, entries.map(([k, v]) => `${k}\t${v}\n`).join(''))
  await backdate(file)
  return file
}

export function sortedLines(s: string): string[] {
  return s.split('\n').filter((l) => l.length > 0).sort()
}

/** What `postmap -q` printed and its exit status. */
export interface Outcome {stdout: string; code: number}

/** Our side of `postmap -q KEY` on an open table (closed afterwards); errors throw. */
export async function queryOutcome(table: Table, key: string): Promise<Outcome> {
  try {
    const value = await table.lookup(b(key))
    return value === undefined ? {stdout: '', code: 1} : {stdout: `${t(value)}\n`, code: 0}
  } finally {
    await table.close?.()
  }
}

/** Our side of `postmap -s` on an open table (closed afterwards): sorted lines. */
export async function sequenceLines(table: Table): Promise<string[]> {
  const lines: string[] = []
  const cursor = {}
  try {
    for (let e = await table.sequence!('first', cursor); e; e = await table.sequence!('next', cursor))
      lines.push(`${t(e[0])}\t${t(e[1])}`)
  } finally {
    await table.close?.()
  }
  return lines.sort()
}
