// The fuzz campaign: many connections to a proxymap server's sockets, several at a time,
// each pipelining a batch of inputs (test/fuzz/mutator.ts) in writes cut at random points,
// then half-closing, waiting, or vanishing. Every reply is decoded and held to what the
// oracle (test/fuzz/oracle.ts) says that request must get; a connection that is neither
// answered completely nor closed by the server within a bound is a hang. Between batches a
// caller-supplied check runs (the server is alive, a valid lookup on a fresh connection
// answers correctly, its log is clean).

import net from 'node:net'
import {AttrDecoder, type AttrList, type Dialect} from '../../src/lib/protocol/index.js'
import {FuzzInput, FuzzTables, REQUEST_NAMES, Rng, baseRequest, frameRaw, makeInput} from './mutator.js'
import {ConnectionOracle, ExpectedReply, replyDefect} from './oracle.js'

export type Service = 'proxymap' | 'proxywrite'

/** A request whose reply is known byte for byte (measured against real Postfix). */
export interface Probe {
  service: Service
  dialect: Dialect
  request: Buffer
  reply: string
}

export interface CampaignOptions {
  seed: number
  /** Inputs to send (the campaign stops at the first batch that reaches it). */
  count: number
  sockets: Record<Service, string>
  dialects: readonly Dialect[]
  tables: FuzzTables
  probes: readonly Probe[]
  /** Connections in flight at once. */
  concurrency?: number
  /** Connections between two checks. */
  batchConnections?: number
  /** Most inputs pipelined on one connection. */
  maxInputsPerConnection?: number
  /** How long the server has to answer everything or close, once the last byte is written. */
  boundMs?: number
  /** Allow strings at and above the decoder's 1 MiB limit. */
  allowHuge?: boolean
  /** Run first: every request template truncated at every offset. */
  truncationSweep?: boolean
  /** Runs after every batch; throw to stop the campaign (stats.stoppedBy says why). */
  afterBatch?: (batch: number, stats: CampaignStats) => Promise<void>
  /** Stop at the first defect (a test) or count them all (a comparison with Postfix). */
  stopAtFirstDefect?: boolean
  /** Run only these connections of the seed (to reproduce a reported defect). */
  only?: readonly number[]
}

export interface CampaignStats {
  seed: number
  inputs: number
  connections: number
  replies: number
  /** Replies by status (0 OK ... 5 CONFIG). */
  statuses: number[]
  /** Connections the server ended where the oracle said it would (malformed request, framing limit, a panicking open). */
  predictedCloses: number
  /** Connections that ended with a request unfinished and the server closed (half-close or ipc_timeout). */
  unfinishedCloses: number
  /** Connections the client abandoned right after writing. */
  abandoned: number
  hangs: number
  /** Replies that are not what the request must get, or bytes that are no reply. */
  malformed: number
  /** Connections the server ended with replies owed. */
  lostReplies: number
  /** Connections the server did not accept. */
  refusedConnections: number
  defects: string[]
  /** Why the campaign stopped early: the check after a batch failed. */
  stoppedBy?: string
  /** Defects by kind (numbers and quoted text generalised), for a summary. */
  defectKinds: Map<string, number>
  elapsedMs: number
}

type Ending = 'half-close' | 'wait' | 'abandon'

export interface ConnectionPlan {
  index: number
  service: Service
  inputs: FuzzInput[]
  oracle: ConnectionOracle
  /** Write boundaries: byte counts of consecutive writes. */
  writes: number[]
  ending: Ending
}

const MAX_DEFECTS_KEPT = 20
const REPLY_LIMITS = {maxStringBytes: 16 << 20, maxMessageBytes: 64 << 20, maxAttributes: 64}
const ANNOUNCEMENT = 'protocol\0proxymap_protocol\0\0'

function cutWrites(rng: Rng, total: number): number[] {
  if (total === 0) return []
  const style = rng.below(10)
  if (style < 5) return [total]
  const writes: number[] = []
  let left = total
  // A few one-byte writes at the start, then random pieces.
  const bytewise = style === 9 ? Math.min(left, 1 + rng.below(64)) : 0
  for (let i = 0; i < bytewise; i++) writes.push(1)
  left -= bytewise
  while (left > 0) {
    const n = Math.min(left, 1 + rng.below(style < 8 ? 512 : 8192))
    writes.push(n)
    left -= n
  }
  return writes
}

function withProbe(oracle: ConnectionOracle, inputs: FuzzInput[], probe: Probe): void {
  inputs.push({bytes: probe.request, label: `${probe.dialect} probe`, pristine: true})
  oracle.push(probe.request, {exact: probe.reply})
}

/** Connection `index` of the campaign with `seed`: the same bytes every time. */
export function planConnection(seed: number, index: number, options: CampaignOptions): ConnectionPlan {
  const rng = new Rng(seed, index + 1)
  const service: Service = rng.chance(0.7) ? 'proxymap' : 'proxywrite'
  const oracle = new ConnectionOracle()
  const inputs: FuzzInput[] = []
  const max = options.maxInputsPerConnection ?? 64
  const want = rng.chance(0.2) ? 1 + rng.below(4) : 1 + rng.below(max)
  const probes = options.probes.filter(p => p.service === service && options.dialects.includes(p.dialect))
  const inputOptions = {dialects: options.dialects, tables: options.tables, allowHuge: options.allowHuge ?? true}
  // Nothing after a point where the server ends the connection: it would not be read.
  while (inputs.length < want && oracle.closes === 'none' && !oracle.expected.some(e => e.mayCloseInstead)) {
    if (!oracle.midMessage && probes.length > 0 && rng.chance(0.08)) {
      withProbe(oracle, inputs, rng.pick(probes))
      continue
    }
    const input = makeInput(rng, inputOptions)
    inputs.push(input)
    oracle.push(input.bytes, input.pristine && !oracle.midMessage ? {notBad: true} : {})
  }
  const total = inputs.reduce((n, i) => n + i.bytes.length, 0)
  const e = rng.below(100)
  // Waiting out ipc_timeout on an unfinished request is slow: only a few connections do.
  const ending: Ending = e < 5 ? 'abandon' : oracle.midMessage ? (e < 8 ? 'wait' : 'half-close') : e < 60 ? 'half-close' : 'wait'
  // A client still writing when the server ends the connection gets EPIPE, and Node drops
  // what it had not read yet: where the server will end it, the bytes go in one write.
  const ends = oracle.closes !== 'none' || oracle.expected.some(x => x.mayCloseInstead)
  const writes = cutWrites(rng, total)
  return {index, service, inputs, oracle, writes: ends ? [total] : writes, ending}
}

/** The truncation sweep: each template cut at every offset after a probe, on its own connection. */
function* truncationPlans(options: CampaignOptions, firstIndex: number): Generator<ConnectionPlan> {
  const rng = new Rng(options.seed, 0)
  let index = firstIndex
  for (const dialect of options.dialects) {
    for (const request of REQUEST_NAMES) {
      const template = frameRaw(baseRequest(rng, dialect, request, options.tables).attrs)
      const service: Service = request === 'update' || request === 'delete' ? 'proxywrite' : 'proxymap'
      const probes = options.probes.filter(p => p.service === service && options.dialects.includes(p.dialect))
      for (let cut = 1; cut < template.length; cut++) {
        const oracle = new ConnectionOracle()
        const inputs: FuzzInput[] = []
        if (probes.length > 0) withProbe(oracle, inputs, probes[cut % probes.length]!)
        const bytes = template.subarray(0, cut)
        inputs.push({bytes, label: `${dialect} ${request} truncated at ${cut}`, pristine: false})
        oracle.push(bytes)
        // Most half-close; some wait for ipc_timeout to end it.
        const ending: Ending = cut % 32 === 0 ? 'wait' : 'half-close'
        const total = inputs.reduce((n, i) => n + i.bytes.length, 0)
        yield {index: index++, service, inputs, oracle, writes: [total], ending}
      }
    }
  }
}

interface ConnectionResult {
  replies: AttrList[]
  closedByServer: boolean
  /** A write failed (EPIPE, ECONNRESET): the server had ended the connection; Node drops unread replies. */
  writeFailed: boolean
  hung: boolean
  defects: string[]
}

/** Runs one planned connection to its end (answered, closed by the server, or the bound). */
export function runConnection(socketPath: string, plan: ConnectionPlan, boundMs: number): Promise<ConnectionResult> {
  const payload = Buffer.concat(plan.inputs.map(i => i.bytes))
  const {oracle} = plan
  return new Promise(resolve => {
    const decoder = new AttrDecoder(REPLY_LIMITS)
    const replies: AttrList[] = []
    const defects: string[] = []
    let announced = false
    let finished = false
    let bound: NodeJS.Timeout | undefined
    let writeFailed = false
    const socket = net.createConnection({path: socketPath, allowHalfOpen: true})
    const finish = (closedByServer: boolean, hung = false): void => {
      if (finished) return
      finished = true
      clearTimeout(bound)
      socket.destroy()
      if (decoder.midMessage && closedByServer) defects.push(`an unfinished reply (${decoder.bufferedBytes} bytes) before the end of the connection`)
      resolve({replies, closedByServer, hung, defects, writeFailed})
    }
    const complete = (): boolean =>
      plan.ending === 'wait' && oracle.closes === 'none' && !oracle.midMessage && replies.length >= oracle.expected.length
    socket.on('data', chunk => {
      let messages: AttrList[]
      try {
        messages = decoder.push(chunk)
      } catch (err) {
        defects.push(`undecodable reply bytes: ${(err as Error).message}`)
        finish(false)
        return
      }
      for (const m of messages) {
        if (!announced) {
          announced = true
          const got = m.map(([n, v]) => `${n}\0${v}\0`).join('') + '\0'
          if (got !== ANNOUNCEMENT) defects.push(`announcement ${JSON.stringify(got)}`)
          continue
        }
        replies.push(m)
      }
      if (complete()) finish(false)
    })
    const ended = (): void => {
      if (!announced && !writeFailed) defects.push('closed before the announcement')
      finish(true)
    }
    socket.on('end', ended)
    socket.on('close', ended)
    // ECONNRESET/EPIPE: the server ended the connection while we wrote.
    let connected = false
    socket.on('error', err => {
      if (!connected) defects.push(`cannot connect: ${(err as NodeJS.ErrnoException).code ?? err.message}`)
      else writeFailed = true
      finish(connected)
    })
    socket.once('connect', () => {
      connected = true
      let offset = 0
      for (const n of plan.writes) {
        socket.write(payload.subarray(offset, offset + n))
        offset += n
      }
      if (plan.ending === 'abandon') {
        finish(false)
        return
      }
      const armBound = (): void => {
        if (finished) return
        if (complete()) return finish(false)
        bound = setTimeout(() => finish(false, true), boundMs)
      }
      if (plan.ending === 'half-close') socket.end(armBound)
      else if (payload.length > 0) socket.write(Buffer.alloc(0), armBound)
      else armBound()
    })
  })
}

/** Holds one connection's outcome to the oracle; returns its defects (and counts into stats). */
function judge(plan: ConnectionPlan, result: ConnectionResult, stats: CampaignStats): string[] {
  const {oracle} = plan
  const defects = [...result.defects]
  const expected = oracle.expected
  for (let i = 0; i < result.replies.length; i++) {
    const reply = result.replies[i]!
    const status = Number(reply[0]?.[1])
    if (reply[0]?.[0] === 'status' && status >= 0 && status <= 5) stats.statuses[status]!++
    const want: ExpectedReply | undefined = expected[i]
    const defect = want ? replyDefect(reply, want) : 'a reply to no request'
    if (defect) defects.push(`reply ${i}: ${defect}`)
  }
  stats.replies += result.replies.length
  const owed = expected.length - result.replies.length
  if (plan.ending === 'abandon') stats.abandoned++
  else if (result.hung) {
    stats.hangs++
    defects.push(`no end within the bound: ${result.replies.length} of ${expected.length} replies${oracle.closes !== 'none' ? `, the server should have closed (${oracle.closes})` : ''}${oracle.midMessage ? ', a request unfinished' : ''}`)
  } else if (result.closedByServer) {
    // Every reply owed before the close arrives (Postfix flushes each before reading on).
    if (owed > 0) {
      const closedInsteadOfReply = expected[result.replies.length]!.mayCloseInstead === true
      // Where the server was to end the connection anyway, a failed write hides its last replies.
      const unreadable = result.writeFailed && (oracle.closes !== 'none' || expected.some(x => x.mayCloseInstead))
      if (!closedInsteadOfReply && !unreadable) {
        stats.lostReplies++
        defects.push(`closed with ${owed} of ${expected.length} replies owed`)
      } else stats.predictedCloses++
    } else if (oracle.closes !== 'none') stats.predictedCloses++
    else if (oracle.midMessage) stats.unfinishedCloses++
  }
  const refused = defects.some(d => d.startsWith('cannot connect'))
  if (refused) stats.refusedConnections++
  stats.malformed += defects.filter(d => !/^(no end|closed with|cannot connect)/.test(d)).length
  return defects
}

function describe(plan: ConnectionPlan, seed: number, defects: string[]): string {
  const labels = plan.inputs.map(i => i.label)
  const shown = labels.length > 6 ? [...labels.slice(0, 3), `... ${labels.length - 6} more ...`, ...labels.slice(-3)] : labels
  const payload = Buffer.concat(plan.inputs.map(i => i.bytes))
  return `seed ${seed} connection ${plan.index} (${plan.service}, ${plan.ending}, ${plan.inputs.length} inputs, ${payload.length} bytes: ${shown.join('; ')}): ${defects.slice(0, 3).join('; ')}` +
    `\n  first bytes: ${JSON.stringify(payload.subarray(0, 300).toString('latin1'))}`
}

export function emptyStats(seed: number): CampaignStats {
  return {
    seed, inputs: 0, connections: 0, replies: 0, statuses: [0, 0, 0, 0, 0, 0], predictedCloses: 0,
    unfinishedCloses: 0, abandoned: 0, hangs: 0, malformed: 0, lostReplies: 0, refusedConnections: 0, defects: [], defectKinds: new Map(), elapsedMs: 0,
  }
}

/** Runs the campaign; resolves with its figures (defects included, also when it stopped at one). */
export async function runCampaign(options: CampaignOptions): Promise<CampaignStats> {
  const stats = emptyStats(options.seed)
  const started = performance.now()
  const concurrency = options.concurrency ?? 8
  const batchConnections = options.batchConnections ?? 64
  const boundMs = options.boundMs ?? 10_000
  const sweep = options.truncationSweep && !options.only ? truncationPlans(options, 1_000_000_000) : undefined
  let nextIndex = 0
  const only = options.only ? [...options.only] : undefined
  const nextPlan = (): ConnectionPlan | undefined => {
    if (only) {
      const index = only.shift()
      return index === undefined ? undefined : planConnection(options.seed, index, options)
    }
    const fromSweep = sweep?.next()
    if (fromSweep && !fromSweep.done) return fromSweep.value
    if (stats.inputs >= options.count) return undefined
    return planConnection(options.seed, nextIndex++, options)
  }
  // The check runs every batchConnections connections while the others go on (a barrier
  // would make every batch wait for its slowest connection, an ipc_timeout).
  let batch = 0
  let stop = false
  let sinceCheck = 0
  let checking: Promise<void> = Promise.resolve()
  let checkError: unknown
  const check = (): Promise<void> => {
    checking = checking.then(async () => {
      if (checkError !== undefined) return
      stats.elapsedMs = performance.now() - started
      try {
        await options.afterBatch?.(batch++, stats)
      } catch (err) {
        checkError = err
        stop = true
      }
    })
    return checking
  }
  const worker = async (): Promise<void> => {
    while (!stop) {
      const plan = nextPlan()
      if (!plan) return
      stats.inputs += plan.inputs.length
      stats.connections++
      const result = await runConnection(options.sockets[plan.service], plan, boundMs)
      const defects = judge(plan, result, stats)
      for (const d of defects) {
        const kind = d.replace(/"(?:[^"\\]|\\.)*"/g, '"..."').replace(/\d+/g, 'N').slice(0, 160)
        stats.defectKinds.set(kind, (stats.defectKinds.get(kind) ?? 0) + 1)
      }
      if (defects.length > 0) {
        if (stats.defects.length < MAX_DEFECTS_KEPT) stats.defects.push(describe(plan, options.seed, defects))
        if (options.stopAtFirstDefect) stop = true
      }
      if (++sinceCheck >= batchConnections) {
        sinceCheck = 0
        await check()
      }
    }
  }
  await Promise.all(Array.from({length: concurrency}, worker))
  await check()
  if (checkError !== undefined) stats.stoppedBy = checkError instanceof Error ? checkError.message : String(checkError)
  stats.elapsedMs = performance.now() - started
  return stats
}

/** The probe alone, on a fresh connection: its reply, or why there is none. */
export async function probeOnce(socketPath: string, probe: Probe, boundMs = 5000): Promise<string | undefined> {
  const oracle = new ConnectionOracle()
  const inputs: FuzzInput[] = []
  withProbe(oracle, inputs, probe)
  const plan: ConnectionPlan = {index: -1, service: probe.service, inputs, oracle, writes: [probe.request.length], ending: 'wait'}
  const result = await runConnection(socketPath, plan, boundMs)
  const stats = emptyStats(0)
  const defects = judge(plan, result, stats)
  if (result.replies.length === 0 && defects.length === 0) return 'no reply'
  return defects.length > 0 ? defects.join('; ') : undefined
}
