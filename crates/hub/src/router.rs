//! Who is connected to this node, which groups and users they belong to, and delivery to a
//! scope among them. What other nodes hold is the backplane's business (`backplane/`).
//!
//! The registries are sharded maps (no global lock); nothing here awaits, so no lock is held
//! across an await. A message is wrapped in one shared [`Frame`] and encoded at most once per
//! protocol, whatever the number of recipients.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use dashmap::{DashMap, DashSet};

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

/// What a connection's departure emptied on this node.
#[derive(Debug, Default)]
pub(crate) struct Removed {
    /// It was the user's last connection here.
    pub(crate) user_gone: bool,
    /// Groups it was the last member of here.
    pub(crate) groups_gone: Vec<String>,
}

/// The connections of one group or user here. Most users, and many groups (a user's own, a
/// small room), have one connection: it is kept inline, and a map (by id) is made from the
/// second on. Members are the connections themselves, so a delivery visits them without
/// copying ids or looking each one up.
#[derive(Debug, Default)]
enum Members {
    #[default]
    None,
    One(Arc<Connection>),
    /// Boxed, so that every entry of the maps stays the size of a pointer.
    #[allow(clippy::box_collection)]
    Many(Box<HashMap<String, Arc<Connection>>>),
}

impl Members {
    fn insert(&mut self, conn: &Arc<Connection>) {
        match self {
            Self::None => *self = Self::One(conn.clone()),
            Self::One(one) if one.id == conn.id => {}
            Self::One(_) => {
                let Self::One(one) = std::mem::take(self) else {
                    unreachable!()
                };
                *self = Self::Many(Box::new(HashMap::from([
                    (one.id.clone(), one),
                    (conn.id.clone(), conn.clone()),
                ])));
            }
            Self::Many(members) => {
                members.insert(conn.id.clone(), conn.clone());
            }
        }
    }

    fn remove(&mut self, id: &str) {
        match self {
            Self::One(one) if one.id == id => *self = Self::None,
            Self::Many(members) => {
                members.remove(id);
                if members.is_empty() {
                    *self = Self::None;
                }
            }
            _ => {}
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, Self::None)
    }

    fn len(&self) -> usize {
        match self {
            Self::None => 0,
            Self::One(_) => 1,
            Self::Many(members) => members.len(),
        }
    }

    /// Visits every member.
    fn for_each(&self, mut visit: impl FnMut(&Connection)) {
        match self {
            Self::None => {}
            Self::One(one) => visit(one),
            Self::Many(members) => members.values().for_each(|c| visit(c)),
        }
    }

    fn connections(&self) -> Vec<Arc<Connection>> {
        match self {
            Self::None => Vec::new(),
            Self::One(one) => vec![one.clone()],
            Self::Many(members) => members.values().cloned().collect(),
        }
    }
}

/// A connection in the set of all connections, found by its id (the id is not copied into the
/// set: it is the connection's own).
#[derive(Debug)]
struct ById(Arc<Connection>);

impl Borrow<str> for ById {
    fn borrow(&self) -> &str {
        &self.0.id
    }
}

impl Hash for ById {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `str` hashes: lookups by `&str` find it.
        self.0.id.as_str().hash(state);
    }
}

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for ById {}

/// `Connection::slot` for a place in `Router::all` (`u32::MAX` past what a `u32` holds: such a
/// connection is then found by a scan).
fn slot_of(at: usize) -> u32 {
    u32::try_from(at).unwrap_or(u32::MAX)
}

/// Takes `conn` out of the list of all connections: at its slot (the connection moved into its
/// place gets the slot), or by a scan if the slot does not hold it. Removal is O(1), so a mass
/// disconnect of n connections is O(n), not O(n²).
fn take_out(all: &mut Vec<Arc<Connection>>, conn: &Arc<Connection>) {
    let slot = conn.slot.load(Ordering::Relaxed) as usize;
    let at = if all.get(slot).is_some_and(|c| Arc::ptr_eq(c, conn)) {
        Some(slot)
    } else {
        all.iter().position(|c| Arc::ptr_eq(c, conn))
    };
    let Some(at) = at else { return };
    all.swap_remove(at);
    if let Some(moved) = all.get(at) {
        moved.slot.store(slot_of(at), Ordering::Relaxed);
    }
    conn.slot.store(u32::MAX, Ordering::Relaxed);
}

#[derive(Debug, Default)]
pub(crate) struct Router {
    /// Every connection here, by id.
    connections: DashSet<ById>,
    /// Every connection here, in a list: a delivery to all (the commonest) walks it under one
    /// read lock, where walking the sharded map takes a lock and allocates per shard (issue 19:
    /// most of a broadcast's own cost to 10 receivers). Changed only on connect and disconnect.
    all: RwLock<Vec<Arc<Connection>>>,
    groups: DashMap<String, Members>,
    users: DashMap<String, Members>,
}

impl Router {
    /// Registers a connection; `true` if it is its user's first here.
    pub(crate) fn add(&self, conn: Arc<Connection>) -> bool {
        let mut ids = self.users.entry(conn.user.clone()).or_default();
        let first = ids.is_empty();
        ids.insert(&conn);
        drop(ids);
        let mut all = self.all.write().unwrap_or_else(|e| e.into_inner());
        // A connection's id is unique; were it added twice, the newer one stands.
        if let Some(ById(old)) = self.connections.remove(conn.id.as_str()) {
            take_out(&mut all, &old);
        }
        conn.slot.store(slot_of(all.len()), Ordering::Relaxed);
        all.push(conn.clone());
        self.connections.insert(ById(conn));
        first
    }

    pub(crate) fn remove(&self, conn: &Connection) -> Removed {
        let mut removed = Removed::default();
        {
            let mut all = self.all.write().unwrap_or_else(|e| e.into_inner());
            if let Some(ById(gone)) = self
                .connections
                .remove_if(conn.id.as_str(), |c| std::ptr::eq(&*c.0, conn))
            {
                take_out(&mut all, &gone);
            }
        }
        removed.user_gone = self
            .users
            .remove_if_mut(&conn.user, |_, ids| {
                ids.remove(&conn.id);
                ids.is_empty()
            })
            .is_some();
        for group in conn
            .groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            if self
                .groups
                .remove_if_mut(&group, |_, ids| {
                    ids.remove(&conn.id);
                    ids.is_empty()
                })
                .is_some()
            {
                removed.groups_gone.push(group);
            }
        }
        removed
    }

    pub(crate) fn connection(&self, id: &str) -> Option<Arc<Connection>> {
        self.connections.get(id).map(|c| c.0.clone())
    }

    /// Adds a connection of this node to a group: `None` if there is no such connection here,
    /// else whether it is the group's first member here.
    pub(crate) fn add_to_group(&self, id: &str, group: &str) -> Option<bool> {
        let conn = self.connection(id)?;
        let mut groups = conn.groups.lock().unwrap_or_else(|e| e.into_inner());
        if !groups.iter().any(|g| g == group) {
            // Grown one at a time: a connection is in a few groups.
            groups.reserve_exact(1);
            groups.push(group.to_owned());
        }
        drop(groups);
        let mut ids = self.groups.entry(group.to_owned()).or_default();
        let first = ids.is_empty();
        ids.insert(&conn);
        Some(first)
    }

    /// Removes a connection from a group: `None` if there is no such connection here, else
    /// whether the group has no member left here.
    pub(crate) fn remove_from_group(&self, id: &str, group: &str) -> Option<bool> {
        let conn = self.connection(id);
        if let Some(conn) = &conn {
            conn.groups
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|g| g != group);
        }
        let emptied = self
            .groups
            .remove_if_mut(group, |_, ids| {
                ids.remove(id);
                ids.is_empty()
            })
            .is_some();
        conn.map(|_| emptied)
    }

    pub(crate) fn has_group(&self, group: &str) -> bool {
        self.groups.contains_key(group)
    }

    pub(crate) fn has_user(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    pub(crate) fn has_connection(&self, id: &str) -> bool {
        self.connections.contains(id)
    }

    /// Every group, user and connection with a member here (what the backplane subscribes to).
    pub(crate) fn names(&self) -> (Vec<String>, Vec<String>, Vec<String>) {
        (
            self.groups.iter().map(|e| e.key().clone()).collect(),
            self.users.iter().map(|e| e.key().clone()).collect(),
            self.connections.iter().map(|c| c.0.id.clone()).collect(),
        )
    }

    /// Every connection here with its user and groups (this node's presence).
    pub(crate) fn records(&self) -> Vec<(String, String, Vec<String>)> {
        self.connections
            .iter()
            .map(|c| {
                let c = &c.0;
                let groups = c
                    .groups
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .cloned()
                    .collect();
                (c.id.clone(), c.user.clone(), groups)
            })
            .collect()
    }

    pub(crate) fn connection_count(&self, group: Option<&str>) -> usize {
        match group {
            None => self.connections.len(),
            Some(g) => self.groups.get(g).map_or(0, |ids| ids.len()),
        }
    }

    /// Users with their connection counts here, sorted by name.
    pub(crate) fn users(&self, group: Option<&str>) -> Vec<(String, usize)> {
        let mut users: Vec<(String, usize)> = match group {
            None => self
                .users
                .iter()
                .map(|e| (e.key().clone(), e.value().len()))
                .collect(),
            Some(g) => {
                let members = self
                    .groups
                    .get(g)
                    .map(|m| m.connections())
                    .unwrap_or_default();
                let mut counts = std::collections::BTreeMap::<String, usize>::new();
                for conn in members {
                    *counts.entry(conn.user.clone()).or_default() += 1;
                }
                counts.into_iter().collect()
            }
        };
        users.sort();
        users
    }

    /// Queues `frame` for every connection here in `scope` but those in `exclude`; returns how
    /// many connections it was queued for.
    pub(crate) fn deliver(&self, scope: &Scope, frame: &Arc<Frame>, exclude: &[String]) -> usize {
        let mut delivered = 0;
        let mut push = |conn: &Connection| {
            if !exclude.contains(&conn.id) && conn.enqueue(Outbound::Message(frame.clone())) {
                delivered += 1;
            }
        };
        match scope {
            Scope::All => self
                .all
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .for_each(|c| push(c)),
            Scope::Connection(id) => {
                if let Some(c) = self.connections.get(id.as_str()) {
                    push(&c.0);
                }
            }
            Scope::Group(name) | Scope::User(name) => {
                let index = if matches!(scope, Scope::Group(_)) {
                    &self.groups
                } else {
                    &self.users
                };
                // Visited in place, under the shard's read lock, as a delivery to all is under
                // the list's: queueing a message never waits and never takes the router's locks
                // (a full queue only marks its connection for closing), and copying the members
                // out cost an allocation and two atomic operations per recipient (issue 19).
                if let Some(members) = index.get(name) {
                    members.for_each(|c| push(c));
                }
            }
        }
        delivered
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{ConnLabels, ConnMetrics};
    use crate::state::Counters;

    fn conn(id: &str) -> Arc<Connection> {
        let (tx, _rx) = crate::queue::queue(1, 0);
        Arc::new(Connection::new(
            id.to_owned(),
            "u".to_owned(),
            Arc::default(),
            tx,
            ConnMetrics::new(
                Arc::new(Counters::default()),
                ConnLabels::core(None, hubbub_protocol::Protocol::Json),
                None,
            ),
        ))
    }

    fn ids(m: &Members) -> Vec<String> {
        let mut ids: Vec<String> = m.connections().iter().map(|c| c.id.clone()).collect();
        ids.sort();
        ids
    }

    #[test]
    fn members_from_none_to_one_to_many_and_back() {
        let (a, b) = (conn("a"), conn("b"));
        let mut m = Members::default();
        assert!(m.is_empty());
        m.insert(&a);
        m.insert(&a);
        assert_eq!(m.len(), 1);
        m.insert(&b);
        assert_eq!(m.len(), 2);
        assert_eq!(ids(&m), ["a", "b"]);
        m.remove("c");
        m.remove("a");
        assert_eq!(ids(&m), ["b"]);
        m.remove("b");
        assert!(m.is_empty());
        assert_eq!(m.len(), 0);
    }

    /// The list of all connections stays the set of connections through adds, re-adds and
    /// removals in any order, every slot pointing at its own connection (removal finds it at
    /// its slot instead of scanning).
    #[test]
    fn the_list_of_all_follows_adds_and_removals_and_its_slots_stay_true() {
        let router = Router::default();
        let conns: Vec<_> = (0..64).map(|i| conn(&format!("c{i}"))).collect();
        for c in &conns {
            router.add(c.clone());
        }
        // The same id again: the newer connection replaces the older one.
        let again = conn("c7");
        router.add(again.clone());
        let check = |expected: &mut Vec<String>| {
            let all = router.all.read().unwrap();
            for (at, c) in all.iter().enumerate() {
                assert_eq!(
                    c.slot.load(Ordering::Relaxed) as usize,
                    at,
                    "slot of {}",
                    c.id
                );
            }
            let mut listed: Vec<String> = all.iter().map(|c| c.id.clone()).collect();
            listed.sort();
            expected.sort();
            assert_eq!(&listed, expected);
            assert_eq!(router.connection_count(None), expected.len());
        };
        let mut expected: Vec<String> = conns.iter().map(|c| c.id.clone()).collect();
        check(&mut expected);
        assert!(Arc::ptr_eq(&router.connection("c7").unwrap(), &again));
        // The replaced one is gone already: removing it changes nothing.
        router.remove(&conns[7]);
        check(&mut expected);
        // Remove from the end, the front and the middle, in turns.
        let mut order: Vec<usize> = (0..64).filter(|i| *i != 7).collect();
        let mut turn = 0;
        while !order.is_empty() {
            let i = match turn % 3 {
                0 => order.pop().unwrap(),
                1 => order.remove(0),
                _ => order.remove(order.len() / 2),
            };
            turn += 1;
            router.remove(&conns[i]);
            expected.retain(|id| *id != format!("c{i}"));
            check(&mut expected);
        }
        router.remove(&again);
        expected.clear();
        check(&mut expected);
    }
}
