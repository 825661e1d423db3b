// Names and numbers exactly as Postfix spells them (mail_proto.h, dict.h, dict_proxy.h),
// so that this module can be read side by side with Postfix's source.

export const PROXY_STAT = {
  OK: 0,
  NOKEY: 1,
  RETRY: 2,
  BAD: 3,
  DENY: 4,
  CONFIG: 5,
} as const
export type ProxyStatus = (typeof PROXY_STAT)[keyof typeof PROXY_STAT]

export const PROXY_STAT_NAME: Record<number, string> = {
  0: 'OK', 1: 'NOKEY', 2: 'RETRY', 3: 'BAD', 4: 'DENY', 5: 'CONFIG',
}

export const PROXY_REQ = {
  OPEN: 'open',
  LOOKUP: 'lookup',
  UPDATE: 'update',
  DELETE: 'delete',
  SEQUENCE: 'sequence',
} as const
export type ProxyRequestName = (typeof PROXY_REQ)[keyof typeof PROXY_REQ]

export const MAIL_ATTR = {
  PROTO: 'protocol',
  REQ: 'request',
  TABLE: 'table',
  FLAGS: 'flags',
  INST_FLAGS: 'instance_flags',
  KEY: 'key',
  VALUE: 'value',
  FUNC: 'function',
  STATUS: 'status',
} as const

export const MAIL_ATTR_PROTO_PROXYMAP = 'proxymap_protocol'

export const DICT_SEQ_FUN_FIRST = 0
export const DICT_SEQ_FUN_NEXT = 1

export const DICT_FLAG = {
  NONE: 0,
  DUP_WARN: 1 << 0,
  DUP_IGNORE: 1 << 1,
  TRY0NULL: 1 << 2,
  TRY1NULL: 1 << 3,
  FIXED: 1 << 4,
  PATTERN: 1 << 5,
  LOCK: 1 << 6,
  DUP_REPLACE: 1 << 7,
  SYNC_UPDATE: 1 << 8,
  DEBUG: 1 << 9,
  NO_REGSUB: 1 << 11,
  NO_PROXY: 1 << 12,
  NO_UNAUTH: 1 << 13,
  FOLD_FIX: 1 << 14,
  FOLD_MUL: 1 << 15,
  OPEN_LOCK: 1 << 16,
  BULK_UPDATE: 1 << 17,
  MULTI_WRITER: 1 << 18,
  UTF8_REQUEST: 1 << 19,
  UTF8_ACTIVE: 1 << 20,
  SRC_RHS_IS_FILE: 1 << 21,
} as const

export const DICT_FLAG_FOLD_ANY = DICT_FLAG.FOLD_FIX | DICT_FLAG.FOLD_MUL
export const DICT_FLAG_PARANOID = DICT_FLAG.NO_REGSUB | DICT_FLAG.NO_PROXY | DICT_FLAG.NO_UNAUTH
/** Flags set by a table implementation itself; the only bits a proxy client keeps from an open reply. */
export const DICT_FLAG_IMPL_MASK = DICT_FLAG.FIXED | DICT_FLAG.PATTERN | DICT_FLAG.MULTI_WRITER
/** Requestor flags that may change between requests on one open table. */
export const DICT_FLAG_RQST_MASK =
  DICT_FLAG_FOLD_ANY | DICT_FLAG.LOCK | DICT_FLAG.DUP_REPLACE | DICT_FLAG.DUP_WARN |
  DICT_FLAG.DUP_IGNORE | DICT_FLAG.SYNC_UPDATE | DICT_FLAG_PARANOID | DICT_FLAG.UTF8_REQUEST
/** Flags that select a distinct open instance of a table (Postfix: ~(IMPL|RQST)). */
export const DICT_FLAG_INST_MASK = ~(DICT_FLAG_IMPL_MASK | DICT_FLAG_RQST_MASK) >>> 0
