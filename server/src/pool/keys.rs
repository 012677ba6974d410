//! Where the pool keeps what in etcd, and the JSON of each value. Everything lives under one
//! prefix (config `[pool] prefix`, default `/wayray`), versioned so a later layout can sit
//! beside this one:
//!
//! - `<prefix>/v1/servers/<name>`: [`ServerRecord`], under the server's lease (gone with it);
//! - `<prefix>/v1/bindings/<token>`: [`Binding`], under the lease of the server holding the
//!   session, so a dead server's bindings go when its lease expires;
//! - `<prefix>/v1/drain/<name>`: present while `<name>` takes no new sessions (no lease: a
//!   drain outlives restarts until it is lifted);
//! - `<prefix>/v1/cards/<token>`: [`CardRecord`], the key a card proved at its first login
//!   (no lease: an enrolment is for good), so every server of the pool holds the card to it;
//! - `<prefix>/v1/appliances/<fingerprint>`: `"approved"` or `"revoked"`, an administrator's
//!   last decision on that appliance at any server (no lease), so one approval admits it at
//!   every server it is redirected to.

use serde::{Deserialize, Serialize};
use wayray_protocol::sessions::SessionId;

/// A server as it registers itself: how appliances reach it, and its live load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerRecord {
    pub name: String,
    /// `HOST:PORT` of its QUIC endpoint.
    pub address: String,
    /// SHA-256 of its certificate's SubjectPublicKeyInfo (64 hex digits).
    pub fingerprint: String,
    /// How many sessions it is meant to hold (config `[pool] capacity`).
    pub capacity: u32,
    #[serde(default)]
    pub load: Load,
}

impl ServerRecord {
    /// What an appliance needs of it to connect there (Welcome's list, a redirect).
    pub fn for_appliances(&self) -> wayray_protocol::PoolServer {
        wayray_protocol::PoolServer {
            name: self.name.clone(),
            address: self.address.clone(),
            fingerprint: self.fingerprint.clone(),
        }
    }
}

/// A server's live load, refreshed in its registration while it changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Load {
    /// Sessions it runs (greeters included: each costs a compositor).
    pub sessions: u32,
    /// CPU busy over the last interval, in thousandths of all its cores.
    pub cpu_permille: u32,
    pub memory_used: u64,
    pub memory_total: u64,
}

/// A token's session: which server, which session there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub server: String,
    /// The session id as 16 hex digits (as `wradm` prints it).
    pub session: String,
}

impl Binding {
    pub fn new(server: &str, session: SessionId) -> Self {
        Self {
            server: server.to_owned(),
            session: wayray_protocol::sessions::session_id_string(session),
        }
    }
}

/// A card's enrolled key, pool-wide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardRecord {
    /// The SubjectPublicKeyInfo (DER) as lowercase hex.
    pub spki: String,
    /// Who logged in with it first.
    pub user: String,
}

impl CardRecord {
    pub fn new(spki: &[u8], user: &str) -> Self {
        Self {
            spki: spki.iter().map(|b| format!("{b:02x}")).collect(),
            user: user.to_owned(),
        }
    }

    /// The key's DER; `None` for a record whose hex is broken.
    pub fn spki(&self) -> Option<Vec<u8>> {
        if !self.spki.len().is_multiple_of(2) {
            return None;
        }
        (0..self.spki.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(self.spki.get(i..i + 2)?, 16).ok())
            .collect()
    }
}

/// The key names under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    root: String,
}

/// What a key under the prefix is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key<'a> {
    Server(&'a str),
    Binding(&'a str),
    Drain(&'a str),
    Card(&'a str),
    Appliance(&'a str),
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            root: format!("{}/v1/", prefix.trim_end_matches('/')),
        }
    }

    /// Everything the pool watches.
    pub fn all(&self) -> &str {
        &self.root
    }

    pub fn server(&self, name: &str) -> String {
        format!("{}servers/{name}", self.root)
    }

    pub fn binding(&self, token: &str) -> String {
        format!("{}bindings/{token}", self.root)
    }

    pub fn drain(&self, name: &str) -> String {
        format!("{}drain/{name}", self.root)
    }

    pub fn card(&self, token: &str) -> String {
        format!("{}cards/{token}", self.root)
    }

    pub fn appliance(&self, fingerprint: &str) -> String {
        format!("{}appliances/{fingerprint}", self.root)
    }

    /// What `key` names; `None` for keys of another layout or prefix.
    pub fn parse<'a>(&self, key: &'a str) -> Option<Key<'a>> {
        let rest = key.strip_prefix(self.root.as_str())?;
        let (kind, name) = rest.split_once('/')?;
        if name.is_empty() {
            return None;
        }
        match kind {
            "servers" => Some(Key::Server(name)),
            "bindings" => Some(Key::Binding(name)),
            "drain" => Some(Key::Drain(name)),
            "cards" => Some(Key::Card(name)),
            "appliances" => Some(Key::Appliance(name)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_foreign_keys_are_ignored() {
        let keys = Keys::new("/wayray/");
        assert_eq!(keys.all(), "/wayray/v1/");
        let token = "atr3b8f8001.04a1b2c3";
        assert_eq!(keys.parse(&keys.binding(token)), Some(Key::Binding(token)));
        assert_eq!(keys.parse(&keys.server("a")), Some(Key::Server("a")));
        assert_eq!(keys.parse(&keys.drain("b")), Some(Key::Drain("b")));
        assert_eq!(keys.parse("/wayray/v1/servers/"), None);
        assert_eq!(keys.parse("/wayray/v2/servers/a"), None);
        assert_eq!(keys.parse("/other/v1/servers/a"), None);
        assert_eq!(keys.parse("/wayray/v1/unknown/a"), None);
    }

    #[test]
    fn records_are_json_and_old_records_without_load_read() {
        let text = r#"{"name":"a","address":"10.0.0.1:7390","fingerprint":"ab","capacity":50}"#;
        let rec: ServerRecord = serde_json::from_str(text).unwrap();
        assert_eq!(rec.load, Load::default());
        let b = Binding::new("a", 0xab);
        assert_eq!(b.session, "00000000000000ab");
        let card = CardRecord::new(&[0x30, 0x59, 0x00, 0xff], "alice");
        assert_eq!(card.spki, "305900ff");
        assert_eq!(card.spki(), Some(vec![0x30, 0x59, 0x00, 0xff]));
        let broken = CardRecord {
            spki: "3g".into(),
            user: "x".into(),
        };
        assert_eq!(broken.spki(), None);
        assert_eq!(
            Keys::new("/w").parse("/w/v1/cards/atr1.0a"),
            Some(Key::Card("atr1.0a"))
        );
    }
}
