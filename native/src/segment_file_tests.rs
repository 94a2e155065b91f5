// Tests of SegmentFile against an in-memory model of the file: O_DIRECT and buffered, sequential and
// random-offset writes, zeroing, reopening. They must never leave files behind in the temp directory.

use super::*;
use crate::wal_decoder::{DecoderOptions, StopCode};
use std::io::Read;

struct Scratch(PathBuf);
impl Scratch {
    fn new(name: &str) -> Scratch {
        Scratch::new_in(&std::env::temp_dir(), name)
    }
    fn new_in(base: &Path, name: &str) -> Scratch {
        let dir = base.join(format!("sk-segment-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

const SIZE: u64 = 1 << 20;

/// Splits `data` into 1..4 chunks at random points.
fn chunked<'a>(rng: &mut XorShift, data: &'a [u8]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = (0..rng.below(4)).map(|_| rng.below(data.len() as u64 + 1) as usize).collect();
    cuts.sort();
    let mut out = Vec::new();
    let mut from = 0;
    for c in cuts {
        out.push(&data[from..c]);
        from = c;
    }
    out.push(&data[from..]);
    out
}

fn check_against_model(file: &mut SegmentFile, model: &[u8]) {
    assert_eq!(file.read(0, SIZE).unwrap(), model);
    assert_eq!(std::fs::read(file.path()).unwrap(), model, "on disk");
}

fn exercise(mode: DirectMode, base: Option<&Path>, seed: u64) -> bool {
    let scratch = match base {
        Some(b) => Scratch::new_in(b, "model"),
        None => Scratch::new("model"),
    };
    let path = scratch.0.join("000000010000000000000001");
    let mut file = SegmentFile::open(&path, SIZE, true, mode).unwrap();
    let direct = file.is_direct();
    let mut model = vec![0u8; SIZE as usize];
    let mut rng = XorShift(seed);
    check_against_model(&mut file, &model);

    // Sequential appends of odd sizes, as the WAL path does.
    let mut at = 0u64;
    for i in 0..200 {
        let len = 1 + rng.below(if i % 10 == 0 { 40_000 } else { 700 }) as usize;
        let data = rng.bytes(len);
        file.write(at, &chunked(&mut rng, &data), i % 50 == 0).unwrap();
        model[at as usize..at as usize + len].copy_from_slice(&data);
        at += len as u64;
    }
    check_against_model(&mut file, &model);

    // Random offsets, including overlaps and rewrites of earlier data.
    for _ in 0..300 {
        let offset = rng.below(SIZE);
        let len = rng.below((SIZE - offset).min(20_000)) as usize;
        let data = rng.bytes(len);
        file.write(offset, &chunked(&mut rng, &data), false).unwrap();
        model[offset as usize..offset as usize + len].copy_from_slice(&data);
        if rng.below(10) == 0 {
            let from = rng.below(SIZE);
            let to = from + rng.below(SIZE - from + 1);
            file.zero(from, to, false).unwrap();
            model[from as usize..to as usize].fill(0);
        }
        let r_off = rng.below(SIZE);
        let r_len = rng.below(9000);
        let got = file.read(r_off, r_len).unwrap();
        let want_end = (r_off + r_len).min(SIZE) as usize;
        assert_eq!(got, &model[r_off as usize..want_end]);
    }
    file.sync().unwrap();
    check_against_model(&mut file, &model);
    file.close();

    // Reopened, nothing is known about the contents: partial blocks are read from disk first.
    let mut file = SegmentFile::open(&path, SIZE, false, mode).unwrap();
    for _ in 0..100 {
        let offset = rng.below(SIZE);
        let len = rng.below((SIZE - offset).min(10_000)) as usize;
        let data = rng.bytes(len);
        file.write(offset, &[&data], false).unwrap();
        model[offset as usize..offset as usize + len].copy_from_slice(&data);
    }
    // Truncate a tail, then append after it.
    file.zero(300_001, SIZE, true).unwrap();
    model[300_001..].fill(0);
    let data = rng.bytes(5000);
    file.write(300_001, &[&data[..1], &data[1..]], true).unwrap();
    model[300_001..305_001].copy_from_slice(&data);
    check_against_model(&mut file, &model);
    direct
}

#[test]
fn direct_writes_match_the_model() {
    assert!(exercise(DirectMode::On, None, 7), "the temp directory is expected to take O_DIRECT");
}

#[test]
fn buffered_writes_match_the_model() {
    assert!(!exercise(DirectMode::Off, None, 8));
}

#[test]
fn tmpfs_auto_falls_back_or_works() {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        exercise(DirectMode::Auto, Some(shm), 9);
    }
}

#[test]
fn argument_and_state_errors() {
    let scratch = Scratch::new("errors");
    let path = scratch.0.join("seg");
    let err = SegmentFile::open(&path, SIZE, false, DirectMode::Auto).err().unwrap();
    assert_eq!(err.code, ErrorCode::Io);
    assert!(err.message.contains("seg") && err.message.contains("No such file"), "{}", err.message);
    let mut file = SegmentFile::open(&path, SIZE, true, DirectMode::Auto).unwrap();
    assert_eq!(SegmentFile::open(&path, SIZE, true, DirectMode::Auto).err().unwrap().code, ErrorCode::Io);
    assert_eq!(SegmentFile::open(&path, SIZE * 2, false, DirectMode::Auto).err().unwrap().code, ErrorCode::Io);
    assert_eq!(file.write(SIZE - 1, &[b"ab"], false).unwrap_err().code, ErrorCode::InvalidArgument);
    assert_eq!(file.zero(10, 5, false).unwrap_err().code, ErrorCode::InvalidArgument);
    assert_eq!(file.read(SIZE + 1, 1).unwrap_err().code, ErrorCode::InvalidArgument);
    assert_eq!(file.read(SIZE - 3, 100).unwrap().len(), 3);
    file.write(SIZE - 2, &[b"ab"], true).unwrap();
    file.close();
    assert_eq!(file.write(0, &[b"x"], false).unwrap_err().code, ErrorCode::Io);
    assert_eq!(file.sync().unwrap_err().code, ErrorCode::Io);
}

fn first_wal_bytes(n: usize) -> Vec<u8> {
    let dir = std::env::var("WAL_FIXTURES_DIR").unwrap_or_else(|_| "/work/shared/fixtures/pg15-wal".to_string());
    let gz = std::fs::File::open(format!("{dir}/000000010000000000000001.gz")).unwrap();
    let mut out = vec![0u8; n];
    flate2::read::GzDecoder::new(gz).read_exact(&mut out).unwrap();
    out
}

#[test]
fn decoder_rejection_writes_nothing() {
    let scratch = Scratch::new("decoder");
    let path = scratch.0.join("000000010000000000000001");
    let mut file = SegmentFile::open(&path, 16 << 20, true, DirectMode::Auto).unwrap();
    let decoder = Mutex::new(
        WalDecoder::new(DecoderOptions { start_lsn: 0x0100_0000, segment_size_bytes: 16 << 20, prev_lsn: None }).unwrap(),
    );
    let wal = first_wal_bytes(64 << 10);
    let end = file.write_validated(0, &[&wal[..10_000], &wal[10_000..30_001]], false, Some(&decoder)).unwrap().unwrap();
    assert!(end > 0x0100_0000 && end <= 0x0100_0000 + 30_001);

    let mut bad = wal[30_001..64 << 10].to_vec();
    bad[20_000] ^= 0xFF;
    let err = file.write_validated(30_001, &[&bad], true, Some(&decoder)).unwrap_err();
    assert_eq!(err.code, ErrorCode::WalInvalid);
    let stop = err.wal_stop.clone().unwrap();
    assert!(err.message.contains(&crate::wal_decoder::format_lsn(stop.lsn)), "{}", err.message);
    assert!(matches!(stop.code, StopCode::BadCrc | StopCode::BadRecordLength | StopCode::BadPrevLink), "{:?}", stop);
    let on_disk = std::fs::read(&path).unwrap();
    assert_eq!(&on_disk[..30_001], &wal[..30_001]);
    assert!(on_disk[30_001..].iter().all(|&b| b == 0), "nothing written after the rejection");
    let dec = decoder.lock().unwrap();
    assert_eq!(dec.end_lsn(), end);
    assert_eq!(dec.last_stop().map(|s| s.lsn), Some(stop.lsn));
    drop(dec);

    let end2 = file.write_validated(30_001, &[&wal[30_001..]], true, Some(&decoder)).unwrap().unwrap();
    assert!(end2 > end);
    assert_eq!(&std::fs::read(&path).unwrap()[..64 << 10], &wal[..]);
}
