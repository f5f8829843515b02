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

use crate::maildir::{Flags, Maildir};

/// Longest Sieve script accepted (bytes).
pub const MAX_SCRIPT_SIZE: usize = 1024 * 1024;
/// Instruction budget for one run, so a looping script cannot hang delivery.
pub const CPU_LIMIT: usize = 100_000;

/// The extensions a script may `require` (RFC names, as in `require`): those whose every test
/// and action mdeliver carries out. Anything else (reject, duplicate, include, notify, ...) is
/// refused by [`Script::compile`].
pub const EXTENSIONS: &[&str] = &[
    "fileinto",
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
    /// `mailboxexists` tests (RFC 5490).
    pub fn evaluate(
        &self,
        message: &[u8],
        sender: Option<&str>,
        recipient: Option<&str>,
        inbox: &Maildir,
    ) -> Outcome {
        let runtime = sieve::Runtime::new().with_cpu_limit(CPU_LIMIT);
        let mut ctx = runtime.filter(message);
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
                sieve::Event::ListContains { .. } | sieve::Event::DuplicateId { .. } => {
                    input = sieve::Input::False;
                }
                sieve::Event::Function { .. } => input = sieve::Input::False,
                sieve::Event::SetEnvelope { .. } => {}
                sieve::Event::Reject { .. } => {
                    out.warnings
                        .push("sieve: reject is not supported by a local MDA; message kept".into());
                    need_keep = true;
                }
                sieve::Event::SendMessage { .. } => {
                    out.warnings.push(
                        "sieve: redirect/vacation are not supported by a local MDA; message kept"
                            .into(),
                    );
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

/// Refuses a compiled script that requires an extension outside [`EXTENSIONS`], and rewrites
/// each explicit `keep` into `fileinto :copy` [`KEEP_FOLDER`] (see the module doc). sieve-rs
/// keeps its instructions private; its serde form (a flat list of externally tagged
/// instructions) is the one structured view of them, so both steps work on that.
fn check_and_rewrite(compiled: sieve::Sieve, text: &[u8]) -> Result<sieve::Sieve, ScriptError> {
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
