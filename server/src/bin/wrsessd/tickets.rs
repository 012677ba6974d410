//! Login tickets: the `WAYRAY_LOGIN_TICKET` each greeter is started with. A ticket names the
//! greeter session (and through it the token), so a login can only bind the token its greeter
//! was shown for; it is spent by the first successful login and dies with its greeter.
//!
//! Pure bookkeeping: the login server claims a ticket before asking PAM, so one greeter has at
//! most one attempt in flight (PAM's failure delay then paces guessing per greeter).

use std::collections::HashMap;

use wayray_protocol::sessions::SessionId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub greeter: SessionId,
    pub token: String,
    in_flight: bool,
}

/// What [`Tickets::claim`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Never issued, spent, or its greeter is gone.
    Unknown,
    /// Another attempt with this ticket is being checked.
    Busy,
    /// This attempt may go ahead; end it with [`Tickets::release`] or [`Tickets::spend`].
    Granted { greeter: SessionId, token: String },
}

#[derive(Debug, Default)]
pub struct Tickets {
    by_ticket: HashMap<String, Ticket>,
}

impl Tickets {
    pub fn issue(&mut self, ticket: String, greeter: SessionId, token: String) {
        self.by_ticket.insert(
            ticket,
            Ticket {
                greeter,
                token,
                in_flight: false,
            },
        );
    }

    pub fn claim(&mut self, ticket: &str) -> Claim {
        match self.by_ticket.get_mut(ticket) {
            None => Claim::Unknown,
            Some(t) if t.in_flight => Claim::Busy,
            Some(t) => {
                t.in_flight = true;
                Claim::Granted {
                    greeter: t.greeter,
                    token: t.token.clone(),
                }
            }
        }
    }

    /// The attempt failed: the ticket may be tried again.
    pub fn release(&mut self, ticket: &str) {
        if let Some(t) = self.by_ticket.get_mut(ticket) {
            t.in_flight = false;
        }
    }

    /// The attempt succeeded: the ticket is used up. `None` when it vanished during the attempt
    /// (its greeter exited), so the login must not count.
    pub fn spend(&mut self, ticket: &str) -> Option<Ticket> {
        self.by_ticket.remove(ticket)
    }

    /// Puts back a ticket whose success could not be reported, so the user can try again.
    pub fn restore(&mut self, ticket: String, mut spent: Ticket) {
        spent.in_flight = false;
        self.by_ticket.insert(ticket, spent);
    }

    /// The greeter ended: its tickets are worthless.
    pub fn forget_greeter(&mut self, greeter: SessionId) {
        self.by_ticket.retain(|_, t| t.greeter != greeter);
    }
}

/// The `WAYRAY_UNLOCK_TICKET` of a user session: names the session and its user to wrsessd, so
/// the session's locker can check that user's password, and only that user's. Unlike a login
/// ticket it is not spent (a session locks many times); it dies with its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnlockTicket {
    pub session: SessionId,
    pub user: String,
    in_flight: bool,
}

/// What [`UnlockTickets::claim`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnlockClaim {
    Unknown,
    Busy,
    /// Check the password of `user`; end the attempt with [`UnlockTickets::release`].
    Granted {
        session: SessionId,
        user: String,
    },
}

#[derive(Debug, Default)]
pub struct UnlockTickets {
    by_ticket: HashMap<String, UnlockTicket>,
}

impl UnlockTickets {
    pub fn issue(&mut self, ticket: String, session: SessionId, user: String) {
        self.by_ticket.insert(
            ticket,
            UnlockTicket {
                session,
                user,
                in_flight: false,
            },
        );
    }

    /// One attempt in flight per ticket, so PAM's delay paces guessing at one locker.
    pub fn claim(&mut self, ticket: &str) -> UnlockClaim {
        match self.by_ticket.get_mut(ticket) {
            None => UnlockClaim::Unknown,
            Some(t) if t.in_flight => UnlockClaim::Busy,
            Some(t) => {
                t.in_flight = true;
                UnlockClaim::Granted {
                    session: t.session,
                    user: t.user.clone(),
                }
            }
        }
    }

    pub fn release(&mut self, ticket: &str) {
        if let Some(t) = self.by_ticket.get_mut(ticket) {
            t.in_flight = false;
        }
    }

    /// The session ended: its ticket is worthless.
    pub fn forget_session(&mut self, session: SessionId) {
        self.by_ticket.retain(|_, t| t.session != session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn granted(greeter: SessionId, token: &str) -> Claim {
        Claim::Granted {
            greeter,
            token: token.to_string(),
        }
    }

    #[test]
    fn one_attempt_in_flight_per_ticket() {
        let mut t = Tickets::default();
        t.issue("a".into(), 1, "tok".into());
        assert_eq!(t.claim("a"), granted(1, "tok"));
        assert_eq!(t.claim("a"), Claim::Busy);
        t.release("a");
        assert_eq!(t.claim("a"), granted(1, "tok"));
    }

    #[test]
    fn a_spent_ticket_is_unknown() {
        let mut t = Tickets::default();
        t.issue("a".into(), 1, "tok".into());
        assert_eq!(t.claim("a"), granted(1, "tok"));
        assert!(t.spend("a").is_some());
        assert_eq!(t.claim("a"), Claim::Unknown);
        assert_eq!(t.claim("never issued"), Claim::Unknown);
    }

    #[test]
    fn a_restored_ticket_can_be_used_again() {
        let mut t = Tickets::default();
        t.issue("a".into(), 1, "tok".into());
        assert_eq!(t.claim("a"), granted(1, "tok"));
        let spent = t.spend("a");
        t.restore(
            "a".into(),
            spent.unwrap_or_else(|| panic!("ticket was issued")),
        );
        assert_eq!(t.claim("a"), granted(1, "tok"));
    }

    #[test]
    fn unlock_tickets_name_their_user_survive_use_and_die_with_their_session() {
        let mut t = UnlockTickets::default();
        t.issue("u".into(), 7, "alice".into());
        let alice = UnlockClaim::Granted {
            session: 7,
            user: "alice".into(),
        };
        assert_eq!(t.claim("u"), alice);
        assert_eq!(t.claim("u"), UnlockClaim::Busy);
        t.release("u");
        // Not spent by a success: the session locks again later.
        assert_eq!(t.claim("u"), alice);
        t.release("u");
        assert_eq!(t.claim("other"), UnlockClaim::Unknown);
        t.forget_session(7);
        assert_eq!(t.claim("u"), UnlockClaim::Unknown);
    }

    #[test]
    fn tickets_die_with_their_greeter() {
        let mut t = Tickets::default();
        t.issue("a".into(), 1, "tok".into());
        t.issue("b".into(), 2, "other".into());
        assert_eq!(t.claim("a"), granted(1, "tok"));
        t.forget_greeter(1);
        // An attempt that was in flight when the greeter went cannot spend it any more.
        assert_eq!(t.spend("a"), None);
        assert_eq!(t.claim("a"), Claim::Unknown);
        assert_eq!(t.claim("b"), granted(2, "other"));
    }
}
