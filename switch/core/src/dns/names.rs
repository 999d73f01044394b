//! The records the responder answers from: every network's endpoint names, aliases and
//! addresses, built once and replaced whole when endpoints change.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use hashbrown::HashMap;
use serde::{Deserialize, Serialize};

use super::check_label;

/// One endpoint as the DNS sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The network's name, exactly as the controller spells it.
    pub network: String,
    /// The endpoint's name: unique within its network (the controller sees to that).
    pub name: String,
    /// More names for the same address; several endpoints may share one.
    #[serde(default)]
    pub aliases: Vec<String>,
    pub addr: Ipv4Addr,
}

/// What a name (or an address) is, as seen from a set of networks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup<T> {
    /// It exists on the asker's networks: these addresses (or names), without
    /// duplicates, by network name, then in the order of the records.
    Local(Vec<T>),
    /// It exists only on networks the asker is not on.
    Elsewhere,
    /// No network has it.
    Unknown,
}

/// The names of one network.
#[derive(Clone, Debug, Default)]
struct Zone {
    /// Lowercased label → addresses (names and aliases alike), without duplicates.
    hosts: HashMap<Vec<u8>, Vec<Ipv4Addr>>,
    /// Address → the name of the first record with it, as given.
    reverse: HashMap<Ipv4Addr, String>,
}

/// Every network's names. See the module documentation of [`crate::dns`] for how they
/// are matched.
#[derive(Clone, Debug, Default)]
pub struct Names {
    /// By network name, exact, in name order (the order answers merge in).
    zones: BTreeMap<String, Zone>,
    /// A network's name lowercased (its domain) → the networks with that name, in name
    /// order: two networks may differ in case only.
    domains: HashMap<Vec<u8>, Vec<String>>,
    records: usize,
}

impl Names {
    /// The names of `records`. A name or alias that is not a DNS label ([`check_label`])
    /// is left out; a record whose name is not one still has its aliases and, if any
    /// alias is kept, its reverse name from the first of them.
    pub fn new(records: impl IntoIterator<Item = Record>) -> Names {
        let mut names = Names::default();
        for record in records {
            let labels: Vec<&String> = std::iter::once(&record.name)
                .chain(&record.aliases)
                .filter(|label| check_label(label).is_ok())
                .collect();
            let Some(first) = labels.first() else {
                continue;
            };
            names.records += 1;
            if !names.zones.contains_key(&record.network) {
                names
                    .domains
                    .entry(record.network.to_ascii_lowercase().into_bytes())
                    .or_default()
                    .push(record.network.clone());
            }
            let zone = names.zones.entry(record.network.clone()).or_default();
            zone.reverse
                .entry(record.addr)
                .or_insert_with(|| first.to_string());
            for label in labels {
                let addrs = zone
                    .hosts
                    .entry(label.to_ascii_lowercase().into_bytes())
                    .or_default();
                if !addrs.contains(&record.addr) {
                    addrs.push(record.addr);
                }
            }
        }
        for networks in names.domains.values_mut() {
            networks.sort_unstable();
        }
        names
    }

    /// Records kept.
    pub fn len(&self) -> usize {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// The addresses of `name` (`NAME` or `NAME.NETWORK`, a trailing dot allowed, any
    /// case) for an asker on `networks`.
    pub fn lookup<N: AsRef<str>>(&self, networks: &[N], name: &str) -> Lookup<Ipv4Addr> {
        let name = name.strip_suffix('.').unwrap_or(name);
        let labels: Vec<&[u8]> = name.split('.').map(str::as_bytes).collect();
        self.lookup_labels(networks, &labels)
    }

    /// [`Names::lookup`] on a name's labels as they came on the wire. A label holding a
    /// dot is nothing of ours.
    pub(crate) fn lookup_labels<N: AsRef<str>>(
        &self,
        networks: &[N],
        labels: &[&[u8]],
    ) -> Lookup<Ipv4Addr> {
        if labels.iter().any(|label| label.contains(&b'.')) {
            return Lookup::Unknown;
        }
        let (host, zones): (&[u8], Vec<(&String, &Zone)>) = match labels {
            [] => return Lookup::Unknown,
            [host] => (host, self.zones.iter().collect()),
            [host, domain @ ..] => {
                let domain = domain.join(&b'.').to_ascii_lowercase();
                let Some(networks) = self.domains.get(&domain) else {
                    return Lookup::Unknown;
                };
                let zones = networks
                    .iter()
                    .filter_map(|network| self.zones.get_key_value(network))
                    .collect();
                (host, zones)
            }
        };
        let host = host.to_ascii_lowercase();
        let mut found = Lookup::Unknown;
        for (network, zone) in zones {
            let Some(addrs) = zone.hosts.get(&host) else {
                continue;
            };
            found = merge(found, asks_on(networks, network), addrs.iter().copied());
        }
        found
    }

    /// The names of the endpoints with address `addr`, as `NAME.NETWORK` (without the
    /// final dot), for an asker on `networks`.
    pub fn reverse<N: AsRef<str>>(&self, networks: &[N], addr: Ipv4Addr) -> Lookup<String> {
        let mut found = Lookup::Unknown;
        for (network, zone) in &self.zones {
            let Some(name) = zone.reverse.get(&addr) else {
                continue;
            };
            found = merge(
                found,
                asks_on(networks, network),
                std::iter::once(format!("{name}.{network}")),
            );
        }
        found
    }
}

fn asks_on<N: AsRef<str>>(networks: &[N], network: &str) -> bool {
    networks.iter().any(|n| n.as_ref() == network)
}

fn merge<T: PartialEq>(found: Lookup<T>, local: bool, items: impl Iterator<Item = T>) -> Lookup<T> {
    if !local {
        return match found {
            Lookup::Unknown => Lookup::Elsewhere,
            other => other,
        };
    }
    let mut list = match found {
        Lookup::Local(list) => list,
        Lookup::Elsewhere | Lookup::Unknown => Vec::new(),
    };
    for item in items {
        if !list.contains(&item) {
            list.push(item);
        }
    }
    Lookup::Local(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(network: &str, name: &str, aliases: &[&str], addr: [u8; 4]) -> Record {
        Record {
            network: network.to_string(),
            name: name.to_string(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            addr: Ipv4Addr::from(addr),
        }
    }

    fn names() -> Names {
        Names::new([
            record("red", "web", &["www", "api"], [10, 1, 0, 2]),
            record("red", "db", &["api"], [10, 1, 0, 3]),
            record("blue", "cache", &["store"], [10, 2, 0, 2]),
            record("blue", "web", &[], [10, 2, 0, 3]),
            record("Prod.Example", "app", &[], [10, 3, 0, 2]),
        ])
    }

    fn addrs(list: &[[u8; 4]]) -> Lookup<Ipv4Addr> {
        Lookup::Local(list.iter().map(|a| Ipv4Addr::from(*a)).collect())
    }

    #[test]
    fn names_and_network_names_resolve_in_scope() {
        let n = names();
        assert_eq!(n.len(), 5);
        assert_eq!(n.lookup(&["red"], "web"), addrs(&[[10, 1, 0, 2]]));
        assert_eq!(n.lookup(&["red"], "web.red"), addrs(&[[10, 1, 0, 2]]));
        assert_eq!(n.lookup(&["red"], "WEB.Red."), addrs(&[[10, 1, 0, 2]]));
        assert_eq!(n.lookup(&["blue"], "web"), addrs(&[[10, 2, 0, 3]]));
        // On both: NAME answers from both, NAME.NETWORK from that one.
        assert_eq!(
            n.lookup(&["red", "blue"], "web"),
            addrs(&[[10, 2, 0, 3], [10, 1, 0, 2]])
        );
        assert_eq!(
            n.lookup(&["red", "blue"], "web.blue"),
            addrs(&[[10, 2, 0, 3]])
        );
        // A network whose name has dots and capitals.
        assert_eq!(
            n.lookup(&["Prod.Example"], "APP.prod.example."),
            addrs(&[[10, 3, 0, 2]])
        );
    }

    #[test]
    fn shared_aliases_collect_every_address() {
        let n = names();
        assert_eq!(
            n.lookup(&["red"], "api"),
            addrs(&[[10, 1, 0, 2], [10, 1, 0, 3]])
        );
        assert_eq!(n.lookup(&["red"], "www.red"), addrs(&[[10, 1, 0, 2]]));
    }

    #[test]
    fn other_networks_names_are_elsewhere_and_the_rest_unknown() {
        let n = names();
        assert_eq!(n.lookup(&["red"], "cache"), Lookup::Elsewhere);
        assert_eq!(n.lookup(&["red"], "cache.blue"), Lookup::Elsewhere);
        assert_eq!(n.lookup(&["red"], "store"), Lookup::Elsewhere);
        assert_eq!(n.lookup(&["red"], "web.blue"), Lookup::Elsewhere);
        assert_eq!(n.lookup::<&str>(&[], "web"), Lookup::Elsewhere);
        assert_eq!(n.lookup(&["red"], "example.com"), Lookup::Unknown);
        assert_eq!(n.lookup(&["red"], "nothing"), Lookup::Unknown);
        // Under a network's domain but no record of it: not ours to deny.
        assert_eq!(n.lookup(&["red"], "nothing.red"), Lookup::Unknown);
        assert_eq!(n.lookup(&["red"], "a.web.red"), Lookup::Unknown);
        assert_eq!(n.lookup(&["red"], ""), Lookup::Unknown);
        // A wire label with a dot in it is not two labels.
        assert_eq!(
            n.lookup_labels(&["red"], &[b"web.red".as_slice()]),
            Lookup::Unknown
        );
    }

    #[test]
    fn reverse_names_are_name_dot_network() {
        let n = names();
        let web = Ipv4Addr::new(10, 1, 0, 2);
        assert_eq!(
            n.reverse(&["red"], web),
            Lookup::Local(vec!["web.red".to_string()])
        );
        assert_eq!(n.reverse(&["blue"], web), Lookup::Elsewhere);
        assert_eq!(
            n.reverse(&["red"], Ipv4Addr::new(8, 8, 8, 8)),
            Lookup::Unknown
        );
    }

    #[test]
    fn invalid_labels_are_left_out() {
        let n = Names::new([
            record("red", "bad_name", &["ok"], [10, 1, 0, 2]),
            record("red", "-x", &["y-"], [10, 1, 0, 3]),
            record("red", "fine", &["no.dots"], [10, 1, 0, 4]),
        ]);
        assert_eq!(n.len(), 2);
        assert_eq!(n.lookup(&["red"], "bad_name"), Lookup::Unknown);
        assert_eq!(n.lookup(&["red"], "ok"), addrs(&[[10, 1, 0, 2]]));
        assert_eq!(n.lookup(&["red"], "no.dots"), Lookup::Unknown);
        assert_eq!(
            n.reverse(&["red"], Ipv4Addr::new(10, 1, 0, 2)),
            Lookup::Local(vec!["ok.red".to_string()])
        );
        assert_eq!(
            n.reverse(&["red"], Ipv4Addr::new(10, 1, 0, 3)),
            Lookup::Unknown
        );
    }

    #[test]
    fn networks_differing_in_case_stay_apart() {
        let n = Names::new([
            record("net", "a", &[], [10, 1, 0, 2]),
            record("NET", "a", &[], [10, 2, 0, 2]),
        ]);
        assert_eq!(n.lookup(&["net"], "a.NET"), addrs(&[[10, 1, 0, 2]]));
        assert_eq!(n.lookup(&["NET"], "a.net"), addrs(&[[10, 2, 0, 2]]));
        assert_eq!(n.lookup(&["NET"], "a"), addrs(&[[10, 2, 0, 2]]));
    }
}
