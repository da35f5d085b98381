//! A hub's chat contract as data: which method sends a message and in what argument order,
//! which methods deliver messages and where the sender and the text are in their arguments.
//!
//! Real hubs name their methods as they like (ASP.NET Core's tutorial: `SendMessage(user,
//! message)` delivering `ReceiveMessage(user, message)`; the classic SignalR 2 tutorial:
//! `Send(name, message)` delivering `broadcastMessage(name, message)`), add arguments (a
//! timestamp) or send one object. [`HubMethods`] describes one hub; it is stored per account
//! (`hubbub_store::Store::set_hub_methods`, as JSON) and used by the chat layer. The method
//! names live in the presets ([`Preset`]) and nowhere else.
//!
//! **Auto** (the default): the first send tries the presets' send methods in turn
//! ([`send_message`]) and moves to the next one only after a "method does not exist" answer
//! ([`is_missing_method`]), which proves the hub ran nothing, so a message is never delivered
//! twice; any other answer is final. The receive side listens to every preset's receive
//! method and reads the arguments with [`Shape::Auto`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Arg, Error, Headers, HubConnection};

/// A built-in contract, or none (auto, custom).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Preset {
    /// Found on the first send; every preset's receive methods are listened to.
    #[default]
    Auto,
    /// Hubbub's own chat hub (`/chathub`): `Send(name, text)` → `broadcastMessage(name,
    /// text)`, plus rooms, direct messages, presence and history.
    Hubbub,
    /// The classic ASP.NET SignalR 2 tutorials: `Send(name, message)` →
    /// `broadcastMessage(name, message)` (or `addNewMessageToPage(name, message)`).
    ClassicTutorial,
    /// The ASP.NET Core SignalR tutorial: `SendMessage(user, message)` →
    /// `ReceiveMessage(user, message)`.
    CoreTutorial,
    /// Named by hand.
    Custom,
}

impl Preset {
    /// Every preset, in the order auto tries their send methods.
    pub const ALL: [Preset; 3] = [
        Preset::Hubbub,
        Preset::ClassicTutorial,
        Preset::CoreTutorial,
    ];

    /// The methods the preset's hub delivers messages with, as `(sender, text)`.
    pub fn receive_names(self) -> &'static [&'static str] {
        match self {
            Preset::Auto | Preset::Custom => &[],
            Preset::Hubbub => &["broadcastMessage"],
            Preset::ClassicTutorial => &["broadcastMessage", "addNewMessageToPage"],
            Preset::CoreTutorial => &["ReceiveMessage"],
        }
    }

    /// The preset's contract (auto and custom: every method left to auto-detection).
    pub fn methods(self) -> HubMethods {
        let send = |method: &str| {
            Some(SendMethod {
                method: method.to_owned(),
                args: vec![SendArg::Name, SendArg::Text],
            })
        };
        let receive = || {
            self.receive_names()
                .iter()
                .map(|name| ReceiveMethod {
                    method: (*name).to_owned(),
                    shape: Shape::Args {
                        sender: Some(Place::arg(0)),
                        text: Place::arg(1),
                    },
                })
                .collect()
        };
        let (send, receive) = match self {
            Preset::Auto | Preset::Custom => (None, Vec::new()),
            Preset::Hubbub | Preset::ClassicTutorial => (send("Send"), receive()),
            Preset::CoreTutorial => (send("SendMessage"), receive()),
        };
        HubMethods {
            preset: self,
            send,
            receive,
        }
    }
}

/// The extras of Hubbub's own chat hub (`crates/hub/src/chat.rs`), beyond its send and receive
/// methods: part of the [`Preset::Hubbub`] preset. On other hubs they answer "method does not
/// exist", and the chat layer reports the extra as unavailable.
pub mod hubbub {
    /// `JoinRoom(room)` → the room's connection count.
    pub const JOIN_ROOM: &str = "JoinRoom";
    /// `LeaveRoom(room)` → the room's connection count.
    pub const LEAVE_ROOM: &str = "LeaveRoom";
    /// `SendToRoom(room, name, text)`.
    pub const SEND_TO_ROOM: &str = "SendToRoom";
    /// `SendToUser(user, text)`.
    pub const SEND_TO_USER: &str = "SendToUser";
    /// `History(epoch, after)` → a page of the scope's broadcasts.
    pub const HISTORY: &str = "History";
    /// `Inbox(epoch, after)` → a page of this user's direct messages.
    pub const INBOX: &str = "Inbox";
    /// `RoomHistory(room, epoch, after)` → a page of a room's messages.
    pub const ROOM_HISTORY: &str = "RoomHistory";
    /// `GetOnline()` → who is online.
    pub const GET_ONLINE: &str = "GetOnline";
    /// Delivered: `roomMessage(room, name, text)`.
    pub const ROOM_MESSAGE: &str = "roomMessage";
    /// Delivered: `directMessage(from, text)`.
    pub const DIRECT_MESSAGE: &str = "directMessage";
    /// Delivered: `userJoined(user, count)`.
    pub const USER_JOINED: &str = "userJoined";
    /// Delivered: `userLeft(user, count)`.
    pub const USER_LEFT: &str = "userLeft";
}

/// An argument of the send method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SendArg {
    /// The sender's display name.
    Name,
    /// The message text.
    Text,
}

/// The hub method a message is sent with, and its arguments in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendMethod {
    /// The method name (hubs match it case-insensitively).
    pub method: String,
    /// The arguments, in order.
    pub args: Vec<SendArg>,
}

impl SendMethod {
    /// The invocation's arguments for `name` sending `text`.
    pub fn arguments(&self, name: &str, text: &str) -> Vec<Arg> {
        self.args
            .iter()
            .map(|a| match a {
                SendArg::Name => Arg::from(name),
                SendArg::Text => Arg::from(text),
            })
            .collect()
    }
}

/// Where a value is in a received invocation: an argument, or a field of an object argument.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Place {
    /// The argument's position (0 first).
    pub arg: usize,
    /// A field of that argument (an object), if the value is not the argument itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Place {
    /// The argument at `arg` itself.
    pub fn arg(arg: usize) -> Self {
        Self { arg, field: None }
    }
}

/// How to read the sender and the text from a receive method's arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Shape {
    /// Recognized from what arrives: `(sender, text, extra…)` strings; one object with the
    /// sender and text as fields (named like [`SENDER_FIELDS`] and [`TEXT_FIELDS`]); or one
    /// text with no sender.
    Auto,
    /// At fixed places (`sender: None`: the hub does not say who sent it).
    Args {
        /// Where the sender's name is.
        sender: Option<Place>,
        /// Where the text is.
        text: Place,
    },
}

/// A method the hub invokes to deliver a message, and how to read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiveMethod {
    /// The method name (matched case-insensitively, as SignalR clients do).
    pub method: String,
    /// Where the sender and the text are.
    pub shape: Shape,
}

/// Field names an object argument may carry the sender in (matched case-insensitively), most
/// likely first.
pub const SENDER_FIELDS: [&str; 6] = ["user", "name", "sender", "from", "author", "username"];
/// Field names an object argument may carry the text in (matched case-insensitively).
pub const TEXT_FIELDS: [&str; 5] = ["message", "text", "body", "content", "msg"];

/// The sender shown for a message whose hub does not say who sent it.
pub const UNKNOWN_SENDER: &str = "unknown";

/// A hub's chat contract (see the module docs). The default is auto.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HubMethods {
    /// The preset this came from (auto: detected; custom: named by hand).
    #[serde(default)]
    pub preset: Preset,
    /// The method to send with; `None`: found on the first send, then remembered.
    #[serde(default)]
    pub send: Option<SendMethod>,
    /// The methods that deliver messages; empty: every preset's, read with [`Shape::Auto`].
    #[serde(default)]
    pub receive: Vec<ReceiveMethod>,
}

/// A message read from a received invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The sender's name, if the hub says it.
    pub sender: Option<String>,
    /// The text.
    pub text: String,
}

impl HubMethods {
    /// Reads a stored contract; `None` (nothing stored) is auto. A contract that no longer
    /// parses is reported and replaced by auto rather than refusing to open the account.
    pub fn from_stored(stored: Option<&str>) -> Self {
        match stored {
            None => Self::default(),
            Some(json) => serde_json::from_str(json).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "a stored hub contract could not be read; using auto");
                Self::default()
            }),
        }
    }

    /// The JSON the store keeps.
    pub fn to_stored(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The send methods to try, in order: the chosen one, or every preset's (auto).
    pub fn send_candidates(&self) -> Vec<SendMethod> {
        if let Some(send) = &self.send {
            return vec![send.clone()];
        }
        let mut out: Vec<SendMethod> = Vec::new();
        for preset in Preset::ALL {
            if let Some(send) = preset.methods().send {
                if !out
                    .iter()
                    .any(|s| s.method.eq_ignore_ascii_case(&send.method))
                {
                    out.push(send);
                }
            }
        }
        out
    }

    /// The receive methods listened to: the chosen ones, or every preset's read with
    /// [`Shape::Auto`] (auto).
    pub fn receive_methods(&self) -> Vec<ReceiveMethod> {
        if !self.receive.is_empty() {
            return self.receive.clone();
        }
        let mut out: Vec<ReceiveMethod> = Vec::new();
        for preset in Preset::ALL {
            for r in preset.methods().receive {
                if !out.iter().any(|o| o.method.eq_ignore_ascii_case(&r.method)) {
                    out.push(ReceiveMethod {
                        method: r.method,
                        shape: Shape::Auto,
                    });
                }
            }
        }
        out
    }

    /// The chat message in an invocation of `target`, if `target` is a receive method and its
    /// arguments hold one; `None` otherwise (the inspector shows it).
    pub fn recognize(&self, target: &str, args: &[Arg]) -> Option<Received> {
        if self.receive.is_empty() {
            // Auto: every preset's names, read as they come (called for every invocation, so
            // nothing is allocated for one that is not a chat message).
            let known = Preset::ALL
                .iter()
                .flat_map(|p| p.receive_names())
                .any(|name| name.eq_ignore_ascii_case(target));
            return known.then(|| Shape::Auto.read(args)).flatten();
        }
        self.receive
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(target))
            .find_map(|r| r.shape.read(args))
    }
}

impl Shape {
    /// The message in `args`, if they have one where this shape says.
    pub fn read(&self, args: &[Arg]) -> Option<Received> {
        match self {
            Shape::Args { sender, text } => Some(Received {
                sender: match sender {
                    Some(place) => Some(place.read(args)?),
                    None => None,
                },
                text: text.read(args)?,
            }),
            Shape::Auto => {
                let strings: Vec<Option<String>> =
                    args.iter().take(2).map(|a| a.decode().ok()).collect();
                match strings.as_slice() {
                    [Some(sender), Some(text), ..] => Some(Received {
                        sender: Some(sender.clone()),
                        text: text.clone(),
                    }),
                    [Some(text)] if args.len() == 1 => Some(Received {
                        sender: None,
                        text: text.clone(),
                    }),
                    [None, ..] => {
                        let object: serde_json::Map<String, serde_json::Value> =
                            args.first()?.decode().ok()?;
                        let field = |names: &[&str]| {
                            names.iter().find_map(|name| {
                                object.iter().find_map(|(k, v)| {
                                    (k.eq_ignore_ascii_case(name)).then(|| v.as_str())?
                                })
                            })
                        };
                        Some(Received {
                            sender: field(&SENDER_FIELDS).map(str::to_owned),
                            text: field(&TEXT_FIELDS)?.to_owned(),
                        })
                    }
                    _ => None,
                }
            }
        }
    }
}

impl Place {
    /// The string at this place in `args`.
    pub fn read(&self, args: &[Arg]) -> Option<String> {
        let arg = args.get(self.arg)?;
        match &self.field {
            None => arg.decode().ok(),
            Some(field) => {
                let object: serde_json::Map<String, serde_json::Value> = arg.decode().ok()?;
                let value = object
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(field))?
                    .1;
                value.as_str().map(str::to_owned)
            }
        }
    }
}

/// Whether a hub's error answer says the method does not exist (so the hub ran nothing and
/// another name may be tried): ASP.NET Core's and aiosignalr's `Unknown hub method 'X'`, the
/// classic server's `'X' method could not be resolved`, and a `HubException("Method does not
/// exist")`.
pub fn is_missing_method(error: &str) -> bool {
    let e = error.to_ascii_lowercase();
    e.starts_with("unknown hub method")
        || e.contains("method could not be resolved")
        || e.contains("method does not exist")
}

/// Why [`send_message`] did not deliver.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SendError {
    /// The hub has none of the methods tried.
    #[error(
        "this hub has none of the send methods tried ({tried}); name the hub's method (--send-method, or Advanced in the app)"
    )]
    NoMethod {
        /// The names tried, comma-separated.
        tried: String,
    },
    /// The hub answered with an error, or the call failed (the message may or may not have
    /// arrived when the connection dropped).
    #[error(transparent)]
    Call(#[from] Error),
}

/// Sends `text` from `name` with the contract's send method, or, under auto, with each preset's
/// in turn until one exists; returns the method that delivered it (to remember). Only a
/// "method does not exist" answer ([`is_missing_method`]) moves on to the next name, so the
/// message is delivered at most once.
pub async fn send_message(
    connection: &HubConnection,
    methods: &HubMethods,
    name: &str,
    text: &str,
    headers: Headers,
) -> Result<SendMethod, SendError> {
    let candidates = methods.send_candidates();
    let last = candidates.len().saturating_sub(1);
    for (i, candidate) in candidates.iter().enumerate() {
        match connection
            .invoke_with_headers::<serde_json::Value>(
                &candidate.method,
                candidate.arguments(name, text),
                headers.clone(),
            )
            .await
        {
            Ok(_) => return Ok(candidate.clone()),
            Err(Error::Hub(reason))
                if methods.send.is_none() && is_missing_method(&reason) && i < last =>
            {
                tracing::debug!(method = %candidate.method, "the hub has no such send method; trying the next");
            }
            Err(Error::Hub(reason)) if methods.send.is_none() && is_missing_method(&reason) => {
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(SendError::NoMethod {
        tried: candidates
            .iter()
            .map(|c| c.method.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// `Method(name,text)`: the method and its arguments in order (`name`, `text`); a bare
/// `Method` sends `(name, text)`.
impl fmt::Display for SendMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let args: Vec<&str> = self
            .args
            .iter()
            .map(|a| match a {
                SendArg::Name => "name",
                SendArg::Text => "text",
            })
            .collect();
        write!(f, "{}({})", self.method, args.join(","))
    }
}

/// A contract written by hand could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(String);

fn split_call(s: &str) -> Result<(&str, Option<Vec<&str>>), ParseError> {
    let s = s.trim();
    let (name, rest) = match s.find('(') {
        None => (s, None),
        Some(i) => {
            let inner = s[i + 1..]
                .strip_suffix(')')
                .ok_or_else(|| ParseError(format!("'{s}': a list of arguments ends with ')'")))?;
            (
                &s[..i],
                Some(inner.split(',').map(str::trim).collect::<Vec<_>>()),
            )
        }
    };
    let name = name.trim();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '.' || c == '-')
    {
        return Err(ParseError(format!("'{s}': a method name is expected")));
    }
    Ok((name, rest))
}

impl std::str::FromStr for SendMethod {
    type Err = ParseError;

    /// `Method`, `Method(name,text)`, `Method(text,name)` or `Method(text)`.
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let (name, args) = split_call(s)?;
        let args = match args {
            None => vec![SendArg::Name, SendArg::Text],
            Some(args) => args
                .iter()
                .map(|a| match a.to_ascii_lowercase().as_str() {
                    "name" | "user" | "sender" => Ok(SendArg::Name),
                    "text" | "message" => Ok(SendArg::Text),
                    _ => Err(ParseError(format!(
                        "'{s}': each argument is `name` or `text`, not '{a}'"
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        if !args.contains(&SendArg::Text) {
            return Err(ParseError(format!("'{s}': the arguments need `text`")));
        }
        Ok(Self {
            method: name.to_owned(),
            args,
        })
    }
}

/// `Method` (auto shape), or `Method(SENDER,TEXT)` where each place is an argument's position
/// (`1`), a field of one (`0.user`), and the sender may be `_` (not said).
impl fmt::Display for ReceiveMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = |p: &Place| match &p.field {
            None => p.arg.to_string(),
            Some(field) => format!("{}.{field}", p.arg),
        };
        match &self.shape {
            Shape::Auto => write!(f, "{}", self.method),
            Shape::Args { sender, text } => write!(
                f,
                "{}({},{})",
                self.method,
                sender.as_ref().map_or("_".to_owned(), place),
                place(text)
            ),
        }
    }
}

impl std::str::FromStr for ReceiveMethod {
    type Err = ParseError;

    /// See the `Display` form.
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let (name, places) = split_call(s)?;
        let shape = match places.as_deref() {
            None => Shape::Auto,
            Some([sender, text]) => {
                let place = |p: &str| -> Result<Place, ParseError> {
                    let (arg, field) = match p.split_once('.') {
                        Some((arg, field)) if !field.is_empty() => (arg, Some(field.to_owned())),
                        Some(_) => {
                            return Err(ParseError(format!("'{s}': a field name after '.'")));
                        }
                        None => (p, None),
                    };
                    let arg = arg.parse().map_err(|_| {
                        ParseError(format!(
                            "'{s}': '{p}' is not an argument position (0, 1, …) or a field (0.user)"
                        ))
                    })?;
                    Ok(Place { arg, field })
                };
                Shape::Args {
                    sender: if *sender == "_" {
                        None
                    } else {
                        Some(place(sender)?)
                    },
                    text: place(text)?,
                }
            }
            Some(_) => {
                return Err(ParseError(format!(
                    "'{s}': two places are expected, the sender's and the text's, like Method(0,1), Method(0.user,0.message) or Method(_,0)"
                )));
            }
        };
        Ok(Self {
            method: name.to_owned(),
            shape,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(v: serde_json::Value) -> Arg {
        Arg::serialize(&v).unwrap()
    }

    #[test]
    fn auto_reads_the_shapes_a_receiver_meets() {
        let auto = HubMethods::default();
        let got = |target: &str, args: Vec<Arg>| auto.recognize(target, &args);
        let msg = |sender: Option<&str>, text: &str| {
            Some(Received {
                sender: sender.map(str::to_owned),
                text: text.to_owned(),
            })
        };
        assert_eq!(
            got("ReceiveMessage", vec!["ann".into(), "hi".into()]),
            msg(Some("ann"), "hi")
        );
        assert_eq!(
            got(
                "receivemessage",
                vec![
                    "ann".into(),
                    "hi".into(),
                    json(serde_json::json!(1700000000))
                ]
            ),
            msg(Some("ann"), "hi")
        );
        assert_eq!(
            got(
                "ReceiveMessage",
                vec![json(
                    serde_json::json!({"User": "ann", "Message": "hi", "at": 3})
                )]
            ),
            msg(Some("ann"), "hi")
        );
        assert_eq!(got("broadcastMessage", vec!["hi".into()]), msg(None, "hi"));
        assert_eq!(got("somethingElse", vec!["a".into(), "b".into()]), None);
        assert_eq!(
            got("ReceiveMessage", vec![json(serde_json::json!({"n": 1}))]),
            None
        );
    }

    #[test]
    fn a_custom_mapping_reads_fields_and_positions() {
        let methods = HubMethods {
            preset: Preset::Custom,
            send: None,
            receive: vec![
                "Said(2,0)".parse().unwrap(),
                "Posted(1.who,1.what)".parse().unwrap(),
                "Shout(_,0)".parse().unwrap(),
            ],
        };
        let r = methods
            .recognize("said", &["hi".into(), "x".into(), "ann".into()])
            .unwrap();
        assert_eq!((r.sender.as_deref(), r.text.as_str()), (Some("ann"), "hi"));
        let r = methods
            .recognize(
                "Posted",
                &[
                    json(serde_json::json!(1)),
                    json(serde_json::json!({"who": "bo", "what": "yo"})),
                ],
            )
            .unwrap();
        assert_eq!((r.sender.as_deref(), r.text.as_str()), (Some("bo"), "yo"));
        let r = methods.recognize("Shout", &["hey".into()]).unwrap();
        assert_eq!((r.sender, r.text.as_str()), (None, "hey"));
        // Only the named methods: auto's are not listened to any more.
        assert_eq!(
            methods.recognize("ReceiveMessage", &["a".into(), "b".into()]),
            None
        );
        for text in ["Said(2,0)", "Posted(1.who,1.what)", "Shout(_,0)", "Any"] {
            assert_eq!(text.parse::<ReceiveMethod>().unwrap().to_string(), text);
        }
        assert!("Bad(1)".parse::<ReceiveMethod>().is_err());
        assert!("(0,1)".parse::<ReceiveMethod>().is_err());
    }

    #[test]
    fn send_methods_parse_and_auto_tries_each_preset_once() {
        let s: SendMethod = "Post(text,name)".parse().unwrap();
        assert_eq!(s.args, vec![SendArg::Text, SendArg::Name]);
        assert_eq!(s.to_string(), "Post(text,name)");
        assert_eq!(
            "SendMessage".parse::<SendMethod>().unwrap().to_string(),
            "SendMessage(name,text)"
        );
        assert!("Post(name)".parse::<SendMethod>().is_err());
        let names: Vec<String> = HubMethods::default()
            .send_candidates()
            .into_iter()
            .map(|s| s.method)
            .collect();
        assert_eq!(names, ["Send", "SendMessage"]);
        let stored = Preset::CoreTutorial.methods();
        assert_eq!(HubMethods::from_stored(Some(&stored.to_stored())), stored);
        assert_eq!(
            HubMethods::from_stored(Some("{oops")),
            HubMethods::default()
        );
    }

    #[test]
    fn only_a_missing_method_answer_allows_another_try() {
        assert!(is_missing_method("Unknown hub method 'Send'"));
        assert!(is_missing_method("'Send' method could not be resolved."));
        assert!(is_missing_method(
            "Failed to invoke 'Send' due to an error on the server. HubException: Method does not exist."
        ));
        assert!(!is_missing_method(
            "An unexpected error occurred invoking 'Send' on the server."
        ));
        assert!(!is_missing_method(
            "Unavailable: the backplane is unreachable"
        ));
    }
}
