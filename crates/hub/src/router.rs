//! Who is connected, which groups and users they belong to, and delivery to a scope.
//!
//! The registries are sharded maps (no global lock); nothing here awaits, so no lock is held
//! across an await. A message is wrapped in one shared [`Frame`] and encoded at most once per
//! protocol, whatever the number of recipients.

use std::collections::HashSet;
use std::sync::Arc;

use dashmap::DashMap;
use hubbub_protocol::{Arg, Headers, HubMessage, Invocation};

use crate::connection::Connection;
use crate::frame::{Frame, Outbound};

/// The recipients of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every connection of the hub.
    All,
    /// The connections in a group.
    Group(String),
    /// The connections of a user.
    User(String),
    /// One connection.
    Connection(String),
}

#[derive(Debug, Default)]
pub(crate) struct Router {
    connections: DashMap<String, Arc<Connection>>,
    groups: DashMap<String, HashSet<String>>,
    users: DashMap<String, HashSet<String>>,
}

impl Router {
    pub(crate) fn add(&self, conn: Arc<Connection>) {
        self.users
            .entry(conn.user.clone())
            .or_default()
            .insert(conn.id.clone());
        self.connections.insert(conn.id.clone(), conn);
    }

    pub(crate) fn remove(&self, conn: &Connection) {
        self.connections.remove(&conn.id);
        self.users.remove_if_mut(&conn.user, |_, ids| {
            ids.remove(&conn.id);
            ids.is_empty()
        });
        for group in conn
            .groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
        {
            self.groups.remove_if_mut(&group, |_, ids| {
                ids.remove(&conn.id);
                ids.is_empty()
            });
        }
    }

    pub(crate) fn connection(&self, id: &str) -> Option<Arc<Connection>> {
        self.connections.get(id).map(|c| c.clone())
    }

    pub(crate) fn add_to_group(&self, id: &str, group: &str) {
        let Some(conn) = self.connection(id) else {
            return;
        };
        conn.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(group.to_owned());
        self.groups
            .entry(group.to_owned())
            .or_default()
            .insert(id.to_owned());
    }

    pub(crate) fn remove_from_group(&self, id: &str, group: &str) {
        if let Some(conn) = self.connection(id) {
            conn.groups
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(group);
        }
        self.groups.remove_if_mut(group, |_, ids| {
            ids.remove(id);
            ids.is_empty()
        });
    }

    pub(crate) fn connection_count(&self, group: Option<&str>) -> usize {
        match group {
            None => self.connections.len(),
            Some(g) => self.groups.get(g).map_or(0, |ids| ids.len()),
        }
    }

    /// Users with their connection counts, sorted by name.
    pub(crate) fn users(&self, group: Option<&str>) -> Vec<(String, usize)> {
        let mut users: Vec<(String, usize)> = match group {
            None => self
                .users
                .iter()
                .map(|e| (e.key().clone(), e.value().len()))
                .collect(),
            Some(g) => {
                let ids: Vec<String> = self
                    .groups
                    .get(g)
                    .map(|ids| ids.iter().cloned().collect())
                    .unwrap_or_default();
                let mut counts = std::collections::BTreeMap::<String, usize>::new();
                for id in ids {
                    if let Some(conn) = self.connection(&id) {
                        *counts.entry(conn.user.clone()).or_default() += 1;
                    }
                }
                counts.into_iter().collect()
            }
        };
        users.sort();
        users
    }

    /// Queues `method(args)` for every connection in `scope` but `exclude`; returns how many
    /// connections it was queued for.
    pub(crate) fn send(
        &self,
        scope: &Scope,
        method: &str,
        arguments: Vec<Arg>,
        headers: Headers,
        exclude: Option<&str>,
    ) -> usize {
        let frame = Frame::new(HubMessage::Invocation(Invocation {
            headers,
            invocation_id: None,
            target: method.to_owned(),
            arguments,
            stream_ids: Vec::new(),
        }));
        self.deliver(scope, &frame, exclude)
    }

    pub(crate) fn deliver(
        &self,
        scope: &Scope,
        frame: &Arc<Frame>,
        exclude: Option<&str>,
    ) -> usize {
        let mut delivered = 0;
        let mut push = |conn: &Connection| {
            if Some(conn.id.as_str()) != exclude && conn.enqueue(Outbound::Message(frame.clone())) {
                delivered += 1;
            }
        };
        match scope {
            Scope::All => self.connections.iter().for_each(|c| push(c.value())),
            Scope::Connection(id) => {
                if let Some(c) = self.connections.get(id) {
                    push(c.value());
                }
            }
            Scope::Group(name) | Scope::User(name) => {
                let index = if matches!(scope, Scope::Group(_)) {
                    &self.groups
                } else {
                    &self.users
                };
                // Copy the ids out so the index shard is not held while connections are visited.
                let ids: Vec<String> = index
                    .get(name)
                    .map(|ids| ids.iter().cloned().collect())
                    .unwrap_or_default();
                for id in ids {
                    if let Some(c) = self.connections.get(&id) {
                        push(c.value());
                    }
                }
            }
        }
        delivered
    }
}
