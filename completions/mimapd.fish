complete -c mimapd -s h -l help -d 'Print help'
complete -c mimapd -s V -l version -d 'Print version'
