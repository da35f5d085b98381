//! What the other nodes hold: their connections with users and groups, kept from the Redis
//! presence hashes and the presence channel, with the counts the hub asks for kept up to date
//! as records come and go (no scan per question).

use std::collections::{HashMap, HashSet};

use crate::hub::LostConnection;

/// One connection of another node, as it stores it in its presence hash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Record {
    /// Its user.
    #[serde(rename = "u")]
    pub(crate) user: String,
    /// Its groups.
    #[serde(rename = "g", default)]
    pub(crate) groups: Vec<String>,
}

#[derive(Debug, Default)]
pub(crate) struct Mirror {
    nodes: HashMap<String, HashMap<String, Record>>,
    users: HashMap<String, usize>,
    groups: HashMap<String, usize>,
    group_users: HashMap<String, HashMap<String, usize>>,
    connections: usize,
}

fn decrement<K: std::hash::Hash + Eq + Clone>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

impl Mirror {
    fn count(&mut self, record: &Record) {
        self.connections += 1;
        *self.users.entry(record.user.clone()).or_default() += 1;
        for g in &record.groups {
            *self.groups.entry(g.clone()).or_default() += 1;
            *self
                .group_users
                .entry(g.clone())
                .or_default()
                .entry(record.user.clone())
                .or_default() += 1;
        }
    }

    fn uncount(&mut self, record: &Record) {
        self.connections -= 1;
        decrement(&mut self.users, &record.user);
        for g in &record.groups {
            decrement(&mut self.groups, g);
            if let Some(users) = self.group_users.get_mut(g) {
                decrement(users, &record.user);
                if users.is_empty() {
                    self.group_users.remove(g);
                }
            }
        }
    }

    /// Sets (`Some`) or removes (`None`) one connection of `node`.
    pub(crate) fn apply(&mut self, node: &str, connection: &str, record: Option<Record>) {
        let old = match &record {
            Some(r) => self
                .nodes
                .entry(node.to_owned())
                .or_default()
                .insert(connection.to_owned(), r.clone()),
            None => self
                .nodes
                .get_mut(node)
                .and_then(|conns| conns.remove(connection)),
        };
        if let Some(old) = old {
            self.uncount(&old);
        }
        if let Some(new) = &record {
            self.count(new);
        }
    }

    /// Replaces everything known of `node` (`None`: the node is gone); returns what was known.
    pub(crate) fn replace(
        &mut self,
        node: &str,
        records: Option<HashMap<String, Record>>,
    ) -> HashMap<String, Record> {
        let old = self.nodes.remove(node).unwrap_or_default();
        for r in old.values() {
            self.uncount(r);
        }
        if let Some(records) = records {
            for r in records.values() {
                self.count(r);
            }
            self.nodes.insert(node.to_owned(), records);
        }
        old
    }

    /// Forgets every node not in `live` (it stopped renewing its heartbeat, or another node
    /// already forgot it); returns their connections, lost without a goodbye, when `announce`
    /// (a node back from losing the backplane only just now announces no one: the others may
    /// still be rewriting their presence).
    pub(crate) fn forget_missing(
        &mut self,
        live: &HashSet<String>,
        announce: bool,
    ) -> Vec<LostConnection> {
        let mut lost = Vec::new();
        for known in self.nodes() {
            if !live.contains(&known) {
                let gone = self.replace(&known, None);
                if announce {
                    lost.extend(gone.into_iter().map(|(connection_id, r)| LostConnection {
                        connection_id,
                        user: r.user,
                        groups: r.groups,
                    }));
                }
            }
        }
        lost
    }

    /// The nodes known.
    pub(crate) fn nodes(&self) -> Vec<String> {
        self.nodes.keys().cloned().collect()
    }

    pub(crate) fn connection_count(&self, group: Option<&str>) -> usize {
        match group {
            None => self.connections,
            Some(g) => self.groups.get(g).copied().unwrap_or(0),
        }
    }

    pub(crate) fn users(&self, group: Option<&str>) -> Vec<(String, usize)> {
        let map = match group {
            None => Some(&self.users),
            Some(g) => self.group_users.get(g),
        };
        map.map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(user: &str, groups: &[&str]) -> Option<Record> {
        Some(Record {
            user: user.to_owned(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        })
    }

    #[test]
    fn counts_follow_sets_removals_and_node_replacement() {
        let mut m = Mirror::default();
        m.apply("a", "c1", rec("ann", &["g"]));
        m.apply("a", "c2", rec("ann", &[]));
        m.apply("b", "c3", rec("bob", &["g"]));
        assert_eq!(m.connection_count(None), 3);
        assert_eq!(m.connection_count(Some("g")), 2);
        let mut users = m.users(None);
        users.sort();
        assert_eq!(users, vec![("ann".into(), 2), ("bob".into(), 1)]);
        // A changed record (left the group) is recounted, not added.
        m.apply("a", "c1", rec("ann", &[]));
        assert_eq!(m.connection_count(None), 3);
        assert_eq!(m.users(Some("g")), vec![("bob".into(), 1)]);
        m.apply("b", "c3", None);
        assert_eq!(m.connection_count(Some("g")), 0);
        assert!(m.users(Some("g")).is_empty());
        let gone = m.replace("a", None);
        assert_eq!(gone.len(), 2);
        assert_eq!(gone["c1"], rec("ann", &[]).unwrap());
        assert!(m.replace("a", None).is_empty());
        assert_eq!(m.connection_count(None), 0);
        assert!(m.users(None).is_empty());
        assert!(m.nodes().is_empty() || m.nodes() == vec!["b".to_owned()]);
    }

    #[test]
    fn nodes_missing_from_the_live_set_are_forgotten_and_announced_only_when_asked() {
        let mut m = Mirror::default();
        m.apply("a", "c1", rec("ann", &["g"]));
        m.apply("b", "c2", rec("bob", &[]));
        m.apply("c", "c3", rec("cy", &[]));
        let live: HashSet<String> = ["b".to_owned()].into();
        let lost = m.forget_missing(&live, true);
        let mut who: Vec<_> = lost
            .iter()
            .map(|l| (l.connection_id.as_str(), l.user.as_str(), l.groups.clone()))
            .collect();
        who.sort();
        assert_eq!(
            who,
            [("c1", "ann", vec!["g".to_owned()]), ("c3", "cy", vec![])]
        );
        assert_eq!(m.nodes(), ["b".to_owned()]);
        assert_eq!(m.connection_count(None), 1);
        // Not announced (just back from an outage): forgotten all the same.
        assert!(m.forget_missing(&HashSet::new(), false).is_empty());
        assert_eq!(m.connection_count(None), 0);
    }
}
