// Built-in defaults of the Postfix releases whose rules this project follows (see
// postfix-version.ts), copied from `postconf -d` of the real packages (not guessed): Debian
// 12's 3.7.11, Debian trixie's 3.10.13 and Debian sid's 3.11.7. Each table holds every
// parameter this project reads, plus every parameter that the defaults of proxy_read_maps and
// proxy_write_maps (and, for 3.11, smtpd_restriction_classes) refer to, directly or
// indirectly, so that expanding those lists gives what that release's `postconf -x` prints.
// (alias_maps really is "hash:/etc/aliases, nis:mail.aliases" in 3.7; Debian's installer sets
// it in main.cf.)
//
// Not in these tables:
// - myhostname, mydomain and mynetworks: Postfix computes them from the host; see
//   host-defaults.ts.
// - config_directory's effective default: the directory main.cf was read from (Postfix sets
//   it before reading main.cf); '/etc/postfix' below is only the compiled-in value.
// - virtual_maps and tlsproxy_client_policy: referred to by defaults, but not built-in
//   parameters of 3.7, so they are empty unless main.cf sets them.

export const POSTFIX_3_7_DEFAULTS: Readonly<Record<string, string>> = {
  queue_directory: '/var/spool/postfix',
  config_directory: '/etc/postfix',
  daemon_directory: '/usr/lib/postfix/sbin',
  data_directory: '/var/lib/postfix',
  meta_directory: '/etc/postfix',
  shlib_directory: '/usr/lib/postfix',
  command_directory: '/usr/sbin',
  process_id_directory: 'pid',
  mail_owner: 'postfix',
  setgid_group: 'postdrop',
  proxymap_service_name: 'proxymap',
  proxywrite_service_name: 'proxywrite',
  postlog_service_name: 'postlog',
  ipc_timeout: '3600s',
  ipc_idle: '5s',
  ipc_ttl: '1000s',
  max_idle: '100s',
  max_use: '100',
  daemon_timeout: '18000s',
  syslog_name: '${multi_instance_name?{$multi_instance_name}:{postfix}}',
  syslog_facility: 'mail',
  maillog_file: '',
  maillog_file_prefixes: '/var, /dev/stdout',
  smtputf8_enable: '${{$compatibility_level} <level {1} ? {no} : {yes}}',
  compatibility_level: '0',
  default_database_type: 'hash',
  lmdb_map_size: '16777216',
  berkeley_db_create_buffer_size: '16777216',
  berkeley_db_read_buffer_size: '131072',
  myorigin: '$myhostname',
  mynetworks_style: '${{$compatibility_level} <level {2} ? {subnet} : {host}}',
  inet_interfaces: 'all',
  inet_protocols: 'all',
  multi_instance_name: '',
  proxy_read_maps: '$local_recipient_maps $mydestination $virtual_alias_maps $virtual_alias_domains $virtual_mailbox_maps $virtual_mailbox_domains $relay_recipient_maps $relay_domains $canonical_maps $sender_canonical_maps $recipient_canonical_maps $relocated_maps $transport_maps $mynetworks $smtpd_sender_login_maps $sender_bcc_maps $recipient_bcc_maps $smtp_generic_maps $lmtp_generic_maps $alias_maps $smtpd_client_restrictions $smtpd_helo_restrictions $smtpd_sender_restrictions $smtpd_relay_restrictions $smtpd_recipient_restrictions $address_verify_sender_dependent_default_transport_maps $address_verify_sender_dependent_relayhost_maps $address_verify_transport_maps $fallback_transport_maps $lmtp_discard_lhlo_keyword_address_maps $lmtp_pix_workaround_maps $lmtp_sasl_password_maps $lmtp_tls_policy_maps $mailbox_command_maps $mailbox_transport_maps $postscreen_discard_ehlo_keyword_address_maps $rbl_reply_maps $sender_dependent_default_transport_maps $sender_dependent_relayhost_maps $smtp_discard_ehlo_keyword_address_maps $smtp_pix_workaround_maps $smtp_sasl_password_maps $smtp_tls_policy_maps $smtpd_discard_ehlo_keyword_address_maps $smtpd_milter_maps $virtual_gid_maps $virtual_uid_maps $local_login_sender_maps $postscreen_reject_footer_maps $smtpd_reject_footer_maps $tls_server_sni_maps $tlsproxy_client_policy_maps $default_delivery_status_filter $lmtp_delivery_status_filter $lmtp_dns_reply_filter $lmtp_reply_filter $local_delivery_status_filter $pipe_delivery_status_filter $postscreen_command_filter $smtp_delivery_status_filter $smtp_dns_reply_filter $smtp_reply_filter $smtpd_command_filter $smtpd_dns_reply_filter $virtual_delivery_status_filter $body_checks $header_checks $lmtp_body_checks $lmtp_header_checks $lmtp_mime_header_checks $lmtp_nested_header_checks $milter_header_checks $mime_header_checks $nested_header_checks $smtp_body_checks $smtp_header_checks $smtp_mime_header_checks $smtp_nested_header_checks',
  proxy_write_maps: '$smtp_sasl_auth_cache_name $lmtp_sasl_auth_cache_name $address_verify_map $postscreen_cache_map',
  local_recipient_maps: 'proxy:unix:passwd.byname $alias_maps',
  mydestination: '$myhostname, localhost.$mydomain, localhost',
  virtual_alias_maps: '$virtual_maps',
  virtual_alias_domains: '$virtual_alias_maps',
  virtual_mailbox_maps: '',
  virtual_mailbox_domains: '$virtual_mailbox_maps',
  relay_recipient_maps: '',
  relay_domains: '${{$compatibility_level} <level {2} ? {$mydestination} : {}}',
  canonical_maps: '',
  sender_canonical_maps: '',
  recipient_canonical_maps: '',
  relocated_maps: '',
  transport_maps: '',
  smtpd_sender_login_maps: '',
  sender_bcc_maps: '',
  recipient_bcc_maps: '',
  smtp_generic_maps: '',
  lmtp_generic_maps: '',
  alias_maps: 'hash:/etc/aliases, nis:mail.aliases',
  smtpd_client_restrictions: '',
  smtpd_helo_restrictions: '',
  smtpd_sender_restrictions: '',
  smtpd_relay_restrictions: '${{$compatibility_level} <level {1} ? {} : {permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination}}',
  smtpd_recipient_restrictions: '',
  address_verify_sender_dependent_default_transport_maps: '$sender_dependent_default_transport_maps',
  address_verify_sender_dependent_relayhost_maps: '$sender_dependent_relayhost_maps',
  address_verify_transport_maps: '$transport_maps',
  fallback_transport_maps: '',
  lmtp_discard_lhlo_keyword_address_maps: '',
  lmtp_pix_workaround_maps: '',
  lmtp_sasl_password_maps: '',
  lmtp_tls_policy_maps: '',
  mailbox_command_maps: '',
  mailbox_transport_maps: '',
  postscreen_discard_ehlo_keyword_address_maps: '$smtpd_discard_ehlo_keyword_address_maps',
  rbl_reply_maps: '',
  sender_dependent_default_transport_maps: '',
  sender_dependent_relayhost_maps: '',
  smtp_discard_ehlo_keyword_address_maps: '',
  smtp_pix_workaround_maps: '',
  smtp_sasl_password_maps: '',
  smtp_tls_policy_maps: '',
  smtpd_discard_ehlo_keyword_address_maps: '',
  smtpd_milter_maps: '',
  virtual_gid_maps: '',
  virtual_uid_maps: '',
  local_login_sender_maps: 'static:*',
  postscreen_reject_footer_maps: '$smtpd_reject_footer_maps',
  smtpd_reject_footer_maps: '',
  tls_server_sni_maps: '',
  tlsproxy_client_policy_maps: '${tlsproxy_client_policy:$smtp_tls_policy_maps}',
  default_delivery_status_filter: '',
  lmtp_delivery_status_filter: '$default_delivery_status_filter',
  lmtp_dns_reply_filter: '',
  lmtp_reply_filter: '',
  local_delivery_status_filter: '$default_delivery_status_filter',
  pipe_delivery_status_filter: '$default_delivery_status_filter',
  postscreen_command_filter: '',
  smtp_delivery_status_filter: '$default_delivery_status_filter',
  smtp_dns_reply_filter: '',
  smtp_reply_filter: '',
  smtpd_command_filter: '',
  smtpd_dns_reply_filter: '',
  virtual_delivery_status_filter: '$default_delivery_status_filter',
  body_checks: '',
  header_checks: '',
  lmtp_body_checks: '',
  lmtp_header_checks: '',
  lmtp_mime_header_checks: '',
  lmtp_nested_header_checks: '',
  milter_header_checks: '',
  mime_header_checks: '$header_checks',
  nested_header_checks: '$header_checks',
  smtp_body_checks: '',
  smtp_header_checks: '',
  smtp_mime_header_checks: '',
  smtp_nested_header_checks: '',
  smtp_sasl_auth_cache_name: '',
  lmtp_sasl_auth_cache_name: '',
  address_verify_map: 'btree:$data_directory/verify_cache',
  postscreen_cache_map: 'btree:$data_directory/postscreen_cache',
}

/** The parameters whose default Postfix computes from the host (hostname, interfaces). */
export const HOST_COMPUTED_PARAMETERS: ReadonlySet<string> = new Set(['myhostname', 'mydomain', 'mynetworks'])

/**
 * The parameters of the table above that a running proxymap(8) process of Postfix 3.7 knows:
 * the global ones of mail_params_init() (src/global/mail_params.c) and proxymap's own table
 * (src/proxymap/proxymap.c main()). A Postfix daemon has defaults only for the parameters it
 * defines; any other parameter that main.cf does not set expands to empty inside it, even
 * where `postconf -x` would show its default. (For example, with
 * "proxy_read_maps = $address_verify_transport_maps" and "transport_maps = proxy:hash:/x",
 * postconf shows proxy:hash:/x, but a real 3.7.11 proxymap denies hash:/x.)
 */
export const PROXYMAP_DAEMON_PARAMETERS: ReadonlySet<string> = new Set([
  // mail_params_init(), and config_directory from mail_conf_suck()
  'config_directory', 'queue_directory', 'daemon_directory', 'data_directory', 'meta_directory',
  'shlib_directory', 'command_directory', 'process_id_directory', 'mail_owner', 'setgid_group',
  'proxymap_service_name', 'proxywrite_service_name', 'postlog_service_name', 'ipc_timeout',
  'ipc_idle', 'ipc_ttl', 'max_idle', 'max_use', 'daemon_timeout', 'syslog_name',
  'syslog_facility', 'maillog_file', 'maillog_file_prefixes', 'smtputf8_enable',
  'compatibility_level', 'default_database_type', 'lmdb_map_size',
  'berkeley_db_create_buffer_size', 'berkeley_db_read_buffer_size', 'myhostname', 'mydomain',
  'myorigin', 'mynetworks', 'mynetworks_style', 'inet_interfaces', 'inet_protocols',
  'multi_instance_name', 'mydestination', 'relay_domains', 'default_delivery_status_filter',
  // proxymap's own parameter table
  'alias_maps', 'local_recipient_maps', 'virtual_alias_maps', 'virtual_alias_domains',
  'virtual_mailbox_maps', 'virtual_mailbox_domains', 'relay_recipient_maps', 'canonical_maps',
  'sender_canonical_maps', 'recipient_canonical_maps', 'relocated_maps', 'transport_maps',
  'address_verify_map', 'smtpd_sender_login_maps', 'postscreen_cache_map', 'proxy_read_maps',
  'proxy_write_maps',
])

/**
 * Postfix 3.10.13's defaults where they differ from 3.7.11's (the approval code of proxymap
 * is the same in both; only the text of one default changed, which a proxymap process never
 * expands: tlsproxy_client_policy_maps is not one of its parameters).
 */
export const POSTFIX_3_10_DEFAULTS: Readonly<Record<string, string>> = {
  ...POSTFIX_3_7_DEFAULTS,
  tlsproxy_client_policy_maps: '${tlsproxy_client_policy?{$tlsproxy_client_policy}:{$smtp_tls_policy_maps}}',
}

/**
 * Postfix 3.11.7's defaults (Debian sid's build: cdb and lmdb replace hash and btree). Its
 * proxy_read_maps lists 25 more parameters; their defaults are here too. Left out:
 * smtp_requiretls_policy, whose default calls ${domain_to_ascii{...}}, a named function of
 * 3.11's $-expansion that this project's expander does not have; that default names no proxy:
 * table, and a proxymap process never expands it (it is not one of its parameters).
 */
export const POSTFIX_3_11_DEFAULTS: Readonly<Record<string, string>> = {
  ...POSTFIX_3_10_DEFAULTS,
  meta_directory: '/usr/share/postfix',
  default_database_type: 'cdb',
  default_cache_db_type: 'lmdb',
  alias_maps: '$default_database_type:/etc/aliases, nis:mail.aliases',
  address_verify_map: '$default_cache_db_type:$data_directory/verify_cache',
  postscreen_cache_map: '$default_cache_db_type:$data_directory/postscreen_cache',
  proxy_read_maps: `${POSTFIX_3_7_DEFAULTS.proxy_read_maps} $smtpd_reject_filter_maps $debug_peer_list $smtpd_etrn_restrictions $fast_flush_domains $authorized_flush_users $lmtp_connection_cache_destinations $local_header_rewrite_clients $masquerade_exceptions $postscreen_access_list $postscreen_allowlist_interfaces $postscreen_forbidden_commands $qmqpd_authorized_clients $authorized_mailq_users $smtp_connection_cache_destinations $smtpd_log_access_permit_actions $smtpd_forbidden_commands $smtpd_client_event_limit_exceptions $smtpd_sasl_exceptions_networks $smtpd_sasl_mechanism_filter $smtp_requiretls_policy $smtp_sasl_mechanism_filter $authorized_submit_users $smtpd_authorized_verp_clients $smtpd_authorized_xclient_hosts $smtpd_authorized_xforward_hosts`,
  smtpd_restriction_classes: '',
  smtpd_reject_filter_maps: '',
  debug_peer_list: '',
  smtpd_etrn_restrictions: '',
  fast_flush_domains: '$relay_domains',
  authorized_flush_users: 'static:anyone',
  lmtp_connection_cache_destinations: '',
  local_header_rewrite_clients: 'permit_inet_interfaces',
  masquerade_exceptions: '',
  postscreen_access_list: 'permit_mynetworks',
  postscreen_allowlist_interfaces: '${postscreen_whitelist_interfaces?{$postscreen_whitelist_interfaces}:{static:all}}',
  postscreen_forbidden_commands: '$smtpd_forbidden_commands',
  qmqpd_authorized_clients: '',
  authorized_mailq_users: 'static:anyone',
  smtp_connection_cache_destinations: '',
  smtpd_log_access_permit_actions: '',
  smtpd_forbidden_commands: 'CONNECT GET POST regexp:{{/^[^A-Z]/ Bogus}}',
  smtpd_client_event_limit_exceptions: '${smtpd_client_connection_limit_exceptions:$mynetworks}',
  smtpd_sasl_exceptions_networks: '',
  smtpd_sasl_mechanism_filter: '!external, static:rest',
  smtp_sasl_mechanism_filter: '',
  authorized_submit_users: 'static:anyone',
  smtpd_authorized_verp_clients: '$authorized_verp_clients',
  smtpd_authorized_xclient_hosts: '',
  smtpd_authorized_xforward_hosts: '',
}

/**
 * The parameters of POSTFIX_3_11_DEFAULTS that a running 3.11 proxymap process knows: 3.7's,
 * plus default_cache_db_type (mail_params_init()) and the three that 3.11's proxymap adds to
 * its own table: smtpd_forbidden_commands, postscreen_forbidden_commands and
 * smtpd_restriction_classes.
 */
export const PROXYMAP_3_11_DAEMON_PARAMETERS: ReadonlySet<string> = new Set([
  ...PROXYMAP_DAEMON_PARAMETERS,
  'default_cache_db_type', 'smtpd_forbidden_commands', 'postscreen_forbidden_commands', 'smtpd_restriction_classes',
])
