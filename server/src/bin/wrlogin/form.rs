//! The login form as a pure state machine: keys and login outcomes go in; what to draw, and when
//! to send a login, come out. No Wayland, no sockets, so every rule is unit-tested here.

use zeroize::{Zeroize, Zeroizing};

/// Longest user name accepted, in characters (login names are far shorter; this only bounds
/// what a stuck key can do).
pub const MAX_USER_CHARS: usize = 256;
/// Longest password accepted, in characters.
pub const MAX_PASSWORD_CHARS: usize = 512;
/// Shown when the user submits without a user name.
pub const NO_USER_MESSAGE: &str = "Enter your user name";
/// Shown for a refusal that came without a message.
pub const REFUSED_MESSAGE: &str = "Login refused";

/// The form's two fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    User,
    Password,
}

impl Field {
    fn other(self) -> Field {
        match self {
            Field::User => Field::Password,
            Field::Password => Field::User,
        }
    }
}

/// A key press, already interpreted by the keymap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// Printable text for the focused field.
    Text(String),
    /// Tab or Down.
    NextField,
    /// Shift+Tab or Up.
    PreviousField,
    /// Return or keypad Enter.
    Enter,
    Backspace,
    /// Clears both fields and the error.
    Escape,
}

/// Where the form is in a login attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the user.
    Editing,
    /// A login was sent and its answer has not come back; further submits are ignored.
    Checking,
    /// The login was accepted; the form no longer takes keys.
    Welcome,
}

/// What the form wants done after a key.
#[derive(Debug)]
pub enum Action {
    /// Nothing changed.
    Nothing,
    /// Something visible changed.
    Redraw,
    /// Send this login (the form changed too: it now shows "Checking…").
    Submit(Credentials),
}

/// A login to send. The password copy is wiped when this is dropped.
#[derive(Debug)]
pub struct Credentials {
    pub username: String,
    pub password: Zeroizing<String>,
}

/// How a login attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    /// The launcher's message, e.g. "Wrong user name or password".
    Refused(String),
    /// The login service could not be asked (no socket, connection refused, bad reply…).
    Unavailable(String),
}

/// How the status line under the fields is coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Info,
    Error,
}

/// The form's state.
pub struct Form {
    user: String,
    /// Capacity reserved up front so typing never reallocates and leaves copies behind.
    password: Zeroizing<String>,
    focus: Field,
    error: Option<String>,
    phase: Phase,
    /// A lock screen's form: the user name is the session's and cannot be edited; only the
    /// password is typed.
    fixed_user: bool,
    /// The launcher's notice, shown while nothing else is (see [`Form::set_notice`]).
    notice: Option<String>,
}

impl Default for Form {
    fn default() -> Self {
        Self::new()
    }
}

impl Form {
    pub fn new() -> Self {
        Self {
            user: String::new(),
            password: Zeroizing::new(String::with_capacity(MAX_PASSWORD_CHARS * 4)),
            focus: Field::User,
            error: None,
            phase: Phase::Editing,
            fixed_user: false,
            notice: None,
        }
    }

    /// Something the user should know before logging in (their last session was lost with
    /// its server): shown as an error line until a login attempt replaces it.
    pub fn set_notice(&mut self, notice: &str) {
        self.notice = Some(notice.to_string());
    }

    /// The lock screen's form: `user`'s name shown, the password field focused for good.
    pub fn locked(user: &str) -> Self {
        let mut form = Self::new();
        form.user = user.to_string();
        form.focus = Field::Password;
        form.fixed_user = true;
        form
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    /// How many characters the password has (it is only ever shown as that many bullets).
    pub fn password_chars(&self) -> usize {
        self.password.chars().count()
    }

    pub fn focus(&self) -> Field {
        self.focus
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The line under the fields: the error if there is one, else what the form is doing.
    pub fn status(&self) -> Option<(String, Tone)> {
        if let Some(error) = &self.error {
            return Some((error.clone(), Tone::Error));
        }
        match self.phase {
            Phase::Editing => self.notice.clone().map(|n| (n, Tone::Error)),
            Phase::Checking => Some(("Checking…".into(), Tone::Info)),
            Phase::Welcome if self.fixed_user => Some(("Unlocked".into(), Tone::Info)),
            Phase::Welcome => Some((format!("Welcome, {}", self.user), Tone::Info)),
        }
    }

    pub fn key(&mut self, key: Key) -> Action {
        if self.phase == Phase::Welcome {
            return Action::Nothing;
        }
        match key {
            Key::Text(text) => self.insert(&text),
            Key::NextField | Key::PreviousField if self.fixed_user => Action::Nothing,
            Key::NextField | Key::PreviousField => {
                self.focus = self.focus.other();
                Action::Redraw
            }
            Key::Backspace => self.backspace(),
            Key::Escape if self.fixed_user => {
                let had_something = !self.password.is_empty() || self.error.is_some();
                self.password.zeroize();
                self.error = None;
                if had_something {
                    Action::Redraw
                } else {
                    Action::Nothing
                }
            }
            Key::Escape => {
                let had_something =
                    !self.user.is_empty() || !self.password.is_empty() || self.error.is_some();
                self.user.clear();
                self.password.zeroize();
                self.error = None;
                let moved = self.focus != Field::User;
                self.focus = Field::User;
                if had_something || moved {
                    Action::Redraw
                } else {
                    Action::Nothing
                }
            }
            Key::Enter => match self.focus {
                Field::User => {
                    self.focus = Field::Password;
                    Action::Redraw
                }
                Field::Password => self.submit(),
            },
        }
    }

    /// Applies the answer to the login that [`Form::key`] asked for.
    pub fn finish(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Accepted => {
                self.phase = Phase::Welcome;
                self.error = None;
                self.password.zeroize();
            }
            Outcome::Refused(message) => {
                self.phase = Phase::Editing;
                let message = message.trim();
                self.error = Some(if message.is_empty() {
                    REFUSED_MESSAGE.to_string()
                } else {
                    message.to_string()
                });
                self.password.zeroize();
                self.focus = Field::Password;
            }
            Outcome::Unavailable(reason) => {
                // The password stays: the user retries once the service is back.
                self.phase = Phase::Editing;
                self.error = Some(format!("Login service unavailable: {reason}"));
            }
        }
    }

    fn insert(&mut self, text: &str) -> Action {
        let (field, max) = match self.focus {
            Field::User => (&mut self.user, MAX_USER_CHARS),
            Field::Password => (&mut *self.password, MAX_PASSWORD_CHARS),
        };
        let room = max.saturating_sub(field.chars().count());
        let before = field.len();
        field.extend(text.chars().filter(|c| !c.is_control()).take(room));
        if field.len() != before {
            Action::Redraw
        } else {
            Action::Nothing
        }
    }

    fn backspace(&mut self) -> Action {
        let field = match self.focus {
            Field::User => &mut self.user,
            Field::Password => &mut *self.password,
        };
        let Some((start, c)) = field.char_indices().next_back() else {
            return Action::Nothing;
        };
        // Overwrite the character before cutting it off, so no password byte stays behind in
        // the string's spare capacity; same length, so this never reallocates.
        field.replace_range(start.., &"\0".repeat(c.len_utf8()));
        field.truncate(start);
        Action::Redraw
    }

    fn submit(&mut self) -> Action {
        if self.phase == Phase::Checking {
            return Action::Nothing;
        }
        if self.user.trim().is_empty() {
            self.error = Some(NO_USER_MESSAGE.into());
            self.focus = Field::User;
            return Action::Redraw;
        }
        self.phase = Phase::Checking;
        self.error = None;
        let mut password = Zeroizing::new(String::with_capacity(self.password.len()));
        password.push_str(&self.password);
        Action::Submit(Credentials {
            username: self.user.clone(),
            password,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(form: &mut Form, text: &str) {
        assert!(matches!(
            form.key(Key::Text(text.into())),
            Action::Redraw | Action::Nothing
        ));
    }

    fn submit(form: &mut Form) -> Credentials {
        match form.key(Key::Enter) {
            Action::Submit(creds) => creds,
            other => panic!("expected a submit, got {other:?}"),
        }
    }

    #[test]
    fn text_goes_to_the_focused_field_and_enter_moves_to_the_password() {
        let mut form = Form::new();
        typed(&mut form, "alice");
        assert_eq!(form.user(), "alice");
        assert!(matches!(form.key(Key::Enter), Action::Redraw));
        assert_eq!(form.focus(), Field::Password);
        typed(&mut form, "s3cr3t ü");
        assert_eq!(form.user(), "alice");
        assert_eq!(form.password_chars(), 8);
        let creds = submit(&mut form);
        assert_eq!(creds.username, "alice");
        assert_eq!(creds.password.as_str(), "s3cr3t ü");
        assert_eq!(form.phase(), Phase::Checking);
        assert_eq!(form.status(), Some(("Checking…".into(), Tone::Info)));
    }

    #[test]
    fn tab_shift_tab_up_and_down_switch_fields() {
        let mut form = Form::new();
        form.key(Key::NextField);
        assert_eq!(form.focus(), Field::Password);
        form.key(Key::NextField);
        assert_eq!(form.focus(), Field::User);
        form.key(Key::PreviousField);
        assert_eq!(form.focus(), Field::Password);
        form.key(Key::PreviousField);
        assert_eq!(form.focus(), Field::User);
    }

    #[test]
    fn control_characters_are_not_typed() {
        let mut form = Form::new();
        assert!(matches!(
            form.key(Key::Text("\u{1}\r".into())),
            Action::Nothing
        ));
        typed(&mut form, "a\tb");
        assert_eq!(form.user(), "ab");
    }

    #[test]
    fn backspace_deletes_one_character_of_the_focused_field() {
        let mut form = Form::new();
        typed(&mut form, "bö");
        form.key(Key::Backspace);
        assert_eq!(form.user(), "b");
        form.key(Key::Backspace);
        assert!(matches!(form.key(Key::Backspace), Action::Nothing));
        form.key(Key::NextField);
        typed(&mut form, "pw€");
        form.key(Key::Backspace);
        assert_eq!(form.password_chars(), 2);
        assert_eq!(form.password.as_str(), "pw");
    }

    #[test]
    fn escape_clears_both_fields_and_the_error() {
        let mut form = Form::new();
        typed(&mut form, "alice");
        form.key(Key::Enter);
        typed(&mut form, "pw");
        submit(&mut form);
        form.finish(Outcome::Refused("Wrong user name or password".into()));
        typed(&mut form, "x");
        assert!(matches!(form.key(Key::Escape), Action::Redraw));
        assert_eq!(form.user(), "");
        assert_eq!(form.password_chars(), 0);
        assert_eq!(form.error.as_deref(), None);
        assert_eq!(form.focus(), Field::User);
        assert!(matches!(form.key(Key::Escape), Action::Nothing));
    }

    #[test]
    fn submits_are_ignored_while_checking() {
        let mut form = Form::new();
        typed(&mut form, "alice");
        form.key(Key::Enter);
        submit(&mut form);
        assert!(matches!(form.key(Key::Enter), Action::Nothing));
        assert_eq!(form.phase(), Phase::Checking);
    }

    #[test]
    fn an_empty_user_name_is_not_submitted() {
        let mut form = Form::new();
        form.key(Key::NextField);
        typed(&mut form, "pw");
        assert!(matches!(form.key(Key::Enter), Action::Redraw));
        assert_eq!(form.error.as_deref(), Some(NO_USER_MESSAGE));
        assert_eq!(form.focus(), Field::User);
        assert_eq!(form.phase(), Phase::Editing);
    }

    #[test]
    fn a_refusal_shows_the_message_keeps_the_user_and_clears_the_password() {
        let mut form = Form::new();
        typed(&mut form, "alice");
        form.key(Key::Enter);
        typed(&mut form, "wrong");
        submit(&mut form);
        form.finish(Outcome::Refused("Wrong user name or password".into()));
        assert_eq!(form.phase(), Phase::Editing);
        assert_eq!(form.user(), "alice");
        assert_eq!(form.password_chars(), 0);
        assert_eq!(form.focus(), Field::Password);
        assert_eq!(
            form.status(),
            Some(("Wrong user name or password".into(), Tone::Error))
        );
        // A new submit is possible and clears the error.
        typed(&mut form, "right");
        let creds = submit(&mut form);
        assert_eq!(creds.password.as_str(), "right");
        assert_eq!(form.error.as_deref(), None);
    }

    #[test]
    fn a_notice_shows_until_the_first_attempt() {
        let mut form = Form::new();
        form.set_notice("Your session was on b, a server that failed");
        assert_eq!(
            form.status(),
            Some((
                "Your session was on b, a server that failed".into(),
                Tone::Error
            ))
        );
        typed(&mut form, "alice");
        form.key(Key::Enter);
        typed(&mut form, "pw");
        submit(&mut form);
        assert_eq!(form.status(), Some(("Checking…".into(), Tone::Info)));
    }

    #[test]
    fn a_refusal_without_a_message_still_says_so() {
        let mut form = Form::new();
        typed(&mut form, "bob");
        form.key(Key::Enter);
        submit(&mut form);
        form.finish(Outcome::Refused("  ".into()));
        assert_eq!(form.error.as_deref(), Some(REFUSED_MESSAGE));
    }

    #[test]
    fn an_unavailable_service_keeps_both_fields_for_a_retry() {
        let mut form = Form::new();
        typed(&mut form, "alice");
        form.key(Key::Enter);
        typed(&mut form, "pw");
        submit(&mut form);
        form.finish(Outcome::Unavailable("connection refused".into()));
        assert_eq!(
            form.error.as_deref(),
            Some("Login service unavailable: connection refused")
        );
        assert_eq!(form.password_chars(), 2);
        assert_eq!(form.phase(), Phase::Editing);
        submit(&mut form);
    }

    #[test]
    fn acceptance_welcomes_the_user_and_ignores_further_keys() {
        let mut form = Form::new();
        typed(&mut form, "alice");
        form.key(Key::Enter);
        typed(&mut form, "pw");
        submit(&mut form);
        form.finish(Outcome::Accepted);
        assert_eq!(form.phase(), Phase::Welcome);
        assert_eq!(form.password_chars(), 0);
        assert_eq!(form.status(), Some(("Welcome, alice".into(), Tone::Info)));
        assert!(matches!(form.key(Key::Text("x".into())), Action::Nothing));
        assert!(matches!(form.key(Key::Escape), Action::Nothing));
    }

    #[test]
    fn a_lock_form_types_only_the_password_of_its_user() {
        let mut form = Form::locked("alice");
        assert_eq!(form.focus(), Field::Password);
        assert!(matches!(form.key(Key::NextField), Action::Nothing));
        assert_eq!(form.focus(), Field::Password);
        typed(&mut form, "pw");
        assert_eq!(form.user(), "alice");
        assert!(matches!(form.key(Key::Escape), Action::Redraw));
        assert_eq!(form.password_chars(), 0);
        assert_eq!(form.user(), "alice", "escape keeps the user");
        typed(&mut form, "wrong");
        let creds = submit(&mut form);
        assert_eq!(creds.username, "alice");
        form.finish(Outcome::Refused("Wrong password".into()));
        assert_eq!(form.focus(), Field::Password);
        assert_eq!(form.status(), Some(("Wrong password".into(), Tone::Error)));
        typed(&mut form, "right");
        submit(&mut form);
        form.finish(Outcome::Accepted);
        assert_eq!(form.status(), Some(("Unlocked".into(), Tone::Info)));
    }

    #[test]
    fn fields_are_bounded() {
        let mut form = Form::new();
        typed(&mut form, &"u".repeat(MAX_USER_CHARS + 10));
        assert_eq!(form.user().chars().count(), MAX_USER_CHARS);
        assert!(matches!(form.key(Key::Text("u".into())), Action::Nothing));
        form.key(Key::NextField);
        typed(&mut form, &"p".repeat(MAX_PASSWORD_CHARS + 10));
        assert_eq!(form.password_chars(), MAX_PASSWORD_CHARS);
    }

    #[test]
    fn the_password_never_reallocates_while_typed() {
        let mut form = Form::new();
        form.key(Key::NextField);
        let before = form.password.as_ptr();
        typed(&mut form, &"€".repeat(MAX_PASSWORD_CHARS));
        assert_eq!(form.password.as_ptr(), before);
    }
}
