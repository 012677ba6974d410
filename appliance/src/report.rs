//! Errors in log lines: tracing's formatter prints only an error's own message, which for our
//! context-carrying errors ("handshake with … failed") hides the cause that matters.

/// `error: cause: cause …` on one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
