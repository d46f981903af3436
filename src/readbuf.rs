//! Buffers that file bytes are read into.
//!
//! The kernel copies a file's pages into such a buffer on every `read` and `pread`. Where the
//! buffer starts relative to a page changes what that copy costs: on AMD Zen (the machine the
//! benchmark runs on), a destination 16 bytes past a page boundary, which is exactly where the
//! allocator puts any large `Vec` (a fresh mapping plus its 16-byte header), made the copy of a
//! page-cache page three to five times slower than one 64 bytes past it. A profile of a rebuild
//! after `touch` showed the kernel's copy taking as much CPU as SHA-256 of the same bytes; read
//! into a [`ReadBuf`], the same reads cost what `dd` pays. Elsewhere the placement costs nothing.

use std::ops::{Deref, DerefMut};

/// Where a buffer starts within its page: one cache line past the boundary.
const START_IN_PAGE: usize = 64;
const PAGE: usize = 4096;

/// A zeroed byte buffer of fixed length, placed [`START_IN_PAGE`] bytes past a page boundary.
pub struct ReadBuf {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl ReadBuf {
    pub fn new(len: usize) -> ReadBuf {
        let raw = vec![0u8; len + PAGE + START_IN_PAGE];
        let to_page = (PAGE - raw.as_ptr() as usize % PAGE) % PAGE;
        ReadBuf {
            raw,
            start: to_page + START_IN_PAGE,
            len,
        }
    }
}

impl Deref for ReadBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }
}

impl DerefMut for ReadBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_one_cache_line_into_a_page_and_has_the_length_asked() {
        for len in [0, 1, 4096, 128 << 10, 1 << 20] {
            let mut b = ReadBuf::new(len);
            assert_eq!(b.len(), len);
            if len > 0 {
                assert_eq!(b.as_ptr() as usize % PAGE, START_IN_PAGE);
                b[len - 1] = 7;
                assert_eq!(b[len - 1], 7);
            }
        }
    }
}
