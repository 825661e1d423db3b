import fs from 'node:fs'
import path from 'node:path'
import * as Flags from '@oclif/core/flags'
import {BaseCommand} from '../lib/cli/base-command.js'
import {CliError} from '../lib/cli/errors.js'
import {EXIT} from '../lib/cli/exit-codes.js'
import {reflow} from '../lib/cli/help.js'
import {DEFAULT_UNIT_DIR, unitName, unitText} from '../lib/install/systemd-unit.js'
import {packageRoot} from '../lib/util/package-root.js'

export default class InstallSystemd extends BaseCommand {
  static override summary = 'Run "proxymap serve" as a systemd service (or --revert).'

  static override description = reflow(`Without --apply, prints the unit it would write: a
Type=notify service (started once the proxymap and proxywrite sockets exist) running
"proxymap serve -c DIR", reloaded by SIGHUP ("systemctl reload", which re-reads main.cf),
restarted on failure, logging to journald as postfix/proxymap with facility mail. With
--apply it writes the unit; then run "systemctl daemon-reload" and "systemctl enable --now
UNIT". --revert --apply removes it (stop and disable it first).

Use it instead of install-master, not with it: the standalone service and master.cf's
proxymap entries would both serve the same sockets.

--json: {"unit","path","applied","revert"} (docs/json-output.md).

Exit codes: 0 done (or planned), 2 usage or configuration error (unreadable main.cf,
cannot write the unit directory).`)

  static override examples = [
    '<%= config.bin %> install-systemd -c /etc/postfix',
    '<%= config.bin %> install-systemd -c /etc/postfix --apply && systemctl daemon-reload && systemctl enable --now proxymap',
    '<%= config.bin %> install-systemd -c /etc/postfix --revert --apply',
  ]

  static override flags = {
    apply: Flags.boolean({summary: 'Write (or with --revert remove) the unit file (default: only show it).', default: false}),
    revert: Flags.boolean({summary: 'Remove the unit file.', default: false}),
    'unit-dir': Flags.string({summary: 'Directory of the unit file.', default: DEFAULT_UNIT_DIR}),
  }

  async run(): Promise<{unit: string; path: string; applied: boolean; revert: boolean}> {
    const {flags} = await this.parse(InstallSystemd)
    const config = this.loadConfig(flags['config-dir'])
    const runJs = path.join(packageRoot(), 'bin', 'run.js')
    const name = unitName(config.configDir)
    const unitPath = path.join(flags['unit-dir'], name)
    const text = unitText({nodePath: process.execPath, runJs, configDir: config.configDir})
    if (!this.jsonEnabled()) this.log(flags.revert ? `unit ${unitPath} ${flags.apply ? 'removed' : 'would be removed'}` : `unit ${unitPath}:\n${text}`)
    if (flags.apply) {
      try {
        if (flags.revert) fs.rmSync(unitPath, {force: true})
        else fs.writeFileSync(unitPath, text, {mode: 0o644})
      } catch (e) {
        throw new CliError(`cannot ${flags.revert ? 'remove' : 'write'} ${unitPath}: ${(e as Error).message}`, EXIT.USAGE,
          flags.revert ? undefined : 'run as root, or choose a writable directory with --unit-dir')
      }
      if (!this.jsonEnabled()) this.log(flags.revert ? 'now run: systemctl daemon-reload' : `now run: systemctl daemon-reload && systemctl enable --now ${name}`)
    } else if (!this.jsonEnabled()) this.log('(nothing written: add --apply)')
    return {unit: name, path: unitPath, applied: flags.apply, revert: flags.revert}
  }
}
