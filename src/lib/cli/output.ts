// The one output-format flag shared by query, update, delete, dump and check-access, and the
// rule for its default: the plain, postmap-compatible form wherever a program reads the
// output, a table only where a person does and a table helps (docs/json-output.md).

import * as Flags from '@oclif/core/flags'

export type OutputFormat = 'plain' | 'table' | 'json'
export const OUTPUT_FORMATS: readonly OutputFormat[] = ['plain', 'table', 'json']

/** `--output` / `-o`; `--json` (oclif's flag, from the base command) is its shorthand for json. */
export function outputFlag(defaultDescription: string) {
  return Flags.string({
    char: 'o',
    summary: `Output format: plain, table (for people) or json (same as --json). Default: ${defaultDescription}.`,
    options: [...OUTPUT_FORMATS],
    helpGroup: 'OUTPUT',
  })
}

/**
 * The format to use: json when asked for (--json or --output json), else what --output says,
 * else table only when `tableOnTerminal` and stdout is a terminal, else plain. A pipe never
 * gets a table unless it is asked for, so scripts keep postmap's byte-for-byte output.
 */
export function chooseOutput(requested: string | undefined, json: boolean, tableOnTerminal: boolean,
  stdout: {isTTY?: boolean} = process.stdout): OutputFormat {
  if (json) return 'json'
  if (requested === 'plain' || requested === 'table') return requested
  return tableOnTerminal && stdout.isTTY === true ? 'table' : 'plain'
}

/** Whether argv asks for JSON through --output (oclif's jsonEnabled() only knows --json). */
export function argvAsksForJson(argv: readonly string[]): boolean {
  const end = argv.indexOf('--')
  const args = end === -1 ? argv : argv.slice(0, end)
  for (let i = 0; i < args.length; i++) {
    const a = args[i]
    if ((a === '--output' || a === '-o') && args[i + 1] === 'json') return true
    if (a === '--output=json' || a === '-o=json' || a === '-ojson') return true
  }
  return false
}

/** --no-color in argv, for output made before (or without) a successful parse: errors. */
export function argvTurnsColorOff(argv: readonly string[]): boolean {
  const end = argv.indexOf('--')
  const args = end === -1 ? argv : argv.slice(0, end)
  return args.lastIndexOf('--no-color') > args.lastIndexOf('--color')
}
