//! TensorBoard event files: scalar summaries (and optionally the graph) written as
//! `tensorflow.Event` protos in TFRecord framing to `events.out.tfevents.<secs>.<host>`,
//! readable by `tensorboard --logdir` and `tf.compat.v1.train.summary_iterator`.
//!
//! TFRecord framing, per record: `u64` length (little-endian), masked CRC-32C of those 8
//! bytes (`u32` LE), the data, masked CRC-32C of the data; a mask is
//! `((crc >> 15) | (crc << 17)) + 0xa282ead8`. The few messages needed are declared here
//! with TensorFlow's field numbers (`event.proto`, `summary.proto`).
//!
//! Invariants: the first record of every file is the `file_version` event
//! ("brain.Event:2"); a record is written whole or not at all from the reader's point of
//! view (readers stop at a short tail); [`read_records`] checks both CRCs.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;
use rill_graph::{Code, Error, Result};

/// `tensorflow.Event` (the fields Rill writes).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    #[prost(int64, tag = "2")]
    pub step: i64,
    #[prost(oneof = "What", tags = "3, 4, 5, 7")]
    pub what: Option<What>,
}

/// `Event.what`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum What {
    /// The file format's version, "brain.Event:2".
    #[prost(string, tag = "3")]
    FileVersion(String),
    /// A serialised `GraphDef`.
    #[prost(bytes = "vec", tag = "4")]
    GraphDef(Vec<u8>),
    #[prost(message, tag = "5")]
    Summary(Summary),
    #[prost(message, tag = "7")]
    SessionLog(SessionLog),
}

/// `tensorflow.SessionLog`: a `START` at step S tells TensorBoard to drop events at steps
/// >= S from before the restart (a run resumed from a checkpoint).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionLog {
    /// `SessionStatus`: 0 unspecified, 1 START, 2 STOP, 3 CHECKPOINT.
    #[prost(int32, tag = "1")]
    pub status: i32,
    #[prost(string, tag = "2")]
    pub checkpoint_path: String,
    #[prost(string, tag = "3")]
    pub msg: String,
}

/// `SessionLog.SessionStatus.START`.
pub const SESSION_START: i32 = 1;

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value` (scalars only).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryValue {
    #[prost(string, tag = "1")]
    pub tag: String,
    /// Member of the `value` oneof; the wire format of an optional field is the same.
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
}

/// The version string TensorFlow writes in each file's first event.
pub const FILE_VERSION: &str = "brain.Event:2";

const MASK_DELTA: u32 = 0xa282_ead8;

/// TFRecord's masked CRC-32C (Castagnoli).
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    (crc.rotate_right(15)).wrapping_add(MASK_DELTA)
}

/// One TFRecord: length, its masked CRC, `data`, the data's masked CRC.
pub fn frame_record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

fn data_loss(msg: String) -> Error {
    Error::new(Code::DataLoss, msg)
}

/// Splits TFRecord bytes into records, checking both CRCs of each. A truncated final
/// record is an error.
pub fn read_records(mut bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut records = Vec::new();
    while !bytes.is_empty() {
        let n = records.len();
        if bytes.len() < 12 {
            return Err(data_loss(format!("record {n}: truncated header")));
        }
        let (len_bytes, rest) = bytes.split_at(8);
        let len_crc = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes"));
        if masked_crc32c(len_bytes) != len_crc {
            return Err(data_loss(format!("record {n}: length CRC mismatch")));
        }
        let len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes"));
        let rest = &rest[4..];
        if (rest.len() as u64) < len.saturating_add(4) {
            return Err(data_loss(format!(
                "record {n}: truncated data ({len} bytes declared)"
            )));
        }
        let (data, rest) = rest.split_at(len as usize);
        let data_crc = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes"));
        if masked_crc32c(data) != data_crc {
            return Err(data_loss(format!("record {n}: data CRC mismatch")));
        }
        records.push(data.to_vec());
        bytes = &rest[4..];
    }
    Ok(records)
}

/// Reads every event of an event file.
pub fn read_events(path: &Path) -> Result<Vec<Event>> {
    let bytes = std::fs::read(path).map_err(|e| io_error("cannot read", path, e))?;
    read_records(&bytes)
        .map_err(|e| data_loss(format!("{}: {}", path.display(), e.message)))?
        .iter()
        .enumerate()
        .map(|(i, r)| {
            Event::decode(r.as_slice()).map_err(|e| {
                data_loss(format!(
                    "{}: record {i} is not an Event: {e}",
                    path.display()
                ))
            })
        })
        .collect()
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::new(Code::Unavailable, format!("{what} {}: {e}", path.display()))
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The host name for event file names (characters other than `[A-Za-z0-9._-]` dropped).
fn hostname() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .collect();
    if name.is_empty() {
        "localhost".to_string()
    } else {
        name
    }
}

/// Appends events to one event file in a log folder.
pub struct EventWriter {
    file: BufWriter<File>,
    path: PathBuf,
}

impl EventWriter {
    /// Creates `dir` if needed and a new `events.out.tfevents.<secs>.<host>` file in it
    /// (with a numeric suffix if that name exists), starting with the version event.
    pub fn create(dir: &Path) -> Result<EventWriter> {
        std::fs::create_dir_all(dir).map_err(|e| io_error("cannot create", dir, e))?;
        let wall = now();
        let base = format!("events.out.tfevents.{}.{}", wall as u64, hostname());
        let mut path = dir.join(&base);
        let mut suffix = 0;
        let file = loop {
            match File::options().write(true).create_new(true).open(&path) {
                Ok(f) => break f,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && suffix < 1000 => {
                    suffix += 1;
                    path = dir.join(format!("{base}.{suffix}"));
                }
                Err(e) => return Err(io_error("cannot create", &path, e)),
            }
        };
        let mut w = EventWriter {
            file: BufWriter::new(file),
            path,
        };
        w.write_event(&Event {
            wall_time: wall,
            step: 0,
            what: Some(What::FileVersion(FILE_VERSION.to_string())),
        })?;
        w.flush()?;
        Ok(w)
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one event record.
    pub fn write_event(&mut self, event: &Event) -> Result<()> {
        self.file
            .write_all(&frame_record(&event.encode_to_vec()))
            .map_err(|e| io_error("cannot write", &self.path, e))
    }

    /// Writes scalar summaries `(tag, value)` for `step` as one event.
    pub fn add_scalars(&mut self, scalars: &[(&str, f32)], step: i64) -> Result<()> {
        let value = scalars
            .iter()
            .map(|(tag, v)| SummaryValue {
                tag: tag.to_string(),
                simple_value: Some(*v),
            })
            .collect();
        self.write_event(&Event {
            wall_time: now(),
            step,
            what: Some(What::Summary(Summary { value })),
        })
    }

    /// Writes one scalar summary.
    pub fn add_scalar(&mut self, tag: &str, value: f32, step: i64) -> Result<()> {
        self.add_scalars(&[(tag, value)], step)
    }

    /// Writes a serialised `GraphDef` (TensorBoard's Graphs tab).
    pub fn add_graph(&mut self, graph_def: Vec<u8>, step: i64) -> Result<()> {
        self.write_event(&Event {
            wall_time: now(),
            step,
            what: Some(What::GraphDef(graph_def)),
        })
    }

    /// Records a (re)start at `step`: TensorBoard discards older events at steps >= `step`.
    pub fn add_session_start(&mut self, step: i64, checkpoint_path: &str) -> Result<()> {
        self.write_event(&Event {
            wall_time: now(),
            step,
            what: Some(What::SessionLog(SessionLog {
                status: SESSION_START,
                checkpoint_path: checkpoint_path.to_string(),
                msg: String::new(),
            })),
        })
    }

    /// Pushes buffered events to the file.
    pub fn flush(&mut self) -> Result<()> {
        self.file
            .flush()
            .map_err(|e| io_error("cannot write", &self.path, e))
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        let _ = self.file.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_known_values() {
        // CRC-32C check value (RFC 3720, B.4) and TFRecord's mask of it.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        // ((0xe3069283 >> 15) | (0xe3069283 << 17)) + 0xa282ead8, computed by hand.
        assert_eq!(masked_crc32c(b"123456789"), 0xc78a_b0e5);
    }

    #[test]
    fn framing_round_trips_and_detects_corruption() {
        let records: Vec<Vec<u8>> = vec![vec![], b"hello".to_vec(), vec![7u8; 1000]];
        let bytes: Vec<u8> = records.iter().flat_map(|r| frame_record(r)).collect();
        assert_eq!(bytes.len(), 3 * 16 + 5 + 1000);
        assert_eq!(read_records(&bytes).unwrap(), records);
        let mut bad = bytes.clone();
        bad[16 + 12] ^= 1; // a data byte of the second record
        assert!(read_records(&bad).unwrap_err().message.contains("record 1"));
        let mut bad = bytes.clone();
        bad[0] ^= 1; // the first length
        assert!(read_records(&bad)
            .unwrap_err()
            .message
            .contains("length CRC"));
        assert!(read_records(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn writer_output_reads_back() {
        let dir = std::env::temp_dir().join(format!("rill-tb-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = {
            let mut w = EventWriter::create(&dir).unwrap();
            w.add_scalars(&[("loss", 2.5), ("accuracy", 0.5)], 10)
                .unwrap();
            w.add_scalar("loss", 1.25, 20).unwrap();
            w.path().to_path_buf()
        };
        let second = EventWriter::create(&dir).unwrap().path().to_path_buf();
        assert_ne!(path, second);
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("events.out.tfevents."), "{name}");
        let events = read_events(&path).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(
            events[0].what,
            Some(What::FileVersion(FILE_VERSION.to_string()))
        );
        assert_eq!(events[1].step, 10);
        let Some(What::Summary(s)) = &events[1].what else {
            panic!("not a summary: {:?}", events[1]);
        };
        assert_eq!(s.value[0].tag, "loss");
        assert_eq!(s.value[0].simple_value, Some(2.5));
        assert_eq!(s.value[1].tag, "accuracy");
        assert!(events[2].wall_time >= events[0].wall_time);
        // Hand-checked wire bytes of Summary.Value{tag:"a", simple_value:1.0}.
        let v = SummaryValue {
            tag: "a".into(),
            simple_value: Some(1.0),
        };
        assert_eq!(v.encode_to_vec(), [0x0a, 1, b'a', 0x15, 0, 0, 0x80, 0x3f]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
