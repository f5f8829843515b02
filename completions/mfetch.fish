complete -c mfetch -s c -l config -d 'Configuration file (default: $MAILKIT_CONFIG, else /etc/mailkit/mailkit.toml)' -r -F
complete -c mfetch -s a -l account -d 'Fetch this account of [mfetch.accounts] (repeatable; default: every account)' -r
complete -c mfetch -l mda -d 'Deliver each message through CMD (sh -c) instead of into a Maildir' -r
complete -c mfetch -l maildir -d 'Destination Maildir (default: maildir = of the account or [mfetch], else ~/Maildir)' -r -F
complete -c mfetch -l recipient -d 'RECIPIENT for the MDA (default: recipient =, else $USER)' -r
complete -c mfetch -l folder -d 'IMAP folder to fetch (repeatable; default: the account\'s, else INBOX)' -r
complete -c mfetch -l since -d 'IMAP: only messages that arrived on or after DATE (YYYY-MM-DD)' -r
complete -c mfetch -l limit -d 'Fetch at most N messages per account and run' -r
complete -c mfetch -l poll -d 'With --idle: seconds between fetches without IMAP IDLE (default: poll_secs, else 300)' -r
complete -c mfetch -l password-command -d 'Password command for a URL (sh -c; first output line)' -r
complete -c mfetch -l ca-file -d 'Trust only the CA certificates in FILE' -r -F
complete -c mfetch -l fingerprint -d 'Trust the server holding the key with this SHA-256 (hex or base64)' -r
complete -c mfetch -l state-dir -d 'Directory of the state files' -r -F
complete -c mfetch -l timeout -d 'Seconds for the connect and each read (default 60)' -r
complete -c mfetch -l all -d 'Fetch every account (the default without -a)'
complete -c mfetch -l keep -d 'Keep messages on the server (the default)'
complete -c mfetch -l delete -d 'Delete messages on the server once their local copy is durable'
complete -c mfetch -l idle -d 'Stay connected and fetch new mail as it comes (IMAP IDLE, else polling), until SIGTERM/SIGINT'
complete -c mfetch -l allow-plaintext -d 'Allow the password to go out without TLS'
complete -c mfetch -s q -l quiet -d 'Errors only (for cron)'
complete -c mfetch -s v -l verbose -d 'One summary line per account, and what the sessions do'
complete -c mfetch -s h -l help -d 'Print help'
complete -c mfetch -s V -l version -d 'Print version'
