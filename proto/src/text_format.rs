//! Protobuf text format (`.pbtxt`) for the TensorFlow messages, as TensorFlow's
//! `text_format.MessageToString` writes it and `text_format.Parse` reads it.
//!
//! Conversion goes binary -> dynamic message -> text (and back), so the text form can never
//! disagree with the binary schema.

use std::sync::OnceLock;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};

/// Why a text-format conversion failed.
#[derive(Debug)]
pub struct TextFormatError(pub String);

impl std::fmt::Display for TextFormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TextFormatError {}

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(crate::FILE_DESCRIPTOR_SET)
            .expect("the descriptor set generated at build time is valid")
    })
}

fn descriptor(full_name: &str) -> Result<MessageDescriptor, TextFormatError> {
    pool()
        .get_message_by_name(full_name)
        .ok_or_else(|| TextFormatError(format!("no message named {full_name} in the schema")))
}

/// Parses `text` as the message `tensorflow.<name>` (e.g. `"GraphDef"`).
pub fn parse<M: Message + Default>(name: &str, text: &str) -> Result<M, TextFormatError> {
    let desc = descriptor(&format!("tensorflow.{name}"))?;
    let dynamic = DynamicMessage::parse_text_format(desc, text)
        .map_err(|e| TextFormatError(format!("text format: {e}")))?;
    M::decode(dynamic.encode_to_vec().as_slice())
        .map_err(|e| TextFormatError(format!("text format re-encoding: {e}")))
}

/// Writes `message` (of type `tensorflow.<name>`) as multi-line text format.
pub fn print<M: Message>(name: &str, message: &M) -> Result<String, TextFormatError> {
    let desc = descriptor(&format!("tensorflow.{name}"))?;
    let dynamic = DynamicMessage::decode(desc, message.encode_to_vec().as_slice())
        .map_err(|e| TextFormatError(format!("text format: {e}")))?;
    let options = prost_reflect::text_format::FormatOptions::new()
        .pretty(true)
        .expand_any(false);
    Ok(dynamic.to_text_format_with_options(&options))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GraphDef, NodeDef};

    #[test]
    fn graph_def_text_round_trip() {
        let g = GraphDef {
            node: vec![NodeDef {
                name: "x".into(),
                op: "Placeholder".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = print("GraphDef", &g).unwrap();
        assert!(text.contains("name: \"x\""), "{text}");
        let back: GraphDef = parse("GraphDef", &text).unwrap();
        assert_eq!(back, g);
    }

    #[test]
    fn bad_text_is_an_error() {
        assert!(parse::<GraphDef>("GraphDef", "node { nme: 1 }").is_err());
    }
}
