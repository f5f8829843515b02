complete -c msend -s h -l help -d 'Print help'
complete -c msend -s V -l version -d 'Print version'
