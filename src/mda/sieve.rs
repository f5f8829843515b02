//! Sieve filtering (RFC 5228) for local delivery, through the `sieve-rs` crate.
//!
//! [`Script::compile`] turns a script into a compiled filter (errors carry the line, so
//! mdeliver can report `line N: ...`). A script that `require`s an extension outside
//! [`EXTENSIONS`] is refused there, with the extension's name: an action we would accept and
//! then not carry out is worse than a script error, which keeps the message in INBOX.
//! [`Script::evaluate`] runs it over one message and returns the delivery [`Action`]s; it never
//! fails: a runtime error or an action we cannot carry out becomes a warning plus a keep, so
//! mail is never lost (RFC 5228 section 2.10.6: on error, implicit keep).
//!
//! # redirect and vacation
//! Both come out as actions for [`crate::mda::deliver`] to submit ([`Action::Redirect`],
//! [`Action::Vacation`]); nothing is sent here. A redirect to an address the message was
//! already delivered to (its envelope recipient or a `Delivered-To:`) is a mail loop: it is not
//! done, and the message is kept instead. At most [`MAX_REDIRECTS`] redirects per message
//! (Pigeonhole's `sieve_max_redirects` default); more are warnings and keep the message.
//! vacation (RFC 5230) uses sieve-rs's checks (no reply to `<>`, `MAILER-DAEMON`, `owner-*`,
//! `*-request`, the user's own addresses, a message whose To/Cc/Bcc names none of the user's
//! addresses) plus RFC 3834 section 2's header checks, done here ([`auto_reply_forbidden`]:
//! sieve-rs misses `Auto-Submitted:` and `Precedence: list`/`junk`); its
//! `:days` memory is asked through the `seen` callback of [`Script::evaluate`] (at least one
//! day, RFC 5230 section 4.1; default [`VACATION_DAYS`]). The reply gets the header fields
//! RFC 3834 section 3.1.7 and Pigeonhole add (`Precedence: bulk`, `X-Auto-Response-Suppress`,
//! `MIME-Version`).
//!
//! # Redirect addresses
//! sieve-rs drops, without a word, a redirect whose domain has no dot (`bob@localhost`, the
//! quickstart's domain; RFC 5228 section 4.2 asks for no dot). So after compiling, every
//! redirect's address gets a `.` appended (a constant's text, or a computed one's value as a
//! second part), which sieve-rs accepts as the dot it wants, and [`Script::evaluate`] takes
//! that one trailing dot off again (a domain with a trailing dot is the same domain).
//!
//! # Explicit keep
//! sieve-rs treats an explicit `keep` like the implicit one: a later `fileinto` or `redirect`
//! (without `:copy`) or `discard` cancels it, so `keep; fileinto "X";` stored only into X.
//! RFC 5228 section 4.3 makes `keep` an action of its own that only the implicit keep is
//! cancelled by (section 2.10.2), and Pigeonhole delivers to both. So after compiling, each
//! `keep` instruction is rewritten into `fileinto :copy` of a folder name no script can give
//! ([`KEEP_FOLDER`]); `:copy` leaves the implicit keep alone (RFC 3894), and its event is
//! turned back into [`Action::Keep`]. tests/sieve_reference.rs checks the result against
//! Pigeonhole's `sieve-test`.

use std::collections::HashMap;
use std::sync::Arc;

use sieve::compiler::grammar::actions::action_redirect::Notify;

use crate::maildir::{Flags, Maildir};

/// Longest Sieve script accepted (bytes).
pub const MAX_SCRIPT_SIZE: usize = 1024 * 1024;
/// Instruction budget for one run, so a looping script cannot hang delivery.
pub const CPU_LIMIT: usize = 100_000;

/// Most redirects carried out for one message (Pigeonhole's `sieve_max_redirects` default).
pub const MAX_REDIRECTS: usize = 4;
/// vacation's `:days` when the script gives none (RFC 5230 section 4.1 suggests 7).
pub const VACATION_DAYS: u64 = 7;
/// A message with more `Received:` fields than this is neither redirected nor answered (a
/// loop; Postfix's `hopcount_limit`).
pub const MAX_HOPS: usize = 50;

/// The extensions a script may `require` (RFC names, as in `require`): those whose every test
/// and action mdeliver carries out. Anything else (reject, duplicate, include, notify, ...) is
/// refused by [`Script::compile`].
pub const EXTENSIONS: &[&str] = &[
    "fileinto",
    "vacation",
    "envelope",
    "encoded-character",
    "comparator-i;octet",
    "comparator-i;ascii-casemap",
    "comparator-i;ascii-numeric",
    "body",
    "copy",
    "relational",
    "date",
    "index",
    "variables",
    "mailbox",
    "subaddress",
    "imap4flags",
    "regex",
    "editheader",
    "mime",
    "foreverypart",
    "extracttext",
];

/// The folder name an explicit `keep` is rewritten to (see the module doc). NUL cannot be in a
/// Maildir++ folder name, so no `fileinto` of a real folder is ever taken for it.
const KEEP_FOLDER: &str = "\0mailkit:keep";

/// A compiled Sieve script.
#[derive(Debug, Clone)]
pub struct Script {
    compiled: Arc<sieve::Sieve>,
}

/// Why a script did not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptError {
    /// The script file, when it came from one.
    pub file: Option<std::path::PathBuf>,
    /// 1-based line of the error (0 when unknown, e.g. the file could not be read).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ScriptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(p) = &self.file {
            write!(f, "{}: ", p.display())?;
        }
        if self.line > 0 {
            write!(f, "line {}: {}", self.line, self.message)
        } else {
            f.write_str(&self.message)
        }
    }
}

impl std::error::Error for ScriptError {}

/// What to do with the message, in script order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Store in the default mailbox, with IMAP flags (`\Seen`, ...).
    Keep {
        /// IMAP flags from `:flags` / imap4flags.
        flags: Vec<String>,
        /// Replacement content when editheader changed the message.
        message: Option<Vec<u8>>,
    },
    /// Store in a folder.
    FileInto {
        /// Folder name as the script gave it.
        folder: String,
        /// IMAP flags.
        flags: Vec<String>,
        /// Replacement content when editheader changed the message.
        message: Option<Vec<u8>>,
    },
    /// Explicitly thrown away (no copy anywhere).
    Discard,
    /// Resubmit the message to `address` (RFC 5228 section 4.2; with `:copy`, RFC 3894, the
    /// implicit keep stays, which sieve-rs has already decided).
    Redirect {
        /// The new recipient.
        address: String,
        /// Replacement content when editheader changed the message.
        message: Option<Vec<u8>>,
    },
    /// Send this auto-reply (RFC 5230) to `to` from the null sender, and remember `key` for
    /// `expiry_secs` so the sender gets no second reply meanwhile.
    Vacation {
        /// The recipient of the reply: the message's envelope sender.
        to: String,
        /// The whole reply (header and body).
        message: Vec<u8>,
        /// What the `:days` memory remembers (sender and `:handle`).
        key: String,
        /// How long (seconds), at least a day.
        expiry_secs: u64,
    },
}

/// The result of running a script: actions and warnings (one line each).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Delivery actions. Empty means the message is discarded.
    pub actions: Vec<Action>,
    /// Problems met while running (the message was kept where needed).
    pub warnings: Vec<String>,
}

impl Script {
    /// Compiles a script from its text.
    pub fn compile(text: &[u8]) -> Result<Script, ScriptError> {
        if text.len() > MAX_SCRIPT_SIZE {
            return Err(ScriptError {
                file: None,
                line: 0,
                message: format!("script larger than {MAX_SCRIPT_SIZE} bytes"),
            });
        }
        let compiler = sieve::Compiler::new().with_max_script_size(MAX_SCRIPT_SIZE);
        let compiled = compiler.compile(text).map_err(|e| ScriptError {
            file: None,
            line: e.line_num().max(1),
            message: e.to_string(),
        })?;
        let compiled = check_and_rewrite(compiled, text)?;
        Ok(Script {
            compiled: Arc::new(compiled),
        })
    }

    /// Reads and compiles a script file.
    pub fn load(path: &std::path::Path) -> Result<Script, ScriptError> {
        let text = std::fs::read(path).map_err(|e| ScriptError {
            file: Some(path.to_path_buf()),
            line: 0,
            message: format!("cannot read: {e}"),
        })?;
        Script::compile(&text).map_err(|e| ScriptError {
            file: Some(path.to_path_buf()),
            ..e
        })
    }

    /// Runs the script over `message` with the envelope `sender`/`recipient`. `inbox` answers
    /// `mailboxexists` tests (RFC 5490); `seen` answers whether vacation already replied under
    /// a key (the `:days` memory).
    pub fn evaluate(
        &self,
        message: &[u8],
        sender: Option<&str>,
        recipient: Option<&str>,
        inbox: &Maildir,
        seen: &dyn Fn(&str) -> bool,
    ) -> Outcome {
        // sieve-rs's own redirect bound drops a redirect silently; ours warns (MAX_REDIRECTS).
        let runtime = sieve::Runtime::new()
            .with_cpu_limit(CPU_LIMIT)
            .with_max_redirects(MAX_REDIRECTS + 1)
            .with_max_out_messages(MAX_REDIRECTS + 2)
            .with_max_received_headers(MAX_HOPS)
            .with_default_vacation_expiry(VACATION_DAYS * 86400)
            .with_local_hostname(crate::maildir::hostname().to_string());
        let mut ctx = runtime.filter(message);
        let delivered: Vec<String> = super::delivered_to(message)
            .iter()
            .map(String::as_str)
            .chain(recipient)
            .map(super::normalize_addr)
            .collect();
        let no_auto_reply = auto_reply_forbidden(message);
        let mut redirects = 0;
        let mut vacation_key: Option<(String, u64)> = None;
        if let Some(s) = sender {
            ctx.set_envelope(sieve::Envelope::From, s);
        }
        if let Some(r) = recipient {
            ctx.set_envelope(sieve::Envelope::To, r);
        }
        let mut out = Outcome::default();
        let mut created: HashMap<usize, Vec<u8>> = HashMap::new();
        let mut need_keep = false;
        let mut input = sieve::Input::script("script", self.compiled.clone());
        while let Some(result) = ctx.run(input) {
            input = sieve::Input::True;
            let event = match result {
                Ok(ev) => ev,
                Err(e) => {
                    out.warnings
                        .push(format!("sieve: runtime error: {e:?}; message kept"));
                    need_keep = true;
                    continue;
                }
            };
            match event {
                sieve::Event::Keep { flags, message_id } => out.actions.push(Action::Keep {
                    flags,
                    message: created.get(&message_id).cloned(),
                }),
                sieve::Event::FileInto {
                    folder,
                    flags,
                    message_id,
                    ..
                } if folder == KEEP_FOLDER => out.actions.push(Action::Keep {
                    flags,
                    message: created.get(&message_id).cloned(),
                }),
                sieve::Event::FileInto {
                    folder,
                    flags,
                    message_id,
                    ..
                } => out.actions.push(Action::FileInto {
                    folder,
                    flags,
                    message: created.get(&message_id).cloned(),
                }),
                sieve::Event::Discard => out.actions.push(Action::Discard),
                sieve::Event::CreatedMessage {
                    message_id,
                    message,
                } => {
                    created.insert(message_id, message);
                }
                sieve::Event::MailboxExists { mailboxes, .. } => {
                    let all = mailboxes.iter().all(|m| match m {
                        sieve::Mailbox::Name(n) => inbox.has_folder(n),
                        sieve::Mailbox::Id(_) => false,
                    });
                    input = all.into();
                }
                sieve::Event::IncludeScript { name, .. } => {
                    out.warnings.push(format!(
                        "sieve: include {name} is not supported; message kept"
                    ));
                    need_keep = true;
                    input = sieve::Input::False;
                }
                sieve::Event::DuplicateId { id, expiry, .. } => {
                    // Only vacation asks (duplicate is not claimed): RFC 5230 section 4.1,
                    // a minimum of one day.
                    let key = format!("vacation {id}");
                    input = seen(&key).into();
                    vacation_key = Some((key, expiry.max(86400)));
                }
                sieve::Event::ListContains { .. } => {
                    input = sieve::Input::False;
                }
                sieve::Event::Function { .. } => input = sieve::Input::False,
                sieve::Event::SetEnvelope { .. } => {}
                sieve::Event::Reject { .. } => {
                    out.warnings
                        .push("sieve: reject is not supported by a local MDA; message kept".into());
                    need_keep = true;
                }
                sieve::Event::SendMessage {
                    recipient: sieve::Recipient::Address(to),
                    notify: Notify::Never,
                    message_id,
                    ..
                } => {
                    // vacation's reply (a redirect's notify is never Never: redirect-dsn is
                    // not claimed)
                    let (Some(reply), Some((key, expiry_secs))) =
                        (created.get(&message_id), vacation_key.take())
                    else {
                        continue;
                    };
                    if no_auto_reply {
                        continue;
                    }
                    out.actions.push(Action::Vacation {
                        to,
                        message: complete_reply(reply),
                        key,
                        expiry_secs,
                    });
                }
                sieve::Event::SendMessage {
                    recipient: sieve::Recipient::Address(address),
                    message_id,
                    ..
                } => {
                    // The dot check_and_rewrite appended (module doc, "Redirect addresses").
                    let address = address.strip_suffix('.').unwrap_or(&address).to_string();
                    redirects += 1;
                    if redirects > MAX_REDIRECTS {
                        out.warnings.push(format!(
                            "sieve: redirect to {address}: more than {MAX_REDIRECTS} redirects; message kept"
                        ));
                        need_keep = true;
                    } else if delivered.contains(&super::normalize_addr(&address)) {
                        out.warnings.push(format!(
                            "sieve: redirect to {address}: the message was already delivered there (mail loop); message kept"
                        ));
                        need_keep = true;
                    } else {
                        out.actions.push(Action::Redirect {
                            address,
                            message: created.get(&message_id).cloned(),
                        });
                    }
                }
                sieve::Event::SendMessage { .. } => {
                    out.warnings
                        .push("sieve: redirect to a list is not supported; message kept".into());
                    need_keep = true;
                }
                sieve::Event::Notify { .. } => {
                    out.warnings
                        .push("sieve: notify is not supported; ignored".into());
                }
            }
        }
        // After an error or an action we could not carry out, the message also goes to the
        // default mailbox, whatever else the script did (RFC 5228 section 2.10.6).
        let has_keep = out.actions.iter().any(|a| matches!(a, Action::Keep { .. }));
        if need_keep && !has_keep {
            out.actions.push(Action::Keep {
                flags: Vec::new(),
                message: None,
            });
        }
        out
    }
}

/// Refuses a compiled script that requires an extension outside [`EXTENSIONS`], rewrites
/// each explicit `keep` into `fileinto :copy` [`KEEP_FOLDER`] and appends a dot to each
/// redirect address (see the module doc). sieve-rs
/// keeps its instructions private; its serde form (a flat list of externally tagged
/// instructions) is the one structured view of them, so both steps work on that.
fn check_and_rewrite(compiled: sieve::Sieve, text: &[u8]) -> Result<sieve::Sieve, ScriptError> {
    // The script's text, for error lines (the match arms below name a JSON object `text`).
    let script = text;
    let internal = |e: serde_json::Error| ScriptError {
        file: None,
        line: 0,
        message: format!("internal error reading the compiled script: {e}"),
    };
    let mut tree = serde_json::to_value(&compiled).map_err(internal)?;
    let Some(list) = tree
        .get_mut("instructions")
        .and_then(serde_json::Value::as_array_mut)
    else {
        return Err(internal(serde::de::Error::custom("no instruction list")));
    };
    for ins in list.iter_mut() {
        if let Some(caps) = ins.get("Require").and_then(serde_json::Value::as_array) {
            for cap in caps {
                let cap: sieve::compiler::grammar::Capability =
                    serde_json::from_value(cap.clone()).map_err(internal)?;
                if !EXTENSIONS
                    .iter()
                    .any(|&n| sieve::compiler::grammar::Capability::parse(n) == cap)
                {
                    return Err(unsupported(&cap.to_string(), text));
                }
            }
        }
        if let Some(address) = ins.get_mut("Redirect").and_then(|r| r.get_mut("address")) {
            *address = match address.take() {
                serde_json::Value::Object(mut text) if text.contains_key("Text") => {
                    let t = text.get("Text").and_then(|t| t.as_str()).unwrap_or("");
                    if !is_addr_spec(t) {
                        return Err(invalid_redirect(t, script));
                    }
                    let dotted = format!("{t}.");
                    text.insert("Text".into(), dotted.into());
                    serde_json::Value::Object(text)
                }
                // A computed address is a list of parts already (sieve-rs wants it flat).
                serde_json::Value::Object(mut list) if list.contains_key("List") => {
                    if let Some(parts) = list.get_mut("List").and_then(|l| l.as_array_mut()) {
                        parts.push(serde_json::json!({"Text": "."}));
                    }
                    serde_json::Value::Object(list)
                }
                other => serde_json::json!({"List": [other, {"Text": "."}]}),
            };
        }
        if let Some(flags) = ins.get("Keep").and_then(|k| k.get("flags")) {
            *ins = serde_json::json!({"FileInto": {
                "copy": true,
                "create": false,
                "folder": {"Text": KEEP_FOLDER},
                "flags": flags.clone(),
                "mailbox_id": null,
                "special_use": null,
            }});
        }
    }
    serde_json::from_value(tree).map_err(internal)
}

/// Whether a constant redirect address is an addr-spec, `local@domain` with both parts
/// non-empty (RFC 5228 section 4.2: the address MUST be syntactically valid). Pigeonhole refuses
/// such a script when it is compiled; sieve-rs would drop the redirect without a word.
fn is_addr_spec(address: &str) -> bool {
    let address = address.trim();
    // The one rule for "has a domain" (an `@` inside a quoted local part is none).
    if !crate::envelope::has_domain(address) {
        return false;
    }
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains(|c: char| c.is_whitespace() || "<>@\"".contains(c))
        }
        None => false,
    }
}

/// The error for a redirect to a constant that is no mail address, at the first line naming it
/// (Pigeonhole's wording: "specified redirect address 'bob' is invalid").
fn invalid_redirect(address: &str, text: &[u8]) -> ScriptError {
    let quoted = format!("\"{address}\"");
    let line = String::from_utf8_lossy(text)
        .lines()
        .position(|l| l.contains(&quoted))
        .map_or(1, |i| i + 1);
    ScriptError {
        file: None,
        line,
        message: format!(
            "specified redirect address '{address}' is invalid: expecting local-part@domain \
             (RFC 5228 section 4.2)"
        ),
    }
}

/// The error for a required extension we do not carry out, at the first line naming it.
fn unsupported(name: &str, text: &[u8]) -> ScriptError {
    let quoted = format!("\"{}\"", name.to_ascii_lowercase());
    let line = String::from_utf8_lossy(text)
        .lines()
        .position(|l| l.to_ascii_lowercase().contains(&quoted))
        .map_or(1, |i| i + 1);
    ScriptError {
        file: None,
        line,
        message: format!(
            "extension \"{name}\" is not supported by mdeliver (supported: {})",
            EXTENSIONS.join(", ")
        ),
    }
}

/// Whether RFC 3834 section 2 forbids an automatic reply to `message` in ways sieve-rs does not
/// check (reliably) itself: `Auto-Submitted:` with any value but `no` (section 2, point 4;
/// sieve-rs misses it), `Precedence: list`, `bulk` or `junk` (section 2, point 5: common
/// practice; Pigeonhole checks the same three), any `List-*` field (RFC 2369, RFC 2919), and
/// `X-Auto-Response-Suppress: All` or `OOF` (what Exchange and Pigeonhole honour).
pub fn auto_reply_forbidden(message: &[u8]) -> bool {
    let Some(parsed) = mail_parser::MessageParser::new().parse_headers(message) else {
        return false;
    };
    parsed.headers().iter().any(|h| {
        let name = h.name();
        let value = h.value().as_text().unwrap_or_default().trim();
        let token = value.split(';').next().unwrap_or_default().trim();
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        (is("auto-submitted") && !token.eq_ignore_ascii_case("no"))
            || (is("precedence")
                && ["list", "bulk", "junk"]
                    .iter()
                    .any(|p| token.eq_ignore_ascii_case(p)))
            || (is("x-auto-response-suppress")
                && value.split(',').any(|v| {
                    ["all", "oof"]
                        .iter()
                        .any(|p| v.trim().eq_ignore_ascii_case(p))
                }))
            || name
                .get(..5)
                .is_some_and(|p| p.eq_ignore_ascii_case("list-"))
    })
}

/// sieve-rs's vacation reply with the header fields it leaves out: `Precedence: bulk` and
/// `X-Auto-Response-Suppress: All` (what Pigeonhole adds, so other responders stay quiet, RFC
/// 3834 section 3.1.8), `MIME-Version` (RFC 2045 section 4) and, for a plain text reason,
/// `Content-Transfer-Encoding: 8bit` (the reason may be UTF-8); and with its `Subject:`,
/// `From:` and `Reply-To:` RFC 2047 encoded ([`encode_reply_fields`]).
fn complete_reply(reply: &[u8]) -> Vec<u8> {
    let reply = encode_reply_fields(reply);
    let reply = reply.as_slice();
    const PLAIN: &[u8] = b"Content-type: text/plain; charset=utf-8\r\n\r\n";
    let mut out = Vec::with_capacity(reply.len() + 128);
    out.extend_from_slice(
        b"Precedence: bulk\r\nX-Auto-Response-Suppress: All\r\nMIME-Version: 1.0\r\n",
    );
    match reply.windows(PLAIN.len()).position(|w| w == PLAIN) {
        Some(i) => {
            out.extend_from_slice(&reply[..i]);
            out.extend_from_slice(
                b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
            );
            out.extend_from_slice(&reply[i + PLAIN.len()..]);
        }
        None => out.extend_from_slice(reply),
    }
    out
}

/// `reply` with the non-ASCII text of its `Subject:` (`:subject`, or "Auto: " and the original
/// subject, which sieve-rs decodes) and of the display names of `From:` and `Reply-To:`
/// (`:from`) RFC 2047 encoded ([`crate::rfc5322::encode_words`]): sieve-rs writes them as raw
/// UTF-8, which RFC 5322 does not allow in a header (RFC 5230 section 5.6 asks for the
/// encoding). Every other byte stays.
fn encode_reply_fields(reply: &[u8]) -> Vec<u8> {
    use crate::rfc5322::{encode_words, WordContext};
    let end = crate::rfc5322::header_end(reply).header;
    let mut out = Vec::with_capacity(reply.len() + 64);
    for line in reply[..end].split_inclusive(|&b| b == b'\n') {
        let text = String::from_utf8_lossy(line);
        let body = text.trim_end_matches(['\r', '\n']);
        let eol = &text[body.len()..];
        let Some((name, value)) = body.split_once(':') else {
            out.extend_from_slice(line);
            continue;
        };
        let value = value.trim();
        let used = name.len() + 2;
        let encoded = if name.eq_ignore_ascii_case("subject") {
            encode_words(value, WordContext::Unstructured, used)
        } else if name.eq_ignore_ascii_case("from") || name.eq_ignore_ascii_case("reply-to") {
            match value.rsplit_once('<') {
                Some((display, addr)) if addr.ends_with('>') && !display.trim().is_empty() => {
                    let display = display.trim();
                    let display = display
                        .strip_prefix('"')
                        .and_then(|d| d.strip_suffix('"'))
                        .map_or(display.to_string(), |d| {
                            d.replace("\\\"", "\"").replace("\\\\", "\\")
                        });
                    let phrase = encode_words(&display, WordContext::Phrase, used);
                    format!("{phrase} <{addr}")
                }
                _ => {
                    out.extend_from_slice(line);
                    continue;
                }
            }
        } else {
            out.extend_from_slice(line);
            continue;
        };
        // A line that needed nothing stays byte for byte.
        if encoded == value {
            out.extend_from_slice(line);
        } else {
            out.extend_from_slice(format!("{name}: {encoded}{eol}").as_bytes());
        }
    }
    out.extend_from_slice(&reply[end..]);
    out
}

/// Maildir flags for IMAP system flags (RFC 3501 section 2.3.2); keywords are dropped.
pub fn maildir_flags(imap: &[String]) -> Flags {
    let mut s = String::new();
    for f in imap {
        let c = match f.to_ascii_lowercase().as_str() {
            "\\seen" => Flags::SEEN,
            "\\answered" => Flags::REPLIED,
            "\\flagged" => Flags::FLAGGED,
            "\\deleted" => Flags::TRASHED,
            "\\draft" => Flags::DRAFT,
            _ => continue,
        };
        s.push(c);
    }
    Flags::parse(&s)
}
