complete -c mdig-mx -s h -l help -d 'Print help'
complete -c mdig-mx -s V -l version -d 'Print version'
