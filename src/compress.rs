//! Layer compressors that use every core and give the same bytes whatever the core count.
//!
//! - gzip: [`ParGzip`] cuts the stream into fixed 1 MiB blocks and deflates each on its own in a
//!   pool of worker threads. Every block but the last ends with a sync flush, so the blocks join
//!   into one valid deflate stream (what `pigz --independent` writes); the CRC-32 of the blocks is
//!   combined in order. Block boundaries depend only on the byte count, never on the threads, so
//!   one worker or eight write the same file. Within a block, runs of 4 KiB probes whose bytes
//!   have the entropy of random data (weights, already compressed files) are written as stored
//!   blocks instead of going through deflate's match search, which cannot shrink them and would
//!   spend most of its time on them. flate2's `GzEncoder` uses one core, and no
//!   maintained crate streams gzip over a thread pool with that guarantee, hence this writer.
//! - zstd: libzstd's own workers (`ZSTD_c_nbWorkers`), always at least one: with one or more
//!   workers libzstd's streaming output does not depend on how many there are (only the
//!   single-threaded mode, zero workers, frames it differently).
//!
//! Memory stays bounded: at most two blocks per worker are in flight. A writer dropped before
//! `finish` (an error elsewhere) lets its workers end on their own: their channels close.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, FlushCompress, Status};

/// Uncompressed bytes per independently deflated block.
const BLOCK: usize = 1 << 20;
/// gzip member header: deflate, no flags, mtime 0, no extra flags, OS unknown.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

struct Job {
    seq: u64,
    input: Vec<u8>,
    last: bool,
}

struct Done {
    seq: u64,
    output: io::Result<Vec<u8>>,
    crc: u32,
    len: u64,
    /// The input buffer, handed back for reuse.
    input: Vec<u8>,
}

/// A gzip writer that deflates fixed-size blocks on worker threads; see the module docs.
pub struct ParGzip<W: Write> {
    inner: W,
    block: Vec<u8>,
    jobs: Option<SyncSender<Job>>,
    done: Receiver<Done>,
    workers: Vec<JoinHandle<()>>,
    /// Blocks finished out of order, waiting for their turn.
    ready: BTreeMap<u64, Done>,
    next_seq: u64,
    next_write: u64,
    in_flight: usize,
    max_in_flight: usize,
    crc: crc32fast::Hasher,
    /// Uncompressed bytes written out so far.
    total: u64,
    spare: Vec<Vec<u8>>,
}

impl<W: Write> ParGzip<W> {
    /// A gzip stream into `inner` at `level` (0 to 9) with `threads` workers (at least one).
    pub fn new(mut inner: W, level: u32, threads: usize) -> io::Result<Self> {
        inner.write_all(&GZIP_HEADER)?;
        let threads = threads.max(1);
        let (jobs, job_rx) = sync_channel::<Job>(threads);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done) = sync_channel::<Done>(2 * threads + 1);
        let workers = (0..threads)
            .map(|_| {
                let job_rx = Arc::clone(&job_rx);
                let done_tx = done_tx.clone();
                std::thread::spawn(move || {
                    let mut deflate = Compress::new(flate2::Compression::new(level), false);
                    loop {
                        let job = match job_rx.lock() {
                            Ok(rx) => match rx.recv() {
                                Ok(job) => job,
                                Err(_) => return,
                            },
                            Err(_) => return,
                        };
                        let output = deflate_block(&mut deflate, &job.input, job.last);
                        let done = Done {
                            seq: job.seq,
                            output,
                            crc: crc32fast::hash(&job.input),
                            len: job.input.len() as u64,
                            input: job.input,
                        };
                        if done_tx.send(done).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        Ok(ParGzip {
            inner,
            block: Vec::with_capacity(BLOCK),
            jobs: Some(jobs),
            done,
            workers,
            ready: BTreeMap::new(),
            next_seq: 0,
            next_write: 0,
            in_flight: 0,
            max_in_flight: 2 * threads,
            crc: crc32fast::Hasher::new(),
            total: 0,
            spare: Vec::new(),
        })
    }

    fn submit(&mut self, last: bool) -> io::Result<()> {
        let next = self
            .spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BLOCK));
        let input = std::mem::replace(&mut self.block, next);
        let job = Job {
            seq: self.next_seq,
            input,
            last,
        };
        self.next_seq += 1;
        self.in_flight += 1;
        self.jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("gzip stream already finished"))?
            .send(job)
            .map_err(|_| io::Error::other("a gzip worker stopped"))?;
        while self.in_flight >= self.max_in_flight {
            self.collect_one()?;
        }
        Ok(())
    }

    /// Wait for one finished block and write out every block that is now next in order.
    fn collect_one(&mut self) -> io::Result<()> {
        let done = self
            .done
            .recv()
            .map_err(|_| io::Error::other("a gzip worker stopped"))?;
        self.in_flight -= 1;
        self.ready.insert(done.seq, done);
        while let Some(done) = self.ready.remove(&self.next_write) {
            let output = done.output?;
            self.inner.write_all(&output)?;
            self.crc
                .combine(&crc32fast::Hasher::new_with_initial_len(done.crc, done.len));
            self.total += done.len;
            self.next_write += 1;
            let mut input = done.input;
            input.clear();
            self.spare.push(input);
        }
        Ok(())
    }

    /// Write the last block and the trailer; return the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.submit(true)?;
        while self.in_flight > 0 {
            self.collect_one()?;
        }
        self.jobs = None;
        for w in self.workers.drain(..) {
            w.join()
                .map_err(|_| io::Error::other("a gzip worker panicked"))?;
        }
        let crc = std::mem::replace(&mut self.crc, crc32fast::Hasher::new());
        self.inner.write_all(&crc.finalize().to_le_bytes())?;
        // ISIZE is the length modulo 2^32 (RFC 1952).
        self.inner.write_all(&(self.total as u32).to_le_bytes())?;
        let mut inner = self.inner;
        inner.flush()?;
        Ok(inner)
    }
}

impl<W: Write> Write for ParGzip<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(BLOCK - self.block.len());
        self.block.extend_from_slice(&data[..n]);
        if self.block.len() == BLOCK {
            self.submit(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Blocks go out when full or at `finish`: flushing early would move block boundaries.
        Ok(())
    }
}

/// Bytes judged at a time for whether deflate's match search is worth running.
const PROBE: usize = 4 << 10;
/// Entropy (bits per byte) above which a probe is stored rather than searched: random or already
/// compressed bytes, which deflate cannot shrink but spends most of its time on.
const STORE_ABOVE_BITS: f64 = 7.5;

/// Deflate one block: ends with a sync flush, or for the last block with the final block
/// marker. Runs of high-entropy probes are written as stored blocks, the rest is deflated from
/// a fresh state; which is which depends on the bytes alone.
fn deflate_block(c: &mut Compress, input: &[u8], last: bool) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() + input.len() / 8 + 64);
    if input.is_empty() {
        deflate_run(c, input, last, &mut out)?;
        return Ok(out);
    }
    let probes: Vec<bool> = input.chunks(PROBE).map(looks_random).collect();
    let mut i = 0;
    while i < probes.len() {
        let stored = probes[i];
        let mut j = i;
        while j < probes.len() && probes[j] == stored {
            j += 1;
        }
        let run = &input[i * PROBE..(j * PROBE).min(input.len())];
        let final_run = last && j == probes.len();
        if stored {
            store(run, final_run, &mut out);
        } else {
            deflate_run(c, run, final_run, &mut out)?;
        }
        i = j;
    }
    Ok(out)
}

/// Deflate `run` from a fresh state, ending with a sync flush, or the final block marker when
/// `final_run`.
fn deflate_run(c: &mut Compress, run: &[u8], final_run: bool, out: &mut Vec<u8>) -> io::Result<()> {
    c.reset();
    let flush = if final_run {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    feed(c, run, out, flush)
}

/// Append `data` as stored deflate blocks (the output is byte-aligned: every run before ends with
/// a sync flush), the last one marked final when `final_run`.
fn store(data: &[u8], final_run: bool, out: &mut Vec<u8>) {
    let pieces = data.chunks(u16::MAX as usize).count();
    for (k, piece) in data.chunks(u16::MAX as usize).enumerate() {
        let is_final = final_run && k + 1 == pieces;
        let len = piece.len() as u16;
        out.push(u8::from(is_final)); // BFINAL, BTYPE 00, padding to the byte boundary
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(piece);
    }
}

/// Give `input` to the compressor with `flush`, growing `out` until all of it is taken and, for
/// a flush, written out.
fn feed(c: &mut Compress, input: &[u8], out: &mut Vec<u8>, flush: FlushCompress) -> io::Result<()> {
    let before = c.total_in();
    loop {
        let consumed = (c.total_in() - before) as usize;
        let status = c
            .compress_vec(&input[consumed..], out, flush)
            .map_err(io::Error::other)?;
        let all_in = (c.total_in() - before) as usize == input.len();
        let room_left = out.len() < out.capacity();
        match (status, flush) {
            (Status::StreamEnd, _) => return Ok(()),
            (_, FlushCompress::Finish) => {}
            (Status::Ok | Status::BufError, _) if all_in && room_left => return Ok(()),
            _ => {}
        }
        out.reserve(out.capacity().max(4096));
    }
}

/// Whether a probe's bytes have the entropy of random data, judged by the collision (order-2
/// Rényi) entropy of its byte histogram: `-log2(sum p^2)`, which needs no logarithm per symbol.
fn looks_random(probe: &[u8]) -> bool {
    if probe.len() < 1024 {
        return false;
    }
    // Four histograms, so that runs of one byte do not wait on a single counter.
    let mut counts = [[0u32; 256]; 4];
    let mut quads = probe.chunks_exact(4);
    for q in &mut quads {
        counts[0][q[0] as usize] += 1;
        counts[1][q[1] as usize] += 1;
        counts[2][q[2] as usize] += 1;
        counts[3][q[3] as usize] += 1;
    }
    for &b in quads.remainder() {
        counts[0][b as usize] += 1;
    }
    let sum_sq: u64 = (0..256)
        .map(|i| {
            let c = u64::from(counts[0][i] + counts[1][i] + counts[2][i] + counts[3][i]);
            c * c
        })
        .sum();
    let n = probe.len() as f64;
    // Random bytes give about 7.9 bits over 4 KiB; text about 4 to 5.
    -(sum_sq as f64 / (n * n)).log2() > STORE_ABOVE_BITS
}

/// A zstd encoder at `level` with `threads` libzstd workers (at least one; see the module docs).
pub fn zstd_encoder<W: Write>(
    inner: W,
    level: i32,
    threads: usize,
) -> io::Result<zstd::stream::write::Encoder<'static, W>> {
    let mut enc = zstd::stream::write::Encoder::new(inner, level)?;
    enc.multithread(threads.max(1) as u32)?;
    Ok(enc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Half random, half repetitive: compresses, but not to nothing.
    fn sample(len: usize) -> Vec<u8> {
        let mut state = 0x9e3779b97f4a7c15u64;
        (0..len)
            .map(|i| {
                if (i / 40_000) % 2 == 0 {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                } else {
                    b"{\"weights\": [0.0, 1.0]}"[i % 23]
                }
            })
            .collect()
    }

    fn gzip(data: &[u8], threads: usize, piece: usize) -> Vec<u8> {
        let mut w = ParGzip::new(Vec::new(), 6, threads).unwrap();
        for chunk in data.chunks(piece.max(1)) {
            w.write_all(chunk).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn gzip_output_does_not_depend_on_threads_or_write_sizes() {
        for len in [0, 1, BLOCK - 1, BLOCK, 3 * BLOCK + 17] {
            let data = sample(len);
            let one = gzip(&data, 1, 1 << 20);
            for (threads, piece) in [(2, 512), (4, 100_000), (8, 3 * BLOCK)] {
                assert_eq!(
                    gzip(&data, threads, piece),
                    one,
                    "len {len}, {threads} threads"
                );
            }
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&one[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "len {len}");
            if len > BLOCK {
                assert!(one.len() < data.len() * 3 / 4, "it compresses");
            }
        }
    }

    #[test]
    fn random_runs_are_stored_and_text_is_deflated() {
        let data = sample(BLOCK);
        assert!(looks_random(&data[..PROBE]));
        assert!(!looks_random(&data[40_000..40_000 + PROBE]));
        let mut c = Compress::new(flate2::Compression::new(6), false);
        let out = deflate_block(&mut c, &data, true).unwrap();
        // About half is random: stored, so a little over half the size; the text nearly vanishes.
        assert!(
            out.len() > data.len() / 2 && out.len() < data.len() * 6 / 10,
            "{}",
            out.len()
        );
        let mut back = Vec::new();
        flate2::read::DeflateDecoder::new(&out[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn gzip_is_read_by_gnu_gzip() {
        let data = sample(2 * BLOCK + 5);
        let gz = gzip(&data, 2, 65536);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.gz");
        std::fs::write(&path, &gz).unwrap();
        let out = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(&path)
            .output()
            .expect("gzip runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, data);
    }

    #[test]
    fn zstd_output_does_not_depend_on_threads() {
        let data = sample(40 << 20);
        let enc = |threads| {
            let mut e = zstd_encoder(Vec::new(), 3, threads).unwrap();
            for chunk in data.chunks(300_000) {
                e.write_all(chunk).unwrap();
            }
            e.finish().unwrap()
        };
        let one = enc(1);
        assert_eq!(enc(2), one);
        assert_eq!(enc(4), one);
        assert_eq!(zstd::stream::decode_all(&one[..]).unwrap(), data);
    }
}
