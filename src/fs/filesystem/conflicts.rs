//! What a save expects under a file's name, and where the version that loses goes when
//! another mount saved first (`name.conflict-<host>-<time>` beside the file). The saving
//! itself is `upload::conflict`'s.

use super::*;
use crate::store::WriteCondition;
use crate::upload::{Committed, ConflictName, SaveGuard};

impl FsCore {
    /// The guard for a save of `ino` that expects `expect` under its name (`None`: nothing
    /// to check, as for a version whose name was taken while it was written in this mount).
    pub(super) fn save_guard(&self, ino: u64, expect: Option<WriteCondition>) -> Option<SaveGuard> {
        let expect = expect?;
        let node = self.node(ino).ok()?;
        let parent = self.node(node.parent).ok()?;
        let now = SystemTime::now();
        let conflict: Vec<ConflictName> = (1..=CONFLICT_NAMES)
            .map(|n| conflict_name(&node.name, &self.options.host, now, n))
            .filter_map(|name| self.child_keys(&parent, &name).ok())
            .map(|child| ConflictName {
                key: child.file,
                side: child.side.map(|(key, body)| (key, Bytes::from(body))),
            })
            .collect();
        if conflict.is_empty() {
            // No conflict name fits S3's key limit: the save cannot keep both, so it is made
            // unguarded rather than failed, and said so.
            warn!(key = %node.key, "no conflict name fits beside this file: saved without a check");
            return None;
        }
        Some(SaveGuard {
            expect,
            conflict,
            policy: self.options.on_conflict,
            lost_update_record: names::lost_update_key(),
        })
    }

    /// What a save of `ino` that was to expect `expect` expects now: this mount's own saves
    /// since (another descriptor's, an earlier close of this one) moved the name on.
    pub(super) fn expectation(
        &self,
        ino: u64,
        expect: Option<WriteCondition>,
    ) -> Option<WriteCondition> {
        let mut expect = expect?;
        let inodes = self.inodes.lock().unwrap();
        if let Some(node) = inodes.get(ino) {
            // Each step follows one save; ETags of encrypted versions never repeat, and the
            // bound makes sure of the end regardless.
            for _ in 0..node.saved_here.len() {
                match node
                    .saved_here
                    .iter()
                    .rev()
                    .find(|(before, _)| *before == expect)
                {
                    Some((_, after)) => expect = WriteCondition::Matches(after.clone()),
                    None => break,
                }
            }
        }
        Some(expect)
    }

    /// Records a save of `ino` by this mount that found `expected` and left `etag`.
    pub(super) fn saved_here(
        &self,
        ino: u64,
        expected: Option<WriteCondition>,
        etag: Option<&str>,
    ) {
        let (Some(expected), Some(etag)) = (expected, etag) else {
            return;
        };
        if let Some(node) = self.inodes.lock().unwrap().get_mut(ino) {
            if node.saved_here.len() >= SAVES_REMEMBERED {
                node.saved_here.remove(0);
            }
            node.saved_here.push((expected, etag.to_string()));
        }
    }

    /// After a save that kept both versions: the conflict name shows in the directory, and
    /// where this save went to it, the name holds the other mount's version, to be asked for.
    pub(super) fn after_conflict(&self, ino: u64, done: &Committed) {
        let Some(conflict) = &done.conflict else {
            return;
        };
        let parent = {
            let mut inodes = self.inodes.lock().unwrap();
            let Some(node) = inodes.get_mut(ino) else {
                return;
            };
            if conflict.holds_this_save {
                node.state.etag = None;
                node.state.valid_until = Instant::now();
            }
            node.parent
        };
        self.forget_head(&conflict.kept_at);
        self.invalidate_listing(parent);
        self.entries_changed(parent);
    }
}

/// Saves of one file by this mount remembered (descriptors open across more saves than this
/// see a conflict, and keep both versions).
const SAVES_REMEMBERED: usize = 16;

/// Conflict names a save tries, in turn.
const CONFLICT_NAMES: u32 = 4;

/// `name.conflict-<host>-<UTC time>`, then `-2`, `-3` ... for the `n`th try; cut at the end of
/// `name` so that it stays within POSIX's 255 bytes.
fn conflict_name(name: &str, host: &str, when: SystemTime, n: u32) -> String {
    let secs = when
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let mut suffix = format!(".conflict-{host}-{}", utc_stamp(secs));
    if n > 1 {
        suffix.push_str(&format!("-{n}"));
    }
    let mut keep = names::MAX_NAME_BYTES
        .saturating_sub(suffix.len())
        .min(name.len());
    while !name.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}{suffix}", &name[..keep])
}

/// `YYYYMMDD-HHMMSS` in UTC, by the C library's calendar.
fn utc_stamp(secs: u64) -> String {
    let t = secs as libc::time_t;
    // SAFETY: `tm` is plain old data (integers and a pointer), for which all zeros is valid.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: gmtime_r only writes `tm`; both pointers are valid for the call.
    if unsafe { libc::gmtime_r(&t, &mut tm) }.is_null() {
        return secs.to_string();
    }
    format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn conflict_names_say_host_and_time_and_fit_posix() {
        let when = UNIX_EPOCH + Duration::from_secs(1_796_300_000);
        assert_eq!(
            conflict_name("report.txt", "web-1.example", when, 1),
            "report.txt.conflict-web-1_example-20261203-121320"
        );
        assert_eq!(
            conflict_name("report.txt", "h", when, 3),
            "report.txt.conflict-h-20261203-121320-3"
        );
        let long = "é".repeat(127); // 254 bytes
        let name = conflict_name(&long, "h", when, 1);
        assert!(name.len() <= names::MAX_NAME_BYTES, "{}", name.len());
        assert!(name.ends_with(".conflict-h-20261203-121320"));
        assert!(name.starts_with('é'));
    }
}
