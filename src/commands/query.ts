import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'
import {BaseCommand} from '../lib/cli/base-command.js'
import {reflow} from '../lib/cli/help.js'
import {tableWithDefaultType} from '../lib/cli/table-name.js'
import {EXIT} from '../lib/cli/exit-codes.js'
import {outputFlag} from '../lib/cli/output.js'
import {colorEnabled, colorStatus, makeChalk, renderTable} from '../lib/cli/render.js'
import {DelayedSpinner} from '../lib/cli/spinner.js'
import {inputLines} from '../lib/cli/stdin-lines.js'
import {Logger, CommandStderrSink} from '../lib/log/logger.js'
import {QueryResult, queryKeys} from '../lib/query/query.js'
import {dialectFlag} from '../lib/maintain/command-support.js'
import type {DialectChoice} from '../lib/client/service-client.js'

export default class Query extends BaseCommand {
  static override summary = 'Look keys up in a table, directly or through the proxymap service (like postmap -q).'

  static override description = reflow(`TABLE is type:name as in main.cf. A proxy:type:name table is asked through the
running proxymap service of the configuration (ours or Postfix's own); any other table
is opened directly. With one KEY the value alone is printed; with several KEYs, or "-"
to read keys from standard input, each hit is printed as "key<TAB>value", as postmap -q.

Output (--output, -o):
  plain   the value, or "key<TAB>value" per hit: byte for byte what postmap -q prints
          (the default in a pipe, and for one KEY or "-")
  table   key, status (OK or NOKEY) and value of every key, for people (the default on
          a terminal when several KEYs are given)
  json    (or --json) {"table","results":[{"key","found","value"}],"found","missing"};
          "value" only when found (docs/json-output.md)

Exit codes: 0 found (at least one key), 1 not found, 2 usage or configuration error,
3 DENY (table not approved), 4 RETRY (table unavailable), 5 BAD/CONFIG,
6 service not reachable.`)

  // Run as printed from the checkout, with "npm start" serving examples/postfix in another
  // terminal (test/interop/help-examples.test.ts runs them all).
  static override examples = [
    {description: 'Through the running service (table names are compared byte for byte: give the absolute path, as main.cf does).',
      command: '<%= config.bin %> query -c examples/postfix proxy:texthash:$PWD/examples/postfix/virtual alice@example.com'},
    {description: 'Several keys: "key<TAB>value" per hit in a pipe, a table on a terminal.',
      command: '<%= config.bin %> query -c examples/postfix proxy:texthash:$PWD/examples/postfix/virtual alice@example.com bob@example.com'},
    {description: 'Keys from standard input, as postmap -q -.',
      command: 'printf \'alice@example.com\\nnobody@example.com\\n\' | <%= config.bin %> query -c examples/postfix proxy:texthash:$PWD/examples/postfix/virtual -'},
    {description: 'A table opened directly, without the service.',
      command: '<%= config.bin %> query -c examples/postfix texthash:$PWD/examples/postfix/relocated dave@example.com'},
    {description: 'JSON; an inline table in single quotes, or the shell expands its braces.',
      command: '<%= config.bin %> query -c examples/postfix --json \'inline:{alice=a,bob=b}\' alice'},
    {description: 'A table for people, with the keys that were not found.',
      command: '<%= config.bin %> query -c examples/postfix --output table proxy:texthash:$PWD/examples/postfix/virtual alice@example.com nobody@example.com'},
  ]

  static override usage = [
    'query [-c DIR] [FLAGS] TABLE KEY [KEY...]',
    'query [-c DIR] [FLAGS] TABLE -',
  ]

  static override args = {
    table: Args.string({description: 'type:name, or proxy:type:name to go through the service', required: true}),
    key: Args.string({description: 'key(s) to look up, or - to read keys from standard input', required: true, multiple: true}),
  }

  static override flags = {
    'no-fold': Flags.boolean({char: 'f', summary: 'Do not fold the key to lower case (postmap -f).', default: false}),
    dialect: dialectFlag(),
    output: outputFlag('table on a terminal with several KEYs, else plain'),
  }

  async run(): Promise<{table: string; results: QueryResult[]; found: number; missing: number}> {
    const {args, argv, flags} = await this.parse(Query)
    const config = this.loadConfig(flags['config-dir'])
    const table = tableWithDefaultType(args.table, config)
    this.operation = {table, access: 'read', configDir: flags['config-dir']}
    const keyArgs = (argv as string[]).slice(1)
    const fromStdin = keyArgs.length === 1 && keyArgs[0] === '-'
    const listing = fromStdin || keyArgs.length > 1
    const log = new Logger('proxymap', [new CommandStderrSink()])
    const format = this.outputFormat(flags.output, !fromStdin && keyArgs.length > 1)
    // postmap -q - takes each whole line, without its newline, as a key.
    const keys = fromStdin ? inputLines() : keyArgs
    // Not while the person types the keys: the spinner would draw over their input.
    const spinner = DelayedSpinner.forStderr(flags.color, !(fromStdin && process.stdin.isTTY))
    const results: QueryResult[] = []
    let found = 0
    let answered = 0
    const answers = queryKeys({
      config, table, keys: [], fold: !flags['no-fold'], dialect: flags.dialect as DialectChoice,
      log: {warning: m => log.warning(m), error: m => log.error(m), info: m => log.info(m)},
    }, keys)
    for (;;) {
      // The first answer includes opening the table (connecting to the service for proxy:).
      const next = await spinner.during(answered++ === 0 ? `opening ${table}` : `looking up in ${table}`, answers.next())
      if (next.done) break
      const result = next.value
      if (result.found) found++
      if (format !== 'plain') results.push(result)
      else if (result.found) process.stdout.write(listing ? `${result.key}\t${result.value}\n` : `${result.value}\n`)
    }
    if (format === 'table') process.stdout.write(`${renderResults(results, colorEnabled(flags.color, process.stdout))}\n`)
    const summary = {table, results, found, missing: results.length - found}
    // Not found is an answer, not an error: one JSON document, and exit 1 as postmap -q.
    if (found === 0) process.exitCode = EXIT.NOT_FOUND
    return summary
  }
}

function renderResults(results: QueryResult[], color: boolean): string {
  const c = makeChalk(color)
  const rows = results.map(r => [r.key, colorStatus(c, r.found ? 'OK' : 'NOKEY'), r.value ?? ''])
  return renderTable(rows, {head: ['key', 'status', 'value'], color})
}
