//! The one reader of bar files: the `csv` crate's byte records over bytes in
//! memory, with the file's own line numbers. Both front ends build on it: the
//! normalised-file parser here ([`crate::bar::parse_csv`]) and grodt-data's
//! importer with its column mapping, time formats and scales.
//!
//! A record is reused from row to row and cells are read as byte slices, so a
//! row costs no allocation; fixed-point values come straight from the bytes
//! ([`crate::fixed::parse_written`]).

pub use csv::ByteRecord;

use crate::CoreError;

/// Byte offset just after the first `n` lines of `bytes` (all of it if shorter).
pub fn skip_lines(bytes: &[u8], n: usize) -> &[u8] {
    let mut rest = bytes;
    for _ in 0..n {
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => rest = &rest[i + 1..],
            None => return &rest[rest.len()..],
        }
    }
    rest
}

/// The first line of `bytes` holding more than blanks, without its line end.
pub fn first_nonblank_line(bytes: &[u8]) -> Option<&[u8]> {
    bytes
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .find(|l| !l.trim_ascii().is_empty())
}

/// The candidate among `,` tab `;` `|` that splits `line` into the most fields
/// outside quotes; ties go to the earlier candidate. `None` if none splits it.
pub fn detect_delimiter(line: &[u8]) -> Option<u8> {
    let mut best: Option<(u8, usize)> = None;
    let mut record = ByteRecord::new();
    for d in [b',', b'\t', b';', b'|'] {
        let mut r = builder(d).from_reader(line);
        let n = match r.read_byte_record(&mut record) {
            Ok(true) => record.len().saturating_sub(1),
            _ => 0,
        };
        if n > 0 && best.is_none_or(|(_, m)| n > m) {
            best = Some((d, n));
        }
    }
    best.map(|(d, _)| d)
}

fn builder(delimiter: u8) -> csv::ReaderBuilder {
    let mut b = csv::ReaderBuilder::new();
    // Headers, ragged rows and blanks are the front ends' business: they name the line.
    b.has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .buffer_capacity(1 << 16);
    b
}

/// Records of a delimited file in memory, each with its 1-based line number in
/// the whole file. Lines with nothing but blanks are skipped.
pub struct Records<'a> {
    reader: csv::Reader<&'a [u8]>,
    record: ByteRecord,
    data: &'a [u8],
    /// Line number at byte `counted_to` of `data` (1-based in the whole file).
    line: u64,
    counted_to: usize,
}

impl<'a> Records<'a> {
    /// Reads `bytes` after its first `skip` lines, split at `delimiter`.
    pub fn new(bytes: &'a [u8], delimiter: u8, skip: usize) -> Self {
        let data = skip_lines(bytes, skip);
        Self {
            reader: builder(delimiter).from_reader(data),
            record: ByteRecord::new(),
            data,
            line: skip as u64 + 1,
            counted_to: 0,
        }
    }

    /// Reads `bytes`, a tail of a file cut just after a line end, whose first
    /// byte begins line `first_line` of the whole file: so that two halves of
    /// one file read on two threads number their lines as one reader would.
    pub fn starting_at(bytes: &'a [u8], delimiter: u8, first_line: u64) -> Self {
        Self {
            reader: builder(delimiter).from_reader(bytes),
            record: ByteRecord::new(),
            data: bytes,
            line: first_line,
            counted_to: 0,
        }
    }

    /// Line number of the record starting at byte `start`. The tokenizer's own
    /// line count skips blank lines, so lines are counted here, incrementally
    /// (each byte once over the whole file); line ends before the record's
    /// first byte belong to blank lines it skipped.
    fn line_at(&mut self, start: usize) -> u64 {
        let mut start = start.min(self.data.len());
        while start < self.data.len() && matches!(self.data[start], b'\r' | b'\n') {
            start += 1;
        }
        if start > self.counted_to {
            let newlines = self.data[self.counted_to..start]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            self.line += newlines as u64;
            self.counted_to = start;
        }
        self.line
    }

    /// The next record and its line number, `None` at the end.
    ///
    /// # Errors
    /// [`CoreError::Row`] naming the line if the tokenizer fails (it cannot on
    /// bytes in memory with flexible rows; kept so a change there is not silent).
    pub fn next_record(&mut self) -> Result<Option<(u64, &ByteRecord)>, CoreError> {
        loop {
            match self.reader.read_byte_record(&mut self.record) {
                Ok(false) => return Ok(None),
                Ok(true) => {}
                Err(e) => {
                    let start = e.position().map_or(0, |p| p.byte());
                    let row = self.line_at(usize::try_from(start).unwrap_or(usize::MAX));
                    return Err(CoreError::Row {
                        row: usize::try_from(row).unwrap_or(usize::MAX),
                        column: "*",
                        reason: e.to_string(),
                    });
                }
            }
            let blank = self.record.len() == 1 && self.record[0].trim_ascii().is_empty();
            if !blank {
                let start = self.record.position().map_or(0, |p| p.byte());
                let line = self.line_at(usize::try_from(start).unwrap_or(usize::MAX));
                return Ok(Some((line, &self.record)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(bytes: &[u8], d: u8, skip: usize) -> Vec<(u64, Vec<String>)> {
        drain(Records::new(bytes, d, skip))
    }

    fn drain(mut r: Records<'_>) -> Vec<(u64, Vec<String>)> {
        let mut out = Vec::new();
        while let Some((line, rec)) = r.next_record().unwrap() {
            let cells = rec
                .iter()
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect();
            out.push((line, cells));
        }
        out
    }

    #[test]
    fn numbers_lines_of_the_whole_file_and_skips_blanks() {
        let text = b"banner, with \"a quote\nh1,h2\r\n\n  \na,\"b,c\"\r\nd,\"e \"\"q\"\"\",f\n";
        let got = all(text, b',', 1);
        assert_eq!(
            got,
            vec![
                (2, vec!["h1".into(), "h2".into()]),
                (5, vec!["a".into(), "b,c".into()]),
                (6, vec!["d".into(), "e \"q\"".into(), "f".into()]),
            ]
        );
        assert!(all(b"only\n", b',', 3).is_empty());
    }

    #[test]
    fn a_tail_read_from_a_line_end_numbers_lines_as_the_whole_file_does() {
        let text = b"h1,h2\n1,2\n\n3,4\r\n5,6\n\n\n7,8\n";
        let whole = all(text, b',', 0);
        for cut in 1..text.len() {
            if text[cut - 1] != b'\n' {
                continue;
            }
            let mut parts = all(&text[..cut], b',', 0);
            let first_line = 1 + text[..cut].iter().filter(|&&b| b == b'\n').count() as u64;
            parts.extend(drain(Records::starting_at(&text[cut..], b',', first_line)));
            assert_eq!(parts, whole, "cut at byte {cut}");
        }
    }

    #[test]
    fn finds_the_delimiter_outside_quotes() {
        assert_eq!(detect_delimiter(b"a,b,c"), Some(b','));
        assert_eq!(detect_delimiter(b"a\tb\tc"), Some(b'\t'));
        assert_eq!(detect_delimiter(b"\"1,5\";2;3"), Some(b';'));
        assert_eq!(detect_delimiter(b"a|b|c"), Some(b'|'));
        assert_eq!(detect_delimiter(b"abc"), None);
        assert_eq!(
            first_nonblank_line(b"\n \r\nx,y\r\nz"),
            Some(b"x,y".as_slice())
        );
    }
}
