// Approval lists of the proxymap (proxy_read_maps) and proxywrite (proxy_write_maps) services.
export {
  approvedTables,
  type ApprovalParameter,
  type ApprovedTables,
} from './approval-list.js'
export { AccessPolicy, type ProxyService } from './policy.js'
