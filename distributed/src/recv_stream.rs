//! `RecvTensor` with one copy of the tensor's bytes end to end (besides the kernel's).
//! Sending: tonic's generated service would encode every chunk message into a buffer of
//! its own (a copy of the whole tensor); [`ZeroCopyRecv`] writes the gRPC framing and the
//! chunk's protobuf header by hand and hands the tensor's bytes to HTTP/2 as shared slices
//! of its buffer. Receiving: [`fetch_raw`] parses the response frames as they arrive and
//! copies the data straight into the new tensor. The bytes on the wire are exactly what
//! the generated service and client would exchange, so either side works with them.
//!
//! Invariants: a response is either a stream of `RecvTensorChunk` messages (the first with
//! the header) ending in `grpc-status: 0`, or a trailers-only error status.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::Frame;
use http_body_util::BodyExt;
use prost::Message;
use tonic::body::Body;
use tonic::Status;

use rill_graph::{Code, Error, Result, Tensor};
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;

use crate::proto::worker_service_server::SERVICE_NAME;
use crate::proto::{RecvTensorRequest, TensorMeta};
use crate::status::{from_status, to_status};
use crate::transport::TOKEN_KEY;
use crate::wire::{self, TensorBuilder};
use crate::worker::Worker;

const RECV_TENSOR_PATH: &str = "/rill.distributed.WorkerService/RecvTensor";

/// The worker service with `RecvTensor` served without copies.
#[derive(Clone)]
pub struct ZeroCopyRecv<S> {
    inner: S,
    worker: Arc<Worker>,
}

impl<S> ZeroCopyRecv<S> {
    pub fn new(inner: S, worker: Arc<Worker>) -> ZeroCopyRecv<S> {
        ZeroCopyRecv { inner, worker }
    }
}

impl<S> tonic::server::NamedService for ZeroCopyRecv<S> {
    const NAME: &'static str = SERVICE_NAME;
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = Result<T, Infallible>> + Send>>;

impl<S> tower_service::Service<http::Request<Body>> for ZeroCopyRecv<S>
where
    S: tower_service::Service<
            http::Request<Body>,
            Response = http::Response<Body>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<http::Response<Body>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() != RECV_TENSOR_PATH {
            let future = self.inner.call(request);
            return Box::pin(future);
        }
        let worker = self.worker.clone();
        Box::pin(async move {
            Ok(match respond(&worker, request).await {
                Ok(response) => response,
                Err(status) => status.into_http(),
            })
        })
    }
}

/// The one request message of a unary-request call.
async fn read_request(request: http::Request<Body>) -> Result<RecvTensorRequest, Status> {
    let body = request
        .into_body()
        .collect()
        .await
        .map_err(|e| Status::internal(format!("reading the request: {e}")))?
        .to_bytes();
    if body.len() < 5 || body[0] != 0 {
        return Err(Status::invalid_argument(
            "RecvTensor takes one uncompressed message",
        ));
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    let message = body
        .get(5..5 + len)
        .ok_or_else(|| Status::invalid_argument("truncated RecvTensor request"))?;
    RecvTensorRequest::decode(message)
        .map_err(|e| Status::invalid_argument(format!("bad RecvTensor request: {e}")))
}

async fn respond(
    worker: &Worker,
    request: http::Request<Body>,
) -> Result<http::Response<Body>, Status> {
    let r = read_request(request).await?;
    let (meta, data) = worker.value_for_peer(&r).await.map_err(|e| to_status(&e))?;
    let frames = chunk_frames(&meta, data);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let stream = tokio_stream::iter(
        frames
            .into_iter()
            .map(|b| Ok::<_, Status>(Frame::data(b)))
            .chain(std::iter::once(Ok(Frame::trailers(trailers)))),
    );
    let body = Body::new(http_body_util::StreamBody::new(stream));
    http::Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .body(body)
        .map_err(|e| Status::internal(format!("building the response: {e}")))
}

/// The gRPC messages `RecvTensorChunk { meta (first only), data }` for `data` cut in
/// [`wire::CHUNK_BYTES`] pieces: per message a small buffer (message prefix, the header field,
/// the data field's tag and length) followed by a slice of `data` itself.
fn chunk_frames(meta: &TensorMeta, data: Bytes) -> Vec<Bytes> {
    let mut frames = Vec::new();
    for (i, piece) in wire::chunks(data).enumerate() {
        let mut head = BytesMut::with_capacity(64);
        let mut fields = BytesMut::with_capacity(48);
        if i == 0 {
            prost::encoding::message::encode(1, meta, &mut fields);
        }
        if !piece.is_empty() {
            prost::encoding::encode_key(2, prost::encoding::WireType::LengthDelimited, &mut fields);
            prost::encoding::encode_varint(piece.len() as u64, &mut fields);
        }
        let len = fields.len() + piece.len();
        head.extend_from_slice(&[0]);
        head.extend_from_slice(&(len as u32).to_be_bytes());
        head.extend_from_slice(&fields);
        frames.push(head.freeze());
        if !piece.is_empty() {
            frames.push(piece);
        }
    }
    frames
}

/// Receives the `RecvTensorChunk` messages of a response body straight into a
/// [`TensorBuilder`]: the tensor's bytes are copied once, from the network buffers into
/// the tensor, instead of first into a message buffer and then into the tensor.
struct ChunkParser {
    /// Bytes of a message prefix, field key or header not parsed yet.
    pending: BytesMut,
    state: ParseState,
    builder: Option<TensorBuilder>,
}

#[derive(Clone, Copy)]
enum ParseState {
    /// Before a message's 5-byte prefix.
    Prefix,
    /// At a field key; `left` bytes of the message remain.
    Field { left: usize },
    /// In the header field (`len` bytes), then `left` bytes of the message.
    Meta { len: usize, left: usize },
    /// In a field this parser ignores.
    Skip { len: usize, left: usize },
    /// In the data field: `len` bytes go to the tensor.
    Data { len: usize, left: usize },
}

fn malformed(what: &str) -> Error {
    Error::new(
        Code::DataLoss,
        format!("malformed RecvTensor stream: {what}"),
    )
}

impl ChunkParser {
    fn new() -> ChunkParser {
        ChunkParser {
            pending: BytesMut::new(),
            state: ParseState::Prefix,
            builder: None,
        }
    }

    /// Bytes the current small state still needs in `pending`.
    fn small_need(&self) -> usize {
        match self.state {
            ParseState::Prefix => 5usize.saturating_sub(self.pending.len()),
            ParseState::Field { left } => 20usize.min(left).saturating_sub(self.pending.len()),
            ParseState::Meta { len, .. } | ParseState::Skip { len, .. } => {
                len.saturating_sub(self.pending.len())
            }
            ParseState::Data { .. } => 0,
        }
    }

    /// One step of a small state from `pending`; false when it needs more bytes.
    fn step_small(&mut self) -> Result<bool> {
        match self.state {
            ParseState::Prefix => {
                if self.pending.len() < 5 {
                    return Ok(false);
                }
                let p = self.pending.split_to(5);
                if p[0] != 0 {
                    return Err(malformed("compressed message"));
                }
                let left = u32::from_be_bytes([p[1], p[2], p[3], p[4]]) as usize;
                self.state = ParseState::Field { left };
            }
            ParseState::Field { left: 0 } => self.state = ParseState::Prefix,
            ParseState::Field { left } => {
                let mut view: &[u8] = &self.pending;
                let before = view.len();
                let parsed = prost::encoding::decode_key(&mut view).and_then(|(tag, wire)| {
                    Ok((tag, wire, prost::encoding::decode_varint(&mut view)?))
                });
                let (tag, wire, len) = match parsed {
                    Ok(x) => x,
                    Err(_) if before < 20.min(left) => return Ok(false),
                    Err(e) => return Err(malformed(&e.to_string())),
                };
                if wire != prost::encoding::WireType::LengthDelimited {
                    return Err(malformed("unexpected field type"));
                }
                let used = before - view.len();
                let len = usize::try_from(len).map_err(|_| malformed("field too long"))?;
                let left = left
                    .checked_sub(used)
                    .and_then(|l| l.checked_sub(len))
                    .ok_or_else(|| malformed("field longer than its message"))?;
                let _ = self.pending.split_to(used);
                self.state = match tag {
                    1 => ParseState::Meta { len, left },
                    2 => ParseState::Data { len, left },
                    _ => ParseState::Skip { len, left },
                };
            }
            ParseState::Meta { len, left } | ParseState::Skip { len, left } => {
                if self.pending.len() < len {
                    return Ok(false);
                }
                let bytes = self.pending.split_to(len);
                if let ParseState::Meta { .. } = self.state {
                    if self.builder.is_some() {
                        return Err(malformed("a second tensor header"));
                    }
                    let meta = TensorMeta::decode(&bytes[..])
                        .map_err(|e| malformed(&format!("bad header: {e}")))?;
                    self.builder = Some(TensorBuilder::new(&meta)?);
                }
                self.state = ParseState::Field { left };
            }
            ParseState::Data { .. } => return Ok(true),
        }
        Ok(true)
    }

    /// Takes the next bytes of the body.
    fn feed(&mut self, mut data: Bytes) -> Result<()> {
        loop {
            if let ParseState::Data { len, left } = self.state {
                if len == 0 {
                    self.state = ParseState::Field { left };
                    continue;
                }
                let builder = self
                    .builder
                    .as_mut()
                    .ok_or_else(|| malformed("data before the tensor header"))?;
                let n;
                if !self.pending.is_empty() {
                    n = len.min(self.pending.len());
                    builder.push(&self.pending.split_to(n))?;
                } else if !data.is_empty() {
                    n = len.min(data.len());
                    builder.push(&data.split_to(n))?;
                } else {
                    return Ok(());
                }
                self.state = ParseState::Data { len: len - n, left };
                continue;
            }
            if self.step_small()? {
                continue;
            }
            if data.is_empty() {
                return Ok(());
            }
            let take = data.len().min(self.small_need().max(1));
            self.pending.extend_from_slice(&data.split_to(take));
        }
    }

    fn finish(self) -> Result<(Tensor, bool)> {
        if !matches!(
            self.state,
            ParseState::Prefix | ParseState::Field { left: 0 }
        ) || !self.pending.is_empty()
        {
            return Err(malformed("the stream ended inside a message"));
        }
        let builder = self
            .builder
            .ok_or_else(|| Error::new(Code::DataLoss, "the stream ended before the tensor"))?;
        let dead = builder.is_dead;
        Ok((builder.finish()?, dead))
    }
}

/// Pulls the value under `request.rendezvous_key` from `task` over `channel`, parsing the
/// response as it arrives (see [`ChunkParser`]).
pub async fn fetch_raw(
    mut channel: Channel,
    token: Option<&AsciiMetadataValue>,
    request: &RecvTensorRequest,
    task: &str,
) -> Result<(Tensor, bool)> {
    let mut body = BytesMut::with_capacity(5 + request.encoded_len());
    body.extend_from_slice(&[0]);
    body.extend_from_slice(&(request.encoded_len() as u32).to_be_bytes());
    request
        .encode(&mut body)
        .map_err(|e| Error::internal(format!("encoding a RecvTensor request: {e}")))?;
    let mut http_request = http::Request::builder()
        .method("POST")
        .uri(RECV_TENSOR_PATH)
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(t) = token {
        http_request = http_request.header(TOKEN_KEY, t.as_bytes());
    }
    let http_request = http_request
        .body(Body::new(http_body_util::Full::new(body.freeze())))
        .map_err(|e| Error::internal(format!("building a RecvTensor request: {e}")))?;
    let unavailable = |e: &dyn std::fmt::Display| {
        Error::new(
            Code::Unavailable,
            format!("task {task} is unavailable: {e}"),
        )
    };
    std::future::poll_fn(|cx| tower_service::Service::poll_ready(&mut channel, cx))
        .await
        .map_err(|e| unavailable(&e))?;
    let response = tower_service::Service::call(&mut channel, http_request)
        .await
        .map_err(|e| unavailable(&e))?;
    if let Some(status) = Status::from_header_map(response.headers()) {
        if status.code() != tonic::Code::Ok {
            return Err(from_status(&status, task));
        }
    }
    let mut body = response.into_body();
    let mut parser = ChunkParser::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|s| from_status(&s, task))?;
        match frame.into_data() {
            Ok(data) => parser.feed(data)?,
            Err(frame) => {
                if let Some(trailers) = frame.trailers_ref() {
                    if let Some(status) = Status::from_header_map(trailers) {
                        if status.code() != tonic::Code::Ok {
                            return Err(from_status(&status, task));
                        }
                    }
                }
            }
        }
    }
    parser.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::RecvTensorChunk;

    #[test]
    fn hand_framed_chunks_decode_as_the_generated_messages() {
        let tensor = rill_graph::Tensor::new(&[3], vec![1f32, 2., 3.]).unwrap();
        let (meta, data) = crate::wire::encode(&tensor, false);
        let wire: Vec<u8> = chunk_frames(&meta, data.clone()).concat();
        let len = u32::from_be_bytes([wire[1], wire[2], wire[3], wire[4]]) as usize;
        assert_eq!(wire[0], 0);
        assert_eq!(wire.len(), 5 + len);
        let chunk = RecvTensorChunk::decode(&wire[5..]).unwrap();
        assert_eq!(chunk.meta.as_ref(), Some(&meta));
        assert_eq!(chunk.data, data);
    }

    fn parse_in_pieces(wire: &[u8], piece: impl Fn(usize) -> usize) -> Result<(Tensor, bool)> {
        let mut parser = ChunkParser::new();
        let mut at = 0;
        let mut i = 0;
        while at < wire.len() {
            let n = piece(i).clamp(1, wire.len() - at);
            parser.feed(Bytes::copy_from_slice(&wire[at..at + n]))?;
            at += n;
            i += 1;
        }
        parser.finish()
    }

    #[test]
    fn the_parser_takes_any_split_of_the_stream() {
        // Two messages (over one chunk), then a tiny one, split every which way.
        let values: Vec<f32> = (0..(wire::CHUNK_BYTES / 4 + 1000))
            .map(|i| i as f32)
            .collect();
        let big = Tensor::new(&[values.len()], values).unwrap();
        let small = Tensor::new(&[2, 1], vec![7i64, -8]).unwrap();
        for t in [&big, &small] {
            let (meta, data) = crate::wire::encode(t, false);
            let wire: Vec<u8> = chunk_frames(&meta, data).concat();
            for split in [1usize, 3, 7, 4096, 1 << 20, usize::MAX] {
                if t.num_elements() > 100 && split < 4096 {
                    continue; // byte-by-byte over megabytes is slow and adds nothing
                }
                let (got, dead) = parse_in_pieces(&wire, |i| split + i % 3).unwrap();
                assert_eq!(&got, t);
                assert!(!dead);
            }
            // A stream cut short is an error, never a partial tensor.
            let cut = &wire[..wire.len() - 1];
            assert!(parse_in_pieces(cut, |_| 5).is_err());
        }
        // Bytes after the prefix that claim more than the message holds.
        let mut bad = vec![0u8, 0, 0, 0, 3];
        bad.extend_from_slice(&[0x12, 0x7f, 0]);
        assert!(parse_in_pieces(&bad, |_| 8).is_err());
    }
}
