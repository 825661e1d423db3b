import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'
import {BaseCommand} from '../lib/cli/base-command.js'
import {reflow} from '../lib/cli/help.js'
import {tableWithDefaultType} from '../lib/cli/table-name.js'
import {toCliError} from '../lib/cli/errors.js'
import {outputFlag} from '../lib/cli/output.js'
import {colorEnabled} from '../lib/cli/render.js'
import {DelayedSpinner} from '../lib/cli/spinner.js'
import {dialectFlag, stderrTableLog} from '../lib/maintain/command-support.js'
import type {DialectChoice} from '../lib/client/service-client.js'
import {dumpBatches} from '../lib/maintain/maintain.js'
import {DumpRenderer, JsonDump, PlainDump, StreamWriter, TableDump} from '../lib/maintain/output.js'

/** How often (in entries) the progress count is refreshed. */
const PROGRESS_EVERY = 1000

export default class Dump extends BaseCommand {
  static override summary = 'List every key and value of a table, directly or through the proxymap service (like postmap -s).'

  static override description = reflow(`TABLE is type:name as in main.cf. A proxy:type:name table is listed through the
running proxymap service of the configuration (ours or Postfix's own; Postfix 3.7's
postmap -s refuses proxy: tables); the table must be listed in proxy_read_maps. Any other
table is opened directly, read-only. Entries come in the table's own order (lmdb: key
byte order) and are streamed a batch at a time: memory stays constant whatever the table size.

Output (--output, -o):
  plain   "key<TAB>value" lines, the bytes as stored, as postmap -s prints them (the
          default, also on a terminal: it streams, while a table must hold its rows)
  table   a table for people: the first --max-rows entries, then the count
  json    (or --json) one JSON document, streamed:
          {"table":"…","entries":[{"key":"…","value":"…"},…],"count":N}
          (UTF-8 decoded); when the listing fails part-way the document still
          closes, with "error":{"message","exitCode"} after "count" (docs/json-output.md)

On a terminal a spinner on stderr shows the wait for the table and then counts the
entries read, once the dump takes longer than a moment (not with --json, not in a pipe,
not with NO_COLOR or --no-color, and not when the plain listing itself goes to the
terminal).

Exit codes: 0 done (also for an empty table), 2 usage or configuration error,
3 DENY (table not in proxy_read_maps), 4 RETRY (table unavailable), 5 BAD/CONFIG
(invalid request, or the table type cannot be listed), 6 service not reachable.`)

  // Run as printed from the checkout, with "npm start" serving examples/postfix in another
  // terminal (test/interop/help-examples.test.ts runs them all).
  static override examples = [
    {description: 'Through the running service, as "key<TAB>value" lines.',
      command: '<%= config.bin %> dump -c examples/postfix proxy:texthash:$PWD/examples/postfix/virtual'},
    {description: 'A table opened directly; JSON for scripts.',
      command: '<%= config.bin %> dump -c examples/postfix --json texthash:$PWD/examples/postfix/virtual | jq -r \'.entries[].key\''},
    {description: 'A table for people; an inline table in single quotes, or the shell expands its braces.',
      command: '<%= config.bin %> dump -c examples/postfix --output table \'inline:{alice=a,bob=b}\''},
    {description: 'How many entries a table has.',
      command: '<%= config.bin %> dump -c examples/postfix texthash:$PWD/examples/postfix/relocated | grep -c .'},
  ]

  static override args = {
    table: Args.string({description: 'type:name, or proxy:type:name to go through the proxymap service', required: true}),
  }

  static override flags = {
    // No -f: folding changes keys that are looked up or written, and dump does neither (postmap -s ignores -f too).
    dialect: dialectFlag(),
    output: outputFlag('plain'),
    'max-rows': Flags.integer({summary: 'With --output table: show at most this many entries.', default: 1000, min: 1}),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(Dump)
    const config = this.loadConfig(flags['config-dir'])
    const table = tableWithDefaultType(args.table, config)
    this.operation = {table, access: 'read', configDir: flags['config-dir']}
    const format = this.outputFormat(flags.output, false)
    const json = format === 'json'
    const asTable = format === 'table'
    const out = new StreamWriter(process.stdout, json || asTable ? 'utf8' : 'latin1')
    const color = colorEnabled(flags.color, process.stdout)
    const renderer: DumpRenderer = json ? new JsonDump(out, table)
      : asTable ? new TableDump(out, flags['max-rows'], color)
      : new PlainDump(out)
    const progress = DelayedSpinner.forStderr(flags.color, !json && (asTable || !process.stdout.isTTY))

    let count = 0
    let begun = false
    const batches = dumpBatches({
      config, table, fold: true, dialect: flags.dialect as DialectChoice, log: stderrTableLog(),
    })
    progress.start(`opening ${table}`)
    try {
      for await (const batch of batches) {
        if (!begun) {
          begun = true
          progress.text = `reading ${table}`
          await renderer.begin()
        }
        for (const [key, value] of batch) renderer.entry(key, value)
        const before = count
        count += batch.length
        if (Math.floor(count / PROGRESS_EVERY) !== Math.floor(before / PROGRESS_EVERY)) await progress.update(`${count} entries read from ${table}`)
        await out.flushWhenFull()
        if (out.readerGone) break // `dump | head`: stop quietly (and close the table)
      }
    } catch (err) {
      stopProgress(progress, count)
      // Nothing printed yet: the usual error output and exit code (base command).
      if (!begun) throw err
      const cause = toCliError(err, this.operation)
      await renderer.end(count, {message: cause.message, exitCode: cause.exitCode})
      if (!json) process.stderr.write(`proxymap: listing stopped after ${count} entries: ${cause.message}\n`)
      process.exitCode = cause.exitCode
      return
    }
    stopProgress(progress, count)
    if (out.readerGone) return
    if (!begun) await renderer.begin()
    await renderer.end(count)
  }
}

function stopProgress(progress: DelayedSpinner, count: number): void {
  progress.stop(`${count} ${count === 1 ? 'entry' : 'entries'} read`)
}
