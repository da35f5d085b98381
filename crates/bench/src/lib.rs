//! Fixtures for Hubbub's benchmarks.
//!
//! The criterion benches in `benches/` measure the protocol crate; the hub and client load
//! generators arrive with their issues and share these fixtures.

use hubbub_protocol::{Arg, HubMessage, Invocation};

/// The message sizes the protocol benchmark covers: a typical chat line, 1 KiB and 16 KiB of text.
pub const CHAT_SIZES: [(&str, usize); 3] = [("small", 16), ("1KiB", 1024), ("16KiB", 16 * 1024)];

/// A `broadcastMessage(name, text)` invocation, as the hub fans it out, with `text_len` bytes
/// of text. The text mixes ASCII and a few characters that JSON must escape or encode as
/// multi-byte UTF-8, as real chat does.
pub fn broadcast(text_len: usize) -> HubMessage {
    const PATTERN: &str = "Hello, world! \"quoted\" and caf\u{e9} \u{2713} ";
    let text: String = PATTERN.chars().cycle().take(text_len).collect();
    HubMessage::Invocation(Invocation {
        target: "broadcastMessage".to_owned(),
        arguments: vec![Arg::from("ann"), Arg::from(text)],
        ..Invocation::default()
    })
}
