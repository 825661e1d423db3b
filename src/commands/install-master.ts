import fs from 'node:fs'
import path from 'node:path'
import * as Flags from '@oclif/core/flags'
import {BaseCommand} from '../lib/cli/base-command.js'
import {reflow} from '../lib/cli/help.js'
import {COPIES_DIR_SUFFIX, installCopy, packageVersion} from '../lib/install/installed-copy.js'
import {packageRoot} from '../lib/util/package-root.js'
import {LAUNCHER_NAME, launcherScript, planMasterCf} from '../lib/install/master-cf.js'

export default class InstallMaster extends BaseCommand {
  static override summary = 'Run this proxymap from master.cf in place of Postfix\'s own (or --revert).'

  static override description = reflow(`Without --apply, prints what it would do: the launcher it would place in
$daemon_directory and the master.cf entries it would change. With --apply it writes
both, with a private copy of this installation in $daemon_directory/proxymap-ts.d that
the launcher runs, so that upgrading or removing the npm package never stops the service;
run "postfix reload" then, and again after "install-master --apply" following an upgrade.
If the copy cannot run, the launcher starts Postfix's own proxymap and logs why.
--revert puts Postfix's own proxymap back; it works without the package too, through the
launcher: "$daemon_directory/proxymap-ts install-master --revert --apply".

--json: {"masterCf","launcher","copy","services","applied","revert"}: the master.cf file,
the launcher path, the copy it runs, the master.cf services changed (or that would change
without --apply), whether anything was written, and whether this was --revert
(docs/json-output.md).

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

  async run(): Promise<{masterCf: string; launcher: string; copy?: string; services: string[]; applied: boolean; revert: boolean}> {
    const {flags} = await this.parse(InstallMaster)
    const config = this.loadConfig(flags['config-dir'])
    const daemonDir = config.get('daemon_directory')
    const launcher = path.join(daemonDir, LAUNCHER_NAME)
    const copiesDir = launcher + COPIES_DIR_SUFFIX
    const root = packageRoot()
    const plan = planMasterCf(config.configDir, flags.revert ? 'proxymap' : LAUNCHER_NAME)
    const human = !this.jsonEnabled()
    if (human) {
      this.log(plan.changed.length === 0
        ? `${plan.masterCfPath}: the proxymap and proxywrite entries already run ${flags.revert ? 'Postfix\'s proxymap' : LAUNCHER_NAME}`
        : `${plan.masterCfPath}: ${plan.changed.join(' and ')} ${flags.apply ? 'now run' : 'would run'} ${flags.revert ? 'Postfix\'s own proxymap' : launcher}`)
      if (flags.revert) this.log(`${flags.apply ? 'removed' : 'would remove'}: ${launcher} and ${copiesDir}`)
      else this.log(`${flags.apply ? 'installing' : 'would install'} a private copy of ${root} (proxymap ${packageVersion(root)}) in ${copiesDir}, run by ${launcher}`)
    }
    if (!flags.apply) {
      if (human) this.log('(nothing written: add --apply)')
      return {masterCf: plan.masterCfPath, launcher, services: plan.changed, applied: false, revert: flags.revert}
    }
    let copy: string | undefined
    if (flags.revert) {
      if (plan.changed.length > 0) fs.writeFileSync(plan.masterCfPath, plan.after, 'latin1')
      fs.rmSync(launcher, {force: true})
      // Daemons still running from the copy have loaded what they use; "postfix reload" ends them.
      fs.rmSync(copiesDir, {recursive: true, force: true})
    } else {
      const installed = installCopy(root, copiesDir)
      copy = installed.dir
      if (human) {
        this.log(`${installed.created ? 'copied' : 'already there'}: ${installed.dir}`)
        for (const old of installed.removed) this.log(`removed the older copy ${old}`)
      }
      const script = launcherScript({
        nodePath: process.execPath, copyDir: installed.dir, version: packageVersion(root),
        postlogPath: path.join(config.get('command_directory'), 'postlog'), syslogName: config.get('syslog_name'),
        postfixProxymap: path.join(daemonDir, 'proxymap'),
      })
      // Renamed into place: master never runs a half-written launcher.
      fs.writeFileSync(`${launcher}.tmp`, script, {mode: 0o755})
      fs.renameSync(`${launcher}.tmp`, launcher)
      if (plan.changed.length > 0) fs.writeFileSync(plan.masterCfPath, plan.after, 'latin1')
    }
    if (human) this.log('now run: postfix reload')
    return {masterCf: plan.masterCfPath, launcher, copy, services: plan.changed, applied: true, revert: flags.revert}
  }
}
