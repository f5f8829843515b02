complete -c mdig-mx -l resolver -d 'DNS server to ask instead of the system resolver: IP or IP:PORT ([v6]:PORT)' -r
complete -c mdig-mx -l port -d 'SMTP port to probe' -r
complete -c mdig-mx -l ehlo -d 'Name to send in EHLO when probing (default: this host\'s name)' -r
complete -c mdig-mx -l ca-file -d 'Verify server certificates (the probed MX hosts and the MTA-STS policy host) against this PEM CA file instead of the webpki roots' -r -F
complete -c mdig-mx -l mta-sts-port -d 'HTTPS port of mta-sts.DOMAIN, where the MTA-STS policy is fetched from' -r
complete -c mdig-mx -l timeout -d 'Time limit in seconds of each probe step (connect, each reply, TLS handshake)' -r
complete -c mdig-mx -l selector -d 'Also check the DKIM key NAME._domainkey.DOMAIN (repeatable)' -r
complete -c mdig-mx -l probe -d 'Connect to every MX address and check SMTP and STARTTLS'
complete -c mdig-mx -l json -d 'Print one JSON document (field names under JSON FIELDS in the manual)'
complete -c mdig-mx -s h -l help -d 'Print help (see more with \'--help\')'
complete -c mdig-mx -s V -l version -d 'Print version'
