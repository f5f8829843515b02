//! mdig-mx's progress spinner: drawn while probing when it runs on a terminal (a real pty from
//! util-linux `script`), never when stdout is a pipe or with --json.
mod common;

use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Stdio};

/// What the spinner says while the MX hosts are probed.
const SPINNER_TEXT: &str = "probing the MX hosts of silent.test";

/// An MX that accepts connections and never greets, so the probe lasts the whole timeout and
/// the spinner ticks many times.
fn silent_server() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

fn args(dns: &common::Dns, port: u16, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "--resolver",
        &dns.addr(),
        "--probe",
        "--port",
        &port.to_string(),
        "--timeout",
        "2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v.push("silent.test".into());
    v
}

/// Runs `mdig-mx ARGS` on a pseudo-terminal (stdout and stderr both on it); returns what the
/// terminal showed.
fn on_tty(args: &[String]) -> String {
    let mut line = common::bin("mdig-mx").display().to_string();
    for a in args {
        line.push(' ');
        line.push_str(a);
    }
    let mut child = Command::new("timeout")
        .args(["60", "script", "-qfec", &line, "/dev/null"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("util-linux script");
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child.wait().unwrap();
    out
}

#[test]
fn spinner_only_on_a_terminal() {
    let dns = common::Dns::start(
        "mx-host=silent.test,mx.silent.test,10\nhost-record=mx.silent.test,127.0.0.1",
    );
    let (_server, port) = silent_server();
    let shown = on_tty(&args(&dns, port, &[]));
    assert!(
        shown.contains(SPINNER_TEXT),
        "no spinner on a terminal:\n{shown}"
    );
    // The report itself still comes, after the spinner is cleared.
    assert!(shown.contains("mx.silent.test"), "{shown}");
    // --json on a terminal: no spinner.
    let json = on_tty(&args(&dns, port, &["--json"]));
    assert!(!json.contains(SPINNER_TEXT), "spinner with --json:\n{json}");
    assert!(json.contains("\"domain\""), "{json}");
    // Through pipes: no spinner on either stream.
    let out = Command::new(common::bin("mdig-mx"))
        .args(args(&dns, port, &[]))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains(SPINNER_TEXT),
        "spinner through a pipe:\n{text}"
    );
    assert!(text.contains("mx.silent.test"), "{text}");
}
