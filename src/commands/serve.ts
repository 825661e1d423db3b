import * as Flags from '@oclif/core/flags'
import {BaseCommand, postfixVersionFlag} from '../lib/cli/base-command.js'
import {reflow} from '../lib/cli/help.js'
import {approvalRulesFor, describePostfixVersion} from '../lib/config/index.js'
import {Logger} from '../lib/log/logger.js'
import {standaloneLogSinks} from '../lib/log/sinks.js'
import {serviceManagerFromEnvironment} from '../lib/server/service-manager.js'
import {startStandalone} from '../lib/server/standalone.js'
import {cleanEnvironment} from '../lib/tables/environ.js'
import {runUnderMaster, startedByMaster} from '../lib/server/master.js'
import {ServiceKind} from '../lib/server/proxymap-service.js'
import {PROGRAM_NAME, setProcessTitle} from '../lib/server/process-title.js'
import {exitDeadline} from '../lib/server/shutdown.js'
import {reloadConfiguration} from '../lib/server/reload.js'

export default class Serve extends BaseCommand {
  static override summary = 'Run the proxymap and proxywrite services (a drop-in for Postfix\'s proxymap daemon).'

  static override description = reflow(`Reads DIR/main.cf and listens where Postfix's clients look for the services:
$queue_directory/private/$proxymap_service_name (read-only lookups) and
$queue_directory/private/$proxywrite_service_name (updates), so that real Postfix
programs using that configuration reach it unchanged. Tables are approved by
proxy_read_maps and proxy_write_maps, exactly as Postfix approves them: by the rules of
the configuration's Postfix release (3.11 also approves the tables of
smtpd_restriction_classes and reads /file/name elements). That release is
--postfix-version, else $PROXYMAP_POSTFIX_VERSION, else the mail_version of the postconf
in main.cf's command_directory, else 3.7. Under master(8), append
"--postfix-version 3.11" to the command in master.cf.

Started as root it binds the sockets and then runs as mail_owner. It logs to
standard error in Postfix's format and stops cleanly on SIGTERM or SIGINT, removing
its sockets; requests in progress get a second to finish, then RETRY. SIGHUP reads
main.cf again (approval lists, parameters) and keeps the sockets, the connections and
the open tables still approved; a main.cf that cannot be read keeps the running
configuration. A stale socket left by a killed server is replaced.

Tables that talk to a server (socketmap, tcp, memcache, mysql, pgsql) open connections as
lookups need them, up to $proxymap_backend_connection_limit per table (default 20; a
parameter of ours, which Postfix ignores), and close them when idle; lookups beyond that
wait in arrival order, and identical lookups in flight at once share one backend query.

A running server's counters (requests by type and status, hits and misses, latency,
open tables, backend pools, connections) are read by "proxymap stats" from
$queue_directory/private/$proxymap_service_name.stats; --prometheus-listen also serves
them to Prometheus. Under master(8) there are no statistics (each daemon process is
separate and short-lived; see proxymap stats --help).

No --json and no --output: what it prints is Postfix's log lines, for the tools that read
Postfix's logs (under master(8): syslog or maillog_file, as Postfix's proxymap).

Exit codes: 0 stopped by SIGTERM or SIGINT, 2 configuration error (unreadable main.cf,
a live server already on a socket, mail_owner unknown or with uid 0), and under master(8)
what Postfix's daemons exit with.`)

  static override examples = [
    '<%= config.bin %> serve -c examples/postfix',
    '<%= config.bin %> serve -c /etc/postfix --service proxymap',
    '<%= config.bin %> serve -c /etc/postfix --postfix-version 3.11',
  ]

  static override enableJsonFlag = false

  static override flags = {
    service: Flags.string({
      summary: 'Run only this service (default: both).',
      options: ['proxymap', 'proxywrite'],
      multiple: true,
    }),
    'postfix-version': postfixVersionFlag(),
    'prometheus-listen': Flags.string({
      summary: 'Serve Prometheus metrics (GET /metrics) on this loopback HOST:PORT, e.g. 127.0.0.1:9154 (default: off).',
      helpValue: 'HOST:PORT',
    }),
  }

  async run(): Promise<void> {
    // Under master(8) the arguments are Postfix's generic daemon options, not ours.
    if (startedByMaster()) {
      const code = await runUnderMaster(this.argv)
      process.exit(code)
    }
    const {flags} = await this.parse(Serve)
    setProcessTitle([PROGRAM_NAME, 'serve', ...this.argv].join(' '))
    const config = this.loadConfig(flags['config-dir'])
    const log = new Logger(Logger.tagFor(config.get('syslog_name'), 'proxymap'), standaloneLogSinks(config))
    const services: ServiceKind[] = (flags.service ?? ['proxymap', 'proxywrite']).map(s => s === 'proxymap' ? 'read' : 'write')
    // Before the environment is cleaned: $PROXYMAP_POSTFIX_VERSION is ours, not Postfix's.
    const choice = this.postfixVersion(flags['postfix-version'], config)
    log.info(`approving tables by the ${describePostfixVersion(choice)}`)
    const manager = serviceManagerFromEnvironment(process.env, text => log.warning(text))
    // master(8) would have cleaned the environment before starting proxymap.
    cleanEnvironment(config)
    const server = await startStandalone({config, log, services, rules: approvalRulesFor(choice.version), prometheusListen: flags['prometheus-listen']})
    for (const s of server.sockets)
      log.info(`listening on ${s.path} (${s.kind === 'read' ? 'read-only proxymap' : 'read-write proxywrite'} service)${server.runsAs ? `, running as ${server.runsAs}` : ''}`)
    log.info(`statistics on ${server.statsSocket} (proxymap stats)${server.prometheus ? ` and http://${server.prometheus}/metrics (Prometheus)` : ''}`)
    const readyStatus = `serving ${server.sockets.map(s => s.path).join(' ')}`
    manager.ready(readyStatus)
    let inForce = choice
    const reload = () => {
      manager.reloading()
      inForce = reloadConfiguration({configDir: config.configDir, log, server, choice: inForce})
      manager.ready(readyStatus)
    }
    process.on('SIGHUP', reload)
    await new Promise<void>(resolve => {
      const stop = (signal: string) => {
        log.info(`${signal} received -- shutting down`)
        manager.stopping()
        process.off('SIGHUP', reload)
        process.on('SIGHUP', () => undefined) // no reload, and no death by SIGHUP, while stopping
        exitDeadline(log, () => server.stillOpen(), () => process.exit(0))
        server.close().then(resolve, resolve)
      }
      process.once('SIGTERM', () => stop('SIGTERM'))
      process.once('SIGINT', () => stop('SIGINT'))
    })
  }
}
