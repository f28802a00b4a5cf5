//! The inode table: stable inode numbers for paths while the kernel knows them.
//!
//! Inode numbers are never reused within a mount, so the generation is constant. An inode
//! lives while the kernel holds lookups on it or a file handle is open, and is dropped on the
//! final forget: walking a huge tree once does not grow the table without bound.

use std::collections::HashMap;
use tokio::time::Instant;

use crate::crypto::{AttrsBinding, PosixAttrs};
use crate::store::WriteCondition;

pub const ROOT_INO: u64 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    File,
    Dir,
    Symlink,
    /// Special files: stored as small objects whose recorded mode says what they are (and,
    /// for devices, whose encrypted body holds the device number); the kernel serves them.
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl NodeKind {
    /// The `S_IFMT` bits of this kind.
    pub fn type_bits(self) -> u32 {
        match self {
            NodeKind::File => libc::S_IFREG,
            NodeKind::Dir => libc::S_IFDIR,
            NodeKind::Symlink => libc::S_IFLNK,
            NodeKind::Fifo => libc::S_IFIFO,
            NodeKind::Socket => libc::S_IFSOCK,
            NodeKind::CharDevice => libc::S_IFCHR,
            NodeKind::BlockDevice => libc::S_IFBLK,
        }
    }

    /// The kind that recorded attributes name; a type we do not know is a file.
    pub fn from_mode(mode: u32) -> Self {
        match mode & libc::S_IFMT {
            libc::S_IFDIR => NodeKind::Dir,
            libc::S_IFLNK => NodeKind::Symlink,
            libc::S_IFIFO => NodeKind::Fifo,
            libc::S_IFSOCK => NodeKind::Socket,
            libc::S_IFCHR => NodeKind::CharDevice,
            libc::S_IFBLK => NodeKind::BlockDevice,
            _ => NodeKind::File,
        }
    }

    /// FIFOs, sockets and devices: no contents of their own.
    pub fn is_special(self) -> bool {
        matches!(
            self,
            NodeKind::Fifo | NodeKind::Socket | NodeKind::CharDevice | NodeKind::BlockDevice
        )
    }

    /// Devices carry a device number.
    pub fn is_device(self) -> bool {
        matches!(self, NodeKind::CharDevice | NodeKind::BlockDevice)
    }
}

/// What we know of a node's object.
#[derive(Debug, Clone)]
pub struct NodeState {
    /// Plaintext size (files).
    pub size: u64,
    /// Ciphertext size of the committed object (files).
    pub ciphertext_size: u64,
    pub etag: Option<String>,
    /// Mode, owner, group and mtime: recorded ones, or the mount's defaults.
    pub attrs: PosixAttrs,
    /// `attrs` were changed here and are not in the bucket yet (a server-side copy will
    /// write them, or a rename will fold them into its copy). The node is kept until then.
    pub attrs_dirty: bool,
    /// Attributes are trusted until then (metadata TTL).
    pub valid_until: Instant,
    /// Device number of a device node (0 for everything else).
    pub rdev: u32,
    /// What attributes sealed for the saved object are bound to (its header), when this mount
    /// has read it; `None` after this mount saved a new version (read again when needed).
    pub binding: Option<AttrsBinding>,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub ino: u64,
    pub parent: u64,
    pub name: String,
    pub kind: NodeKind,
    /// Object key of a file, or key prefix (ending in `/`, empty for the root) of a directory.
    pub key: String,
    pub state: NodeState,
    /// Kernel lookups not yet forgotten.
    pub lookups: u64,
    /// Open handles (file or directory).
    pub open_handles: u32,
    /// Writers not yet committed: the node exists even if the bucket does not show it yet.
    pub writers: u32,
    /// Its name is gone (unlink, or a rename over it) while descriptors were open: they go
    /// on, nothing they write is saved, and its `orphans` are deleted at the last close.
    pub unlinked: bool,
    /// Hidden objects (under the pending prefix) kept for the descriptors of a file losing its
    /// name: the copy its readers read, a version a new file went on in place from. Deleted
    /// at its last close.
    pub orphans: Vec<String>,
    /// A directory: when this mount last added, removed or renamed one of its entries. Its
    /// mtime and ctime show at least this (kept in memory, not recorded in the bucket).
    pub entries_changed: Option<std::time::SystemTime>,
    /// This mount's latest saves of the file: the state each expected under the name, and
    /// the version it left there. Another descriptor's save that expected the earlier
    /// state expects the later one instead: saves of one mount are never conflicts.
    pub saved_here: Vec<(WriteCondition, String)>,
}

#[derive(Debug)]
pub struct InodeTable {
    nodes: HashMap<u64, Node>,
    by_name: HashMap<(u64, String), u64>,
    next_ino: u64,
}

impl InodeTable {
    pub fn new(root_state: NodeState) -> Self {
        let root = Node {
            ino: ROOT_INO,
            parent: ROOT_INO,
            name: String::new(),
            kind: NodeKind::Dir,
            key: String::new(),
            state: root_state,
            lookups: 1,
            open_handles: 0,
            writers: 0,
            unlinked: false,
            orphans: Vec::new(),
            entries_changed: None,
            saved_here: Vec::new(),
        };
        Self {
            nodes: HashMap::from([(ROOT_INO, root)]),
            by_name: HashMap::new(),
            next_ino: ROOT_INO + 1,
        }
    }

    pub fn get(&self, ino: u64) -> Option<&Node> {
        self.nodes.get(&ino)
    }

    pub fn get_mut(&mut self, ino: u64) -> Option<&mut Node> {
        self.nodes.get_mut(&ino)
    }

    pub fn child(&self, parent: u64, name: &str) -> Option<&Node> {
        self.by_name
            .get(&(parent, name.to_string()))
            .and_then(|ino| self.nodes.get(ino))
    }

    /// Records a lookup of `parent/name`: reuses the inode if the same kind is known there,
    /// else replaces it with a new one. Returns the inode number.
    pub fn upsert(
        &mut self,
        parent: u64,
        name: &str,
        kind: NodeKind,
        key: String,
        state: NodeState,
        count_lookup: bool,
    ) -> u64 {
        let slot = (parent, name.to_string());
        if let Some(&ino) = self.by_name.get(&slot) {
            let node = self.nodes.get_mut(&ino).expect("indexed node exists");
            if node.kind == kind {
                if node.writers == 0 && !node.state.attrs_dirty {
                    node.state = state;
                }
                node.key = key;
                if count_lookup {
                    node.lookups += 1;
                }
                return ino;
            }
            // A different kind now lives under this name: detach the old inode.
            self.by_name.remove(&slot);
            self.maybe_drop(ino);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(
            ino,
            Node {
                ino,
                parent,
                name: name.to_string(),
                kind,
                key,
                state,
                lookups: u64::from(count_lookup),
                open_handles: 0,
                writers: 0,
                unlinked: false,
                orphans: Vec::new(),
                entries_changed: None,
                saved_here: Vec::new(),
            },
        );
        self.by_name.insert(slot, ino);
        ino
    }

    /// Detaches `parent/name` from the namespace (after unlink/rmdir). The inode itself stays
    /// until the kernel forgets it and its handles close.
    pub fn remove_name(&mut self, parent: u64, name: &str) {
        if let Some(ino) = self.by_name.remove(&(parent, name.to_string())) {
            self.maybe_drop(ino);
        }
    }

    /// Moves `ino` to `new_parent/new_name` under `new_key`, detaching whatever was there.
    pub fn rename(&mut self, ino: u64, new_parent: u64, new_name: &str, new_key: String) {
        let Some(node) = self.nodes.get(&ino) else {
            return;
        };
        let old_slot = (node.parent, node.name.clone());
        if self.by_name.get(&old_slot) == Some(&ino) {
            self.by_name.remove(&old_slot);
        }
        let new_slot = (new_parent, new_name.to_string());
        if let Some(replaced) = self.by_name.remove(&new_slot) {
            self.maybe_drop(replaced);
        }
        let node = self.nodes.get_mut(&ino).expect("checked above");
        node.parent = new_parent;
        node.name = new_name.to_string();
        node.key = new_key;
        self.by_name.insert(new_slot, ino);
    }

    /// The nodes directly below `parent`: inode, name, kind.
    pub fn children_of(&self, parent: u64) -> Vec<(u64, String, NodeKind)> {
        self.nodes
            .values()
            .filter(|n| n.parent == parent && n.ino != ROOT_INO && !n.unlinked)
            .map(|n| (n.ino, n.name.clone(), n.kind))
            .collect()
    }

    /// Nodes under the key prefix `prefix` that are still being written.
    pub fn writers_under(&self, prefix: &str) -> usize {
        self.nodes
            .values()
            .filter(|n| n.writers > 0 && !n.unlinked && n.key.starts_with(prefix))
            .count()
    }

    /// Nodes whose attribute changes are not in the bucket yet.
    pub fn dirty(&self) -> Vec<u64> {
        self.nodes
            .values()
            .filter(|n| n.state.attrs_dirty)
            .map(|n| n.ino)
            .collect()
    }

    /// Drops `ino` if nothing holds it any more (after its attributes were saved).
    pub fn release_if_unused(&mut self, ino: u64) {
        self.maybe_drop(ino);
    }

    pub fn forget(&mut self, ino: u64, count: u64) {
        if ino == ROOT_INO {
            return;
        }
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(count);
        }
        self.maybe_drop(ino);
    }

    pub fn open(&mut self, ino: u64) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.open_handles += 1;
        }
    }

    pub fn close(&mut self, ino: u64) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.open_handles = n.open_handles.saturating_sub(1);
        }
        self.maybe_drop(ino);
    }

    /// A file's descriptor closed: when it was the last one, the hidden objects kept for its
    /// descriptors, now to be deleted. (Also when its name stayed after all: a copy made for
    /// an unlink or a rename over it that then failed is needed by nobody else.)
    pub fn close_file(&mut self, ino: u64) -> Vec<String> {
        let orphans = match self.nodes.get_mut(&ino) {
            Some(n) => {
                n.open_handles = n.open_handles.saturating_sub(1);
                if n.open_handles == 0 {
                    std::mem::take(&mut n.orphans)
                } else {
                    Vec::new()
                }
            }
            None => Vec::new(),
        };
        self.maybe_drop(ino);
        orphans
    }

    /// What every unlinked file kept for its descriptors (the mount ends).
    pub fn take_all_orphans(&mut self) -> Vec<String> {
        self.nodes
            .values_mut()
            .flat_map(|n| std::mem::take(&mut n.orphans))
            .collect()
    }

    /// Children of `parent` with uncommitted writers (shown in listings before S3 has them).
    pub fn pending_children(&self, parent: u64) -> Vec<Node> {
        self.nodes
            .values()
            .filter(|n| n.parent == parent && n.writers > 0 && !n.unlinked && n.ino != ROOT_INO)
            .cloned()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    fn maybe_drop(&mut self, ino: u64) {
        let Some(node) = self.nodes.get(&ino) else {
            return;
        };
        if ino == ROOT_INO
            || node.lookups > 0
            || node.open_handles > 0
            || node.writers > 0
            || node.state.attrs_dirty
        {
            return;
        }
        let slot = (node.parent, node.name.clone());
        if self.by_name.get(&slot) == Some(&ino) {
            self.by_name.remove(&slot);
        }
        self.nodes.remove(&ino);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> NodeState {
        NodeState {
            size: 0,
            ciphertext_size: 0,
            etag: None,
            attrs: PosixAttrs {
                mode: libc::S_IFREG | 0o644,
                uid: 0,
                gid: 0,
                mtime: std::time::SystemTime::UNIX_EPOCH,
                ctime: std::time::SystemTime::UNIX_EPOCH,
                atime: std::time::SystemTime::UNIX_EPOCH,
            },
            attrs_dirty: false,
            valid_until: Instant::now(),
            rdev: 0,
            binding: None,
        }
    }

    #[test]
    fn stable_numbers_and_forget_frees() {
        let mut t = InodeTable::new(state());
        let a = t.upsert(ROOT_INO, "a", NodeKind::File, "a".into(), state(), true);
        let again = t.upsert(ROOT_INO, "a", NodeKind::File, "a".into(), state(), true);
        assert_eq!(a, again);
        assert_eq!(t.get(a).unwrap().lookups, 2);
        t.forget(a, 1);
        assert!(t.get(a).is_some());
        t.forget(a, 1);
        assert!(t.get(a).is_none(), "dropped on the final forget");
        assert_eq!(t.len(), 1);
        let b = t.upsert(ROOT_INO, "a", NodeKind::File, "a".into(), state(), true);
        assert_ne!(a, b, "inode numbers are never reused");
    }

    #[test]
    fn walking_many_files_once_does_not_grow() {
        let mut t = InodeTable::new(state());
        for i in 0..10_000 {
            let name = format!("f{i}");
            let ino = t.upsert(ROOT_INO, &name, NodeKind::File, name.clone(), state(), true);
            t.forget(ino, 1);
        }
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn rename_moves_the_inode_and_detaches_the_target() {
        let mut t = InodeTable::new(state());
        let a = t.upsert(ROOT_INO, "a", NodeKind::File, "a".into(), state(), true);
        let b = t.upsert(ROOT_INO, "b", NodeKind::File, "b".into(), state(), true);
        t.rename(a, ROOT_INO, "b", "b".into());
        assert_eq!(t.child(ROOT_INO, "b").unwrap().ino, a);
        assert!(t.child(ROOT_INO, "a").is_none());
        assert_eq!(t.get(a).unwrap().key, "b");
        t.forget(b, 1);
        assert!(
            t.get(b).is_none(),
            "the replaced inode goes on its final forget"
        );
    }

    #[test]
    fn the_last_close_hands_over_what_was_kept_for_the_descriptors() {
        let mut t = InodeTable::new(state());
        let a = t.upsert(ROOT_INO, "a", NodeKind::File, "a".into(), state(), true);
        t.open(a);
        t.open(a);
        // Kept for an unlink that then failed: the name stays, the copy must still go.
        t.get_mut(a).unwrap().orphans.push("copy".into());
        assert!(t.close_file(a).is_empty(), "a descriptor is still open");
        assert_eq!(t.close_file(a), ["copy"]);
        assert!(t.get(a).unwrap().orphans.is_empty());
    }

    #[test]
    fn open_handles_keep_a_removed_inode() {
        let mut t = InodeTable::new(state());
        let a = t.upsert(ROOT_INO, "a", NodeKind::File, "a".into(), state(), true);
        t.open(a);
        t.remove_name(ROOT_INO, "a");
        t.forget(a, 1);
        assert!(t.get(a).is_some());
        assert!(t.child(ROOT_INO, "a").is_none());
        t.close(a);
        assert!(t.get(a).is_none());
    }
}
