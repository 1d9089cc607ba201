//! The request-response codec: one length-prefixed frame per request or response, refused
//! above a cap before any of it is buffered, so a peer cannot make a node allocate what it
//! claims.

use std::io;

use futures::prelude::*;
use libp2p::StreamProtocol;
use libp2p::request_response::Codec;

/// Frames of at most `max_request` / `max_response` bytes.
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    /// Largest request accepted.
    pub max_request: usize,
    /// Largest response accepted.
    pub max_response: usize,
}

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut len_bytes = [0u8; 4];
    io.read_exact(&mut len_bytes).await?;
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes is over the cap of {max}"),
        ));
    }
    // Grows as bytes arrive rather than trusting the announced length up front.
    let mut frame = Vec::new();
    io.take(len as u64).read_to_end(&mut frame).await?;
    if frame.len() != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the frame ended after {} of {len} bytes", frame.len()),
        ));
    }
    Ok(frame)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    frame: &[u8],
    max: usize,
) -> io::Result<()> {
    if frame.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a frame of {} bytes is over the cap of {max}", frame.len()),
        ));
    }
    io.write_all(&(frame.len() as u32).to_le_bytes()).await?;
    io.write_all(frame).await?;
    io.close().await
}

impl Codec for FrameCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.max_request).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.max_response).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &request, self.max_request).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &response, self.max_response).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_oversized_ones_are_refused_before_buffering() {
        futures::executor::block_on(async {
            let mut buf = Vec::new();
            write_frame(&mut futures::io::Cursor::new(&mut buf), b"hello", 16)
                .await
                .unwrap();
            let read = read_frame(&mut futures::io::Cursor::new(&buf), 16).await;
            assert_eq!(read.unwrap(), b"hello");
            let err = read_frame(&mut futures::io::Cursor::new(&buf), 4)
                .await
                .unwrap_err();
            assert!(err.to_string().contains("over the cap"), "{err}");
            // A header that claims 4 GiB with 3 bytes behind it: an error, no 4 GiB buffer.
            let mut lying = u32::MAX.to_le_bytes().to_vec();
            lying.extend_from_slice(b"abc");
            let err = read_frame(&mut futures::io::Cursor::new(&lying), usize::MAX)
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        });
    }
}
