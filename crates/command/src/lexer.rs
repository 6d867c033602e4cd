//! Splitting a command into words.

/// Splits on any Unicode whitespace; chat clients send non-breaking spaces and
/// newlines as readily as plain spaces.
pub(crate) fn words(text: &str) -> Vec<&str> {
    text.split_whitespace().collect()
}
