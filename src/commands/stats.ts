import {Flags} from '@oclif/core'
import {BaseCommand} from '../lib/cli/base-command.js'
import {reflow} from '../lib/cli/help.js'
import {outputFlag} from '../lib/cli/output.js'
import {colorEnabled} from '../lib/cli/render.js'
import type {StatsSnapshot} from '../lib/server/stats.js'
import {fetchStats} from '../lib/stats/stats-client.js'
import {watchStats} from '../lib/stats/watch.js'
import {renderStatsLines, renderStatsTables} from '../lib/stats/stats-view.js'

export default class Stats extends BaseCommand {
  static override summary = 'Show what the running proxymap serve has done: requests, hits and misses, latency, tables, pools, connections.'

  static override description = reflow(`Reads the counters of the standalone "proxymap serve" of the configuration
from its stats socket, $queue_directory/private/$proxymap_service_name.stats (or
$proxywrite_service_name.stats for a server of proxywrite only). That socket is in
Postfix's private/ directory, so reading it takes what using the services takes: root
or mail_owner. Counts start at zero when the server starts and are kept across SIGHUP
(a table no longer approved loses its own).

Per service (proxymap, proxywrite) and per approved table: requests by type (open,
lookup, update, delete, sequence) and reply status (OK, NOKEY, RETRY, BAD, DENY,
CONFIG), lookup hits (OK) and misses (NOKEY), a latency histogram, open instances, the
backend pool (connections/busy/queued) of tables that have one; per service also the
requests rejected before any table (BAD, unrecognized, malformed input) and the client
connections (open/accepted, the busiest listed in --json).

Under master(8) there are no statistics: each proxymap process there is separate and
short-lived (max_idle, max_use), so a count would be that of one process.
"proxymap serve --prometheus-listen 127.0.0.1:9154" exports the same counters to
Prometheus.

Output (--output, -o):
  table   per service: a summary, the requests by type and status, then its
          tables (the default on a terminal)
  plain   key=value lines, one per service and per table (the default in a pipe)
  json    (or --json) the whole snapshot (docs/json-output.md)

--watch draws the table again every second on a terminal (Ctrl-C ends it, exit 0);
in a pipe it prints the plain lines every second, each starting with the time; with
--json, one snapshot per line (JSON Lines) every second.

Exit codes: 0 shown, 2 usage or configuration error, 6 no server answering on the stats
socket (or permission denied).`)

  // Run as printed from the checkout, with "npm start" serving examples/postfix in another terminal.
  static override examples = [
    '<%= config.bin %> stats -c examples/postfix',
    '<%= config.bin %> stats -c examples/postfix --json',
  ]

  static override flags = {
    output: outputFlag('table on a terminal, else plain'),
    watch: Flags.boolean({char: 'w', summary: 'Show the counters again every second until Ctrl-C.', default: false}),
  }

  private watching = false

  /** --watch --json prints its own lines: oclif must not add the returned value as a document. */
  override logJson(json: unknown): void {
    if (!this.watching) super.logJson(json)
  }

  async run(): Promise<StatsSnapshot | void> {
    const {flags} = await this.parse(Stats)
    const config = this.loadConfig(flags['config-dir'])
    const format = this.outputFormat(flags.output, true)
    const color = colorEnabled(flags.color, process.stdout)
    const fetch = () => fetchStats(config, flags['config-dir'])
    if (flags.watch) {
      await watchStats(fetch, {format, color, stdout: process.stdout})
      // Ctrl-C is how a watch ends: exit 0, and no document after the lines (see jsonEnabled()).
      this.watching = true
      return
    }
    const snapshot = await fetch()
    if (format === 'table') process.stdout.write(`${renderStatsTables(snapshot, color, process.stdout.columns)}\n`)
    else if (format === 'plain') process.stdout.write(`${renderStatsLines(snapshot)}\n`)
    return snapshot
  }
}
