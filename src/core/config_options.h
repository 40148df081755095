/*
 * config_options.h - the table of every selor.conf option.
 *
 * Included several times with different definitions of the macros below
 * (X-macro), so the option list exists exactly once: the config struct, the
 * parser's name table, the defaults and the documentation checks all come
 * from here.  The first 114 entries are the original reference's options,
 * names spelt exactly as the reference spells them (typos included); the
 * options Selor added follow.
 *
 *   CONF_NUM(field, "Name", default, min, max, flags)
 *   CONF_TEXT(field, "Name", "default", flags)
 *   CONF_ALIAS("Other spelling", "Canonical name")
 *
 * flags: CONF_F_DEF  may be changed per connection by the rules action Def!
 *        CONF_F_NEW  not in the original reference (documented as new)
 *        CONF_F_LIST may repeat; every value is kept (Module)
 *        CONF_F_PATH a file or directory; a relative one is taken from the
 *                    directory Selor was started in
 */
#ifndef CONF_ALIAS
#define CONF_ALIAS(alias, canonical)
#endif

/* Server identity and process */
CONF_NUM(Port, "Port", 25, 1, 65535, 0)
CONF_TEXT(Server_name, "Server_name", "localhost", CONF_F_DEF)
CONF_TEXT(Sid, "Sid", "", 0)
CONF_TEXT(User, "User", "selor", 0)
CONF_TEXT(Group, "Group", "selor", 0)

/* Anti-DoS */
CONF_NUM(Limit_buf, "Limit_buf", 0, 0, 1000000, 0)
CONF_NUM(Limit_cnx, "Limit_cnx", 15, 1, 1000000, 0)
CONF_NUM(Limit_time, "Limit_time", 1, 0, 86400, 0)

/* Events (rules files) */
CONF_TEXT(Event_limit, "Event.limit", "", CONF_F_DEF)
CONF_ALIAS("Event.Limit", "Event.limit")
CONF_TEXT(Event_connection, "Event.connection", "", CONF_F_DEF)
CONF_TEXT(Event_helo, "Event.helo", "", CONF_F_DEF)
CONF_TEXT(Event_auth, "Event.auth", "", CONF_F_DEF)
CONF_TEXT(Event_from, "Event.from", "", CONF_F_DEF)
CONF_TEXT(Event_rcpt, "Event.rcpt", "", CONF_F_DEF)
CONF_TEXT(Event_data_cmd, "Event.data_cmd", "", CONF_F_DEF)
CONF_TEXT(Event_data, "Event.data", "", CONF_F_DEF)
CONF_TEXT(Event_qstart_process, "Event.qstart_process", "", CONF_F_DEF)
CONF_TEXT(Event_qend_process, "Event.qend_process", "", CONF_F_DEF)
CONF_TEXT(Event_error_report, "Event.error_report", "", CONF_F_DEF)
CONF_TEXT(Event_dl_rcpt, "Event.dl_rcpt", "", CONF_F_DEF)
CONF_TEXT(Event_lrcpt_refused, "Event.lrcpt_refused", "", CONF_F_DEF)

/* Account-database modules */
CONF_TEXT(Modseq_auth, "Modseq_auth", "", CONF_F_DEF)
CONF_TEXT(Modseq_domain, "Modseq_domain", "", CONF_F_DEF)
CONF_TEXT(Modseq_mail, "Modseq_mail", "", CONF_F_DEF)
CONF_TEXT(Modseq_alias, "Modseq_alias", "", CONF_F_DEF)

/* TLS */
CONF_TEXT(Tls_module, "Tls_module", "", CONF_F_PATH)
CONF_TEXT(Tls_cafile, "Tls_cafile", "", CONF_F_PATH)
CONF_TEXT(Tls_pubkey, "Tls_pubkey", "", CONF_F_PATH)
CONF_TEXT(Tls_privkey, "Tls_privkey", "", CONF_F_PATH)
CONF_NUM(Tls_enable, "Tls_enable", 0, 0, 1, CONF_F_DEF)
CONF_NUM(Tls_delivery, "Tls_delivery", 0, 0, 2, CONF_F_DEF)
CONF_NUM(Tls_implicit, "Tls_implicit", 0, 0, 1, CONF_F_NEW)

/* Files and directories */
CONF_TEXT(Pid_file, "Pid_file", "/var/run/selor.pid", CONF_F_PATH)
CONF_TEXT(Timezone, "Timezone", "", CONF_F_DEF)
CONF_TEXT(Cp_errors_path, "Cp_errors_path", "/var/spool/selor/errors", CONF_F_DEF | CONF_F_PATH)
CONF_TEXT(Temp_path, "Temp_path", "/var/spool/selor/tmp", CONF_F_PATH)
CONF_TEXT(Queue_path, "Queue_path", "/var/spool/selor/", CONF_F_DEF | CONF_F_PATH)
CONF_TEXT(Report_file, "Report_file", "/usr/local/selor/error_report.txt", CONF_F_DEF | CONF_F_PATH)

/* Local delivery */
CONF_TEXT(Dlocal, "Dlocal", "/usr/bin/procmail -d %l ", CONF_F_DEF)
CONF_TEXT(Adlocal_allowed, "Adlocal_allowed", "", CONF_F_DEF)

/* Error reports */
CONF_TEXT(Postmaster, "Postmaster", "postmaster@localhost", CONF_F_DEF)
CONF_TEXT(Subject_error_msg, "Subject_error_msg", "[Mail delivery error]", CONF_F_DEF)
CONF_TEXT(Report_from, "Report_from", "<MAILER-DAEMON@localhost", CONF_F_DEF)

/* SMTP policy and limits */
CONF_NUM(Auth_relay, "Auth_relay", 1, 0, 1, CONF_F_DEF)
CONF_NUM(Timeout, "Timeout", 120, 1, 86400, CONF_F_DEF)
CONF_NUM(Connect_timeout, "Connect_timeout", 60, 1, 3600, CONF_F_DEF)
CONF_NUM(Resolve_all, "Resolve_all", 1, 0, 1, CONF_F_DEF)
CONF_NUM(Max_rcpts, "Max_rcpts", 100, 1, 100000, CONF_F_DEF)
CONF_NUM(Max_mail_size, "Max_mail_size", 10485760, 1024, 2147483647, CONF_F_DEF)
CONF_NUM(Max_header_size, "Max_header_size", 51200, 256, 2147483647, CONF_F_DEF)
CONF_NUM(Max_attempts, "Max_attempts", 48, 1, 100000, CONF_F_DEF)
CONF_NUM(Max_error_report, "Max_error_report", 3, 1, 100000, CONF_F_DEF)
CONF_NUM(Max_qprocs, "Max_qprocs", 0, 0, 100000, 0)
CONF_NUM(Mx_alias_ip, "Mx_alias_ip", 0, 0, 1, CONF_F_DEF)
CONF_NUM(Cp_errors, "Cp_errors", 1, 0, 1, CONF_F_DEF)
CONF_NUM(Hshow_user, "Hshow_user", 0, 0, 1, CONF_F_DEF)
CONF_NUM(Proto_level_check, "Proto_level_check", 0, 0, 1, CONF_F_DEF)
CONF_NUM(From_level_check, "From_level_check", 1, -1, 2, CONF_F_DEF)
CONF_NUM(Rcpt_level_check, "Rcpt_level_check", 0, -1, 1, CONF_F_DEF)
CONF_NUM(Auth_tolerance, "Auth_tolerance", 3, 1, 1000, CONF_F_DEF)
CONF_NUM(Incorrect_pass_delay, "Incorrect_pass_delay", 3, 0, 3600, CONF_F_DEF)
CONF_ALIAS("Incorret_pass_delay", "Incorrect_pass_delay")
CONF_NUM(No_mailbox_delay, "No_mailbox_delay", 2, 0, 3600, CONF_F_DEF)
CONF_NUM(Immed_delivery, "Immed_delivery", 1, 0, 2, CONF_F_DEF)
CONF_NUM(Queue_time, "Queue_time", 15, 1, 100000, CONF_F_DEF)
CONF_NUM(Lavg_queue, "Lavg_queue", 20, 0, 100000, 0)
CONF_NUM(Lavg_negative, "Lavg_negative", 40, 0, 100000, CONF_F_DEF)
CONF_NUM(Tarpit_limit, "Tarpit_limit", 0, 0, 100000, CONF_F_DEF)
CONF_NUM(Tarpit_sleep, "Tarpit_sleep", 60, 0, 86400, CONF_F_DEF)
CONF_NUM(Force_alias_seek, "Force_alias_seek", 0, 0, 1, CONF_F_DEF)
CONF_NUM(Seek_df_alias, "Seek_df_alias", 1, 0, 1, CONF_F_DEF)

/* Logs */
CONF_NUM(Log_lvl, "Log_lvl", 0, 0, 0, CONF_F_DEF)
CONF_TEXT(Central_log, "Central_log", "/var/log/selor/selor.log", CONF_F_PATH)
CONF_TEXT(Sumary_log, "Sumary_log", "/var/log/selor/selor_summary.log", CONF_F_PATH)
CONF_ALIAS("Summary_log", "Sumary_log")
CONF_TEXT(Warning_log, "Warning_log", "/var/log/selor/selor_wrn.log", CONF_F_PATH)
CONF_TEXT(Refused_log, "Refused_log", "", CONF_F_PATH)

/* Queue */
CONF_NUM(Qlimit_max_procs, "Qlimit_max_procs", 0, 0, 100000, 0)
CONF_NUM(Qlimit_time, "Qlimit_time", 8, 1, 100000, 0)
CONF_NUM(Qsleep_time, "Qsleep_time", 60, 1, 86400, 0)

/* SRS */
CONF_TEXT(Srs_key, "Srs_key", "", 0)
CONF_NUM(Srs_shift, "Srs_shift", 0, 0, 255, 0)
CONF_NUM(Srs_alias_redir, "Srs_alias_redir", 1, 0, 1, 0)

CONF_NUM(Max_msgs_per_cnx, "Max_msgs_per_cnx", 100, 1, 1000000, CONF_F_DEF)
CONF_TEXT(Df_domain, "Df_domain", "", CONF_F_DEF)
CONF_NUM(Allow_broadcasts, "Allow_broadcasts", 1, 0, 1, CONF_F_DEF)
CONF_NUM(Dlocal_max_procs, "Dlocal_max_procs", 0, 0, 100000, 0)
CONF_NUM(Dlocal_type, "Dlocal_type", 1, 0, 1, CONF_F_DEF)

/* Protocol messages */
CONF_TEXT(Msg_welcome, "Msg_welcome", "220 ", CONF_F_DEF)
CONF_TEXT(Msg_full_mailbox, "Msg_full_mailbox", "552 The mailbox is over quota", CONF_F_DEF)
CONF_TEXT(Msg_invalid_cmd, "Msg_invalid_cmd", "500 Invalid command", CONF_F_DEF)
CONF_TEXT(Msg_invalid_param, "Msg_invalid_param", "501 Invalid parameter", CONF_F_DEF)
CONF_TEXT(Msg_sequence_error, "Msg_sequence_error", "503 Invalid sequence", CONF_F_DEF)
CONF_TEXT(Msg_no_mailbox, "Msg_no_mailbox", "550 No such user", CONF_F_DEF)
CONF_TEXT(Msg_toomany_rcpts, "Msg_toomany_rcpts", "452 Too many recipients", CONF_F_DEF)
CONF_TEXT(Msg_relay_denied, "Msg_relay_denied", "550 Relay denied", CONF_F_DEF)
CONF_TEXT(Msg_transaction_falied, "Msg_transaction_falied", "554 Transaction error", CONF_F_DEF)
CONF_ALIAS("Msg_transaction_failed", "Msg_transaction_falied")
CONF_TEXT(Msg_ok, "Msg_ok", "250 Ok", CONF_F_DEF)
CONF_TEXT(Msg_send_body, "Msg_send_body", "354 Ok", CONF_F_DEF)
CONF_TEXT(Msg_allowed_sender, "Msg_allowed_sender", "250 Sender allowed", CONF_F_DEF)
CONF_TEXT(Msg_refused, "Msg_refused", "550 Refused", CONF_F_DEF)
CONF_TEXT(Msg_allowed_rcpt, "Msg_allowed_rcpt", "250 Rcpt allowed", CONF_F_DEF)
CONF_TEXT(Msg_mail_accepted, "Msg_mail_accepted", "250 Msg accepted", CONF_F_DEF)
CONF_TEXT(Msg_goodbye, "Msg_goodbye", "221 Ok", CONF_F_DEF)
CONF_TEXT(Msg_auth_ok, "Msg_auth_ok", "235 Auth successful", CONF_F_DEF)
CONF_TEXT(Msg_auth_falied, "Msg_auth_falied", "535 Auth fail", CONF_F_DEF)
CONF_ALIAS("Msg_auth_failed", "Msg_auth_falied")
CONF_TEXT(Msg_auth_required, "Msg_auth_required", "550 Auth required", CONF_F_DEF)
CONF_TEXT(Msg_nodisk_space, "Msg_nodisk_space", "452 No disk space", CONF_F_DEF)
CONF_TEXT(Msg_perm_deny, "Msg_perm_deny", "421 Temp error. Try again later", CONF_F_DEF)
CONF_TEXT(Msg_invalid_domain, "Msg_invalid_domain", "553 Invalid domain:", CONF_F_DEF)
CONF_TEXT(Msg_header_toobig, "Msg_header_toobig", "554 Header too big", CONF_F_DEF)
CONF_TEXT(Msg_internal_error, "Msg_internal_error", "451 Internal error", CONF_F_DEF)
CONF_TEXT(Msg_cannot_connect, "Msg_cannot_connect", "Could not connect to remote server", CONF_F_DEF)
CONF_TEXT(Msg_mailbox_unavaibble, "Msg_mailbox_unavaibble", "451 Mailbox unavailable", CONF_F_DEF)
CONF_ALIAS("Msg_mailbox_unavailable", "Msg_mailbox_unavaibble")
CONF_TEXT(Msg_mail_toobig, "Msg_mail_toobig", "552 Message too big", CONF_F_DEF)
CONF_TEXT(Msg_lavg, "Msg_lavg", "450 Load average, try again later", CONF_F_DEF)
CONF_TEXT(Msg_cannot_resolve, "Msg_cannot_resolve", "Invalid domain or no MX record", CONF_F_DEF)

/* Options Selor added (not in the original reference) */
CONF_TEXT(Bind_address, "Bind_address", "", CONF_F_NEW)
CONF_TEXT(Module, "Module", "", CONF_F_NEW | CONF_F_LIST | CONF_F_PATH)
CONF_TEXT(Passwd_file, "Passwd_file", "", CONF_F_NEW | CONF_F_PATH)
CONF_TEXT(Redis_server, "Redis_server", "", CONF_F_NEW)
CONF_TEXT(Dns_servers, "Dns_servers", "", CONF_F_NEW)
CONF_NUM(Smtp_workers, "Smtp_workers", 0, 0, 256, CONF_F_NEW)
CONF_TEXT(Relay_host, "Relay_host", "", CONF_F_NEW | CONF_F_DEF)
CONF_TEXT(Qlimit_senders, "Qlimit_senders", "", CONF_F_NEW | CONF_F_DEF)
CONF_TEXT(Redis_password, "Redis_password", "", CONF_F_NEW)
CONF_NUM(Redis_db, "Redis_db", 0, 0, 1000000, CONF_F_NEW)
CONF_TEXT(Redis_prefix, "Redis_prefix", "selor:", CONF_F_NEW)
CONF_TEXT(Redis_sentinels, "Redis_sentinels", "", CONF_F_NEW)
CONF_TEXT(Redis_master_name, "Redis_master_name", "mymaster", CONF_F_NEW)
CONF_NUM(Lock_lease, "Lock_lease", 30, 2, 86400, CONF_F_NEW)
CONF_NUM(Dremote_max_procs, "Dremote_max_procs", 20, 0, 100000, CONF_F_NEW)
CONF_NUM(Smtp_reuse_time, "Smtp_reuse_time", 5, 0, 3600, CONF_F_NEW)
CONF_NUM(Smtp_reuse_max, "Smtp_reuse_max", 100, 0, 100000, CONF_F_NEW)
CONF_NUM(Smtp_dest_conns, "Smtp_dest_conns", 10, 0, 100000, CONF_F_NEW)
CONF_NUM(Auth_plaintext, "Auth_plaintext", 0, 0, 1, CONF_F_NEW | CONF_F_DEF)
CONF_NUM(Auth_fail_limit, "Auth_fail_limit", 10, 0, 1000000, CONF_F_NEW)
CONF_NUM(Auth_fail_time, "Auth_fail_time", 600, 1, 2592000, CONF_F_NEW)
CONF_TEXT(Msg_broadcast_denied, "Msg_broadcast_denied",
          "550 Only senders of the domain may write to this address", CONF_F_NEW | CONF_F_DEF)
CONF_TEXT(Msg_invalid_srs, "Msg_invalid_srs", "550 Invalid SRS address",
          CONF_F_NEW | CONF_F_DEF)
CONF_NUM(Rules_exec_timeout, "Rules_exec_timeout", 30, 1, 3600, CONF_F_NEW | CONF_F_DEF)
CONF_NUM(Rules_exec_max, "Rules_exec_max", 16, 1, 1000, CONF_F_NEW)
CONF_TEXT(Proxy_protocol, "Proxy_protocol", "", CONF_F_NEW)
CONF_NUM(Agent_port, "Agent_port", 0, 0, 65535, CONF_F_NEW)
CONF_NUM(Metrics_port, "Metrics_port", 0, 0, 65535, CONF_F_NEW)
CONF_TEXT(Milters, "Milters", "", CONF_F_NEW | CONF_F_DEF)
CONF_NUM(Milter_timeout, "Milter_timeout", 30, 1, 3600, CONF_F_NEW | CONF_F_DEF)
CONF_TEXT(Milter_default_action, "Milter_default_action", "tempfail", CONF_F_NEW | CONF_F_DEF)
CONF_TEXT(Spool_flush, "Spool_flush", "auto", CONF_F_NEW)

#undef CONF_NUM
#undef CONF_TEXT
#undef CONF_ALIAS
