//! The json-file log exactly as dockerd's json-file driver writes it: one
//! `{"log":...,"stream":...,"time":...}` object per line of output, lines
//! longer than 16 KiB (and a last unterminated line) split into partial
//! entries without the trailing `\n`, Go's JSON string escaping and
//! RFC 3339 timestamps with trailing zeros trimmed.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;

use chrono::{DateTime, Datelike, Timelike, Utc};

/// dockerd's copier buffer: a line that fills it without a newline is
/// logged as a partial entry.
pub const LINE_BUFFER: usize = 16 * 1024;

/// The log file, shared by the stdout and stderr copiers; one entry is one
/// `write` so entries never interleave.
pub struct JsonLog {
    file: Mutex<File>,
}

impl JsonLog {
    pub fn open(path: &Path) -> io::Result<JsonLog> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)?;
        Ok(JsonLog {
            file: Mutex::new(file),
        })
    }

    pub fn write_entry(&self, stream: &str, entry: &Entry<'_>) -> io::Result<()> {
        let line = encode_entry(stream, entry);
        self.file
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write_all(&line)
    }
}

/// One log message before encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    pub line: &'a [u8],
    /// Not the last piece of its line: no `\n` is appended.
    pub partial: bool,
    pub time: DateTime<Utc>,
}

/// Splits one stream's output into log entries the way dockerd's copier
/// does, including the shared timestamp of a line's partial pieces.
pub struct LineSplitter {
    buf: Vec<u8>,
    /// Timestamp of the first partial piece of the line being continued.
    partial_time: Option<DateTime<Utc>>,
}

impl Default for LineSplitter {
    fn default() -> Self {
        LineSplitter {
            buf: Vec::with_capacity(LINE_BUFFER),
            partial_time: None,
        }
    }
}

impl LineSplitter {
    /// Consumes output, emitting every entry it completes.
    pub fn feed(&mut self, mut data: &[u8], now: DateTime<Utc>, emit: &mut dyn FnMut(Entry<'_>)) {
        while !data.is_empty() {
            let room = LINE_BUFFER - self.buf.len();
            let take = room.min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            self.flush_lines(now, emit);
            if self.buf.len() == LINE_BUFFER {
                self.flush_partial(now, emit);
            }
        }
    }

    /// End of the stream: what is left is a partial entry.
    pub fn finish(&mut self, now: DateTime<Utc>, emit: &mut dyn FnMut(Entry<'_>)) {
        if !self.buf.is_empty() {
            self.flush_partial(now, emit);
        }
    }

    fn flush_lines(&mut self, now: DateTime<Utc>, emit: &mut dyn FnMut(Entry<'_>)) {
        let mut start = 0;
        while let Some(nl) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let time = self.partial_time.take().unwrap_or(now);
            emit(Entry {
                line: &self.buf[start..start + nl],
                partial: false,
                time,
            });
            start += nl + 1;
        }
        self.buf.drain(..start);
    }

    fn flush_partial(&mut self, now: DateTime<Utc>, emit: &mut dyn FnMut(Entry<'_>)) {
        let time = *self.partial_time.get_or_insert(now);
        emit(Entry {
            line: &self.buf,
            partial: true,
            time,
        });
        self.buf.clear();
    }
}

/// One encoded log line, newline included.
pub fn encode_entry(stream: &str, entry: &Entry<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(entry.line.len() + 80);
    out.extend_from_slice(b"{\"log\":");
    let mut log = entry.line.to_vec();
    if !entry.partial {
        log.push(b'\n');
    }
    write_go_json_string(&mut out, &log);
    out.extend_from_slice(b",\"stream\":");
    write_go_json_string(&mut out, stream.as_bytes());
    out.extend_from_slice(b",\"time\":\"");
    out.extend_from_slice(go_rfc3339_nano(entry.time).as_bytes());
    out.extend_from_slice(b"\"}\n");
    out
}

/// Go's `time.RFC3339Nano` of a UTC time: fractional seconds with
/// trailing zeros trimmed, none at all on a whole second.
pub fn go_rfc3339_nano(t: DateTime<Utc>) -> String {
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    // A leap second shows as nanosecond >= 1e9 in chrono; Go has none.
    let nanos = t.nanosecond() % 1_000_000_000;
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Writes `s` as a JSON string the way dockerd's jsonlog does: HTML
/// characters escaped, invalid UTF-8 replaced byte by byte with U+FFFD,
/// U+2028/U+2029 escaped.
fn write_go_json_string(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for chunk in s.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.extend_from_slice(b"\\\\"),
                '"' => out.extend_from_slice(b"\\\""),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                c if (c as u32) < 0x20 || c == '<' || c == '>' || c == '&' => {
                    let b = c as u8;
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[(b >> 4) as usize]);
                    out.push(HEX[(b & 0xf) as usize]);
                }
                '\u{2028}' => out.extend_from_slice(b"\\u2028"),
                '\u{2029}' => out.extend_from_slice(b"\\u2029"),
                c => {
                    let mut tmp = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                }
            }
        }
        for _ in chunk.invalid() {
            out.extend_from_slice(b"\\ufffd");
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(nanos: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 6, 7, 8, 9).unwrap()
            + chrono::Duration::nanoseconds(nanos as i64)
    }

    fn split(chunks: &[&[u8]]) -> Vec<(Vec<u8>, bool)> {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, t(0), &mut |e| out.push((e.line.to_vec(), e.partial)));
        }
        s.finish(t(0), &mut |e| out.push((e.line.to_vec(), e.partial)));
        out
    }

    #[test]
    fn lines_are_split_across_reads() {
        assert_eq!(
            split(&[b"hel", b"lo\nwor", b"ld\n\n"]),
            vec![
                (b"hello".to_vec(), false),
                (b"world".to_vec(), false),
                (b"".to_vec(), false)
            ]
        );
        assert_eq!(
            split(&[b"no newline"]),
            vec![(b"no newline".to_vec(), true)]
        );
    }

    #[test]
    fn long_lines_become_partials_sharing_one_timestamp() {
        let long = vec![b'x'; LINE_BUFFER + 10];
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        s.feed(&long, t(1), &mut |e| {
            out.push((e.line.len(), e.partial, e.time))
        });
        s.feed(b"\n", t(2), &mut |e| {
            out.push((e.line.len(), e.partial, e.time))
        });
        assert_eq!(out, vec![(LINE_BUFFER, true, t(1)), (10, false, t(1))]);
    }

    #[test]
    fn entries_match_dockerd_bytes() {
        let e = Entry {
            line: b"a\"b\\c<d>&\te\r",
            partial: false,
            time: t(123_400_000),
        };
        assert_eq!(
            String::from_utf8(encode_entry("stdout", &e)).unwrap(),
            "{\"log\":\"a\\\"b\\\\c\\u003cd\\u003e\\u0026\\u0009e\\r\\n\",\"stream\":\"stdout\",\"time\":\"2024-05-06T07:08:09.1234Z\"}\n"
        );
        let e = Entry {
            line: b"caf\xc3\xa9 \xff\xe2\x82 \xe2\x80\xa8",
            partial: true,
            time: t(0),
        };
        assert_eq!(
            String::from_utf8(encode_entry("stderr", &e)).unwrap(),
            "{\"log\":\"caf\u{e9} \\ufffd\\ufffd\\ufffd \\u2028\",\"stream\":\"stderr\",\"time\":\"2024-05-06T07:08:09Z\"}\n"
        );
    }

    #[test]
    fn rfc3339_nano_trims_like_go() {
        assert_eq!(go_rfc3339_nano(t(5)), "2024-05-06T07:08:09.000000005Z");
        assert_eq!(go_rfc3339_nano(t(500_000_000)), "2024-05-06T07:08:09.5Z");
    }
}
