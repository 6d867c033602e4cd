//! The chat grammar of chima: one line of text in, one [`Command`] out.
//!
//! This crate is pure (no I/O, no async) so that every chat transport (Slack
//! Socket Mode, the Events API, slash commands, the terminal shell adapter) and
//! the `chima parse` CLI share exactly one parser, and so that it can be fuzzed
//! and property-tested in isolation.
//!
//! The grammar is hubot-deploy's, where hubot-deploy was right:
//!
//! ```text
//! deploy[:task][!] <app>[/<ref>] [to|in|on <env>[/<hosts>]] [<otp>]
//! deploys <app>[/<ref>] [in <env>]
//! where can i deploy <app>[?]
//! lock <app> in <env> [for <duration>] [reason...]   (also deploy:lock)
//! unlock <app> in <env>                  (also deploy:unlock)
//! cancel <app> in <env>
//! rollback <app> in <env>
//! status <app>[/<ref>]
//! freeze <app>|all [in <env>] [for 3d|until <date>] [reason...]
//! unfreeze <app>|all [in <env>]
//! deploy!! <app>[/<ref>] to <env> <reason...>      (break-glass)
//! approve <id>                           (a deployment waiting for approval)
//! reject <id> [reason...]
//! deploy:version
//! help
//! ```
//!
//! and differs from it where it was wrong: a line that is addressed to the bot
//! but does not parse gets a [`ParseError`] whose text says what is wrong,
//! instead of silence; `deploy:migrate!` is task `deploy:migrate` with force;
//! refs and hosts that git or a shell could misread are refused here, before
//! anything else sees them.

mod address;
mod command;
mod duration;
mod error;
mod freeze;
mod lexer;
mod validate;

pub use address::{Addressee, strip_address};
pub use command::{ALL, Command, Deploy, MAX_REJECT_REASON};
pub use duration::{MAX_DURATION, format_duration, parse_duration};
pub use error::ParseError;
pub use freeze::{
    DEFAULT_FREEZE, FreezeEnd, MAX_FREEZE, MAX_REASON_CHARS, Until, format_span,
    parse_freeze_duration, parse_until,
};
pub use validate::{MAX_LINE_CHARS, check_hosts, check_ref, closest, is_slug};

/// Parses one chat line addressed (or not) to the bot described by `to`.
///
/// Returns [`ParseError::NotAddressed`] when the line is not for the bot:
/// transports ignore those silently. Every other error is a reply to send.
pub fn parse(line: &str, to: &Addressee) -> Result<Command, ParseError> {
    let rest = strip_address(line, to).ok_or(ParseError::NotAddressed)?;
    parse_command(rest)
}

/// Parses the text of a command without any addressing (what follows the bot's
/// name, or the text of a `/deploy` slash command).
pub fn parse_command(text: &str) -> Result<Command, ParseError> {
    let chars = text.chars().count();
    if chars > MAX_LINE_CHARS {
        return Err(ParseError::TooLong {
            chars,
            max: MAX_LINE_CHARS,
        });
    }
    command::parse_words(&lexer::words(text))
}
