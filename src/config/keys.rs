//! Every key the configuration file accepts, in one table: section, key, type, default and
//! meaning. The man pages' CONFIGURATION sections are generated from it ([`man_section`]), and
//! tests/config.rs checks it against the parser ([`fields_of`]): every field the section types accept
//! (`#[serde(deny_unknown_fields)]`, read from serde's own field lists) has a row, every row
//! names a field that exists, and every default given as a TOML value parses to what the
//! code's `Default` gives.

/// A key's default as documented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    /// A TOML value, checked by the tests to equal the code's default.
    Toml(&'static str),
    /// Words, for defaults that are not a fixed value ("the host name", "unset").
    Text(&'static str),
}

/// One key of a section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// The key as written in the file.
    pub name: &'static str,
    /// Its TOML type, in words (`integer`, `string`, `path`, `"a" | "b"`).
    pub ty: &'static str,
    /// Its default.
    pub default: DefaultValue,
    /// What it does.
    pub meaning: &'static str,
}

/// One table of the file (`[mrelayd.remote]`) and its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table {
    /// Dotted name (`mrelayd.remote`; `""` for the top level; `NAME` and `DOMAIN` stand for any
    /// name, `[]` for an entry of an array of tables).
    pub name: &'static str,
    /// How it is written in the file (`[mrelayd.remote.domains."DOMAIN"]`).
    pub header: &'static str,
    /// The programs that read it (their man pages list it).
    pub programs: &'static [&'static str],
    /// One line about the table.
    pub about: &'static str,
    /// Its keys, in the order the man page lists them.
    pub keys: &'static [Key],
}

const fn key(
    name: &'static str,
    ty: &'static str,
    default: DefaultValue,
    meaning: &'static str,
) -> Key {
    Key {
        name,
        ty,
        default,
        meaning,
    }
}

use DefaultValue::{Text, Toml};

const DAEMONS: &[&str] = &["mrelayd", "mpopd", "mimapd"];
const ALL_CONFIG_READERS: &[&str] = &["mrelayd", "mpopd", "mimapd", "msend", "mfetch"];

/// Every table of the configuration file, with every key it accepts.
pub const TABLES: &[Table] = &[
    Table {
        name: "",
        header: "(top level)",
        programs: ALL_CONFIG_READERS,
        about: "Shared keys before the first table.",
        keys: &[
            key(
                "hostname",
                "string",
                Text("the system host name"),
                "This host's name: greetings, EHLO, Received:, Message-ID, Maildir file names; \
                 the local domain when [users] domains is empty.",
            ),
            key(
                "state_dir",
                "path",
                Toml("\"/var/lib/mailkit\""),
                "Persistent state: the queue (<state_dir>/queue), locks, caches.",
            ),
            key("tls", "table", Text("see [tls]"), "The [tls] table."),
            key("users", "table", Text("see [users]"), "The [users] table."),
            key("auth", "table", Text("see [auth]"), "The [auth] table."),
            key("run_as", "table", Text("unset"), "The [run_as] table."),
            key(
                "msend",
                "table",
                Text("empty"),
                "msend's table, see msend(1).",
            ),
            key(
                "mrelayd",
                "table",
                Text("empty"),
                "mrelayd's table, see mrelayd(1).",
            ),
            key(
                "mpopd",
                "table",
                Text("empty"),
                "mpopd's table, see mpopd(1).",
            ),
            key(
                "mdeliver",
                "table",
                Text("empty"),
                "Reserved: mdeliver reads no keys (a key here is an error).",
            ),
            key(
                "mimapd",
                "table",
                Text("empty"),
                "mimapd's table, see mimapd(1).",
            ),
            key(
                "mfetch",
                "table",
                Text("empty"),
                "Reserved: mfetch reads no keys yet (a key here is an error).",
            ),
            key(
                "mdig-mx",
                "table",
                Text("empty"),
                "Reserved: mdig-mx reads no keys (a key here is an error).",
            ),
        ],
    },
    Table {
        name: "tls",
        header: "[tls]",
        programs: DAEMONS,
        about: "One certificate and key for every server listener (STARTTLS, STLS, implicit TLS).",
        keys: &[
            key(
                "cert",
                "path",
                Text("unset: no TLS, and no AUTH on submission"),
                "PEM certificate chain.",
            ),
            key("key", "path", Text("unset"), "PEM private key of cert."),
        ],
    },
    Table {
        name: "users",
        header: "[users]",
        programs: DAEMONS,
        about: "Where users and their mail are.",
        keys: &[
            key(
                "passwd_file",
                "path",
                Toml("\"/etc/mailkit/passwd\""),
                "Dovecot-compatible passwd-file (user:{SCHEME}hash:uid:gid::home::extra); \
                 re-read when it changes.",
            ),
            key(
                "mail_location",
                "template",
                Toml("\"%h/Maildir\""),
                "A user's Maildir: %u user, %n local part, %d domain, %h home, %% a percent \
                 sign (\"/var/mail/%d/%n\", \"mail/%n\").",
            ),
            key(
                "domains",
                "list of strings",
                Toml("[]"),
                "Local domains (empty: the hostname). A user logs in as user or \
                 user@DOMAIN of one of them.",
            ),
        ],
    },
    Table {
        name: "auth",
        header: "[auth]",
        programs: DAEMONS,
        about: "Password backend and the failed-login throttle (SMTP AUTH and POP3 alike).",
        keys: &[
            key(
                "checkpassword",
                "list of strings",
                Text("unset"),
                "A qmail-style checkpassword program and its arguments; it checks passwords \
                 instead of the passwd-file.",
            ),
            key(
                "failure_delay_ms",
                "integer",
                Toml("2000"),
                "Delay of a client address's first failed login; doubles per failure.",
            ),
            key(
                "max_delay_ms",
                "integer",
                Toml("15000"),
                "Cap of that delay.",
            ),
            key(
                "max_failures",
                "integer",
                Toml("10"),
                "Failures per address (IPv6: per /64) before it is locked out.",
            ),
            key(
                "lockout_secs",
                "integer",
                Toml("300"),
                "How long a lockout, and a failure count, lasts.",
            ),
            key(
                "max_tracked_ips",
                "integer",
                Toml("10000"),
                "Addresses tracked at most (oldest forgotten first).",
            ),
            key(
                "user_failure_delay_ms",
                "integer",
                Toml("100"),
                "Per-user penalty after a user's first failure from any address: doubles per \
                 failure, delays every answer for that user, never locks out.",
            ),
            key(
                "user_max_delay_ms",
                "integer",
                Toml("15000"),
                "Cap of the per-user penalty.",
            ),
            key(
                "max_tracked_users",
                "integer",
                Toml("10000"),
                "User names (known or not) tracked at most.",
            ),
        ],
    },
    Table {
        name: "run_as",
        header: "[run_as]",
        programs: DAEMONS,
        about: "The user a daemon started as root switches to after binding (required then).",
        keys: &[
            key(
                "user",
                "string",
                Text("none: required when started as root"),
                "User name or uid; root is refused.",
            ),
            key(
                "group",
                "string",
                Text("the user's primary group"),
                "Group name or gid.",
            ),
            key(
                "first_valid_uid",
                "integer",
                Toml("1000"),
                "System users (own uid in the passwd-file) below this uid are never served; \
                 uid 0 never is.",
            ),
        ],
    },
    Table {
        name: "mrelayd",
        header: "[mrelayd]",
        programs: &["mrelayd"],
        about: "The SMTP server and its local delivery.",
        keys: &[
            key(
                "listen",
                "list of tables",
                Toml("[{ address = \"0.0.0.0:25\", role = \"smtp\" }]"),
                "Listening sockets, see [[mrelayd.listen]].",
            ),
            key("queue_dir", "path", Text("<state_dir>/queue"), "The queue."),
            key(
                "aliases",
                "path",
                Text("unset"),
                "Aliases file (name: target, |command, /Maildir/); re-read when it changes.",
            ),
            key(
                "catch_all",
                "string",
                Text("unset: unknown local users get 550 5.1.1"),
                "Local name or address that receives mail for unknown local users.",
            ),
            key(
                "require_postmaster",
                "boolean",
                Toml("true"),
                "postmaster@ every local domain must resolve to a mailbox (RFC 5321 §4.5.1): serve and inetd exit 78 naming the aliases file otherwise; false: one warning at start.",
            ),
            key(
                "recipient_delimiter",
                "string",
                Toml("\"+\""),
                "Subaddress delimiter: user+tag@domain goes to user, EXT=tag (\"\": none).",
            ),
            key(
                "trusted_networks",
                "list of strings",
                Toml("[\"127.0.0.0/8\", \"::1/128\"]"),
                "Networks (CIDR) that may relay without AUTH on the smtp role.",
            ),
            key(
                "any_sender",
                "boolean",
                Toml("false"),
                "Authenticated users may use any envelope sender.",
            ),
            key(
                "max_message_size",
                "integer",
                Toml("36700160"),
                "Largest message (SIZE), octets.",
            ),
            key(
                "bare_newline",
                "\"normalize\" | \"reject\"",
                Toml("\"normalize\""),
                "A line of DATA/BDAT content ending in a bare LF: stored as CRLF (Postfix 3.9's \
                 smtpd_forbid_bare_newline = normalize), or reject: the message is refused with \
                 554 5.6.0. Only CRLF.CRLF ends DATA either way; a bare CR is always refused.",
            ),
            key(
                "max_recipients",
                "integer",
                Toml("100"),
                "Recipients per transaction (452 4.5.3 beyond).",
            ),
            key(
                "max_errors",
                "integer",
                Toml("20"),
                "Errors (bad commands, refused RCPTs) before 421 4.7.0.",
            ),
            key(
                "max_hops",
                "integer",
                Toml("50"),
                "Received: headers (ours included) that make a loop: 554 5.4.6 at the end of \
                 DATA; a queued message with more Received: plus Delivered-To: bounces 5.4.6 \
                 (Postfix's hopcount_limit).",
            ),
            key(
                "greet_pause_ms",
                "integer",
                Toml("0"),
                "smtp role: wait this long before the greeting and refuse clients that talk first.",
            ),
            key(
                "idle_timeout_secs",
                "integer",
                Toml("300"),
                "Wait for a command, and for each write (RFC 5321 4.5.3.2.7); then 421 4.4.2.",
            ),
            key(
                "data_timeout_secs",
                "integer",
                Toml("600"),
                "Wait for each read of DATA/BDAT content (RFC 5321 4.5.3.2.5); then 421 4.4.2.",
            ),
            key(
                "soft_error_limit",
                "integer",
                Toml("10"),
                "Errors after which each error reply is delayed.",
            ),
            key(
                "error_sleep_ms",
                "integer",
                Toml("1000"),
                "The n-th error over soft_error_limit waits n times this (that session only).",
            ),
            key(
                "junk_command_limit",
                "integer",
                Toml("100"),
                "NOOP, RSET, VRFY, HELP in a row without progress before 421.",
            ),
            key(
                "session_deadline_secs",
                "integer",
                Toml("1800"),
                "No message accepted or refused for this long: 421 4.4.2.",
            ),
            key(
                "min_data_rate",
                "integer",
                Toml("1024"),
                "Least DATA/BDAT octets per second over each window; slower gets 421 4.4.2 \
                 (0: off).",
            ),
            key(
                "min_data_rate_window_secs",
                "integer",
                Toml("60"),
                "The window of min_data_rate; a message's first window is its grace.",
            ),
            key(
                "max_connections",
                "integer",
                Toml("200"),
                "Concurrent sessions; past 80% of them an address holding its fair share is \
                 refused.",
            ),
            key(
                "max_per_ip",
                "integer",
                Toml("20"),
                "Concurrent sessions per client address.",
            ),
            key(
                "max_per_ip_exceptions",
                "list of strings",
                Text("loopback (127.0.0.0/8, ::1/128) and trusted_networks"),
                "Networks (CIDR) not held to max_per_ip nor the busy-server fair share, only to max_connections (as Postfix exempts $mynetworks); deadlines, error limits and login throttling still apply.",
            ),
            key(
                "delivery_workers",
                "integer",
                Toml("20"),
                "Parallel deliveries, local and remote.",
            ),
            key(
                "pipe_timeout_secs",
                "integer",
                Toml("600"),
                "An alias |command is killed after this long.",
            ),
            key(
                "allow_symlinked_maildir",
                "boolean",
                Toml("false"),
                "Follow a symlink at a Maildir or its tmp/, new/, cur/ (else the delivery is \
                 deferred 4.x and the path logged).",
            ),
            key(
                "sieve",
                "template",
                Text("unset: no filtering"),
                "Each passwd-file user's Sieve script, with mail_location's variables \
                 (\"%h/.dovecot.sieve\"); a user's sieve extra field overrides it; a missing \
                 file is no filter, a broken one is logged and the message goes to INBOX. Its \
                 redirects and vacation replies go into mrelayd's own queue (no msend needed).",
            ),
            key(
                "authserv_id",
                "string",
                Text("hostname"),
                "authserv-id of the Authentication-Results: field mrelayd adds (RFC 8601); \
                 such fields of incoming mail claiming it are removed first.",
            ),
            key(
                "dkim_verify",
                "boolean",
                Toml("true"),
                "Verify every DKIM-Signature of mail on the smtp listener from clients neither \
                 authenticated nor in trusted_networks (keys by DNS through [mrelayd.remote] \
                 resolver) and add Authentication-Results: dkim=... at the top; \
                 a DNS failure is dkim=temperror, never a rejection. rsa-sha1 signatures are \
                 dkim=policy and never count for DMARC (RFC 8301 §3.1).",
            ),
            key(
                "arc_verify",
                "boolean",
                Toml("true"),
                "Verify the ARC chain (RFC 8617) of the same mail as dkim_verify and add \
                 arc=pass|fail|none smtp.remote-ip=IP to its Authentication-Results:; \
                 a DNS failure is arc=temperror, never a rejection.",
            ),
            key(
                "dnsbl",
                "list of strings",
                Toml("[]"),
                "DNSBL zones (RFC 5782) the smtp listener's clients are looked up in, at the \
                 first RCPT, as Postfix's reject_rbl_client (trusted_networks and \
                 authenticated clients are not): a client listed in one (an A record in \
                 127.0.0.0/8) gets 554 5.7.1 Service unavailable; Client host [IP] blocked \
                 using ZONE for each recipient. A DNS failure is logged and lets it through. \
                 A zone that is no domain name is refused at start (exit 78).",
            ),
            key(
                "dnsbl_reply",
                "table of strings",
                Toml("{}"),
                "Text after a DNSBL refusal per zone (\"zen.example\" = \"see \
                 https://...\"); unset for a zone: the listing's TXT record. A zone not in \
                 dnsbl gets a warning at start.",
            ),
            key(
                "dkim",
                "table of tables",
                Toml("{}"),
                "DKIM signing keys per domain, see [mrelayd.dkim.\"DOMAIN\"].",
            ),
            key(
                "spf_dmarc",
                "table",
                Text("see [mrelayd.spf_dmarc]"),
                "SPF and DMARC checks of the mail dkim_verify covers.",
            ),
            key(
                "srs",
                "table",
                Text("see [mrelayd.srs]"),
                "SRS (Sender Rewriting Scheme) for forwarded mail.",
            ),
            key(
                "remote",
                "table",
                Text("see [mrelayd.remote]"),
                "Remote delivery.",
            ),
            key(
                "filter",
                "table of tables",
                Toml("{}"),
                "Content filters by name, see [mrelayd.filter.NAME].",
            ),
            key(
                "rate_limit",
                "table",
                Text("see [mrelayd.rate_limit]"),
                "Submission rate limits per user and per client address.",
            ),
        ],
    },
    Table {
        name: "mrelayd.rate_limit",
        header: "[mrelayd.rate_limit]",
        programs: &["mrelayd"],
        about: "Rate limits on the submission path (a compromised account is the usual spam \
                cannon): messages and recipients per hour per authenticated user and per client \
                address, counted when a message is accepted (with its accepted recipients). A \
                leaky bucket per key drains at the limit per hour, a sliding hour. Over a limit \
                the client gets 450 4.7.1 (a temporary refusal, as Postfix's anvil limits) at \
                MAIL or at the RCPT that would pass it. The counters are shared by every session \
                and every mrelayd process of the queue (inetd and socket-activated ones too) \
                through the journal QUEUE_DIR/rate-limits, which each accepted message is \
                appended to, so a restart or a kill -9 keeps them (a power loss may forget the \
                last ones: the journal is not fsynced). 0 is no limit.",
        keys: &[
            key(
                "messages_per_hour_per_user",
                "integer",
                Toml("0"),
                "Messages per hour one authenticated user may send (every spelling of the \
                 login counts as one user).",
            ),
            key(
                "recipients_per_hour_per_user",
                "integer",
                Toml("0"),
                "Recipients per hour one authenticated user may send to.",
            ),
            key(
                "messages_per_hour_per_address",
                "integer",
                Toml("0"),
                "Messages per hour from one client address (IPv6: its /64), whoever logs in.",
            ),
            key(
                "recipients_per_hour_per_address",
                "integer",
                Toml("0"),
                "Recipients per hour from one client address (IPv6: its /64).",
            ),
            key(
                "roles",
                "list of \"smtp\" | \"submission\" | \"submissions\"",
                Toml("[\"submission\", \"submissions\"]"),
                "The listener roles whose sessions are limited; add \"smtp\" to hold port 25 \
                 clients (and users who authenticate there) to the limits too.",
            ),
            key(
                "exceptions",
                "list of strings",
                Toml("[]"),
                "Networks (CIDR) without per-address limits; their users' limits still apply.",
            ),
            key(
                "max_tracked",
                "integer",
                Toml("100000"),
                "Memory bound: users and addresses counted at most; when full, idle counters go \
                 first, then the least recently used.",
            ),
        ],
    },
    Table {
        name: "mrelayd.spf_dmarc",
        header: "[mrelayd.spf_dmarc]",
        programs: &["mrelayd"],
        about: "SPF (RFC 7208) and DMARC (RFC 7489) for mail on the smtp listener from clients \
                neither authenticated nor in trusted_networks, at the end of DATA; DNS through \
                [mrelayd.remote] resolver; results in the Authentication-Results: field \
                (spf=... smtp.helo=..., spf=... smtp.mailfrom=..., dmarc=... header.from=...). \
                A DNS temporary failure is never a 5xx.",
        keys: &[
            key(
                "spf",
                "boolean",
                Toml("true"),
                "Check SPF for the HELO name and for MAIL FROM (a null sender: postmaster@ the \
                 HELO name); more than 2 void lookups (NXDOMAIN or no answer) are permerror.",
            ),
            key(
                "dmarc",
                "boolean",
                Toml("true"),
                "Evaluate the From: domain's DMARC policy, with the SPF MAIL FROM result and the \
                 DKIM results aligned as its aspf/adkim say (relaxed or strict).",
            ),
            key(
                "spf_fail",
                "\"mark\" | \"reject\"",
                Toml("\"mark\""),
                "An SPF fail of MAIL FROM: mark (accepted, spf=fail in the field) or reject \
                 (550 5.7.23 at the end of DATA).",
            ),
            key(
                "dmarc_reject",
                "\"reject\" | \"mark\"",
                Toml("\"reject\""),
                "A DMARC fail under p=reject: reject (550 5.7.1 at the end of DATA) or mark \
                 (accepted, dmarc=fail reason=\"p=reject\"); p=quarantine and p=none failures \
                 are always marked.",
            ),
            key(
                "temperror",
                "\"mark\" | \"tempfail\"",
                Toml("\"mark\""),
                "A DNS temporary failure (timeout, SERVFAIL): mark (accepted, spf=temperror or \
                 dmarc=temperror) or tempfail (451 4.7.24 for SPF, 451 4.7.1 for DMARC; the \
                 client retries).",
            ),
        ],
    },
    Table {
        name: "mrelayd.filter.NAME",
        header: "[mrelayd.filter.NAME]",
        programs: &["mrelayd"],
        about: "A content filter: a command that reads each message of its listener roles on \
                stdin before the final reply to DATA/BDAT (as qmail-qfilter and Postfix's \
                before-queue filters) and decides by exit code: 0 accept (queued, fsynced, \
                then 250), 1 reject (550 5.7.1 with its first stderr line), 75 tempfail \
                (451 4.7.1); any other exit, a signal or the timeout: 451 4.7.1. One decision \
                per message; refused or tempfailed, nothing is queued. Its environment: PATH, \
                HOME=/, SENDER, RECIPIENTS (one per line), RECIPIENT (with one recipient), \
                CLIENT_ADDRESS, HELO, AUTH_USER, QUEUE_ID.",
        keys: &[
            key(
                "command",
                "list of strings",
                Text("required"),
                "The program and its arguments, no shell (e.g. [\"spamassassin\", \"-L\", \
                 \"-e\", \"1\"]); it gets our Received: header and the message on stdin. A \
                 bare program name is looked up in PATH=/usr/local/bin:/usr/bin:/bin; a \
                 program that is not there is refused at start (exit 78).",
            ),
            key(
                "roles",
                "list of \"smtp\" | \"submission\" | \"submissions\"",
                Toml("[\"smtp\"]"),
                "The listener roles (of [[mrelayd.listen]], or inetd's role) whose messages it \
                 sees; a role has at most one filter (else exit 78 at start).",
            ),
            key(
                "timeout_secs",
                "integer",
                Toml("60"),
                "Then its whole process group is killed and the client gets 451 4.7.1 (at \
                 least 1).",
            ),
            key(
                "headers",
                "boolean",
                Toml("false"),
                "true: its stdout is header lines to add after our Received: header, ending \
                 with an empty line (each a valid RFC 5322 field, at most 16 KiB in all, \
                 nothing after the empty line; else 451 4.7.1); false: stdout is ignored.",
            ),
        ],
    },
    Table {
        name: "mrelayd.listen[]",
        header: "[[mrelayd.listen]] (or listen = [{ ... }])",
        programs: &["mrelayd"],
        about: "One listening socket of mrelayd serve.",
        keys: &[
            key(
                "address",
                "string",
                Text("required"),
                "IP:PORT to bind (port 0: any free port, printed when listening).",
            ),
            key(
                "role",
                "\"smtp\" | \"submission\" | \"submissions\"",
                Toml("\"smtp\""),
                "smtp: mail for local domains, relaying for trusted networks and AUTH users; \
                 submission: AUTH required, after STARTTLS (needs [tls] cert); submissions: \
                 implicit TLS, AUTH required (needs [tls] cert).",
            ),
        ],
    },
    Table {
        name: "mrelayd.remote",
        header: "[mrelayd.remote]",
        programs: &["mrelayd"],
        about: "Delivery to other domains: by MX, or through a relayhost.",
        keys: &[
            key(
                "resolver",
                "string",
                Text("the system's resolver (/etc/resolv.conf)"),
                "DNS server IP[:PORT]; every name is asked of it (/etc/hosts is not read).",
            ),
            key("port", "integer", Toml("25"), "SMTP port of MX hosts."),
            key("helo_name", "string", Text("hostname"), "EHLO name."),
            key(
                "tls",
                "\"none\" | \"may\" | \"encrypt\" | \"verify\"",
                Toml("\"may\""),
                "TLS to MX hosts: may is opportunistic STARTTLS, encrypt requires it, verify \
                 also checks the certificate for the MX name.",
            ),
            key(
                "ca_file",
                "path",
                Text("the webpki roots"),
                "Trust anchors for verify and relayhost TLS.",
            ),
            key(
                "dane",
                "boolean",
                Toml("true"),
                "DANE (RFC 7672) for MX hosts under tls = may or encrypt: when the resolver \
                 says (AD bit) the MX, address and _PORT._tcp TLSA answers are DNSSEC-validated \
                 and a TLSA record is usable (DANE-TA or DANE-EE), TLS is required and the \
                 certificate must match a record, else the mail is deferred (4.7.5). Insecure \
                 answers: tls as configured. Needs a validating resolver (unbound) on this host.",
            ),
            key(
                "relayhost",
                "string",
                Text("unset: deliver by MX"),
                "Smarthost for every remote recipient: host, host:port or [host]:port.",
            ),
            key(
                "relayhost_tls",
                "\"none\" | \"may\" | \"starttls\" | \"tls\"",
                Toml("\"starttls\""),
                "TLS to the relayhost: starttls (required, verified), tls (implicit, RFC 8314), \
                 may (opportunistic), none. AUTH is only sent over TLS: with relayhost_user, \
                 none is refused at start (exit 78) and may gets a warning.",
            ),
            key(
                "relayhost_user",
                "string",
                Text("unset: no AUTH"),
                "AUTH user at the relayhost; needs relayhost_password_command (else refused at \
                 start) and a relayhost (else a warning).",
            ),
            key(
                "relayhost_password_command",
                "string",
                Text("unset"),
                "Command (sh -c) whose first output line is the relayhost password (the OAuth \
                 2.0 token with relayhost_auth = \"xoauth2\" or \"oauthbearer\").",
            ),
            key(
                "relayhost_auth",
                "\"plain\" | \"login\" | \"xoauth2\" | \"oauthbearer\"",
                Text("unset: PLAIN when offered, else LOGIN"),
                "SASL mechanism of AUTH at the relayhost (RFC 4954; XOAUTH2 as Google and \
                 Microsoft define it, OAUTHBEARER RFC 7628).",
            ),
            key(
                "relayhost_password_timeout_secs",
                "integer",
                Toml("30"),
                "Then the command and its children are killed and the delivery deferred 4.7.0.",
            ),
            key(
                "retry_initial_secs",
                "integer",
                Toml("300"),
                "First retry after a temporary failure, doubling per attempt.",
            ),
            key(
                "retry_max_secs",
                "integer",
                Toml("3600"),
                "Longest wait between retries.",
            ),
            key(
                "max_lifetime_secs",
                "integer",
                Toml("432000"),
                "After this long in the queue a message bounces (5 days).",
            ),
            key(
                "delay_warning_secs",
                "integer",
                Toml("14400"),
                "Age at which a delay DSN goes out (0: never).",
            ),
            key(
                "concurrency",
                "integer",
                Toml("20"),
                "Parallel remote sessions (within delivery_workers).",
            ),
            key(
                "destination_concurrency",
                "integer",
                Toml("20"),
                "Parallel sessions per domain or relayhost.",
            ),
            key(
                "connect_timeout_secs",
                "integer",
                Toml("30"),
                "TCP connect timeout.",
            ),
            key(
                "command_timeout_secs",
                "integer",
                Toml("300"),
                "Reply timeout per command (RFC 5321 4.5.3.2).",
            ),
            key(
                "data_timeout_secs",
                "integer",
                Toml("600"),
                "Timeout of the reply after the message content.",
            ),
            key(
                "connection_idle_secs",
                "integer",
                Toml("5"),
                "An idle session is kept this long for the next message to its destination.",
            ),
            key(
                "max_messages_per_connection",
                "integer",
                Toml("100"),
                "Transactions per session.",
            ),
            key(
                "max_recipients_per_transaction",
                "integer",
                Toml("50"),
                "Recipients per transaction; more go in further transactions.",
            ),
            key(
                "mta_sts",
                "boolean",
                Toml("true"),
                "Apply recipient domains' MTA-STS policies (RFC 8461) to MX delivery: the \
                 _mta-sts TXT record, the policy from https://mta-sts.DOMAIN/.well-known/\
                 mta-sts.txt, cached in <state_dir>/mta-sts/ until max_age (also across \
                 restarts; used when a fetch fails). enforce: only MX hosts the policy names, \
                 only over STARTTLS with a certificate valid for the MX name (ca_file or the \
                 webpki roots), else deferred (4.7.5); testing: delivered anyway, the failure \
                 logged; none: nothing.",
            ),
            key(
                "mta_sts_ca_file",
                "path",
                Text("the webpki roots"),
                "Trust anchors for the HTTPS policy hosts (mta-sts.DOMAIN).",
            ),
            key(
                "mta_sts_port",
                "integer",
                Toml("443"),
                "HTTPS port of the policy hosts.",
            ),
            key(
                "mta_sts_timeout_secs",
                "integer",
                Toml("30"),
                "Time limit of one policy fetch (connect, TLS, request, response of at most \
                 64 KiB; redirects are not followed, RFC 8461 §3.3).",
            ),
            key(
                "domains",
                "table of tables",
                Toml("{}"),
                "Per destination domain, see [mrelayd.remote.domains.\"DOMAIN\"].",
            ),
        ],
    },
    Table {
        name: "mrelayd.dkim.DOMAIN",
        header: "[mrelayd.dkim.\"DOMAIN\"]",
        programs: &["mrelayd"],
        about: "DKIM signing (RFC 6376) of mail whose From: is in DOMAIN, when it comes from an \
                authenticated submitter or a trusted network: relaxed/relaxed, no l=, From \
                over-signed. Mail mrelayd writes is signed too, when queued: bounces and delay \
                warnings with the keys of the hostname's domain (From: MAILER-DAEMON@HOSTNAME), \
                Sieve vacation replies and redirects by their From: domain (never a redirect \
                of mail from outside).",
        keys: &[key(
            "keys",
            "table of paths",
            Toml("{}"),
            "Selector = private key file (PEM, 0600; from mrelayd dkim keygen, or PKCS#1 or \
             PKCS#8 from openssl). The algorithm comes from the key (RSA, 2048 to 8192 bits: \
             rsa-sha256, Ed25519: ed25519-sha256); every key of the domain signs, so an RSA \
             and an Ed25519 key give two signatures. A key that cannot be used is refused at \
             start (exit 78).",
        )],
    },
    Table {
        name: "mrelayd.srs",
        header: "[mrelayd.srs]",
        programs: &["mrelayd"],
        about: "SRS, the Sender Rewriting Scheme (libsrs2's and postsrsd's format): mail an \
                alias or a Sieve redirect forwards to a remote domain goes out from \
                SRS0=HASH=TT=domain=local@DOMAIN (SRS1=... for an SRS0 sender), so SPF at the \
                next hop checks our domain; RCPT TO such an address with a good hash and an \
                unexpired timestamp is relayed back to the original sender, a forged or \
                expired one refused with 550 5.1.1. The null sender, senders in local domains \
                and mail relayed for clients keep their sender.",
        keys: &[
            key(
                "enable",
                "boolean",
                Toml("false"),
                "Rewrite and reverse SRS addresses.",
            ),
            key(
                "secret_file",
                "path",
                Text("unset (required with enable)"),
                "The secrets, one a line, mode 0600: the first signs, every one verifies \
                 (rotate by adding a new first line); postsrsd's secret file works as it is.",
            ),
            key(
                "domain",
                "string",
                Text("the first of [users] domains, else the host name"),
                "The domain of our SRS addresses; its SPF record must allow this host.",
            ),
            key(
                "max_age_days",
                "integer",
                Toml("21"),
                "An SRS0 address older than this many days is refused (550 5.1.1).",
            ),
        ],
    },
    Table {
        name: "mrelayd.remote.domains.DOMAIN",
        header: "[mrelayd.remote.domains.\"DOMAIN\"]",
        programs: &["mrelayd"],
        about: "Overrides for one destination domain.",
        keys: &[
            key(
                "relayhost",
                "string",
                Text("unset: by MX"),
                "Smarthost for this domain instead of its MX hosts.",
            ),
            key(
                "tls",
                "\"none\" | \"may\" | \"encrypt\" | \"verify\"",
                Text("[mrelayd.remote] tls"),
                "TLS to this domain's MX hosts.",
            ),
            key(
                "relayhost_tls",
                "\"none\" | \"may\" | \"starttls\" | \"tls\"",
                Text("[mrelayd.remote] relayhost_tls"),
                "TLS to this domain's relayhost.",
            ),
            key(
                "relayhost_user",
                "string",
                Text("unset"),
                "AUTH user at this domain's relayhost.",
            ),
            key(
                "relayhost_password_command",
                "string",
                Text("unset"),
                "Command printing that AUTH password.",
            ),
            key(
                "relayhost_auth",
                "\"plain\" | \"login\" | \"xoauth2\" | \"oauthbearer\"",
                Text("[mrelayd.remote] relayhost_auth"),
                "SASL mechanism of AUTH at this domain's relayhost.",
            ),
        ],
    },
    Table {
        name: "mpopd",
        header: "[mpopd]",
        programs: &["mpopd"],
        about: "The POP3 server.",
        keys: &[
            key(
                "listen",
                "list of tables",
                Toml("[{ address = \"0.0.0.0:110\", role = \"plain\" }]"),
                "Listening sockets of mpopd serve, see [[mpopd.listen]].",
            ),
            key(
                "allow_plaintext_auth",
                "\"never\" | \"loopback\" | \"always\"",
                Toml("\"loopback\""),
                "Logins before TLS: never, from loopback clients, or from anywhere (RFC 2595 \
                 2.2). Without [tls] cert, never is refused at start (no one could log in) and \
                 loopback on a listener that is not loopback gets a warning.",
            ),
            key(
                "apop",
                "boolean",
                Toml("true"),
                "Offer APOP (users with a {PLAIN} password can use it).",
            ),
            key(
                "idle_timeout_secs",
                "integer",
                Toml("600"),
                "Seconds without a command before the session is closed (RFC 1939 3: at least \
                 10 minutes).",
            ),
            key(
                "max_connections",
                "integer",
                Toml("200"),
                "Concurrent sessions.",
            ),
            key(
                "max_per_ip",
                "integer",
                Toml("20"),
                "Concurrent sessions per client address.",
            ),
            key(
                "max_per_ip_exceptions",
                "list of strings",
                Text("loopback (127.0.0.0/8, ::1/128)"),
                "Networks (CIDR) not held to max_per_ip nor the busy-server fair share, only to max_connections (as Postfix exempts $mynetworks); deadlines, error limits and login throttling still apply.",
            ),
            key(
                "max_errors",
                "integer",
                Toml("10"),
                "Bad commands before hanging up.",
            ),
            key(
                "max_auth_failures",
                "integer",
                Toml("3"),
                "Failed logins in one session before hanging up.",
            ),
            key(
                "session_deadline_secs",
                "integer",
                Toml("1800"),
                "No login or message retrieved for this long: -ERR and close.",
            ),
            key(
                "allow_symlinked_maildir",
                "boolean",
                Toml("false"),
                "Follow a symlink at a Maildir or its tmp/, new/, cur/ (else -ERR [SYS/TEMP] and \
                 the path logged).",
            ),
        ],
    },
    Table {
        name: "mpopd.listen[]",
        header: "[[mpopd.listen]] (or listen = [{ ... }])",
        programs: &["mpopd"],
        about: "One listening socket of mpopd serve.",
        keys: &[
            key(
                "address",
                "string",
                Text("required"),
                "IP:PORT to bind (port 0: any free port, printed when listening).",
            ),
            key(
                "role",
                "\"plain\" | \"implicit-tls\"",
                Toml("\"plain\""),
                "plain: STLS offered when [tls] has a certificate (port 110); implicit-tls: TLS \
                 from the first byte (port 995, needs [tls] cert).",
            ),
        ],
    },
    Table {
        name: "mimapd",
        header: "[mimapd]",
        programs: &["mimapd"],
        about: "The IMAP server.",
        keys: &[
            key(
                "listen",
                "list of tables",
                Toml("[{ address = \"0.0.0.0:143\", role = \"plain\" }]"),
                "Listening sockets of mimapd serve, see [[mimapd.listen]].",
            ),
            key(
                "allow_plaintext_auth",
                "\"never\" | \"loopback\" | \"always\"",
                Toml("\"loopback\""),
                "LOGIN and AUTHENTICATE before TLS: never, from loopback clients, or from \
                 anywhere (else LOGINDISABLED is advertised, RFC 3501 6.2.3). Without [tls] \
                 cert, never is refused at start and loopback on a listener that is not \
                 loopback gets a warning.",
            ),
            key(
                "idle_timeout_secs",
                "integer",
                Toml("1800"),
                "Seconds without input before * BYE (RFC 3501 5.4: at least 30 minutes; also \
                 while idling, RFC 2177).",
            ),
            key(
                "session_deadline_secs",
                "integer",
                Toml("7200"),
                "No login or completed command for this long: * BYE and close.",
            ),
            key(
                "max_connections",
                "integer",
                Toml("500"),
                "Concurrent sessions.",
            ),
            key(
                "max_per_ip",
                "integer",
                Toml("30"),
                "Concurrent sessions per client address.",
            ),
            key(
                "max_per_ip_exceptions",
                "list of strings",
                Text("loopback (127.0.0.0/8, ::1/128)"),
                "Networks (CIDR) not held to max_per_ip, only to max_connections.",
            ),
            key(
                "max_errors",
                "integer",
                Toml("20"),
                "BAD responses in one session before * BYE.",
            ),
            key(
                "max_auth_failures",
                "integer",
                Toml("3"),
                "Failed logins in one session before * BYE.",
            ),
            key(
                "max_command_size",
                "integer",
                Toml("65536"),
                "Octets of one command with its literals, APPEND's message excluded (a \
                 larger literal: NO [TOOBIG]; a longer line: * BYE).",
            ),
            key(
                "max_message_size",
                "integer",
                Toml("67108864"),
                "Octets of one APPEND message (larger: NO [TOOBIG] before it is read).",
            ),
            key(
                "allow_symlinked_maildir",
                "boolean",
                Toml("false"),
                "Follow a symlink at a Maildir or its tmp/, new/, cur/.",
            ),
        ],
    },
    Table {
        name: "mimapd.listen[]",
        header: "[[mimapd.listen]] (or listen = [{ ... }])",
        programs: &["mimapd"],
        about: "One listening socket of mimapd serve.",
        keys: &[
            key(
                "address",
                "string",
                Text("required"),
                "IP:PORT to bind (port 0: any free port, printed when listening).",
            ),
            key(
                "role",
                "\"plain\" | \"implicit-tls\"",
                Toml("\"plain\""),
                "plain: STARTTLS offered when [tls] has a certificate (port 143); \
                 implicit-tls: TLS from the first byte (port 993, needs [tls] cert).",
            ),
        ],
    },
    Table {
        name: "msend",
        header: "[msend] (in ~/.config/mailkit/msend.toml: the top level)",
        programs: &["msend"],
        about: "msend's accounts and spool.",
        keys: &[
            key(
                "default",
                "string",
                Text("unset: no account"),
                "Account used without -a.",
            ),
            key(
                "queue",
                "path",
                Text("unset: no spool"),
                "Spool directory for temporary failures (--queue).",
            ),
            key(
                "domain",
                "string",
                Text("hostname"),
                "Mail domain bare names (cron's root) get, in the envelope and the address \
                 fields From, Sender, Reply-To, To, Cc, Bcc, Resent-* ... (see BARE NAMES).",
            ),
            key(
                "aliases",
                "path",
                Text("unset"),
                "msmtp's aliases file: bare recipients replaced by addresses (see BARE NAMES).",
            ),
            key(
                "accounts",
                "table of tables",
                Toml("{}"),
                "Named accounts, see [msend.accounts.NAME].",
            ),
        ],
    },
    Table {
        name: "msend.accounts.NAME",
        header: "[msend.accounts.NAME] (in ~/.config/mailkit/msend.toml: [accounts.NAME])",
        programs: &["msend"],
        about: "One account; the command line overrides each key.",
        keys: &[
            key(
                "server",
                "string",
                Text("unset"),
                "Submission server, host or host:port.",
            ),
            key(
                "port",
                "integer",
                Text("587, or 465 with tls = \"tls\""),
                "Its port.",
            ),
            key(
                "tls",
                "\"starttls\" | \"tls\" | \"none\"",
                Text("\"starttls\""),
                "STARTTLS (required), implicit TLS (RFC 8314), or none (AUTH is then refused).",
            ),
            key("user", "string", Text("unset: no AUTH"), "AUTH user."),
            key(
                "password_command",
                "string",
                Text("unset: $MSEND_PASSWORD, else ~/.netrc"),
                "Command (sh -c) whose first output line is the password.",
            ),
            key(
                "auth",
                "\"plain\" | \"login\" | \"xoauth2\" | \"oauthbearer\"",
                Text("unset: PLAIN when offered, else LOGIN"),
                "SASL mechanism of AUTH (RFC 4954); with xoauth2 or oauthbearer (RFC 7628) the \
                 password command prints the OAuth 2.0 token.",
            ),
            key(
                "password_command_timeout",
                "integer",
                Text("30"),
                "Seconds it may run; then it is killed with its children (exit 78).",
            ),
            key(
                "from",
                "string",
                Text("unset"),
                "Envelope sender, and From: when missing.",
            ),
            key(
                "ca_file",
                "path",
                Text("the webpki roots"),
                "Trust only these CA certificates.",
            ),
            key(
                "tls_fingerprint",
                "string",
                Text("unset"),
                "SHA-256 of the server's key (SPKI, hex or base64): replaces the CA and name \
                 checks (see TLS KEY PIN).",
            ),
            key(
                "queue",
                "path",
                Text("[msend] queue"),
                "This account's spool.",
            ),
            key(
                "domain",
                "string",
                Text("[msend] domain"),
                "This account's mail domain (msmtp's maildomain).",
            ),
            key(
                "aliases",
                "path",
                Text("[msend] aliases"),
                "This account's aliases file.",
            ),
            key("ehlo", "string", Text("hostname"), "EHLO name."),
            key(
                "timeout",
                "integer",
                Text("60"),
                "Seconds for the connect and each reply.",
            ),
        ],
    },
    Table {
        name: "mfetch",
        header: "[mfetch]",
        programs: &["mfetch"],
        about: "mfetch's accounts and defaults.",
        keys: &[
            key(
                "maildir",
                "path",
                Text("~/Maildir"),
                "Destination Maildir of every account (created when missing).",
            ),
            key(
                "state_dir",
                "path",
                Text("$XDG_STATE_HOME/mailkit/mfetch, else ~/.local/state/mailkit/mfetch"),
                "Where each account's state file (what was fetched) and its lock are.",
            ),
            key(
                "concurrency",
                "integer",
                Text("4"),
                "How many accounts are fetched at once.",
            ),
            key(
                "poll_secs",
                "integer",
                Text("300"),
                "With --idle: seconds between fetches of a POP3 account or of an IMAP server \
                 without IDLE (--poll overrides).",
            ),
            key(
                "accounts",
                "table of tables",
                Toml("{}"),
                "Named accounts, see [mfetch.accounts.NAME].",
            ),
        ],
    },
    Table {
        name: "mfetch.accounts.NAME",
        header: "[mfetch.accounts.NAME]",
        programs: &["mfetch"],
        about: "One account (the shape of msend's); the command line overrides each key.",
        keys: &[
            key(
                "server",
                "string",
                Text("required"),
                "pop3://, pop3s://, imap:// or imaps:// URL: host, optional user@, :port and \
                 /FOLDER (IMAP).",
            ),
            key("user", "string", Text("the URL's user"), "Login name."),
            key(
                "password_command",
                "string",
                Text("unset: ~/.netrc, else a prompt on a terminal"),
                "Command (sh -c) whose first output line is the password.",
            ),
            key(
                "password_command_timeout",
                "integer",
                Text("30"),
                "Seconds it may run; then it is killed with its children (exit 78).",
            ),
            key(
                "tls",
                "\"starttls\" | \"tls\" | \"none\"",
                Text("by scheme: tls for pop3s/imaps, else starttls"),
                "STARTTLS/STLS (required), implicit TLS, or none (needs allow_plaintext).",
            ),
            key(
                "ca_file",
                "path",
                Text("the webpki roots"),
                "Trust only these CA certificates.",
            ),
            key(
                "tls_fingerprint",
                "string",
                Text("unset"),
                "SHA-256 of the server's key (SPKI, hex or base64): replaces the CA and name \
                 checks.",
            ),
            key(
                "allow_plaintext",
                "boolean",
                Toml("false"),
                "Allow the password to be sent without TLS.",
            ),
            key(
                "auth",
                "\"any\" | \"sasl-plain\" | \"user\" | \"apop\" | \"xoauth2\" | \"oauthbearer\"",
                Text("\"any\""),
                "Login: any (SASL PLAIN when offered, else USER/PASS or LOGIN), sasl-plain, \
                 user (USER/PASS, IMAP LOGIN), apop (POP3), xoauth2 or oauthbearer (RFC 7628; \
                 the password command prints the OAuth 2.0 token; under --idle a refused token \
                 is fetched afresh once).",
            ),
            key(
                "folders",
                "array of strings",
                Text("the URL's folder, else [\"INBOX\"]"),
                "IMAP folders to fetch, each into the Maildir++ folder of the same name.",
            ),
            key(
                "delete",
                "boolean",
                Toml("false"),
                "Delete on the server once the local copy is durable (default: keep).",
            ),
            key(
                "seen",
                "boolean",
                Toml("false"),
                "IMAP: set \\Seen on the server once the local copy is durable.",
            ),
            key(
                "move_to",
                "string",
                Text("unset"),
                "IMAP: move fetched messages to this server folder (MOVE, RFC 6851, else COPY and \
                 delete; created when missing).",
            ),
            key(
                "maildir",
                "path",
                Text("[mfetch] maildir"),
                "This account's destination Maildir.",
            ),
            key(
                "mda",
                "string",
                Text("unset: the Maildir"),
                "Command (sh -c) run per message, message on stdin, SENDER and RECIPIENT set.",
            ),
            key(
                "recipient",
                "string",
                Text("$USER"),
                "RECIPIENT given to the MDA.",
            ),
            key(
                "timeout",
                "integer",
                Text("60"),
                "Seconds for the connect and each read.",
            ),
        ],
    },
];

/// The tables `program` reads, in file order.
pub fn tables_of(program: &str) -> impl Iterator<Item = &'static Table> + '_ {
    TABLES.iter().filter(move |t| t.programs.contains(&program))
}

/// Breaks `text` into lines of at most `width` characters (longer words stay whole).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// The CONFIGURATION section of `program`'s man page (the after-help text format: a title
/// line, then indented text): every key of every table it reads, with type, default and
/// meaning.
pub fn man_section(program: &str, intro: &str) -> String {
    let mut out = String::from("CONFIGURATION\n");
    for line in wrap(intro, 76) {
        out.push_str(&format!("  {line}\n"));
    }
    for table in tables_of(program) {
        out.push_str(&format!("\n  {}\n", table.header));
        for line in wrap(table.about, 74) {
            out.push_str(&format!("    {line}\n"));
        }
        for k in table.keys {
            let default = match k.default {
                DefaultValue::Toml(v) => v,
                DefaultValue::Text(t) => t,
            };
            out.push_str(&format!("    {} ({}; default: {default})\n", k.name, k.ty));
            for line in wrap(k.meaning, 70) {
                out.push_str(&format!("        {line}\n"));
            }
        }
    }
    out
}

/// A deserializer that only answers serde's derived `deserialize_struct` call, with the
/// struct's field names: what a `#[serde(deny_unknown_fields)]` section type accepts.
struct Probe;

#[derive(Debug)]
enum Probed {
    Fields(&'static [&'static str]),
    Other(String),
}

impl std::fmt::Display for Probed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Probed::Fields(fields) => write!(f, "fields {fields:?}"),
            Probed::Other(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Probed {}

impl serde::de::Error for Probed {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Probed::Other(msg.to_string())
    }
}

impl<'de> serde::Deserializer<'de> for Probe {
    type Error = Probed;
    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Probed> {
        Err(Probed::Other("not a struct".into()))
    }
    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Probed> {
        Err(Probed::Fields(fields))
    }
    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
        identifier ignored_any
    }
}

/// The keys a section type accepts, from serde's own field list of its derived
/// `Deserialize` (so the table can be checked against the parser); `None` when `T` is not a
/// struct.
pub fn fields_of<T: serde::de::DeserializeOwned>() -> Option<&'static [&'static str]> {
    match T::deserialize(Probe) {
        Err(Probed::Fields(fields)) => Some(fields),
        _ => None,
    }
}

/// The keys the top level of the file accepts (its private type's fields).
pub fn top_level_fields() -> &'static [&'static str] {
    fields_of::<super::Raw>().unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_man_section_names_every_key_of_the_program() {
        for program in ALL_CONFIG_READERS {
            let text = man_section(program, "intro");
            for table in tables_of(program) {
                assert!(text.contains(table.header), "{program}: {}", table.header);
                for k in table.keys {
                    assert!(
                        text.contains(&format!("    {} (", k.name)),
                        "{program}: {}",
                        k.name
                    );
                }
            }
        }
    }

    #[test]
    fn the_top_level_fields_are_probed() {
        assert!(top_level_fields().contains(&"hostname"));
        assert!(top_level_fields().contains(&"mdig-mx"));
        assert_eq!(fields_of::<u32>(), None);
    }
}
