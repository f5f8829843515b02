//! The IMAP client protocol of mfetch (RFC 3501), sans-IO: commands as bytes, server
//! responses parsed by imap-codec.
