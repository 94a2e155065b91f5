// Tests of the WAL decoder against real PostgreSQL 15 segments, with pg_waldump's record list as oracle.
// They must never rely on hand-made WAL for the happy path: only the fixtures, split every way.

use super::*;
use std::io::Read;
use std::sync::OnceLock;

const SEGMENT_SIZE: u64 = 16 << 20;
const FIRST_SEGMENT_LSN: u64 = 0x0100_0000;
/// End of the range pg_waldump listed in records.txt (the README's "end of valid WAL").
const END_OF_ORACLE: u64 = 0x05C6_8588;
/// The segment holds one more valid record after the oracle's range: Standby RUNNING_XACTS at
/// 0/05C68588 (50 bytes, CRC valid), logged after pg_waldump ran. Real end of WAL is after it.
const EXTRA_RECORD: RecordInfo = RecordInfo { start_lsn: 0x05C6_8588, prev_lsn: 0x05C6_8130, total_length: 50, rmid: 8, info: 0x10 };
const END_OF_WAL: u64 = 0x05C6_85C0;
const BIG_RECORD_LSN: u64 = 0x0400_0808;

struct Fixture {
    wal: Vec<u8>,
    records: Vec<RecordInfo>,
}

fn fixture_dir() -> String {
    std::env::var("WAL_FIXTURES_DIR").unwrap_or_else(|_| "/work/shared/fixtures/pg15-wal".to_string())
}

fn parse_lsn(text: &str) -> u64 {
    let (hi, lo) = text.split_once('/').expect("X/X");
    (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
}

fn gunzip(path: &str) -> Vec<u8> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(file).read_to_end(&mut out).unwrap();
    out
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = fixture_dir();
        let mut wal = Vec::with_capacity(5 * SEGMENT_SIZE as usize);
        for n in 1..=5 {
            let segment = gunzip(&format!("{dir}/00000001000000000000000{n}.gz"));
            assert_eq!(segment.len() as u64, SEGMENT_SIZE);
            wal.extend_from_slice(&segment);
        }
        let text = String::from_utf8(gunzip(&format!("{dir}/records.txt.gz"))).unwrap();
        let records = text
            .lines()
            .map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                RecordInfo {
                    start_lsn: parse_lsn(f[0]),
                    prev_lsn: parse_lsn(f[1]),
                    total_length: f[2].parse().unwrap(),
                    rmid: 0,
                    info: 0,
                }
            })
            .collect::<Vec<_>>();
        assert_eq!(records.len(), 122_724);
        Fixture { wal, records }
    })
}

fn decoder(start_lsn: u64, prev_lsn: Option<u64>) -> WalDecoder {
    WalDecoder::new(DecoderOptions { start_lsn, segment_size_bytes: SEGMENT_SIZE, prev_lsn }).unwrap()
}

/// Bytes of the fixture stream from `lsn` on.
fn wal_from(lsn: u64) -> &'static [u8] {
    &fixture().wal[(lsn - FIRST_SEGMENT_LSN) as usize..]
}

/// Feeds `pieces` in order; returns the records, the number counted, and the final stop.
fn run(dec: &mut WalDecoder, pieces: impl IntoIterator<Item = &'static [u8]>) -> (Vec<RecordInfo>, u64, Option<Stop>) {
    let mut records = Vec::new();
    let mut count = 0;
    for piece in pieces {
        let outcome = dec.feed(piece, Some(&mut records));
        count += outcome.record_count;
        if outcome.stop.is_some() {
            return (records, count, outcome.stop);
        }
    }
    (records, count, None)
}

fn assert_matches_oracle(records: &[RecordInfo], oracle: &[RecordInfo]) {
    assert_eq!(records.len(), oracle.len(), "record count");
    for (got, want) in records.iter().zip(oracle) {
        assert_eq!(
            (got.start_lsn, got.prev_lsn, got.total_length),
            (want.start_lsn, want.prev_lsn, want.total_length),
            "record at {}",
            format_lsn(want.start_lsn)
        );
    }
}

/// The oracle's records, then the extra one, then the zero tail.
fn assert_oracle_then_extra(records: &[RecordInfo], oracle: &[RecordInfo]) {
    assert_eq!(records.len(), oracle.len() + 1, "record count");
    assert_matches_oracle(&records[..oracle.len()], oracle);
    assert_eq!(records[oracle.len()], EXTRA_RECORD);
}

fn assert_full_run(dec: &WalDecoder, records: &[RecordInfo], count: u64, stop: Option<Stop>) {
    assert_oracle_then_extra(records, &fixture().records);
    assert_eq!(count, records.len() as u64);
    assert_eq!(dec.end_lsn(), END_OF_WAL, "end {}", format_lsn(dec.end_lsn()));
    let stop = stop.expect("the zero tail stops the decoder");
    assert_eq!(stop.kind(), StopKind::End);
    assert_eq!((stop.code, stop.lsn), (StopCode::ZeroRecord, END_OF_WAL));
    assert!(stop.message.contains("0/05C685C0"), "{}", stop.message);
}

/// Cuts `data` (starting at `base_lsn`) at the given sorted LSNs.
fn cut_at(data: &'static [u8], base_lsn: u64, cuts: impl Iterator<Item = u64>) -> Vec<&'static [u8]> {
    let mut pieces = Vec::new();
    let mut from = 0usize;
    for lsn in cuts {
        let at = (lsn - base_lsn) as usize;
        if at > from && at < data.len() {
            pieces.push(&data[from..at]);
            from = at;
        }
    }
    pieces.push(&data[from..]);
    pieces
}

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn crc32c_check_value() {
    assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    assert_eq!(crc32c::crc32c_append(crc32c::crc32c(b"1234"), b"56789"), 0xE306_9283);
}

#[test]
fn formats_lsn_like_postgres() {
    assert_eq!(format_lsn(0x0400_0808), "0/04000808");
    assert_eq!(format_lsn(0x1_0000_00AB), "1/000000AB");
}

#[test]
fn fixture_page_magic_is_pg15() {
    let wal = &fixture().wal;
    assert_eq!(u16::from_le_bytes([wal[0], wal[1]]), 0xD110);
}

#[test]
fn oracle_range_ends_at_0_05c68588() {
    let mut dec = decoder(FIRST_SEGMENT_LSN, None);
    let data = &wal_from(FIRST_SEGMENT_LSN)[..offset_of(END_OF_ORACLE)];
    let (records, count, stop) = run(&mut dec, [data]);
    assert!(stop.is_none());
    assert_matches_oracle(&records, &fixture().records);
    assert_eq!(count, 122_724);
    assert_eq!(dec.end_lsn(), END_OF_ORACLE);
    assert_eq!(dec.position(), END_OF_ORACLE);
}

#[test]
fn whole_stream_in_one_chunk() {
    let mut dec = decoder(FIRST_SEGMENT_LSN, None);
    let (records, count, stop) = run(&mut dec, [wal_from(FIRST_SEGMENT_LSN)]);
    assert_full_run(&dec, &records, count, stop);
    assert_eq!(dec.last_record_start(), EXTRA_RECORD.start_lsn);
    assert_eq!(dec.position(), END_OF_WAL);
    // XLOG SWITCH then the first record of segment 5.
    let switch = records.iter().find(|r| r.start_lsn == 0x0404_9FB0).unwrap();
    assert_eq!((switch.rmid, switch.info & 0xF0), (0, 0x40));
}

#[test]
fn whole_stream_in_8k_chunks() {
    let mut dec = decoder(FIRST_SEGMENT_LSN, None);
    let (records, count, stop) = run(&mut dec, wal_from(FIRST_SEGMENT_LSN).chunks(8192));
    assert_full_run(&dec, &records, count, stop);
}

#[test]
fn split_around_every_page_boundary() {
    let data = wal_from(FIRST_SEGMENT_LSN);
    let pages = data.len() as u64 / WAL_PAGE_SIZE_BYTES;
    for delta in 1..=30i64 {
        for sign in [-1i64, 1] {
            let cuts = (1..pages).map(|p| (FIRST_SEGMENT_LSN + p * WAL_PAGE_SIZE_BYTES).wrapping_add_signed(sign * delta));
            let mut dec = decoder(FIRST_SEGMENT_LSN, None);
            let (records, count, stop) = run(&mut dec, cut_at(data, FIRST_SEGMENT_LSN, cuts));
            assert_full_run(&dec, &records, count, stop);
        }
    }
}

#[test]
fn random_chunk_sizes() {
    let data = wal_from(FIRST_SEGMENT_LSN);
    for seed in [1u64, 42, 0xDEAD_BEEF] {
        let mut rng = XorShift(seed);
        let mut pieces = Vec::new();
        let mut from = 0usize;
        while from < data.len() {
            let size = match rng.next() % 4 {
                0 => 1 + rng.next() % 8,
                1 => 1 + rng.next() % 100,
                2 => 1 + rng.next() % 20_000,
                _ => 1 + rng.next() % (2 << 20),
            } as usize;
            let to = (from + size).min(data.len());
            pieces.push(&data[from..to]);
            from = to;
        }
        let mut dec = decoder(FIRST_SEGMENT_LSN, None);
        let (records, count, stop) = run(&mut dec, pieces);
        assert_full_run(&dec, &records, count, stop);
    }
}

#[test]
fn byte_by_byte_across_segment_four_switch() {
    // From the big record through XLOG SWITCH into segment 5, one byte at a time.
    let oracle = &fixture().records;
    let first = oracle.iter().position(|r| r.start_lsn == BIG_RECORD_LSN).unwrap();
    let prev = oracle[first - 1].start_lsn;
    let mut dec = decoder(BIG_RECORD_LSN, Some(prev));
    let data = &wal_from(BIG_RECORD_LSN)[..(0x0500_4000 - BIG_RECORD_LSN) as usize];
    let (records, count, stop) = run(&mut dec, data.chunks(1));
    assert!(stop.is_none());
    let want = &oracle[first..];
    assert_matches_oracle(&records, &want[..records.len()]);
    let started = want.iter().take_while(|r| r.start_lsn < 0x0500_4000).count();
    assert!(records.len() <= started && records.len() + 1 >= started);
    assert!(records.iter().any(|r| r.start_lsn == 0x0500_0028));
    assert_eq!(count, records.len() as u64);
}

#[test]
fn starts_at_a_page_inside_a_continued_record() {
    let oracle = &fixture().records;
    let after_big = oracle.iter().position(|r| r.start_lsn > BIG_RECORD_LSN).unwrap();
    assert_eq!(oracle[after_big].start_lsn, 0x0404_9F88);
    for start in [0x0400_2000u64, 0x0402_0000, 0x0404_8000] {
        let mut dec = decoder(start, None);
        assert_eq!(dec.end_lsn(), start);
        let (records, count, stop) = run(&mut dec, wal_from(start).chunks(5000));
        assert_oracle_then_extra(&records, &oracle[after_big..]);
        assert_eq!(count, records.len() as u64);
        assert_eq!(stop.unwrap().lsn, END_OF_WAL);
        assert_eq!(dec.end_lsn(), END_OF_WAL);
    }
    // With prevLsn given, the first record's xl_prev is checked.
    let mut dec = decoder(0x0400_2000, Some(BIG_RECORD_LSN));
    let (records, _, _) = run(&mut dec, [wal_from(0x0400_2000)]);
    assert_eq!(records.len(), oracle.len() - after_big + 1);
    let mut dec = decoder(0x0400_2000, Some(BIG_RECORD_LSN + 8));
    let (records, _, stop) = run(&mut dec, [wal_from(0x0400_2000)]);
    assert!(records.is_empty());
    let stop = stop.unwrap();
    assert_eq!((stop.code, stop.lsn), (StopCode::BadPrevLink, 0x0404_9F88));
    assert!(stop.message.contains("0/04049F88") && stop.message.contains("0/04000808"), "{}", stop.message);
}

#[test]
fn starts_at_a_segment_start_after_switch_and_at_a_record_start() {
    let oracle = &fixture().records;
    let seg5 = oracle.iter().position(|r| r.start_lsn >= 0x0500_0000).unwrap();
    let mut dec = decoder(0x0500_0000, None);
    let (records, _, stop) = run(&mut dec, [wal_from(0x0500_0000)]);
    assert_oracle_then_extra(&records, &oracle[seg5..]);
    assert_eq!(stop.unwrap().lsn, END_OF_WAL);

    let k = 1000;
    let mut dec = decoder(oracle[k].start_lsn, Some(oracle[k - 1].start_lsn));
    assert_eq!(dec.last_record_start(), oracle[k - 1].start_lsn);
    let (records, _, _) = run(&mut dec, wal_from(oracle[k].start_lsn).chunks(777));
    assert_oracle_then_extra(&records, &oracle[k..]);

    let mut dec = decoder(oracle[k].start_lsn, Some(oracle[k - 2].start_lsn));
    let (_, _, stop) = run(&mut dec, [wal_from(oracle[k].start_lsn)]);
    assert_eq!(stop.unwrap().code, StopCode::BadPrevLink);
}

#[test]
fn rejects_bad_start_positions() {
    let new = |start_lsn, segment_size_bytes| WalDecoder::new(DecoderOptions { start_lsn, segment_size_bytes, prev_lsn: None });
    assert!(new(0x0100_0004, SEGMENT_SIZE).is_err());
    assert!(new(0x0100_0020, SEGMENT_SIZE).is_err(), "inside the long header");
    assert!(new(0x0100_2010, SEGMENT_SIZE).is_err(), "inside a short header");
    assert!(new(0x0100_2018, SEGMENT_SIZE).is_ok());
    assert!(new(0x0100_0000, 3 << 20).is_err());
}

/// A copy of the fixture from `lsn` on, with `edit` applied (offsets relative to `lsn`).
fn edited_from(lsn: u64, edit: impl FnOnce(&mut Vec<u8>)) -> &'static [u8] {
    let mut data = wal_from(lsn).to_vec();
    edit(&mut data);
    Box::leak(data.into_boxed_slice())
}

fn run_edited(edit: impl FnOnce(&mut Vec<u8>), chunk: usize) -> (Vec<RecordInfo>, WalDecoder, Stop) {
    let data = edited_from(FIRST_SEGMENT_LSN, edit);
    let mut dec = decoder(FIRST_SEGMENT_LSN, None);
    let (records, _, stop) = run(&mut dec, data.chunks(chunk));
    (records, dec, stop.expect("stops"))
}

fn offset_of(lsn: u64) -> usize {
    (lsn - FIRST_SEGMENT_LSN) as usize
}

#[test]
fn flipped_body_byte_is_bad_crc() {
    let oracle = &fixture().records;
    let victim = oracle.iter().position(|r| r.start_lsn == BIG_RECORD_LSN).unwrap();
    for (record, at) in [(500usize, 30usize), (victim, 150_000)] {
        let r = oracle[record];
        for chunk in [1 << 30, 4096, 13] {
            let (records, dec, stop) = run_edited(|d| d[offset_of(r.start_lsn) + at] ^= 0x10, chunk);
            assert_eq!((stop.kind(), stop.code, stop.lsn), (StopKind::Error, StopCode::BadCrc, r.start_lsn));
            assert!(stop.message.contains(&format_lsn(r.start_lsn)), "{}", stop.message);
            assert_eq!(records.len(), record);
            assert_eq!(dec.end_lsn(), (oracle[record - 1].start_lsn + u64::from(oracle[record - 1].total_length) + 7) & !7);
            assert_eq!(dec.position(), r.start_lsn);
        }
    }
}

#[test]
fn corrupt_prev_link() {
    let r = fixture().records[700];
    let (records, _, stop) = run_edited(|d| d[offset_of(r.start_lsn) + 8] ^= 0x08, 1 << 30);
    assert_eq!((stop.code, stop.lsn), (StopCode::BadPrevLink, r.start_lsn));
    assert_eq!(records.len(), 700);
    assert!(stop.message.contains("got") && stop.message.contains("expected"), "{}", stop.message);
}

#[test]
fn corrupt_page_headers() {
    let page = 0x0200_6000u64;
    let o = offset_of(page);
    type Edit = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(Edit, StopCode)> = vec![
        (Box::new(move |d: &mut Vec<u8>| d[o] = 0x11), StopCode::BadPageMagic),
        (Box::new(move |d: &mut Vec<u8>| d[o + 9] ^= 0x01), StopCode::BadPageAddress),
        (Box::new(move |d: &mut Vec<u8>| d[o + 2] ^= XLP_LONG_HEADER as u8), StopCode::BadPageFlags),
        (Box::new(move |d: &mut Vec<u8>| d[o + 2] |= 0x40), StopCode::BadPageFlags),
        (Box::new(move |d: &mut Vec<u8>| d[o + 2] ^= XLP_FIRST_IS_CONTRECORD as u8), StopCode::BadPageFlags),
        (Box::new(move |d: &mut Vec<u8>| d[o + 16] ^= 0x01), StopCode::BadRemLen),
        (Box::new(move |d: &mut Vec<u8>| d[o..o + 8192].fill(0)), StopCode::ZeroPage),
    ];
    for (edit, code) in cases {
        for chunk in [1 << 30, 10, 8191] {
            let (_, dec, stop) = run_edited(&edit, chunk);
            assert_eq!((stop.code, stop.lsn), (code, page), "{}", stop.message);
            assert!(stop.message.contains("0/02006000"), "{}", stop.message);
            assert_eq!(dec.stop().map(|s| s.code), Some(code));
        }
    }
    let seg = offset_of(0x0300_0000);
    for (at, value) in [(32usize, 0x01u8), (36, 0x01), (2, 0x00), (24, 0x01)] {
        let (_, _, stop) = run_edited(|d| d[seg + at] ^= if value == 0 { XLP_LONG_HEADER as u8 } else { value }, 1 << 30);
        assert_eq!((stop.code, stop.lsn), (StopCode::BadLongHeader, 0x0300_0000), "{}", stop.message);
    }
}

#[test]
fn bad_and_zero_record_lengths() {
    let r = fixture().records[900];
    let (_, _, stop) = run_edited(|d| d[offset_of(r.start_lsn)..][..4].copy_from_slice(&10u32.to_le_bytes()), 1 << 30);
    assert_eq!((stop.code, stop.lsn), (StopCode::BadRecordLength, r.start_lsn));
    let (_, _, stop) = run_edited(|d| d[offset_of(r.start_lsn)..][..4].copy_from_slice(&u32::MAX.to_le_bytes()), 1 << 30);
    assert_eq!(stop.code, StopCode::BadRecordLength);
    // A zero tail from a record start is the clean end of WAL.
    let (records, dec, stop) = run_edited(|d| d[offset_of(r.start_lsn)..].fill(0), 1 << 30);
    assert_eq!((stop.kind(), stop.code, stop.lsn), (StopKind::End, StopCode::ZeroRecord, r.start_lsn));
    assert_eq!(records.len(), 900);
    assert_eq!(dec.end_lsn(), r.start_lsn);
}

#[test]
fn stopped_decoder_stays_stopped() {
    let mut dec = decoder(END_OF_WAL, None);
    let outcome = dec.feed(&[0u8; 64], None);
    let stop = outcome.stop.unwrap();
    assert_eq!(stop.code, StopCode::ZeroRecord);
    let again = dec.feed(wal_from(FIRST_SEGMENT_LSN), None);
    assert_eq!(again, FeedOutcome { record_count: 0, stop: Some(stop.clone()) });
    assert_eq!(dec.feed_atomic(&[b"x"], None).stop, Some(stop));
    assert_eq!(dec.position(), END_OF_WAL);
}

#[test]
fn feed_atomic_rolls_back_and_accepts_the_good_continuation() {
    let oracle = &fixture().records;
    let good = wal_from(FIRST_SEGMENT_LSN);
    let split = 3 * 8192 + 100;
    let r = oracle.iter().find(|r| r.start_lsn > FIRST_SEGMENT_LSN + split as u64 + 64).unwrap();
    let bad = edited_from(FIRST_SEGMENT_LSN, |d| d[offset_of(r.start_lsn) + 30] ^= 1);

    let mut dec = decoder(FIRST_SEGMENT_LSN, None);
    let mut records = Vec::new();
    let first = dec.feed_atomic(&[&good[..split]], Some(&mut records));
    assert!(first.stop.is_none());
    let (end, pos, n) = (dec.end_lsn(), dec.position(), records.len());
    assert_eq!(pos, FIRST_SEGMENT_LSN + split as u64);

    let rejected = dec.feed_atomic(&[&bad[split..split + 1000], &bad[split + 1000..split + 100_000]], Some(&mut records));
    assert_eq!(rejected.record_count, 0);
    assert_eq!(rejected.stop.as_ref().map(|s| (s.code, s.lsn)), Some((StopCode::BadCrc, r.start_lsn)));
    assert_eq!((dec.end_lsn(), dec.position(), records.len()), (end, pos, n));
    assert!(dec.stop().is_none(), "a rolled-back decoder is not stopped");
    assert_eq!(dec.last_stop().map(|s| s.code), Some(StopCode::BadCrc));

    let accepted = dec.feed_atomic(&[&good[split..split + 100_000]], Some(&mut records));
    assert!(accepted.stop.is_none());
    assert!(dec.last_stop().is_none());
    let rest = dec.feed(&good[split + 100_000..], Some(&mut records));
    assert_eq!(rest.stop.unwrap().lsn, END_OF_WAL);
    assert_oracle_then_extra(&records, oracle);

    // A chunk that runs into the zero tail is rejected whole, too.
    let mut dec = decoder(EXTRA_RECORD.start_lsn, Some(EXTRA_RECORD.prev_lsn));
    let tail = wal_from(EXTRA_RECORD.start_lsn);
    let outcome = dec.feed_atomic(&[&tail[..2000]], None);
    assert_eq!(outcome.stop.map(|s| s.kind()), Some(StopKind::End));
    assert_eq!(dec.end_lsn(), EXTRA_RECORD.start_lsn);
    assert!(dec.feed_atomic(&[&tail[..50]], None).stop.is_none());
    assert_eq!(dec.end_lsn(), END_OF_WAL);
}

/// Throughput check, not a correctness test: `cargo test --release --lib decoder_throughput -- --ignored --nocapture`.
/// Validating one 8 KiB page of segment 1 should cost ~2x a plain CRC-32C of it (about 1.5 us here).
#[test]
#[ignore]
fn decoder_throughput_8k_pages() {
    let wal = &fixture().wal[..SEGMENT_SIZE as usize];
    let pages = wal.len() / 8192;
    for _ in 0..3 {
        let mut dec = decoder(FIRST_SEGMENT_LSN, None);
        let t = std::time::Instant::now();
        for page in wal.chunks(8192) {
            assert!(dec.feed_atomic(&[page], None).stop.is_none());
        }
        let atomic = t.elapsed().as_nanos() as f64 / pages as f64;
        let t = std::time::Instant::now();
        let crc = wal.chunks(8192).fold(0, crc32c::crc32c_append);
        let crc_only = t.elapsed().as_nanos() as f64 / pages as f64;
        println!("feed_atomic {atomic:.0} ns per 8 KiB page, crc32c alone {crc_only:.0} ns ({crc:08x})");
    }
}
