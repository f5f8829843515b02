//! Raw line clients for IMAP and POP3, for what imaplib, poplib and real clients never send
//! (bad literals, wrong-state commands, byte-exact replies). One copy, used by the mimapd,
//! mpopd and imap_mix tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// How long a raw client waits for one line before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A raw IMAP client.
pub struct Imap {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Imap {
    /// Connects to 127.0.0.1:`port` and reads the greeting (which must carry CAPABILITY).
    pub fn connect(port: u16) -> Imap {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut c = Imap {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        };
        let g = c.line();
        assert!(g.starts_with("* OK [CAPABILITY IMAP4rev1 "), "{g}");
        c
    }

    /// One line, CRLF included ("" when the server closed).
    pub fn line(&mut self) -> String {
        let mut l = String::new();
        self.r.read_line(&mut l).unwrap();
        l
    }

    /// Sends `bytes` as they are.
    pub fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).unwrap();
    }

    /// Sends `bytes` and reads up to and including the line starting with `tag `.
    pub fn run(&mut self, bytes: &[u8], tag: &str) -> String {
        self.send(bytes);
        self.until(tag)
    }

    /// Reads up to and including the line starting with `tag `.
    pub fn until(&mut self, tag: &str) -> String {
        let mut all = String::new();
        loop {
            let l = self.line();
            assert!(!l.is_empty(), "closed before {tag}: {all}");
            all.push_str(&l);
            if l.starts_with(&format!("{tag} ")) {
                return all;
            }
        }
    }

    /// Everything the server sends until it closes (or the read times out), lossy UTF-8.
    pub fn rest(&mut self) -> String {
        let mut rest = Vec::new();
        let _ = self.r.read_to_end(&mut rest);
        String::from_utf8_lossy(&rest).into_owned()
    }

    /// True when the server closed the connection.
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.r.read(&mut b), Ok(0))
    }
}

/// A raw POP3 client.
pub struct Pop {
    r: BufReader<TcpStream>,
}

impl Pop {
    /// Connects to 127.0.0.1:`port` and reads the +OK greeting.
    pub fn connect(port: u16) -> Pop {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut p = Pop {
            r: BufReader::new(s),
        };
        let g = p.line();
        assert!(g.starts_with("+OK"), "greeting {g}");
        p
    }

    /// The socket, to peek at what the server sent unasked.
    pub fn socket(&self) -> &TcpStream {
        self.r.get_ref()
    }

    /// Connects and logs in as `user` with the tests' password.
    pub fn logged_in(port: u16, user: &str) -> Pop {
        let mut p = Pop::connect(port);
        p.login(user);
        p
    }

    /// One line, CRLF included ("" when the server closed).
    pub fn line(&mut self) -> String {
        let mut l = String::new();
        self.r.read_line(&mut l).unwrap();
        l
    }

    /// Sends `cmd` and CRLF.
    pub fn send(&mut self, cmd: &[u8]) {
        let s = self.r.get_mut();
        s.write_all(cmd).unwrap();
        s.write_all(b"\r\n").unwrap();
    }

    /// Sends `cmd`; its first reply line.
    pub fn cmd(&mut self, cmd: &str) -> String {
        self.send(cmd.as_bytes());
        self.line()
    }

    /// Reads a multi-line body after its +OK line, raw (stuffing kept), terminator included.
    pub fn multi(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let mut l = Vec::new();
            self.r.read_until(b'\n', &mut l).unwrap();
            assert!(!l.is_empty(), "connection closed in a multi-line reply");
            out.extend_from_slice(&l);
            if l == b".\r\n" {
                return out;
            }
        }
    }

    /// Sends `cmd`, which must answer +OK, and returns the lines of its multi-line answer
    /// (CRLF kept, the terminator not).
    pub fn lines(&mut self, cmd: &str) -> Vec<String> {
        let first = self.cmd(cmd);
        assert!(first.starts_with("+OK"), "{cmd}: {first}");
        let body = String::from_utf8(self.multi()).unwrap();
        let mut out: Vec<String> = body.split_inclusive("\r\n").map(str::to_string).collect();
        out.pop();
        out
    }

    /// USER `user`, PASS password: both +OK.
    pub fn login(&mut self, user: &str) {
        assert!(self.cmd(&format!("USER {user}")).starts_with("+OK"));
        let r = self.cmd("PASS password");
        assert!(r.starts_with("+OK"), "PASS: {r}");
    }

    /// True when the server closed the connection.
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.r.read(&mut b), Ok(0))
    }
}
