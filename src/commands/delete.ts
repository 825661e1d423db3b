import * as Args from '@oclif/core/args'
import {BaseCommand} from '../lib/cli/base-command.js'
import {reflow} from '../lib/cli/help.js'
import {tableWithDefaultType} from '../lib/cli/table-name.js'
import {EXIT} from '../lib/cli/exit-codes.js'
import {outputFlag} from '../lib/cli/output.js'
import {colorEnabled, colorStatus, makeChalk, renderTable} from '../lib/cli/render.js'
import {DelayedSpinner} from '../lib/cli/spinner.js'
import {inputLines} from '../lib/cli/stdin-lines.js'
import {maintainFlags, reportBatchFailure, stderrTableLog} from '../lib/maintain/command-support.js'
import type {DialectChoice} from '../lib/client/service-client.js'
import {BatchFailure, DeleteSummary, deleteKeys} from '../lib/maintain/maintain.js'

/** --json lists at most this many missing keys (a batch from stdin may be any size). */
const MAX_LISTED_MISSING = 1000

export default class Delete extends BaseCommand {
  static override summary = 'Delete keys from a table, directly or through the proxywrite service (like postmap -d).'

  static override description = reflow(`TABLE is type:name as in main.cf. A proxy:type:name table is changed through the
running proxywrite service of the configuration (ours or Postfix's own); the table must
be listed in proxy_write_maps. Any other table is opened directly for writing, with the
flags of postmap -d (keys folded to lower case; -f: not).

"-" reads keys from standard input, one whole line per key, as postmap -d - does. Keys
are deleted one by one, in order. A key that is not in the table is reported and the
batch goes on (as postmap -d -); any other failure stops the batch, reporting how many
keys were deleted before and the key that failed. Nothing is rolled back.

Output (--output, -o):
  plain   "TABLE: N deleted, M not found", and "proxymap: KEY: not found" on stderr
          for each missing key (the default)
  table   the counts and the missing keys (NOKEY) as a table, for people
  json    (or --json) {"table","deleted","missing","missingKeys"} with at most
          ${MAX_LISTED_MISSING} missing keys listed; after a failure
          {"table","deleted","failed":{"key","line","message","hint","exitCode"}}
          ("line" and "hint" only when known; docs/json-output.md)

Exit codes: 0 at least one key deleted, 1 none of the keys was found (as postmap -d),
2 usage error, 3 DENY (table not in proxy_write_maps), 4 RETRY (table unavailable or
write failed), 5 BAD/CONFIG (invalid request, table type cannot delete),
6 service not reachable.`)

  // Run as printed from the checkout, after update's examples (test/interop/help-examples.test.ts).
  static override examples = [
    {description: 'A table opened directly.',
      command: '<%= config.bin %> delete -c examples/postfix lmdb:$PWD/examples/postfix/senders carol@example.com'},
    {description: 'Keys on standard input, one whole line each, as postmap -d -.',
      command: 'printf \'dave@example.com\\n\' | <%= config.bin %> delete -c examples/postfix lmdb:$PWD/examples/postfix/senders -'},
    {description: 'JSON, with the keys that were not found.',
      command: '<%= config.bin %> delete -c examples/postfix --json lmdb:$PWD/examples/postfix/senders erin@example.com nobody@example.com'},
    {description: 'Through the proxywrite service of a real configuration (the table must be in proxy_write_maps).',
      command: '<%= config.bin %> delete -c /etc/postfix proxy:lmdb:/var/lib/postfix/senders alice@example.com'},
  ]

  static override usage = [
    'delete [-c DIR] [FLAGS] TABLE KEY [KEY...]',
    'delete [-c DIR] [FLAGS] TABLE -',
  ]

  static override args = {
    table: Args.string({description: 'type:name, or proxy:type:name to go through the proxywrite service', required: true}),
    key: Args.string({description: 'key(s) to delete, or - to read keys from standard input', required: true, multiple: true}),
  }

  static override flags = {
    ...maintainFlags,
    output: outputFlag('plain'),
  }

  async run(): Promise<(DeleteSummary & {missingKeys: string[]}) | undefined> {
    const {args, argv, flags} = await this.parse(Delete)
    const keyArgs = (argv as string[]).slice(1)
    const fromStdin = keyArgs.length === 1 && keyArgs[0] === '-'
    const keys = fromStdin ? inputLines() : keyArgs
    const config = this.loadConfig(flags['config-dir'])
    const table = tableWithDefaultType(args.table, config)
    this.operation = {table, access: 'write', configDir: flags['config-dir']}
    const json = this.jsonEnabled()
    const format = this.outputFormat(flags.output, false)
    const errColor = makeChalk(colorEnabled(flags.color, process.stderr))
    // Not while the person types the keys: the spinner would draw over their input.
    const spinner = DelayedSpinner.forStderr(flags.color, !(fromStdin && process.stdin.isTTY))
    const missingKeys: string[] = []
    let summary: DeleteSummary
    try {
      const waiting = `deleting from ${table}`
      summary = await spinner.during(waiting, deleteKeys({
        config, table, fold: !flags['no-fold'], dialect: flags.dialect as DialectChoice, log: stderrTableLog(),
      }, keys, key => {
        if (format === 'plain') {
          // The spinner's line is cleared first, so that the message stays readable.
          spinner.stop()
          process.stderr.write(`proxymap: ${key}: ${colorStatus(errColor, 'NOKEY', 'not found')}\n`)
          spinner.start(waiting)
        } else if (missingKeys.length < MAX_LISTED_MISSING) missingKeys.push(key)
      }))
    } catch (err) {
      if (!(err instanceof BatchFailure)) throw err
      reportBatchFailure(err, json, this.operation)
      return undefined
    }
    if (summary.deleted === 0) process.exitCode = EXIT.NOT_FOUND
    if (json) {
      // oclif prints a returned result; print it ourselves so that exit code 1 adds nothing.
      this.logJson({...summary, missingKeys})
      return undefined
    }
    if (format === 'table') {
      const color = colorEnabled(flags.color, process.stdout)
      const c = makeChalk(color)
      let text = `${renderTable([[summary.table, colorStatus(c, 'OK', String(summary.deleted)), String(summary.missing)]], {head: ['table', 'deleted', 'not found'], color})}\n`
      if (missingKeys.length > 0) text += `${renderTable(missingKeys.map(key => [key, colorStatus(c, 'NOKEY')]), {head: ['key', 'status'], color})}\n`
      const more = summary.missing - missingKeys.length
      if (more > 0) text += `… ${more} more keys not found\n`
      process.stdout.write(text)
      return undefined
    }
    process.stdout.write(`${summary.table}: ${summary.deleted} deleted, ${summary.missing} not found\n`)
    return undefined
  }
}
