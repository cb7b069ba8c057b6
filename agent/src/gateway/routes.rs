//! Which gateway answers for which host name on one listener.

use std::collections::HashMap;

/// A host name another gateway already claims on the same listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub hostname: String,
    pub owner: String,
}

/// Host name -> owning gateway (its name and a value, the running gateway), for one listener.
#[derive(Debug)]
pub struct RouteTable<V> {
    routes: HashMap<String, (String, V)>,
}

impl<V> Default for RouteTable<V> {
    fn default() -> Self {
        Self {
            routes: HashMap::new(),
        }
    }
}

impl<V: Clone> RouteTable<V> {
    /// Routes every name of `hostnames` to gateway `owner`, or none of them if one is claimed by
    /// another gateway.
    pub fn claim(&mut self, owner: &str, hostnames: &[String], value: V) -> Result<(), Conflict> {
        for hostname in hostnames {
            if let Some((other, _)) = self.routes.get(hostname)
                && other != owner
            {
                return Err(Conflict {
                    hostname: hostname.clone(),
                    owner: other.clone(),
                });
            }
        }
        for hostname in hostnames {
            self.routes
                .insert(hostname.clone(), (owner.to_owned(), value.clone()));
        }
        Ok(())
    }

    /// Removes every route of gateway `owner`.
    pub fn release(&mut self, owner: &str) {
        self.routes.retain(|_, (o, _)| o != owner);
    }

    /// The gateway answering for `hostname` (already normalised).
    pub fn route(&self, hostname: &str) -> Option<&V> {
        self.routes.get(hostname).map(|(_, v)| v)
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn names_route_to_their_gateway() {
        let mut table = RouteTable::default();
        table
            .claim("alice/site", &names(&["a.example", "www.a.example"]), 1)
            .expect("claim");
        table
            .claim("bob/shop", &names(&["b.example"]), 2)
            .expect("claim");
        assert_eq!(table.route("www.a.example"), Some(&1));
        assert_eq!(table.route("b.example"), Some(&2));
        assert_eq!(table.route("c.example"), None);
    }

    #[test]
    fn a_claimed_name_fails_the_second_gateway_whole() {
        let mut table = RouteTable::default();
        table
            .claim("alice/site", &names(&["a.example"]), 1)
            .expect("claim");
        let err = table
            .claim("bob/shop", &names(&["b.example", "a.example"]), 2)
            .expect_err("conflict");
        assert_eq!(
            err,
            Conflict {
                hostname: "a.example".into(),
                owner: "alice/site".into()
            }
        );
        assert_eq!(table.route("a.example"), Some(&1));
        assert_eq!(
            table.route("b.example"),
            None,
            "nothing of a failed claim stays"
        );
    }

    #[test]
    fn released_names_are_free_again() {
        let mut table = RouteTable::default();
        table
            .claim("alice/site", &names(&["a.example"]), 1)
            .expect("claim");
        table.release("alice/site");
        assert!(table.is_empty());
        table
            .claim("bob/shop", &names(&["a.example"]), 2)
            .expect("claim");
        assert_eq!(table.route("a.example"), Some(&2));
    }
}
