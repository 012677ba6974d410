//! What a server knows of its pool: the registered servers, who is drained, and every token's
//! binding, as of one etcd revision. Built from a read of the whole prefix and kept current by
//! a watch from that read's revision; pure, so the rules are unit-tested without etcd.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use wayray_protocol::sessions::ApplianceAuthState;

use super::keys::{Binding, CardRecord, Key, Keys, ServerRecord};

#[derive(Debug, Clone, Default)]
pub struct PoolView {
    pub servers: BTreeMap<String, ServerRecord>,
    pub bindings: HashMap<String, Binding>,
    pub drained: BTreeSet<String>,
    /// Enrolled card keys (SubjectPublicKeyInfo DER) by token.
    pub cards: HashMap<String, Vec<u8>>,
    /// Administrators' decisions on appliances (approved or revoked) by fingerprint.
    pub appliances: HashMap<String, ApplianceAuthState>,
    /// The etcd revision this view is current to (0: never read).
    pub revision: i64,
    /// Whether the registry reaches etcd and holds a live lease now. While it does not, the
    /// view is the last one seen (servers may have come or gone since).
    pub online: bool,
}

/// What one change did to the view, for the daemon to act on.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Servers that left the pool (lease expired, or stopped).
    pub servers_gone: Vec<String>,
    pub servers_new: Vec<String>,
    /// Tokens whose binding went away.
    pub unbound: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.servers_gone.is_empty() && self.servers_new.is_empty() && self.unbound.is_empty()
    }

    pub fn merge(&mut self, other: Changes) {
        self.servers_gone.extend(other.servers_gone);
        self.servers_new.extend(other.servers_new);
        self.unbound.extend(other.unbound);
    }
}

impl PoolView {
    /// A key was put. Values that do not parse are logged and skipped: another writer's bad
    /// record must not stop this server.
    pub fn put(&mut self, keys: &Keys, key: &str, value: &[u8]) -> Changes {
        let mut changes = Changes::default();
        match keys.parse(key) {
            Some(Key::Server(name)) => match serde_json::from_slice::<ServerRecord>(value) {
                Ok(record) => {
                    if self.servers.insert(name.to_owned(), record).is_none() {
                        changes.servers_new.push(name.to_owned());
                    }
                }
                Err(err) => {
                    tracing::warn!(key, %err, "ignoring a server record that does not parse")
                }
            },
            Some(Key::Binding(token)) => match serde_json::from_slice::<Binding>(value) {
                Ok(binding) => {
                    self.bindings.insert(token.to_owned(), binding);
                }
                Err(err) => tracing::warn!(key, %err, "ignoring a binding that does not parse"),
            },
            Some(Key::Drain(name)) => {
                self.drained.insert(name.to_owned());
            }
            Some(Key::Card(token)) => {
                match serde_json::from_slice::<CardRecord>(value)
                    .ok()
                    .and_then(|c| c.spki())
                {
                    Some(spki) => {
                        self.cards.insert(token.to_owned(), spki);
                    }
                    None => tracing::warn!(key, "ignoring a card record that does not parse"),
                }
            }
            Some(Key::Appliance(fingerprint)) => match value {
                b"approved" => {
                    self.appliances
                        .insert(fingerprint.to_owned(), ApplianceAuthState::Approved);
                }
                b"revoked" => {
                    self.appliances
                        .insert(fingerprint.to_owned(), ApplianceAuthState::Revoked);
                }
                _ => tracing::warn!(key, "ignoring an appliance decision that does not parse"),
            },
            None => {}
        }
        changes
    }

    pub fn delete(&mut self, keys: &Keys, key: &str) -> Changes {
        let mut changes = Changes::default();
        match keys.parse(key) {
            Some(Key::Server(name)) if self.servers.remove(name).is_some() => {
                changes.servers_gone.push(name.to_owned());
            }
            Some(Key::Binding(token)) if self.bindings.remove(token).is_some() => {
                changes.unbound.push(token.to_owned());
            }
            Some(Key::Drain(name)) => {
                self.drained.remove(name);
            }
            Some(Key::Card(token)) => {
                self.cards.remove(token);
            }
            Some(Key::Appliance(fingerprint)) => {
                self.appliances.remove(fingerprint);
            }
            Some(Key::Server(_)) | Some(Key::Binding(_)) | None => {}
        }
        changes
    }

    /// Replaces everything with a fresh read (after a reconnect or a compacted watch),
    /// reporting what differs from before.
    pub fn replace(&mut self, fresh: PoolView) -> Changes {
        let mut changes = Changes::default();
        for name in self.servers.keys() {
            if !fresh.servers.contains_key(name) {
                changes.servers_gone.push(name.clone());
            }
        }
        for name in fresh.servers.keys() {
            if !self.servers.contains_key(name) {
                changes.servers_new.push(name.clone());
            }
        }
        for token in self.bindings.keys() {
            if !fresh.bindings.contains_key(token) {
                changes.unbound.push(token.clone());
            }
        }
        let online = self.online;
        *self = fresh;
        self.online = online;
        changes
    }

    /// The token's binding, if the server it names is registered. A binding without its server
    /// is a moment of a dying lease (both go together) and counts as none.
    pub fn binding(&self, token: &str) -> Option<(&Binding, &ServerRecord)> {
        let binding = self.bindings.get(token)?;
        let server = self.servers.get(&binding.server)?;
        Some((binding, server))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str) -> Vec<u8> {
        serde_json::to_vec(&ServerRecord {
            name: name.into(),
            address: "127.0.0.1:7390".into(),
            fingerprint: "00".into(),
            capacity: 10,
            load: Default::default(),
        })
        .unwrap()
    }

    #[test]
    fn a_server_and_its_bindings_come_and_go() {
        let keys = Keys::new("/wayray");
        let mut view = PoolView::default();
        let c = view.put(&keys, &keys.server("a"), &record("a"));
        assert_eq!(c.servers_new, ["a"]);
        let binding = serde_json::to_vec(&Binding::new("a", 7)).unwrap();
        view.put(&keys, &keys.binding("tok"), &binding);
        assert_eq!(
            view.binding("tok").map(|(b, _)| b.server.as_str()),
            Some("a")
        );
        // The lease expires: etcd deletes the server and its bindings, in any order.
        let c = view.delete(&keys, &keys.server("a"));
        assert_eq!(c.servers_gone, ["a"]);
        assert!(
            view.binding("tok").is_none(),
            "a binding without its server counts as none"
        );
        let c = view.delete(&keys, &keys.binding("tok"));
        assert_eq!(c.unbound, ["tok"]);
    }

    #[test]
    fn garbage_values_are_skipped_and_drains_tracked() {
        let keys = Keys::new("/wayray");
        let mut view = PoolView::default();
        assert!(view.put(&keys, &keys.server("a"), b"{not json").is_empty());
        assert!(view.servers.is_empty());
        view.put(&keys, &keys.drain("b"), b"");
        assert!(view.drained.contains("b"));
        view.delete(&keys, &keys.drain("b"));
        assert!(view.drained.is_empty());
    }

    #[test]
    fn a_fresh_read_reports_what_went_missing() {
        let keys = Keys::new("/wayray");
        let mut view = PoolView::default();
        view.put(&keys, &keys.server("a"), &record("a"));
        view.put(&keys, &keys.server("b"), &record("b"));
        view.online = true;
        let mut fresh = PoolView::default();
        fresh.put(&keys, &keys.server("b"), &record("b"));
        fresh.put(&keys, &keys.server("c"), &record("c"));
        let c = view.replace(fresh);
        assert_eq!(c.servers_gone, ["a"]);
        assert_eq!(c.servers_new, ["c"]);
        assert!(
            view.online,
            "being online is the registry's to say, not the read's"
        );
    }
}
