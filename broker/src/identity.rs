//! A node's identity on disk: the cluster id and node id files in the data directory, written
//! once (temporary name, fsync, rename) so a crash never leaves half an id.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

/// The cluster id of a new cluster whose nodes were given none: they must all derive the same.
pub const DEFAULT_CLUSTER_ID: &str = "jet";

/// `--node-id`, when given, must match the stored one (RocksDB also records it); a new node
/// stores it, or else 1 alone and a random id in a cluster, so nodes started with identical
/// flags (compose replicas, a StatefulSet) get distinct ids.
pub fn load_or_create_node_id(
    data_dir: &Path,
    flag: Option<u64>,
    clustered: bool,
) -> anyhow::Result<u64> {
    let path = data_dir.join("node_id");
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let stored: u64 = s
                .trim()
                .parse()
                .ok()
                .filter(|n| (1..=i32::MAX as u64).contains(n))
                .with_context(|| format!("{} does not hold a node id", path.display()))?;
            if let Some(flag) = flag {
                anyhow::ensure!(
                    flag == stored,
                    "--node-id {flag} does not match this data directory's node id {stored}"
                );
            }
            return Ok(stored);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let id = match flag {
        Some(f) => f,
        // A directory from before node ids were stored holds node 1's data.
        None if !clustered || data_dir.join("CURRENT").exists() => 1,
        None => {
            let mut b = [0u8; 4];
            std::fs::File::open("/dev/urandom")
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
                .context("cannot read random bytes for the node id")?;
            u64::from(u32::from_be_bytes(b) & 0x7fff_ffff).max(2)
        }
    };
    write_once(data_dir, "node_id", &id.to_string())?;
    Ok(id)
}

/// Writes `<data_dir>/<name>` durably: temporary name, fsync, rename, fsync of the directory.
fn write_once(data_dir: &Path, name: &str, content: &str) -> anyhow::Result<()> {
    let path = data_dir.join(name);
    let tmp = data_dir.join(format!("{name}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "{content}")?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(data_dir)?.sync_all()
    };
    write().with_context(|| format!("cannot write {}", path.display()))
}

/// Reads `<data_dir>/cluster_id`, or creates it once: a random UUID written the way Kafka writes
/// cluster ids (22 characters of unpadded base64url). The file is written to a temporary name,
/// synced and renamed, so a crash never leaves a half-written id.
/// `--cluster-id`, when given, must match the stored one; a new node stores it, or else a random
/// id alone and [`DEFAULT_CLUSTER_ID`] in a cluster (every node of a new cluster must derive the
/// same id without talking to the others).
pub fn load_or_create_cluster_id(
    data_dir: &Path,
    flag: Option<&str>,
    clustered: bool,
) -> anyhow::Result<String> {
    let path = data_dir.join("cluster_id");
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let id = s.trim().to_string();
            anyhow::ensure!(
                is_valid_cluster_id(&id),
                "{} holds '{id}', which is not a cluster id (1 to 64 letters, digits, '-' or '_')",
                path.display()
            );
            if let Some(flag) = flag {
                anyhow::ensure!(
                    flag == id,
                    "--cluster-id {flag} does not match this data directory's cluster id {id}"
                );
            }
            return Ok(id);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let id = match flag {
        Some(f) => f.to_string(),
        None if clustered => DEFAULT_CLUSTER_ID.to_string(),
        None => new_cluster_id()?,
    };
    write_once(data_dir, "cluster_id", &id)?;
    tracing::info!(cluster_id = %id, path = %path.display(), "created cluster id");
    Ok(id)
}

fn is_valid_cluster_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A random (version 4) UUID as 22 characters of unpadded base64url, like Kafka's `Uuid`.
fn new_cluster_id() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .context("cannot read random bytes for the cluster id")?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    Ok(base64url_unpadded(&bytes))
}

fn base64url_unpadded(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (b as u32) << (16 - 8 * i));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 0x3f) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_matches_known_values() {
        assert_eq!(base64url_unpadded(b""), "");
        assert_eq!(base64url_unpadded(b"f"), "Zg");
        assert_eq!(base64url_unpadded(b"fo"), "Zm8");
        assert_eq!(base64url_unpadded(b"foo"), "Zm9v");
        assert_eq!(base64url_unpadded(&[0xfb, 0xff]), "-_8");
        assert_eq!(base64url_unpadded(&[0u8; 16]), "AAAAAAAAAAAAAAAAAAAAAA");
    }

    #[test]
    fn cluster_id_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_cluster_id(dir.path(), None, false).unwrap();
        assert!(is_valid_cluster_id(&a) && a.len() == 22, "{a}");
        assert_eq!(
            load_or_create_cluster_id(dir.path(), None, true).unwrap(),
            a
        );
        assert_eq!(
            load_or_create_cluster_id(dir.path(), Some(&a), false).unwrap(),
            a
        );
        assert!(load_or_create_cluster_id(dir.path(), Some("other"), false).is_err());
        std::fs::write(dir.path().join("cluster_id"), "no pe\n").unwrap();
        assert!(load_or_create_cluster_id(dir.path(), None, false).is_err());
        assert_ne!(new_cluster_id().unwrap(), a);
        let c = tempfile::tempdir().unwrap();
        assert_eq!(
            load_or_create_cluster_id(c.path(), None, true).unwrap(),
            "jet"
        );
    }

    #[test]
    fn node_id_is_stored_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_or_create_node_id(dir.path(), None, false).unwrap(), 1);
        assert_eq!(load_or_create_node_id(dir.path(), None, true).unwrap(), 1);
        assert_eq!(
            load_or_create_node_id(dir.path(), Some(1), true).unwrap(),
            1
        );
        assert!(load_or_create_node_id(dir.path(), Some(2), true).is_err());
        let c = tempfile::tempdir().unwrap();
        let id = load_or_create_node_id(c.path(), None, true).unwrap();
        assert!((1..=i32::MAX as u64).contains(&id));
        assert_eq!(load_or_create_node_id(c.path(), None, false).unwrap(), id);
        let e = tempfile::tempdir().unwrap();
        assert_eq!(load_or_create_node_id(e.path(), Some(7), false).unwrap(), 7);
        std::fs::write(e.path().join("node_id"), "x\n").unwrap();
        assert!(load_or_create_node_id(e.path(), None, false).is_err());
    }
}
