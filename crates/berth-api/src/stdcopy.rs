//! Docker's stdcopy framing of container output (logs, attach, exec): each
//! chunk behind an 8-byte header `[stream, 0, 0, 0, len as big-endian u32]`
//! when the process has no TTY, the bytes as they are when it has one, and
//! the media type dockerd names each kind by for a given API version.

use std::convert::Infallible;

use axum::body::Body;
use berth_engine::containers::{OutputChunk, OutputStream, StdStream};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;

use crate::version::ApiVersion;

/// Output exactly as the process wrote it (TTY, or old clients).
pub const RAW_STREAM: &str = "application/vnd.docker.raw-stream";
/// stdcopy-framed output.
pub const MULTIPLEXED_STREAM: &str = "application/vnd.docker.multiplexed-stream";

/// Bytes of a frame header.
pub const HEADER_LEN: usize = 8;

/// The media type dockerd sends a stream with: the multiplexed type exists
/// from API 1.42; before that framed output was labelled raw as well.
pub fn content_type(multiplexed: bool, v: &ApiVersion) -> &'static str {
    if multiplexed && v.ge("1.42") {
        MULTIPLEXED_STREAM
    } else {
        RAW_STREAM
    }
}

/// The header of a frame carrying `len` bytes of `stream`.
pub fn header(stream: StdStream, len: u32) -> [u8; HEADER_LEN] {
    let n = len.to_be_bytes();
    [stream as u8, 0, 0, 0, n[0], n[1], n[2], n[3]]
}

/// One chunk as it goes on the wire: framed when `multiplexed`, else raw.
/// A chunk longer than a frame can say is split over several frames; an
/// empty one is no frame at all (it would tell the client nothing).
pub fn encode(chunk: OutputChunk, multiplexed: bool) -> Bytes {
    if !multiplexed {
        return chunk.data;
    }
    let frames = chunk.data.len().div_ceil(u32::MAX as usize);
    let mut out = BytesMut::with_capacity(chunk.data.len() + frames * HEADER_LEN);
    for part in chunk.data.chunks(u32::MAX as usize) {
        out.put_slice(&header(chunk.stream, part.len() as u32));
        out.put_slice(part);
    }
    out.freeze()
}

/// A response body carrying `output`, framed when `multiplexed`.
pub fn body(output: OutputStream, multiplexed: bool) -> Body {
    let bytes = output.filter_map(move |chunk| async move {
        if chunk.data.is_empty() {
            None
        } else {
            Some(Ok::<_, Infallible>(encode(chunk, multiplexed)))
        }
    });
    Body::from_stream(bytes)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Splits framed bytes back into (stream byte, payload) pairs, as a
    /// client's stdcopy reader does.
    pub(crate) fn demux(mut wire: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while !wire.is_empty() {
            assert!(wire.len() >= HEADER_LEN, "truncated header");
            assert_eq!(&wire[1..4], &[0, 0, 0], "reserved header bytes");
            let len = u32::from_be_bytes([wire[4], wire[5], wire[6], wire[7]]) as usize;
            let end = HEADER_LEN + len;
            assert!(wire.len() >= end, "truncated frame");
            out.push((wire[0], wire[HEADER_LEN..end].to_vec()));
            wire = &wire[end..];
        }
        out
    }

    fn chunk(stream: StdStream, data: &'static [u8]) -> OutputChunk {
        OutputChunk {
            stream,
            data: Bytes::from_static(data),
        }
    }

    #[test]
    fn frames_carry_stream_and_big_endian_length() {
        let wire = encode(chunk(StdStream::Stderr, b"oops\n"), true);
        assert_eq!(&wire[..HEADER_LEN], &[2, 0, 0, 0, 0, 0, 0, 5]);
        assert_eq!(&wire[HEADER_LEN..], b"oops\n");
        assert_eq!(
            header(StdStream::Stdout, 0x0102_0304),
            [1, 0, 0, 0, 1, 2, 3, 4]
        );
        assert_eq!(header(StdStream::Stdin, 0)[0], 0);
    }

    #[test]
    fn tty_output_is_sent_raw() {
        let wire = encode(chunk(StdStream::Stdout, b"\x1b[1mhi"), false);
        assert_eq!(&wire[..], b"\x1b[1mhi");
    }

    #[test]
    fn empty_chunk_is_no_frame() {
        assert!(encode(chunk(StdStream::Stdout, b""), true).is_empty());
    }

    #[tokio::test]
    async fn body_frames_each_chunk_and_drops_empty_ones() {
        let output: OutputStream = Box::pin(futures_util::stream::iter(vec![
            chunk(StdStream::Stdout, b"out"),
            chunk(StdStream::Stderr, b""),
            chunk(StdStream::Stderr, b"err"),
        ]));
        let bytes = axum::body::to_bytes(body(output, true), usize::MAX)
            .await
            .unwrap();
        assert_eq!(
            demux(&bytes),
            vec![(1, b"out".to_vec()), (2, b"err".to_vec())]
        );
    }

    #[test]
    fn media_type_depends_on_version() {
        assert_eq!(content_type(true, &ApiVersion::new("1.41")), RAW_STREAM);
        assert_eq!(
            content_type(true, &ApiVersion::new("1.42")),
            MULTIPLEXED_STREAM
        );
        assert_eq!(content_type(false, &ApiVersion::newest()), RAW_STREAM);
    }
}
