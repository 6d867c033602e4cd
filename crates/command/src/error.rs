//! Why a line is not a command, in words meant for the person who typed it.

/// Why a line did not parse. Every variant but [`ParseError::NotAddressed`] is
/// meant to be sent back to the person as the bot's reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The line is not for the bot. Transports stay silent on these.
    #[error(
        "not addressed to the bot: a command starts with the bot's name, an alias or a mention, or is sent in a direct message"
    )]
    NotAddressed,
    /// The bot was addressed with nothing after its name.
    #[error("you said my name but no command; say `help` to see what I can do")]
    Empty,
    /// The line is longer than any command could be.
    #[error("that line is too long to be a command ({chars} characters; the limit is {max})")]
    TooLong { chars: usize, max: usize },
    /// The first word is not a command.
    #[error("I don't know the command `{word}`{}; say `help` for the list", suggestion.map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    UnknownCommand {
        word: String,
        suggestion: Option<&'static str>,
    },
    /// The line starts like `command` but the rest does not fit its grammar.
    #[error("{reason}")]
    Invalid {
        command: &'static str,
        reason: String,
    },
}

impl ParseError {
    pub(crate) fn invalid(command: &'static str, reason: impl Into<String>) -> Self {
        ParseError::Invalid {
            command,
            reason: reason.into(),
        }
    }
}
