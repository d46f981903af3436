//! Property tests of the parsers of outside input that image reads go through: tar headers and
//! PAX records (layer listings) and JSON documents (indexes, manifests, configs). On any input
//! they return a value or an error, never panic, and allocate no more than the input justifies,
//! whatever sizes it declares: allocations are counted per thread by the allocator below.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{self, Cursor, Read, Seek, SeekFrom};

use modelcar::image::{self, Document};
use modelcar::rootfs::read_listing;
use proptest::prelude::*;

/// The system allocator, counting the bytes each thread holds and the most it held.
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note(delta: isize) {
    // `try_with`: allocations also happen while a thread's locals are torn down.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        note(-(layout.size() as isize));
    }
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, layout, size) };
        if !q.is_null() {
            note(size as isize - layout.size() as isize);
        }
        q
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The most bytes reading `bytes` as every kind of image document held at once (the results,
/// errors or values, are dropped: only that it returns and how much it held matter).
fn peak_of_parsing_documents(bytes: &[u8]) -> usize {
    let (_, peak) = peak_of(|| {
        let _ = image::parse_index(bytes, "doc");
        let _ = image::parse_manifest(bytes, "doc");
        let _ = image::parse_config(bytes, "doc");
        let _ = Document::sniff(bytes);
    });
    peak
}

/// The most bytes `f` held at once beyond what this thread held before it.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(before));
    let out = f();
    let peak = PEAK.with(Cell::get);
    (out, (peak - before).max(0) as usize)
}

/// `head`, then zeros without end; skipping forward costs nothing, as in a sparse file.
struct ThenZeros {
    head: Vec<u8>,
    pos: u64,
}

impl Read for ThenZeros {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(64 << 10);
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = usize::try_from(self.pos)
                .ok()
                .and_then(|p| self.head.get(p + i))
                .copied()
                .unwrap_or(0);
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for ThenZeros {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        match pos {
            SeekFrom::Current(n) if n >= 0 => {
                self.pos = self.pos.saturating_add(n as u64);
                Ok(self.pos)
            }
            _ => Err(io::ErrorKind::Unsupported.into()),
        }
    }
}

/// A header block of type `kind` announcing `size` bytes, with `path`; `extended` sets the
/// GNU "sparse map continues" flag.
fn header(kind: u8, size: u64, path: &[u8], extended: bool) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_size(size);
    h.set_mode(0o644);
    let name = &mut h.as_old_mut().name;
    let n = path.len().min(name.len());
    name[..n].copy_from_slice(&path[..n]);
    if let Some(gnu) = h.as_gnu_mut() {
        gnu.isextended[0] = u8::from(extended);
    }
    h.set_cksum();
    h.as_bytes().to_vec()
}

/// PAX records `LEN key=value\n`, their lengths right or wrong.
fn pax_records() -> impl Strategy<Value = Vec<u8>> {
    let key = prop_oneof![
        Just("path".to_string()),
        Just("linkpath".to_string()),
        Just("size".to_string()),
        Just("uid".to_string()),
        Just("gid".to_string()),
        "[a-z.]{0,12}",
    ];
    let value = prop_oneof![
        "[0-9]{0,25}",
        "[ -~]{0,40}",
        (0usize..6000).prop_map(|n| "p".repeat(n)),
    ];
    let record = (key, value, any::<bool>(), any::<u32>()).prop_map(|(k, v, honest, lie)| {
        let body = format!(" {k}={v}\n");
        let mut len = body.len() + 1;
        while format!("{len}{body}").len() != len {
            len += 1;
        }
        let len = if honest { len as u64 } else { u64::from(lie) };
        format!("{len}{body}").into_bytes()
    });
    prop::collection::vec(record, 0..4).prop_map(|r| r.concat())
}

fn kinds() -> impl Strategy<Value = u8> {
    prop_oneof![
        Just(b'0'),
        Just(b'1'),
        Just(b'2'),
        Just(b'5'),
        Just(b'x'),
        Just(b'g'),
        Just(b'L'),
        Just(b'K'),
        Just(b'S'),
        any::<u8>(),
    ]
}

fn sizes() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..2048, any::<u64>(), Just(u64::MAX), Just(1 << 40)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Bytes of any kind: an error or a listing, in memory proportional to the input.
    #[test]
    fn listing_any_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let len = bytes.len();
        let (_, peak) = peak_of(|| read_listing(Cursor::new(bytes)));
        prop_assert!(peak <= (64 << 10) + 16 * len, "{peak} bytes for {len} of input");
    }

    /// Well-formed headers declaring any sizes, of any type, with any PAX records before them,
    /// over a stream that never ends: the listing ends, within a fixed allocation, whatever the
    /// sizes say.
    #[test]
    fn listing_never_trusts_declared_sizes(
        kind in kinds(),
        size in sizes(),
        path in prop::collection::vec(any::<u8>(), 0..100),
        extended in any::<bool>(),
        records in pax_records(),
        pax_size_lie in prop::option::of(sizes()),
    ) {
        let mut head = Vec::new();
        if !records.is_empty() {
            let declared = pax_size_lie.unwrap_or(records.len() as u64);
            head.extend(header(b'x', declared, b"pax", false));
            head.extend(&records);
            head.resize(head.len().next_multiple_of(512), 0);
        }
        head.extend(header(kind, size, &path, extended));
        let (_, peak) = peak_of(|| read_listing(ThenZeros { head, pos: 0 }));
        prop_assert!(peak <= 1 << 20, "{peak} bytes allocated");
    }

    /// Bytes of any kind as every image document: an error or a value, in memory proportional
    /// to the input.
    #[test]
    fn documents_from_any_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let len = bytes.len();
        let peak = peak_of_parsing_documents(&bytes);
        prop_assert!(peak <= (64 << 10) + 64 * len, "{peak} bytes for {len} of input");
    }

    /// JSON of any shape, with the fields of documents in places: the same.
    #[test]
    fn documents_from_any_json_never_panic(value in json_values()) {
        let bytes = serde_json::to_vec(&value).unwrap();
        let len = bytes.len();
        let peak = peak_of_parsing_documents(&bytes);
        prop_assert!(peak <= (64 << 10) + 64 * len, "{peak} bytes for {len} of input");
    }
}

/// JSON values built from the words of image documents.
fn json_values() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let word = prop_oneof![
        Just("schemaVersion".to_string()),
        Just("mediaType".to_string()),
        Just("manifests".to_string()),
        Just("layers".to_string()),
        Just("config".to_string()),
        Just("digest".to_string()),
        Just("size".to_string()),
        Just("annotations".to_string()),
        Just("platform".to_string()),
        Just("Labels".to_string()),
        Just("application/vnd.oci.image.index.v1+json".to_string()),
        Just("application/vnd.oci.image.manifest.v1+json".to_string()),
        Just(format!("sha256:{}", "a".repeat(64))),
        "[ -~]{0,16}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        word.clone().prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
            prop::collection::btree_map(word.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn json_nested_beyond_any_stack_is_an_error() {
    for open in ["[", "{\"a\":"] {
        let bytes = open.repeat(1_000_000).into_bytes();
        assert!(image::parse_index(&bytes, "doc").is_err());
        assert!(image::parse_config(&bytes, "doc").is_err());
        assert!(Document::sniff(&bytes).is_err());
    }
}

#[test]
fn a_pax_header_declaring_a_gigabyte_is_refused_unread() {
    let mut head = header(b'x', 1 << 30, b"pax", false);
    head.extend(header(b'0', 0, b"file", false));
    let (result, peak) = peak_of(|| read_listing(ThenZeros { head, pos: 0 }));
    let err = result.unwrap_err().to_string();
    assert!(err.contains("PAX or long-name header"), "{err}");
    assert!(peak < 1 << 20, "{peak} bytes allocated");
}

#[test]
fn the_allocation_counter_sees_what_is_held() {
    let (v, peak) = peak_of(|| vec![1u8; 1 << 20]);
    assert!(peak >= 1 << 20, "{peak}");
    drop(v);
}
