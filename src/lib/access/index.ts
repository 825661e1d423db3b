// Approval lists of the proxymap (proxy_read_maps) and proxywrite (proxy_write_maps) services.
export {
  ApprovalWalk,
  RESTRICTION_CLASSES,
  approvedTables,
  readIncludeFile,
  type ApprovalParameter,
  type ApprovedTables,
  type IncludeReader,
} from './approval-list.js'
export { AccessPolicy, RestrictionClassError, restrictionClassNames, serviceApprovals, type ProxyService } from './policy.js'
