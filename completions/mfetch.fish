complete -c mfetch -s h -l help -d 'Print help'
complete -c mfetch -s V -l version -d 'Print version'
