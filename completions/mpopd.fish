complete -c mpopd -s h -l help -d 'Print help'
complete -c mpopd -s V -l version -d 'Print version'
