//! Read-ahead: which reads are sequential, what is fetched ahead of them and in GETs of
//! what size, shared fairly among the readers open at once.

use super::*;

/// Read-ahead settings.
#[derive(Debug, Clone, Copy)]
pub struct PrefetchConfig {
    /// Segments per read-ahead GET (and their alignment). As many as a part of an upload
    /// holds, so that a GET is one part: servers answer a GET of a whole part with the least
    /// work (Garage reads its blocks from the part's start).
    pub chunk_segments: u64,
    /// The window a sequential reader starts with, in bytes.
    pub initial_window: u64,
    /// The largest window it grows to, in bytes.
    pub max_window: u64,
}

impl Default for PrefetchConfig {
    fn default() -> Self {
        Self {
            // 8 MiB GETs: few enough requests to keep the server's per-request cost low,
            // small enough that the first one arrives quickly.
            chunk_segments: 128,
            initial_window: 1024 * 1024,
            max_window: 16 * 1024 * 1024,
        }
    }
}

/// A read this far behind the furthest one so far still counts as sequential: the kernel's
/// read-ahead (`read_ahead_kb` is raised to `--max-prefetch`) sends many requests at once
/// and they are served out of order. With 1 MiB, a sequential `cat` was taken for a random
/// reader every few MiB, which reset its read-ahead; with 32 MiB, a request came that much
/// late a few times per GiB (two cores, both busy).
const SEQUENTIAL_BACK: u64 = 64 * 1024 * 1024;
/// Segments partly served to a sequential reader that are tracked at most (a few MiB of
/// requests in flight touch a few dozen).
const PARTLY_SERVED_LIMIT: usize = 1024;
/// A skip forward of up to this much still counts as sequential: more than the kernel's
/// read-ahead (`--max-prefetch`, 16 MiB by default), whose requests for the next window can
/// arrive before the rest of the current one.
const SEQUENTIAL_FORWARD: u64 = 32 * 1024 * 1024;

#[derive(Debug, Default)]
pub(super) struct SequentialState {
    /// Where the next read starts if the reader is sequential.
    next_offset: u64,
    /// Bytes served of segments not yet served whole.
    partly_served: HashMap<u64, u64>,
    window: u64,
    /// Where a read further back than `SEQUENTIAL_BACK` ended: a seek back if the next read
    /// goes on from there, else a request that came very late.
    seek_end: Option<u64>,
    /// Read-ahead was requested for the segments before this one (of the current run of
    /// sequential reads): each is fetched once, even if it has since left the cache.
    read_ahead_to: u64,
}

impl SequentialState {
    pub(super) fn new(window: u64) -> Self {
        Self {
            window,
            ..Default::default()
        }
    }
}

/// Read-ahead GETs are never smaller than this (in bytes), however many readers share the
/// cache: below it the server's cost per request dominates.
const MIN_GET_BYTES: u64 = 1024 * 1024;

/// What one reader may read ahead while others read too.
#[derive(Debug, Clone, Copy)]
struct ReadAheadShare {
    /// The largest read-ahead window, in bytes.
    window: u64,
    /// Segments per read-ahead GET (a power of two, so GETs stay within parts).
    get_segments: u64,
}

impl ReadContext {
    /// Each open reader's part of the read-ahead: what all of them fetch ahead must fit in
    /// the cache together, or segments fetched ahead are evicted before they are read and
    /// fetched again (eight `cat`s at once fetched 58 % more than they read). A reader
    /// alone reads ahead up to `max_window` in GETs of `chunk_segments`; with more, the
    /// window shrinks to half of its share of the cache, and a GET to the whole share (at
    /// least [`MIN_GET_BYTES`]). A read-ahead GET reads its body no further than the window
    /// ahead ([`ReadAhead`]), so what waits in its connection is at most the other half of
    /// the share. (Eight readers with GETs of a quarter of their share, 2 MiB, made Garage
    /// spend 40 % more CPU than eight readers of s3fs, most of it per request; GETs of the
    /// whole share are 8 MiB there.)
    fn read_ahead_share(&self) -> ReadAheadShare {
        let segment = u64::from(self.layout.plaintext_segment_size());
        let readers = self.open_readers.load(Ordering::Relaxed).max(1) as u64;
        let share = self.cache_bytes / readers;
        let window = (share / 2).max(2 * segment).min(self.prefetch.max_window);
        let chunk = self.prefetch.chunk_segments.max(1);
        let wanted = (share.max(MIN_GET_BYTES) / segment).clamp(1, chunk);
        // The largest power of two that fits: GETs of 128, 64, 32 … segments stay aligned
        // to the 128-segment parts.
        let get_segments = 1 << wanted.ilog2();
        ReadAheadShare {
            window,
            get_segments,
        }
    }
}

impl ObjectReader {
    /// Counts what a sequential reader was served of `seg`; once it has had all of it, the
    /// segment leaves the cache: the reader will not come back for it (the kernel's page
    /// cache keeps what it read), and the room is for segments still ahead. Dropping a
    /// segment as soon as one read covered its end raced with the read that covered its
    /// start (the kernel serves several at once), which then fetched it again and left it
    /// in the cache for good; so did dropping what lay behind the furthest request, since a
    /// prefetch could still be filling it in.
    pub(super) fn served(&self, seg: u64, bytes: u64, segment_len: u64) {
        let done = {
            let mut state = self.state.lock().unwrap();
            if state.partly_served.len() >= PARTLY_SERVED_LIMIT {
                // Not a reader that reads each byte once after all.
                state.partly_served.clear();
            }
            let total = state.partly_served.entry(seg).or_default();
            *total += bytes;
            let done = *total >= segment_len;
            if done {
                state.partly_served.remove(&seg);
            }
            done
        };
        if done && let Some(id) = self.segment_id(seg) {
            self.ctx.cache.remove(&id);
        }
    }

    /// Waits for a prefetch that covers `seg`, or fetches `seg..limit` (the rest of the read)
    /// with one GET; returns the plaintext of `seg` and of the segments fetched after it.
    pub(super) async fn wait_or_fetch(
        &self,
        seg: u64,
        limit: u64,
    ) -> Result<Vec<Bytes>, ReadError> {
        let pending = self.inflight.lock().unwrap().covering(seg);
        if let Some(mut progress) = pending {
            // A read-ahead GET caches its segments as they arrive: this read waits for its
            // own, not for the rest of the GET.
            if progress.wait_for(|next| *next > seg).await.is_ok()
                && let Some(p) = self.cached(seg)
            {
                return Ok(vec![p]);
            }
            // The read-ahead ended short of `seg` (a failed GET: a read fetches again
            // itself, and fails only if that fails too) or `seg` has left the cache.
        }
        // Fetch only up to the first segment that is already cached or being fetched.
        let mut end = seg + 1;
        while end < limit && self.cached(end).is_none() {
            end += 1;
        }
        self.fetch(seg, end).await
    }

    /// Starts background GETs for the window ahead of a sequential reader.
    /// Returns whether the reader looks sequential.
    pub(super) fn schedule_prefetch(&self, offset: u64, end: u64) -> bool {
        let layout = self.ctx.layout;
        let share = self.ctx.read_ahead_share();
        let (max_window, get_segments) = (share.window, share.get_segments);
        let mut state = self.state.lock().unwrap();
        let furthest = state.next_offset;
        let near = |pos: u64| offset + SEQUENTIAL_BACK >= pos && offset <= pos + SEQUENTIAL_FORWARD;
        if !near(furthest) {
            if offset < furthest && !state.seek_end.is_some_and(near) {
                // Far behind: a seek back, or a request that came very late. Only the next
                // read tells which; until then nothing changes (a late request taken for a
                // seek made the reader fetch again what it had read ahead).
                debug!(key = %self.version.key, offset, furthest, "a read far behind");
                state.seek_end = Some(end);
                return false;
            }
            // A seek (confirmed by this read, for one back): followed from here on. The read
            // after it that goes on from here gets read-ahead, starting small again; a
            // random reader never does. What lies behind the new position is read ahead
            // again.
            debug!(key = %self.version.key, offset, furthest, "a seek");
            state.window = self.ctx.prefetch.initial_window.min(max_window);
            if offset < furthest {
                state.read_ahead_to = state.read_ahead_to.min(layout.segment_of(offset));
            }
            state.next_offset = end;
            state.seek_end = None;
            return false;
        }
        state.seek_end = None;
        state.next_offset = furthest.max(end);
        // Read-ahead starts at the furthest request so far, not at this one: a request served
        // late (the kernel sends many at once) must not ask again for segments its successors
        // already had fetched, and which they may since have been served and dropped. It
        // did: a cold 4 GiB `cat` fetched a fifth of its segments twice.
        let start = offset.max(furthest);
        let ahead_end = (end.max(furthest) + state.window).min(self.plaintext_size);
        state.window = (state.window * 2).min(max_window);
        if ahead_end <= start {
            return true;
        }
        let segment_count = layout.segment_count(self.plaintext_size);
        // GETs start and end on multiples of their size, so that they stay whole-sized.
        let first = layout.segment_of(start) / get_segments * get_segments;
        let mut from = first.max(state.read_ahead_to);
        let until = layout.segment_of(ahead_end - 1) + 1;
        while from < until {
            let to = ((from / get_segments + 1) * get_segments).min(segment_count);
            // Segments already here (fetched for a request, or before a seek) are not asked
            // for again.
            while from < to && self.cached(from).is_some() {
                from += 1;
            }
            if from < to {
                // Registered under the lock the task takes to deregister itself, so a fetch
                // that finishes at once cannot leave a stale entry behind.
                let mut inflight = self.inflight.lock().unwrap();
                let id = inflight.next_id();
                let progress = self.spawn_fetch(from, to, id, max_window);
                inflight.register(from, to, id, progress);
            }
            from = to;
        }
        state.read_ahead_to = state.read_ahead_to.max(from);
        true
    }

    /// Starts a read-ahead GET of `from..to` that reads no further than `window` past the
    /// furthest read; returns where it has got to.
    fn spawn_fetch(&self, from: u64, to: u64, id: u64, window: u64) -> watch::Receiver<u64> {
        let (progress, watcher) = watch::channel(from);
        let job = FetchJob {
            ctx: self.ctx.clone(),
            version: self.version.clone(),
            plaintext_size: self.plaintext_size,
            decryptor: self.decryptor.clone(),
            ahead: Some(ReadAhead {
                progress,
                furthest: self.furthest.subscribe(),
                window,
            }),
        };
        let inflight = self.inflight.clone();
        // Its errors are the reads' to report: they fetch again, and fail if that fails.
        tokio::spawn(async move {
            if let Err(e) = job.fetch(from, to).await {
                debug!(key = %job.version.key, segments = ?(from..to), "read-ahead failed: {e}");
            }
            inflight.lock().unwrap().finished(from, id);
        });
        watcher
    }
}

/// What a read-ahead GET answers to besides its range.
pub(super) struct ReadAhead {
    /// The segment after the last one cached so far, for the reads that wait on them.
    pub(super) progress: watch::Sender<u64>,
    /// The furthest end of any read of the reader, in plaintext bytes; closed when the
    /// reader is dropped, which ends the GET.
    pub(super) furthest: watch::Receiver<u64>,
    /// How far past `furthest` the GET may read. Its body is read only that far ahead: the
    /// rest waits in the connection, so a GET can be a whole part while the segments
    /// fetched ahead stay within the reader's share of the cache.
    pub(super) window: u64,
}

impl ReadAhead {
    /// Waits until the reader is less than the window from `plaintext_start`; false if the
    /// reader is gone. A GET that had to stop goes on once the reader has come a quarter of
    /// the window nearer, not at each read: it then reads a run of segments at a time (eight
    /// readers at once: 1.53 s against 1.65, and 8 % less CPU in Garage).
    pub(super) async fn wait_for_room(&self, plaintext_start: u64) -> bool {
        let mut furthest = self.furthest.clone();
        if plaintext_start < furthest.borrow().saturating_add(self.window) {
            return true;
        }
        let resume = plaintext_start.saturating_add(self.window / 4);
        furthest
            .wait_for(|f| resume < f.saturating_add(self.window))
            .await
            .is_ok()
    }
}

/// The GETs of one reader under way, by their first segment.
#[derive(Default)]
pub(super) struct InFlightFetches {
    issued: u64,
    by_first: BTreeMap<u64, InFlight>,
}

struct InFlight {
    /// The segment after the last one fetched.
    to: u64,
    id: u64,
    /// The segment after the last one cached so far; closed when the GET ends.
    progress: watch::Receiver<u64>,
}

impl InFlightFetches {
    /// A number for the next fetch, to deregister it by.
    fn next_id(&mut self) -> u64 {
        self.issued += 1;
        self.issued
    }

    fn register(&mut self, from: u64, to: u64, id: u64, progress: watch::Receiver<u64>) {
        self.by_first.insert(from, InFlight { to, id, progress });
    }

    /// A fetch is over. It is taken out by its number, not only by its first segment:
    /// after a seek back a second fetch can start at the same segment while the first is
    /// still running, and the first one's end must not hide the second from its readers
    /// (they would fetch its segments again).
    fn finished(&mut self, from: u64, id: u64) {
        if self.by_first.get(&from).is_some_and(|f| f.id == id) {
            self.by_first.remove(&from);
        }
    }

    /// The progress of the fetch under way that brings `seg`, if any.
    fn covering(&self, seg: u64) -> Option<watch::Receiver<u64>> {
        self.by_first
            .range(..=seg)
            .next_back()
            .filter(|(_, f)| f.to > seg)
            .map(|(_, f)| f.progress.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::test_support::{SEGMENT, context, put_file};
    use crate::store::StoreErrorKind;
    use crate::store::fault::{Action, FaultStore, Op};
    use crate::store::memory::MemoryStore;
    use std::time::Duration;

    /// A fetch that ends takes out only itself: a later one from the same segment (after a
    /// seek back) stays findable by the reads that wait for it.
    #[test]
    fn a_finished_fetch_takes_out_only_itself() {
        let done = || watch::channel(0).1;
        let mut fetches = InFlightFetches::default();
        let first = fetches.next_id();
        fetches.register(5, 9, first, done());
        let second = fetches.next_id();
        fetches.register(5, 9, second, done());
        assert_ne!(first, second);
        fetches.finished(5, first);
        assert!(
            fetches.covering(7).is_some(),
            "the second fetch is still under way"
        );
        assert!(fetches.covering(9).is_none() && fetches.covering(4).is_none());
        fetches.finished(5, second);
        assert!(fetches.covering(7).is_none());
    }

    fn pattern(len: usize, seed: usize) -> Vec<u8> {
        (0..len).map(|i| ((i * 7 + seed) % 251) as u8).collect()
    }

    /// A context (format 3) over a fresh store, one file of `len` bytes put there, and a
    /// reader of it.
    async fn one_reader(
        len: usize,
        cache_bytes: u64,
        chunk_segments: u64,
        max_window: u64,
    ) -> (Arc<ReadContext>, Vec<u8>, ObjectReader) {
        let store = Arc::new(MemoryStore::new());
        let ctx = context(store.clone(), 3, cache_bytes, chunk_segments, max_window);
        let plain = pattern(len, len % 251);
        let (_, version) = put_file(&ctx, &store, "f", &plain).await;
        let reader = ObjectReader::new(ctx.clone(), version).unwrap();
        (ctx, plain, reader)
    }

    /// Eight readers at once, each reading its file from start to end in small steps, as
    /// eight `cat`s do: what they fetch ahead together fits in the cache, so each segment is
    /// fetched once. With every reader's whole window, the cache held a fraction of what was
    /// fetched ahead, and eight `cat`s of 64 MiB fetched 58 % more than they read.
    #[tokio::test]
    async fn readers_at_once_share_the_cache_and_fetch_each_segment_once() {
        const READERS: usize = 8;
        const LEN: usize = 64 * SEGMENT;
        let store = Arc::new(MemoryStore::new());
        // A cache of 32 segments; a reader alone reads 16 ahead, in GETs of 8.
        let s = SEGMENT as u64;
        let ctx = context(store.clone(), 3, 32 * s, 8, 16 * s);
        let mut files = Vec::new();
        for r in 0..READERS {
            let plain = pattern(LEN, r);
            let (_, version) = put_file(&ctx, &store, &format!("f{r}"), &plain).await;
            files.push((plain, ObjectReader::new(ctx.clone(), version).unwrap()));
        }
        let segments = ctx.layout.segment_count(LEN as u64) * READERS as u64;
        let step = SEGMENT / 2;
        for offset in (0..LEN).step_by(step) {
            for (plain, reader) in &files {
                let got = reader.read(offset as u64, step as u32).await.unwrap();
                assert!(got[..] == plain[offset..offset + step], "at {offset}");
            }
        }
        let fetched = ReadStats::get(&ctx.stats.segments_fetched);
        assert_eq!(fetched, segments, "each segment fetched once");
        // ... in GETs of whole chunks (9 per file, and its first read's own): GETs shrink
        // no further than their floor (a whole chunk here), and wait for their readers.
        let gets = ReadStats::get(&ctx.stats.gets);
        assert!(
            gets <= 10 * READERS as u64,
            "{gets} GETs for {segments} segments"
        );

        // Alone again, a reader gets the whole window and GETs of 8 segments.
        drop(files);
        let plain = pattern(LEN, 99);
        let (_, version) = put_file(&ctx, &store, "alone", &plain).await;
        let reader = ObjectReader::new(ctx.clone(), version).unwrap();
        let gets = ReadStats::get(&ctx.stats.gets);
        for offset in (0..LEN).step_by(step) {
            let got = reader.read(offset as u64, step as u32).await.unwrap();
            assert!(got[..] == plain[offset..offset + step], "at {offset}");
        }
        let gets = ReadStats::get(&ctx.stats.gets) - gets;
        assert!(gets <= 10, "{gets} GETs for 65 segments read alone");
    }

    /// A read-ahead GET reads its body no further than the window past the furthest read:
    /// the rest waits in the connection until the reader gets nearer, and the GET ends when
    /// the reader is dropped.
    #[tokio::test]
    async fn read_ahead_reads_no_further_than_its_window() {
        const LEN: usize = 60 * SEGMENT;
        // One GET of 64 segments would bring the whole file; the window is 4 segments.
        let store = Arc::new(MemoryStore::new());
        let ctx = context(store.clone(), 3, 1 << 20, 64, 4 * SEGMENT as u64);
        let plain = pattern(LEN, 1);
        let (_, version) = put_file(&ctx, &store, "f", &plain).await;
        let reader = ObjectReader::new(ctx.clone(), version).unwrap();
        let step = SEGMENT / 2;
        for offset in (0..8 * SEGMENT).step_by(step) {
            let got = reader.read(offset as u64, step as u32).await.unwrap();
            assert!(got[..] == plain[offset..offset + step], "at {offset}");
        }
        // Time for the GET to read all it may (a store in memory answers at once).
        tokio::time::sleep(Duration::from_millis(50)).await;
        let ahead = ctx.cache.len();
        assert!(
            (1..=5).contains(&ahead),
            "{ahead} segments fetched ahead of a reader at segment 8 with a window of 4"
        );
        for offset in (8 * SEGMENT..LEN).step_by(step) {
            let got = reader.read(offset as u64, step as u32).await.unwrap();
            assert!(got[..] == plain[offset..offset + step], "at {offset}");
        }
        assert_eq!(ReadStats::get(&ctx.stats.gets), 1, "one GET, paced");
        drop(reader);

        // A GET waiting for its reader ends when the reader is dropped (it holds the
        // context while it runs).
        let plain = pattern(LEN, 7);
        let (_, version) = put_file(&ctx, &store, "g", &plain).await;
        let reader = ObjectReader::new(ctx.clone(), version).unwrap();
        reader.read(0, step as u32).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            Arc::strong_count(&ctx) > 2,
            "a GET is waiting for the reader"
        );
        drop(reader);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(Arc::strong_count(&ctx), 1, "the waiting GET has ended");
    }

    /// A GET is a reader's whole share of the cache, in a power of two of segments between
    /// the floor of 1 MiB and a chunk: what waits in its connection beyond the reader's
    /// window stays within the share however many readers there are.
    #[tokio::test]
    async fn gets_are_a_readers_share_of_the_cache_down_to_a_floor() {
        let store = Arc::new(MemoryStore::new());
        let s = SEGMENT as u64;
        // A cache of 8 MiB; GETs of 512 segments (2 MiB) at most; the floor is 256.
        let ctx = context(store.clone(), 3, 8 << 20, 512, 4 << 20);
        let (_, version) = put_file(&ctx, &store, "f", &pattern(SEGMENT, 1)).await;
        let mut readers = Vec::new();
        let mut shares = Vec::new();
        for count in [1, 4, 5, 16, 1000] {
            while readers.len() < count {
                readers.push(ObjectReader::new(ctx.clone(), version.clone()).unwrap());
            }
            let share = ctx.read_ahead_share();
            shares.push((share.window / s, share.get_segments));
        }
        // 1 reader: the whole chunk; 4: a 2 MiB share (512 segments); 5: 1.6 MiB (390
        // segments, down to 256); 16 and 1000: shares under the floor of 1 MiB.
        assert_eq!(
            shares,
            vec![(1024, 512), (256, 512), (204, 256), (64, 256), (2, 256)]
        );
    }

    /// A read-ahead GET that fails fails no read: the read that waited for it fetches its
    /// segments itself.
    #[tokio::test]
    async fn a_failed_read_ahead_is_fetched_again_by_the_read() {
        let memory = Arc::new(MemoryStore::new());
        let store = Arc::new(FaultStore::new(memory.clone()));
        let ctx = context(store.clone(), 3, 1 << 20, 8, 8 * SEGMENT as u64);
        let plain = pattern(20 * SEGMENT, 3);
        let (_, version) = put_file(&ctx, &memory, "f", &plain).await;
        // The first GET is the read-ahead the first read waits for.
        store.on(Op::Get, 1, Action::Fail(StoreErrorKind::Transient));
        let reader = ObjectReader::new(ctx.clone(), version).unwrap();
        let got = reader.read(0, 100).await.unwrap();
        assert_eq!(&got[..], &plain[..100]);
        assert_eq!(store.calls(Op::Get), 2, "the read fetched again, once");
    }

    /// The kernel sends a sequential reader's requests many at once and they are served out
    /// of order: a request that comes late fetches nothing that was already fetched for the
    /// requests after it, whether or not they have since been served and dropped. (A cold
    /// 4 GiB `cat` fetched a fifth of its segments twice.)
    #[tokio::test]
    async fn late_requests_fetch_nothing_twice() {
        const LEN: usize = 64 * SEGMENT;
        let (ctx, plain, reader) = one_reader(LEN, 1 << 20, 4, 16 * SEGMENT as u64).await;
        // Requests of four segments, each pair swapped: the second comes first.
        let request = 4 * SEGMENT;
        let count = LEN / request;
        for pair in (0..count).step_by(2) {
            for k in [pair + 1, pair] {
                let offset = k * request;
                let got = reader.read(offset as u64, request as u32).await.unwrap();
                assert!(got[..] == plain[offset..offset + request], "request {k}");
            }
        }
        let segments = ctx.layout.segment_count(LEN as u64);
        assert_eq!(ReadStats::get(&ctx.stats.segments_fetched), segments);
        assert_eq!(
            ctx.cache.len(),
            0,
            "every segment was served whole and dropped"
        );
    }

    /// A request that comes very late, further behind than `SEQUENTIAL_BACK`, is not taken
    /// for a seek: the reader goes on as a sequential one from where it was, fetches nothing
    /// again and drops what it was served. (Taken for a seek, it reset the read-ahead, and
    /// the request after it, near where the reader really was, looked like a seek forward;
    /// in a mount, read-ahead already under way was then fetched again.)
    #[tokio::test]
    async fn a_very_late_request_is_not_a_seek() {
        const MIB: usize = 1 << 20;
        let len = (SEQUENTIAL_BACK as usize) + 8 * MIB;
        let (ctx, plain, reader) = one_reader(len, 16 << 20, 32, 256 * SEGMENT as u64).await;
        let read = |offset: usize| {
            let reader = &reader;
            let plain = &plain;
            async move {
                let got = reader.read(offset as u64, MIB as u32).await.unwrap();
                assert!(got[..] == plain[offset..offset + MIB], "at {offset}");
            }
        };
        let late = 2 * MIB;
        for offset in (0..len - MIB).step_by(MIB).filter(|o| *o != late) {
            read(offset).await;
            if offset == len - 4 * MIB {
                read(late).await;
            }
        }
        read(len - MIB).await;
        let segments = ctx.layout.segment_count(len as u64);
        assert_eq!(ReadStats::get(&ctx.stats.segments_fetched), segments);
        // Only the late request's own segments stay cached (a read far behind is not
        // counted as served); taken for a seek, the reads after it were not either.
        assert!(
            ctx.cache.len() <= MIB / SEGMENT + 1,
            "{} segments left in the cache",
            ctx.cache.len()
        );
    }
}
