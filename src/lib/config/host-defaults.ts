// Defaults that Postfix computes from the host rather than compiling in: myhostname, mydomain,
// mynetworks. The rules follow src/global/mail_params.c (check_myhostname, check_mydomainname)
// and src/global/mynetworks.c + own_inet_addr.c. Simplifications, all documented below:
// interface names come from os.networkInterfaces() (IPv4 first, then IPv6, in interface order,
// like Linux getifaddrs()), and host names in inet_interfaces are not resolved.

import os from 'node:os'

// Postfix's DEF_MYDOMAIN.
const FALLBACK_DOMAIN = 'localdomain'

/** myhostname: the host name; when it has no dot, Postfix appends main.cf's mydomain, else "localdomain". */
export function computeMyHostname(mydomainFromMainCf: string | undefined, hostname = os.hostname()): string {
  if (hostname.includes('.')) return hostname
  return `${hostname}.${mydomainFromMainCf ?? FALLBACK_DOMAIN}`
}

/** mydomain: everything after the first dot of $myhostname, or "localdomain". */
export function computeMyDomain(myhostname: string): string {
  const dot = myhostname.indexOf('.')
  return dot < 0 ? FALLBACK_DOMAIN : myhostname.slice(dot + 1)
}

export interface LocalInterfaceAddress {
  family: 'IPv4' | 'IPv6'
  address: string
  netmask: string
}

export interface MyNetworksSettings {
  /** Expanded mynetworks_style: class, subnet or host. */
  style: string
  /** Expanded inet_interfaces: all, loopback-only, or a list of addresses. */
  interfaces: string
  /** Expanded inet_protocols: all, ipv4, ipv6 or a list of those. */
  protocols: string
}

/**
 * mynetworks as Postfix computes it: one "net/len" per address Postfix listens on, masked
 * according to mynetworks_style, duplicates removed, each followed by a space (Postfix leaves
 * that trailing space in the value). Host names in inet_interfaces are skipped (Postfix would
 * resolve them). Throws for an unknown style, like Postfix's fatal error.
 */
export function computeMyNetworks(settings: MyNetworksSettings, localAddresses = listLocalAddresses()): string {
  const style = settings.style.trim()
  if (style !== 'class' && style !== 'subnet' && style !== 'host') {
    throw new Error(`bad mynetworks_style value: ${settings.style}; specify exactly one value`)
  }
  const families = enabledFamilies(settings.protocols)
  if (families.size === 0) return ''
  const networks: string[] = []
  for (const entry of selectListeningAddresses(settings.interfaces, localAddresses)) {
    if (!families.has(entry.family)) continue
    networks.push(entry.family === 'IPv4' ? ipv4Network(entry, style) : ipv6Network(entry, style))
  }
  return [...new Set(networks)].map((network) => `${network} `).join('')
}

/** The host's interface addresses in the order Linux getifaddrs() reports them: IPv4 first. */
export function listLocalAddresses(): LocalInterfaceAddress[] {
  const all = Object.values(os.networkInterfaces()).flatMap((entries) => entries ?? [])
  const pick = (family: 'IPv4' | 'IPv6') =>
    all.filter((entry) => entry.family === family).map((entry) => ({ family, address: entry.address, netmask: entry.netmask }))
  return [...pick('IPv4'), ...pick('IPv6')]
}

function enabledFamilies(protocols: string): Set<'IPv4' | 'IPv6'> {
  const families = new Set<'IPv4' | 'IPv6'>()
  for (const word of protocols.split(/[\s,]+/).filter(Boolean)) {
    if (word === 'all' || word === 'ipv4') families.add('IPv4')
    if (word === 'all' || word === 'ipv6') families.add('IPv6')
  }
  return families
}

function selectListeningAddresses(interfaces: string, localAddresses: LocalInterfaceAddress[]): LocalInterfaceAddress[] {
  const setting = interfaces.trim()
  if (setting === 'all') return localAddresses
  if (setting === 'loopback-only') return localAddresses.filter(isLoopback)
  // Explicit addresses, in the order listed; Postfix takes each netmask from the interface.
  const selected: LocalInterfaceAddress[] = []
  for (const word of setting.split(/[ \t,]+/).filter(Boolean)) {
    const address = word.replace(/^\[(.*)\]$/, '$1')
    const local = localAddresses.find((entry) => entry.address === address)
    if (local && !selected.includes(local)) selected.push(local)
  }
  return selected
}

function isLoopback(entry: LocalInterfaceAddress): boolean {
  return entry.family === 'IPv4' ? entry.address.startsWith('127.') : entry.address === '::1'
}

function ipv4Network(entry: LocalInterfaceAddress, style: string): string {
  const address = ipv4ToNumber(entry.address)
  let prefix: number
  if (style === 'host') {
    prefix = 32
  } else if (style === 'subnet') {
    prefix = countLeadingOnes(ipv4ToBytes(entry.netmask))
  } else if (address >>> 31 === 0) {
    prefix = 8 // class A
  } else if (address >>> 30 === 0b10) {
    prefix = 16 // class B
  } else if (address >>> 29 === 0b110) {
    prefix = 24 // class C
  } else if (address >>> 28 === 0b1110) {
    prefix = 4 // class D, as Postfix's IN_CLASSD_NET
  } else {
    throw new Error(`mynetworks: unknown address class: ${entry.address}`)
  }
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0
  const network = (address & mask) >>> 0
  return `${[24, 16, 8, 0].map((shift) => (network >>> shift) & 0xff).join('.')}/${prefix}`
}

// IPv6 has no address classes: Postfix uses the subnet mask for both "class" and "subnet".
function ipv6Network(entry: LocalInterfaceAddress, style: string): string {
  const prefix = style === 'host' ? 128 : countLeadingOnes(ipv6ToBytes(entry.netmask))
  const bytes = ipv6ToBytes(entry.address)
  for (let bit = prefix; bit < 128; bit++) bytes[bit >> 3] &= ~(0x80 >> (bit & 7))
  return `[${formatIpv6(bytes)}]/${prefix}`
}

// Counts mask bits the way mynetworks.c does: whole 0xff bytes, then the ones of the first other byte.
function countLeadingOnes(bytes: number[]): number {
  let count = 0
  for (const byte of bytes) {
    if (byte === 0xff) {
      count += 8
      continue
    }
    for (let value = byte; value & 0x80; value = (value << 1) & 0xff) count++
    break
  }
  return count
}

function ipv4ToBytes(text: string): number[] {
  return text.split('.').map(Number)
}

function ipv4ToNumber(text: string): number {
  return ipv4ToBytes(text).reduce((sum, byte) => sum * 256 + byte, 0)
}

function ipv6ToBytes(text: string): number[] {
  const withoutZone = text.replace(/%.*$/, '')
  const [head, tail] = withoutZone.includes('::') ? withoutZone.split('::') : [withoutZone, undefined]
  const groups = (part: string | undefined) => (part ? part.split(':') : [])
  const expandGroup = (group: string): number[] => {
    if (group.includes('.')) return ipv4ToBytes(group)
    const value = parseInt(group, 16)
    return [value >> 8, value & 0xff]
  }
  const headBytes = groups(head).flatMap(expandGroup)
  const tailBytes = groups(tail).flatMap(expandGroup)
  const zeros = new Array<number>(16 - headBytes.length - tailBytes.length).fill(0)
  return [...headBytes, ...zeros, ...tailBytes]
}

// The text form that glibc's inet_ntop() prints: the longest run (at least two) of zero
// groups becomes "::", and IPv4-compatible or IPv4-mapped addresses end in a dotted quad.
function formatIpv6(bytes: number[]): string {
  const groups = Array.from({ length: 8 }, (_, index) => (bytes[2 * index] << 8) | bytes[2 * index + 1])
  let bestStart = -1
  let bestLength = 0
  for (let start = 0; start < 8; ) {
    if (groups[start] !== 0) {
      start++
      continue
    }
    let end = start
    while (end < 8 && groups[end] === 0) end++
    if (end - start > bestLength) {
      bestStart = start
      bestLength = end - start
    }
    start = end
  }
  if (bestLength < 2) bestStart = -1
  let text = ''
  for (let index = 0; index < 8; index++) {
    if (index === bestStart) {
      text += '::'
      index += bestLength - 1
      continue
    }
    if (text !== '' && !text.endsWith(':')) text += ':'
    if (index === 6 && bestStart === 0 && (bestLength === 6 || (bestLength === 5 && groups[5] === 0xffff))) {
      text += bytes.slice(12).join('.')
      break
    }
    text += groups[index].toString(16)
  }
  return text
}
