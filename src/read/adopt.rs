//! The first bytes of an object that a lookup fetched along with its metadata, taken into
//! the cache: a file opened by name is usually read right after, and a small one then needs
//! no request of its own.

use super::*;

impl ReadContext {
    /// Verifies, decrypts and caches the segments of `version` that lie wholly inside
    /// `prefix`, its first bytes (header included) as one GET returned them together with
    /// the ETag `version` names. Returns how many segments were cached.
    ///
    /// Nothing is cached from a prefix that fails a check: the read that follows fetches
    /// the object again and reports what is wrong with it.
    pub fn adopt_prefix(&self, version: &ObjectVersion, prefix: &[u8]) -> Result<u64, ReadError> {
        let layout = self.layout;
        let corrupt = |e: CryptoError| ReadError::corrupt(&version.key, e);
        let plaintext_size = layout
            .plaintext_size(version.ciphertext_size)
            .map_err(corrupt)?;
        let Some(header) = prefix.get(..layout.header_len()) else {
            return Ok(0);
        };
        let decryptor =
            match self
                .cache
                .decryptor(&version.key, &version.etag, version.ciphertext_size)
            {
                Some(known) => known,
                None => Arc::new(
                    self.file_decryptor(header, version.ciphertext_size)
                        .map_err(corrupt)?,
                ),
            };
        let mut adopted = 0;
        for seg in 0..layout.segment_count(plaintext_size) {
            let range = layout.segment_ciphertext_range(seg, plaintext_size);
            let Some(ciphertext) = prefix.get(range.start as usize..range.end as usize) else {
                break;
            };
            let mut buf = self.buffers.take();
            buf.vec().extend_from_slice(ciphertext);
            self.open_into_cache(&version.key, &decryptor, seg, buf)
                .map_err(corrupt)?;
            adopted += 1;
        }
        if adopted > 0 {
            ReadStats::add(&self.stats.segments_from_lookups, adopted);
            self.cache.keep_decryptor(
                &version.key,
                &version.etag,
                version.ciphertext_size,
                decryptor,
            );
        }
        Ok(adopted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    use crate::read::test_support::{SEGMENT, put_file as put};

    fn context(store: Arc<MemoryStore>, format: u8) -> Arc<ReadContext> {
        // No read-ahead: every request the store sees is one a read needed.
        crate::read::test_support::context(store, format, 1 << 20, 1, 0)
    }

    #[tokio::test]
    async fn a_file_within_the_prefix_is_read_with_no_request() {
        for format in [1, 2, 3] {
            let store = Arc::new(MemoryStore::new());
            let ctx = context(store.clone(), format);
            let plain: Vec<u8> = (0..SEGMENT + 100).map(|i| (i % 251) as u8).collect();
            let (object, version) = put(&ctx, &store, "f", &plain).await;
            let prefix_len =
                ctx.layout.header_len() + ctx.layout.ciphertext_segment_size() as usize;
            let adopted = ctx.adopt_prefix(&version, &object[..prefix_len]).unwrap();
            assert_eq!(adopted, 1, "format {format}: the whole first segment only");

            let requests = store.requests();
            let reader = ObjectReader::new(ctx.clone(), version.clone()).unwrap();
            let first = ctx
                .layout
                .segment_plaintext_range(0, plain.len() as u64)
                .end;
            let got = reader.read(0, first as u32).await.unwrap();
            assert_eq!(&got[..], &plain[..first as usize]);
            assert_eq!(
                store.requests(),
                requests,
                "format {format}: served from the cache"
            );
            // The rest still comes from the store, verified under the same header.
            let rest = reader.read(first, SEGMENT as u32).await.unwrap();
            assert_eq!(&rest[..], &plain[first as usize..]);
            assert_eq!(store.requests(), requests + 1, "format {format}");

            // A whole small object: every segment adopted.
            let (small, version) = put(&ctx, &store, "small", b"tiny file").await;
            assert_eq!(ctx.adopt_prefix(&version, &small).unwrap(), 1);
            let requests = store.requests();
            let reader = ObjectReader::new(ctx.clone(), version).unwrap();
            assert_eq!(&reader.read(0, 4096).await.unwrap()[..], b"tiny file");
            assert_eq!(store.requests(), requests);
        }
    }

    #[tokio::test]
    async fn a_tampered_prefix_is_never_cached() {
        let store = Arc::new(MemoryStore::new());
        let ctx = context(store.clone(), 3);
        let plain = vec![7u8; 1000];
        let (object, version) = put(&ctx, &store, "f", &plain).await;
        for at in [
            0,
            ctx.layout.header_len() - 1,
            ctx.layout.header_len() + 10,
            object.len() - 1,
        ] {
            let mut bad = object.clone();
            bad[at] ^= 1;
            let err = ctx.adopt_prefix(&version, &bad).unwrap_err();
            assert_eq!(err.errno(), libc::EIO, "byte {at}");
            assert!(ctx.cache.is_empty(), "byte {at}: nothing cached");
        }
        // The read then fetches the (intact) object itself.
        let requests = store.requests();
        let reader = ObjectReader::new(ctx.clone(), version).unwrap();
        assert_eq!(&reader.read(0, 1000).await.unwrap()[..], &plain[..]);
        assert!(store.requests() > requests);
    }

    #[tokio::test]
    async fn a_prefix_shorter_than_a_segment_caches_nothing() {
        let store = Arc::new(MemoryStore::new());
        let ctx = context(store.clone(), 3);
        let (object, version) = put(&ctx, &store, "f", &[1u8; 3000]).await;
        let header_only = &object[..ctx.layout.header_len()];
        assert_eq!(ctx.adopt_prefix(&version, header_only).unwrap(), 0);
        assert_eq!(ctx.adopt_prefix(&version, &object[..10]).unwrap(), 0);
        assert!(ctx.cache.is_empty());
    }
}
