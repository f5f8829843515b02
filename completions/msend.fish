complete -c msend -s o -d 'sendmail option (-oi means -i; -oem, -odi, -odb, -oee, -om ... are ignored)' -r
complete -c msend -s b -d 'sendmail mode: -bm deliver a message (default), -bs SMTP session on stdin/stdout, -bp list the spool (as mailq), -bi do nothing (as newaliases)' -r
complete -c msend -s B -d 'Body type (-B 8BITMIME); ignored: msend decides from the message' -r
complete -c msend -s N -d 'DSN notify option; ignored' -r
complete -c msend -s O -d 'sendmail -O option=value; ignored' -r
complete -c msend -s f -d 'Envelope sender address (also used for a missing From:); -f \'<>\' for the null sender' -r
complete -c msend -s F -d 'Full name for a missing From: header' -r
complete -c msend -s a -l account -d 'Use this account from the configuration' -r
complete -c msend -s C -l config -d 'Read accounts from FILE, a msend.toml or a mailkit config with an [msend] section (default: ~/.config/mailkit/msend.toml, else the [msend] section of the mailkit config)' -r -F
complete -c msend -l server -d 'Submission server, HOST or HOST:PORT' -r
complete -c msend -l ca-file -d 'Trust only the CA certificates in FILE instead of the webpki roots' -r -F
complete -c msend -l tls-fingerprint -d 'Trust the server whose public key has this SHA-256 (64 hex digits, colons allowed, or base64), instead of checking its certificate against CAs and its name. It is the hash of the key (SPKI, RFC 7469), as mdig-mx prints it, not msmtp\'s hash of the whole certificate (see TLS KEY PIN)' -r
complete -c msend -l user -d 'AUTH user' -r
complete -c msend -l password-command -d 'Command whose first line of output is the password (run with sh -c). It is killed, with its children, after the account\'s password_command_timeout (default 30 s): exit 78' -r
complete -c msend -l resolver -d 'DNS server for --direct, IP or IP:PORT' -r
complete -c msend -l smtp-port -d 'SMTP port for --direct (default 25)' -r
complete -c msend -l queue -d 'Spool directory: a temporary failure stores the message there and exits 0' -r -F
complete -c msend -s q -d 'sendmail -q: the same as --flush. An attached interval (-q30m) or -qf is ignored: one run, then exit (schedule it with cron)' -r
complete -c msend -l quit-after -d 'Stop with QUIT after this stage: connect, banner, ehlo, tls, auth, mail, rcpt (nothing is delivered; a refusal on the way, or a stage the session never reaches, is not exit 0)' -r -f -a "connect\t''
banner\t''
ehlo\t''
tls\t''
auth\t''
mail\t''
rcpt\t''"
complete -c msend -l timeout -d 'Time limit in seconds for connecting and for each reply (default 60). With -bs also for each command and each read of message content from the client on stdin (default there 300 and 600, as RFC 5321 §4.5.3.2 and mrelayd): a silent client gets 421, exit 75' -r
complete -c msend -l ehlo -d 'Name to send in EHLO (default: the host name)' -r
complete -c msend -l to -d 'Compose mode: To: recipient (repeatable)' -r
complete -c msend -l cc -d 'Compose mode: Cc: recipient (repeatable)' -r
complete -c msend -l bcc -d 'Compose mode: blind recipient (repeatable; never in a header)' -r
complete -c msend -l subject -d 'Compose mode: subject' -r
complete -c msend -l attach -d 'Compose mode: attach a file (type from its extension; repeatable)' -r -F
complete -c msend -l html -d 'Compose mode: HTML alternative from FILE' -r -F
complete -c msend -l from -d 'Compose mode: From: address (`addr` or `Name <addr>`)' -r
complete -c msend -s t -d 'Read recipients from the To, Cc and Bcc headers (Resent-* when present)'
complete -c msend -s i -d 'A line with a lone dot does not end the input (also -oi)'
complete -c msend -s v -l verbose -d 'Print the SMTP dialogue on stderr (passwords redacted)'
complete -c msend -l tls -d 'Implicit TLS (port 465 by default)'
complete -c msend -l starttls -d 'STARTTLS, required (the default; port 587)'
complete -c msend -l no-tls -d 'No TLS (AUTH is then refused)'
complete -c msend -l direct -d 'Deliver directly to each recipient domain\'s MX hosts instead of a server, as mrelayd does: STARTTLS when offered, and DANE (RFC 7672) where a validating resolver says the MX host\'s TLSA records are DNSSEC-secure (TLS then required, the certificate checked). MTA-STS policies (RFC 8461) are not applied: they need mrelayd\'s policy cache'
complete -c msend -l flush -d 'Retry every spooled message, oldest first'
complete -c msend -l list -d 'List the spool'
complete -c msend -l dry-run -d 'Print the message instead of sending it'
complete -c msend -s h -l help -d 'Print help (see more with \'--help\')'
complete -c msend -s V -l version -d 'Print version'
