import fs from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {Flags} from '@oclif/core'
import {BaseCommand} from '../lib/cli/base-command.js'
import {reflow} from '../lib/cli/help.js'
import {LAUNCHER_NAME, launcherScript, planMasterCf} from '../lib/install/master-cf.js'

export default class InstallMaster extends BaseCommand {
  static override summary = 'Run this proxymap from master.cf in place of Postfix\'s own (or --revert).'

  static override description = reflow(`Without --apply, prints what it would do: the launcher it would place in
$daemon_directory and the master.cf entries it would change. With --apply it writes
both; then run "postfix reload". --revert puts Postfix's own proxymap back.

--json: {"masterCf","launcher","services","applied","revert"}: the master.cf file, the
launcher path, the master.cf services changed (or that would change without --apply),
whether anything was written, and whether this was --revert (docs/json-output.md).

Exit codes: 0 done (or planned), 2 usage or configuration error (unreadable main.cf or
master.cf, no proxymap entry in master.cf, cannot write).`)

  static override examples = [
    '<%= config.bin %> install-master -c /etc/postfix',
    '<%= config.bin %> install-master -c /etc/postfix --apply && postfix reload',
    '<%= config.bin %> install-master -c /etc/postfix --revert --apply && postfix reload',
    '<%= config.bin %> install-master -c /etc/postfix --json',
  ]

  static override flags = {
    apply: Flags.boolean({summary: 'Write the launcher and master.cf (default: only show the plan).', default: false}),
    revert: Flags.boolean({summary: 'Put Postfix\'s own proxymap daemon back in master.cf.', default: false}),
  }

  async run(): Promise<{masterCf: string; launcher: string; services: string[]; applied: boolean; revert: boolean}> {
    const {flags} = await this.parse(InstallMaster)
    const config = this.loadConfig(flags['config-dir'])
    const launcher = path.join(config.get('daemon_directory'), LAUNCHER_NAME)
    const runJs = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'run.js')
    const plan = planMasterCf(config.configDir, flags.revert ? 'proxymap' : LAUNCHER_NAME)
    if (!this.jsonEnabled()) {
      this.log(plan.changed.length === 0
        ? `${plan.masterCfPath}: the proxymap and proxywrite entries already run ${flags.revert ? 'Postfix\'s proxymap' : LAUNCHER_NAME}`
        : `${plan.masterCfPath}: ${plan.changed.join(' and ')} ${flags.apply ? 'now run' : 'would run'} ${flags.revert ? 'Postfix\'s own proxymap' : launcher}`)
      if (!flags.revert) this.log(`launcher ${launcher}:\n${launcherScript(process.execPath, runJs)}`)
    }
    if (flags.apply) {
      if (!flags.revert) fs.writeFileSync(launcher, launcherScript(process.execPath, runJs), {mode: 0o755})
      if (plan.changed.length > 0) fs.writeFileSync(plan.masterCfPath, plan.after, 'latin1')
      if (flags.revert) fs.rmSync(launcher, {force: true})
      if (!this.jsonEnabled()) this.log('now run: postfix reload')
    } else if (!this.jsonEnabled()) this.log('(nothing written: add --apply)')
    return {masterCf: plan.masterCfPath, launcher, services: plan.changed, applied: flags.apply, revert: flags.revert}
  }
}
