complete -c mdeliver -s h -l help -d 'Print help'
complete -c mdeliver -s V -l version -d 'Print version'
