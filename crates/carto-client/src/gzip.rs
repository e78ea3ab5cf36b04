//! A gzip stream (RFC 1952) written piece by piece, whose deflate level can change between sync flushes.
//!
//! flate2's GzEncoder keeps its compressor to itself; uploads need to change the level as they go (copy_in.rs:
//! hard when the network is the bottleneck, fast when the rows are), so the gzip framing is written here
//! around flate2's raw deflate `Compress`: a 10-byte header, the deflate stream, then CRC-32 and the length
//! modulo 2^32, both little-endian.
//!
//! zlib-rs refuses most level changes in the middle of a stream (deflateParams between its quick, fast and
//! slow modes is a stream error), so a change starts a new raw compressor instead: after a sync flush the
//! stream ends on a byte boundary with only non-final blocks, and the new compressor's blocks simply follow.
//! It is still one deflate stream in one gzip member (no multi-member gzip, which not every server reads);
//! the new compressor only refers back to its own data, so the decoder's window is never exceeded. The cost
//! is the dictionary: the first few kB after a change compress a little worse.

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// The header: magic, deflate, no flags, no mtime, no extra flags, OS unknown.
const HEADER: [u8; 10] = [0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff];

fn gz_error(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// See the module documentation. Output accumulates in a buffer taken with [`Gzip::take`].
pub struct Gzip {
    deflate: Compress,
    crc: Crc,
    out: Vec<u8>,
    level: u32,
    finished: bool,
}

impl Gzip {
    pub fn new(level: u32) -> Self {
        let mut out = Vec::with_capacity(64 * 1024);
        out.extend_from_slice(&HEADER);
        Gzip { deflate: Compress::new(Compression::new(level), false), crc: Crc::new(), out, level, finished: false }
    }

    /// The level in use.
    pub fn level(&self) -> u32 {
        self.level
    }

    /// Compressed bytes so far (not yet taken).
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::replace(&mut self.out, Vec::with_capacity(64 * 1024))
    }

    fn run(&mut self, mut input: &[u8], flush: FlushCompress) -> std::io::Result<Status> {
        loop {
            if self.out.capacity() - self.out.len() < 4096 + input.len() / 2 {
                self.out.reserve(64 * 1024 + input.len() / 2);
            }
            let before = self.deflate.total_in();
            let status = self.deflate.compress_vec(input, &mut self.out, flush).map_err(gz_error)?;
            let used = (self.deflate.total_in() - before) as usize;
            input = &input[used..];
            // Done when the input is used up and the output had room to spare (nothing left pending).
            let room = self.out.capacity() > self.out.len();
            if status == Status::StreamEnd || (input.is_empty() && room) {
                return Ok(status);
            }
        }
    }

    pub fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.crc.update(data);
        self.run(data, FlushCompress::None).map(|_| ())
    }

    /// A sync flush: everything written so far is in the output, which ends on a byte boundary.
    pub fn sync_flush(&mut self) -> std::io::Result<()> {
        self.run(&[], FlushCompress::Sync).map(|_| ())
    }

    /// Changes the level; only right after [`Gzip::sync_flush`] (see the module documentation).
    pub fn set_level(&mut self, level: u32) {
        if level != self.level {
            self.deflate = Compress::new(Compression::new(level), false);
            self.level = level;
        }
    }

    /// Ends the deflate stream and appends the trailer. Idempotent.
    pub fn finish(&mut self) -> std::io::Result<()> {
        if self.finished {
            return Ok(());
        }
        while self.run(&[], FlushCompress::Finish)? != Status::StreamEnd {}
        self.out.extend_from_slice(&self.crc.sum().to_le_bytes());
        self.out.extend_from_slice(&self.crc.amount().to_le_bytes());
        self.finished = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    fn gunzip(b: &[u8]) -> Vec<u8> {
        let mut s = Vec::new();
        flate2::read::GzDecoder::new(b).read_to_end(&mut s).unwrap();
        s
    }

    fn rows(n: usize) -> Vec<u8> {
        (0..n).flat_map(|i| format!("{i}\tname {i}\t{}\n", i * 31 % 1000).into_bytes()).collect()
    }

    #[test]
    fn round_trips_at_every_level() {
        let data = rows(20_000);
        for level in 0..=9 {
            let mut g = Gzip::new(level);
            for c in data.chunks(7_000) {
                g.write(c).unwrap();
            }
            g.finish().unwrap();
            let out = g.take();
            assert_eq!(gunzip(&out), data, "level {level}");
        }
    }

    /// Levels changed at sync flushes, the empty stored block CARTO's keep-alives use, and a final flush:
    /// one valid stream, the same bytes, and other levels really compress differently.
    #[test]
    fn levels_change_between_sync_flushes() {
        let data = rows(50_000);
        let mut g = Gzip::new(2);
        let mut wire = Vec::new();
        for (i, c) in data.chunks(100_000).enumerate() {
            g.write(c).unwrap();
            g.sync_flush().unwrap();
            wire.extend(g.take());
            wire.extend_from_slice(&[0x00, 0x00, 0x00, 0xff, 0xff]);
            g.set_level([1, 6, 0, 2, 9][i % 5]);
        }
        g.finish().unwrap();
        g.finish().unwrap();
        wire.extend(g.take());
        assert_eq!(gunzip(&wire), data);
        // C zlib (gzip(1), as CARTO's Node.js server uses) reads it the same, CRC and length checked.
        let mut child = std::process::Command::new("gzip")
            .arg("-dc")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("gzip(1) is on every machine the tests run on");
        let mut stdin = child.stdin.take().unwrap();
        let input = wire.clone();
        let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input));
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, data);
        let size = |level| {
            let mut g = Gzip::new(level);
            g.write(&data).unwrap();
            g.finish().unwrap();
            g.take().len()
        };
        assert!(size(1) > size(2) && size(0) > data.len(), "{} {} {}", size(0), size(1), size(2));
    }

    #[test]
    fn empty_stream_is_valid() {
        let mut g = Gzip::new(2);
        g.finish().unwrap();
        assert_eq!(gunzip(&g.take()), b"");
    }
}
