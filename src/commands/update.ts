import * as Args from '@oclif/core/args'
import {BaseCommand} from '../lib/cli/base-command.js'
import {reflow} from '../lib/cli/help.js'
import {tableWithDefaultType} from '../lib/cli/table-name.js'
import {CliError} from '../lib/cli/errors.js'
import {EXIT} from '../lib/cli/exit-codes.js'
import {outputFlag} from '../lib/cli/output.js'
import {colorEnabled, colorStatus, makeChalk, renderTable} from '../lib/cli/render.js'
import {DelayedSpinner} from '../lib/cli/spinner.js'
import {inputLines} from '../lib/cli/stdin-lines.js'
import {maintainFlags, reportBatchFailure, stderrTableLog} from '../lib/maintain/command-support.js'
import type {DialectChoice} from '../lib/client/service-client.js'
import {BatchFailure, UpdateSummary, updateEntries} from '../lib/maintain/maintain.js'
import {InputEntry, postmapEntries} from '../lib/maintain/postmap-input.js'

export default class Update extends BaseCommand {
  static override summary = 'Add or replace entries of a table, directly or through the proxywrite service (like postmap -i -r).'

  static override description = reflow(`TABLE is type:name as in main.cf. A proxy:type:name table is changed through the
running proxywrite service of the configuration (ours or Postfix's own: Postfix 3.7's own
tools cannot update through proxy:); the table must be listed in proxy_write_maps. Any
other table is opened directly for writing (a missing lmdb file is created), with the
flags of postmap -i -r: an existing key is replaced, keys are folded to lower case
(-f: not). The proxywrite service always replaces and syncs each update.

"-" reads postmap input from standard input: "key whitespace value" lines; blank lines
and # comments are skipped, a line starting with whitespace continues the previous one,
the key ends at the first unquoted whitespace. Unlike postmap, which warns and skips a
malformed line, the batch stops there. Entries are applied one by one, in order; the
batch stops at the first failure, reporting how many were applied before and the key
(and input line) that failed. Nothing is rolled back.

Output (--output, -o):
  plain   "TABLE: N updated" (the default)
  table   the same as a table, for people
  json    (or --json) {"table","updated"}; after a failure
          {"table","updated","failed":{"key","line","message","hint","exitCode"}}
          ("key", "line" and "hint" only when known; docs/json-output.md)
A failure is also reported on stderr, naming the key and input line.

Exit codes: 0 every entry stored, 2 usage error or malformed input line,
3 DENY (table not in proxy_write_maps), 4 RETRY (table unavailable or write failed),
5 BAD/CONFIG (invalid request, table type cannot be updated, update refused),
6 service not reachable.`)

  // Run as printed from the checkout (test/interop/help-examples.test.ts runs them all).
  static override examples = [
    {description: 'A table opened directly (an lmdb file is created by the first update).',
      command: '<%= config.bin %> update -c examples/postfix lmdb:$PWD/examples/postfix/senders alice@example.com OK'},
    {description: 'The words after the key are the value, as postmap -i reads "key whitespace value".',
      command: '<%= config.bin %> update -c examples/postfix lmdb:$PWD/examples/postfix/senders bob@example.com REJECT spam source'},
    {description: 'postmap input on standard input.',
      command: 'printf \'carol@example.com OK\\ndave@example.com REJECT\\n\' | <%= config.bin %> update -c examples/postfix lmdb:$PWD/examples/postfix/senders -'},
    {description: 'JSON: {"table","updated"}.',
      command: '<%= config.bin %> update -c examples/postfix --json lmdb:$PWD/examples/postfix/senders erin@example.com OK'},
    {description: 'Through the proxywrite service of a real configuration (the table must be in proxy_write_maps).',
      command: '<%= config.bin %> update -c /etc/postfix proxy:lmdb:/var/lib/postfix/senders alice@example.com OK'},
  ]

  static override usage = [
    'update [-c DIR] [FLAGS] TABLE KEY VALUE...',
    'update [-c DIR] [FLAGS] TABLE -',
  ]

  static override args = {
    table: Args.string({description: 'type:name, or proxy:type:name to go through the proxywrite service', required: true}),
    key: Args.string({description: 'the key, or - to read "key value" lines from standard input', required: true}),
    value: Args.string({description: 'the value: the remaining words, joined by one space each (as postmap -i reads "key whitespace value")', ignoreStdin: true, multiple: true}),
  }

  static override flags = {
    ...maintainFlags,
    output: outputFlag('plain'),
  }

  async run(): Promise<UpdateSummary | undefined> {
    const {args, argv, flags} = await this.parse(Update)
    const rest = (argv as string[]).slice(1)
    const fromStdin = rest.length === 1 && rest[0] === '-'
    let entries: AsyncIterable<InputEntry> | InputEntry[]
    if (fromStdin) entries = postmapEntries(inputLines())
    else if (rest.length >= 2 && rest[0] !== '' && rest.slice(1).join(' ').trim() !== '') entries = [{key: rest[0], value: rest.slice(1).join(' ')}]
    else throw new CliError(rest[0] === '' ? 'the KEY is empty' : 'expected KEY VALUE..., or - to read "key value" lines from standard input', EXIT.USAGE,
      'example: proxymap update lmdb:/etc/postfix/senders bob@example.com REJECT spam source')
    const config = this.loadConfig(flags['config-dir'])
    const table = tableWithDefaultType(args.table, config)
    this.operation = {table, access: 'write', configDir: flags['config-dir']}
    const format = this.outputFormat(flags.output, false)
    // Not while the person types the entries: the spinner would draw over their input.
    const spinner = DelayedSpinner.forStderr(flags.color, !(fromStdin && process.stdin.isTTY))
    let summary: UpdateSummary
    try {
      summary = await spinner.during(`updating ${table}`, updateEntries({
        config, table, fold: !flags['no-fold'], dialect: flags.dialect as DialectChoice, log: stderrTableLog(),
      }, entries))
    } catch (err) {
      if (!(err instanceof BatchFailure)) throw err
      reportBatchFailure(err, this.jsonEnabled(), this.operation)
      return undefined
    }
    if (format === 'plain') process.stdout.write(`${summary.table}: ${summary.updated} updated\n`)
    else if (format === 'table') {
      const color = colorEnabled(flags.color, process.stdout)
      process.stdout.write(`${renderTable([[summary.table, colorStatus(makeChalk(color), 'OK', String(summary.updated))]], {head: ['table', 'updated'], color})}\n`)
    }
    return summary
  }
}
