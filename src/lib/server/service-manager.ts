// systemd's readiness protocol (sd_notify(3)): a datagram of "KEY=value" lines to the socket in
// $NOTIFY_SOCKET. A Type=notify unit is "started" only once READY=1 arrives, i.e. after the
// service sockets exist; RELOADING=1/STOPPING=1 let `systemctl` show what the service is doing.

import {dgramConnect, dgramSend, nativeAvailable} from '../native/index.js'

export interface ServiceManager {
  ready(status: string): void
  reloading(): void
  stopping(): void
}

const NONE: ServiceManager = {ready: () => undefined, reloading: () => undefined, stopping: () => undefined}

/**
 * The service manager that started this process, if any. Read it before the environment is
 * cleaned (NOTIFY_SOCKET is not in import_environment), and before any privilege drop:
 * the socket is connected now.
 */
export function serviceManagerFromEnvironment(env: NodeJS.ProcessEnv = process.env,
  warn: (text: string) => void = () => undefined): ServiceManager {
  const address = env.NOTIFY_SOCKET
  if (!address) return NONE
  if (!nativeAvailable()) {
    warn('NOTIFY_SOCKET is set but the native addon is not available: cannot tell systemd that the service is ready')
    return NONE
  }
  let fd: number
  try {
    fd = dgramConnect(address.startsWith('@') ? `\0${address.slice(1)}` : address)
  } catch (e) {
    warn(`cannot connect to systemd's notification socket ${address}: ${(e as Error).message}`)
    return NONE
  }
  const send = (text: string): void => {
    try { dgramSend(fd, Buffer.from(text, 'utf8')) } catch (e) { warn(`systemd notification "${text.split('\n')[0]}": ${(e as Error).message}`) }
  }
  return {
    ready: status => send(`READY=1\nSTATUS=${status}\nMAINPID=${process.pid}`),
    reloading: () => send('RELOADING=1\nSTATUS=reloading the configuration'),
    stopping: () => send('STOPPING=1\nSTATUS=stopping'),
  }
}
