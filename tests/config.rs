//! The config loader: file selection (`-c`, `MAILKIT_CONFIG`, defaults), shared keys, program
//! sections, and errors that name the file, the line and the key (exit code 78).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use mailkit::config::{self, Config};
use mailkit::exit;
use serde::Deserialize;

/// Tests that touch `MAILKIT_CONFIG` run one at a time (the environment is process-wide).
static ENV_LOCK: Mutex<()> = Mutex::new(());

/// A program section as a program would define it.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
struct PopSection {
    listen: Vec<String>,
    max_errors: u32,
    allow_plaintext: bool,
    tls: Option<PopTls>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct PopTls {
    implicit: bool,
}

impl config::Section for PopSection {}

impl Default for PopSection {
    fn default() -> Self {
        PopSection {
            listen: vec!["127.0.0.1:110".into()],
            max_errors: 10,
            allow_plaintext: false,
            tls: None,
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn err_text(r: anyhow::Result<impl std::fmt::Debug>) -> (String, u8) {
    let e = r.expect_err("expected a config error");
    (format!("{e:#}"), exit::code_of(&e))
}

const GOOD: &str = r#"# a full config
hostname = "mx.example.test"
state_dir = "state"

[tls]
cert = "/etc/ssl/c.pem"
key = "k.pem"

[users]
passwd_file = "passwd"
mail_location = "/var/mail/%d/%n"
domains = ["example.test", "example.org"]

[auth]
checkpassword = ["/usr/bin/checkpw", "-x"]
max_failures = 3

[run_as]
user = "mail"

[mpopd]
listen = ["127.0.0.1:1110", "[::1]:1110"]
max_errors = 5

[mpopd.tls]
implicit = true

[mdig-mx]
"#;

#[test]
fn full_file_loads_and_resolves_relative_paths() {
    let dir = common::scratch();
    let p = write(dir.path(), "mailkit.toml", GOOD);
    let c = Config::load(Some(&p)).unwrap();
    assert_eq!(c.path.as_deref(), Some(p.as_path()));
    assert_eq!(c.hostname, "mx.example.test");
    assert_eq!(c.state_dir, dir.path().join("state"));
    assert_eq!(c.tls.cert.as_deref(), Some(Path::new("/etc/ssl/c.pem")));
    assert_eq!(c.tls.key, Some(dir.path().join("k.pem")));
    assert_eq!(c.users.passwd_file, dir.path().join("passwd"));
    assert_eq!(c.users.mail_location, "/var/mail/%d/%n");
    assert_eq!(c.users.domains, vec!["example.test", "example.org"]);
    assert_eq!(
        c.auth.checkpassword,
        Some(vec!["/usr/bin/checkpw".to_string(), "-x".to_string()])
    );
    assert_eq!(c.auth.max_failures, 3);
    assert_eq!(
        c.auth.lockout_secs,
        config::AuthConfig::default().lockout_secs
    );
    let run_as = c.run_as.clone().unwrap();
    assert_eq!(run_as.user, "mail");
    assert_eq!(run_as.group, None);

    let pop: PopSection = c.section("mpopd").unwrap();
    assert_eq!(pop.listen, vec!["127.0.0.1:1110", "[::1]:1110"]);
    assert_eq!(pop.max_errors, 5);
    assert!(!pop.allow_plaintext, "absent key keeps the section default");
    assert_eq!(pop.tls, Some(PopTls { implicit: true }));
}

#[test]
fn absent_section_is_default() {
    let c = Config::parse("hostname = \"h\"\n", None).unwrap();
    let pop: PopSection = c.section("mpopd").unwrap();
    assert_eq!(pop, PopSection::default());
}

#[test]
fn unknown_section_name_is_a_program_bug() {
    let c = Config::parse("", None).unwrap();
    let r: anyhow::Result<PopSection> = c.section("mpop");
    let (msg, code) = err_text(r);
    assert!(msg.contains("mpop"), "{msg}");
    assert_eq!(msg, "config: no such program section [mpop]");
    assert_eq!(code, exit::SOFTWARE);
}

#[test]
fn unknown_key_in_section_names_file_line_key() {
    let dir = common::scratch();
    let text = "hostname = \"h\"\n\n[mpopd]\nmax_errors = 5\nmax_eror = 6\n";
    let p = write(dir.path(), "m.toml", text);
    let c = Config::load(Some(&p)).unwrap();
    let (msg, code) = err_text(c.section::<PopSection>("mpopd"));
    assert_eq!(code, exit::CONFIG);
    let want = format!("{}:5: key `mpopd.max_eror`:", p.display());
    assert!(msg.starts_with(&want), "{msg}\nwant prefix {want}");
    assert!(msg.contains("unknown field"), "{msg}");
    assert_eq!(
        msg,
        format!("{want} unknown field `max_eror`, expected one of `listen`, `max_errors`, `allow_plaintext`, `tls`")
    );
}

#[test]
fn bad_value_in_section_names_file_line_key() {
    let dir = common::scratch();
    let text = "[mpopd]\nlisten = [\"a\"]\n\n\nmax_errors = \"many\"\n";
    let p = write(dir.path(), "m.toml", text);
    let c = Config::load(Some(&p)).unwrap();
    let (msg, code) = err_text(c.section::<PopSection>("mpopd"));
    assert_eq!(code, exit::CONFIG);
    let want = format!("{}:5: key `mpopd.max_errors`:", p.display());
    assert!(msg.starts_with(&want), "{msg}\nwant prefix {want}");
    assert!(msg.contains("invalid type"), "{msg}");
    assert_eq!(
        msg,
        format!("{want} invalid type: string \"many\", expected u32")
    );
}

#[test]
fn bad_value_in_nested_table_and_array() {
    let text = "[mpopd]\nlisten = [\"a\",\n  7]\n[mpopd.tls]\nimplicit = \"yes\"\n";
    let c = Config::parse(text, Some(Path::new("x.toml"))).unwrap();
    let (msg, _) = err_text(c.section::<PopSection>("mpopd"));
    // The first error serde meets is the array element on line 3.
    assert!(msg.starts_with("x.toml:3: key `mpopd.listen`:"), "{msg}");
    assert_eq!(
        msg,
        "x.toml:3: key `mpopd.listen`: invalid type: integer `7`, expected a string"
    );
    let text = "[mpopd]\n[mpopd.tls]\nimplicit = \"yes\"\n";
    let c = Config::parse(text, Some(Path::new("x.toml"))).unwrap();
    let (msg, _) = err_text(c.section::<PopSection>("mpopd"));
    assert!(
        msg.starts_with("x.toml:3: key `mpopd.tls.implicit`:"),
        "{msg}"
    );
    assert_eq!(
        msg,
        "x.toml:3: key `mpopd.tls.implicit`: invalid type: string \"yes\", expected a boolean"
    );
}

#[test]
fn dotted_and_inline_section_keys_report_lines() {
    let text = "hostname = \"h\"\nmpopd.max_errors = 1\nmpopd.bogus = 2\n";
    let c = Config::parse(text, Some(Path::new("d.toml"))).unwrap();
    let (msg, _) = err_text(c.section::<PopSection>("mpopd"));
    assert!(msg.starts_with("d.toml:3: key `mpopd.bogus`:"), "{msg}");
    assert_eq!(
        msg,
        "d.toml:3: key `mpopd.bogus`: unknown field `bogus`, expected one of `listen`, `max_errors`, `allow_plaintext`, `tls`"
    );
    let text = "\nmpopd = { max_errors = 1,\n bogus = 2 }\n";
    let c = Config::parse(text, Some(Path::new("d.toml"))).unwrap();
    let (msg, _) = err_text(c.section::<PopSection>("mpopd"));
    assert!(msg.starts_with("d.toml:3: key `mpopd.bogus`:"), "{msg}");
    assert_eq!(
        msg,
        "d.toml:3: key `mpopd.bogus`: unknown field `bogus`, expected one of `listen`, `max_errors`, `allow_plaintext`, `tls`"
    );
}

#[test]
fn unknown_shared_key_names_file_line_key() {
    let text = "hostname = \"h\"\n[users]\npasswd_file = \"p\"\npasswdfile = \"q\"\n";
    let (msg, code) = err_text(Config::parse(text, Some(Path::new("/etc/x.toml"))));
    assert_eq!(code, exit::CONFIG);
    assert!(
        msg.starts_with("/etc/x.toml:4: key `users.passwdfile`:"),
        "{msg}"
    );
    assert!(msg.contains("unknown field"), "{msg}");
    assert_eq!(
        msg,
        "/etc/x.toml:4: key `users.passwdfile`: unknown field `passwdfile`, expected one of `passwd_file`, `mail_location`, `domains`"
    );
}

/// The top-level keys and tables, as an unknown-field error lists them.
const TOP_LEVEL: &str = "`hostname`, `state_dir`, `tls`, `users`, `auth`, `run_as`, `msend`, \
                         `mrelayd`, `mdeliver`, `mpopd`, `mimapd`, `mfetch`, `mdig-mx`";

#[test]
fn unknown_top_level_key_or_table_is_an_error() {
    let (msg, code) = err_text(Config::parse(
        "\nhostnme = \"h\"\n",
        Some(Path::new("t.toml")),
    ));
    assert_eq!(code, exit::CONFIG);
    assert!(msg.starts_with("t.toml:2: key `hostnme`:"), "{msg}");
    assert_eq!(
        msg,
        format!("t.toml:2: key `hostnme`: unknown field `hostnme`, expected one of {TOP_LEVEL}")
    );
    let (msg, code) = err_text(Config::parse("[mpop]\nx = 1\n", Some(Path::new("t.toml"))));
    assert!(msg.starts_with("t.toml:1: key `mpop`:"), "{msg}");
    assert_eq!(
        msg,
        format!("t.toml:1: key `mpop`: unknown field `mpop`, expected one of {TOP_LEVEL}")
    );
    assert_eq!(code, exit::CONFIG);
}

#[test]
fn bad_shared_values_name_the_key() {
    let cases = [
        (
            "[users]\ndomains = \"example.test\"\n",
            "t.toml:2: key `users.domains`: invalid type: string \"example.test\", expected a sequence",
        ),
        (
            "[auth]\nmax_failures = -1\n",
            "t.toml:2: key `auth.max_failures`: invalid value: integer `-1`, expected u32",
        ),
        (
            "mpopd = 3\n",
            "t.toml:1: key `mpopd`: invalid type: integer `3`, expected a map",
        ),
        (
            "\n[auth]\ncheckpassword = []\n",
            "t.toml:3: key `auth.checkpassword`: needs at least the program",
        ),
        (
            "hostname = \"\"\n",
            "t.toml:1: key `hostname`: must not be empty",
        ),
    ];
    for (text, want) in cases {
        let (msg, code) = err_text(Config::parse(text, Some(Path::new("t.toml"))));
        assert_eq!(msg, want, "{text:?}");
        assert_eq!(code, exit::CONFIG, "{text:?}");
    }
}

#[test]
fn syntax_error_names_file_and_line() {
    let (msg, code) = err_text(Config::parse(
        "hostname = \"h\"\n\n[users\n",
        Some(Path::new("s.toml")),
    ));
    assert_eq!(code, exit::CONFIG);
    assert!(msg.starts_with("s.toml:3:"), "{msg}");
    assert_eq!(msg, "s.toml:3: unclosed table, expected `]`");
}

#[test]
fn missing_or_unreadable_explicit_file_is_a_config_error() {
    let dir = common::scratch();
    let p = dir.path().join("nope.toml");
    let (msg, code) = err_text(Config::load(Some(&p)));
    assert_eq!(code, exit::CONFIG);
    assert!(msg.contains("nope.toml"), "{msg}");
    assert_eq!(
        msg,
        format!(
            "config {}: No such file or directory (os error 2)",
            p.display()
        )
    );
    let p = write(dir.path(), "bin.toml", "");
    std::fs::write(&p, b"hostname = \"\xff\"\n").unwrap();
    let (msg, code) = err_text(Config::load(Some(&p)));
    assert_eq!(code, exit::CONFIG);
    assert!(msg.contains("UTF-8"), "{msg}");
    assert_eq!(
        msg,
        format!(
            "config {}: not UTF-8: invalid utf-8 sequence of 1 bytes from index 12",
            p.display()
        )
    );
}

#[test]
fn oversized_file_is_refused() {
    let dir = common::scratch();
    let p = dir.path().join("big.toml");
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(config::MAX_CONFIG_SIZE + 1).unwrap();
    let (msg, code) = err_text(Config::load(Some(&p)));
    assert_eq!(code, exit::CONFIG);
    assert!(msg.contains("larger than"), "{msg}");
    assert_eq!(
        msg,
        format!(
            "config {}: larger than {} bytes",
            p.display(),
            config::MAX_CONFIG_SIZE
        )
    );
}

#[test]
fn env_var_selects_file_and_flag_wins() {
    let _g = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = common::scratch();
    let env_file = write(dir.path(), "env.toml", "hostname = \"from-env\"\n");
    let flag_file = write(dir.path(), "flag.toml", "hostname = \"from-flag\"\n");
    std::env::set_var(config::ENV_VAR, &env_file);
    let from_env = Config::load(None);
    let from_flag = Config::load(Some(&flag_file));
    std::env::set_var(config::ENV_VAR, dir.path().join("missing.toml"));
    let missing = Config::load(None);
    std::env::remove_var(config::ENV_VAR);
    assert_eq!(from_env.unwrap().hostname, "from-env");
    assert_eq!(from_flag.unwrap().hostname, "from-flag");
    let (msg, code) = err_text(missing);
    assert_eq!(code, exit::CONFIG);
    assert!(msg.contains("missing.toml"), "{msg}");
    assert_eq!(
        msg,
        format!(
            "config {}: No such file or directory (os error 2)",
            dir.path().join("missing.toml").display()
        )
    );
}

#[test]
fn defaults_apply_without_a_file() {
    let _g = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    std::env::remove_var(config::ENV_VAR);
    let c = Config::load(None).unwrap();
    if Path::new(config::DEFAULT_PATH).exists() {
        assert_eq!(c.path.as_deref(), Some(Path::new(config::DEFAULT_PATH)));
        return;
    }
    assert_eq!(c.path, None);
    assert_eq!(c.hostname, config::system_hostname());
    assert!(!c.hostname.is_empty());
    assert_eq!(c.state_dir, Path::new(config::DEFAULT_STATE_DIR));
    assert_eq!(c.users.passwd_file, Path::new(config::DEFAULT_PASSWD_FILE));
    assert_eq!(c.users.mail_location, config::DEFAULT_MAIL_LOCATION);
    assert!(c.users.domains.is_empty());
    assert_eq!(c.tls, config::TlsConfig::default());
    assert_eq!(c.auth, config::AuthConfig::default());
    assert!(c.run_as.is_none());
    let pop: PopSection = c.section("mpopd").unwrap();
    assert_eq!(pop, PopSection::default());
    // An empty file means the same defaults.
    let e = Config::parse("", None).unwrap();
    assert_eq!(e.users, c.users);
    assert_eq!(e.hostname, c.hostname);
}

#[test]
fn every_program_section_is_accepted() {
    let keyed = || {
        config::SECTIONS
            .into_iter()
            .filter(|s| !config::KEYLESS_SECTIONS.contains(s))
    };
    let text: String = config::SECTIONS
        .into_iter()
        .map(|s| match keyed().any(|k| k == s) {
            true => format!("[{s}]\nmax_errors = 1\n"),
            false => format!("[{s}]\n"),
        })
        .collect();
    let c = Config::parse(&text, None).unwrap();
    for s in keyed() {
        let sec: PopSection = c.section(s).unwrap();
        assert_eq!(sec.max_errors, 1, "{s}");
    }
}

/// A program that reads no keys does not silently ignore one (issue 12, docs).
#[test]
fn a_key_in_a_keyless_section_is_an_error() {
    for s in config::KEYLESS_SECTIONS {
        let text = format!("hostname = \"h\"\n[{s}]\nresolver = \"127.0.0.1\"\n");
        let (msg, code) = err_text(Config::parse(&text, Some(Path::new("t.toml"))));
        assert_eq!(code, exit::CONFIG, "{msg}");
        assert_eq!(
            msg,
            format!(
                "t.toml:3: key `{s}.resolver`: {s} reads no configuration keys (see `man {s}`)"
            )
        );
    }
}

#[test]
fn standalone_file_loads_with_the_same_errors() {
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Accounts {
        #[allow(dead_code)]
        account: Vec<Account>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Account {
        name: String,
        port: u16,
    }
    let dir = common::scratch();
    let good = write(
        dir.path(),
        "msend.toml",
        "[[account]]\nname = \"a\"\nport = 587\n[[account]]\nname = \"b\"\nport = 465\n",
    );
    let a: Accounts = config::load_file(&good).unwrap();
    assert_eq!(a.account.len(), 2);
    assert_eq!(a.account[1].name, "b");
    assert_eq!(a.account[1].port, 465);
    let bad = write(
        dir.path(),
        "bad.toml",
        "[[account]]\nname = \"a\"\nport = 587\n[[account]]\nname = \"b\"\nport = 70000\n",
    );
    let (msg, code) = err_text(config::load_file::<Accounts>(&bad));
    assert_eq!(code, exit::CONFIG);
    let want = format!("{}:6: key `account.port`:", bad.display());
    assert!(msg.starts_with(&want), "{msg}\nwant prefix {want}");
    assert_eq!(
        msg,
        format!("{want} invalid value: integer `70000`, expected u16")
    );
}

#[test]
fn adversarial_inputs_are_errors_not_panics() {
    let unquoted_empty =
        "f.toml:1: unquoted keys cannot be empty, expected letters, numbers, `-`, `_`";
    let cases: Vec<(String, &str)> = vec![
        ("[".into(), unquoted_empty),
        (
            "a = ".into(),
            "f.toml:1: string values must be quoted, expected literal string",
        ),
        ("\"".repeat(3), "f.toml:1: key with no value, expected `=`"),
        (
            "[[mpopd]]\nx = 1\n".into(),
            "f.toml:1: key `mpopd`: invalid type: sequence, expected a map",
        ),
        (
            // A TOML datetime reaches serde as a map.
            "hostname = 1979-05-27T07:32:00Z\n".into(),
            "f.toml:1: key `hostname`: invalid type: map, expected a string",
        ),
        (
            format!("{}1{}", "[".repeat(200), "]".repeat(200)),
            unquoted_empty,
        ),
        (
            format!("mpopd = {}{}", "{a=".repeat(100), "}".repeat(100)),
            "f.toml:1: cannot recurse further; max recursion depth met",
        ),
        (
            "hostname = \"h\"\nhostname = \"i\"\n".into(),
            "f.toml:2: duplicate key",
        ),
        (
            "hostname = \"a\u{0}b\"\n".into(),
            "f.toml:1: invalid basic string, expected non-double-quote visible characters, `\\`",
        ),
    ];
    for (text, want) in cases {
        let (msg, code) = err_text(Config::parse(&text, Some(Path::new("f.toml"))));
        assert_eq!(msg, want, "{text:?}");
        assert_eq!(code, exit::CONFIG, "{text:?}");
    }
    // A byte order mark is not an error: TOML files may start with one.
    let c = Config::parse("\u{feff}hostname = \"h\"\n", Some(Path::new("f.toml"))).unwrap();
    assert_eq!(c.hostname, "h");
}

/// A config directory with relative paths only (as `mrelayd quickstart` writes it): its own
/// certificate, passwd-file, state and Maildirs, listeners on port 0, `[run_as]` nobody.
fn relative_demo(dir: &Path) -> PathBuf {
    let demo = dir.join("demo");
    std::fs::create_dir_all(demo.join("mail")).unwrap();
    mailkit::tls::write_self_signed(&demo, &["localhost".to_string()]).unwrap();
    write(&demo, "passwd", "demo:{PLAIN}pw::::::\n");
    mailkit::maildir::Maildir::create(demo.join("mail/demo")).unwrap();
    let text = "hostname = \"localhost\"\nstate_dir = \"state\"\n\
[tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n\
[users]\npasswd_file = \"passwd\"\nmail_location = \"mail/%n\"\ndomains = [\"localhost\"]\n\
[mrelayd]\ntrusted_networks = []\naliases = \"aliases\"\n\
listen = [ { address = \"127.0.0.1:0\", role = \"smtp\" } ]\n\
[mpopd]\nlisten = [ { address = \"127.0.0.1:0\", role = \"plain\" } ]\n";
    write(&demo, "aliases", "postmaster: demo\n");
    let path = write(&demo, "mailkit.toml", &common::with_run_as(text));
    std::fs::create_dir_all(demo.join("state")).unwrap();
    common::give_to_nobody(dir);
    path
}

/// Paths in the config are relative to the config file's directory, whatever the working
/// directory and however `-c` was spelled, and `-c` goes before or after the subcommand: the
/// TLS certificate is found (STARTTLS/STLS offered), the passwd-file too (a login works), and
/// the daemons start. Before, `-c demo/mailkit.toml` read `demo/demo/cert.pem` (exit 78) and
/// `mpopd serve -c FILE` was a usage error.
#[test]
fn config_paths_are_relative_to_the_config_file_however_c_is_spelled() {
    use std::process::Command;
    let dir = common::scratch();
    let d = dir.path();
    let config = relative_demo(d);
    std::os::unix::fs::symlink(d.join("demo"), d.join("link")).unwrap();
    let abs = config.display().to_string();
    let spellings: [(&Path, &str); 6] = [
        (d, "demo/mailkit.toml"),
        (d, "./demo/mailkit.toml"),
        (d, "demo//mailkit.toml"),
        (d, "link/mailkit.toml"),
        (&d.join("demo"), "mailkit.toml"),
        (Path::new("/"), &abs),
    ];
    for (cwd, spelled) in spellings {
        for before in [true, false] {
            let run = |program: &str, sub: &str, input: &[u8]| {
                let mut cmd = Command::new(common::bin(program));
                cmd.current_dir(cwd).env_remove(config::ENV_VAR);
                if before {
                    cmd.args(["-c", spelled, sub]);
                } else {
                    cmd.args([sub, "-c", spelled]);
                }
                let out = common::run_with_input(&mut cmd, input);
                let text = String::from_utf8_lossy(&out.stdout).into_owned()
                    + &String::from_utf8_lossy(&out.stderr);
                let what = format!("{program} {sub} -c {spelled} in {}", cwd.display());
                assert!(out.status.success(), "{what}: {:?}\n{text}", out.status);
                (what, text)
            };
            let (what, text) = run("mrelayd", "inetd", b"EHLO t\r\nQUIT\r\n");
            assert!(text.contains("250-STARTTLS\r\n"), "{what}:\n{text}");
            let (what, text) = run(
                "mpopd",
                "inetd",
                b"CAPA\r\nUSER demo\r\nPASS pw\r\nSTAT\r\nQUIT\r\n",
            );
            assert!(text.contains("\r\nSTLS\r\n"), "{what}:\n{text}");
            assert!(text.contains("+OK 0 0\r\n"), "{what}:\n{text}");
            for (program, role) in [("mrelayd", "smtp"), ("mpopd", "pop3")] {
                let log = d.join(format!("{program}.log"));
                let mut cmd = Command::new(common::bin(program));
                cmd.current_dir(cwd).env_remove(config::ENV_VAR);
                if before {
                    cmd.args(["-c", spelled, "serve"]);
                } else {
                    cmd.args(["serve", "-c", spelled]);
                }
                let (daemon, _) = common::start_daemon(&mut cmd, &log, &[role]);
                drop(daemon);
            }
        }
    }
}

/// The keys a table of the file accepts, from the parser's own types (serde's field lists).
fn parser_fields(table: &str) -> std::collections::BTreeSet<&'static str> {
    use config::keys::fields_of;
    use mailkit::server::daemon::Listener;
    let fields = match table {
        "" => Some(config::keys::top_level_fields()),
        "tls" => fields_of::<config::TlsConfig>(),
        "users" => fields_of::<config::UsersConfig>(),
        "auth" => fields_of::<config::AuthConfig>(),
        "run_as" => fields_of::<config::RunAs>(),
        "mrelayd" => fields_of::<mailkit::relay::RelayConfig>(),
        "mrelayd.listen[]" => fields_of::<Listener<mailkit::relay::Role>>(),
        "mrelayd.remote" => fields_of::<mailkit::outbound::config::RemoteConfig>(),
        "mrelayd.remote.domains.DOMAIN" => fields_of::<mailkit::outbound::config::DomainPolicy>(),
        "mrelayd.filter.NAME" => fields_of::<mailkit::relay::filter::FilterConfig>(),
        "mrelayd.dkim.DOMAIN" => fields_of::<mailkit::dkim::DomainKeys>(),
        "mrelayd.spf_dmarc" => fields_of::<mailkit::relay::spf_dmarc::Config>(),
        "mrelayd.srs" => fields_of::<mailkit::relay::srs::SrsConfig>(),
        "mrelayd.rate_limit" => fields_of::<mailkit::relay::rate_limit::RateLimitConfig>(),
        "mpopd" => fields_of::<mailkit::pop3::Pop3Config>(),
        "mpopd.listen[]" => fields_of::<Listener<mailkit::pop3::config::Role>>(),
        "mimapd" => fields_of::<mailkit::imap::ImapConfig>(),
        "mimapd.listen[]" => fields_of::<Listener<mailkit::imap::config::Role>>(),
        "msend" => fields_of::<mailkit::msend::MsendConfig>(),
        "msend.accounts.NAME" => fields_of::<mailkit::msend::Account>(),
        "mfetch" => fields_of::<mailkit::fetch::account::MfetchConfig>(),
        "mfetch.accounts.NAME" => fields_of::<mailkit::fetch::account::Account>(),
        other => panic!("table {other:?} has no parser type here: add it"),
    };
    fields
        .unwrap_or_else(|| panic!("[{table}]'s type is not a struct"))
        .iter()
        .copied()
        .collect()
}

/// The one key table the man pages are generated from names exactly the keys the parser
/// accepts, table by table (issue 12, docs that name what does not exist).
#[test]
fn every_accepted_key_is_documented_and_every_documented_key_is_accepted() {
    use std::collections::BTreeSet;
    let mut problems = Vec::new();
    for table in config::keys::TABLES {
        let parsed = parser_fields(table.name);
        let documented: BTreeSet<&str> = table.keys.iter().map(|k| k.name).collect();
        assert_eq!(
            documented.len(),
            table.keys.len(),
            "a key twice in {}",
            table.name
        );
        for f in parsed.difference(&documented) {
            problems.push(format!("[{}] {f}: accepted but not documented", table.name));
        }
        for k in documented.difference(&parsed) {
            problems.push(format!("[{}] {k}: documented but not accepted", table.name));
        }
    }
    let names: BTreeSet<&str> = config::keys::TABLES.iter().map(|t| t.name).collect();
    for nested in [
        "tls",
        "users",
        "auth",
        "run_as",
        "mrelayd",
        "mrelayd.listen[]",
        "mrelayd.remote",
        "mrelayd.remote.domains.DOMAIN",
        "mrelayd.filter.NAME",
        "mrelayd.spf_dmarc",
        "mrelayd.rate_limit",
        "mpopd",
        "mpopd.listen[]",
        "mimapd",
        "mimapd.listen[]",
        "msend",
        "msend.accounts.NAME",
        "mfetch",
        "mfetch.accounts.NAME",
    ] {
        if !names.contains(nested) {
            problems.push(format!("table {nested} is not documented"));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// `body` put in place for `table` (its header, and what the table needs besides), parsed,
/// and the table's value printed with `{:?}`, for comparing defaults.
fn parse_table(table: &str, body: &str) -> Option<String> {
    let text = match table {
        "" => body.to_string(),
        "run_as" => format!("[run_as]\nuser = \"mail\"\n{body}"),
        "mrelayd.listen[]" => format!("[[mrelayd.listen]]\naddress = \"127.0.0.1:25\"\n{body}"),
        "mpopd.listen[]" => format!("[[mpopd.listen]]\naddress = \"127.0.0.1:110\"\n{body}"),
        "mimapd.listen[]" => format!("[[mimapd.listen]]\naddress = \"127.0.0.1:143\"\n{body}"),
        "mrelayd.remote.domains.DOMAIN" => format!("[mrelayd.remote.domains.\"x.test\"]\n{body}"),
        "msend.accounts.NAME" => format!("[msend.accounts.x]\n{body}"),
        "mfetch.accounts.NAME" => format!("[mfetch.accounts.x]\n{body}"),
        t => format!("[{t}]\n{body}"),
    };
    let c = Config::parse(&text, None).ok()?;
    Some(match table {
        "" => format!("{:?}", c.state_dir),
        "tls" => format!("{:?}", c.tls),
        "users" => format!("{:?}", c.users),
        "auth" => format!("{:?}", c.auth),
        "run_as" => format!("{:?}", c.run_as),
        t if t.starts_with("mrelayd") => {
            format!(
                "{:?}",
                c.section::<mailkit::relay::RelayConfig>("mrelayd").ok()?
            )
        }
        t if t.starts_with("mpopd") => {
            format!(
                "{:?}",
                c.section::<mailkit::pop3::Pop3Config>("mpopd").ok()?
            )
        }
        t if t.starts_with("mimapd") => {
            format!(
                "{:?}",
                c.section::<mailkit::imap::ImapConfig>("mimapd").ok()?
            )
        }
        t if t.starts_with("msend") => {
            format!(
                "{:?}",
                c.section::<mailkit::msend::MsendConfig>("msend").ok()?
            )
        }
        t if t.starts_with("mfetch") => {
            format!(
                "{:?}",
                c.section::<mailkit::fetch::account::MfetchConfig>("mfetch")
                    .ok()?
            )
        }
        other => panic!("no parse for {other}"),
    })
}

/// Every default the table gives as a TOML value is the code's default: setting the key to it
/// changes nothing.
#[test]
fn documented_defaults_are_the_code_defaults() {
    use config::keys::DefaultValue;
    let mut problems = Vec::new();
    for table in config::keys::TABLES {
        let Some(without) = parse_table(table.name, "") else {
            problems.push(format!("[{}]: the empty table does not parse", table.name));
            continue;
        };
        for k in table.keys {
            let DefaultValue::Toml(value) = k.default else {
                continue;
            };
            match parse_table(table.name, &format!("{} = {value}\n", k.name)) {
                None => problems.push(format!("[{}] {} = {value}: refused", table.name, k.name)),
                Some(with) if with != without => problems.push(format!(
                    "[{}] {} = {value} is not the default:\n  {with}\n  {without}",
                    table.name, k.name
                )),
                Some(_) => {}
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}
