complete -c mdeliver -s f -l sender -d 'Envelope sender, written as `Return-Path: <SENDER>` (empty for the null sender); default: $SENDER, where an empty value is the null sender too' -r
complete -c mdeliver -s d -l recipient -d 'Envelope recipient, written as `Delivered-To: RECIPIENT` and checked for mail loops; default: $RECIPIENT' -r
complete -c mdeliver -l folder -d 'Deliver into this Maildir++ subfolder (`Lists/Rust` or `Lists.Rust`), created when missing' -r
complete -c mdeliver -l sieve -d 'Filter through this Sieve script (RFC 5228)' -r -F
complete -c mdeliver -l sendmail -d 'Command that Sieve\'s redirect and vacation submit through: a sendmail-compatible program and its arguments, separated by spaces (no shell); `-i -f SENDER -- RECIPIENT` is added and the message goes to its stdin. Default: msend (next to mdeliver, else from PATH), which then needs its own configuration (a server to submit to)' -r
complete -c mdeliver -l max-size -d 'Refuse (exit 65) a message larger than this many bytes' -r
complete -c mdeliver -l allow-symlinked-maildir -d 'Follow a symlink at the Maildir itself or at its tmp/, new/, cur/ or folder directories (refused by default, exit 75); files are never followed'
complete -c mdeliver -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mdeliver -s V -l version -d 'Print version'
