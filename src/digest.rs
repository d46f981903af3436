//! SHA-256 content digests, computed while bytes stream past.
//!
//! Layers are never held in memory: writers and readers here hash and count what flows through
//! them, so a blob's digest and size are known the moment its last byte is written or read.

use std::io::{self, Read, Write};

use oci_spec::image::Digest;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::readbuf::ReadBuf;

/// `sha256:<hex>` of a byte slice.
pub fn sha256_of(bytes: &[u8]) -> Digest {
    from_hasher(Sha256::new_with_prefix(bytes))
}

/// Finish a hasher into an OCI digest.
pub fn from_hasher(hasher: Sha256) -> Digest {
    let hex = hex::encode(hasher.finalize());
    format!("sha256:{hex}")
        .parse()
        .expect("a sha256 hex string is a valid digest")
}

/// Parse a digest given by a user or a document, refusing anything but well-formed SHA-256.
pub fn parse(text: &str) -> Result<Digest> {
    let ok = text.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    });
    if !ok {
        return Err(Error::invalid(format!(
            "`{text}` is not a sha256 digest (expected sha256: and 64 lowercase hex digits)"
        )));
    }
    text.parse()
        .map_err(|e| Error::invalid(format!("`{text}` is not a valid digest: {e}")))
}

/// Refuse a descriptor's digest whose algorithm modelcar cannot check (anything but SHA-256,
/// such as `sha512:`), as unsupported rather than as content that fails to match.
pub fn require_sha256(digest: &Digest) -> Result<()> {
    if digest.algorithm() == &oci_spec::image::DigestAlgorithm::Sha256 {
        return Ok(());
    }
    Err(Error::Unsupported {
        what: format!(
            "digest {digest} uses {}, and modelcar checks content against sha256 digests only",
            digest.algorithm().as_ref()
        ),
        hint: Some(
            "copy the image with a tool that rewrites it with sha256 digests (skopeo copy, crane), the default of every registry and builder".into(),
        ),
    })
}

/// A writer that hashes and counts everything written through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The inner writer, the digest and the byte count.
    pub fn finish(self) -> (W, Digest, u64) {
        (self.inner, from_hasher(self.hasher), self.written)
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.write_all(buf)?;
        self.hasher.update(buf);
        self.written += buf.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A buffered writer that hashes on a thread of its own: the writing thread only copies bytes
/// into 1 MiB buffers and writes them out, and the SHA-256 runs beside it on another core.
/// Output and digest are the same as [`HashingWriter`]'s; only the wall time differs.
///
/// Into a file, [`ThreadedHashingWriter::append_file`] goes further: a range of another file is
/// copied by the kernel (`copy_file_range`, through `std::io::copy`) without passing through this
/// process, while the hashing thread reads the same range. Writing through the page cache costs
/// this process more than hashing does; the in-kernel copy costs a fraction of it.
pub struct ThreadedHashingWriter<W: Write> {
    inner: W,
    buf: Vec<u8>,
    written: u64,
    to_hasher: std::sync::mpsc::SyncSender<Piece>,
    spare: std::sync::mpsc::Receiver<Vec<u8>>,
    hasher: std::thread::JoinHandle<io::Result<Sha256>>,
    /// Files appended by range, with what `stat` said before: checked again at `finish`, once
    /// both the copy and the hash are done, so that both are known to have seen the same bytes.
    appended: Vec<(std::fs::File, std::path::PathBuf, FileState)>,
}

/// What is hashed next: bytes, or a range of a file to read.
enum Piece {
    Bytes(Vec<u8>),
    File {
        file: std::fs::File,
        path: std::path::PathBuf,
        offset: u64,
        len: u64,
        /// Where the bytes go too, for the file's own digest (under this key).
        also: Option<(FileFeed, usize)>,
    },
}

/// The `stat` fields that change whenever a file's contents do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct FileState {
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileState {
    pub(crate) fn of(file: &std::fs::File) -> io::Result<FileState> {
        use std::os::unix::fs::MetadataExt;
        let m = file.metadata()?;
        Ok(FileState {
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }
}

const PIECE: usize = 1 << 20;

/// A file appended by range came to its end early: someone truncated it during the build.
fn shrank(path: &std::path::Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!(
            "model file {} shrank while it was being read (truncated during the build); do not change model files during a build, and run it again",
            path.display()
        ),
    )
}

impl<W: Write> ThreadedHashingWriter<W> {
    pub fn new(inner: W) -> Self {
        let (to_hasher, from_writer) = std::sync::mpsc::sync_channel::<Piece>(4);
        let (give_back, spare) = std::sync::mpsc::sync_channel::<Vec<u8>>(8);
        let hasher = std::thread::spawn(move || {
            let mut h = Sha256::new();
            let mut own: Option<ReadBuf> = None;
            for piece in from_writer {
                match piece {
                    Piece::Bytes(bytes) => {
                        h.update(&bytes);
                        let _ = give_back.try_send(bytes);
                    }
                    Piece::File {
                        file,
                        path,
                        offset,
                        len,
                        also,
                    } => {
                        use std::os::unix::fs::FileExt;
                        let mut done = 0u64;
                        while done < len {
                            let mut buf = match &also {
                                Some((feed, _)) => feed.buffer(),
                                None => own.take().unwrap_or_else(|| ReadBuf::new(PIECE)),
                            };
                            let want = (len - done).min(PIECE as u64) as usize;
                            let n = file.read_at(&mut buf[..want], offset + done)?;
                            if n == 0 {
                                return Err(shrank(&path));
                            }
                            h.update(&buf[..n]);
                            done += n as u64;
                            match &also {
                                // The file's own digest, on the file hashing thread.
                                Some((feed, key)) => feed.data(*key, buf, n)?,
                                None => own = Some(buf),
                            }
                        }
                        if let Some((feed, key)) = &also {
                            feed.end(*key)?;
                        }
                    }
                }
            }
            Ok(h)
        });
        ThreadedHashingWriter {
            inner,
            buf: Vec::with_capacity(PIECE),
            written: 0,
            to_hasher,
            spare,
            hasher,
            appended: Vec::new(),
        }
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    fn ship(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.inner.write_all(&self.buf)?;
        let mut next = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(PIECE));
        next.clear();
        let full = std::mem::replace(&mut self.buf, next);
        self.send(Piece::Bytes(full))
    }

    fn send(&mut self, piece: Piece) -> io::Result<()> {
        self.to_hasher
            .send(piece)
            .map_err(|_| io::Error::other("the hashing thread stopped"))
    }

    /// Write out what is buffered; return the inner writer, the digest and the byte count.
    pub fn finish(mut self) -> io::Result<(W, Digest, u64)> {
        self.ship()?;
        let ThreadedHashingWriter {
            inner,
            written,
            to_hasher,
            hasher,
            appended,
            ..
        } = self;
        drop(to_hasher);
        let hasher = hasher
            .join()
            .map_err(|_| io::Error::other("the hashing thread panicked"))??;
        for (file, path, before) in &appended {
            if FileState::of(file)? != *before {
                return Err(io::Error::other(format!(
                    "{} changed while it was being copied and hashed; do not change model files during a build, and run it again",
                    path.display()
                )));
            }
        }
        Ok((inner, from_hasher(hasher), written))
    }
}

impl ThreadedHashingWriter<tempfile::NamedTempFile> {
    /// Append the next `len` bytes of `src` (from its current position) by an in-kernel copy,
    /// the hashing thread reading the same range; `tick` is told of progress. A file that
    /// changes meanwhile makes [`finish`](Self::finish) fail, so no blob is ever named after
    /// bytes other than its own.
    ///
    /// With `also`, the hashing thread hands the bytes it reads to a [`FileHashes`] too, for the
    /// file's own digest under the key given: the range is read once for both digests.
    pub fn append_file(
        &mut self,
        src: &mut std::fs::File,
        path: &std::path::Path,
        len: u64,
        tick: &dyn Fn(u64),
        also: Option<(&FileFeed, usize)>,
    ) -> io::Result<()> {
        use std::io::Seek;
        self.ship()?;
        let before = FileState::of(src)?;
        let offset = src.stream_position()?;
        self.appended
            .push((src.try_clone()?, path.to_path_buf(), before));
        self.send(Piece::File {
            file: src.try_clone()?,
            path: path.to_path_buf(),
            offset,
            len,
            also: also.map(|(f, k)| (f.clone_feed(), k)),
        })?;
        let mut left = len;
        while left > 0 {
            let step = left.min(64 << 20);
            let n = io::copy(&mut (&mut *src).take(step), self.inner.as_file_mut())?;
            if n == 0 {
                return Err(shrank(path));
            }
            left -= n;
            self.written += n;
            tick(n);
        }
        Ok(())
    }
}

impl<W: Write> Write for ThreadedHashingWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(PIECE - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        self.written += n as u64;
        if self.buf.len() == PIECE {
            self.ship()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Buffered bytes go out (and into the hash, in order) with the next piece or `finish`.
        Ok(())
    }
}

/// SHA-256s of whole files, taken on a thread of their own from the buffers the threads that
/// read the files hand over (and get back), so that a file's digest costs no extra read and no
/// time on the reading thread. Files are told apart by a key; pieces of one key arrive in order.
pub struct FileHashes {
    tx: std::sync::mpsc::SyncSender<FileMsg>,
    hasher: std::thread::JoinHandle<std::collections::BTreeMap<usize, String>>,
}

/// What the file hashing thread is sent.
enum FileMsg {
    /// The next `n` bytes of file `key`, in `buf`, which goes back through `back`.
    Data {
        key: usize,
        buf: ReadBuf,
        n: usize,
        back: std::sync::mpsc::SyncSender<ReadBuf>,
    },
    /// File `key` is complete.
    End { key: usize },
}

/// A handle for handing file pieces to [`FileHashes`], with buffers of its own to hand out.
pub struct FileFeed {
    tx: std::sync::mpsc::SyncSender<FileMsg>,
    back_tx: std::sync::mpsc::SyncSender<ReadBuf>,
    back: std::sync::mpsc::Receiver<ReadBuf>,
}

impl FileHashes {
    pub fn new() -> FileHashes {
        let (tx, rx) = std::sync::mpsc::sync_channel::<FileMsg>(4);
        let hasher = std::thread::spawn(move || {
            let mut open: std::collections::HashMap<usize, Sha256> = Default::default();
            let mut done = std::collections::BTreeMap::new();
            for msg in rx {
                match msg {
                    FileMsg::Data { key, buf, n, back } => {
                        open.entry(key).or_default().update(&buf[..n]);
                        let _ = back.try_send(buf);
                    }
                    FileMsg::End { key } => {
                        let h = open.remove(&key).unwrap_or_default();
                        done.insert(key, hex::encode(h.finalize()));
                    }
                }
            }
            done
        });
        FileHashes { tx, hasher }
    }

    /// A feed for one reading thread.
    pub fn feed(&self) -> FileFeed {
        let (back_tx, back) = std::sync::mpsc::sync_channel(8);
        FileFeed {
            tx: self.tx.clone(),
            back_tx,
            back,
        }
    }

    /// The hex SHA-256 of each file completed, by key, once every feed is dropped.
    pub fn finish(self) -> io::Result<std::collections::BTreeMap<usize, String>> {
        drop(self.tx);
        self.hasher
            .join()
            .map_err(|_| io::Error::other("the file hashing thread panicked"))
    }
}

impl Default for FileHashes {
    fn default() -> Self {
        FileHashes::new()
    }
}

impl FileFeed {
    /// A buffer of [`PIECE`] bytes to read into (one given back, or a new one).
    pub fn buffer(&self) -> ReadBuf {
        self.back.try_recv().unwrap_or_else(|_| ReadBuf::new(PIECE))
    }

    /// Hand over the next `n` bytes of file `key`, held in `buf`.
    pub fn data(&self, key: usize, buf: ReadBuf, n: usize) -> io::Result<()> {
        self.tx
            .send(FileMsg::Data {
                key,
                buf,
                n,
                back: self.back_tx.clone(),
            })
            .map_err(|_| io::Error::other("the file hashing thread stopped"))
    }

    /// File `key` is complete (an empty file needs only this).
    pub fn end(&self, key: usize) -> io::Result<()> {
        self.tx
            .send(FileMsg::End { key })
            .map_err(|_| io::Error::other("the file hashing thread stopped"))
    }

    fn clone_feed(&self) -> FileFeed {
        let (back_tx, back) = std::sync::mpsc::sync_channel(8);
        FileFeed {
            tx: self.tx.clone(),
            back_tx,
            back,
        }
    }
}

/// A reader that hashes and counts everything read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            read: 0,
        }
    }

    /// The digest and byte count of everything read.
    pub fn finish(self) -> (Digest, u64) {
        (from_hasher(self.hasher), self.read)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// The hex part of a sha256 digest (the file name of a blob in an OCI layout).
pub fn hex_of(digest: &Digest) -> &str {
    digest.digest()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_empty_json_matches_the_spec() {
        assert_eq!(
            sha256_of(b"{}").to_string(),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }

    #[test]
    fn hashing_writer_and_reader_agree() {
        let data = vec![7u8; 100_000];
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(&data).unwrap();
        let (out, d1, n1) = w.finish();
        let mut r = HashingReader::new(&data[..]);
        io::copy(&mut r, &mut io::sink()).unwrap();
        let (d2, n2) = r.finish();
        assert_eq!(out, data);
        assert_eq!((d1.clone(), n1), (d2, n2));
        assert_eq!(d1, sha256_of(&data));
    }

    #[test]
    fn the_threaded_writer_gives_the_same_bytes_and_digest() {
        let data: Vec<u8> = (0..5_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut w = ThreadedHashingWriter::new(Vec::new());
        for chunk in data.chunks(333_333) {
            w.write_all(chunk).unwrap();
        }
        let (out, d, n) = w.finish().unwrap();
        assert_eq!(out, data);
        assert_eq!((d, n), (sha256_of(&data), data.len() as u64));
    }

    #[test]
    fn a_file_appended_in_the_kernel_hashes_as_if_written() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 13 % 253) as u8).collect();
        let src_path = dir.path().join("src");
        std::fs::write(&src_path, &data).unwrap();
        let mut src = std::fs::File::open(&src_path).unwrap();
        // Skip a prefix of the source, as a tar header would precede the contents.
        io::copy(&mut (&mut src).take(100), &mut io::sink()).unwrap();

        let mut w = ThreadedHashingWriter::new(tempfile::NamedTempFile::new_in(&dir).unwrap());
        w.write_all(b"header").unwrap();
        let ticks = std::cell::Cell::new(0);
        let files = FileHashes::new();
        let feed = files.feed();
        w.append_file(
            &mut src,
            &src_path,
            2_000_000,
            &|n| ticks.set(ticks.get() + n),
            Some((&feed, 7)),
        )
        .unwrap();
        w.write_all(b"trailer").unwrap();
        let (tmp, d, n) = w.finish().unwrap();
        let expected = [&b"header"[..], &data[100..2_000_100], b"trailer"].concat();
        assert_eq!(std::fs::read(tmp.path()).unwrap(), expected);
        assert_eq!((d, n), (sha256_of(&expected), expected.len() as u64));
        assert_eq!(ticks.get(), 2_000_000);
        drop(feed);
        let own = files.finish().unwrap();
        assert_eq!(
            own.get(&7).map(String::as_str),
            Some(hex_of(&sha256_of(&data[100..2_000_100]))),
            "the file's own digest, from the same read"
        );

        // A source that changes before the blob is finished fails it.
        let mut src = std::fs::File::open(&src_path).unwrap();
        let mut w = ThreadedHashingWriter::new(tempfile::NamedTempFile::new_in(&dir).unwrap());
        w.append_file(&mut src, &src_path, 1000, &|_| {}, None)
            .unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&src_path)
            .unwrap()
            .write_all(b"more")
            .unwrap();
        let Err(err) = w.finish() else {
            panic!("the change was not seen")
        };
        assert!(
            err.to_string()
                .contains(&format!("{} changed", src_path.display())),
            "{err}"
        );
    }

    #[test]
    fn a_truncated_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let src_path = dir.path().join("weights.bin");
        std::fs::write(&src_path, vec![7u8; 3000]).unwrap();
        let mut src = std::fs::File::open(&src_path).unwrap();
        let mut w = ThreadedHashingWriter::new(tempfile::NamedTempFile::new_in(&dir).unwrap());
        // The tar header promised 5000 bytes; the file holds 3000 by the time it is copied.
        let err = match w.append_file(&mut src, &src_path, 5000, &|_| {}, None) {
            Err(e) => e,
            Ok(()) => w.finish().map(|_| ()).unwrap_err(),
        };
        assert!(
            err.to_string()
                .contains(&format!("{} shrank", src_path.display())),
            "{err}"
        );
    }

    #[test]
    fn other_algorithms_are_unsupported_not_mismatched() {
        let d: Digest = format!("sha512:{}", "a".repeat(128)).parse().unwrap();
        let e = require_sha256(&d).unwrap_err();
        assert!(matches!(e, Error::Unsupported { .. }), "{e:?}");
        assert!(e.to_string().contains("sha512"), "{e}");
        assert!(require_sha256(&sha256_of(b"x")).is_ok());
    }

    #[test]
    fn parse_rejects_malformed_digests() {
        assert!(parse("sha256:abc").is_err());
        assert!(parse("md5:d41d8cd98f00b204e9800998ecf8427e").is_err());
        assert!(parse(&format!("sha256:{}", "A".repeat(64))).is_err());
        assert!(parse(&format!("sha256:{}", "a".repeat(64))).is_ok());
    }
}
