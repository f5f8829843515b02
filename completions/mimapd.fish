# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_mimapd_global_optspecs
    string join \n c/config= h/help V/version
end

function __fish_mimapd_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_mimapd_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_mimapd_using_subcommand
    set -l cmd (__fish_mimapd_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c mimapd -n "__fish_mimapd_needs_command" -s c -l config -d 'Configuration file (default: $MAILKIT_CONFIG, else /etc/mailkit/mailkit.toml)' -r -F
complete -c mimapd -n "__fish_mimapd_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mimapd -n "__fish_mimapd_needs_command" -s V -l version -d 'Print version'
complete -c mimapd -n "__fish_mimapd_needs_command" -f -a "serve" -d 'Listen on the configured addresses and serve until SIGTERM/SIGINT'
complete -c mimapd -n "__fish_mimapd_needs_command" -f -a "inetd" -d 'Serve one session on stdin/stdout (inetd, tcpserver, systemd Accept=yes)'
complete -c mimapd -n "__fish_mimapd_needs_command" -f -a "__spawner" -d 'Internal: the privileged spawner a daemon with system users starts (README "Privileges")'
complete -c mimapd -n "__fish_mimapd_needs_command" -f -a "__child" -d 'Internal: a session child the spawner runs as a system user (`imap USER MAILDIR TAG PEER`)'
complete -c mimapd -n "__fish_mimapd_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c mimapd -n "__fish_mimapd_using_subcommand serve" -s c -l config -d 'Configuration file (default: $MAILKIT_CONFIG, else /etc/mailkit/mailkit.toml)' -r -F
complete -c mimapd -n "__fish_mimapd_using_subcommand serve" -s h -l help -d 'Print help'
complete -c mimapd -n "__fish_mimapd_using_subcommand inetd" -s c -l config -d 'Configuration file (default: $MAILKIT_CONFIG, else /etc/mailkit/mailkit.toml)' -r -F
complete -c mimapd -n "__fish_mimapd_using_subcommand inetd" -l implicit-tls -d 'The connection is already TLS from the first byte (an IMAPS inetd entry)'
complete -c mimapd -n "__fish_mimapd_using_subcommand inetd" -s h -l help -d 'Print help'
complete -c mimapd -n "__fish_mimapd_using_subcommand __spawner" -s c -l config -d 'Configuration file (default: $MAILKIT_CONFIG, else /etc/mailkit/mailkit.toml)' -r -F
complete -c mimapd -n "__fish_mimapd_using_subcommand __spawner" -s h -l help -d 'Print help'
complete -c mimapd -n "__fish_mimapd_using_subcommand __child" -s c -l config -d 'Configuration file (default: $MAILKIT_CONFIG, else /etc/mailkit/mailkit.toml)' -r -F
complete -c mimapd -n "__fish_mimapd_using_subcommand __child" -s h -l help -d 'Print help'
complete -c mimapd -n "__fish_mimapd_using_subcommand help; and not __fish_seen_subcommand_from serve inetd __spawner __child help" -f -a "serve" -d 'Listen on the configured addresses and serve until SIGTERM/SIGINT'
complete -c mimapd -n "__fish_mimapd_using_subcommand help; and not __fish_seen_subcommand_from serve inetd __spawner __child help" -f -a "inetd" -d 'Serve one session on stdin/stdout (inetd, tcpserver, systemd Accept=yes)'
complete -c mimapd -n "__fish_mimapd_using_subcommand help; and not __fish_seen_subcommand_from serve inetd __spawner __child help" -f -a "__spawner" -d 'Internal: the privileged spawner a daemon with system users starts (README "Privileges")'
complete -c mimapd -n "__fish_mimapd_using_subcommand help; and not __fish_seen_subcommand_from serve inetd __spawner __child help" -f -a "__child" -d 'Internal: a session child the spawner runs as a system user (`imap USER MAILDIR TAG PEER`)'
complete -c mimapd -n "__fish_mimapd_using_subcommand help; and not __fish_seen_subcommand_from serve inetd __spawner __child help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
