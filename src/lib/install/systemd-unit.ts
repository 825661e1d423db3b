// A systemd service for the standalone server: Type=notify (started = the service sockets
// exist), reload = SIGHUP (re-read main.cf), restart on failure, records to journald under
// Postfix's tag and facility so that syslog and log tooling see postfix/proxymap lines.

import path from 'node:path'

export const DEFAULT_UNIT_DIR = '/etc/systemd/system'

export interface UnitOptions {
  nodePath: string
  runJs: string
  configDir: string
  /** Postfix's own service, ordered after us: its daemons' first lookups find the sockets. */
  before?: string
}

/** The unit's file name for a configuration directory: proxymap.service for /etc/postfix. */
export function unitName(configDir: string): string {
  if (path.resolve(configDir) === '/etc/postfix') return 'proxymap.service'
  // systemd-escape's path rules, enough for a name: '/' → '-', other unsafe bytes as \xNN.
  const escaped = path.resolve(configDir).replace(/^\/+|\/+$/g, '')
    .replace(/[^A-Za-z0-9:_./]/g, c => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)
    .replace(/\//g, '-')
  return `proxymap-${escaped}.service`
}

function quoteArg(arg: string): string {
  // systemd's command-line quoting: double quotes, with \ and " escaped; $ and % doubled.
  return /^[A-Za-z0-9@%+=:,./_-]+$/.test(arg) && !arg.includes('%')
    ? arg : `"${arg.replace(/[\\"]/g, c => `\\${c}`).replace(/\$/g, '$$$$').replace(/%/g, '%%')}"`
}

export function unitText(options: UnitOptions): string {
  const {nodePath, runJs, configDir} = options
  const before = options.before ?? 'postfix.service'
  return [
    '# Installed by "proxymap install-systemd"; remove with "proxymap install-systemd --revert --apply".',
    '[Unit]',
    `Description=proxymap lookup-table proxy (Postfix proxymap and proxywrite services) for ${configDir}`,
    'Documentation=man:proxymap(1)',
    'After=network.target mariadb.service mysql.service postgresql.service slapd.service memcached.service redis-server.service',
    `Before=${before}`,
    '',
    '[Service]',
    'Type=notify',
    'NotifyAccess=main',
    `ExecStart=${[nodePath, runJs, 'serve', '-c', configDir].map(quoteArg).join(' ')}`,
    'ExecReload=/bin/kill -HUP $MAINPID',
    'KillMode=mixed',
    'TimeoutStopSec=10s',
    'Restart=on-failure',
    'RestartSec=1s',
    'SyslogIdentifier=postfix/proxymap',
    'SyslogFacility=mail',
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ].join('\n')
}
