// Shared rendering for every command: colours that appear only where a person reads them
// (a terminal, without NO_COLOR or --no-color), proxymap status colours, and cli-table3
// tables that stay free of escape codes in a pipe.

import {createRequire} from 'node:module'
import type {ChalkInstance} from 'chalk'
import type TableConstructor from 'cli-table3'

// chalk and cli-table3 are loaded when colour or a table is wanted: a command in a pipe
// (as Postfix's programs call us) must not pay for them at start-up.
const require = createRequire(import.meta.url)
let chalkModule: typeof import('chalk') | undefined

/** Load chalk ahead of makeChalk(true): an ES module, required synchronously only where Node allows it. */
export async function preloadChalk(): Promise<void> {
  chalkModule ??= await import('chalk')
}

/** What chalk at level 0 does (the arguments joined by a space, no escapes), as any chain of styles. */
const PLAIN: ChalkInstance = new Proxy(((...text: unknown[]) => text.join(' ')) as unknown as ChalkInstance, {
  get: (_target, property) => (property === 'level' ? 0 : PLAIN),
})

/** A stream that may be a terminal (process.stdout, process.stderr, a tty.WriteStream). */
export interface OutputStream {
  isTTY?: boolean
  write(chunk: string): unknown
}

/**
 * Whether to colour what goes to `stream`: only on a terminal, never with --no-color
 * (`colorFlag` false) and never when NO_COLOR is set to a non-empty value (no-color.org).
 * FORCE_COLOR is deliberately not honoured: output for pipes must stay plain.
 */
export function colorEnabled(colorFlag: boolean | undefined, stream: OutputStream = process.stdout, env: NodeJS.ProcessEnv = process.env): boolean {
  if (colorFlag === false) return false
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false
  return stream.isTTY === true
}

/** A chalk instance that colours only when colorEnabled() says so (level 0 emits no escapes). */
export function makeChalk(enabled: boolean): ChalkInstance {
  if (!enabled) return PLAIN
  chalkModule ??= require('chalk') as typeof import('chalk')
  return new chalkModule.Chalk({level: 1})
}

/** proxymap reply statuses plus the verdict words commands print. */
export type StatusWord =
  | 'OK' | 'NOKEY' | 'RETRY' | 'BAD' | 'DENY' | 'CONFIG'
  | 'approved' | 'denied' | 'warning' | 'unreachable'

/** One colour per status, the same in every command: OK green, NOKEY yellow, DENY/BAD red, RETRY magenta. */
export function colorStatus(c: ChalkInstance, status: StatusWord | string, text: string = status): string {
  switch (status) {
    case 'OK':
    case 'approved':
      return c.green(text)
    case 'NOKEY':
    case 'warning':
      return c.yellow(text)
    case 'DENY':
    case 'BAD':
    case 'CONFIG':
    case 'denied':
    case 'unreachable':
      return c.red(text)
    case 'RETRY':
      return c.magenta(text)
    default:
      return text
  }
}

export interface TableOptions {
  head?: string[]
  /** Colour the header (only when colours are enabled). */
  color: boolean
  /** Column widths, optional (cli-table3 sizes columns to fit otherwise). */
  colWidths?: number[]
  wordWrap?: boolean
  /** With wordWrap: break long words (paths) too, not only at spaces. */
  wrapAnywhere?: boolean
}

/**
 * A cli-table3 table as text. Without colour the header and borders carry no escape codes
 * (cli-table3 colours the header red and borders grey by default).
 */
export function renderTable(rows: string[][], options: TableOptions): string {
  const Table = require('cli-table3') as typeof TableConstructor
  const table = new Table({
    head: options.head ?? [],
    style: options.color ? {head: ['cyan'], border: ['grey']} : {head: [], border: []},
    ...(options.colWidths ? {colWidths: options.colWidths} : {}),
    wordWrap: options.wordWrap ?? false,
    ...(options.wrapAnywhere ? {wrapOnWordBoundary: false} : {}),
  })
  for (const row of rows) table.push(row)
  return table.toString()
}

/** A unified-style line diff of two texts (whole-file context is not needed: main.cf is small). */
export function renderLineDiff(before: string, after: string, c: ChalkInstance, labels: {from: string; to: string}): string {
  const a = before.split('\n')
  const b = after.split('\n')
  // Longest common subsequence on lines: fine for configuration files.
  const n = a.length
  const m = b.length
  const lcs: number[][] = Array.from({length: n + 1}, () => new Array<number>(m + 1).fill(0))
  for (let i = n - 1; i >= 0; i--)
    for (let j = m - 1; j >= 0; j--) lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1])
  const ops: {kind: ' ' | '-' | '+'; text: string; oldLine: number; newLine: number}[] = []
  let i = 0
  let j = 0
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) ops.push({kind: ' ', text: a[i], oldLine: ++i, newLine: ++j})
    // Removals before additions, as diff -u prints a changed line.
    else if (i < n && (j >= m || lcs[i + 1][j] >= lcs[i][j + 1])) ops.push({kind: '-', text: a[i], oldLine: ++i, newLine: j})
    else ops.push({kind: '+', text: b[j], oldLine: i, newLine: ++j})
  }
  const CONTEXT = 2
  const out = [c.bold(`--- ${labels.from}`), c.bold(`+++ ${labels.to}`)]
  const changed = ops.map((op, index) => (op.kind === ' ' ? -1 : index)).filter(index => index >= 0)
  if (changed.length === 0) return out.join('\n')
  let k = 0
  while (k < changed.length) {
    const start = Math.max(0, changed[k] - CONTEXT)
    let end = changed[k]
    while (k + 1 < changed.length && changed[k + 1] - end <= 2 * CONTEXT + 1) end = changed[++k]
    end = Math.min(ops.length - 1, end + CONTEXT)
    k++
    const hunk = ops.slice(start, end + 1)
    const oldStart = hunk.find(op => op.kind !== '+')?.oldLine ?? hunk[0].oldLine
    const newStart = hunk.find(op => op.kind !== '-')?.newLine ?? hunk[0].newLine
    const oldCount = hunk.filter(op => op.kind !== '+').length
    const newCount = hunk.filter(op => op.kind !== '-').length
    out.push(c.cyan(`@@ -${oldStart},${oldCount} +${newStart},${newCount} @@`))
    for (const op of hunk) {
      const line = `${op.kind}${op.text}`
      out.push(op.kind === '-' ? c.red(line) : op.kind === '+' ? c.green(line) : line)
    }
  }
  return out.join('\n')
}
