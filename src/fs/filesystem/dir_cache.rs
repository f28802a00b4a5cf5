//! What this mount remembers about directories' entries: listings, names known not to exist
//! (negative entries) and each directory's generation. One owner, one lock: the functions
//! here are the only ones that change these, so they stay consistent with each other (a
//! change of a directory bumps its generation, drops its negative entry and updates its
//! listing at once).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::fs::inodes::NodeKind;

/// Negative entries kept before expired ones are swept.
const MAX_NEGATIVE: usize = 100_000;

/// A name in a listing. Sizes, ETags and times are not kept: attributes come from a HEAD
/// (listings carry no user metadata), which also gives those.
#[derive(Debug, Clone)]
pub(super) struct ListedEntry {
    pub(super) kind: NodeKind,
    /// The key component the name is stored under (the name itself on plain volumes).
    pub(super) component: String,
    /// A listed object small enough to be a symlink or a special file: a listing cannot tell
    /// them from a regular file, its HEAD can.
    pub(super) small: bool,
}

pub(super) type Entries = Arc<BTreeMap<String, ListedEntry>>;

struct DirListing {
    entries: Entries,
    /// Lookups answered from this listing: from the second one on, a walk is under way.
    lookups: AtomicU32,
    /// Those of them that found a file: a walk that looks at files (`ls -lR`, `du`,
    /// `rsync`), not only at directories (`find -name`).
    file_lookups: AtomicU32,
    valid_until: Instant,
    /// The last entry whose attributes were asked for ahead of a walk.
    read_ahead_to: Option<String>,
}

/// A fresh listing's answer about one name, and whether a walk over the directory is under
/// way (the caller then reads the following entries' attributes ahead).
pub(super) struct ListedAnswer {
    pub(super) kind: Option<NodeKind>,
    pub(super) entries: Entries,
    pub(super) walking: bool,
}

#[derive(Default)]
pub(super) struct DirCache {
    listings: HashMap<u64, DirListing>,
    /// (directory, name) → known not to exist until then.
    negative: HashMap<(u64, String), Instant>,
    /// Bumped whenever this mount changes a directory: a listing or probe that started
    /// before the change is not cached over it.
    generations: HashMap<u64, u64>,
}

impl DirCache {
    /// The entries of `dir`'s listing while it is fresh.
    pub(super) fn fresh_entries(&self, dir: u64, now: Instant) -> Option<Entries> {
        let listing = self.listings.get(&dir)?;
        (listing.valid_until > now).then(|| listing.entries.clone())
    }

    /// What a fresh listing of `dir` says about `name` (`None`: no fresh listing); counts the
    /// lookup towards a walk.
    pub(super) fn listed(&self, dir: u64, name: &str, now: Instant) -> Option<ListedAnswer> {
        let listing = self.listings.get(&dir)?;
        if listing.valid_until <= now {
            return None;
        }
        let lookups = listing.lookups.fetch_add(1, Ordering::Relaxed) + 1;
        let kind = listing.entries.get(name).map(|e| e.kind);
        if kind.is_some_and(|k| k != NodeKind::Dir) {
            listing.file_lookups.fetch_add(1, Ordering::Relaxed);
        }
        Some(ListedAnswer {
            kind,
            entries: listing.entries.clone(),
            walking: lookups >= 2,
        })
    }

    /// What a fresh listing of `dir` says about `name`, like [`Self::listed`], without
    /// counting a lookup.
    pub(super) fn listed_kind(
        &self,
        dir: u64,
        name: &str,
        now: Instant,
    ) -> Option<Option<NodeKind>> {
        let listing = self.listings.get(&dir)?;
        if listing.valid_until <= now {
            return None;
        }
        Some(listing.entries.get(name).map(|e| e.kind))
    }

    /// Whether names of `dir`'s (possibly expired) listing were being looked up in turn.
    pub(super) fn was_walked(&self, dir: u64) -> bool {
        self.listings
            .get(&dir)
            .is_some_and(|l| l.lookups.load(Ordering::Relaxed) >= 2)
    }

    /// Whether `dir`'s (possibly expired) listing was walked looking at its files: the
    /// walker then looks at the files of the subdirectories it descends into too. (Two file
    /// lookups are two lookups: a walk.)
    pub(super) fn files_were_walked(&self, dir: u64) -> bool {
        self.listings
            .get(&dir)
            .is_some_and(|l| l.file_lookups.load(Ordering::Relaxed) >= 2)
    }

    /// Counts `dir`'s fresh listing as walked, as if two of its names had been looked up.
    pub(super) fn walk_on(&self, dir: u64) {
        if let Some(listing) = self.listings.get(&dir) {
            listing.lookups.fetch_max(2, Ordering::Relaxed);
        }
    }

    /// The last entry of `dir`'s listing whose attributes were asked for ahead of a walk.
    pub(super) fn read_ahead_to(&self, dir: u64) -> Option<String> {
        self.listings.get(&dir)?.read_ahead_to.clone()
    }

    pub(super) fn set_read_ahead_to(&mut self, dir: u64, name: String) {
        if let Some(listing) = self.listings.get_mut(&dir) {
            listing.read_ahead_to = Some(name);
        }
    }

    /// Keeps a listing of `dir` made from a LIST that started at `generation`: not if this
    /// mount changed the directory meanwhile (the listing may miss the change).
    pub(super) fn keep_listing(
        &mut self,
        dir: u64,
        generation: u64,
        entries: Entries,
        ttl: Duration,
    ) {
        if self.generation(dir) != generation {
            return;
        }
        // A walk goes on across a new listing of the same directory.
        let walked = if self.was_walked(dir) { 2 } else { 0 };
        let files_walked = if self.files_were_walked(dir) { 2 } else { 0 };
        self.listings.insert(
            dir,
            DirListing {
                entries,
                lookups: AtomicU32::new(walked),
                file_lookups: AtomicU32::new(files_walked),
                valid_until: Instant::now() + ttl,
                read_ahead_to: None,
            },
        );
    }

    /// A directory this mount just made: known to be empty for `ttl`.
    pub(super) fn new_empty_dir(&mut self, dir: u64, ttl: Duration) {
        self.listings.insert(
            dir,
            DirListing {
                entries: Arc::new(BTreeMap::new()),
                lookups: AtomicU32::new(0),
                file_lookups: AtomicU32::new(0),
                valid_until: Instant::now() + ttl,
                read_ahead_to: None,
            },
        );
    }

    pub(super) fn generation(&self, dir: u64) -> u64 {
        self.generations.get(&dir).copied().unwrap_or(0)
    }

    /// Whether `name` in `dir` is known not to exist.
    pub(super) fn is_negative(&self, dir: u64, name: &str, now: Instant) -> bool {
        self.negative
            .get(&(dir, name.to_string()))
            .is_some_and(|until| *until > now)
    }

    /// Records that `name` in `dir` does not exist, for `ttl`.
    pub(super) fn add_negative(&mut self, dir: u64, name: &str, ttl: Duration) {
        let now = Instant::now();
        if self.negative.len() > MAX_NEGATIVE {
            self.negative.retain(|_, until| *until > now);
        }
        self.negative.insert((dir, name.to_string()), now + ttl);
    }

    /// A name this mount is creating in `dir` is no longer known not to exist.
    pub(super) fn forget_negative(&mut self, dir: u64, name: &str) {
        self.negative.remove(&(dir, name.to_string()));
    }

    /// This mount made `name` exist in `dir` as `entry`, or removed it (`None`): recorded in
    /// the cached listing (if any) so that the next lookups there need no request.
    pub(super) fn record(&mut self, dir: u64, name: &str, entry: Option<ListedEntry>) {
        *self.generations.entry(dir).or_insert(0) += 1;
        self.negative.remove(&(dir, name.to_string()));
        if let Some(listing) = self.listings.get_mut(&dir) {
            let entries = Arc::make_mut(&mut listing.entries);
            match entry {
                Some(entry) => entries.insert(name.to_string(), entry),
                None => entries.remove(name),
            };
        }
    }

    /// Forgets what is known of `dir`'s entries (this mount changed it in a way a listing
    /// update cannot express).
    pub(super) fn invalidate(&mut self, dir: u64) {
        *self.generations.entry(dir).or_insert(0) += 1;
        self.listings.remove(&dir);
        self.negative.retain(|(parent, _), _| *parent != dir);
    }

    /// Forgets every listing and negative entry (a directory moved with everything below it).
    pub(super) fn clear(&mut self) {
        let dirs: Vec<u64> = self.listings.keys().copied().collect();
        for dir in dirs {
            *self.generations.entry(dir).or_insert(0) += 1;
        }
        self.listings.clear();
        self.negative.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(5);

    fn entry() -> ListedEntry {
        ListedEntry {
            kind: NodeKind::File,
            component: "x".into(),
            small: false,
        }
    }

    #[test]
    fn a_listing_started_before_a_change_is_not_kept() {
        let mut cache = DirCache::default();
        let before = cache.generation(1);
        cache.record(1, "new", Some(entry()));
        cache.keep_listing(1, before, Arc::new(BTreeMap::new()), TTL);
        assert!(cache.fresh_entries(1, Instant::now()).is_none());
        let now = cache.generation(1);
        cache.keep_listing(1, now, Arc::new(BTreeMap::new()), TTL);
        assert!(cache.fresh_entries(1, Instant::now()).is_some());
    }

    #[test]
    fn changes_update_the_listing_and_the_negative_entries() {
        let mut cache = DirCache::default();
        cache.new_empty_dir(7, TTL);
        cache.add_negative(7, "f", TTL);
        assert!(cache.is_negative(7, "f", Instant::now()));
        cache.record(7, "f", Some(entry()));
        assert!(!cache.is_negative(7, "f", Instant::now()));
        let answer = cache.listed(7, "f", Instant::now()).unwrap();
        assert_eq!(answer.kind, Some(NodeKind::File));
        assert!(!answer.walking);
        assert!(cache.listed(7, "g", Instant::now()).unwrap().walking);
        cache.record(7, "f", None);
        assert_eq!(cache.listed(7, "f", Instant::now()).unwrap().kind, None);
        cache.invalidate(7);
        assert!(cache.listed(7, "f", Instant::now()).is_none());
        assert!(!cache.was_walked(7));
    }

    #[test]
    fn expired_listings_answer_nothing() {
        let mut cache = DirCache::default();
        cache.new_empty_dir(3, Duration::ZERO);
        assert!(
            cache
                .listed(3, "a", Instant::now() + Duration::from_millis(1))
                .is_none()
        );
    }
}
