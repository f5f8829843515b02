# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_mrelayd_global_optspecs
    string join \n c/config= h/help V/version
end

function __fish_mrelayd_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_mrelayd_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_mrelayd_using_subcommand
    set -l cmd (__fish_mrelayd_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c mrelayd -n "__fish_mrelayd_needs_command" -s c -l config -d 'Configuration file (default: $MAILKIT_CONFIG, else /etc/mailkit/mailkit.toml)' -r -F
complete -c mrelayd -n "__fish_mrelayd_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mrelayd -n "__fish_mrelayd_needs_command" -s V -l version -d 'Print version'
complete -c mrelayd -n "__fish_mrelayd_needs_command" -f -a "serve" -d 'Listen on the configured addresses, deliver the queue, until SIGTERM/SIGINT'
complete -c mrelayd -n "__fish_mrelayd_needs_command" -f -a "inetd" -d 'Serve one SMTP session on stdin/stdout (inetd, tcpserver, systemd Accept=yes), then deliver what it accepted'
complete -c mrelayd -n "__fish_mrelayd_needs_command" -f -a "queue" -d 'List the queue like mailq, or act on one entry'
complete -c mrelayd -n "__fish_mrelayd_needs_command" -f -a "flush" -d 'Make the running daemon retry every queued message now (or deliver them here when no daemon runs)'
complete -c mrelayd -n "__fish_mrelayd_needs_command" -f -a "quickstart" -d 'Create a demo setup in DIR (default ./mailkit-demo) and run it on loopback'
complete -c mrelayd -n "__fish_mrelayd_needs_command" -f -a "__spawner" -d 'Internal: the privileged spawner a daemon with system users starts (README "Privileges")'
complete -c mrelayd -n "__fish_mrelayd_needs_command" -f -a "__child" -d 'Internal: a child the spawner runs as a system user (`deliver USER MAILDIR SENDER RCPT`)'
complete -c mrelayd -n "__fish_mrelayd_needs_command" -f -a "dkim" -d 'DKIM keys: `mrelayd dkim keygen DOMAIN SELECTOR`'
complete -c mrelayd -n "__fish_mrelayd_needs_command" -f -a "explain" -d 'Print what the running config would answer to a client, stage by stage, and why'
complete -c mrelayd -n "__fish_mrelayd_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand serve" -s c -l config -d 'Configuration file (default: $MAILKIT_CONFIG, else /etc/mailkit/mailkit.toml)' -r -F
complete -c mrelayd -n "__fish_mrelayd_using_subcommand serve" -s h -l help -d 'Print help'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand inetd" -l role -d 'Listener role: smtp, submission or submissions (implicit TLS)' -r
complete -c mrelayd -n "__fish_mrelayd_using_subcommand inetd" -s c -l config -d 'Configuration file (default: $MAILKIT_CONFIG, else /etc/mailkit/mailkit.toml)' -r -F
complete -c mrelayd -n "__fish_mrelayd_using_subcommand inetd" -s h -l help -d 'Print help'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand queue; and not __fish_seen_subcommand_from list show remove hold release help" -s c -l config -d 'Configuration file (default: $MAILKIT_CONFIG, else /etc/mailkit/mailkit.toml)' -r -F
complete -c mrelayd -n "__fish_mrelayd_using_subcommand queue; and not __fish_seen_subcommand_from list show remove hold release help" -s h -l help -d 'Print help'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand queue; and not __fish_seen_subcommand_from list show remove hold release help" -f -a "list" -d 'List every message (id, size, age, sender, recipients, last error)'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand queue; and not __fish_seen_subcommand_from list show remove hold release help" -f -a "show" -d 'Show one entry in full'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand queue; and not __fish_seen_subcommand_from list show remove hold release help" -f -a "remove" -d 'Delete one entry'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand queue; and not __fish_seen_subcommand_from list show remove hold release help" -f -a "hold" -d 'Set one entry aside (not delivered until released)'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand queue; and not __fish_seen_subcommand_from list show remove hold release help" -f -a "release" -d 'Release a held entry (delivered at the next run)'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand queue; and not __fish_seen_subcommand_from list show remove hold release help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand queue; and __fish_seen_subcommand_from list" -s c -l config -d 'Configuration file (default: $MAILKIT_CONFIG, else /etc/mailkit/mailkit.toml)' -r -F
complete -c mrelayd -n "__fish_mrelayd_using_subcommand queue; and __fish_seen_subcommand_from list" -l json -d 'Print one JSON document (field names under QUEUE JSON in the manual)'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand queue; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand queue; and __fish_seen_subcommand_from show" -s c -l config -d 'Configuration file (default: $MAILKIT_CONFIG, else /etc/mailkit/mailkit.toml)' -r -F
complete -c mrelayd -n "__fish_mrelayd_using_subcommand queue; and __fish_seen_subcommand_from show" -l json -d 'Print the entry as one JSON document (field names under QUEUE JSON)'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand queue; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand queue; and __fish_seen_subcommand_from remove" -s c -l config -d 'Configuration file (default: $MAILKIT_CONFIG, else /etc/mailkit/mailkit.toml)' -r -F
complete -c mrelayd -n "__fish_mrelayd_using_subcommand queue; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand queue; and __fish_seen_subcommand_from hold" -s c -l config -d 'Configuration file (default: $MAILKIT_CONFIG, else /etc/mailkit/mailkit.toml)' -r -F
complete -c mrelayd -n "__fish_mrelayd_using_subcommand queue; and __fish_seen_subcommand_from hold" -s h -l help -d 'Print help'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand queue; and __fish_seen_subcommand_from release" -s c -l config -d 'Configuration file (default: $MAILKIT_CONFIG, else /etc/mailkit/mailkit.toml)' -r -F
complete -c mrelayd -n "__fish_mrelayd_using_subcommand queue; and __fish_seen_subcommand_from release" -s h -l help -d 'Print help'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand queue; and __fish_seen_subcommand_from help" -f -a "list" -d 'List every message (id, size, age, sender, recipients, last error)'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand queue; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show one entry in full'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand queue; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Delete one entry'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand queue; and __fish_seen_subcommand_from help" -f -a "hold" -d 'Set one entry aside (not delivered until released)'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand queue; and __fish_seen_subcommand_from help" -f -a "release" -d 'Release a held entry (delivered at the next run)'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand queue; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand flush" -s c -l config -d 'Configuration file (default: $MAILKIT_CONFIG, else /etc/mailkit/mailkit.toml)' -r -F
complete -c mrelayd -n "__fish_mrelayd_using_subcommand flush" -s h -l help -d 'Print help'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand quickstart" -l user -d 'Started as root: run the demo as this user (default nobody) after preparing its directory for it' -r
complete -c mrelayd -n "__fish_mrelayd_using_subcommand quickstart" -s c -l config -d 'Configuration file (default: $MAILKIT_CONFIG, else /etc/mailkit/mailkit.toml)' -r -F
complete -c mrelayd -n "__fish_mrelayd_using_subcommand quickstart" -l no-run -d 'Only create the files, do not run'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand quickstart" -s h -l help -d 'Print help'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand __spawner" -s c -l config -d 'Configuration file (default: $MAILKIT_CONFIG, else /etc/mailkit/mailkit.toml)' -r -F
complete -c mrelayd -n "__fish_mrelayd_using_subcommand __spawner" -s h -l help -d 'Print help'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand __child" -s c -l config -d 'Configuration file (default: $MAILKIT_CONFIG, else /etc/mailkit/mailkit.toml)' -r -F
complete -c mrelayd -n "__fish_mrelayd_using_subcommand __child" -s h -l help -d 'Print help'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand dkim; and not __fish_seen_subcommand_from keygen help" -s c -l config -d 'Configuration file (default: $MAILKIT_CONFIG, else /etc/mailkit/mailkit.toml)' -r -F
complete -c mrelayd -n "__fish_mrelayd_using_subcommand dkim; and not __fish_seen_subcommand_from keygen help" -s h -l help -d 'Print help'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand dkim; and not __fish_seen_subcommand_from keygen help" -f -a "keygen" -d 'Write a new DKIM private key (0600) and print the DNS TXT record to publish'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand dkim; and not __fish_seen_subcommand_from keygen help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand dkim; and __fish_seen_subcommand_from keygen" -l algorithm -d 'Key algorithm: rsa (rsa-sha256) or ed25519 (ed25519-sha256, RFC 8463)' -r -f -a "rsa\t'rsa-sha256 (RFC 6376 §3.3.1)'
ed25519\t'ed25519-sha256 (RFC 8463)'"
complete -c mrelayd -n "__fish_mrelayd_using_subcommand dkim; and __fish_seen_subcommand_from keygen" -l bits -d 'RSA key size in bits (2048 to 4096)' -r
complete -c mrelayd -n "__fish_mrelayd_using_subcommand dkim; and __fish_seen_subcommand_from keygen" -s o -l output -d 'Key file to write (default: the config\'s path for DOMAIN and SELECTOR, else STATE_DIR/dkim/DOMAIN.SELECTOR.pem); an existing file is never replaced' -r -F
complete -c mrelayd -n "__fish_mrelayd_using_subcommand dkim; and __fish_seen_subcommand_from keygen" -s c -l config -d 'Configuration file (default: $MAILKIT_CONFIG, else /etc/mailkit/mailkit.toml)' -r -F
complete -c mrelayd -n "__fish_mrelayd_using_subcommand dkim; and __fish_seen_subcommand_from keygen" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand dkim; and __fish_seen_subcommand_from help" -f -a "keygen" -d 'Write a new DKIM private key (0600) and print the DNS TXT record to publish'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand dkim; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand explain" -l client -d 'The client\'s IP address' -r
complete -c mrelayd -n "__fish_mrelayd_using_subcommand explain" -l helo -d 'The EHLO name' -r
complete -c mrelayd -n "__fish_mrelayd_using_subcommand explain" -l auth -d 'Assume the client authenticated as this user' -r
complete -c mrelayd -n "__fish_mrelayd_using_subcommand explain" -l role -d 'Listener role' -r
complete -c mrelayd -n "__fish_mrelayd_using_subcommand explain" -l from -d 'Envelope sender (empty for <>)' -r
complete -c mrelayd -n "__fish_mrelayd_using_subcommand explain" -s c -l config -d 'Configuration file (default: $MAILKIT_CONFIG, else /etc/mailkit/mailkit.toml)' -r -F
complete -c mrelayd -n "__fish_mrelayd_using_subcommand explain" -s h -l help -d 'Print help'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand help; and not __fish_seen_subcommand_from serve inetd queue flush quickstart __spawner __child dkim explain help" -f -a "serve" -d 'Listen on the configured addresses, deliver the queue, until SIGTERM/SIGINT'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand help; and not __fish_seen_subcommand_from serve inetd queue flush quickstart __spawner __child dkim explain help" -f -a "inetd" -d 'Serve one SMTP session on stdin/stdout (inetd, tcpserver, systemd Accept=yes), then deliver what it accepted'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand help; and not __fish_seen_subcommand_from serve inetd queue flush quickstart __spawner __child dkim explain help" -f -a "queue" -d 'List the queue like mailq, or act on one entry'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand help; and not __fish_seen_subcommand_from serve inetd queue flush quickstart __spawner __child dkim explain help" -f -a "flush" -d 'Make the running daemon retry every queued message now (or deliver them here when no daemon runs)'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand help; and not __fish_seen_subcommand_from serve inetd queue flush quickstart __spawner __child dkim explain help" -f -a "quickstart" -d 'Create a demo setup in DIR (default ./mailkit-demo) and run it on loopback'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand help; and not __fish_seen_subcommand_from serve inetd queue flush quickstart __spawner __child dkim explain help" -f -a "__spawner" -d 'Internal: the privileged spawner a daemon with system users starts (README "Privileges")'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand help; and not __fish_seen_subcommand_from serve inetd queue flush quickstart __spawner __child dkim explain help" -f -a "__child" -d 'Internal: a child the spawner runs as a system user (`deliver USER MAILDIR SENDER RCPT`)'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand help; and not __fish_seen_subcommand_from serve inetd queue flush quickstart __spawner __child dkim explain help" -f -a "dkim" -d 'DKIM keys: `mrelayd dkim keygen DOMAIN SELECTOR`'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand help; and not __fish_seen_subcommand_from serve inetd queue flush quickstart __spawner __child dkim explain help" -f -a "explain" -d 'Print what the running config would answer to a client, stage by stage, and why'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand help; and not __fish_seen_subcommand_from serve inetd queue flush quickstart __spawner __child dkim explain help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand help; and __fish_seen_subcommand_from queue" -f -a "list" -d 'List every message (id, size, age, sender, recipients, last error)'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand help; and __fish_seen_subcommand_from queue" -f -a "show" -d 'Show one entry in full'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand help; and __fish_seen_subcommand_from queue" -f -a "remove" -d 'Delete one entry'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand help; and __fish_seen_subcommand_from queue" -f -a "hold" -d 'Set one entry aside (not delivered until released)'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand help; and __fish_seen_subcommand_from queue" -f -a "release" -d 'Release a held entry (delivered at the next run)'
complete -c mrelayd -n "__fish_mrelayd_using_subcommand help; and __fish_seen_subcommand_from dkim" -f -a "keygen" -d 'Write a new DKIM private key (0600) and print the DNS TXT record to publish'
