//! Cluster members and their addresses, replicated with the configuration
//! (Raft's `ConfState` holds ids only).

use std::collections::BTreeMap;

use crate::command::{put_slice, put_varint, Reader};

/// The addresses of one member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Member {
    /// Peer (Raft) address, `host:port`.
    pub raft_addr: String,
    /// Client API address, `host:port`; empty if not known.
    pub client_addr: String,
}

/// Members by node id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Members(pub BTreeMap<u64, Member>);

impl Members {
    /// Parses `1=127.0.0.1:9001,2=127.0.0.1:9002` (etcd's
    /// `--initial-cluster` with ids for names).
    ///
    /// # Errors
    /// A message naming the malformed element.
    pub fn parse_initial_cluster(s: &str) -> Result<Members, String> {
        let mut out = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (id, addr) = part.split_once('=').ok_or_else(|| format!("expected ID=HOST:PORT, got {part:?}"))?;
            let id: u64 = id.trim().parse().map_err(|_| format!("bad node id {id:?} in {part:?}"))?;
            if id == 0 {
                return Err("node id 0 is reserved".into());
            }
            let addr = addr.trim();
            if addr.parse::<std::net::SocketAddr>().is_err() {
                return Err(format!("bad address {addr:?} for node {id} (expected IP:PORT)"));
            }
            if out.insert(id, Member { raft_addr: addr.to_string(), client_addr: String::new() }).is_some() {
                return Err(format!("node {id} is listed twice"));
            }
        }
        if out.is_empty() {
            return Err("the initial cluster is empty".into());
        }
        Ok(Members(out))
    }

    /// A stable id of the cluster: FNV-1a over the sorted `id=addr` list of
    /// the initial cluster. Peers reject traffic with another id.
    pub fn cluster_id(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for (id, m) in &self.0 {
            for b in format!("{id}={},", m.raft_addr).bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        h
    }

    pub(crate) fn encode_to(&self, out: &mut Vec<u8>) {
        put_varint(out, self.0.len() as u64);
        for (id, m) in &self.0 {
            out.extend_from_slice(&id.to_le_bytes());
            put_slice(out, m.raft_addr.as_bytes());
            put_slice(out, m.client_addr.as_bytes());
        }
    }

    pub(crate) fn decode_from(r: &mut Reader<'_>) -> Result<Members, String> {
        let mut out = BTreeMap::new();
        for _ in 0..r.varint()? {
            let id = r.u64()?;
            let raft_addr = String::from_utf8(r.slice()?.to_vec()).map_err(|_| "address is not UTF-8")?;
            let client_addr = String::from_utf8(r.slice()?.to_vec()).map_err(|_| "address is not UTF-8")?;
            out.insert(id, Member { raft_addr, client_addr });
        }
        Ok(Members(out))
    }

    /// Encodes the members alone (snapshot data).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_to(&mut out);
        out
    }

    /// Decodes [`Members::to_bytes`].
    ///
    /// # Errors
    /// A description of the malformed field.
    pub fn from_bytes(data: &[u8]) -> Result<Members, String> {
        let mut r = Reader { data };
        let m = Self::decode_from(&mut r)?;
        if !r.data.is_empty() {
            return Err("trailing bytes after members".into());
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_cluster() {
        let m = Members::parse_initial_cluster("1=127.0.0.1:9001, 2=127.0.0.1:9002").unwrap();
        assert_eq!(m.0.len(), 2);
        assert_eq!(m.0[&2].raft_addr, "127.0.0.1:9002");
        assert_eq!(Members::from_bytes(&m.to_bytes()).unwrap(), m);
        assert_ne!(m.cluster_id(), Members::parse_initial_cluster("1=127.0.0.1:9001").unwrap().cluster_id());
        for bad in ["", "1", "x=1.2.3.4:5", "0=127.0.0.1:1", "1=nope", "1=127.0.0.1:1,1=127.0.0.1:2"] {
            assert!(Members::parse_initial_cluster(bad).is_err(), "{bad}");
        }
    }
}
