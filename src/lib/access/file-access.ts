// Can mail_owner (the user proxymap(8) runs as) read, or with proxywrite write, the files
// behind a table? Checked from stat(): owner/group/other mode bits against the user's uid,
// primary gid and supplementary groups, and search (x) permission on every parent
// directory. POSIX ACLs and capabilities are not looked at.

import {execFileSync} from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'

export interface UserIds {
  name: string
  uid: number
  gid: number
  groups: number[]
}

/** uid, gid and groups of a user, through NSS (getent, id); undefined when unknown. */
export function lookupUser(name: string): UserIds | undefined {
  try {
    const entry = execFileSync('getent', ['passwd', name], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore']}).trim().split(':')
    const uid = Number(entry[2])
    const gid = Number(entry[3])
    let groups = [gid]
    try {
      groups = execFileSync('id', ['-G', name], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore']}).trim().split(/\s+/).map(Number)
    } catch {
      // primary group only
    }
    if (!Number.isInteger(uid) || !Number.isInteger(gid)) return undefined
    return {name, uid, gid, groups}
  } catch {
    return undefined
  }
}

/** The files a table type reads, as Postfix names them (postmap builds FILE.db, FILE.cdb, FILE.lmdb). */
export function tableFiles(table: string): {path: string; role: 'table' | 'source' | 'config'}[] {
  const colon = table.indexOf(':')
  if (colon < 0) return []
  const type = table.slice(0, colon)
  const name = table.slice(colon + 1)
  if (name.startsWith('{') || name === '') return []
  switch (type) {
    case 'texthash':
    case 'regexp':
    case 'pcre':
    case 'cidr':
      return [{path: name, role: 'source'}]
    case 'cdb':
      return [{path: `${name}.cdb`, role: 'table'}]
    case 'lmdb':
      return [{path: `${name}.lmdb`, role: 'table'}]
    case 'hash':
    case 'btree':
      return [{path: `${name}.db`, role: 'table'}]
    case 'mysql':
    case 'pgsql':
    case 'sqlite':
    case 'ldap':
    case 'memcache':
      return name.startsWith('/') ? [{path: name, role: 'config'}] : []
    default:
      return []
  }
}

export type FileProblemCode = 'file-missing' | 'file-unreadable' | 'file-unwritable' | 'dir-not-traversable' | 'dir-unwritable' | 'not-a-file'

export interface FileAccess {
  path: string
  role: 'table' | 'source' | 'config'
  exists: boolean
  /** Owner, group and mode (octal text) when the file exists. */
  owner?: number
  group?: number
  mode?: string
  readable: boolean
  /** Only checked for write access; undefined otherwise. */
  writable?: boolean
  problem?: {code: FileProblemCode; message: string; hint: string}
}

type Want = 4 | 2 | 1
const R: Want = 4
const W: Want = 2
const X: Want = 1

function allows(st: fs.Stats, user: UserIds, want: Want): boolean {
  if (user.uid === 0) return want !== X || st.isDirectory() || (st.mode & 0o111) !== 0
  const bits = st.uid === user.uid ? (st.mode >> 6) & 7 : user.groups.includes(st.gid) ? (st.mode >> 3) & 7 : st.mode & 7
  return (bits & want) !== 0
}

function statOrUndefined(p: string): fs.Stats | undefined {
  try {
    return fs.statSync(p)
  } catch {
    return undefined
  }
}

const modeText = (st: fs.Stats): string => (st.mode & 0o7777).toString(8).padStart(4, '0')
const who = (st: fs.Stats): string => `owner ${st.uid}, group ${st.gid}, mode ${modeText(st)}`

/** Checks one file as `user`; `write` also asks whether proxywrite could update (or create) it. */
export function checkFileAccess(file: {path: string; role: FileAccess['role']}, user: UserIds, write: boolean): FileAccess {
  const absolute = path.resolve(file.path)
  const result: FileAccess = {path: absolute, role: file.role, exists: false, readable: false, ...(write ? {writable: false} : {})}
  // Every directory above the file must be searchable (x) by the user.
  const parts = absolute.split('/').filter(Boolean)
  for (let i = 0; i < parts.length; i++) {
    const dir = '/' + parts.slice(0, i).join('/')
    const st = statOrUndefined(dir)
    if (st === undefined) break // reported below as a missing file
    if (!allows(st, user, X)) {
      result.problem = {
        code: 'dir-not-traversable',
        message: `${user.name} cannot enter ${dir} (${who(st)}), so it cannot reach ${absolute}`,
        hint: `allow search: chmod o+x ${dir} (or give ${user.name} group access)`,
      }
      return result
    }
  }
  const st = statOrUndefined(absolute)
  const parent = path.dirname(absolute)
  if (st === undefined) {
    const parentStat = statOrUndefined(parent)
    if (write && parentStat !== undefined && allows(parentStat, user, W) && allows(parentStat, user, X)) {
      // proxywrite opens with O_CREAT: a missing file is created, as mail_owner.
      result.writable = true
      return result
    }
    result.problem = write
      ? {
          code: parentStat === undefined ? 'file-missing' : 'dir-unwritable',
          message: parentStat === undefined
            ? `${absolute} does not exist, nor does its directory ${parent}`
            : `${absolute} does not exist and ${user.name} cannot create it in ${parent} (${who(parentStat)})`,
          hint: parentStat === undefined
            ? `create ${parent} owned by ${user.name}`
            : `let ${user.name} write there (chown ${user.name} ${parent}), or create the table as ${user.name} (postmap as that user)`,
        }
      : {code: 'file-missing', message: `${absolute} does not exist`, hint: file.role === 'table' ? 'build it with postmap (or postalias)' : 'create the file'}
    return result
  }
  result.exists = true
  result.owner = st.uid
  result.group = st.gid
  result.mode = modeText(st)
  if (!st.isFile()) {
    result.problem = {code: 'not-a-file', message: `${absolute} is not a regular file`, hint: 'name the table file, not a directory'}
    return result
  }
  result.readable = allows(st, user, R)
  if (!result.readable) {
    result.problem = {
      code: 'file-unreadable',
      message: `${user.name} cannot read ${absolute} (${who(st)})`,
      hint: `chmod o+r ${absolute}, or chgrp it to a group of ${user.name} and chmod g+r`,
    }
    return result
  }
  if (write) {
    result.writable = allows(st, user, W)
    if (!result.writable) {
      result.problem = {
        code: 'file-unwritable',
        message: `${user.name} cannot write ${absolute} (${who(st)}); proxywrite updates would fail`,
        hint: `chown ${user.name} ${absolute} (Postfix creates such files 0600 ${user.name}:${user.name})`,
      }
    }
  }
  return result
}
