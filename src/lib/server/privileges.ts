import {execFileSync} from 'node:child_process'

export interface Account {
  name: string
  uid: number
  gid: number
}

/** Look a user up through the name service (NSS), as getpwnam() would. */
export function lookupAccount(name: string): Account {
  let line: string
  try {
    line = execFileSync('getent', ['passwd', name], {encoding: 'utf8'}).trim()
  } catch {
    throw new Error(`unknown mail_owner user "${name}": create it, or set mail_owner in main.cf to an existing unprivileged user`)
  }
  const fields = line.split(':')
  return {name, uid: Number(fields[2]), gid: Number(fields[3])}
}

/** Set the groups and ids of `account`: the last step of a daemon's start-up. */
export function becomeAccount(account: Account): void {
  const withGroups = process as unknown as {initgroups(user: string, group: number): void}
  withGroups.initgroups(account.name, account.gid)
  process.setgid!(account.gid)
  process.setuid!(account.uid)
}

/**
 * Postfix daemons start as root only to bind and then run as mail_owner; refuse to keep
 * root for table lookups. A non-root caller already is unprivileged and stays as it is.
 */
export function dropPrivileges(mailOwner: string, beforeDrop?: (account: Account) => void): Account | undefined {
  if (process.getuid?.() !== 0) return undefined
  const account = lookupAccount(mailOwner)
  if (account.uid === 0) throw new Error(`mail_owner "${mailOwner}" has uid 0: proxymap refuses to run lookups as root; set mail_owner to an unprivileged user`)
  beforeDrop?.(account)
  becomeAccount(account)
  return account
}
