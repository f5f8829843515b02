complete -c mrelayd -s h -l help -d 'Print help'
complete -c mrelayd -s V -l version -d 'Print version'
